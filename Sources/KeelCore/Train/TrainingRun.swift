import Foundation

/// Where runs live under a `var/` directory.
public struct RunLayout: Sendable {
    public let varDirectory: URL

    public init(varDirectory: URL) { self.varDirectory = varDirectory }

    public var store: URL { varDirectory.appendingPathComponent("keel.db") }
    public func run(_ runID: String) -> URL { varDirectory.appendingPathComponent("runs/\(runID)", isDirectory: true) }
    public func checkpoints(_ runID: String) -> URL { run(runID).appendingPathComponent("checkpoints", isDirectory: true) }
    /// Before/after answers to held-out prompts (`training.eval_generations`), written when the run completes.
    public func report(_ runID: String) -> URL { run(runID).appendingPathComponent("report.md") }
    /// `keel report RUN`'s page when no `--out` is given.
    public func htmlReport(_ runID: String) -> URL { run(runID).appendingPathComponent("report.html") }
    /// The final model as a Hugging Face folder, written when the run completes.
    public func export(_ runID: String) -> URL { run(runID).appendingPathComponent("export", isDirectory: true) }
    /// The reference model at the end, when the recipe asks for it (`output.reference_dir`).
    public func referenceExport(_ runID: String) -> URL { run(runID).appendingPathComponent("reference-export", isDirectory: true) }
}

extension TrainMetric {
    /// Passes over the training data so far, fractional (TRL's `epoch`), recorded with every train step.
    public static let epoch = "epoch"
}

/// `events.kind` values written by training runs.
public enum RunEvent {
    public static let data = "data"
    public static let resumed = "resumed"
    public static let resumeForced = "resume-forced"
    /// `keel resume` (or a daemon worker) could not continue the run: its recipe is gone, invalid, or
    /// it or its inputs changed. The run is marked failed with the reason.
    public static let resumeRefused = "resume-refused"
    public static let finished = "finished"
    /// `keel run --set`: the overrides as given, applied again by `keel resume` and `keel export`.
    public static let overrides = "overrides"
    /// A stop request (SIGTERM/SIGINT) ended the run after a checkpoint; it resumes from there.
    public static let stopped = "stopped"
    /// Every score a ranking data filter gave, one event per node: `ExampleScoresEvent`.
    public static let exampleScores = "example-scores"
    /// Greedy answers to held-out prompts at one step: `GenerationsEvent`.
    public static let generations = "generations"
    /// A checkpoint became complete: its step, bytes, the seconds the training thread was held up by it
    /// (`blocking_seconds`: `wait_seconds` for the previous write plus `stage_seconds` copying the state)
    /// and the seconds its background write took.
    public static let checkpoint = "checkpoint"
}

/// The `example-scores` event: which training examples a ranking filter kept, and every score it gave.
public struct ExampleScoresEvent: Codable, Equatable {
    public let node: String
    public let scores: [ExampleScore]
}

/// The `generations` event: the policy's greedy answers to held-out prompts at `step`.
public struct GenerationsEvent: Codable, Equatable {
    public let step: Int
    public let answers: [GeneratedAnswer]
}

/// The `checkpoint` event's message.
struct CheckpointEvent: Encodable {
    let step: Int
    let bytes: Int64
    let blockingSeconds: Double
    let waitSeconds: Double
    let stageSeconds: Double
    let writeSeconds: Double

    enum CodingKeys: String, CodingKey {
        case step, bytes, blockingSeconds = "blocking_seconds", waitSeconds = "wait_seconds", stageSeconds = "stage_seconds"
        case writeSeconds = "write_seconds"
    }
}

