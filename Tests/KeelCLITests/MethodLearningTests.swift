import Foundation
import XCTest
@testable import KeelCLI
import KeelCore

/// Every method example in recipes/examples/ learns: run in-process on Anthropic HH
/// (../shared/data/hh-harmless-1800.jsonl) with the example's own tiny random model and loss options,
/// each run's held-out metric — the one its loss optimises — must move the right way from the step-0
/// evaluation of the same run.
///
/// What each example optimises, and so what is asserted:
/// - dpo, cdpo, robust, hinge, ipo, dpo-poet, rpo's dpo term: every one is a decreasing function of the
///   implicit reward margin β·h (ipo pulls the length-averaged h̄ up to 1/(2β) > 0), so the eval
///   `rewards/margins` must become clearly positive. At step 0 the policy is the reference, so margin and
///   accuracy are exactly 0 there.
/// - simpo, simpo-poet: reference-free; the margin β·(avg_w − avg_l) of length-averaged log-probs
///   starts wherever the random model puts it, and must rise by a clear amount.
/// - orpo: reference-free; the same length-averaged margin (β = 0.1, so smaller) must rise, and its
///   NLL term on the chosen replies (`nll_loss`) must fall.
/// - rpo: additionally its sft term, the chosen replies' token-mean NLL (`sft/loss`), must fall.
/// - tr-dpo soft and hard: the reference follows the policy, so the margin the trainer reports shrinks
///   at every sync (and is exactly 0 right after a hard one). What the method is for is the policy's own
///   preference, so the assertion is the dpo one on the margin against the starting model, measured by
///   putting the starting weights back into the reference after training.
///
/// The margin, not the accuracy, is asserted: on 128 held-out HH pairs a 90k-parameter byte-level model
/// reaches accuracies of only 0.50–0.58 in this budget (printed), too close to chance to assert without
/// flakiness, while the margin is what the losses optimise. Besides, each example's eval loss (its own
/// objective on held-out pairs; rpo: dpo + sft) must fall below the step-0 value. With the trainer's
/// loss sign flipped (tried locally, before the eval-loss check existed), the margin check failed every
/// example but cdpo: its flipped loss pushes each pair away from h = 0, whichever side it is on, and its
/// mean margin rose to 2.2 with |βh| in the units where the cdpo loss exceeds log 2 — what the eval-loss
/// check catches. A loss whose gradient does not reach the policy leaves the margin at 0 and fails too.
final class MethodLearningTests: XCTestCase {
    static let hh = MethodRecipeTests.root.appendingPathComponent("../shared/data/hh-harmless-1800.jsonl").standardized

    /// The CI budget shared by every example (about 5 s each on two quiet cores): the whole HH file (with
    /// only a few hundred pairs the byte-level model memorises them and held-out margins fall), 64-byte
    /// sequences, 240 steps of 8 pairs. The learning rate replaces the examples' 5e-6, which is for
    /// pretrained models: a random model must move far (tiny-dpo.yaml explains 3e-3).
    enum Budget {
        static let pairs = 1800, evalPairs = 128, steps = 240, batchSize = 8, maxLength = 64
        static let learningRate = "3.0e-3"
    }

    struct LearningRun {
        let before: [String: Double], after: [String: Double]
        /// The last step's training metrics (the schedulers' among them).
        let lastTrain: [String: Double]
        let trainer: Trainer
        /// The reference's weights before training (kept only when asked for).
        let startingReference: [String: [Float]]
    }

    struct SetupError: Error, CustomStringConvertible {
        let description: String
    }

    /// Records the step-0 and final evaluations and the last training step's metrics.
    final class MetricLog: TrainingObserver {
        var eval: [Int: [String: Double]] = [:], train: [Int: [String: Double]] = [:]
        func record(step: Int, split: MetricSplit, metrics: [String: Double]) throws {
            if split == .eval { eval[step] = metrics } else { train[step] = metrics }
        }
        func checkpoint(_ trainer: Trainer) throws {}
    }

    var folder: URL!

