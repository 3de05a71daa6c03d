import XCTest
@testable import KeelModels

/// The model's joint output of target log-probs and softmax expectations (DEFT's guidance term trains
/// through both): the same values as the separate passes, and gradients that match central finite
/// differences of L = Σ a·logp + Σ b·E with respect to parameter entries of every kind.
final class LlamaModelExpectationTests: XCTestCase {
    let config = LlamaConfig(layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24, vocab: 32,
                             rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 16, tiedEmbeddings: true)
    let batch = SequenceBatch([PromptCompletionTokens(prompt: [1, 4], completion: [7, 9, 3]),
                               PromptCompletionTokens(prompt: [2], completion: [5, 6, 8, 11, 30])], padID: 0)

    func testJointOutputsMatchTheSeparatePassesAndFiniteDifferences() throws {
        let model = try LlamaModel(randomWithConfig: config, seed: 11)
        var rng = Philox(seed: 3)
        let q = (0..<config.vocab).map { _ in rng.nextFloat() * 2 - 1 }
        let N = batch.rows * batch.length
        let a = (0..<N).map { _ in rng.nextFloat() * 2 - 1 }, b = (0..<N).map { _ in rng.nextFloat() * 8 - 4 }

        let (logProbs, expectations) = withNoGrad { model.targetLogProbsAndExpectations(batch, vector: q) }
        XCTAssertEqual(logProbs.toArray(), withNoGrad { model.targetLogProbs(batch) }.toArray())
        XCTAssertEqual(expectations.toArray(), model.targetExpectations(batch, vector: q).toArray())
        XCTAssertTrue(zip(expectations.toArray(), batch.targets).allSatisfy { $1 == ignoreIndex ? $0 == 0 : $0 != 0 })

        func objective(_ logp: Tensor, _ e: Tensor) -> Tensor { (logp * Tensor(a)).sum() + (e * Tensor(b)).sum() }
        model.parameters.zeroGrad()
        let (l, e) = model.targetLogProbsAndExpectations(batch, vector: q)
        objective(l, e).backward()

        func value() -> Double {
            let (l, e) = withNoGrad { model.targetLogProbsAndExpectations(batch, vector: q) }
            return zip(l.toArray(), a).reduce(0.0) { $0 + Double($1.0 * $1.1) } + zip(e.toArray(), b).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        let h: Float = 1e-2
        var checked = 0
        for entry in model.parameters {
            let p = entry.tensor, grad = try XCTUnwrap(p.grad, entry.name).toArray()
            for index in [0, p.count / 3, p.count - 1] {
                let saved = p.pointer[index]
                p.pointer[index] = saved + h
                let up = value()
                p.pointer[index] = saved - h
                let down = value()
                p.pointer[index] = saved
                let numeric = (up - down) / Double(2 * h)
                XCTAssertEqual(Double(grad[index]), numeric, accuracy: 2e-3 + 2e-2 * abs(numeric), "\(entry.name)[\(index)]")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 3 * model.parameters.count)
    }
}