/// One run of the trainer, in the foreground, recorded in the store: `keel run` starts one, `keel resume`
/// continues one from its latest complete checkpoint. It is the trainer's observer: metrics go to the
/// store, checkpoints to `runs/<id>/checkpoints/step-N/`, progress to the display.
public final class TrainingRun: TrainingObserver {
    public let store: KeelStore
    public let runID: String
    public let layout: RunLayout
    let checkpoints: RunCheckpoints
    let display: ProgressDisplay
    /// `logging.tensorboard`: every recorded metric also goes to this event file, as it is recorded.
    let tensorBoard: TensorBoardEventWriter?
    private var lastHeartbeat = Date.distantPast
    private let checkpointWriter = BackgroundCheckpointWriter()
    let staging = CheckpointStaging()
    /// Seconds the training thread spent writing to SQLite and on checkpoints (waiting for the previous
    /// write, copying the state), reported as shares of the training time.
    public private(set) var storeSeconds = 0.0, checkpointSeconds = 0.0
    /// Optimizer steps per pass over the training data: the `epoch` metric is step / this (TRL's `epoch`).
    var stepsPerEpoch = 1
    /// Seconds the background thread spent writing checkpoints (not on the training thread's path).
    public var checkpointWriteSeconds: Double { checkpointWriter.busySeconds }

    init(store: KeelStore, runID: String, layout: RunLayout, keepCheckpoints: Int, display: ProgressDisplay,
         tensorBoard: TensorBoardEventWriter?) throws {
        self.store = store
        self.runID = runID
        self.layout = layout
        self.display = display
        self.tensorBoard = tensorBoard
        checkpoints = try RunCheckpoints(store: store, runID: runID, checkpointsDirectory: layout.checkpoints(runID), keepLast: keepCheckpoints)
    }

    /// `keel run`: a new run of the recipe at `recipePath` (changed by `overrides`); returns its id once
    /// it has completed. `runID`: use this id (e.g. one the daemon chose); a `queued` run row with it is
    /// taken over as is.
    @discardableResult
    public static func start(recipePath: String, overrides: [RecipeOverride] = [], layout: RunLayout, registry: PluginRegistry,
                             display: ProgressDisplay, runID chosenID: String? = nil) throws -> String {
        let url = URL(fileURLWithPath: recipePath).standardizedFileURL
        var loader = RecipeLoader(registry: registry, protecting: [layout.varDirectory])
        loader.overrides = overrides
        let graph = try loader.load(url, displayName: recipePath)
        let text = graph.recipe.text
        try trainRequirements(of: graph.recipe, layout: layout, registry: registry, display: display)
        let parts = try RunFingerprint.parts(recipe: graph.recipe, recipeText: text, overrides: overrides)
        let store = try KeelStore(path: layout.store)
        let runID = chosenID ?? RunID.make(recipeName: graph.recipe.outputName)
        if let existing = try store.run(runID) {
            guard existing.status == .queued else { throw TrainerError("run \(runID) already exists (\(existing.status.rawValue)); use keel resume") }
        } else {
            // A foreground run's output also goes to its own log, for `keel logs`.
            let log = layout.run(runID).appendingPathComponent(foregroundLogName)
            try store.createRun(NewRun(id: runID, recipePath: url.path, recipeText: text,
                                       fingerprint: RunFingerprint.combined(parts), fingerprintParts: parts, logPath: log.path))
            try display.tee(to: log)
            if !overrides.isEmpty { try store.recordEvent(runID, kind: RunEvent.overrides, overrides.map(\.text)) }
        }
        display.line("run \(runID)")
        try execute(store: store, runID: runID, graph: graph, layout: layout, display: display)
        return runID
    }

