import Foundation
import KeelCore

/// On-policy preference pairs: for each prompt, sample k replies from the starting policy, score each
/// with the recipe's reward plugin r, and keep
///
///     chosen = argmax_j r(x, y_j),   rejected = argmin_j r(x, y_j)      (the first such j on equal scores)
///
/// skipping the prompt when max = min (a tie: no preference to learn; counted under `tie`). The pairs
/// then go through the rest of the data list like any source's (split, shuffle, deft, …).
///
/// Prompts: a text file, one prompt per line (blank lines and lines starting with `#` skipped); ids are
/// `file:line`. With `chat: true` a prompt is a user message, rendered with the model's chat template,
/// and the replies are assistant messages; otherwise plain text continued as is.
///
/// Determinism: reply j of the prompt on line i is sampled from Philox(seed).split(i).next() split by j
/// (`PolicySampler`), in batches of `promptsPerBatch` prompts, where seed is the `seed` option or stream 3 of
/// `training.seed`, so the pairs follow from (model, prompts, options, seed). The trainer generates them
/// before training, from the starting policy; a resumed run generates them again, bit for bit the same on
/// the same machine and thread count, rather than storing them (the run's fingerprint covers the prompt
/// file and the model, so nothing it depends on can change unnoticed).
///
/// The reward plugin sees the prompt as plain text (a message's content, not the chat template).
/// Metrics: `generate/reward_mean` (every reply), `generate/reward_chosen`, `generate/reward_rejected`
/// (kept pairs), `generate/length_mean` (characters per reply).
public final class GeneratePairsSource: PolicySampledSource {
    public enum Option {
        public static let prompts = "prompts"
        public static let chat = "chat"
        public static let samples = "samples"
        public static let maxNewTokens = "max_new_tokens"
        public static let temperature = "temperature"
        public static let topP = "top_p"
        public static let seed = "seed"
        public static let limit = "limit"
    }

    public enum Metric {
        public static let rewardMean = "generate/reward_mean"
        public static let rewardChosen = "generate/reward_chosen"
        public static let rewardRejected = "generate/reward_rejected"
        public static let lengthMean = "generate/length_mean"
    }

    /// `report.skipped` key of prompts whose replies all scored the same.
    public static let tie = "tie"
    /// The `training.seed` sub-stream used without a `seed` option (1 and 2: shuffle and split).
    static let seedStream: UInt64 = 3
    /// Prompts whose k replies are decoded as one batch (4 × k rows): large enough that a decoding step
    /// reads the weights for many rows, small enough that rows waiting for the longest reply waste little.
    /// Fixed, because the batch's shape decides the float rounding and so the exact replies.
    public static let promptsPerBatch = 4

