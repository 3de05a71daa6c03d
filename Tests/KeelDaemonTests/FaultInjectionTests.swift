import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// Faults at random points: over several short runs, the daemon and its workers are SIGKILLed at random
/// moments (a seeded generator, Philox, picks the victim and the moment), the daemon restarted after each of its
/// deaths. Afterwards every run completed exactly once, with one metrics row per step, the store passes
/// `integrity_check`, and each run's final weights equal an uninterrupted run's bit for bit.
final class FaultInjectionTests: XCTestCase {
    func testRandomKillsOfTheDaemonAndItsWorkersLoseNothing() throws {
        let sandbox = try DaemonSandbox(self)
        let (runCount, steps, kills) = (8, 40, 24)
        var generator = Philox(seed: 20_261_208)  // seeded: a failing kill schedule replays
        let names = (0..<runCount).map { "fault\($0).yaml" }
        for (index, name) in names.enumerated() {
            try sandbox.stage(name, DaemonSandbox.tinyRecipe(name: "fault\(index)", steps: steps, checkpointEvery: 4, hidden: 32, seed: index))
        }
        // Uninterrupted references, in the foreground, in their own var/.
        let referenceVar = sandbox.root.appendingPathComponent("reference-var")
        var references: [String: Data] = [:]
        for name in names {
            let result = try sandbox.keel(["run", sandbox.staging.appendingPathComponent(name).path, "--var", referenceVar.path])
            XCTAssertEqual(result.status, 0, result.output)
        }
        for run in try KeelStore(path: referenceVar.appendingPathComponent("keel.db")).runSummaries().map(\.run) {
            references[URL(fileURLWithPath: run.recipePath).lastPathComponent] = try sandbox.exportedModel(run.id, in: referenceVar)
        }

        var daemon = try sandbox.startDaemon(["--workers", "2"])
        Thread.sleep(forTimeInterval: 0.3)
        for name in names { try sandbox.drop(name, by: "mv") }
        var (daemonKills, workerKills) = (0, 0)
        var workerKillsPerRun: [String: Int] = [:]
        for _ in 0..<kills {
            Thread.sleep(forTimeInterval: 0.2 + Double(generator.next() % 800) / 1000)
            let running = try sandbox.runs().filter { $0.status == .running && $0.pid != nil }
            // A worker at most twice per run: the daemon fails a run whose worker is killed from outside a 4th time.
            let victims = running.filter { workerKillsPerRun[$0.id, default: 0] < 2 }
            if generator.next() % 2 == 0, let victim = victims.randomElement(using: &generator), let pid = victim.pid {
                kill(pid, SIGKILL)
                workerKillsPerRun[victim.id, default: 0] += 1
                workerKills += 1
            } else {
                sandbox.stop(daemon, signal: SIGKILL)
                daemonKills += 1
                daemon = try sandbox.startDaemon(["--workers", "2"])
            }
        }
        sandbox.stop(daemon, signal: SIGTERM)
        daemon = try sandbox.startDaemon(["--exit-when-idle", "--workers", "2"])
        defer { sandbox.stop(daemon) }
        let deadline = Date().addingTimeInterval(180)
        while daemon.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertFalse(daemon.isRunning, "the last daemon finished the queue")
        print("fault injection: \(daemonKills) daemon kills, \(workerKills) worker kills over \(runCount) runs of \(steps) steps")

        let store = try sandbox.store()
        let runs = try sandbox.runs()
        XCTAssertEqual(runs.count, runCount, "one run per recipe")
        for run in runs {
            let name = URL(fileURLWithPath: run.recipePath).lastPathComponent
            XCTAssertEqual(run.status, .completed, "\(name): \(run.error ?? "")\n\(sandbox.daemonOutput.suffix(3000))")
            guard run.status == .completed else { continue }
            XCTAssertEqual(try store.metricSeries(run.id, split: .train, name: "loss").map(\.step), Array(1...steps), name)
            XCTAssertEqual(try sandbox.exportedModel(run.id), references[name], "\(name): final weights bit-identical")
        }
        XCTAssertEqual(try store.database.query("PRAGMA integrity_check").first?.string("integrity_check"), "ok")
    }
}