    /// `keel resume`: continues `runID` from its latest complete checkpoint (from step 0 if it has none).
    /// Refuses, naming each change, when the recipe, a data file or the model differs from what the run
    /// started with, unless `force` (then the changes are recorded as a `resume-forced` event).
    public static func resume(runID: String, layout: RunLayout, registry: PluginRegistry, force: Bool,
                              display: ProgressDisplay) throws {
        let store = try KeelStore(path: layout.store)
        guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
        if record.status == .completed { throw TrainerError("run \(runID) has already completed; nothing to resume") }
        if record.status == .running, let pid = record.pid, record.ownerIsAlive,
           let heartbeat = record.heartbeatAt, Date().timeIntervalSince(heartbeat) < 60 {
            throw TrainerError("run \(runID) is running (pid \(pid), last heartbeat \(Int(Date().timeIntervalSince(heartbeat))) s ago)")
        }
        let graph: PluginGraph
        do {
            guard FileManager.default.fileExists(atPath: record.recipePath) else {
                throw TrainerError("run \(runID): its recipe \(record.recipePath) no longer exists")
            }
            let url = URL(fileURLWithPath: record.recipePath)
            let loader = try recipeLoader(of: runID, store: store, registry: registry, layout: layout)
            graph = try loader.load(url, displayName: record.recipePath)
            let changes = RunFingerprint.differences(recorded: record.fingerprintParts,
                                                     current: try RunFingerprint.parts(recipe: graph.recipe, recipeText: graph.recipe.text,
                                                                                       overrides: loader.overrides))
            if !changes.isEmpty {
                guard force else {
                    throw TrainerError("refusing to resume run \(runID): what it trained has changed since it started:\n  "
                                       + changes.joined(separator: "\n  ") + "\n(keel resume \(runID) --force continues anyway, with the current files)")
                }
                try store.recordEvent(runID, kind: RunEvent.resumeForced, ["changes": changes])
                display.line("resuming despite changes (--force):\n  " + changes.joined(separator: "\n  "))
            }
        } catch {
            // Recorded, so that nobody retries it blindly: the daemon leaves a failed run alone, and
            // `keel resume --force` still continues it.
            try store.recordEvent(runID, kind: RunEvent.resumeRefused, ["error": "\(error)"])
            try store.setStatus(runID, .failed, error: "\(error)")
            throw error
        }
        try trainRequirements(of: graph.recipe, layout: layout, registry: registry, display: display)
        if let log = record.logPath, (log as NSString).lastPathComponent == foregroundLogName {
            try display.tee(to: URL(fileURLWithPath: log))
        }
        display.line("resume \(runID)")
        try execute(store: store, runID: runID, graph: graph, layout: layout, display: display)
    }

    /// The trainer of `runID` at its latest complete checkpoint, built from its recipe with the run's
    /// `--set` overrides and `extraOverrides` (which must not change what was trained), e.g. to evaluate
    /// what the run trained (`keel eval`).
    public static func restoredTrainer(runID: String, layout: RunLayout, registry: PluginRegistry,
                                       extraOverrides: [RecipeOverride] = [], log: @escaping (String) -> Void) throws -> Trainer {
        let store = try KeelStore(path: layout.store)
        guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
        var loader = try recipeLoader(of: runID, store: store, registry: registry, layout: layout)
        loader.overrides += extraOverrides
        let graph = try loader.load(URL(fileURLWithPath: record.recipePath), displayName: record.recipePath)
        let trainer = try Trainer(graph: graph, log: log)
        let checkpoints = try RunCheckpoints(store: store, runID: runID, checkpointsDirectory: layout.checkpoints(runID),
                                             keepLast: graph.recipe.trainingConfig.keepCheckpoints)
        guard let checkpoint = try checkpoints.latest() else { throw TrainerError("run \(runID) has no complete checkpoint") }
        try trainer.restore(from: checkpoint)
        return trainer
    }

    /// The log of a `keel run` in its run folder (a daemon worker's is `worker.log`).
    public static let foregroundLogName = "run.log"

    /// A loader that applies the `--set` overrides `runID` was started with.
    public static func recipeLoader(of runID: String, store: KeelStore, registry: PluginRegistry, layout: RunLayout) throws -> RecipeLoader {
        var loader = RecipeLoader(registry: registry, protecting: [layout.varDirectory])
        if let event = try store.events(runID).last(where: { $0.kind == RunEvent.overrides }) {
            loader.overrides = try JSONDecoder().decode([String].self, from: Data(event.message.utf8)).map(RecipeOverride.init)
        }
        return loader
    }

