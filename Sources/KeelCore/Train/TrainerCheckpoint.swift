import Foundation

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
    /// The files of a checkpoint of the current state, in write order (state.json last).
    func checkpointFiles(scratch: URL) throws -> [CheckpointFile] {
        var files = [try safetensorsFile(TrainerCheckpointFile.model, trainable.map { ($0.name, $0.tensor) }, scratch: scratch)]
        let optimizerState = optimizer.state
        let shapes = Dictionary(uniqueKeysWithValues: trainable.map { ($0.name, $0.tensor.shape) })
        let arrays = optimizerState.namedArrays().sorted { $0.key < $1.key }.map { key, values -> (String, Tensor) in
            let parameter = String(key[key.index(after: key.firstIndex(of: ".")!)...])
            return (key, Tensor(shape: shapes[parameter] ?? [values.count], data: values))
        }
        files.append(try safetensorsFile(TrainerCheckpointFile.optimizer, arrays, scratch: scratch,
                                         metadata: [TrainerCheckpointFile.optimizerStepCountKey: String(optimizerState.stepCount)]))
        if mutatesReference, let reference {
            files.append(try safetensorsFile(TrainerCheckpointFile.reference, reference.parameters.map { ($0.name, $0.tensor) }, scratch: scratch))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        files.append(.data(TrainerCheckpointFile.state, try encoder.encode(try state())))
        return files
    }

    /// A safetensors file as a checkpoint file. `SafeTensors.write` only writes to a path, so the file is
    /// written to `scratch` first and streamed into the checkpoint (which hashes and fsyncs it); a
    /// streaming variant of `SafeTensors.write` would save that copy.
    private func safetensorsFile(_ name: String, _ tensors: [(String, Tensor)], scratch: URL,
                                 metadata: [String: String] = [:]) throws -> CheckpointFile {
        CheckpointFile(name: name) { sink in
            let path = scratch.appendingPathComponent(name).path
            try SafeTensors.write(path: path, tensors: tensors.map { (name: $0.0, tensor: $0.1) }, metadata: metadata)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 1 << 24), !chunk.isEmpty { try sink.write(chunk) }
            FaultInjection.afterCheckpointFile(name, step: self.step)
        }
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
/// `KEEL_FAULT=kill-after-step:N` (SIGKILL after step N's metrics are recorded, before its checkpoint)
/// or `KEEL_FAULT=kill-in-checkpoint:N` (SIGKILL after the first file of step N's checkpoint is written).
/// Unset (always, outside tests), they do nothing.
enum FaultInjection {
    static let variable = "KEEL_FAULT"
    private static let fault: (kind: String, step: Int)? = {
        guard let value = ProcessInfo.processInfo.environment[variable], let colon = value.lastIndex(of: ":"),
              let step = Int(value[value.index(after: colon)...]) else { return nil }
        return (String(value[..<colon]), step)
    }()

    /// `kill-after-step:N` SIGKILLs the process after step N; `term-after-step:N` sends it SIGTERM, which
    /// takes the real signal path of a cooperative stop (`TrainingStop`).
    static func afterStep(_ step: Int) {
        killIf("kill-after-step", step)
        killIf("term-after-step", step, signal: SIGTERM)
    }

    static func afterCheckpointFile(_ name: String, step: Int) {
        if name == TrainerCheckpointFile.model { killIf("kill-in-checkpoint", step) }
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
