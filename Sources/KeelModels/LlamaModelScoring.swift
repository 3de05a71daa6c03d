import Foundation

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

/// Token ids shaped like a transformers batch, read from JSON: `input_ids` [B, T] and an optional
/// `attention_mask` [B, T] of ones then zeros (right padding; all ones when absent). What `keel score
/// --ids` reads, so that any checkpoint can be compared with transformers without a tokenizer.
public struct TokenIDBatch: Equatable, Sendable {
    public let inputIDs: [[Int]]
    /// Real tokens per row (the ones of its attention mask).
    public let lengths: [Int]

    /// - Throws: `ModelFormatError` naming the field, row and position: "found X; expected Y".
    public init(json data: Data, source: String) throws {
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(source: source, message: message) }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object; expected {\"input_ids\": [[…]], \"attention_mask\": [[…]]}")
        }
        func matrix(_ key: String) throws -> [[Int]]? {
            guard let value = object[key] else { return nil }
            guard let rows = value as? [[NSNumber]], rows.allSatisfy({ $0.allSatisfy { Double($0.int64Value) == $0.doubleValue } }) else {
                throw fail("'\(key)' is not a list of lists of integers")
            }
            return rows.map { $0.map(\.intValue) }
        }
        guard let ids = try matrix("input_ids") else { throw fail("missing 'input_ids'") }
        guard let width = ids.first?.count, width > 0 else { throw fail("'input_ids' has no tokens") }
        for (b, row) in ids.enumerated() where row.count != width {
            throw fail("input_ids row \(b) has \(row.count) ids; expected \(width), as row 0")
        }
        let mask = try matrix("attention_mask") ?? ids.map { _ in Array(repeating: 1, count: width) }
        guard mask.count == ids.count else { throw fail("attention_mask has \(mask.count) rows; expected \(ids.count), as input_ids") }
        lengths = try mask.enumerated().map { b, row in
            guard row.count == width else { throw fail("attention_mask row \(b) has \(row.count) entries; expected \(width)") }
            let length = row.prefix { $0 == 1 }.count
            if let t = row[length...].firstIndex(where: { $0 != 0 }) {
                throw fail("attention_mask[\(b)][\(t)] is \(row[t]); expected right padding (ones, then zeros)")
            }
            return length
        }
        inputIDs = ids
    }
}

/// transformers' numbers for a `TokenIDBatch`: log p(x[t+1] | x[≤t]) per row and position [B, T−1], 0
/// where the next token is padding, and their sums per row.
public struct TokenLogProbs: Codable, Equatable, Sendable {
    public let tokenLogprobs: [[Double]]
    public let sequenceLogprobs: [Double]

    enum CodingKeys: String, CodingKey {
        case tokenLogprobs = "token_logprobs"
        case sequenceLogprobs = "sequence_logprobs"
    }
}

extension LlamaModel {
    /// Every next-token log-prob of the batch's rows, without a graph.
    /// - Throws: `ModelFormatError` for an id outside the vocabulary or a row longer than the model's positions.
    public func tokenLogProbs(_ batch: TokenIDBatch, source: String) throws -> TokenLogProbs {
        for (b, row) in batch.inputIDs.enumerated() {
            if let t = row.prefix(batch.lengths[b]).firstIndex(where: { !(0..<config.vocab).contains($0) }) {
                throw ModelFormatError(source: source, message: "input_ids[\(b)][\(t)] is \(row[t]); expected a token id in 0..<\(config.vocab)")
            }
            if batch.lengths[b] > config.maxPositions {
                throw ModelFormatError(source: source, message: "row \(b) has \(batch.lengths[b]) tokens; the model has \(config.maxPositions) positions")
            }
        }
        // Row b scores its tokens 1..<length given the first: a one-token prompt and the rest as completion.
        let sequences = zip(batch.inputIDs, batch.lengths).map { row, length in
            length == 0 ? PromptCompletionTokens(prompt: [], completion: [])
                : PromptCompletionTokens(prompt: [row[0]], completion: Array(row[1..<length]))
        }
        let scored = SequenceBatch(sequences, padID: 0)
        let values = withNoGrad { targetLogProbs(scored).toArray() }
        let width = (batch.inputIDs.first?.count ?? 1) - 1
        let rows = batch.lengths.indices.map { b in
            (0..<width).map { t in t < scored.length ? Double(values[b * scored.length + t]) : 0 }
        }
        return TokenLogProbs(tokenLogprobs: rows, sequenceLogprobs: rows.map { $0.reduce(0, +) })
    }
}
