import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// The daemon against inputs that used to wedge it or lose data: resumes that can never succeed,
/// special files, output folders.
final class DaemonReliabilityTests: XCTestCase {
    /// An interrupted run whose recipe was edited while the daemon was down cannot resume: its worker
    /// records the refusal, the run fails once (no respawn loop) and the rest of the queue runs.
    func testRunWhoseRecipeChangedWhileStoppedFailsOnceAndTheQueueGoesOn() throws {
        let sandbox = try DaemonSandbox(self)
        let started = try sandbox.startLongRunUntilItsFirstCheckpoint(steps: 400)
        var daemon = started.daemon
        let run = started.run
        defer { sandbox.stop(daemon) }
        let store = try sandbox.store()
        sandbox.stop(daemon, signal: SIGTERM)
        XCTAssertEqual(try store.run(run.id)?.status, .interrupted, sandbox.daemonOutput)

        try Data(DaemonSandbox.tinyRecipe(name: "long", steps: 3).utf8).write(to: sandbox.recipes.appendingPathComponent("long.yaml"))
        try sandbox.stage("other.yaml", DaemonSandbox.tinyRecipe(name: "other", steps: 2, seed: 1))
        try sandbox.drop("other.yaml")
        daemon = try sandbox.startDaemon(["--exit-when-idle"])
        sandbox.wait("the daemon to finish its queue", timeout: 60) { !daemon.isRunning }

        let refused = try XCTUnwrap(try store.run(run.id))
        XCTAssertEqual(refused.status, .failed, sandbox.daemonOutput)
        XCTAssertTrue(refused.error?.contains("refusing to resume run \(run.id)") ?? false, refused.error ?? "no error")
        XCTAssertTrue(refused.error?.contains("--force") ?? false, refused.error ?? "no error")
        XCTAssertEqual(try sandbox.events(run.id, kind: DaemonEvent.dispatched).count, 2, "one worker before the stop, one after")
        XCTAssertEqual(try sandbox.events(run.id, kind: "resume-refused").count, 1)
        let others = try sandbox.runs().filter { $0.id != run.id }
        XCTAssertEqual(others.map(\.status), [.completed, .completed], sandbox.daemonOutput)
    }

    /// Special files given a recipe's name are each recorded once as rejected, with what was found; a
    /// recipe whose data file is a FIFO is rejected without reading it; the daemon keeps serving (a
    /// good recipe after them runs) and stops promptly on SIGTERM.
    func testSpecialFilesAreRecordedAndNeverWedgeTheLoop() throws {
        let sandbox = try DaemonSandbox(self)
        let daemon = try sandbox.startDaemon(["--stop-timeout", "5"])
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        let recipes = sandbox.recipes
        let outside = sandbox.staging.appendingPathComponent("secret.txt")
        try Data("root:secret-hash:19000::::::\n".utf8).write(to: outside)
        XCTAssertEqual(mkfifo(recipes.appendingPathComponent("fifo.yaml").path, 0o600), 0)
        try FileManager.default.createDirectory(at: recipes.appendingPathComponent("folder.yaml"), withIntermediateDirectories: false)
        let links = ["zero.yaml": "/dev/zero", "dangling.yaml": recipes.appendingPathComponent("nowhere").path,
                     "loop.yaml": recipes.appendingPathComponent("loop.yaml").path, "secret.yaml": outside.path]
        for (name, target) in links {
            try FileManager.default.createSymbolicLink(atPath: recipes.appendingPathComponent(name).path, withDestinationPath: target)
        }
        XCTAssertEqual(mkfifo(sandbox.staging.appendingPathComponent("pairs.jsonl").path, 0o600), 0)
        try sandbox.stage("fifo-data.yaml", """
            model: {tiny: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 16, vocab: 259}}
            data: [{name: preference-jsonl, path: \(sandbox.staging.appendingPathComponent("pairs.jsonl").path)}]
            loss: {name: dpo}
            training: {steps: 1}

            """)
        try sandbox.drop("fifo-data.yaml")
        try sandbox.stage("good.yaml", DaemonSandbox.tinyRecipe(name: "good", steps: 2))
        try sandbox.drop("good.yaml")
        try sandbox.wait("the good recipe to complete", timeout: 60) { try sandbox.run(named: "good.yaml")?.status == .completed }

        let expected = [
            "fifo.yaml": "found a FIFO (named pipe)", "folder.yaml": "found a folder", "zero.yaml": "outside the watched folder",
            "dangling.yaml": "which does not exist", "loop.yaml": "found a symbolic link loop", "secret.yaml": "outside the watched folder",
            "fifo-data.yaml": "found a FIFO (named pipe) at",
        ]
        for (name, text) in expected {
            let run = try XCTUnwrap(try sandbox.run(named: name), "\(name) recorded\n\(sandbox.daemonOutput)")
            XCTAssertEqual(run.status, .rejected, name)
            XCTAssertTrue(run.error?.contains(text) ?? false, "\(name): \(run.error ?? "no error")")
            XCTAssertFalse(run.recipeText.contains("secret-hash") || (run.error ?? "").contains("secret-hash"), name)
        }
        XCTAssertEqual(try sandbox.runs().count, expected.count + 1, "each recorded once")
        let seconds = sandbox.stop(daemon, signal: SIGTERM)
        XCTAssertLessThan(seconds, 6, sandbox.daemonOutput)
        XCTAssertEqual(daemon.terminationStatus, 0, sandbox.daemonOutput)
    }

