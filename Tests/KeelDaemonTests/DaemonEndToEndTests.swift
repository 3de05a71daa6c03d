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
        try sandbox.drop("copied.yaml", by: "cp")
        try sandbox.drop("moved.yml", by: "mv")

        sandbox.wait("both runs to complete") {
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
            XCTAssertLessThan(latency, 2000, "\(name): latency")
            let log = try String(contentsOf: URL(fileURLWithPath: try XCTUnwrap(run.logPath)), encoding: .utf8)
            XCTAssertTrue(log.contains("step 3/3"), "worker.log holds the training output:\n\(log)")
        }
        let logs = try sandbox.keel(["logs", try XCTUnwrap(try sandbox.run(named: "moved.yml")).id, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(logs.status, 0)
        XCTAssertTrue(logs.output.contains("step 3/3"), logs.output)
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

        sandbox.wait("20 runs to complete", timeout: 50) { try sandbox.runs().filter { $0.status == .completed }.count == 20 }
        let runs = try sandbox.runs()
        XCTAssertEqual(runs.count, 20)
        XCTAssertEqual(Set(runs.map { URL(fileURLWithPath: $0.recipePath).lastPathComponent }), Set(names))
        for run in runs { XCTAssertEqual(try sandbox.events(run.id, kind: DaemonEvent.dispatched).count, 1, run.id) }

        // Same content written again: no new run. New content: a new run.
        let r0 = sandbox.recipes.appendingPathComponent("r0.yaml")
        let original = try Data(contentsOf: r0)
        try original.write(to: r0)
        try (original + Data("# changed\n".utf8)).write(to: sandbox.recipes.appendingPathComponent("r1.yaml"))
        sandbox.wait("the changed recipe's run to complete") { try sandbox.runs().filter { $0.status == .completed }.count == 21 }
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
        sandbox.wait("the run to start") { run = try sandbox.run(named: "survivor.yaml"); return run != nil }

        sandbox.wait("a first checkpoint") { try checkpointStep() >= 5 }
        let firstWorker = try XCTUnwrap(try store.run(run.id)?.pid)
        kill(firstWorker, SIGKILL)
        sandbox.wait("a second worker") { try sandbox.events(run.id, kind: DaemonEvent.dispatched).count == 2 }
        let killedAt = try checkpointStep()
        sandbox.wait("progress after the worker was killed") { try checkpointStep() > killedAt }
        XCTAssertLessThan(try checkpointStep(), steps, "the run must still be going when the daemon is killed; make it longer")

        sandbox.stop(daemon, signal: SIGKILL)
        daemon = try sandbox.startDaemon(["--exit-when-idle"])
        daemon.waitUntilExit()
        XCTAssertEqual(daemon.terminationStatus, 0, sandbox.daemonOutput)

        let finished = try XCTUnwrap(try store.run(run.id))
        XCTAssertEqual(finished.status, .completed, "\(finished.error ?? "")\n\(sandbox.daemonOutput)")
        XCTAssertGreaterThanOrEqual(try sandbox.events(run.id, kind: DaemonEvent.interrupted).count, 2)
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
        sandbox.wait("the crashing run to fail") { try sandbox.run(named: "crashy.yaml")?.status == .failed }
        try sandbox.drop("good.yaml")
        sandbox.wait("the next recipe to complete") { try sandbox.run(named: "good.yaml")?.status == .completed }
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
        try sandbox.stage("long.yaml", DaemonSandbox.tinyRecipe(name: "long", steps: steps, checkpointEvery: 10, hidden: 64))
        var daemon = try sandbox.startDaemon(["--stop-timeout", "5"])
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        try sandbox.drop("long.yaml")
        let store = try sandbox.store()
        var run: RunRecord!
        sandbox.wait("a checkpoint") {
            run = try sandbox.run(named: "long.yaml")
            return try run.map { try store.latestCompleteCheckpoint($0.id) != nil } ?? false
        }

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
        sandbox.wait("the first run to train") { try sandbox.run(named: "first.yaml")?.status == .running }
        sandbox.wait("three runs") { try sandbox.runs().count == 3 }

        let second = try XCTUnwrap(try sandbox.run(named: "second.yaml"))
        XCTAssertEqual(second.status, .queued)
        let cancelQueued = try sandbox.keel(["cancel", second.id, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(cancelQueued.status, 0, cancelQueued.output)
        XCTAssertEqual(try sandbox.run(named: "second.yaml")?.status, .cancelled)

        try FileManager.default.removeItem(at: sandbox.recipes.appendingPathComponent("third.yaml"))
        sandbox.wait("the removed recipe's run to be cancelled") { try sandbox.run(named: "third.yaml")?.status == .cancelled }

        let first = try XCTUnwrap(try sandbox.run(named: "first.yaml"))
        let cancelRunning = try sandbox.keel(["cancel", first.id, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(cancelRunning.status, 0, cancelRunning.output)
        sandbox.wait("the running run to be cancelled") { try sandbox.run(named: "first.yaml")?.status == .cancelled }
        XCTAssertLessThan(try XCTUnwrap(try sandbox.run(named: "first.yaml")).currentStep, 400)
        XCTAssertTrue(daemon.isRunning)
    }
}
