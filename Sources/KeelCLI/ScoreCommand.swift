import ArgumentParser
import Foundation
import KeelCore
import KeelModels

/// `keel score`: Σ log π(completion | prompt) of the chosen and rejected completion of every preference
/// pair of a file, with their token counts (what DPO's implicit reward is built from). Given a reward
/// model (the export of a `reward-model` run), each completion's reward instead, and the accuracy.
struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Print the summed completion log-probs of each pair's chosen and rejected answers.",
        discussion: """
        Accepts Anthropic HH lines {"chosen", "rejected"} (prompt = shared prefix up to the last \
        "\\n\\nAssistant:") and TRL preference lines {prompt, chosen, rejected} (strings, or message lists \
        rendered with the model's ChatML template). Prompt and completion are tokenised jointly; no BOS is \
        added, and EOS only with --eos (the trainer appends EOS to every completion, so --eos gives the \
        log-probs a run's metrics are built from; without it, those of the text alone). Given a reward model folder (LlamaForSequenceClassification, e.g. the export/ of \
        a reward-model run), it prints each completion's reward instead — EOS appended and cut to the \
        model's positions, as the trainer scores them — and the share of pairs ranked right. \
        With --ids FILE.json ({"input_ids": [[…]], "attention_mask": [[…]]}, right-padded, no tokenizer \
        needed) it prints {"token_logprobs", "sequence_logprobs"} as JSON: every next-token log-prob, 0 \
        where the next token is padding, as transformers computes them.
        """)

    enum PretokenizerChoice: String, ExpressibleByArgument, CaseIterable {
        /// The pre-tokenizer the GGUF names (`tokenizer.ggml.pre`): what the model was trained with.
        case gguf
        /// The plain GPT-2 split, as transformers' GGUF loader applies it (reproduces the PyTorch fixture).
        case gpt2
    }

    @Option(help: "A GGUF model file, or a Hugging Face model directory (e.g. one `keel export` wrote).")
    var model: String

    @Option(help: "JSON-lines file of preference pairs (HH or TRL format).")
    var data: String?

    @Option(help: "JSON file of token ids (input_ids, attention_mask): print every next-token log-prob instead.")
    var ids: String?

    @Option(help: "Pre-tokenizer of a GGUF model: gguf (the file's own) or gpt2 (transformers' GGUF loader).")
    var pretokenizer: PretokenizerChoice = .gguf

    @Option(help: "Score at most this many pairs.")
    var limit: Int?

    @Flag(help: "Print one JSON object per pair.")
    var json = false

    @Flag(help: "Append EOS to every completion before scoring, as the trainer does.")
    var eos = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        if (data == nil) == (ids == nil) { throw ValidationError("give exactly one of --data FILE.jsonl and --ids FILE.json") }
    }

    func run() throws {
        if let ids { return try runTokenIDs(ids) }
        guard let data else { throw ValidationError("give --data FILE.jsonl or --ids FILE.json") }
        if LlamaRewardModel.isRewardModelFolder(model) { return try runRewardModel(data) }
        let (llama, tokenizer) = try ModelLoading.pretrained(at: model, ggufPretokenizer: pretokenizer == .gpt2 ? .gpt2 : nil)
        let pairs = try readPairs(data)
        let appended: [Int]
        if eos {
            guard let eosID = tokenizer.eosTokenID else { throw ValidationError("--eos: the model's tokenizer has no EOS token") }
            appended = [eosID]
        } else {
            appended = []
            printError("keel score: completions scored without EOS; the trainer appends one (--eos scores as it does)")
        }

        // Tokenise every pair; a pair whose prompt tokens are not a prefix of the joint ones is reported and skipped.
        var scored: [(pair: PreferencePair, chosen: Int, rejected: Int)] = []
        var sequences: [PromptCompletionTokens] = []
        for pair in pairs {
            do {
                let (prompt, chosen, rejected) = try texts(of: pair, tokenizer: tokenizer)
                var c = try tokenizer.encode(prompt: prompt, completion: chosen)
                var r = try tokenizer.encode(prompt: prompt, completion: rejected)
                c.completion += appended
                r.completion += appended
                for s in [c, r] where s.prompt.count + s.completion.count > llama.config.maxPositions {
                    throw ValidationError("\(s.prompt.count + s.completion.count) tokens exceed the model's \(llama.config.maxPositions) positions")
                }
                scored.append((pair, sequences.count, sequences.count + 1))
                sequences += [c, r]
            } catch {
                printError("\(pair.id): skipped: \(error)")
            }
        }
        let scores = llama.scoreCompletions(sequences)
        try refuseNonFinite(scored.map { [scores[$0.chosen].logProb, scores[$0.rejected].logProb] }, of: scored.map(\.pair.id), what: "log-probs")
        for (pair, c, r) in scored {
            let line = ScoreLine(id: pair.id, chosenLogProb: scores[c].logProb, chosenTokens: scores[c].tokens,
                                 rejectedLogProb: scores[r].logProb, rejectedTokens: scores[r].tokens)
            if json {
                print(try JSONOutput.line(line))
            } else {
                print(String(format: "%@  chosen %.4f (%d tokens)  rejected %.4f (%d tokens)", line.id,
                             line.chosenLogProb, line.chosenTokens, line.rejectedLogProb, line.rejectedTokens))
            }
        }
        if scored.count < pairs.count { printError("\(pairs.count - scored.count) of \(pairs.count) pairs skipped") }
    }

    /// Every next-token log-prob of the rows of a token-id file, as JSON.
    private func runTokenIDs(_ path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ValidationError("\(path): cannot read: \(error.localizedDescription)")
        }
        let llama = try LlamaModel(weights: ModelWeights(path: model))
        let result = try llama.tokenLogProbs(TokenIDBatch(json: data, source: path), source: path)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
    }

    /// Rewards of each pair's completions under the reward model at `model`, and the accuracy.
    private func runRewardModel(_ data: String) throws {
        let rewardModel = try LlamaRewardModel(huggingFaceDirectory: URL(fileURLWithPath: model))
        let pairTokenizer = try PairTokenizer(tokenizer: try BPETokenizer(huggingFaceDirectory: URL(fileURLWithPath: model)))
        let maxLength = rewardModel.backbone.config.maxPositions
        var scored: [PreferencePair] = []
        var sequences: [PromptCompletionTokens] = []
        for pair in try readPairs(data) {
            do {
                let (prompt, chosen, rejected) = try texts(of: pair, tokenizer: pairTokenizer.tokenizer)
                sequences += [pairTokenizer.sequence(prompt: prompt, response: chosen, maxLength: maxLength),
                              pairTokenizer.sequence(prompt: prompt, response: rejected, maxLength: maxLength)]
                scored.append(pair)
            } catch {
                printError("\(pair.id): skipped: \(error)")
            }
        }
        let rewards = rewardModel.scoreSequences(sequences, padID: pairTokenizer.padID)
        try refuseNonFinite(scored.indices.map { [rewards[2 * $0], rewards[2 * $0 + 1]] }, of: scored.map(\.id), what: "rewards")
        var right = 0
        for (index, pair) in scored.enumerated() {
            let line = RewardLine(id: pair.id, chosenReward: rewards[2 * index], rejectedReward: rewards[2 * index + 1])
            if line.chosenReward > line.rejectedReward { right += 1 }
            if json {
                print(try JSONOutput.line(line))
            } else {
                print(String(format: "%@  chosen %.4f  rejected %.4f", line.id, line.chosenReward, line.rejectedReward))
            }
        }
        guard !scored.isEmpty else { return }
        printError(String(format: "accuracy %.4f (%d of %d pairs: chosen reward > rejected reward)",
                          Double(right) / Double(scored.count), right, scored.count))
    }

    /// NaN or ±inf scores mean the model's weights are not finite: an error, not numbers to print.
    private func refuseNonFinite(_ values: [[Double]], of ids: [String], what: String) throws {
        let bad = zip(ids, values).filter { !$0.1.allSatisfy(\.isFinite) }.map(\.0)
        guard let first = bad.first else { return }
        throw TrainerError("\(model): \(bad.count) of \(ids.count) pairs have non-finite \(what) (NaN or ±inf; first: \(first)); "
                           + "expected finite values: the model's weights are not finite")
    }

    struct RewardLine: Encodable {
        let id: String
        let chosenReward: Double, rejectedReward: Double
    }

    struct ScoreLine: Encodable {
        let id: String
        let chosenLogProb: Double, chosenTokens: Int
        let rejectedLogProb: Double, rejectedTokens: Int
    }

    /// The pairs of `data`; skipped lines are reported on standard error.
    private func readPairs(_ data: String) throws -> [PreferencePair] {
        let (pairs, skipped) = try PreferenceFile.read(data, limit: limit)
        for (cause, count) in skipped.sorted(by: { $0.key < $1.key }) { printError("\(data): \(count) pairs skipped (\(cause))") }
        return pairs
    }

    /// (prompt, chosen completion, rejected completion) as text. Message lists are rendered with the
    /// model's ChatML template: the prompt with the assistant generation prompt, each completion as
    /// the rest of the rendered whole conversation (so it ends with the turn's <|im_end|>).
    private func texts(of pair: PreferencePair, tokenizer: BPETokenizer) throws -> (String, String, String) {
        switch (pair.prompt, pair.chosen, pair.rejected) {
        case (.text(let p), .text(let c), .text(let r)):
            return (p, c, r)
        case (.messages(let p), .messages(let c), .messages(let r)):
            let template = try tokenizer.chatTemplate()
            let promptMessages = try p.map(chatMessage)
            let prompt = template.render(promptMessages, addGenerationPrompt: true)
            func completion(_ messages: [KeelCore.ChatMessage]) throws -> String {
                let whole = template.render(promptMessages + (try messages.map(chatMessage)), addGenerationPrompt: false)
                guard whole.hasPrefix(prompt) else {
                    throw ValidationError("the rendered conversation does not start with the rendered prompt (does the completion start with an assistant message?)")
                }
                return String(whole.dropFirst(prompt.count))
            }
            return (prompt, try completion(c), try completion(r))
        default:
            throw ValidationError("prompt, chosen and rejected mix strings and message lists")
        }
    }

    private func chatMessage(_ message: KeelCore.ChatMessage) throws -> KeelModels.ChatMessage {
        guard let role = ChatRole(rawValue: message.role) else {
            throw ValidationError("message role \(message.role.debugDescription) is not one of \(ChatRole.allCases.map(\.rawValue))")
        }
        return KeelModels.ChatMessage(role: role, content: message.content)
    }
}
