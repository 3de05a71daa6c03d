import Foundation
import Synchronization

/// Where the data loader stands: the next micro-batch starts at `position` of epoch `epoch`'s order.
public struct DataCursor: Codable, Equatable, Sendable {
    public var epoch: Int
    public var position: Int
}

/// state.json of a checkpoint: everything besides tensors that the next step depends on.
///
/// No trainer RNG is stored because the trainer has none that advances: epoch e's data order is drawn
/// from a generator split off the seed for e (`Trainer.order(epoch:)`), so the cursor alone pins it;
/// the plugins' generators (e.g. `shuffle`) are in `plugins`, via `Checkpointable`.
public struct TrainerState: Codable, Equatable, Sendable {
    public static let currentFormat = 1

    public var format = TrainerState.currentFormat
    /// Optimizer steps completed.
    public var step: Int
    public var totalSteps: Int
    public var cursor: DataCursor
    /// The learning rate of the last step (a learning-rate scheduler continues from it).
    public var learningRate: Double
    /// Scheduled hyper-parameters (e.g. `beta`) as schedulers left them.
    public var hyperparameters: [String: Double]
    /// Each `Checkpointable` plugin's state, by its node's key path (`data[2]`, `schedulers[0]`).
    public var plugins: [String: PluginState]
}

/// File names inside `checkpoints/step-N/` (torchtune-style named constants).
public enum TrainerCheckpointFile {
    /// Policy weights, safetensors, HF names (and a reward model's `score.weight`).
    public static let model = "model.safetensors"
    /// AdamW moments as `<slot>.<parameter>` arrays (`OptimizerState.namedArrays()`), the step count in
    /// the metadata under `optimizerStepCountKey`.
    public static let optimizer = "optimizer.safetensors"
    /// Reference weights; only when a scheduler mutates the reference (otherwise it is the start model).
    public static let reference = "reference.safetensors"
    public static let state = "state.json"
    public static let optimizerStepCountKey = "step_count"
}

