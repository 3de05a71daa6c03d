import Foundation
import XCTest
@testable import KeelCore

final class ResumeTests: XCTestCase {
    /// tiny-dpo, 40 steps, a checkpoint every 10 (keep 2), eval every 20, metrics every step.
    private let shortRun = [("steps: 300", "steps: 40"), ("batch_size: 16", "batch_size: 8"), ("checkpoint_every: 100", "checkpoint_every: 10"),
                            ("eval_every: 100", "eval_every: 20"), ("log_every: 10", "log_every: 1")]

    /// Timing metrics differ between any two runs; every other metric must match bit for bit.
    private let timingMetrics: Set<String> = [TrainMetric.stepTime, TrainMetric.tokensPerSecond]

    /// A run SIGKILLed three times — after step 7's metrics, in the middle of writing step 20's
    /// checkpoint (after its first file), after step 33 — and resumed each time ends with the same
    /// weights, bit for bit, as an uninterrupted run, and with every step's metrics recorded exactly once
    /// with the uninterrupted run's values.
    func testKilledAndResumedRunMatchesUninterruptedRunBitwise() throws {
        try assertKilledAndResumedRunMatchesUninterruptedRun(shortRun)
    }

    /// The same with TR-DPO's reference sync, which changes the reference: its weights must be
    /// checkpointed (reference.safetensors) and restored for the resumed run to stay on the same path.
    func testKilledAndResumedRunWithReferenceSyncMatchesBitwise() throws {
        try assertKilledAndResumedRunMatchesUninterruptedRun(shortRun + [
            ("output: {name: tiny-dpo}", "schedulers: [{name: ref-sync, alpha: 0.5, tau: 3}]\noutput: {name: tiny-dpo}"),
        ])
    }

    /// The same for a reward model: the head `score.weight` and its optimizer moments are checkpointed
    /// beside the backbone, and the export (backbone + head) matches bit for bit.
    func testKilledAndResumedRewardModelRunMatchesBitwise() throws {
        try assertKilledAndResumedRunMatchesUninterruptedRun(shortRun + [("loss: {name: dpo, beta: 2.0}", "loss: {name: reward-model}")])
    }

    /// SIGTERM (the daemon stopping its workers, Ctrl-C on `keel run`) lets the step in flight finish,
    /// writes a checkpoint there and exits 0 with the run `interrupted`; resuming from that checkpoint
    /// ends with the uninterrupted run's weights, bit for bit.
    func testSIGTERMCheckpointsAfterTheCurrentStepAndResumesBitwise() throws {
        let (reference, stopped) = try completedAndFreshFixtures(shortRun)

        let first = try stopped.keel(["run", stopped.recipe.path], fault: "term-after-step:13")
        XCTAssertEqual(first.status, 0, "a stopped run exits cleanly: \(first.error)")
        let runID = try stopped.onlyRunID()
        XCTAssertEqual(try stopped.store().run(runID)?.status, .interrupted)
        // The signal arrives asynchronously: the stop lands after step 13 or, at the latest, a step later.
        let stopStep = try XCTUnwrap(try stopped.store().latestCompleteCheckpoint(runID)?.step)
        XCTAssertTrue((13...15).contains(stopStep), "checkpoint at step \(stopStep), expected 13…15 (checkpoint_every is 10)")

        try assertResumeEndsLike(reference, resuming: stopped, runID, fromStep: stopStep)
    }

