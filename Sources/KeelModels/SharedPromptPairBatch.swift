/// Preference pairs packed with each prompt computed once (Wang et al. 2024, "Accelerating Direct
/// Preference Optimization with Prefix Sharing", arXiv 2410.20305).
///
/// Row b is [prompt | chosen | rejected], right-padded to the longest row. The rejected completion's
/// RoPE positions restart at |prompt| and its tokens do not attend to the chosen ones (`branchSpans`
/// hides the chosen span from them), so every completion token sees exactly the context it has in the
/// unshared (prompt, completion) sequence. The last prompt position predicts the first token of both
/// completions, so it is scored twice. Results equal `SequenceBatch`'s up to float summation order,
/// while a pair costs 2·|prompt| + |chosen| + |rejected| − |prompt| positions instead of 2·|prompt| + ….
///
/// Scored sequences are numbered as `PairBatch` orders its rows: chosen 0..<B, rejected B..<2B.
public struct SharedPromptPairBatch: Sendable {
    /// B, one per pair.
    public let rows: Int
    /// T, the longest packed row.
    public let length: Int
    /// [B, T] token ids, padded with the pad id.
    public let tokens: [Int32]
    /// [B, T] RoPE positions: 0..<P+C for prompt and chosen, P..<P+R again for rejected, 0 for padding.
    public let positions: [Int32]
    /// [B, 2] per row the chosen span [P, P+C), hidden from the rejected tokens.
    public let branchSpans: [Int32]
    /// [M] flattened positions (b·T + t) whose next-token log-prob is scored; the last prompt position
    /// appears twice.
    public let scoredPositions: [Int]
    /// [M] the token each scored position predicts.
    public let scoredTargets: [Int32]
    /// [M] the sequence (0..<2B) each scored log-prob belongs to.
    public let scoredSequences: [Int]
    /// [2B] completion tokens per sequence (the number of scored positions).
    public let completionCounts: [Int]
    /// [B] packed tokens per row (without padding).
    public let packedLengths: [Int]

    public init(_ pairs: [(prompt: [Int], chosen: [Int], rejected: [Int])], padID: Int) {
        let B = pairs.count
        rows = B
        packedLengths = pairs.map { $0.prompt.count + $0.chosen.count + $0.rejected.count }
        length = max(packedLengths.max() ?? 0, 1)
        var tokens = [Int32](repeating: Int32(padID), count: B * length)
        var positions = [Int32](repeating: 0, count: B * length)
        var spans: [Int32] = []
        var scored: [(position: Int, target: Int32, sequence: Int)] = []
        for (b, pair) in pairs.enumerated() {
            let row = b * length, P = pair.prompt.count, C = pair.chosen.count
            for (t, id) in (pair.prompt + pair.chosen + pair.rejected).enumerated() {
                tokens[row + t] = Int32(id)
                positions[row + t] = Int32(t < P + C ? t : t - C)
            }
            spans += [Int32(P), Int32(P + C)]
            // Completion token i sits at position P+i of its own sequence and is predicted from the
            // position before it: P−1 for the first token of either completion (none when P = 0).
            for (i, id) in pair.chosen.enumerated() where P + i >= 1 {
                scored.append((row + P + i - 1, Int32(id), b))
            }
            for (i, id) in pair.rejected.enumerated() where P + i >= 1 {
                scored.append((row + (i == 0 ? P - 1 : P + C + i - 1), Int32(id), B + b))
            }
        }
        self.tokens = tokens
        self.positions = positions
        branchSpans = spans
        scoredPositions = scored.map(\.position)
        scoredTargets = scored.map(\.target)
        scoredSequences = scored.map(\.sequence)
        completionCounts = (0..<2 * B).map { s in scored.lazy.filter { $0.sequence == s }.count }
    }

    /// Real (non-padding) positions the model computes.
    public var packedTokenCount: Int { packedLengths.reduce(0, +) }
}
