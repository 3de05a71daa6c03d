/// Data sources that write their examples with the starting policy (e.g. generate-pairs: sample k replies
/// per prompt, keep the best and the worst under the recipe's reward). A data plugin cannot see the model,
/// so the trainer hands it a `PolicySampler` — the PolicyScorer pattern of ModelScoredFilter.swift — which
/// keeps plugins independent of `LlamaModel`.

/// The starting policy as a generating data source sees it. The trainer implements it with its model
/// (KV-cached sampling, `LlamaModel.generate`), before any training step.
public protocol PolicySampler: AnyObject {
    /// `count` replies to each prompt of `prompts`, rendered as the trainer renders prompts for training
    /// (text as is; messages with the model's chat template and its generation prompt). Reply j to
    /// prompts[i] is drawn by a temperature / top-p sampler seeded from `Philox(seed: seeds[i]).split(j)`,
    /// so it follows from (model, prompt, options, seed, j) and the batch the caller chose. Replies end at
    /// EOS (or the chat turn's end, which is not part of the text) or after `maxNewTokens` tokens. All
    /// replies of one call are decoded as one batch (decoding is memory-bound: rows are nearly free).
    func sample(prompts: [Turns], count: Int, options: SamplingRequest, seeds: [UInt64]) throws -> [[String]]

    /// One line of progress for the run's display (long generation should show it is alive).
    func progress(_ line: String)
}

/// How a `PolicySampler` draws replies.
public struct SamplingRequest: Equatable, Sendable {
    public var maxNewTokens: Int
    /// 0: greedy (then every reply is the same).
    public var temperature: Double
    public var topP: Double

    public init(maxNewTokens: Int, temperature: Double, topP: Double) {
        self.maxNewTokens = maxNewTokens
        self.temperature = temperature
        self.topP = topP
    }
}

/// A data source whose examples come from the starting policy and the recipe's reward (one plugin or a
/// weighted sum).
///
/// Trainer contract: pass a `PolicySampler` and the reward plugin to `PluginInstances.loadData`, which
/// calls `generate` in recipe order instead of `process`. Without a sampler (`keel plan --data`), `process`
/// runs instead and produces nothing: generating needs the model, which planning does not load.
public protocol PolicySampledSource: DataPlugin {
    func generate(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext,
                  sampler: any PolicySampler, reward: any RewardScorer) throws
}

extension PolicySampledSource {
    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        report.produced = 0
    }
}
