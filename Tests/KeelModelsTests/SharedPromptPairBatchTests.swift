import XCTest
@testable import KeelModels

/// Prompt sharing (`SharedPromptPairBatch`) must score every pair as the unshared `SequenceBatch` does:
/// the same log-probs and gradients up to float summation order, on a tiny random model whose weights
/// are scaled up so that attention is far from uniform.
final class SharedPromptPairBatchTests: XCTestCase {
    typealias Pair = (prompt: [Int], chosen: [Int], rejected: [Int])

    /// Prompts of different lengths (one empty), chosen longer and shorter than rejected.
    static let pairs: [Pair] = [
        ([1, 4, 9], [7, 9, 3, 12], [5, 6]),
        ([2], [5, 6, 8, 11, 30], [17, 3, 22, 8, 8, 1, 2]),
        ([3, 3, 14, 27, 6, 19], [9], [20, 21]),
        ([], [4, 13, 2], [25, 7]),
    ]

    /// Pairs long enough that the packed row spans several attention row blocks (64 queries), so that
    /// blocks start past earlier pairs' keys.
    static let longPairs: [Pair] = (0..<4).map { p in
        func ids(_ count: Int, _ salt: Int) -> [Int] { (0..<count).map { (7 * $0 + 13 * p + salt) % 32 } }
        return (ids(20 + 9 * p, 1), ids(15 + 11 * p, 2), ids(40 - 6 * p, 3))
    }

    static func model(seed: UInt64) throws -> LlamaModel {
        let config = LlamaConfig(layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24, vocab: 32,
                                 rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 128, tiedEmbeddings: true)
        let model = try LlamaModel(randomWithConfig: config, seed: seed)
        for entry in model.parameters where entry.tensor.shape.count == 2 {
            for i in 0..<entry.tensor.count { entry.tensor.pointer[i] *= 25 }
        }
        return model
    }

    static func separate(_ pairs: [Pair]) -> SequenceBatch {
        SequenceBatch(pairs.map { PromptCompletionTokens(prompt: $0.prompt, completion: $0.chosen) }
                      + pairs.map { PromptCompletionTokens(prompt: $0.prompt, completion: $0.rejected) }, padID: 0)
    }

    func testLayoutPacksPairsBackToBackWithRestartedPositionsAndBothFirstTokensScored() {
        let batch = SharedPromptPairBatch([([1, 4], [7, 9], [5, 6, 8]), ([3], [2], [6, 7])], padID: 0)
        XCTAssertEqual(batch.tokens, [1, 4, 7, 9, 5, 6, 8, 3, 2, 6, 7])
        XCTAssertEqual(batch.positions, [0, 1, 2, 3, 2, 3, 4, 0, 1, 1, 2])
        // Per token: its pair's first position, and the hidden span (the chosen tokens, for rejected ones).
        XCTAssertEqual(batch.keyMask, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 0, 2, 4, 0, 2, 4,
                                       7, 0, 0, 7, 0, 0, 7, 8, 9, 7, 8, 9])
        // The last prompt position of each pair (1 and 7) predicts the first token of both completions.
        XCTAssertEqual(batch.scoredPositions, [1, 2, 1, 4, 5, 7, 7, 9])
        XCTAssertEqual(batch.scoredTargets, [7, 9, 5, 6, 8, 2, 6, 7])
        XCTAssertEqual(batch.scoredSequences, [0, 0, 2, 2, 2, 1, 3, 3])
        XCTAssertEqual(batch.completionCounts, [2, 1, 3, 2])
    }

    func testLogProbsAndGradientsEqualTheUnsharedBatch() throws {
        try checkAgainstUnshared(Self.pairs)
    }

    func testLongPairsAcrossAttentionBlocksEqualTheUnsharedBatch() throws {
        XCTAssertGreaterThan(SharedPromptPairBatch(Self.longPairs, padID: 0).length, 4 * 64)
        try checkAgainstUnshared(Self.longPairs)
    }

    private func checkAgainstUnshared(_ pairs: [Pair]) throws {
        let model = try Self.model(seed: 11)
        let shared = SharedPromptPairBatch(pairs, padID: 0), separate = Self.separate(pairs)
        // Distinct weights per sequence, so a gradient sent to the wrong sequence shows.
        let weights = Tensor((0..<2 * pairs.count).map { Float($0 + 1) * (($0 % 2 == 0) ? 1 : -0.5) })

        func run(_ logProbs: () -> (logProbs: Tensor, tokenCounts: [Int])) -> (values: [Float], counts: [Int], grads: [String: [Float]]) {
            model.parameters.zeroGrad()
            let (values, counts) = logProbs()
            (values * weights).sum().backward()
            var grads: [String: [Float]] = [:]
            for entry in model.parameters { grads[entry.name] = entry.tensor.grad?.toArray() }
            return (values.toArray(), counts, grads)
        }
        let a = run { model.sequenceLogProbs(shared) }
        let b = run { model.sequenceLogProbs(separate) }
        XCTAssertEqual(a.counts, b.counts)
        XCTAssertEqual(a.values.count, b.values.count)
        for (x, y) in zip(a.values, b.values) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(y))) }
        XCTAssertEqual(Set(a.grads.keys), Set(model.parameters.names))
        for (name, expected) in b.grads {
            let actual = try XCTUnwrap(a.grads[name], name)
            let scale = expected.map(abs).max() ?? 1
            XCTAssertGreaterThan(scale, 0, "\(name) gets a gradient")
            for (x, y) in zip(actual, expected) { XCTAssertEqual(x, y, accuracy: 1e-4 * scale, name) }
        }
    }

    func testRejectedTokensDoNotSeeTheChosenCompletion() throws {
        let model = try Self.model(seed: 3)
        var edited = Self.pairs
        edited[0].chosen = [30, 1, 1, 2]
        edited[1].chosen = [3, 3, 3, 3, 3]
        let before = withNoGrad { model.sequenceLogProbs(SharedPromptPairBatch(Self.pairs, padID: 0)).logProbs.toArray() }
        let after = withNoGrad { model.sequenceLogProbs(SharedPromptPairBatch(edited, padID: 0)).logProbs.toArray() }
        let B = Self.pairs.count
        XCTAssertNotEqual(before[0], after[0], "the chosen completion changed")
        XCTAssertEqual(Array(before[B...]), Array(after[B...]), "rejected log-probs must not depend on the chosen tokens")
    }
}
