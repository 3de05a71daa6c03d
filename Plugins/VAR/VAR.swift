import Foundation
import KeelCore

/// VAR: Variational Alignment with Re-weighting (Du et al. 2025, arXiv 2502.11026), RLHF as reward-weighted
/// SFT. The KL-regularised RLHF optimum is π*(y|x) = πref(y|x)·exp(r(x,y)/λ) / Z(x); VAR minimises
/// KL(π* ‖ πθ), i.e. maximises the π*-weighted log-likelihood, with Z estimated inside the batch. For every
/// response y_i of the batch (the chosen AND the rejected completion of each pair) with reward r_i from the
/// recipe's `reward:` plugin:
///
///     s_i = r_i/λ + logπref(y_i|x_i)        w = softmax(s)  (in log space, DETACHED: no gradient)
///     L   = −Σ_i w_i · logπθ(y_i|x_i)/|y_i|
///
/// Choices where the paper leaves room, each an option:
/// - `normalize`: `batch` (default) takes one softmax over all 2B responses, the paper's in-batch estimate
///   of Z shared by every prompt; `prompt` takes a softmax over the responses of each prompt (the two of
///   a pair: a per-prompt Z) and averages the pairs, w_i = softmax_pair(s)_i / B. Either way Σw = 1.
/// - `ref_logp`: how logπref enters s: `sum` (default, the sequence log-probability of the formula),
///   `mean` (per token, so long responses are not down-weighted by their length), `none` (πref taken as
///   uniform: weights from rewards alone). The descriptor is static, so the reference model is loaded
///   even with `none` (its log-probs are then unused).
/// - `policy_logp`: `mean` (default, per-token log-likelihood as in the formula above) or `sum`.
/// With equal rewards and `ref_logp: none` every w_i = 1/(2B): L is the mean per-token NLL over both
/// completions. Declares `requires-non-empty-completions` because the per-token means divide by |y|.
///
/// Metrics: `var/weight_entropy` = −Σ w·log w (log 2B when uniform, 0 when one response takes all),
/// `var/max_weight` = max w.
public final class VARLoss: LossPlugin {
    public enum Normalization: String, CaseIterable { case batch, prompt }
    public enum ReferenceTerm: String, CaseIterable { case sum, mean, none }
    public enum PolicyTerm: String, CaseIterable { case mean, sum }

    public enum Option {
        public static let lambda = "lambda"
        public static let normalize = "normalize"
        public static let refLogp = "ref_logp"
        public static let policyLogp = "policy_logp"
    }

    public enum Metric {
        public static let weightEntropy = "var/weight_entropy"
        public static let maxWeight = "var/max_weight"
    }

    public static let descriptor = PluginDescriptor(
        name: "var", kind: .loss,
        summary: "VAR: SFT on every response weighted by softmax(reward/λ + log πref) over the batch (reward-weighted SFT)",
        options: [
            .double(Option.lambda, 1.0, in: .positive, "λ: reward temperature; smaller concentrates the weights on the best responses"),
            .choice(Option.normalize, Normalization.allCases.map(\.rawValue), Normalization.batch.rawValue,
                    "batch: one softmax over all responses of the batch; prompt: one per pair, averaged over pairs"),
            .choice(Option.refLogp, ReferenceTerm.allCases.map(\.rawValue), ReferenceTerm.sum.rawValue,
                    "log πref in the weights: sequence sum, per-token mean, or none (weights from rewards only)"),
            .choice(Option.policyLogp, PolicyTerm.allCases.map(\.rawValue), PolicyTerm.mean.rawValue,
                    "log πθ in the loss: per-token mean or sequence sum"),
        ],
        capabilities: [.requiresNonEmptyCompletions],
        needs: [Signals.policyLogProbs.key, Signals.rewards.key, Signals.referenceLogProbs.key], consumes: [.paired],
        metrics: [Metric.weightEntropy, Metric.maxWeight])

    public let lambda: Double
    public let normalization: Normalization
    public let referenceTerm: ReferenceTerm
    public let policyTerm: PolicyTerm

