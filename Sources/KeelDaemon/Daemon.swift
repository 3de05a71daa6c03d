import Foundation
import Glibc
import KeelCore

/// What `keel daemon` is told.
public struct DaemonConfiguration: Sendable {
    public var recipesDirectory: URL
    public var varDirectory: URL
    /// At most this many workers train at once.
    public var workers = 1
    /// Exit once nothing is queued, running or waiting to resume (CI, tests, a first run of main.sh).
    public var exitWhenIdle = false
    /// The program started as `<workerExecutable> worker RUN --var DIR`: the daemon's own executable.
    public var workerExecutable = "/proc/self/exe"
    /// On SIGTERM/SIGINT, how long workers get to stop after their SIGTERM before they are SIGKILLed.
    /// The daemon exits within this bound plus the time to reap them (well under a second).
    public var stopTimeout: TimeInterval = 20
    /// A run whose worker is SIGKILLed from outside this often is failed instead of resumed again.
    public var maxExternalKills = 3
    /// A file found by the start-up scan that changed this recently may still be being written: it is
    /// looked at again after this delay (its close, if it comes, reports it anyway).
    public var settleTime: TimeInterval = 1
    /// How often each running run's progress (step, loss, rate, ETA) is printed, one line per run; 0 = never.
    public var progressInterval: TimeInterval = 30

    public init(recipesDirectory: URL, varDirectory: URL) {
        self.recipesDirectory = recipesDirectory.standardizedFileURL
        self.varDirectory = varDirectory.standardizedFileURL
    }
}

/// The daemon: watches the recipes folder, queues each new recipe version durably in SQLite, runs the
/// queue in `keel worker` child processes (at most `workers` at once), and survives restarts.
///
/// One thread (the caller of `run`) owns all state; the watcher thread and the signal handlers only
/// append to the inbox / set flags and wake it. Durable state lives in the store, so a restart after
/// any kind of death reconstructs everything: queued entries are still queued, runs left `running`
/// without a live worker become `interrupted`, and `interrupted` runs of the queue are resumed by new
/// workers from their latest complete checkpoint (`TrainingRun.resume`).
///
/// States: a recipe version's queue entry goes queued → running (a worker owns it, or it waits to be
/// resumed) → done | cancelled, or straight to rejected; its run goes queued → running (set by the
/// worker) → completed | failed | cancelled, or → interrupted → running again.
public final class Daemon: @unchecked Sendable {
    public let configuration: DaemonConfiguration
    public let layout: RunLayout
    /// The plugins a recipe may use, asked for each time one is validated (custom plugins can appear).
    let registry: () -> PluginRegistry
    let log: (String) -> Void

    private var store: KeelStore!
    private var workers: [String: (worker: WorkerProcess, entry: Int64)] = [:]
    /// Workers of a previous daemon still alive at start (they exit when they see their parent gone):
    /// their runs are resumed once they are.
    private var orphans: [String: Int32] = [:]
    /// Files from the start-up scan too fresh to read, and when to look again.
    private var unsettled: [URL: Date] = [:]
    private var lastProgress = Date()

    // Shared with the watcher thread and signal handlers.
    private let inboxLock = NSLock()
    private var inbox: [(url: URL, kind: RecipeWatcher.EventKind, time: Date)] = []
    private var watcherFailure: Error?
    private var stopSignal: Int32?
    private let wake = DispatchSemaphore(value: 0)

    public init(configuration: DaemonConfiguration, registry: @escaping () -> PluginRegistry, log: @escaping (String) -> Void) {
        self.configuration = configuration
        self.layout = RunLayout(varDirectory: configuration.varDirectory)
        self.registry = registry
        self.log = log
    }

    /// Asks the loop to stop as on SIGTERM (callable from any thread).
    public func requestStop(signal: Int32 = SIGTERM) {
        inboxLock.lock()
        stopSignal = stopSignal ?? signal
        inboxLock.unlock()
        wake.signal()
    }

