import KeelCore
import XCTest
@testable import SFT

/// SFT as a token mean −Σ logπ / Σ |y|, with gradient −1/Σ|y| on every target row and none elsewhere.
final class SFTTests: XCTestCase {
    let logProbs: [Float] = [-12.5, -300.25, -0.75]
    let tokens = [5, 120, 1]

    func testPairedBatchUsesTheChosenCompletionsAsTokenMean() throws {
        let (chosen, rejected) = (Tensor(logProbs), Tensor([-1, -2, -3]))
        chosen.requiresGrad = true
        rejected.requiresGrad = true
        let output = try SFTLoss(options: ResolvedOptions(defaultsOf: [])).loss(LossInput(policy: .paired(
            chosen: SequenceScores(logProbs: chosen, tokenCounts: tokens),
            rejected: SequenceScores(logProbs: rejected, tokenCounts: [1, 1, 1]))))
        output.loss.backward()

        let totalTokens = Double(tokens.reduce(0, +))
        let nll = -logProbs.map(Double.init).reduce(0, +) / totalTokens
        XCTAssertEqual(Double(output.loss.item()), nll, accuracy: 1e-6 * nll)
        for g in try XCTUnwrap(chosen.grad).toArray() { XCTAssertEqual(Double(g), -1 / totalTokens, accuracy: 1e-9) }
        XCTAssertNil(rejected.grad, "the rejected completions take no part in SFT")
        XCTAssertEqual(try XCTUnwrap(output.metrics["logps/chosen"]), logProbs.map(Double.init).reduce(0, +) / 3, accuracy: 1e-4)
    }

    func testNoTokensIsRefused() throws {
        let plugin = try SFTLoss(options: ResolvedOptions(defaultsOf: []))
        let none = SequenceScores(logProbs: Tensor([0, 0]), tokenCounts: [0, 0])
        let empty = LossInput(policy: .paired(chosen: none, rejected: none))
        XCTAssertThrowsError(try plugin.loss(empty)) { XCTAssertTrue("\($0)".contains("0 tokens in all"), "\($0)") }
    }
}