    /// Trains first, in the foreground, each recipe of `requires:` whose output folder does not exist yet
    /// (a required recipe's own requirements before it).
    static func trainRequirements(of recipe: Recipe, layout: RunLayout, registry: PluginRegistry, display: ProgressDisplay) throws {
        for requirement in recipe.requirements {
            guard let missing = requirement.missingOutput else { continue }
            display.line("\(recipe.file) requires \(requirement.displayName), whose output \(missing.path) does not exist yet: training it first")
            try start(recipePath: requirement.file.path, layout: layout, registry: registry, display: display)
        }
    }

    /// Prepares the trainer, restores the latest checkpoint if any, trains, exports; the run's status
    /// follows (running → completed, or failed with the error text).
    private static func execute(store: KeelStore, runID: String, graph: PluginGraph, layout: RunLayout,
                                display: ProgressDisplay) throws {
        let pid = ProcessInfo.processInfo.processIdentifier
        var run: TrainingRun?
        do {
            try store.setStatus(runID, .running)
            try store.heartbeat(runID, pid: pid)
            if let problem = try MemoryEstimate.of(graph.recipe).problem() { throw TrainerError(problem) }
            let trainer = try Trainer(graph: graph, log: display.line)
            try store.setTotalSteps(runID, trainer.totalSteps)
            try store.recordEvent(runID, kind: RunEvent.data, trainer.dataReports.map(DataReportEvent.init))
            for report in trainer.dataReports { display.line(DataReportEvent(report).summary) }
            for report in trainer.dataReports where !report.exampleScores.isEmpty {
                try store.recordEvent(runID, kind: RunEvent.exampleScores, ExampleScoresEvent(node: report.node, scores: report.exampleScores))
            }
            let tensorBoard = try graph.recipe.tensorBoardDirectory.map { try TensorBoardEventWriter(directory: $0.appendingPathComponent(runID)) }
            let training = try TrainingRun(store: store, runID: runID, layout: layout,
                                           keepCheckpoints: graph.recipe.trainingConfig.keepCheckpoints, display: display,
                                           tensorBoard: tensorBoard)
            run = training
            try training.checkpoints.recoverAfterCrash()
            if let checkpoint = try training.checkpoints.latest() {
                try trainer.restore(from: checkpoint)
                try store.recordEvent(runID, kind: RunEvent.resumed, ["step": checkpoint.step])
                display.line("continuing from checkpoint step \(checkpoint.step) of \(trainer.totalSteps)")
            }
            // Staging the start state allocates (and faults in) the staging buffers now, so that a
            // checkpoint in the loop costs only the copy (SmolLM2: 1.6 GB of fresh pages took seconds).
            _ = try trainer.checkpointFiles(staging: training.staging)
            training.stepsPerEpoch = graph.recipe.trainingConfig.stepsPerEpoch(trainExamples: trainer.trainPairs.count)
            display.begin(totalSteps: trainer.totalSteps, fromStep: trainer.step)
            let started = Date()
            try trainer.train(observer: training)
            let trainSeconds = Date().timeIntervalSince(started)
            display.end()
            // The export overlaps the final checkpoint's background write (the weights no longer change).
            try export(trainer.policy, providers: trainer.signalProviders.map(\.provider),
                       parameters: Dictionary(uniqueKeysWithValues: trainer.signalRun.trainable.map { ($0.name, $0.tensor) }),
                       tokenizer: trainer.tokenizer, to: layout.export(runID))
            try ExportDestination.mark(layout.export(runID), runID: runID)
            if let copy = graph.recipe.exportCopyDirectory {
                try ExportDestination.replace(copy, with: layout.export(runID), runID: runID,
                                              protected: [graph.recipe.directory, layout.varDirectory], key: "output.dir")
                display.line("model exported to \(copy.path) too (output.dir)")
            }
            if let referenceCopy = graph.recipe.referenceExportDirectory, let reference = trainer.reference {
                try export(reference, tokenizer: trainer.tokenizer, to: layout.referenceExport(runID))
                try ExportDestination.mark(layout.referenceExport(runID), runID: runID)
                try ExportDestination.replace(referenceCopy, with: layout.referenceExport(runID), runID: runID,
                                              protected: [graph.recipe.directory, layout.varDirectory], key: "output.reference_dir")
                display.line("reference model exported to \(referenceCopy.path) (output.reference_dir)")
            }
            if let report = try GenerationReport(store: store, runID: runID) {
                try Data(report.markdown.utf8).write(to: layout.report(runID), options: .atomic)
                display.line(report.summary + "; answers in " + layout.report(runID).path)
            }
            let waitStarted = Date()
            try training.finishCheckpointWrites()
            let finalWaitSeconds = Date().timeIntervalSince(waitStarted)
            let (storeShare, checkpointShare) = (training.storeSeconds / max(trainSeconds, 1e-9), training.checkpointSeconds / max(trainSeconds, 1e-9))
            try store.recordEvent(runID, kind: RunEvent.finished, [
                "train_seconds": trainSeconds, "store_seconds": training.storeSeconds, "checkpoint_seconds": training.checkpointSeconds,
                "checkpoint_write_seconds": training.checkpointWriteSeconds, "final_checkpoint_wait_seconds": finalWaitSeconds,
            ])
            try store.setStatus(runID, .completed)
            display.line(String(format: "done: %d steps in %.1f s (SQLite %.2f%%, checkpoints %.2f%% of it; checkpoint writes %.1f s in the background); model in %@",
                                trainer.totalSteps, trainSeconds, 100 * storeShare, 100 * checkpointShare, training.checkpointWriteSeconds,
                                layout.export(runID).path)
                         + (storeShare + checkpointShare > 0.25 ? " — bookkeeping is a large share; raise checkpoint_every/log_every" : ""))
        } catch let stopped as TrainingStopped {
            display.end()
            do {
                try run?.finishCheckpointWrites()
            } catch {
                try? store.setStatus(runID, .failed, error: "\(error)")
                throw error
            }
            try store.setStatus(runID, .interrupted)
            try store.recordEvent(runID, kind: RunEvent.stopped, ["step": stopped.step])
            display.line("\(stopped); continue with `keel resume \(runID)`")
        } catch {
            display.end()
            // A checkpoint already handed to the writer still becomes complete (resume starts there).
            try? run?.finishCheckpointWrites()
            try? store.setStatus(runID, .failed, error: "\(error)")
            throw error
        }
    }

