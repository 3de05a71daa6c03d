import XCTest
@testable import KeelModels

/// The model recycles its gradient buffers across backward passes (`gradientBuffer(for:zeroed:)`):
/// a recycled buffer must give the same gradient as a fresh one, accumulation without `zeroGrad`
/// must add, and a gradient the caller still holds must never be overwritten.
final class LlamaModelGradientTests: XCTestCase {
    private func gradients(_ model: LlamaModel) -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        for entry in model.parameters { result[entry.name] = entry.tensor.grad?.toArray() }
        return result
    }

    func testRecycledGradientsMatchFreshOnesAndAccumulate() throws {
        let config = LlamaConfig(layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24, vocab: 32,
                                 rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 16, tiedEmbeddings: true)
        let model = try LlamaModel(randomWithConfig: config, seed: 5)
        let batch = SequenceBatch([PromptCompletionTokens(prompt: [1, 4], completion: [7, 9, 3]),
                                   PromptCompletionTokens(prompt: [2], completion: [5, 6, 8, 11, 30])], padID: 0)
        func step() { model.sequenceLogProbs(batch).logProbs.sum().backward() }

        step()
        let first = gradients(model)
        XCTAssertEqual(first.count, model.parameters.count, "every parameter gets a gradient")
        let held = try XCTUnwrap(model.parameters.entries.first { $0.name.contains("q_proj") }?.tensor.grad)
        let heldValues = held.toArray()

        // Accumulation: a second backward without zeroGrad doubles every gradient.
        step()
        for (name, values) in gradients(model) {
            for (a, b) in zip(values, first[name]!) { XCTAssertEqual(a, 2 * b, accuracy: 1e-5 * max(1, abs(a)), name) }
        }
        // The caller still held `held`, so the second pass must not have written into it.
        XCTAssertEqual(held.toArray(), heldValues)

        // After zeroGrad the buffers are free again: the recycled ones must reproduce the first gradients.
        model.parameters.zeroGrad()
        step()
        model.parameters.zeroGrad()
        step()
        XCTAssertEqual(gradients(model), first)
    }
}
