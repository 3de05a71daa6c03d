import Foundation

/// Turns preference pairs into the token ids the trainer scores, as TRL's DPO trainer does:
///
/// - plain text (HH, TRL "standard"): prompt + completion tokenised jointly (`encode(prompt:completion:)`);
/// - messages (TRL "conversational"): the prompt rendered with the chat template and the generation
///   prompt, the completion = the rendering of prompt + completion messages minus that prefix;
/// - EOS appended to every completion (so the model learns to stop, and an empty reply still has one
///   token to score);
/// - a pair whose prompt tokens are not a prefix of prompt + completion (a BPE merge crosses the
///   boundary) is skipped and counted by cause; the prompt's ids must be the same for both completions.
public struct PairTokenizer {
    /// `DataNodeReport.skipped` keys.
    public enum SkipCause {
        public static let promptPrefixMismatch = "prompt-prefix-mismatch"
        public static let chatTemplatePrefixMismatch = "chat-template-prefix-mismatch"
        public static let unknownChatRole = "unknown-chat-role"
        public static let mixedFormats = "mixed-text-and-messages"
    }

    /// `DataNodeReport.flagged` key of pairs cut to `max_length`.
    public static let truncatedFlag = "truncated"

    public let tokenizer: BPETokenizer
    public let eosID: Int

    public init(tokenizer: BPETokenizer) throws {
        guard let eos = tokenizer.eosTokenID else {
            throw TrainerError("the tokenizer has no EOS token; the trainer appends EOS to every completion")
        }
        self.tokenizer = tokenizer
        eosID = eos
    }

    struct Skip: Error { let cause: String }

    /// The pairs of `examples` as token ids; what was skipped is counted in the returned report (named
    /// `node`). Examples that are not pairs are an error: the trainer trains on preference pairs.
    public func tokenize(_ examples: [Example], node: String) throws -> (pairs: [TokenizedPair], report: DataNodeReport) {
        var report = DataNodeReport(node: node)
        var pairs: [TokenizedPair] = []
        for example in examples {
            guard case .pair(let pair) = example else {
                throw TrainerError("\(example.id): a \(example.shape.rawValue) example; the trainer trains on preference pairs only")
            }
            do {
                pairs.append(try tokenize(pair))
            } catch let skip as Skip {
                report.skipped[skip.cause, default: 0] += 1
            }
        }
        report.produced = pairs.count
        return (pairs, report)
    }

    /// Truncates every pair to `maxLength` (see `truncate(_:maxLength:)`); the count goes to
    /// `report.flagged["truncated"]`.
    public static func truncate(_ pairs: inout [TokenizedPair], maxLength: Int, report: inout DataNodeReport) {
        for index in pairs.indices where truncate(&pairs[index], maxLength: maxLength) {
            report.flagged[truncatedFlag, default: 0] += 1
        }
    }

    func tokenize(_ pair: PreferencePair) throws -> TokenizedPair {
        let (prompt, chosen, rejected) = try texts(pair)
        let c: PromptCompletionTokens, r: PromptCompletionTokens
        do {
            c = try tokenizer.encode(prompt: prompt, completion: chosen)
            r = try tokenizer.encode(prompt: prompt, completion: rejected)
        } catch is PromptPrefixMismatch {
            throw Skip(cause: SkipCause.promptPrefixMismatch)
        }
        return TokenizedPair(id: pair.id, prompt: c.prompt, chosen: c.completion + [eosID], rejected: r.completion + [eosID])
    }

    /// One response to a prompt as the trainer scores a completion (reward plugins that read a model):
    /// prompt + response tokenised jointly, EOS appended, cut to `maxLength` as `truncate` cuts a pair.
    /// Where a BPE merge crosses the boundary (the trainer would skip such a pair) the two parts are
    /// tokenised apart, so that any text, e.g. a sampled response, still gets a score.
    public func sequence(prompt: String, response: String, maxLength: Int) -> PromptCompletionTokens {
        let tokens = (try? tokenizer.encode(prompt: prompt, completion: response))
            ?? PromptCompletionTokens(prompt: tokenizer.encode(prompt, allowSpecial: true),
                                      completion: tokenizer.encode(response, allowSpecial: true))
        var pair = TokenizedPair(id: "", prompt: tokens.prompt, chosen: tokens.completion + [eosID], rejected: [])
        Self.truncate(&pair, maxLength: maxLength)
        return PromptCompletionTokens(prompt: pair.prompt, completion: pair.chosen)
    }

    /// The id that pads a batch: the tokenizer's padding token, else EOS (right padding is never read).
    public var padID: Int { tokenizer.paddingTokenID ?? eosID }

    /// (prompt, chosen, rejected) as the text the model reads.
    func texts(_ pair: PreferencePair) throws -> (String, String, String) {
        switch (pair.prompt, pair.chosen, pair.rejected) {
        case (.text(let p), .text(let c), .text(let r)):
            return (p, c, r)
        case (.messages(let p), .messages(let c), .messages(let r)):
            let template = try tokenizer.chatTemplate()
            let prompt = try promptText(.messages(p))
            func completion(_ messages: [ChatMessage]) throws -> String {
                let full = template.render(try chat(p + messages), addGenerationPrompt: false)
                guard full.hasPrefix(prompt) else { throw Skip(cause: SkipCause.chatTemplatePrefixMismatch) }
                return String(full.dropFirst(prompt.count))
            }
            return (prompt, try completion(c), try completion(r))
        default:
            throw Skip(cause: SkipCause.mixedFormats)
        }
    }