    public init(options: ResolvedOptions) throws {
        lambda = options.double(Option.lambda) ?? 1
        normalization = Normalization(rawValue: options.string(Option.normalize) ?? "") ?? .batch
        referenceTerm = ReferenceTerm(rawValue: options.string(Option.refLogp) ?? "") ?? .sum
        policyTerm = PolicyTerm(rawValue: options.string(Option.policyLogp) ?? "") ?? .mean
    }

    /// softmax over each group of `scores`, divided by the number of groups (so Σw = 1), in Double and
    /// shifted by each group's max: scores of ±1e4 neither overflow nor lose the small weights.
    public static func weights(scores: [Double], groups: [[Int]]) -> [Double] {
        var weights = [Double](repeating: 0, count: scores.count)
        for group in groups {
            let top = group.map { scores[$0] }.max() ?? 0
            let logZ = top + log(group.map { exp(scores[$0] - top) }.reduce(0, +))
            for i in group { weights[i] = exp(scores[i] - logZ) / Double(groups.count) }
        }
        return weights
    }

    public func loss(_ input: LossInput) throws -> LossOutput {
        let name = Self.descriptor.name
        let policy = try input[Signals.policyLogProbs].pairs("policy", for: name)
        let pairs = policy.chosen.tokenCounts.count
        let given = try input[Signals.rewards]
        let (chosenRewards, rejectedRewards) = (given.chosen, given.rejected)
        guard chosenRewards.count == pairs, rejectedRewards.count == pairs else {
            throw PluginInputError("\(name): \(chosenRewards.count) chosen and \(rejectedRewards.count) rejected rewards for \(pairs) pairs")
        }
        // Responses in one row: chosen 0..<B, then rejected B..<2B.
        let rewards = chosenRewards + rejectedRewards
        if let row = rewards.firstIndex(where: { !$0.isFinite }) {
            throw PluginInputError("\(name): the reward of the \(row < pairs ? "chosen" : "rejected") completion of row \(row % pairs) is \(rewards[row]); expected a finite number")
        }

        var referenceLogps = [Double](repeating: 0, count: 2 * pairs)
        if referenceTerm != .none {
            let reference = try input[Signals.referenceLogProbs].pairs("reference", for: name)
            guard reference.chosen.tokenCounts.count == pairs else {
                throw PluginInputError("\(name): \(pairs) policy pairs but \(reference.chosen.tokenCounts.count) reference pairs")
            }
            let (chosen, rejected) = referenceTerm == .mean
                ? (try reference.chosen.lengthAveraged("chosen", for: name), try reference.rejected.lengthAveraged("rejected", for: name))
                : (reference.chosen.logProbs, reference.rejected.logProbs)
            referenceLogps = (chosen.toArray() + rejected.toArray()).map(Double.init)
        }

        let scores = zip(rewards, referenceLogps).map { $0 / lambda + $1 }
        let groups = normalization == .batch ? [Array(0..<2 * pairs)] : (0..<pairs).map { [$0, pairs + $0] }
        let w = Self.weights(scores: scores, groups: groups)

        let (policyChosen, policyRejected) = policyTerm == .mean
            ? (try policy.chosen.lengthAveraged("chosen", for: name), try policy.rejected.lengthAveraged("rejected", for: name))
            : (policy.chosen.logProbs, policy.rejected.logProbs)
        let chosenWeights = Tensor(shape: [pairs], data: w[..<pairs].map { Float($0) })
        let rejectedWeights = Tensor(shape: [pairs], data: w[pairs...].map { Float($0) })
        let loss = -((chosenWeights * policyChosen).sum() + (rejectedWeights * policyRejected).sum())

        let entropy = -w.filter { $0 > 0 }.map { $0 * log($0) }.reduce(0, +)
        return LossOutput(loss: loss, metrics: [Metric.weightEntropy: entropy, Metric.maxWeight: w.max() ?? 0])
    }
}
