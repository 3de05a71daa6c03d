import KeelCore

/// DEFT's guidance term (arXiv 2604.01787): pull the policy's next-token distribution along the chosen
/// completions towards the tokens that separate chosen from rejected completions in the training data.
///
///     L = −(1/B) · Σ_b R(x_b, y_w,b),    R(x, y) = (1/|y|) · Σ_t Σ_v πθ(v | x, y_<t) · Q_diff(v)
///
/// with Q_diff = Q_pos − Q_neg over the training pairs' completion tokens (`DifferentialDistributionSignal`,
/// counted before token-level filters such as `deft`) and R differentiable through πθ: the loss needs
/// `policy-expectations`, which the policy's provider computes with the LM head's softmax-expectation
/// kernel beside its log-probs (one forward and one backward) from the `expectation-vector` Q_diff. Added to
/// any loss with the node's weight μ, e.g.
///
///     loss:
///       - {name: dpo, beta: 0.1}
///       - {name: deft-guidance, weight: 0.5}     # μ
///
/// Our reading (the paper's exact formula is not public in our sources): the term is the negative mean
/// differential reward of the chosen completions over the batch, Q_diff fixed for the run.
///
/// Metrics: `reward_chosen`, `reward_rejected` (batch means of R), `reward_margin` (their difference).
public final class DEFTGuidanceLoss: LossPlugin {
    public enum Metric {
        public static let rewardChosen = "reward_chosen"
        public static let rewardRejected = "reward_rejected"
        public static let rewardMargin = "reward_margin"
    }

    public static let descriptor = PluginDescriptor(
        name: "deft-guidance", kind: .loss,
        summary: "DEFT guidance: −mean R(x, y_w), the chosen completions' expected Q_diff under the policy (add with weight μ)",
        capabilities: [.referenceFree], needs: [Signals.policyExpectations.key], consumes: [.paired],
        metrics: [Metric.rewardChosen, Metric.rewardRejected, Metric.rewardMargin])

    public init(options: ResolvedOptions) throws {}

    public func loss(_ input: LossInput) throws -> LossOutput {
        let rewards = try input[Signals.policyExpectations]
        guard rewards.chosen.shape.count == 1, rewards.chosen.count > 0, rewards.rejected.shape == rewards.chosen.shape else {
            throw PluginInputError("deft-guidance: differential rewards of shapes \(rewards.chosen.shape) and \(rewards.rejected.shape); "
                                 + "expected equal shapes [B], B ≥ 1, one per pair")
        }
        let meanChosen = Double(rewards.chosen.mean().item()), meanRejected = Double(rewards.rejected.mean().item())
        return LossOutput(loss: -rewards.chosen.mean(), metrics: [
            Metric.rewardChosen: meanChosen, Metric.rewardRejected: meanRejected, Metric.rewardMargin: meanChosen - meanRejected,
        ])
    }
}