    /// A prompt as the text the model reads before its reply: text as is, messages rendered with the chat
    /// template and its generation prompt (what training pairs' prompts become; generation starts here).
    func promptText(_ prompt: Turns) throws -> String {
        switch prompt {
        case .text(let p): return p
        case .messages(let p): return try tokenizer.chatTemplate().render(try chat(p), addGenerationPrompt: true)
        }
    }

    private func chat(_ messages: [ChatMessage]) throws -> [KeelModels.ChatMessage] {
        try messages.map {
            guard let role = ChatRole(rawValue: $0.role) else { throw Skip(cause: SkipCause.unknownChatRole) }
            return KeelModels.ChatMessage(role: role, content: $0.content)
        }
    }

    /// Fits prompt + the longer completion into `maxLength` tokens; returns whether anything was cut.
    ///
    /// The prompt keeps its END (the most recent turns, next to the reply) and both completions keep
    /// their BEGINNING (what the model says first), as TRL's `truncation_mode="keep_end"` for prompts.
    /// With c = the longer completion's length, the prompt keeps min(|prompt|, max(maxLength − c,
    /// maxLength / 2)) tokens — everything the completions leave free, but at least half the window
    /// when they are long — and each completion is then cut to maxLength − kept prompt tokens. Both
    /// completions see the same truncated prompt, so their log-probs stay comparable.
    @discardableResult
    public static func truncate(_ pair: inout TokenizedPair, maxLength: Int) -> Bool {
        let longer = max(pair.chosen.count, pair.rejected.count)
        guard pair.prompt.count + longer > maxLength else { return false }
        let promptKept = min(pair.prompt.count, max(maxLength - longer, maxLength / 2))
        let completionKept = maxLength - promptKept
        pair.prompt = Array(pair.prompt.suffix(promptKept))
        pair.chosen = Array(pair.chosen.prefix(completionKept))
        pair.rejected = Array(pair.rejected.prefix(completionKept))
        return true
    }
}

/// One forward batch of pairs, so policy and reference each run a single forward pass per micro-batch:
/// with `sharesPrompt` (the default) one packed row per pair whose prompt is computed once
/// (`SharedPromptPairBatch`), otherwise a `SequenceBatch` whose rows 0..<B are the chosen sequences and
/// rows B..<2B the rejected ones. Both give the same log-probs up to float summation order.
public struct PairBatch {
    public let pairs: [TokenizedPair]
    public let layout: Layout

    public enum Layout {
        case sharedPrompt(SharedPromptPairBatch)
        case separate(SequenceBatch)
    }

    public init(_ pairs: [TokenizedPair], padID: Int, sharesPrompt: Bool = true) {
        self.pairs = pairs
        if sharesPrompt {
            layout = .sharedPrompt(SharedPromptPairBatch(pairs.map { ($0.prompt, $0.chosen, $0.rejected) }, padID: padID))
        } else {
            let chosen = pairs.map { PromptCompletionTokens(prompt: $0.prompt, completion: $0.chosen) }
            let rejected = pairs.map { PromptCompletionTokens(prompt: $0.prompt, completion: $0.rejected) }
            layout = .separate(SequenceBatch(chosen + rejected, padID: padID))
        }
    }

    /// The model's sequence log-probs, split into chosen and rejected.
    public func scores(_ model: LlamaModel) -> LossBatch {
        let (logProbs, counts): (Tensor, [Int])
        switch layout {
        case .sharedPrompt(let batch): (logProbs, counts) = model.sequenceLogProbs(batch)
        case .separate(let batch): (logProbs, counts) = model.sequenceLogProbs(batch)
        }
        return split(logProbs, counts)
    }

    /// `scores` and, from the same forward, each completion's mean expectation of q under the model,
    /// (1/|y|)·Σ_t Σ_v π(v | x, y_<t)·q[v], chosen and rejected [B] each; all differentiable. Needs the
    /// separate-rows layout (`sharesPrompt: false`): the expectation kernel scores positions, not
    /// (row, target) lists.
    public func scoresAndExpectations(_ model: LlamaModel, vector q: [Float]) -> (LossBatch, PairedTensors) {
        let sequences = separateRows
        let (perPosition, expectations) = model.targetLogProbsAndExpectations(sequences, vector: q)
        let shape = [sequences.rows, sequences.length], counts = sequences.completionCounts
        let means = expectations.reshaped(shape).sum(axes: [1]) * Tensor(counts.map { 1 / Float(max($0, 1)) })
        let b = pairs.count
        return (split(perPosition.reshaped(shape).sum(axes: [1]), counts), PairedTensors(chosen: means.rows(0..<b), rejected: means.rows(b..<2 * b)))
    }

    /// The chosen rows 0..<B and rejected rows B..<2B of a batch built with `sharesPrompt: false` (for
    /// quantities read per sequence position: expectations, last-token hidden states).
    public var separateRows: SequenceBatch {
        guard case .separate(let sequences) = layout else {
            preconditionFailure("PairBatch: per-sequence rows need a batch built with sharesPrompt: false")
        }
        return sequences
    }

    private func split(_ logProbs: Tensor, _ counts: [Int]) -> LossBatch {
        let b = pairs.count
        return .paired(chosen: SequenceScores(logProbs: logProbs.rows(0..<b), tokenCounts: Array(counts[0..<b])),
                       rejected: SequenceScores(logProbs: logProbs.rows(b..<2 * b), tokenCounts: Array(counts[b...])))
    }
}