    /// Runs until SIGTERM/SIGINT (or `requestStop`), or until idle with `exitWhenIdle`. Throws if another
    /// daemon holds `var/`, the recipes folder cannot be watched, or the store fails.
    public func run() throws {
        guard configuration.workers >= 1 else { throw DaemonError("--workers must be at least 1, got \(configuration.workers)") }
        let lock = try InstanceLock(varDirectory: configuration.varDirectory)
        defer { lock.release() }
        store = try KeelStore(path: layout.store)
        let signalSources = installSignalHandlers()
        defer { signalSources.forEach { $0.cancel() } }

        try store.recordEvent(nil, kind: DaemonEvent.daemonStarted, [
            "pid": "\(getpid())", "recipes": configuration.recipesDirectory.path, "workers": "\(configuration.workers)",
        ])
        log("keel daemon \(Keel.version): pid \(getpid()), watching \(configuration.recipesDirectory.path), "
            + "var \(configuration.varDirectory.path), \(configuration.workers) worker\(configuration.workers == 1 ? "" : "s")")
        try recoverAfterRestart()

        let watcher = RecipeWatcher(directory: configuration.recipesDirectory, onEvent: { [self] url, kind in
            inboxLock.lock()
            inbox.append((url, kind, Date()))
            inboxLock.unlock()
            wake.signal()
        }, onFailure: { [self] error in
            inboxLock.lock()
            watcherFailure = error
            inboxLock.unlock()
            wake.signal()
        })
        try watcher.start()
        defer { watcher.stop() }

        do {
            try serve(watcher)
        } catch {
            // Workers must not outlive the daemon's failure unsupervised (they would notice anyway).
            watcher.stop()
            if !workers.isEmpty { try? shutdown(reason: "error: \(error)") }
            throw error
        }
    }

    /// The loop: returns on SIGTERM/SIGINT (after `shutdown`) or when idle with `exitWhenIdle`.
    private func serve(_ watcher: RecipeWatcher) throws {
        while true {
            inboxLock.lock()
            let (events, failure, stop) = (inbox, watcherFailure, stopSignal)
            inbox = []
            inboxLock.unlock()
            if let stop {
                watcher.stop()
                return try shutdown(reason: "received \(stop == SIGINT ? "SIGINT" : "SIGTERM")")
            }
            if let failure { throw failure }
            for event in events { try handle(event.url, event.kind, at: event.time) }
            try revisitUnsettled()
            try reapWorkers()
            try checkOrphans()
            try dispatch()
            try reportProgress()
            if configuration.exitWhenIdle, try isIdle() {
                log("idle: nothing queued, running or waiting to resume; exiting (--exit-when-idle)")
                try store.recordEvent(nil, kind: DaemonEvent.daemonStopped, ["reason": "idle"])
                return
            }
            _ = wake.wait(timeout: .now() + .milliseconds(orphans.isEmpty && unsettled.isEmpty ? 500 : 100))
        }
    }

