import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// `keel daemon` end to end: the real binary as a child process, tiny recipes dropped into a watched
/// folder, the store read directly.
final class DaemonEndToEndTests: XCTestCase {
    /// A recipe copied in (`cp`: written in place) and one moved in (`mv`: renamed) both run to
    /// completion; the time from the file's arrival to its worker's start is recorded.
    func testCopiedAndMovedRecipesRunToCompletionWithLatencyRecorded() throws {
        let sandbox = try DaemonSandbox(self)
        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        try sandbox.stage("copied.yaml", DaemonSandbox.tinyRecipe(name: "copied", steps: 3))
        try sandbox.stage("moved.yml", DaemonSandbox.tinyRecipe(name: "moved", steps: 3, seed: 1))
        // Written into the folder but with names the daemon must ignore.
        try sandbox.stage(".hidden.yaml", DaemonSandbox.tinyRecipe(name: "hidden", steps: 3))
        try sandbox.stage("notes.txt", "not a recipe")
        Thread.sleep(forTimeInterval: 0.3)  // the daemon is watching
        try sandbox.drop(".hidden.yaml")
        try sandbox.drop("notes.txt")
        // One after the other, so that each finds the daemon idle: the latency then measures the
        // daemon, not the queue.
        try sandbox.drop("copied.yaml", by: "cp")
        try sandbox.wait("the copied recipe's run to complete") { try sandbox.run(named: "copied.yaml")?.status == .completed }
        try sandbox.drop("moved.yml", by: "mv")
        try sandbox.wait("both runs to complete") {
            try ["copied.yaml", "moved.yml"].allSatisfy { try sandbox.run(named: $0)?.status == .completed }
        }
        XCTAssertEqual(try sandbox.runs().count, 2, "only the two recipe files make runs")
        for name in ["copied.yaml", "moved.yml"] {
            let run = try XCTUnwrap(try sandbox.run(named: name))
            let dispatched = try sandbox.events(run.id, kind: DaemonEvent.dispatched)
            XCTAssertEqual(dispatched.count, 1)
            let message = try JSONSerialization.jsonObject(with: Data(dispatched[0].message.utf8)) as? [String: Double]
            let latency = try XCTUnwrap(message?["latency_ms"], "latency recorded for \(name)")
            print("\(name): file close → worker start \(latency) ms")
            // The target is 100 ms; the bound leaves room for a machine busy with other builds.
            XCTAssertLessThan(latency, 500, "\(name): latency")
            let log = try String(contentsOf: URL(fileURLWithPath: try XCTUnwrap(run.logPath)), encoding: .utf8)
            XCTAssertTrue(log.contains("step 3/3"), "worker.log holds the training output:\n\(log)")
        }
        let logs = try sandbox.keel(["logs", try XCTUnwrap(try sandbox.run(named: "moved.yml")).id, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(logs.status, 0)
        XCTAssertTrue(logs.output.contains("step 3/3"), logs.output)
    }

    /// A recipe still being written when the daemon starts is not read half-written by the start-up
    /// scan: it is queued once, complete, when its writer closes it.
    func testRecipeBeingWrittenAtStartIsReadOnlyWhenComplete() throws {
        let sandbox = try DaemonSandbox(self)
        let text = DaemonSandbox.tinyRecipe(name: "slow", steps: 2)
        let url = sandbox.recipes.appendingPathComponent("slow.yaml")
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let writer = try FileHandle(forWritingTo: url)
        let half = text.index(text.startIndex, offsetBy: text.count / 2)
        try writer.write(contentsOf: Data(text[..<half].utf8))
        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.5)  // the daemon has scanned the folder
        try writer.write(contentsOf: Data(text[half...].utf8))
        try writer.close()
        try sandbox.wait("the completed recipe's run to complete") { try sandbox.run(named: "slow.yaml")?.status == .completed }
        Thread.sleep(forTimeInterval: 1)  // past the settle time
        XCTAssertEqual(try sandbox.runs().map(\.status), [.completed], "one run, from the complete file")
    }

    /// 20 recipes arriving at once each run exactly once; touching one again without changing it
    /// makes no run, changing it makes one, removing a queued one cancels it.
    func testTwentyRecipesAtOnceEachRunExactlyOnce() throws {
        let sandbox = try DaemonSandbox(self)
        let names = (0..<20).map { "r\($0).yaml" }
        for (index, name) in names.enumerated() {
            try sandbox.stage(name, DaemonSandbox.tinyRecipe(name: "r\(index)", steps: 1, hidden: 16, seed: index))
        }
        let daemon = try sandbox.startDaemon(["--workers", "2"])
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        for name in names { try sandbox.drop(name, by: "mv") }

        try sandbox.wait("20 runs to complete", timeout: 50) { try sandbox.runs().filter { $0.status == .completed }.count == 20 }
        let runs = try sandbox.runs()
        XCTAssertEqual(runs.count, 20)
        XCTAssertEqual(Set(runs.map { URL(fileURLWithPath: $0.recipePath).lastPathComponent }), Set(names))
        for run in runs { XCTAssertEqual(try sandbox.events(run.id, kind: DaemonEvent.dispatched).count, 1, run.id) }

        // Same content written again: no new run. New content: a new run.
        let r0 = sandbox.recipes.appendingPathComponent("r0.yaml")
        let original = try Data(contentsOf: r0)
        try original.write(to: r0)
        try (original + Data("# changed\n".utf8)).write(to: sandbox.recipes.appendingPathComponent("r1.yaml"))
        try sandbox.wait("the changed recipe's run to complete") { try sandbox.runs().filter { $0.status == .completed }.count == 21 }
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(try sandbox.runs().count, 21, "the unchanged file touched again made no run")
    }

    /// A worker SIGKILLed mid-run is resumed by the daemon; the daemon SIGKILLed mid-run leaves a run
    /// that the next daemon resumes. The final weights equal an uninterrupted run's bit for bit, and
    /// every step has exactly one metrics row.
    func testKilledWorkerAndDaemonResumeToTheUninterruptedWeights() throws {
        let sandbox = try DaemonSandbox(self)
        let steps = 200
        let recipe = DaemonSandbox.tinyRecipe(name: "survivor", steps: steps, checkpointEvery: 10, hidden: 64)
        try sandbox.stage("survivor.yaml", recipe)

        // The uninterrupted reference, in the foreground, in its own var/.
        let referenceVar = sandbox.root.appendingPathComponent("reference-var")
        let reference = try sandbox.keel(["run", sandbox.staging.appendingPathComponent("survivor.yaml").path, "--var", referenceVar.path])
        XCTAssertEqual(reference.status, 0, reference.output)
        let referenceRun = try XCTUnwrap(try KeelStore(path: referenceVar.appendingPathComponent("keel.db")).runSummaries().first?.run)
        let referenceWeights = try sandbox.exportedModel(referenceRun.id, in: referenceVar)

        var daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        try sandbox.drop("survivor.yaml")
        let store = try sandbox.store()
        var run: RunRecord!
        func checkpointStep() throws -> Int { try store.latestCompleteCheckpoint(run.id)?.step ?? 0 }
        try sandbox.wait("the run to start") { run = try sandbox.run(named: "survivor.yaml"); return run != nil }

        try sandbox.wait("a first checkpoint") { try checkpointStep() >= 5 }
        let firstWorker = try XCTUnwrap(try store.run(run.id)?.pid)
        kill(firstWorker, SIGKILL)
        try sandbox.wait("a second worker") { try sandbox.events(run.id, kind: DaemonEvent.dispatched).count == 2 }
        let killedAt = try checkpointStep()
        try sandbox.wait("progress after the worker was killed") { try checkpointStep() > killedAt }
        XCTAssertLessThan(try checkpointStep(), steps, "the run must still be going when the daemon is killed; make it longer")

        sandbox.stop(daemon, signal: SIGKILL)
        daemon = try sandbox.startDaemon(["--exit-when-idle"])
        daemon.waitUntilExit()
        XCTAssertEqual(daemon.terminationStatus, 0, sandbox.daemonOutput)

        let finished = try XCTUnwrap(try store.run(run.id))
        XCTAssertEqual(finished.status, .completed, "\(finished.error ?? "")\n\(sandbox.daemonOutput)")
        // Two interruptions: the killed worker (recorded by the daemon), and the worker orphaned by the
        // daemon's death, which either stopped cleanly after a checkpoint (`stopped`, recorded by itself)
        // or died first (recorded as interrupted by the restarted daemon).
        let interruptions = try sandbox.events(run.id, kind: DaemonEvent.interrupted).count
            + sandbox.events(run.id, kind: RunEvent.stopped).count
        XCTAssertGreaterThanOrEqual(interruptions, 2)
        XCTAssertGreaterThanOrEqual(try sandbox.events(run.id, kind: "resumed").count, 2)
        XCTAssertEqual(try sandbox.exportedModel(run.id), referenceWeights, "resumed weights differ from the uninterrupted run's")
        let losses = try store.metricSeries(run.id, split: .train, name: "loss")
        XCTAssertEqual(losses.map(\.step), Array(1...steps), "one loss row per step, none missing or repeated")
        let referenceLosses = try KeelStore(path: referenceVar.appendingPathComponent("keel.db")).metricSeries(referenceRun.id, split: .train, name: "loss")
        XCTAssertEqual(losses.map(\.value), referenceLosses.map(\.value))
    }

    /// An invalid recipe is rejected with its errors (file:line:col) and a worker that traps fails only
    /// its run, with the signal and the end of its log; the daemon goes on to the next recipe.
    func testBadRecipeAndCrashingWorkerAreRecordedAndTheDaemonGoesOn() throws {
        let sandbox = try DaemonSandbox(self)
        let daemon = try sandbox.startDaemon([], environment: ["KEEL_WORKER_FAULT": "trap-if-run-contains:crashy"])
        defer { sandbox.stop(daemon) }
        try sandbox.stage("bad.yaml", DaemonSandbox.tinyRecipe(name: "bad", steps: 2).replacingOccurrences(of: "name: dpo", with: "name: dpoo"))
        try sandbox.stage("crashy.yaml", DaemonSandbox.tinyRecipe(name: "crashy", steps: 2))
        try sandbox.stage("good.yaml", DaemonSandbox.tinyRecipe(name: "good", steps: 2))
        Thread.sleep(forTimeInterval: 0.3)
        for name in ["bad.yaml", "crashy.yaml"] { try sandbox.drop(name) }
        try sandbox.wait("the crashing run to fail") { try sandbox.run(named: "crashy.yaml")?.status == .failed }
        try sandbox.drop("good.yaml")
        try sandbox.wait("the next recipe to complete") { try sandbox.run(named: "good.yaml")?.status == .completed }
        XCTAssertTrue(daemon.isRunning)

        let bad = try XCTUnwrap(try sandbox.run(named: "bad.yaml"))
        XCTAssertEqual(bad.status, .rejected)
        let badError = try XCTUnwrap(bad.error)
        XCTAssertNotNil(badError.range(of: #"bad\.yaml:\d+:\d+"#, options: .regularExpression), badError)
        XCTAssertTrue(badError.contains("dpoo"), badError)
        let entry = try XCTUnwrap(try sandbox.store().queueEntry(runID: bad.id))
        XCTAssertEqual(entry.state, .rejected)
        XCTAssertEqual(entry.error, badError)

        let crashy = try XCTUnwrap(try sandbox.run(named: "crashy.yaml"))
        let crashError = try XCTUnwrap(crashy.error)
        XCTAssertTrue(crashError.contains("SIGILL") || crashError.contains("SIGTRAP"), crashError)
        XCTAssertTrue(crashError.contains("simulated plugin crash"), "the end of the worker's log is in the error:\n\(crashError)")
    }

    /// SIGTERM: the daemon stops its worker and exits cleanly within the bound; the interrupted run
    /// resumes at the next start and completes. A second daemon on the same var/ is refused meanwhile.
    func testSIGTERMStopsWithinTheBoundAndTheNextStartResumes() throws {
        let sandbox = try DaemonSandbox(self)
        let steps = 200
        let started = try sandbox.startLongRunUntilItsFirstCheckpoint(steps: steps)
        var daemon = started.daemon
        let run = started.run
        defer { sandbox.stop(daemon) }
        let store = try sandbox.store()

        let second = try sandbox.keel(["daemon", "--recipes", sandbox.recipes.path, "--var", sandbox.varDirectory.path])
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.output.contains("another keel daemon (pid \(daemon.processIdentifier))"), second.output)

        let seconds = sandbox.stop(daemon, signal: SIGTERM)
        XCTAssertEqual(daemon.terminationReason, .exit)
        XCTAssertEqual(daemon.terminationStatus, 0, sandbox.daemonOutput)
        XCTAssertLessThan(seconds, 6, "the daemon exits within --stop-timeout (5 s) and a second to reap")
        print("daemon stopped \(String(format: "%.2f", seconds)) s after SIGTERM")
        let stopped = try XCTUnwrap(try store.run(run.id))
        XCTAssertEqual(stopped.status, .interrupted, sandbox.daemonOutput)
        XCTAssertLessThan(stopped.currentStep, steps, "stopped mid-run")

        daemon = try sandbox.startDaemon(["--exit-when-idle"])
        daemon.waitUntilExit()
        XCTAssertEqual(try store.run(run.id)?.status, .completed, sandbox.daemonOutput)
        XCTAssertEqual(try store.metricSeries(run.id, split: .train, name: "loss").map(\.step), Array(1...steps))
    }

    /// keel cancel: a queued run is cancelled at once, a running one by stopping its worker; removing
    /// a queued recipe's file cancels its run.
    func testCancelAndRemovalCancelRuns() throws {
        let sandbox = try DaemonSandbox(self)
        try sandbox.stage("first.yaml", DaemonSandbox.tinyRecipe(name: "first", steps: 400, hidden: 64))
        try sandbox.stage("second.yaml", DaemonSandbox.tinyRecipe(name: "second", steps: 2))
        try sandbox.stage("third.yaml", DaemonSandbox.tinyRecipe(name: "third", steps: 2))
        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        for name in ["first.yaml", "second.yaml", "third.yaml"] { try sandbox.drop(name) }
        try sandbox.wait("the first run to train") { try sandbox.run(named: "first.yaml")?.status == .running }
        try sandbox.wait("three runs") { try sandbox.runs().count == 3 }

        let second = try XCTUnwrap(try sandbox.run(named: "second.yaml"))
        XCTAssertEqual(second.status, .queued)
        let cancelQueued = try sandbox.keel(["cancel", second.id, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(cancelQueued.status, 0, cancelQueued.output)
        XCTAssertEqual(try sandbox.run(named: "second.yaml")?.status, .cancelled)

        try FileManager.default.removeItem(at: sandbox.recipes.appendingPathComponent("third.yaml"))
        try sandbox.wait("the removed recipe's run to be cancelled") { try sandbox.run(named: "third.yaml")?.status == .cancelled }

        let first = try XCTUnwrap(try sandbox.run(named: "first.yaml"))
        let cancelRunning = try sandbox.keel(["cancel", first.id, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(cancelRunning.status, 0, cancelRunning.output)
        try sandbox.wait("the running run to be cancelled") { try sandbox.run(named: "first.yaml")?.status == .cancelled }
        XCTAssertLessThan(try XCTUnwrap(try sandbox.run(named: "first.yaml")).currentStep, 400)
        XCTAssertTrue(daemon.isRunning)
    }
}

// MARK: - Sandbox


/// A sandbox for end-to-end daemon tests: recipes/ and var/ in a temporary folder, the real `keel`
/// binary of this build started as a child process, and the store read directly.
final class DaemonSandbox {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `keel` built beside the tests (`swift test -c release` builds it at .build/release/keel).
    static func keelBinary(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        for configuration in ["release", "debug"] {
            let path = repository.appendingPathComponent(".build/\(configuration)/keel").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        XCTFail("no keel binary at \(repository.path)/.build/release/keel; run `swift build -c release` first", file: file, line: line)
        throw XCTSkip("keel binary missing")
    }

    let root: URL
    let recipes: URL
    let varDirectory: URL
    /// Recipes are written here first, then copied or moved into recipes/.
    let staging: URL
    let keel: String

    init(_ test: XCTestCase) throws {
        keel = try Self.keelBinary()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("keel-daemon-\(UUID().uuidString)")
        recipes = root.appendingPathComponent("recipes", isDirectory: true)
        varDirectory = root.appendingPathComponent("var", isDirectory: true)
        staging = root.appendingPathComponent("staging", isDirectory: true)
        for url in [recipes, varDirectory, staging] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        let root = self.root
        test.addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    }

    /// A DPO recipe on a tiny random model over generated pairs: `steps` optimizer steps of 4 pairs.
    static func tinyRecipe(name: String, steps: Int, checkpointEvery: Int = 0, hidden: Int = 32, seed: Int = 0) -> String {
        """
        model: {tiny: {layers: 2, hidden: \(hidden), heads: 4, kv_heads: 2, intermediate: \(2 * hidden), vocab: 259, seed: \(seed)}}
        data:
          - {name: synthetic-preferences, count: 96, seed: \(seed)}
          - {name: split, eval_count: 16}
        loss: {name: dpo, beta: 0.1}
        optimizer: {lr: 1.0e-3, weight_decay: 0.0}
        training:
          steps: \(steps)
          batch_size: 4
          max_length: 48
          seed: \(seed)
          eval_every: 0
          checkpoint_every: \(checkpointEvery)
          keep_checkpoints: 2
          log_every: 1
        output: {name: \(name)}

        """
    }

    /// Writes `text` to staging/<name> and returns its URL.
    @discardableResult
    func stage(_ name: String, _ text: String) throws -> URL {
        let url = staging.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// `cp` (the file is written in place: close-after-write) or `mv` (an atomic rename) into recipes/.
    func drop(_ name: String, by tool: String = "cp") throws {
        let status = try Self.runTool("/bin/\(tool)", [staging.appendingPathComponent(name).path, recipes.appendingPathComponent(name).path])
        XCTAssertEqual(status, 0, "\(tool) \(name)")
    }

    static func runTool(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Starts `keel daemon` on the sandbox (output to daemon-N.log) with extra arguments and environment.
    func startDaemon(_ arguments: [String] = [], environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: keel)
        process.arguments = ["daemon", "--recipes", recipes.path, "--var", varDirectory.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let logURL = root.appendingPathComponent("daemon-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        daemonLogs.append(logURL)
        return process
    }

    private(set) var daemonLogs: [URL] = []

    /// Everything the daemons of this sandbox printed (for failure messages).
    var daemonOutput: String {
        daemonLogs.map { (try? String(contentsOf: $0, encoding: .utf8)) ?? "" }.joined(separator: "\n---\n")
    }

    func store() throws -> KeelStore { try KeelStore(path: varDirectory.appendingPathComponent("keel.db")) }

    func runs() throws -> [RunRecord] {
        guard FileManager.default.fileExists(atPath: varDirectory.appendingPathComponent("keel.db").path) else { return [] }
        return try store().runSummaries(limit: 1000).map(\.run)
    }

    func run(named name: String) throws -> RunRecord? {
        try runs().first { $0.recipePath.hasSuffix("/\(name)") }
    }

    /// A daemon (`--stop-timeout 5`) training `long.yaml`, a tiny recipe of `steps` steps with a checkpoint
    /// every 10, returned once the run's first checkpoint is complete (for tests that stop it mid-run).
    func startLongRunUntilItsFirstCheckpoint(steps: Int) throws -> (daemon: Process, run: RunRecord) {
        try stage("long.yaml", DaemonSandbox.tinyRecipe(name: "long", steps: steps, checkpointEvery: 10, hidden: 64))
        let daemon = try startDaemon(["--stop-timeout", "5"])
        Thread.sleep(forTimeInterval: 0.3)
        try drop("long.yaml")
        let store = try store()
        var run: RunRecord?
        wait("a checkpoint") {
            run = try? self.run(named: "long.yaml")
            return (try? run.map { try store.latestCompleteCheckpoint($0.id) != nil }) ?? false
        }
        guard let run else { throw DaemonError("no run of long.yaml appeared") }
        return (daemon, run)
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes; fails the test (with the
    /// daemon's output) on timeout.
    @discardableResult
    func wait(_ what: String, timeout: TimeInterval = 45, file: StaticString = #filePath, line: UInt = #line,
              until condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("timed out after \(timeout) s waiting for \(what)\ndaemon output:\n\(daemonOutput)", file: file, line: line)
        return false
    }

    /// Sends `signal` to `process` and waits for it to exit; returns the seconds it took.
    @discardableResult
    func stop(_ process: Process, signal: Int32 = SIGTERM, timeout: TimeInterval = 30) -> TimeInterval {
        let started = Date()
        kill(process.processIdentifier, signal)
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return Date().timeIntervalSince(started)
    }

    /// Runs `keel ARGS` to completion; returns (status, stdout + stderr).
    func keel(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        try Self.run(keel, arguments, environment: environment)
    }

    /// Runs a program to completion (in `directory`, when given); returns (status, stdout + stderr).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                    in directory: URL? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let directory { process.currentDirectoryURL = directory }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    func events(_ runID: String, kind: String) throws -> [EventRecord] {
        try store().events(runID).filter { $0.kind == kind }
    }

    func exportedModel(_ runID: String, in varDirectory: URL? = nil) throws -> Data {
        try Data(contentsOf: RunLayout(varDirectory: varDirectory ?? self.varDirectory).export(runID).appendingPathComponent("model.safetensors"))
    }
}
