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
