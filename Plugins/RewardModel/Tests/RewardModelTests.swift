import Foundation
@testable import KeelCore
import XCTest
@testable import RewardModel

/// The Bradley–Terry loss against an independent Double computation, and the whole path end to end: a
/// tiny reward model trained by the trainer, exported, and read back by the `rm` reward.
final class RewardModelTests: XCTestCase {
    /// Value and gradient of L = −(1/B) Σ log σ(r_w − r_l) w.r.t. both rewards, and the metrics, with a
    /// tie and margins of ±40 (where a naive log(σ) would lose the small probabilities).
    func testBradleyTerryValueGradientAndMetrics() throws {
        let chosen: [Float] = [1.5, -0.25, 0.5, 40, -40], rejected: [Float] = [0.5, 0.75, 0.5, 0, 0]
        let (c, r) = (Tensor(chosen), Tensor(rejected))
        c.requiresGrad = true
        r.requiresGrad = true
        let output = try RewardModelLoss(options: ResolvedOptions(defaultsOf: []))
            .loss(LossInput().with(RewardHeadSignal.scores, PairedTensors(chosen: c, rejected: r)))
        output.loss.backward()

        let B = Double(chosen.count)
        let z = zip(chosen, rejected).map { Double($0) - Double($1) }
        // −log σ(z) = log(1 + e^−z), written for each sign so neither branch overflows.
        let nll = z.map { $0 >= 0 ? Foundation.log1p(Foundation.exp(-$0)) : -$0 + Foundation.log1p(Foundation.exp($0)) }
        XCTAssertEqual(Double(output.loss.item()), nll.reduce(0, +) / B, accuracy: 1e-6)
        let dChosen = try XCTUnwrap(c.grad).toArray(), dRejected = try XCTUnwrap(r.grad).toArray()
        for i in z.indices {
            // ∂L/∂r_w = −σ(−z)/B, ∂L/∂r_l = +σ(−z)/B
            let want = -1 / (1 + Foundation.exp(z[i])) / B
            XCTAssertEqual(Double(dChosen[i]), want, accuracy: 1e-7, "∂L/∂r_chosen[\(i)]")
            XCTAssertEqual(Double(dRejected[i]), -want, accuracy: 1e-7, "∂L/∂r_rejected[\(i)]")
        }
        XCTAssertEqual(output.metrics[RewardModelLoss.Metric.accuracy], 2.0 / 5, "a tie counts as wrong")
        XCTAssertEqual(try XCTUnwrap(output.metrics[RewardModelLoss.Metric.margin]), z.reduce(0, +) / B, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(output.metrics[RewardModelLoss.Metric.rewardsChosen]), chosen.map(Double.init).reduce(0, +) / B, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(output.metrics[RewardModelLoss.Metric.rewardsRejected]), rejected.map(Double.init).reduce(0, +) / B, accuracy: 1e-6)
    }

    func testMissingHeadScoresAreRefusedNamingTheSignal() throws {
        let policy = LossBatch.paired(chosen: SequenceScores(logProbs: Tensor([-1]), tokenCounts: [1]),
                                      rejected: SequenceScores(logProbs: Tensor([-2]), tokenCounts: [1]))
        XCTAssertThrowsError(try RewardModelLoss(options: ResolvedOptions(defaultsOf: [])).loss(LossInput(policy: policy))) {
            XCTAssertTrue("\($0)".contains("no signal `reward-head`"), "\($0)")
        }
        // A loss that reads policy log-probs, given none, names the key and what the batch has.
        XCTAssertThrowsError(try LossInput().with(RewardHeadSignal.scores, PairedTensors(chosen: Tensor([1]), rejected: Tensor([0])))[Signals.policyLogProbs]) {
            XCTAssertTrue("\($0)".contains("no signal `policy-logprobs` (it has: reward-head)"), "\($0)")
        }
    }

    /// A tiny reward model trained on generated preferences (chosen right, rejected wrong) through the
    /// real run path: held-out accuracy rises above chance, the export is a reward-model folder, and the
    /// `rm` reward reading it from text ranks the held-out pairs exactly as the trainer's last evaluation did.
    func testTrainedRewardModelIsExportedAndScoredByTheRMReward() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-rm-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let recipe = folder.appendingPathComponent("rm.yaml")
        try Data("""
            model: {tiny: {layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 259, seed: 0}}
            data:
              - {name: synthetic-preferences, count: 640, seed: 0}
              - {name: shuffle}
              - {name: split, eval_count: 64}
            loss: {name: reward-model}
            optimizer: {lr: 3.0e-3, schedule: cosine, warmup_steps: 10, weight_decay: 0.0}
            training: {steps: 120, batch_size: 16, max_length: 64, seed: 0, eval_every: 120, checkpoint_every: 120, log_every: 20}
            output: {name: tiny-rm}
            """.utf8).write(to: recipe)
        var registry = PluginRegistry.builtin()
        try registry.register(RewardModelLoss.self)
        try registry.register(ModelReward.self)
        try registry.register(RewardHeadSignal.self)
        let layout = RunLayout(varDirectory: folder.appendingPathComponent("var"))
        let runID = try TrainingRun.start(recipePath: recipe.path, layout: layout, registry: registry,
                                          display: ProgressDisplay(isTerminal: false, write: { _ in }))

        let store = try KeelStore(path: layout.store)
        let accuracy = try XCTUnwrap(try store.metricSeries(runID, split: .eval, name: RewardModelLoss.Metric.accuracy).last?.value)
        XCTAssertGreaterThan(accuracy, 0.6, "held-out accuracy after 120 steps")
        XCTAssertNil(try store.metricSeries(runID, split: .train, name: PairwiseMetrics.logpsChosen).last,
                     "no log-prob metrics: the LM head is not evaluated")

        let reward = try ModelReward(options: ResolvedOptions(defaultsOf: ModelReward.descriptor.options.map {
            $0.name == ModelReward.Option.path ? OptionSpec($0.name, $0.type, default: .value(.path(layout.export(runID).path)), help: $0.help)
                : $0.name == ModelReward.Option.maxLength ? OptionSpec($0.name, $0.type, default: .value(.int(64)), help: $0.help) : $0
        }))
        let graph = try RecipeLoader(registry: registry).load(recipe, displayName: "rm.yaml")
        let trainer = try Trainer(graph: graph)
        var correct = 0
        for pair in trainer.evalPairs {
            let source = try XCTUnwrap(trainer.sourcePairs[pair.id])
            let (prompt, chosen, rejected) = try trainer.pairTokenizer.texts(source)
            let scores = try reward.scorePair(prompt: prompt, chosen: chosen, rejected: rejected)
            XCTAssertEqual(scores.chosen, try reward.score(prompt: prompt, response: chosen), accuracy: 1e-4, "batched and single scores")
            if scores.chosen > scores.rejected { correct += 1 }
        }
        XCTAssertEqual(Double(correct) / Double(trainer.evalPairs.count), accuracy, accuracy: 1e-9,
                       "the rm reward ranks the held-out pairs as the trainer's evaluation did")
    }
}