extension Trainer {
    /// The files of a checkpoint of the current state, in write order (state.json last). Every tensor is
    /// first copied into `staging` and state.json is encoded now, so the files can be written on another
    /// thread while training changes the weights and the optimizer's moments.
    func checkpointFiles(staging: CheckpointStaging) throws -> [CheckpointFile] {
        func staged(_ tensors: [(name: String, tensor: Tensor)], _ file: String) -> [(name: String, tensor: Tensor)] {
            tensors.map { (name: $0.name, tensor: staging.copy($0.tensor, key: "\(file)/\($0.name)")) }
        }
        let model = try CheckpointFile.safetensors(TrainerCheckpointFile.model, staged(trainable.map { ($0.name, $0.tensor) }, TrainerCheckpointFile.model))
        let step = step
        var files = [CheckpointFile(name: model.name) { sink in
            try model.write(sink)
            FaultInjection.afterCheckpointFile(model.name, step: step)
        }]
        files.append(try .safetensors(TrainerCheckpointFile.optimizer,
                                      staged(optimizer.stateBuffers.sorted { $0.name < $1.name }, TrainerCheckpointFile.optimizer),
                                      metadata: [TrainerCheckpointFile.optimizerStepCountKey: String(optimizer.stepCount)]))
        if mutatesReference, let reference {
            files.append(try .safetensors(TrainerCheckpointFile.reference,
                                          staged(reference.parameters.map { ($0.name, $0.tensor) }, TrainerCheckpointFile.reference)))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        files.append(.data(TrainerCheckpointFile.state, try encoder.encode(try state())))
        return files
    }

    func state() throws -> TrainerState {
        var states: [String: PluginState] = [:]
        for (keyPath, plugin) in checkpointablePlugins { states[keyPath] = try plugin.saveState() }
        return TrainerState(step: step, totalSteps: totalSteps, cursor: cursor, learningRate: learningRate,
                            hyperparameters: hyperparameters, plugins: states)
    }

    /// Continues from a verified checkpoint: weights, optimizer, cursor, hyper-parameters, plugin states.
    public func restore(from checkpoint: VerifiedCheckpoint) throws {
        let state = try JSONDecoder().decode(TrainerState.self, from: try checkpoint.data(of: TrainerCheckpointFile.state))
        guard state.format == TrainerState.currentFormat else {
            throw TrainerError("\(checkpoint.directory.path): state.json has format \(state.format); this Keel reads format \(TrainerState.currentFormat)")
        }
        guard state.totalSteps == totalSteps else {
            throw TrainerError("\(checkpoint.directory.path): the run had \(state.totalSteps) steps, the recipe and data now give \(totalSteps)")
        }
        try ModelLoading.load(trainable, from: try checkpoint.url(of: TrainerCheckpointFile.model))
        if mutatesReference, let reference {
            try ModelLoading.load(reference.parameters, from: try checkpoint.url(of: TrainerCheckpointFile.reference))
        }
        let optimizerFile = try SafeTensorsFile(path: try checkpoint.url(of: TrainerCheckpointFile.optimizer).path)
        guard let stepCount = optimizerFile.metadata[TrainerCheckpointFile.optimizerStepCountKey].flatMap({ Int($0) }) else {
            throw TrainerError("\(optimizerFile.path): no '\(TrainerCheckpointFile.optimizerStepCountKey)' in the metadata")
        }
        var arrays: [String: [Float]] = [:]
        for info in optimizerFile.tensors {
            guard info.dtype == .f32 else { throw TrainerError("\(optimizerFile.path): '\(info.name)' is \(info.dtype.rawValue); expected F32") }
            arrays[info.name] = Array(optimizerFile.data(of: info).bindMemory(to: Float.self))
        }
        try optimizer.loadState(try OptimizerState(stepCount: stepCount, namedArrays: arrays))
        for (keyPath, plugin) in checkpointablePlugins {
            guard let saved = state.plugins[keyPath] else { throw TrainerError("\(checkpoint.directory.path): state.json has no state for plugin \(keyPath)") }
            try plugin.restoreState(saved)
        }
        (step, cursor, learningRate, hyperparameters) = (state.step, state.cursor, state.learningRate, state.hyperparameters)
    }
}

/// Test hooks for crash-safety tests, set through the environment of a `keel` child process:
/// `KEEL_FAULT=kill-after-step:N` (SIGKILL after step N's metrics are recorded, before its checkpoint,
/// with the earlier checkpoints' background writes finished),
/// `KEEL_FAULT=kill-in-checkpoint:N` (SIGKILL after the first file of step N's checkpoint is written) or
/// `KEEL_FAULT=kill-in-checkpoint-while-training:N` (the same, but only once the trainer has finished
/// step N + 1 meanwhile: the write is in the background and training went on).
/// Unset (always, outside tests), they do nothing.
enum FaultInjection {
    static let variable = "KEEL_FAULT"
    private static let fault: (kind: String, step: Int)? = {
        guard let value = ProcessInfo.processInfo.environment[variable], let colon = value.lastIndex(of: ":"),
              let step = Int(value[value.index(after: colon)...]) else { return nil }
        return (String(value[..<colon]), step)
    }()
    private static let lastCompletedStep = Atomic<Int>(0)

    /// `kill-after-step:N` SIGKILLs the process after step N, once `settleCheckpoints` has waited for the
    /// checkpoint writes already started (so a test knows where a resume continues; the kills during a
    /// write are the other faults); `term-after-step:N` sends it SIGTERM, which takes the real signal
    /// path of a cooperative stop (`TrainingStop`).
    static func afterStep(_ step: Int, settleCheckpoints: () -> Void) {
        guard let fault else { return }
        lastCompletedStep.store(step, ordering: .releasing)
        if fault.kind == "kill-after-step", fault.step == step { settleCheckpoints() }
        killIf("kill-after-step", step)
        killIf("term-after-step", step, signal: SIGTERM)
    }

    /// Called by the checkpoint writer (a background thread) after each file of step `step`'s checkpoint.
    static func afterCheckpointFile(_ name: String, step: Int) {
        guard let fault, name == TrainerCheckpointFile.model else { return }
        killIf("kill-in-checkpoint", step)
        if fault.kind == "kill-in-checkpoint-while-training", fault.step == step {
            // Bounded: if training cannot go on (it waits for this very write), kill anyway; the test's
            // check that step N + 1 was recorded then fails instead of the run hanging.
            let deadline = Date().addingTimeInterval(60)
            while lastCompletedStep.load(ordering: .acquiring) <= step, Date() < deadline { usleep(1000) }
            kill(getpid(), SIGKILL)
        }
    }

    private static func killIf(_ kind: String, _ step: Int, signal: Int32 = SIGKILL) {
        guard let fault, fault.kind == kind, fault.step == step else { return }
        kill(getpid(), signal)
    }
}

public struct TrainerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