    /// SIGTERM/SIGINT stop the loop; SIGCHLD wakes it to reap a worker at once. Dispatch sources need
    /// the default action off (SIG_IGN); workers get the defaults back (`WorkerProcess`).
    private func installSignalHandlers() -> [DispatchSourceSignal] {
        let queue = DispatchQueue(label: "keel.daemon.signals")
        return [SIGTERM, SIGINT, SIGCHLD].map { number in
            if number != SIGCHLD { signal(number, SIG_IGN) }
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [self] in
                if number == SIGCHLD { wake.signal() } else { requestStop(signal: number) }
            }
            source.resume()
            return source
        }
    }

    // MARK: Recipe files → queue

    private func handle(_ url: URL, _ kind: RecipeWatcher.EventKind, at time: Date) throws {
        switch kind {
        case .removed:
            unsettled[url] = nil
            for runID in try store.cancelQueuedRecipes(path: url.path, reason: "its recipe file \(url.path) was removed") {
                log("\(runID): cancelled (recipe file removed)")
            }
        case .existing:
            let modified = (try? FileManager.default.attributesOfItem(atPath: url.path)[.modificationDate]) as? Date
            if let modified, Date().timeIntervalSince(modified) < configuration.settleTime {
                unsettled[url] = Date().addingTimeInterval(configuration.settleTime)
            } else {
                try consider(url, seenAt: time)
            }
        case .written:
            unsettled[url] = nil
            try consider(url, seenAt: time)
        }
    }

    private func revisitUnsettled() throws {
        let now = Date()
        for (url, due) in unsettled where due <= now {
            unsettled[url] = nil
            try handle(url, .existing, at: now)
        }
    }

    /// Queues the file's current content unless this exact version is already known (a touch, a
    /// rescan, a restart). An invalid version becomes a `rejected` run with every error; a valid one a
    /// `queued` run, and it supersedes any still-queued older version of the same file. What is not a
    /// readable recipe (a folder, a FIFO, a device, a dangling or looping link, a link out of the watched
    /// folder, a file over the size limit) is rejected the same way, once, without reading it whole.
    private func consider(_ url: URL, seenAt: Date) throws {
        let source: RecipeSource
        do {
            try checkLinkStaysInside(url)
            source = try RecipeSource.read(url, displayName: url.path, maxBytes: YAMLParser().maxBytes)
        } catch let refusal as YAMLError {
            var status = stat()
            guard lstat(url.path, &status) == 0 else { return }  // gone again
            let (entry, inserted) = try store.enqueueRecipe(path: url.path, contentSHA256: SHA256.hex(of: Data(refusal.message.utf8)), at: seenAt)
            if inserted { try reject(url, entry: entry, text: "", message: refusal.description, seenAt: seenAt) }
            return
        }
        let (entry, inserted) = try store.enqueueRecipe(path: url.path, contentSHA256: SHA256.hex(of: Data(source.bytes)), at: seenAt)
        guard inserted else { return }
        for runID in try store.cancelQueuedRecipes(path: url.path, keeping: entry.id,
                                                   reason: "superseded by a newer version of \(url.path)") {
            log("\(runID): cancelled (superseded by a newer version of its recipe)")
        }
        let logPath: (String) -> String = { [layout] in layout.run($0).appendingPathComponent(Self.workerLogName).path }
        let (registry, protected) = (registry, [configuration.recipesDirectory, configuration.varDirectory])
        // Validation and the fingerprint's hashes of the model and data files (most of the latency for a
        // real model: ~1 s for the 98 MB SmolLM2 GGUF, recorded in the `queued` event) grow with the
        // inputs, so they run off the loop.
        guard let intake = try offLoop({ () -> (graph: PluginGraph, parts: [String: String], milliseconds: Double) in
            let graph = try RecipeLoader(registry: registry(), protecting: protected).load(source, from: url, displayName: url.path)
            let hashingStarted = Date()
            let parts = try RunFingerprint.parts(recipe: graph.recipe, recipeText: graph.recipe.text)
            return (graph, parts, (Date().timeIntervalSince(hashingStarted) * 1000).rounded())
        }) else { return }
        do {
            let (graph, parts, fingerprintMilliseconds) = try intake.get()
            let runID = RunID.make(recipeName: graph.recipe.outputName)
            // One transaction: a run row exists exactly when its queue entry names it.
            try store.database.transaction {
                try store.createRun(NewRun(id: runID, recipePath: url.path, recipeText: graph.recipe.text, fingerprint: RunFingerprint.combined(parts),
                                           fingerprintParts: parts, logPath: logPath(runID)), at: seenAt)
                try store.setRecipeState(entry.id, .queued, runID: runID)
                try store.recordEvent(runID, kind: DaemonEvent.queued, [
                    "recipe": url.path, "sha256": entry.contentSHA256, "fingerprint_ms": "\(fingerprintMilliseconds)",
                ])
            }
            log("\(runID): queued \(url.lastPathComponent)")
        } catch {
            try reject(url, entry: entry, text: source.text, message: "\(error)", seenAt: seenAt)
        }
    }

    /// Runs `work` on a thread of its own while the loop goes on reaping workers and answering SIGTERM
    /// (it starts none meanwhile: the entry being validated has no run yet); nil if a stop was requested
    /// first (the result is then dropped, and the queue entry left without a run is forgotten at the
    /// next start, whose scan queues the file again).
    private func offLoop<T>(_ work: @escaping () throws -> T) throws -> Result<T, Error>? {
        let outcome = OffLoopOutcome<T>()
        guard !isStopRequested else { return nil }
        let thread = Thread {
            outcome.set(Result { try work() })
            self.wake.signal()
        }
        thread.name = "keel.daemon.intake"
        thread.start()
        while true {
            if let result = outcome.get() { return result }
            if isStopRequested { return nil }
            try reapWorkers()
            try checkOrphans()
            _ = wake.wait(timeout: .now() + .milliseconds(100))
        }
    }

    private var isStopRequested: Bool {
        inboxLock.lock()
        defer { inboxLock.unlock() }
        return stopSignal != nil
    }

    /// A recipe in the watched folder may be a symbolic link only to a file inside that folder: a link
    /// elsewhere (`/etc/shadow`) is not read at all.
    private func checkLinkStaysInside(_ url: URL) throws {
        var status = stat()
        guard lstat(url.path, &status) == 0, status.st_mode & S_IFMT == S_IFLNK,
              let resolved = realpath(url.path, nil) else { return }  // not a link, or dangling/looping: the read says so
        defer { free(resolved) }
        let target = String(cString: resolved)
        let folder = configuration.recipesDirectory.resolvingSymlinksInPath().path
        guard !target.hasPrefix(folder + "/") else { return }
        throw YAMLError(file: url.path, mark: Mark(line: 1, column: 1),
                        message: "found a symbolic link to \(target), outside the watched folder; expected a recipe file in \(folder)")
    }

    /// Records a recipe version that cannot run: a `rejected` run holding `message`.
    private func reject(_ url: URL, entry: QueuedRecipe, text: String, message: String, seenAt: Date) throws {
        let runID = RunID.make(recipeName: url.deletingPathExtension().lastPathComponent)
        try store.database.transaction {
            try store.createRun(NewRun(id: runID, recipePath: url.path, recipeText: text, fingerprint: entry.contentSHA256,
                                       fingerprintParts: ["recipe": entry.contentSHA256]), status: .rejected, at: seenAt)
            try store.setStatus(runID, .rejected, error: message)
            try store.setRecipeState(entry.id, .rejected, runID: runID, error: message)
            try store.recordEvent(runID, kind: DaemonEvent.rejected, ["recipe": url.path, "error": message])
        }
        log("\(runID): rejected \(url.lastPathComponent):\n\(message)")
    }

    // MARK: Queue → workers

    public static let workerLogName = "worker.log"

    /// Starts workers while there is room: first for runs of the queue waiting to resume, then for the
    /// oldest queued entry.
    private func dispatch() throws {
        while workers.count < configuration.workers {
            let waiting = try store.queuedRecipes(state: .running).lazy.compactMap { [self] entry -> (QueuedRecipe, RunRecord)? in
                guard let runID = entry.runID, workers[runID] == nil, orphans[runID] == nil,
                      let run = try? store.run(runID), run.status == .interrupted || run.status == .queued else { return nil }
                return (entry, run)
            }.first
            if let waiting {
                try spawn(waiting.0, waiting.1)
            } else if let entry = try store.claimNextRecipe() {
                guard let runID = entry.runID, let run = try store.run(runID), run.status == .queued else {
                    try store.setRecipeState(entry.id, .cancelled, error: "its run is no longer queued")
                    continue
                }
                try spawn(entry, run)
            } else {
                return
            }
        }
    }

    private func spawn(_ entry: QueuedRecipe, _ run: RunRecord) throws {
        let logURL = URL(fileURLWithPath: run.logPath ?? layout.run(run.id).appendingPathComponent(Self.workerLogName).path)
        let isFirst = run.status == .queued && run.startedAt == nil
        try FileManager.default.createDirectory(at: logURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        Self.append("=== \(Self.timestamp()) keel daemon: \(isFirst ? "starting" : "resuming") \(run.id)\n", to: logURL)
        let worker = try WorkerProcess(runID: run.id, executable: configuration.workerExecutable,
                                       arguments: ["worker", run.id, "--var", configuration.varDirectory.path], logURL: logURL)
        workers[run.id] = (worker, entry.id)
        try store.heartbeat(run.id, pid: worker.pid, at: worker.startedAt)
        var message = ["pid": Double(worker.pid)]
        if isFirst { message["latency_ms"] = (worker.startedAt.timeIntervalSince(entry.seenAt) * 1000).rounded() }
        try store.recordEvent(run.id, kind: DaemonEvent.dispatched, message)
        log("\(run.id): worker \(worker.pid) \(isFirst ? "started" : "resuming")"
            + (message["latency_ms"].map { String(format: " (%.0f ms after the recipe arrived)", $0) } ?? ""))
    }

    private func reapWorkers() throws {
        for (runID, active) in workers {
            guard let exit = active.worker.poll() else { continue }
            workers[runID] = nil
            try finish(active.worker, entry: active.entry, exit: exit)
        }
    }

    /// Records how a worker ended and settles its run: completed/failed as the worker left it, cancelled
    /// if asked, interrupted (to resume) if it was stopped or SIGKILLed, failed with the cause otherwise.
    private func finish(_ worker: WorkerProcess, entry: Int64, exit: WorkerExit) throws {
        let runID = worker.runID
        try store.recordEvent(runID, kind: DaemonEvent.workerExited, [
            "pid": "\(worker.pid)", "exit": exit.description,
            "seconds": String(format: "%.3f", Date().timeIntervalSince(worker.startedAt)),
        ])
        guard let run = try store.run(runID) else { return }
        let externalKill = exit == .signalled(SIGKILL) && !worker.stopSignalSent
        let resumesAfterKill = externalKill ? try store.externalKillCount(runID) < configuration.maxExternalKills : false
        if run.status == .completed {
            try store.setRecipeState(entry, .done)
            let report = layout.report(runID)
            log("\(runID): completed; model in \(layout.export(runID).path)"
                + (FileManager.default.fileExists(atPath: report.path) ? ", before/after answers in \(report.path)" : ""))
        } else if try store.isCancelRequested(runID) {
            if !run.status.isFinished || run.status == .interrupted { try store.setStatus(runID, .cancelled, error: "cancelled (keel cancel)") }
            try store.setRecipeState(entry, .cancelled, error: "cancelled (keel cancel)")
            log("\(runID): cancelled")
        } else if run.status == .failed {
            try store.setRecipeState(entry, .done)
            log("\(runID): failed: \(run.error ?? exit.description)")
        } else if worker.stopSignalSent || resumesAfterKill || run.status == .interrupted && exit == .exited(code: 0) {
            // A worker that failed without settling its run (exit status ≠ 0) is not restarted: it
            // would fail the same way again, as fast as it can be spawned.
            if run.status != .interrupted { try store.setStatus(runID, .interrupted) }
            try store.recordEvent(runID, kind: DaemonEvent.interrupted, InterruptionEvent(
                cause: "worker \(exit) at step \(run.currentStep)", externalKill: externalKill))
            log("\(runID): interrupted at step \(run.currentStep) (worker \(exit)); it resumes from its latest complete checkpoint")
        } else {
            var error = "worker \(worker.pid) \(exit)"
            if externalKill { error += " for the \(configuration.maxExternalKills + 1)th time; not resuming it again" }
            let output = worker.outputBeforeCrash()
            error += output.isEmpty ? "; it printed nothing (\(worker.logURL.path))"
                                    : "\nits last output (all of it, with any backtrace, in \(worker.logURL.path)):\n\(output)"
            try store.setStatus(runID, .failed, error: error)
            try store.setRecipeState(entry, .done, error: error)
            log("\(runID): failed: \(error)")
        }
    }

    // MARK: Progress

    /// Every `progressInterval`, one line per run a worker is training, from what it last recorded.
    private func reportProgress() throws {
        guard configuration.progressInterval > 0, !workers.isEmpty,
              Date().timeIntervalSince(lastProgress) >= configuration.progressInterval else { return }
        lastProgress = Date()
        for runID in workers.keys.sorted() {
            guard let summary = try store.runSummary(runID) else { continue }
            log(Self.progressLine(summary))
        }
    }

    /// `RUN: step 12/72 loss 0.6512 4.10 s/step 210 tok/s ETA 4:05`, or what it is doing before its first step.
    static func progressLine(_ summary: RunSummary) -> String {
        let run = summary.run
        guard let train = summary.latestTrain?.values else {
            return "\(run.id): preparing (model, data\(run.totalSteps.map { "; \($0) steps to train" } ?? ""))"
        }
        var line = "\(run.id): step \(run.currentStep)/\(run.totalSteps.map(String.init) ?? "?")"
        if let loss = train[TrainMetric.loss] { line += String(format: " loss %.4g", loss) }
        if let seconds = train[TrainMetric.stepTime] { line += String(format: " %.2f s/step", seconds) }
        if let tokens = train[TrainMetric.tokensPerSecond] { line += String(format: " %.0f tok/s", tokens) }
        if let eta = summary.etaSeconds { line += " ETA \(ProgressDisplay.duration(eta))" }
        return line
    }

    // MARK: Restarts and shutdown

    /// Settles what the previous daemon left: half-queued entries are forgotten (the scan queues their
    /// files again), runs of the queue still `running` become `interrupted` unless their worker is alive.
    private func recoverAfterRestart() throws {
        try store.forgetHalfQueuedRecipes()
        for entry in try store.queuedRecipes(state: .running) {
            guard let runID = entry.runID, let run = try store.run(runID) else { continue }
            switch run.status {
            case .completed, .failed, .rejected: try store.setRecipeState(entry.id, .done)
            case .cancelled: try store.setRecipeState(entry.id, .cancelled)
            case .interrupted: break
            case .queued, .running:
                if let pid = run.pid, isWorkerAlive(pid: pid, runID: runID) {
                    orphans[runID] = pid
                    log("\(runID): worker \(pid) of the previous daemon is still alive; waiting for it to exit")
                } else {
                    try markOrphanInterrupted(run)
                }
            }
        }
    }

    private func checkOrphans() throws {
        for (runID, pid) in orphans where !isWorkerAlive(pid: pid, runID: runID) {
            orphans[runID] = nil
            if let run = try store.run(runID) { try markOrphanInterrupted(run) }
        }
    }

    private func markOrphanInterrupted(_ run: RunRecord) throws {
        guard run.status == .running || run.status == .queued && run.pid != nil else { return }
        if try store.isCancelRequested(run.id) {
            _ = try store.cancelWaitingRun(run.id, reason: "cancelled (keel cancel)")
            if run.status == .running {
                try store.setStatus(run.id, .cancelled, error: "cancelled (keel cancel)")
                if let entry = try store.queueEntry(runID: run.id) { try store.setRecipeState(entry.id, .cancelled) }
            }
            return
        }
        if run.status == .running { try store.setStatus(run.id, .interrupted) }
        try store.recordEvent(run.id, kind: DaemonEvent.interrupted, InterruptionEvent(
            cause: "no live worker at step \(run.currentStep) (the daemon or its worker was killed)", externalKill: false))
        log("\(run.id): found without a live worker at step \(run.currentStep); it resumes from its latest complete checkpoint")
    }

    /// SIGTERM to every worker, up to `stopTimeout` for them to exit, SIGKILL for the rest. Their runs
    /// end `interrupted` and resume at the next start.
    private func shutdown(reason: String) throws {
        let started = Date()
        log("stopping (\(reason)): \(workers.isEmpty ? "no workers" : "SIGTERM to \(workers.count) worker\(workers.count == 1 ? "" : "s")")")
        for (_, active) in workers {
            active.worker.stopSignalSent = true
            active.worker.signal(SIGTERM)
        }
        let deadline = started.addingTimeInterval(configuration.stopTimeout)
        while !workers.isEmpty {
            try reapWorkers()
            if workers.isEmpty { break }
            if Date() >= deadline {
                for (runID, active) in workers {
                    log("\(runID): worker \(active.worker.pid) still running after \(Int(configuration.stopTimeout)) s; SIGKILL")
                    active.worker.signal(SIGKILL)
                    var status: Int32 = 0
                    waitpid(active.worker.pid, &status, 0)
                    workers[runID] = nil
                    try finish(active.worker, entry: active.entry, exit: WorkerExit(waitStatus: status))
                }
                break
            }
            _ = wake.wait(timeout: .now() + .milliseconds(20))
        }
        let seconds = Date().timeIntervalSince(started)
        try store.recordEvent(nil, kind: DaemonEvent.daemonStopped, ["reason": reason, "seconds": String(format: "%.3f", seconds)])
        log(String(format: "stopped in %.2f s", seconds))
    }

    private func isIdle() throws -> Bool {
        guard workers.isEmpty, orphans.isEmpty, unsettled.isEmpty else { return false }
        inboxLock.lock()
        let pending = !inbox.isEmpty
        inboxLock.unlock()
        guard !pending, try store.queuedRecipes(state: .queued).isEmpty else { return false }
        // Entries still `running` with no worker are runs waiting to resume.
        return try store.queuedRecipes(state: .running).isEmpty
    }

    // MARK: Helpers

    static func append(_ text: String, to url: URL) {
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        _ = text.utf8CString.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count - 1) }
    }

    static func timestamp(_ date: Date = Date()) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}

/// The result of work done off the daemon's loop, handed back across threads.
private final class OffLoopOutcome<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, Error>?

    func set(_ value: Result<T, Error>) {
        lock.lock()
        result = value
        lock.unlock()
    }

    func get() -> Result<T, Error>? {
        lock.lock()
        defer { lock.unlock() }
        return result
    }
}

/// The message of an `interrupted` event.
struct InterruptionEvent: Encodable {
    let cause: String
    let externalKill: Bool

    enum CodingKeys: String, CodingKey {
        case cause
        case externalKill = "external_kill"
    }
}