    /// Hashing a large data file for the run's fingerprint happens off the daemon's loop: SIGTERM in
    /// the middle of it stops the daemon at once.
    func testSIGTERMWhileHashingALargeDataFileStopsAtOnce() throws {
        let sandbox = try DaemonSandbox(self)
        let data = sandbox.staging.appendingPathComponent("large.jsonl")
        XCTAssertTrue(FileManager.default.createFile(atPath: data.path, contents: nil))
        let handle = try FileHandle(forWritingTo: data)
        try handle.truncate(atOffset: 4 << 30)  // sparse: 4 GiB to hash, nothing on disk
        try handle.close()
        try sandbox.stage("large.yaml", DaemonSandbox.tinyRecipe(name: "large", steps: 1)
            .replacingOccurrences(of: "  - {name: synthetic-preferences, count: 96, seed: 0}\n  - {name: split, eval_count: 16}",
                                  with: "  - {name: preference-jsonl, path: \(data.path)}"))
        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        try sandbox.drop("large.yaml")
        try sandbox.wait("the recipe to be taken in") { try !sandbox.store().queuedRecipes().isEmpty }
        Thread.sleep(forTimeInterval: 0.3)
        let seconds = sandbox.stop(daemon, signal: SIGTERM)
        print(String(format: "daemon stopped %.2f s after SIGTERM while hashing 4 GiB", seconds))
        XCTAssertLessThan(seconds, 3, sandbox.daemonOutput)
        XCTAssertEqual(daemon.terminationStatus, 0, sandbox.daemonOutput)
        XCTAssertEqual(try sandbox.runs().count, 0, "nothing recorded half-way")
    }

    /// A recipe saved with a UTF-8 byte-order mark validates and runs in the daemon: the daemon and its
    /// worker read the same text (they used to hash different texts and refuse it as changed).
    func testRecipeWithAByteOrderMarkRunsInTheDaemon() throws {
        let sandbox = try DaemonSandbox(self)
        let url = sandbox.staging.appendingPathComponent("bom.yaml")
        try Data([0xEF, 0xBB, 0xBF] + Array(DaemonSandbox.tinyRecipe(name: "bom", steps: 2).utf8)).write(to: url)
        XCTAssertEqual(try sandbox.keel(["validate", url.path]).status, 0)
        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        Thread.sleep(forTimeInterval: 0.3)
        try sandbox.drop("bom.yaml")
        try sandbox.wait("the run to end") { try sandbox.run(named: "bom.yaml")?.status.isFinished ?? false }
        let run = try XCTUnwrap(try sandbox.run(named: "bom.yaml"))
        XCTAssertEqual(run.status, .completed, run.error ?? "")
        XCTAssertFalse(run.recipeText.hasPrefix("\u{FEFF}"))
    }
}
