import Foundation
import XCTest
@testable import KeelCLI
@testable import KeelCore

/// `keel eval`'s numbers are the trainer's: on a run's own evaluation pairs, `PreferenceEvaluation`'s
/// means equal what the trainer's evaluation logs, and each comes with its standard error.
final class PreferenceEvaluationTests: XCTestCase {
    func testMeansAreTheTrainersEvaluationWithStandardErrors() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let text = try String(contentsOf: MethodRecipeTests.examples.appendingPathComponent("tiny-dpo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "steps: 300", with: "steps: 40").replacingOccurrences(of: "eval_every: 100", with: "eval_every: 0")
        let url = folder.appendingPathComponent("tiny-dpo.yaml")
        try Data(text.utf8).write(to: url)
        let trainer = try Trainer(graph: RecipeLoader(registry: keelPluginRegistry()).load(url))
        try trainer.train(observer: MethodLearningTests.MetricLog())
        let logged = try trainer.evaluate()
        let beta = try XCTUnwrap(trainer.recipe.loss.first?.options.double("beta"))
        let evaluation = PreferenceEvaluation(policy: trainer.policy, reference: try XCTUnwrap(trainer.reference), pairs: trainer.evalPairs,
                                              beta: beta, padID: trainer.padID, batchSize: trainer.config.batchSize)
        XCTAssertEqual(evaluation.pairs, trainer.evalPairs.count)
        for name in PairwiseMetrics.names {
            let (mine, theirs) = (try XCTUnwrap(evaluation.metrics[name]?.mean, name), try XCTUnwrap(logged[name], name))
            XCTAssertEqual(mine, theirs, accuracy: 1e-4 * max(1, abs(theirs)), name)
        }
        // An accuracy's standard error is that of a 0/1 mean: √(p(1 − p)/(n − 1)).
        let accuracy = try XCTUnwrap(evaluation.metrics[PairwiseMetrics.rewardsAccuracies])
        let n = Double(evaluation.pairs)
        XCTAssertGreaterThan(accuracy.standardError, 0)
        XCTAssertEqual(accuracy.standardError, (accuracy.mean * (1 - accuracy.mean) / (n - 1)).squareRoot(), accuracy: 1e-12)
        XCTAssertGreaterThan(try XCTUnwrap(evaluation.metrics[PairwiseMetrics.rewardsMargins]?.standardError), 0)
        XCTAssertNotNil(evaluation.metrics[PreferenceEvaluation.logpsAccuracies])
        print("eval of tiny-dpo after 40 steps: " + evaluation.metrics.sorted { $0.key < $1.key }
            .map { String(format: "%@ %.4f ± %.4f", $0.key, $0.value.mean, $0.value.standardError) }.joined(separator: ", "))
    }

    func testStandardErrorOfAMean() {
        let estimate = PreferenceEvaluation.Estimate([1, 2, 3, 4])
        XCTAssertEqual(estimate.mean, 2.5)
        XCTAssertEqual(estimate.standardError, (5.0 / 3 / 4).squareRoot(), accuracy: 1e-12)   // s² = 5/3, n = 4
        XCTAssertEqual(PreferenceEvaluation.Estimate([7]).standardError, 0)
    }
}
