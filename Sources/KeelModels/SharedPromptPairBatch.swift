/// Preference pairs packed with each prompt computed once (Wang et al. 2024, "Accelerating Direct
/// Preference Optimization with Prefix Sharing", arXiv 2410.20305).
///
/// Each pair becomes [prompt | chosen | rejected], and the pairs are packed back to back into ONE row
/// without padding. The rejected completion's RoPE positions restart at |prompt|; through `keyMask`
/// every token attends only to its own pair (from the pair's first token on), and the rejected tokens
/// do not see the chosen span. So every completion token sees exactly the context it has in the
/// unshared (prompt, completion) sequence. The last prompt position predicts the first token of both
/// completions, so it is scored twice. Results equal `SequenceBatch`'s up to float summation order,
/// while a pair costs |prompt| + |chosen| + |rejected| positions instead of 2·|prompt| + … plus padding.
///
/// Scored sequences are numbered as `PairBatch` orders its rows: chosen 0..<B, rejected B..<2B.
public struct SharedPromptPairBatch: Sendable {
    /// B
    public let pairCount: Int
    /// Positions of the packed row: Σ over pairs of |prompt| + |chosen| + |rejected| (at least 1).
    public let length: Int
    /// [length] token ids.
    public let tokens: [Int32]
    /// [length] RoPE positions: 0..<P+C for prompt and chosen, P..<P+R again for rejected.
    public let positions: [Int32]
    /// [length, 3] per token: its pair's first position, and the span it must not see (the chosen
    /// completion for rejected tokens, empty otherwise); see `attentionForward`.
    public let keyMask: [Int32]
    /// [M] positions whose next-token log-prob is scored; each pair's last prompt position appears twice.
    public let scoredPositions: [Int]
    /// [M] the token each scored position predicts.
    public let scoredTargets: [Int32]
    /// [M] the sequence (0..<2B) each scored log-prob belongs to.
    public let scoredSequences: [Int]
    /// [2B] completion tokens per sequence (the number of scored positions).
    public let completionCounts: [Int]

    public init(_ pairs: [(prompt: [Int], chosen: [Int], rejected: [Int])], padID: Int) {
        let B = pairs.count
        pairCount = B
        var tokens: [Int32] = [], positions: [Int32] = [], keyMask: [Int32] = []
        var scored: [(position: Int, target: Int32, sequence: Int)] = []
        var counts = [Int](repeating: 0, count: 2 * B)
        for (b, pair) in pairs.enumerated() {
            let start = tokens.count, P = pair.prompt.count, C = pair.chosen.count
            for (t, id) in (pair.prompt + pair.chosen + pair.rejected).enumerated() {
                tokens.append(Int32(id))
                positions.append(Int32(t < P + C ? t : t - C))
                keyMask += t < P + C ? [Int32(start), 0, 0] : [Int32(start), Int32(start + P), Int32(start + P + C)]
            }
            // Completion token i sits at position P+i of its own sequence and is predicted from the
            // position before it: P−1 for the first token of either completion (none when P = 0).
            for (i, id) in pair.chosen.enumerated() where P + i >= 1 {
                scored.append((start + P + i - 1, Int32(id), b))
                counts[b] += 1
            }
            for (i, id) in pair.rejected.enumerated() where P + i >= 1 {
                scored.append((start + (i == 0 ? P - 1 : P + C + i - 1), Int32(id), B + b))
                counts[B + b] += 1
            }
        }
        if tokens.isEmpty { (tokens, positions, keyMask) = ([Int32(padID)], [0], [0, 0, 0]) }
        length = tokens.count
        self.tokens = tokens
        self.positions = positions
        self.keyMask = keyMask
        scoredPositions = scored.map(\.position)
        scoredTargets = scored.map(\.target)
        scoredSequences = scored.map(\.sequence)
        completionCounts = counts
    }
}
