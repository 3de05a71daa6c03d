/// A prompt and its completion as token ids, tokenised jointly (what the model sees) and split where the
/// prompt's own tokens end.
public struct PromptCompletionTokens: Equatable, Sendable {
    public var prompt: [Int]
    public var completion: [Int]

    public init(prompt: [Int], completion: [Int]) {
        self.prompt = prompt
        self.completion = completion
    }
}

/// The prompt's own tokenisation is not a prefix of the joint tokenisation, so there is no clean place
/// where the completion starts (a BPE merge crosses the boundary). Such a pair is reported and skipped.
public struct PromptPrefixMismatch: Error, CustomStringConvertible, Equatable {
    /// Index of the first token where the two tokenisations differ.
    public let position: Int
    public var description: String {
        "the prompt's tokens are not a prefix of prompt+completion's tokens (they differ at token \(position)): "
            + "a BPE merge crosses the prompt/completion boundary"
    }
}

extension BPETokenizer {
    /// Tokenises `prompt + completion` jointly, as the model reads it, and splits it after the prompt's
    /// own tokens. Joint tokenisation matters: tokenising the completion alone can differ at its first
    /// token (" Hello" vs "Hello"), which would score a sequence the model never sees.
    /// Special tokens written in the text (e.g. ChatML's `<|im_start|>`) are honoured, because chat
    /// templates render them as text.
    public func encode(prompt: String, completion: String) throws -> PromptCompletionTokens {
        let promptIDs = encode(prompt, allowSpecial: true)
        let joint = encode(prompt + completion, allowSpecial: true)
        if let position = promptIDs.indices.first(where: { $0 >= joint.count || promptIDs[$0] != joint[$0] }) {
            throw PromptPrefixMismatch(position: position)
        }
        return PromptCompletionTokens(prompt: promptIDs, completion: Array(joint[promptIDs.count...]))
    }
}

/// B right-padded (prompt, completion) sequences for one forward pass, with the targets that select the
/// completion tokens' log-probs.
///
/// Label shift: position t predicts token t+1, so `targets[b, t] = tokens[b, t+1]` when token t+1 is a
/// completion token and `ignoreIndex` otherwise (prompt tokens, padding, the last position). Summing the
/// per-position log-probs of a row therefore gives log π(completion | prompt).
/// Right padding needs no attention mask: under the causal mask, real positions never see later ones.
public struct SequenceBatch: Sendable {
    /// B
    public let rows: Int
    /// T, the longest sequence of the batch.
    public let length: Int
    /// [B, T] token ids, padded with the pad id.
    public let tokens: [Int32]
    /// [B, T] the token each position predicts, or `ignoreIndex`.
    public let targets: [Int32]
    /// [B] completion tokens per row (the number of non-ignored targets).
    public let completionCounts: [Int]
    /// [B] prompt + completion tokens per row (without padding).
    public let sequenceLengths: [Int]

    public init(_ sequences: [PromptCompletionTokens], padID: Int) {
        rows = sequences.count
        sequenceLengths = sequences.map { $0.prompt.count + $0.completion.count }
        length = max(sequenceLengths.max() ?? 0, 1)
        var tokens = [Int32](repeating: Int32(padID), count: rows * length)
        var targets = [Int32](repeating: ignoreIndex, count: rows * length)
        for (b, sequence) in sequences.enumerated() {
            let row = b * length
            let ids = sequence.prompt + sequence.completion
            for (t, id) in ids.enumerated() { tokens[row + t] = Int32(id) }
            // The completion token at index p+i is predicted from position p+i−1.
            for i in sequence.completion.indices where sequence.prompt.count + i >= 1 {
                targets[row + sequence.prompt.count + i - 1] = Int32(sequence.completion[i])
            }
        }
        self.tokens = tokens
        self.targets = targets
        completionCounts = sequences.map { $0.prompt.isEmpty ? max($0.completion.count - 1, 0) : $0.completion.count }
    }

    /// [B] flattened [B·T] index of each row's last real token.
    public var lastPositions: [Int] { sequenceLengths.enumerated().map { $0.offset * length + max($0.element, 1) - 1 } }

    /// Real (non-padding) tokens in the batch: what tokens/s counts.
    public var realTokenCount: Int { sequenceLengths.reduce(0, +) }
}