    public static let descriptor = PluginDescriptor(
        name: "generate-pairs", kind: .data,
        summary: "pairs sampled from the starting policy: k replies per prompt, chosen = best and rejected = worst by the reward plugin",
        options: [
            OptionSpec(Option.prompts, .path(mustExist: true), default: .required,
                       help: "text file of prompts, one per line (# comments and blank lines skipped), relative to the recipe's folder"),
            .bool(Option.chat, true, "prompts are user messages rendered with the model's chat template; false: plain text"),
            .int(Option.samples, 4, in: .atLeast(2), "k: replies sampled per prompt"),
            .int(Option.maxNewTokens, 64, in: .atLeast(1), "longest reply, in tokens"),
            .double(Option.temperature, 0.8, in: .positive, "sampling temperature"),
            .double(Option.topP, 0.95, in: NumericRange(lower: 0, upper: 1, lowerOpen: true), "nucleus sampling: smallest set of tokens with this much probability"),
            OptionSpec(Option.seed, .int(.nonNegative), default: .absent(note: "from training.seed"),
                       help: "seed of the sampler; unset: a sub-stream of training.seed"),
            OptionSpec(Option.limit, .int(.atLeast(1)), default: .absent(note: "all"), help: "use at most this many prompts"),
        ],
        capabilities: [.scoresWithReward], dataRole: .source, produces: .paired,
        metrics: [Metric.rewardMean, Metric.rewardChosen, Metric.rewardRejected, Metric.lengthMean])

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] {
        folderProblems(options, fileOptions: [Option.prompts])
    }

    public let promptsPath: String
    public let chat: Bool
    public let samples: Int
    public let sampling: SamplingRequest
    public let seed: Int?
    public let limit: Int?

    public init(options: ResolvedOptions) throws {
        promptsPath = options.string(Option.prompts) ?? ""
        chat = options.bool(Option.chat) ?? true
        samples = options.int(Option.samples) ?? 4
        sampling = SamplingRequest(maxNewTokens: options.int(Option.maxNewTokens) ?? 64,
                                   temperature: options.double(Option.temperature) ?? 0.8, topP: options.double(Option.topP) ?? 0.95)
        seed = options.int(Option.seed)
        limit = options.int(Option.limit)
    }

    /// (line number, prompt) of the prompt file, in file order, at most `limit`.
    public func prompts() throws -> [(line: Int, text: String)] {
        guard let data = FileManager.default.contents(atPath: promptsPath), let text = String(data: data, encoding: .utf8) else {
            throw PluginInputError("generate-pairs: cannot read \(promptsPath) as UTF-8 text; expected one prompt per line")
        }
        let prompts = text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, line in
            let prompt = line.trimmingCharacters(in: .whitespaces)
            return prompt.isEmpty || prompt.hasPrefix("#") ? nil : (line: index + 1, text: prompt)
        }
        guard !prompts.isEmpty else { throw PluginInputError("generate-pairs: \(promptsPath) has no prompts; expected one per line") }
        return Array(prompts.prefix(limit ?? prompts.count))
    }

    public func generate(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext,
                         sampler: any PolicySampler, reward: any RewardScorer) throws {
        let prompts = try prompts()
        let base = seed.map { UInt64($0) } ?? { var g = Philox(seed: context.seed).split(Self.seedStream); return g.next() }()
        var allRewards: [Double] = [], chosenRewards: [Double] = [], rejectedRewards: [Double] = [], characters = 0
        for start in stride(from: 0, to: prompts.count, by: Self.promptsPerBatch) {
            let chunk = prompts[start..<min(start + Self.promptsPerBatch, prompts.count)]
            let turns: [Turns] = chunk.map { chat ? .messages([ChatMessage(role: "user", content: $0.text)]) : .text($0.text) }
            let seeds = chunk.map { prompt in var generator = Philox(seed: base).split(UInt64(prompt.line)); return generator.next() }
            let replies = try sampler.sample(prompts: turns, count: samples, options: sampling, seeds: seeds)
            guard replies.count == chunk.count, replies.allSatisfy({ $0.count == samples }) else {
                throw PluginInputError("generate-pairs: the sampler returned \(replies.map(\.count)) replies for \(chunk.count) prompts; expected \(samples) each")
            }
            for ((line, text), (prompt, replies)) in zip(chunk, zip(turns, replies)) {
                let rewards = try replies.map { try reward.score(prompt: text, response: $0) }
                if let bad = rewards.firstIndex(where: { !$0.isFinite }) {
                    throw PluginInputError("generate-pairs: the reward plugin scored reply \(bad) to line \(line) of \(promptsPath) \(rewards[bad]); expected a finite number")
                }
                allRewards += rewards
                characters += replies.reduce(0) { $0 + $1.count }
                let (best, worst) = Self.extremes(rewards)
                if rewards[best] == rewards[worst] {
                    report.skipped[Self.tie, default: 0] += 1
                    continue
                }
                func turns(_ reply: String) -> Turns { chat ? .messages([ChatMessage(role: "assistant", content: reply)]) : .text(reply) }
                let pair = PreferencePair(id: exampleID(path: promptsPath, line: line), prompt: prompt,
                                          chosen: turns(replies[best]), rejected: turns(replies[worst]))
                data.train.append(.pair(pair))
                report.produced += 1
                for name in pair.flags.names { report.flagged[name, default: 0] += 1 }
                chosenRewards.append(rewards[best])
                rejectedRewards.append(rewards[worst])
            }
            sampler.progress("generate-pairs: \(start + chunk.count)/\(prompts.count) prompts, \(report.produced) pairs, "
                             + "\(report.skipped[Self.tie] ?? 0) ties")
        }
        func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }
        report.metrics[Metric.rewardMean] = mean(allRewards)
        report.metrics[Metric.rewardChosen] = mean(chosenRewards)
        report.metrics[Metric.rewardRejected] = mean(rejectedRewards)
        report.metrics[Metric.lengthMean] = Double(characters) / Double(max(1, allRewards.count))
    }

    /// Indices of the first highest and the first lowest score.
    static func extremes(_ scores: [Double]) -> (best: Int, worst: Int) {
        var best = 0, worst = 0
        for i in scores.indices {
            if scores[i] > scores[best] { best = i }
            if scores[i] < scores[worst] { worst = i }
        }
        return (best, worst)
    }
}
