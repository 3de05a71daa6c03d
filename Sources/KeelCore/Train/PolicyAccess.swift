import Foundation

/// The trainer's model as data plugins and evaluation see it: the `PolicyScorer` model-scored filters rank pairs with,
/// the `PolicySampler` generate-pairs writes pairs with, and greedy answers for generation-based
/// evaluation. Plugins get the protocols, never `LlamaModel`. Before the first step it is the starting
/// policy; the trainer updates the same model in place, so later answers come from the trained one.
final class PolicyAccess: PolicyScorer, PolicySampler {
    let model: LlamaModel
    let pairTokenizer: PairTokenizer
    /// Generation stops after any of these: EOS, and ChatML's turn end when the vocabulary has it.
    let stopTokens: Set<Int>
    /// `training.max_length`: scored sequences are cut to it as training cuts them.
    let maxLength: Int
    private let log: (String) -> Void

    init(model: LlamaModel, pairTokenizer: PairTokenizer, maxLength: Int, log: @escaping (String) -> Void) {
        self.model = model
        self.pairTokenizer = pairTokenizer
        self.maxLength = maxLength
        self.log = log
        let tokenizer = pairTokenizer.tokenizer
        stopTokens = Set([pairTokenizer.eosID, model.config.eosTokenId, tokenizer.id(forToken: ChatMLTemplate.turnEnd)].compactMap { $0 })
    }

    // MARK: PolicyScorer

    var vocabularySize: Int { model.config.vocab }

    func expectedValue(of vector: [Float], prompts: [[Int]], completions: [[Int]]) throws -> [Double] {
        guard prompts.count == completions.count else {
            throw TrainerError("policy scorer: \(prompts.count) prompts for \(completions.count) completions; expected them aligned")
        }
        // Filters run before the trainer truncates pairs to max_length; score what training will see (the
        // prompt's end, the completion's beginning: `PairTokenizer.truncate`, here per sequence).
        let sequences = zip(prompts, completions).map { prompt, completion in
            var pair = TokenizedPair(id: "", prompt: prompt, chosen: completion, rejected: completion)
            PairTokenizer.truncate(&pair, maxLength: maxLength)
            return PromptCompletionTokens(prompt: pair.prompt, completion: pair.chosen)
        }
        return model.completionExpectations(sequences, vector: vector)
    }

    // MARK: PolicySampler

    func sample(prompts: [Turns], count: Int, options: SamplingRequest, seeds: [UInt64]) throws -> [[String]] {
        guard prompts.count == seeds.count else {
            throw TrainerError("policy sampler: \(prompts.count) prompts for \(seeds.count) seeds; expected one seed per prompt")
        }
        let ids = try prompts.map(promptTokens)
        // One generator per reply, split off its prompt's seed, so reply j does not depend on the others.
        let rowSeeds = seeds.flatMap { seed in (0..<count).map { j in var g = Philox(seed: seed).split(UInt64(j)); return g.next() } }
        let replies = try replies(to: ids.flatMap { [[Int]](repeating: $0, count: count) }, maxNewTokens: options.maxNewTokens,
                                  sampling: SamplingOptions(temperature: Float(options.temperature), topP: Float(options.topP)),
                                  seeds: rowSeeds)
        return prompts.indices.map { i in replies[i * count ..< (i + 1) * count].map(\.text) }
    }

    func progress(_ line: String) { log(line) }

    // MARK: Evaluation

    /// The greedy reply to each prompt and its length in tokens (the stop token not counted), decoded as
    /// one batch.
    func answers(_ prompts: [Turns], maxNewTokens: Int) throws -> [(text: String, tokens: Int)] {
        try replies(to: try prompts.map(promptTokens), maxNewTokens: maxNewTokens, sampling: .greedy,
                    seeds: [UInt64](repeating: 0, count: prompts.count))
    }

    /// `prompt` as token ids, rendered as training renders prompts (chat template for messages).
    private func promptTokens(_ prompt: Turns) throws -> [Int] {
        let text: String
        do {
            text = try pairTokenizer.promptText(prompt)
        } catch let skip as PairTokenizer.Skip {
            throw TrainerError("a prompt cannot be rendered for generation: \(skip.cause)")
        }
        let ids = pairTokenizer.tokenizer.encode(text, allowSpecial: true)
        guard !ids.isEmpty else { throw TrainerError("an empty prompt; expected text to continue") }
        return ids
    }

    private func replies(to prompts: [[Int]], maxNewTokens: Int, sampling: SamplingOptions,
                         seeds: [UInt64]) throws -> [(text: String, tokens: Int)] {
        let results = try model.generateBatch(prompts: prompts, options: GenerationOptions(
            maxNewTokens: maxNewTokens, stopTokenIDs: stopTokens, sampling: sampling), seeds: seeds)
        return try results.map { result in
            let tokens = result.tokens.filter { !stopTokens.contains($0) }
            return (try pairTokenizer.tokenizer.decode(tokens, skipSpecial: true), tokens.count)
        }
    }
}
