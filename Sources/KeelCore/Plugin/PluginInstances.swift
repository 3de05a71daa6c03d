/// The plugin objects of a checked graph, created only when a run starts.
public struct PluginInstances {
    public let data: [(node: PluginNode, plugin: any DataPlugin)]
    /// The recipe's `reward:`, nil without one.
    public let reward: RewardSum?
    public let loss: WeightedLoss
    public let schedulers: [(node: PluginNode, plugin: any SchedulerPlugin)]

    /// Runs the data nodes in recipe order; each node's report says what it produced, skipped, flagged.
    /// With a `sampler`, policy-sampled sources (generate-pairs) generate with it and the reward plugin;
    /// without one they produce nothing (`keel plan --data`).
    public func loadData(seed: UInt64, sampler: (any PolicySampler)? = nil) throws -> Dataset {
        var dataset = Dataset()
        for (node, plugin) in data {
            var report = DataNodeReport(node: "\(node.keyPath) \(node.name)")
            let context = DataContext(seed: seed, node: node.keyPath)
            if let source = plugin as? any PolicySampledSource, let sampler {
                guard let reward else {
                    throw PluginInputError("\(node.label): scores the replies it samples with the recipe's reward plugin, but the recipe has none; expected a `reward:` node")
                }
                try source.generate(&dataset, report: &report, context: context, sampler: sampler, reward: reward)
            } else {
                try plugin.process(&dataset, report: &report, context: context)
            }
            dataset.report.append(report)
        }
        return dataset
    }

    /// Runs the token-level data nodes (`TokenizedPairTransform`, e.g. equal-length truncation, and `ModelScoredPairFilter`,
    /// which asks `scorer`) in recipe order on the tokenised pairs of one split (`train` or
    /// `eval`); one report per such node, named like `loadData`'s. A model-scored filter without a scorer
    /// is refused, naming the node.
    public func transformTokenized(_ pairs: inout [TokenizedPair], split: String,
                                   scorer: (any PolicyScorer)? = nil) throws -> [DataNodeReport] {
        try data.compactMap { node, plugin in
            var report = DataNodeReport(node: "\(node.keyPath) \(node.name) (\(split), tokens)")
            if let transform = plugin as? any TokenizedPairTransform {
                try transform.transform(&pairs, report: &report)
            } else if let filter = plugin as? any ModelScoredPairFilter {
                guard let scorer else {
                    throw PluginInputError("\(node.label): scores pairs with the policy model, but no PolicyScorer was given; "
                                         + "expected the trainer to pass one to transformTokenized")
                }
                try filter.filter(&pairs, split: split, scorer: scorer, report: &report)
            } else {
                return nil
            }
            return report
        }
    }
}

extension PluginGraph {
    /// Creates every plugin (a plugin's initialiser may still refuse, e.g. a file that vanished).
    public func instantiate() throws -> PluginInstances {
        func make<P>(_ node: PluginNode, as: P.Type) throws -> P {
            guard let plugin = try node.type.init(options: node.options) as? P else {
                throw RegistryError(message: "\(node.label): plugin does not implement the \(node.descriptor.kind.rawValue) protocol")
            }
            return plugin
        }
        return PluginInstances(
            data: try recipe.data.map { ($0, try make($0, as: (any DataPlugin).self)) },
            reward: recipe.reward.isEmpty ? nil
                : RewardSum(terms: try recipe.reward.map { ($0, try make($0, as: (any RewardPlugin).self)) }),
            loss: WeightedLoss(terms: try recipe.loss.map { ($0, try make($0, as: (any LossPlugin).self)) }),
            schedulers: try recipe.schedulers.map { ($0, try make($0, as: (any SchedulerPlugin).self)) })
    }
}

/// A reward or a weighted sum of rewards, r = Σₖ wₖ·rₖ (as TRL's `reward_funcs` with `reward_weights`),
/// so that one recipe can ask for, say, concise *and* on-topic answers. Each term scores every response
/// with its own `score`/`scorePair` (a reward model: one forward per call).
public final class RewardSum: RewardScorer {
    public let terms: [(node: PluginNode, plugin: any RewardPlugin)]

    public init(terms: [(node: PluginNode, plugin: any RewardPlugin)]) { self.terms = terms }

    public var isComposite: Bool { terms.count > 1 }

    public func score(prompt: String, response: String) throws -> Double {
        try termScores(prompt: prompt, response: response).reduce(0) { $0 + $1.weighted }
    }

    public func scorePair(prompt: String, chosen: String, rejected: String) throws -> (chosen: Double, rejected: Double) {
        try terms.reduce((0.0, 0.0)) { sum, term in
            let pair = try term.plugin.scorePair(prompt: prompt, chosen: chosen, rejected: rejected)
            return (sum.0 + term.node.weight * pair.chosen, sum.1 + term.node.weight * pair.rejected)
        }
    }

    /// Each term's own (unweighted) score under its plugin name, and its weighted contribution.
    public func termScores(prompt: String, response: String) throws -> [(name: String, score: Double, weighted: Double)] {
        try terms.map { node, plugin in
            let score = try plugin.score(prompt: prompt, response: response)
            return (node.name, score, node.weight * score)
        }
    }
}

/// A loss or a weighted sum of losses, Σₖ wₖ·Lₖ (as TRL's `loss_type` list with `loss_weights`).
///
/// Each term's plugin computes its own scalar; the trainer forms the weighted sum with runtime ops
/// (this type does no tensor arithmetic). With several terms, metrics are namespaced by loss name
/// (`dpo/rewards/margin`) and each term's value is reported as `<name>/loss`.
public struct WeightedLoss {
    public let terms: [(node: PluginNode, plugin: any LossPlugin)]

    public var isComposite: Bool { terms.count > 1 }

    /// Every metric name the loss can emit, for the store's schema and `keel plugins`.
    public var metricNames: [String] {
        guard isComposite else { return terms.first?.node.descriptor.metrics ?? [] }
        return terms.flatMap { term in [term.node.name + "/loss"] + term.node.descriptor.metrics.map { term.node.name + "/" + $0 } }
    }

    /// Each term's weight and scalar loss, plus all metrics under their final names.
    public func evaluate(_ input: LossInput) throws -> (terms: [(weight: Double, loss: Tensor)], metrics: [String: Double]) {
        var weighted: [(weight: Double, loss: Tensor)] = []
        var metrics: [String: Double] = [:]
        for (node, plugin) in terms {
            let output = try plugin.loss(input)
            weighted.append((node.weight, output.loss))
            guard isComposite else { metrics = output.metrics; continue }
            metrics[node.name + "/loss"] = Double(output.loss.item())
            for (key, value) in output.metrics { metrics[node.name + "/" + key] = value }
        }
        return (weighted, metrics)
    }
}