    /// Writes `model` and its tokenizer as a Hugging Face folder: as the first of the run's signal
    /// `providers` that exports the model writes it (with `parameters`, those the providers trained),
    /// else as a causal LM.
    public static func export(_ model: LlamaModel, providers: [any SignalProvider] = [], parameters: [String: Tensor] = [:],
                              tokenizer: BPETokenizer, to directory: URL) throws {
        if try !providers.contains(where: { try $0.exportModel(model, parameters: parameters, to: directory) }) {
            try model.weights().saveHuggingFace(to: directory)
        }
        try tokenizer.writeHuggingFaceFiles(to: directory)
    }

    /// `keel export`: the latest complete checkpoint of `runID` as a Hugging Face folder at `directory`.
    public static func export(runID: String, layout: RunLayout, registry: PluginRegistry, to directory: URL) throws {
        let store = try KeelStore(path: layout.store)
        guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
        let checkpoints = try RunCheckpoints(store: store, runID: runID, checkpointsDirectory: layout.checkpoints(runID), keepLast: 1)
        guard let checkpoint = try checkpoints.latest() else { throw TrainerError("run \(runID) has no complete checkpoint to export") }
        let graph = try recipeLoader(of: runID, store: store, registry: registry, layout: layout)
            .load(URL(fileURLWithPath: record.recipePath), displayName: record.recipePath)
        let recipe = graph.recipe
        let model = try ModelLoading.model(recipe.model, maxLength: recipe.trainingConfig.maxLength)
        let weights = try checkpoint.url(of: TrainerCheckpointFile.model)
        try ModelLoading.load(model.parameters, from: weights)
        // The checkpoint's tensors beyond the policy's are those signal providers trained.
        let file = try SafeTensorsFile(path: weights.path)
        var parameters: [String: Tensor] = [:]
        for info in file.tensors where model.parameters[info.name] == nil { parameters[info.name] = try file.load(info.name) }
        try export(model, providers: try graph.signalProviders.map { try $0.instantiate() }, parameters: parameters,
                   tokenizer: try ModelLoading.tokenizer(recipe.model), to: directory)
    }