    override func setUpWithError() throws {
        guard FileManager.default.fileExists(atPath: Self.hh.path) else {
            throw SetupError(description: "\(Self.hh.path) is missing (the shared data folder next to the repository)")
        }
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-learning-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { if let folder { try FileManager.default.removeItem(at: folder) } }

    /// recipes/examples/`example` with its generated data replaced by HH plus an eval split, and the
    /// CI budget; model, loss, schedulers and data transforms stay the example's.
    func learn(_ example: String, keepStartingReference: Bool = false) throws -> LearningRun {
        var text = try String(contentsOf: MethodRecipeTests.examples.appendingPathComponent(example), encoding: .utf8)
        let replacements = [
            ("{name: synthetic-preferences, count: 640, seed: 0}", "{name: hh, path: \(Self.hh.path), limit: \(Budget.pairs)}"),
            ("  - {name: shuffle}\n", "  - {name: shuffle}\n  - {name: split, eval_count: \(Budget.evalPairs)}\n"),
            ("optimizer: {lr: 5.0e-6}", "optimizer: {lr: \(Budget.learningRate), schedule: cosine, warmup_steps: 10, weight_decay: 0.0}"),
            ("training: {steps: 20, batch_size: 4, max_length: 256, seed: 0}",
             "training: {steps: \(Budget.steps), batch_size: \(Budget.batchSize), max_length: \(Budget.maxLength), seed: 0, "
                + "eval_every: \(Budget.steps), checkpoint_every: 0, log_every: \(Budget.steps)}"),
        ]
        for (old, new) in replacements {
            guard text.contains(old) else { throw SetupError(description: "recipes/examples/\(example) no longer contains '\(old)'; update MethodLearningTests.learn") }
            text = text.replacingOccurrences(of: old, with: new)
        }
        let url = folder.appendingPathComponent(example)
        try Data(text.utf8).write(to: url)
        let graph = try RecipeLoader(registry: keelPluginRegistry()).load(url, displayName: example)
        let trainer = try Trainer(graph: graph)
        var startingReference: [String: [Float]] = [:]
        if keepStartingReference {
            for name in trainer.parameterNames(.reference) { startingReference[name] = trainer.parameter(name, of: .reference)?.toArray() }
        }
        let log = MetricLog()
        try trainer.train(observer: log)
        let run = LearningRun(before: try XCTUnwrap(log.eval[0]), after: try XCTUnwrap(log.eval[Budget.steps]),
                              lastTrain: try XCTUnwrap(log.train[Budget.steps]), trainer: trainer,
                              startingReference: startingReference)
        print("\(example): eval before \(Self.summary(run.before)), after \(Self.summary(run.after))")
        return run
    }

    static func summary(_ metrics: [String: Double]) -> String {
        metrics.filter { $0.key.hasSuffix("margins") || $0.key.hasSuffix("accuracies") || $0.key.hasSuffix("loss") }
            .sorted { $0.key < $1.key }.map { String(format: "%@ %.4f", $0.key, $0.value) }.joined(separator: ", ")
    }

    /// The final evaluation with the reference put back to the starting weights: the policy's margin
    /// against the model it started from (for TR-DPO, whose reference has moved).
    func evaluateAgainstStartingModel(_ run: LearningRun) throws -> [String: Double] {
        XCTAssertFalse(run.startingReference.isEmpty)
        for (name, values) in run.startingReference {
            let reference = try XCTUnwrap(run.trainer.parameter(name, of: .reference))
            values.withUnsafeBufferPointer { reference.pointer.update(from: $0.baseAddress!, count: $0.count) }
        }
        return try run.trainer.evaluate()
    }

    // MARK: Assertions

    /// Reference-based losses: policy = reference at step 0, so margin and accuracy start at exactly 0;
    /// afterwards the mean eval margin must be clearly positive and, with `lossFalls`, the eval loss
    /// (the method's own objective on held-out pairs) below its step-0 value.
    func assertLearnsAgainstReference(_ before: [String: Double], _ after: [String: Double], prefix: String = "",
                                      lossFalls: Bool = true, file: StaticString = #filePath, line: UInt = #line) throws {
        if lossFalls { try assertEvalLossFalls(before, after, file: file, line: line) }
        let margins = prefix + PairwiseMetrics.rewardsMargins, accuracies = prefix + PairwiseMetrics.rewardsAccuracies
        XCTAssertEqual(try XCTUnwrap(before[margins], file: file, line: line), 0, file: file, line: line)
        XCTAssertEqual(try XCTUnwrap(before[accuracies], file: file, line: line), 0, file: file, line: line)
        XCTAssertGreaterThan(try XCTUnwrap(after[margins], file: file, line: line), Thresholds.margin, file: file, line: line)
    }

    /// The mean margin alone is not enough: cdpo with its sign flipped pushes every pair away from h = 0,
    /// whichever way it lies, and its mean margin rose (to 2.2) while its loss must rise.
    func assertEvalLossFalls(_ before: [String: Double], _ after: [String: Double],
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let (lossBefore, lossAfter) = (try XCTUnwrap(before[TrainMetric.loss], file: file, line: line),
                                       try XCTUnwrap(after[TrainMetric.loss], file: file, line: line))
        XCTAssertLessThan(lossAfter, lossBefore, "eval loss", file: file, line: line)
    }

    /// Set from the measured runs (β·h margins 0.011–0.10 for the dpo family, SimPO rises of 0.10–0.11,
    /// an ORPO rise of 0.0037 at β = 0.1, chosen NLL 5.55 → 2.79 for rpo and → 2.18 for orpo) at about half of the smallest, so that float differences between
    /// machines do not flip them while a loss that does not learn (0) or learns backwards (< 0) fails.
    enum Thresholds {
        static let margin = 0.005, simpoMarginRise = 0.05, orpoMarginRise = 0.002, sftLossDrop = 1.0
    }

    // MARK: One test per example

    func testDPOLearns() throws { try assertDPOFamilyLearns("dpo.yaml") }
    func testIPOLearns() throws { try assertDPOFamilyLearns("ipo.yaml") }
    func testCDPOLearns() throws { try assertDPOFamilyLearns("cdpo.yaml") }
    func testRobustDPOLearns() throws { try assertDPOFamilyLearns("robust.yaml") }
    func testHingeDPOLearns() throws { try assertDPOFamilyLearns("hinge.yaml") }
    func testDPOWithPOETLearns() throws { try assertDPOFamilyLearns("dpo-poet.yaml") }

    func assertDPOFamilyLearns(_ example: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try learn(example)
        try assertLearnsAgainstReference(run.before, run.after, file: file, line: line)
    }

    func testRPOLearnsThePreferenceAndTheChosenReplies() throws {
        let run = try learn("rpo.yaml")
        try assertLearnsAgainstReference(run.before, run.after, prefix: "dpo/")   // the total dpo + sft loss
        let (nllBefore, nllAfter) = (try XCTUnwrap(run.before["sft/loss"]), try XCTUnwrap(run.after["sft/loss"]))
        XCTAssertLessThan(nllAfter, nllBefore - Thresholds.sftLossDrop, "chosen-reply NLL \(nllBefore) → \(nllAfter)")
    }

    func testSimPOLearns() throws { try assertSimPOLearns(try learn("simpo.yaml")) }
    func testSimPOWithPOETLearns() throws { try assertSimPOLearns(try learn("simpo-poet.yaml")) }

    func assertSimPOLearns(_ run: LearningRun, file: StaticString = #filePath, line: UInt = #line) throws {
        let before = try XCTUnwrap(run.before[PairwiseMetrics.rewardsMargins], file: file, line: line)
        let after = try XCTUnwrap(run.after[PairwiseMetrics.rewardsMargins], file: file, line: line)
        XCTAssertGreaterThan(after, before + Thresholds.simpoMarginRise, file: file, line: line)
        try assertEvalLossFalls(run.before, run.after, file: file, line: line)
    }

    /// ORPO: reference-free like SimPO, its margin β·(avg_w − avg_l) must rise; its NLL term, the chosen
    /// replies' token-mean NLL (`nll_loss`), must fall.
    func testORPOLearnsThePreferenceAndTheChosenReplies() throws {
        let run = try learn("orpo.yaml")
        let before = try XCTUnwrap(run.before[PairwiseMetrics.rewardsMargins]), after = try XCTUnwrap(run.after[PairwiseMetrics.rewardsMargins])
        XCTAssertGreaterThan(after, before + Thresholds.orpoMarginRise, "margin \(before) → \(after)")
        let (nllBefore, nllAfter) = (try XCTUnwrap(run.before["nll_loss"]), try XCTUnwrap(run.after["nll_loss"]))
        XCTAssertLessThan(nllAfter, nllBefore - Thresholds.sftLossDrop, "chosen-reply NLL \(nllBefore) → \(nllAfter)")
        try assertEvalLossFalls(run.before, run.after)
    }

    /// Soft TR-DPO (τ = 1): a sync after every step, the reference trailing the policy.
    func testSoftTRDPOLearns() throws {
        let run = try learn("tr-dpo-soft.yaml", keepStartingReference: true)
        XCTAssertEqual(run.lastTrain["ref/sync_count"], Double(Budget.steps))
        let againstStart = try evaluateAgainstStartingModel(run)
        print("tr-dpo-soft.yaml: against the starting model \(Self.summary(againstStart))")
        try assertLearnsAgainstReference(run.before, againstStart, lossFalls: false)
        try assertEvalLossFalls(run.before, run.after)
    }

    /// Hard TR-DPO: the budget's last step is a multiple of τ, so the final evaluation comes right after a
    /// copy of the policy into the reference: every margin is exactly 0 there.
    func testHardTRDPOLearns() throws {
        let run = try learn("tr-dpo-hard.yaml", keepStartingReference: true)
        let tau = try XCTUnwrap(run.trainer.recipe.schedulers.first?.options.int("tau"))
        XCTAssertEqual(Budget.steps % tau, 0, "the budget must end on a sync")
        XCTAssertEqual(run.lastTrain["ref/sync_count"], Double(Budget.steps / tau))
        XCTAssertEqual(run.after[PairwiseMetrics.rewardsMargins], 0)
        XCTAssertEqual(run.after[PairwiseMetrics.rewardsAccuracies], 0)
        let againstStart = try evaluateAgainstStartingModel(run)
        print("tr-dpo-hard.yaml: against the starting model \(Self.summary(againstStart))")
        try assertLearnsAgainstReference(run.before, againstStart, lossFalls: false)
    }
}
