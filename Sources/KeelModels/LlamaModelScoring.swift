/// Σ log π(completion | prompt) of one sequence, in Double, with its completion token count.
public struct CompletionScore: Codable, Equatable, Sendable {
    public let logProb: Double
    public let tokens: Int
}

extension LlamaModel {
    /// Scores many (prompt, completion) sequences without recording a graph (evaluation, `keel score`).
    ///
    /// Sequences are packed by `lengthPackedBatches`; results come back in the order of `sequences`.
    public func scoreCompletions(_ sequences: [PromptCompletionTokens], tokenBudget: Int = 4096) -> [CompletionScore] {
        var scores = [CompletionScore?](repeating: nil, count: sequences.count)
        for members in lengthPackedBatches(sequences, tokenBudget: tokenBudget) {
            let batch = SequenceBatch(members.map { sequences[$0] }, padID: 0)
            let (logProbs, counts) = withNoGrad { sequenceLogProbs(batch) }
            let values = logProbs.toArray()
            for (row, index) in members.enumerated() {
                scores[index] = CompletionScore(logProb: Double(values[row]), tokens: counts[row])
            }
        }
        return scores.map { $0! }
    }

    /// Per sequence, the mean over its completion positions of E = Σ_v π(v | prefix)·q[v], the expectation
    /// of the constant vector q [V] under the next-token distribution (0 for an empty completion); no graph.
    /// Results in the order of `sequences`.
    public func completionExpectations(_ sequences: [PromptCompletionTokens], vector q: [Float],
                                       tokenBudget: Int = 4096) -> [Double] {
        var means = [Double](repeating: 0, count: sequences.count)
        for members in lengthPackedBatches(sequences, tokenBudget: tokenBudget) {
            let batch = SequenceBatch(members.map { sequences[$0] }, padID: 0)
            let perPosition = targetExpectations(batch, vector: q).toArray()
            for (row, index) in members.enumerated() where batch.completionCounts[row] > 0 {
                let positions = perPosition[row * batch.length ..< (row + 1) * batch.length]
                means[index] = positions.reduce(0.0) { $0 + Double($1) } / Double(batch.completionCounts[row])
            }
        }
        return means
    }
}

/// Indices of `sequences` grouped into batches of at most `tokenBudget` padded positions: sorted by
/// length, so that short sequences share a forward without padding them to the longest of the whole set.
/// A sequence longer than the budget gets a batch of its own.
public func lengthPackedBatches(_ sequences: [PromptCompletionTokens], tokenBudget: Int) -> [[Int]] {
    func length(_ i: Int) -> Int { sequences[i].prompt.count + sequences[i].completion.count }
    let order = sequences.indices.sorted { length($0) < length($1) }
    var batches: [[Int]] = []
    var start = 0
    while start < order.count {
        // Sorted ascending, so the last row of a batch is its longest.
        var end = start + 1
        while end < order.count, (end - start + 1) * length(order[end]) <= tokenBudget { end += 1 }
        batches.append(Array(order[start..<end]))
        start = end
    }
    return batches
}
