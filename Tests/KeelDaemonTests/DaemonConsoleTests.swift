import Foundation
import XCTest
@testable import KeelDaemon

/// What the main job's console shows while the daemon trains, and how a daemon run that requires
/// another recipe's model gets it.
final class DaemonConsoleTests: XCTestCase {
    /// One compact line per running run per interval (step, loss, rate, ETA), and at the end where its
    /// model is.
    func testConsoleShowsProgressAndWhereTheModelIs() throws {
        let sandbox = try DaemonSandbox(self)
        try sandbox.stage("slow.yaml", DaemonSandbox.tinyRecipe(name: "slow", steps: 400, hidden: 64))
        try sandbox.drop("slow.yaml")
        let daemon = try sandbox.startDaemon(["--exit-when-idle", "--progress-every", "0.2"])
        daemon.waitUntilExit()
        let output = sandbox.daemonOutput
        let run = try XCTUnwrap(try sandbox.run(named: "slow.yaml"))
        XCTAssertEqual(run.status, .completed, output)
        let progress = output.split(separator: "\n").filter { $0.contains("\(run.id): step ") }
        XCTAssertFalse(progress.isEmpty, output)
        for line in progress {
            XCTAssertNotNil(line.range(of: #": step \d+/400 loss [-0-9.e]+ [0-9.]+ s/step \d+ tok/s"#, options: .regularExpression), String(line))
        }
        XCTAssertTrue(output.contains("\(run.id): completed; model in \(sandbox.varDirectory.path)/runs/\(run.id)/export"), output)
    }

    /// A queued recipe whose `requires:` names a recipe outside the watched folder: its worker trains
    /// that recipe first (a run of its own, exporting to its output.dir), then the queued one.
    func testWorkerTrainsARequiredRecipeFirst() throws {
        let sandbox = try DaemonSandbox(self)
        let made = sandbox.root.appendingPathComponent("made")
        let base = sandbox.root.appendingPathComponent("base.yaml")
        try Data(DaemonSandbox.tinyRecipe(name: "base", steps: 2)
            .replacingOccurrences(of: "output: {name: base}", with: "output: {name: base, dir: \(made.path)}").utf8).write(to: base)
        try sandbox.stage("uses.yaml", "requires: [\(base.path)]\n" + DaemonSandbox.tinyRecipe(name: "uses", steps: 2))
        try sandbox.drop("uses.yaml")
        let daemon = try sandbox.startDaemon(["--exit-when-idle"])
        daemon.waitUntilExit()
        let runs = try sandbox.runs()
        XCTAssertEqual(runs.map(\.status), [.completed, .completed], sandbox.daemonOutput)
        let uses = try XCTUnwrap(runs.first { $0.recipePath.hasSuffix("/uses.yaml") })
        XCTAssertTrue(runs.contains { $0.recipePath == base.path })
        XCTAssertTrue(FileManager.default.fileExists(atPath: made.appendingPathComponent("config.json").path))
        let log = try String(contentsOf: URL(fileURLWithPath: try XCTUnwrap(uses.logPath)), encoding: .utf8)
        XCTAssertTrue(log.contains("requires \(base.path), whose output \(made.path) does not exist yet: training it first"), log)
    }
}