    // MARK: TrainingObserver

    public func record(step: Int, split: MetricSplit, metrics: [String: Double]) throws {
        var metrics = metrics
        if split == .train { metrics[TrainMetric.epoch] = Double(step) / Double(max(stepsPerEpoch, 1)) }
        let started = Date()
        try store.recordMetrics(runID, step: step, split: split, metrics)
        try tensorBoard?.write(step: step, split: split, metrics: metrics.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) })
        storeSeconds += Date().timeIntervalSince(started)
        display.record(step: step, split: split, metrics: metrics)
    }

    public func generations(step: Int, _ answers: [GeneratedAnswer]) throws {
        try store.recordEvent(runID, kind: RunEvent.generations, GenerationsEvent(step: step, answers: answers))
    }

    /// Stages the state on the training thread (after the previous write, if still in flight, is done)
    /// and writes it in the background: files, hashes, fsync, rename, then the store's completion mark
    /// and the `checkpoint` event. A crash before the mark leaves debris that resume ignores.
    public func checkpoint(_ trainer: Trainer) throws {
        let started = Date()
        try checkpointWriter.wait()
        let waitSeconds = Date().timeIntervalSince(started)
        let step = trainer.step
        let files = try trainer.checkpointFiles(staging: staging)
        let stageSeconds = Date().timeIntervalSince(started) - waitSeconds
        checkpointSeconds += waitSeconds + stageSeconds
        try checkpointWriter.start { [checkpoints, store, runID] in
            let writeStarted = Date()
            let completed = try checkpoints.save(step: step, files: files)
            try store.recordEvent(runID, kind: RunEvent.checkpoint, CheckpointEvent(
                step: step, bytes: completed.bytes, blockingSeconds: waitSeconds + stageSeconds,
                waitSeconds: waitSeconds, stageSeconds: stageSeconds,
                writeSeconds: Date().timeIntervalSince(writeStarted)))
        }
        let heartbeatStarted = Date()
        try heartbeat(step: step)
        storeSeconds += Date().timeIntervalSince(heartbeatStarted)
    }

    /// Waits for the checkpoint write in flight; throws if it failed. Call before the run ends.
    func finishCheckpointWrites() throws {
        try checkpointWriter.wait()
    }

    /// Heartbeats at most every 2 s, so that a slow run with a long `log_every` still looks alive to the
    /// daemon (which marks runs without heartbeats as interrupted).
    public func stepCompleted(_ step: Int) throws {
        defer { FaultInjection.afterStep(step, settleCheckpoints: checkpointWriter.waitUntilIdle) }
        guard Date().timeIntervalSince(lastHeartbeat) >= 2 else { return }
        let started = Date()
        try heartbeat(step: step)
        storeSeconds += Date().timeIntervalSince(started)
    }

    private func heartbeat(step: Int) throws {
        try store.heartbeat(runID, pid: ProcessInfo.processInfo.processIdentifier, step: step)
        lastHeartbeat = Date()
    }
}

/// A data node's report as stored in the `data` event.
struct DataReportEvent: Codable {
    let node: String
    let produced: Int
    let skipped: [String: Int]
    let flagged: [String: Int]
    let metrics: [String: Double]

    init(_ report: DataNodeReport) {
        (node, produced, skipped, flagged, metrics) = (report.node, report.produced, report.skipped, report.flagged, report.metrics)
    }

    var summary: String {
        func list<V>(_ d: [String: V]) -> String { d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
        var text = "\(node): \(produced)"
        if !skipped.isEmpty { text += "; skipped \(list(skipped))" }
        if !flagged.isEmpty { text += "; flagged \(list(flagged))" }
        if !metrics.isEmpty { text += "; " + list(metrics.mapValues { String(format: "%.4g", $0) }) }
        return text
    }
}
