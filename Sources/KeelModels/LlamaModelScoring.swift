/// Σ log π(completion | prompt) of one sequence, in Double, with its completion token count.
public struct CompletionScore: Codable, Equatable, Sendable {
    public let logProb: Double
    public let tokens: Int
}

extension LlamaModel {
    /// Scores many (prompt, completion) sequences without recording a graph (evaluation, `keel score`).
    ///
    /// Sequences are sorted by length and packed into batches of at most `tokenBudget` padded positions,
    /// so that short sequences share a forward without padding them to the longest of the whole set.
    /// Results come back in the order of `sequences`.
    public func scoreCompletions(_ sequences: [PromptCompletionTokens], tokenBudget: Int = 4096) -> [CompletionScore] {
        let order = sequences.indices.sorted { sequences[$0].prompt.count + sequences[$0].completion.count
            < sequences[$1].prompt.count + sequences[$1].completion.count }
        var scores = [CompletionScore?](repeating: nil, count: sequences.count)
        var start = 0
        while start < order.count {
            // Sorted ascending, so the last row of a batch is its longest.
            var end = start + 1
            while end < order.count {
                let longest = sequences[order[end]].prompt.count + sequences[order[end]].completion.count
                if (end - start + 1) * longest > tokenBudget { break }
                end += 1
            }
            let members = Array(order[start..<end])
            let batch = SequenceBatch(members.map { sequences[$0] }, padID: 0)
            let (logProbs, counts) = withNoGrad { sequenceLogProbs(batch) }
            let values = logProbs.toArray()
            for (row, index) in members.enumerated() {
                scores[index] = CompletionScore(logProb: Double(values[row]), tokens: counts[row])
            }
            start = end
        }
        return scores.map { $0! }
    }
}