    /// Checkpoints are written in the background while training goes on. A SIGKILL in the middle of
    /// step 20's write, once the trainer has already finished step 21, leaves step 20 incomplete (and
    /// ignored); the resumed run continues from step 10 and ends with the uninterrupted run's weights,
    /// bit for bit, with each step's metrics once.
    func testKillDuringBackgroundCheckpointWriteResumesBitwise() throws {
        let (reference, interrupted) = try completedAndFreshFixtures(shortRun)
        let first = try interrupted.keel(["run", interrupted.recipe.path], fault: "kill-in-checkpoint-while-training:20")
        XCTAssertTrue(first.killedBySignal, "expected SIGKILL; status \(first.status) \(first.error)")
        let runID = try interrupted.onlyRunID()
        XCTAssertEqual(try interrupted.store().checkpoints(runID).filter(\.isComplete).map(\.step), [10])
        let recorded = try interrupted.store().metricSeries(runID, split: .train, name: TrainMetric.loss).map(\.step)
        // The kill follows step 21 by a moment (the low-priority writer polls), at the latest at step 30,
        // where training waits for the write.
        XCTAssertTrue((21...30).contains(recorded.last ?? 0), "training went on during step 20's checkpoint write: \(recorded)")
        let checkpointsDirectory = interrupted.varDirectory.appendingPathComponent("runs/\(runID)/checkpoints")
        XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: checkpointsDirectory.path).contains { $0.hasPrefix("step-20.tmp-") })
        // Nobody recorded the kill, but `keel status` sees that the run's process is gone.
        XCTAssertEqual(try interrupted.store().run(runID)?.status, .running)
        let status = try interrupted.keel(["status", runID, "--json"])
        XCTAssertEqual(status.status, 0, status.error)
        let shown = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [[String: Any]])?.first)
        XCTAssertEqual(shown["status"] as? String, "interrupted")
        XCTAssertEqual(shown["recorded_status"] as? String, "running")

        try assertResumeEndsLike(reference, resuming: interrupted, runID, fromStep: 10)
        XCTAssertEqual(try interrupted.store().checkpoints(runID).filter(\.isComplete).map(\.step), [30, 40])
    }

    /// Two fixtures with the same tiny-dpo variant: the first has run it uninterrupted, the second is fresh.
    private func completedAndFreshFixtures(_ recipe: [(String, String)]) throws -> (completed: RunFixture, fresh: RunFixture) {
        let completed = try RunFixture(), fresh = try RunFixture()
        try completed.writeTinyDPO(recipe)
        try fresh.writeTinyDPO(recipe)
        let full = try completed.keel(["run", completed.recipe.path])
        XCTAssertEqual(full.status, 0, full.error)
        return (completed, fresh)
    }

    /// `keel resume runID` in `resumed` continues from `fromStep` and ends with `reference`'s final
    /// weights, bit for bit, and with each of the 40 steps' training metrics once.
    private func assertResumeEndsLike(_ reference: RunFixture, resuming resumed: RunFixture, _ runID: String, fromStep: Int,
                                      file: StaticString = #filePath, line: UInt = #line) throws {
        let last = try resumed.keel(["resume", runID])
        XCTAssertEqual(last.status, 0, last.error, file: file, line: line)
        XCTAssertTrue(last.output.contains("continuing from checkpoint step \(fromStep)"), last.output, file: file, line: line)
        func finalWeights(_ fixture: RunFixture) throws -> Data {
            try Data(contentsOf: fixture.varDirectory.appendingPathComponent("runs/\(try fixture.onlyRunID())/export/model.safetensors"))
        }
        XCTAssertEqual(try finalWeights(resumed), try finalWeights(reference), "final weights differ", file: file, line: line)
        XCTAssertEqual(try resumed.store().metricSeries(runID, split: .train, name: TrainMetric.loss).map(\.step), Array(1...40),
                       file: file, line: line)
    }

    private func assertKilledAndResumedRunMatchesUninterruptedRun(_ recipe: [(String, String)]) throws {
        let (reference, interrupted) = try completedAndFreshFixtures(recipe)
        let first = try interrupted.keel(["run", interrupted.recipe.path], fault: "kill-after-step:7")
        XCTAssertTrue(first.killedBySignal, "expected SIGKILL; status \(first.status) \(first.error)")
        let runID = try interrupted.onlyRunID()
        let checkpointsDirectory = interrupted.varDirectory.appendingPathComponent("runs/\(runID)/checkpoints")
        XCTAssertEqual(try interrupted.store().checkpoints(runID).count, 0)

        let second = try interrupted.keel(["resume", runID], fault: "kill-in-checkpoint:20")
        XCTAssertTrue(second.killedBySignal, "expected SIGKILL; status \(second.status) \(second.error)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: checkpointsDirectory.path)
        XCTAssertTrue(leftovers.contains { $0.hasPrefix("step-20.tmp-") }, "no half-written step-20 checkpoint: \(leftovers)")
        XCTAssertEqual(try interrupted.store().checkpoints(runID).filter(\.isComplete).map(\.step), [10])

        let third = try interrupted.keel(["resume", runID], fault: "kill-after-step:33")
        XCTAssertTrue(third.killedBySignal, "expected SIGKILL; status \(third.status) \(third.error)")
        XCTAssertTrue(third.output.contains("continuing from checkpoint step 10"), third.output)
        XCTAssertEqual(try interrupted.store().run(runID)?.status, .running)  // nobody reported the kill

        let last = try interrupted.keel(["resume", runID])
        XCTAssertEqual(last.status, 0, last.error)
        XCTAssertTrue(last.output.contains("continuing from checkpoint step 30"), last.output)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: checkpointsDirectory.path).contains { $0.contains(".tmp-") })

        let referenceID = try reference.onlyRunID()
        func finalWeights(_ fixture: RunFixture, _ id: String) throws -> Data {
            try Data(contentsOf: fixture.varDirectory.appendingPathComponent("runs/\(id)/export/model.safetensors"))
        }
        XCTAssertEqual(try finalWeights(interrupted, runID), try finalWeights(reference, referenceID), "final weights differ")

        let names = try reference.store().database.query("SELECT DISTINCT split, name FROM metrics WHERE run_id = ?", referenceID)
        XCTAssertGreaterThan(names.count, 8)
        for row in names {
            let split = try XCTUnwrap(MetricSplit(rawValue: try row.string("split"))), name = try row.string("name")
            let expected = try reference.store().metricSeries(referenceID, split: split, name: name)
            let actual = try interrupted.store().metricSeries(runID, split: split, name: name)
            XCTAssertEqual(actual.map(\.step), expected.map(\.step), "\(split) \(name)")
            if !timingMetrics.contains(name) {
                XCTAssertEqual(actual.map(\.value.bitPattern), expected.map(\.value.bitPattern), "\(split) \(name)")
            }
        }
        XCTAssertEqual(try interrupted.store().metricSeries(runID, split: .train, name: TrainMetric.loss).map(\.step), Array(1...40))
        XCTAssertEqual(try interrupted.store().metricSeries(runID, split: .eval, name: TrainMetric.loss).map(\.step), [0, 20, 40])
        XCTAssertEqual(try interrupted.store().events(runID).filter { $0.kind == RunEvent.resumed }.count, 2)
    }

    /// Each changed input is named: the recipe text, each data file by path, the model.
    func testFingerprintNamesEachChangedPart() throws {
        let fixture = try RecipeFixture()
        let yaml = """
            model: {tiny: {seed: 1}}
            data: [{name: preference-jsonl, path: pairs.jsonl}]
            loss: {name: test-pairwise}
            training: {steps: 1}
            """
        let text = try String(contentsOf: fixture.write(yaml, to: "r.yaml"), encoding: .utf8)
        let before = try RunFingerprint.parts(recipe: fixture.load(yaml).recipe, recipeText: text)
        XCTAssertEqual(Set(before.keys), ["recipe", "model", "data \(fixture.path("pairs.jsonl"))"])
        XCTAssertEqual(before["data \(fixture.path("pairs.jsonl"))"], try SHA256.hex(ofFileAt: URL(fileURLWithPath: fixture.path("pairs.jsonl"))))

        try fixture.write("{\"prompt\": \"a\", \"chosen\": \" b\", \"rejected\": \" c\"}\n", to: "pairs.jsonl")
        let changedData = try RunFingerprint.parts(recipe: fixture.load(yaml).recipe, recipeText: text)
        XCTAssertEqual(RunFingerprint.differences(recorded: before, current: changedData).map { String($0.prefix(while: { $0 != "(" })) },
                       ["data \(fixture.path("pairs.jsonl")) changed "])

        let otherModel = yaml.replacingOccurrences(of: "seed: 1", with: "seed: 2")
        let changedModel = try RunFingerprint.parts(recipe: fixture.load(otherModel).recipe, recipeText: otherModel)
        XCTAssertEqual(RunFingerprint.differences(recorded: changedData, current: changedModel).map { String($0.prefix(while: { $0 != " " })) },
                       ["model", "recipe"])
        XCTAssertNotEqual(RunFingerprint.combined(before), RunFingerprint.combined(changedData))
    }

    /// A changed recipe is refused, naming the change, and the refusal is recorded: the run is failed
    /// (nothing retries it blindly) with the reason; --force resumes, records the override and drops
    /// the old failure text.
    func testResumeRefusesAChangedRecipeUnlessForced() throws {
        let fixture = try RunFixture()
        try fixture.writeTinyDPO(shortRun)
        let killed = try fixture.keel(["run", fixture.recipe.path], fault: "kill-after-step:12")
        XCTAssertTrue(killed.killedBySignal, "expected SIGKILL; status \(killed.status) \(killed.error)")
        let runID = try fixture.onlyRunID()

        try fixture.writeTinyDPO(shortRun + [("lr: 3.0e-3", "lr: 6.0e-3")])
        let refused = try fixture.keel(["resume", runID])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.error.contains("refusing to resume run \(runID)"), refused.error)
        XCTAssertTrue(refused.error.contains("recipe changed"), refused.error)
        XCTAssertFalse(refused.error.contains("model changed"), refused.error)
        XCTAssertEqual(try fixture.store().latestCompleteCheckpoint(runID)?.step, 10)
        let refusedRun = try XCTUnwrap(try fixture.store().run(runID))
        XCTAssertEqual(refusedRun.status, .failed)
        XCTAssertTrue(refusedRun.error?.contains("keel resume \(runID) --force") ?? false, refusedRun.error ?? "no error")
        XCTAssertEqual(try fixture.store().events(runID).filter { $0.kind == RunEvent.resumeRefused }.count, 1)

        let forced = try fixture.keel(["resume", runID, "--force"])
        XCTAssertEqual(forced.status, 0, forced.error)
        let events = try fixture.store().events(runID).filter { $0.kind == RunEvent.resumeForced }
        XCTAssertEqual(events.count, 1)
        XCTAssertTrue(events.first?.message.contains("recipe changed") ?? false)
        XCTAssertEqual(try fixture.store().run(runID)?.status, .completed)
        XCTAssertNil(try fixture.store().run(runID)?.error, "the refusal's text is gone once the run resumed")
    }

    /// A run whose recipe is gone cannot resume: recorded as failed, with the reason.
    func testResumeWithoutItsRecipeMarksTheRunFailed() throws {
        let fixture = try RunFixture()
        try fixture.writeTinyDPO(shortRun)
        let killed = try fixture.keel(["run", fixture.recipe.path], fault: "kill-after-step:12")
        XCTAssertTrue(killed.killedBySignal, "expected SIGKILL; status \(killed.status) \(killed.error)")
        let runID = try fixture.onlyRunID()
        try FileManager.default.removeItem(at: fixture.recipe)

        let refused = try fixture.keel(["resume", runID])
        XCTAssertEqual(refused.status, 1)
        let run = try XCTUnwrap(try fixture.store().run(runID))
        XCTAssertEqual(run.status, .failed)
        XCTAssertEqual(run.error, "run \(runID): its recipe \(fixture.recipe.path) no longer exists")
    }
}
