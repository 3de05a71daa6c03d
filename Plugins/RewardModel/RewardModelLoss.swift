import Foundation
import KeelCore

/// Reward-model training (Ouyang et al. 2022, arXiv 2203.02155, §3.5; Stiennon et al. 2020), the
/// Bradley–Terry model of pairwise preference: P(y_w ≻ y_l | x) = σ(r(x,y_w) − r(x,y_l)). The reward
/// r(x, y) = w·h is a scalar head `score.weight` [1, C] on the backbone's final hidden state h at the
/// last completion token (the EOS the trainer appends), trained with the whole backbone:
///
///     L = −(1/B) Σ_b log σ(r_w,b − r_l,b)
///
/// The loss needs the signal `reward-head` (`RewardHeadSignal`, which creates, seeds and trains the head;
/// the run's `export/` folder is then a Hugging Face `LlamaForSequenceClassification` that the `rm`
/// reward scores with). With `reward-model` as the only loss the LM head is never evaluated.
///
/// Metrics (TRL's `RewardTrainer`): `accuracy` = share of pairs with r_w > r_l (a tie counts as wrong),
/// `margin` = mean of r_w − r_l, and the mean rewards `rewards/chosen`, `rewards/rejected`.
public final class RewardModelLoss: LossPlugin {
    public enum Metric {
        public static let accuracy = "accuracy"
        public static let margin = "margin"
        public static let rewardsChosen = PairwiseMetrics.rewardsChosen
        public static let rewardsRejected = PairwiseMetrics.rewardsRejected
    }

    public static let descriptor = PluginDescriptor(
        name: "reward-model", kind: .loss,
        summary: "Bradley–Terry reward model: a scalar head on the last hidden state, −log σ(r_chosen − r_rejected)",
        capabilities: [.pairwiseLoss, .referenceFree], needs: [RewardHeadSignal.scores.key], consumes: [.paired],
        metrics: [Metric.accuracy, Metric.margin, Metric.rewardsChosen, Metric.rewardsRejected])

    public init(options: ResolvedOptions) throws {}

    public func loss(_ input: LossInput) throws -> LossOutput {
        let name = Self.descriptor.name
        let scores = try input[RewardHeadSignal.scores]
        let (chosen, rejected) = (scores.chosen, scores.rejected)
        guard chosen.shape == rejected.shape, chosen.shape.count == 1, chosen.count > 0 else {
            throw PluginInputError("\(name): chosen rewards have shape \(chosen.shape), rejected \(rejected.shape); expected equal shapes [B], B ≥ 1")
        }
        let margins = chosen - rejected
        let loss = PairwiseObjective.sigmoid(margins, labelSmoothing: 0).mean()
        let values = margins.toArray().map(Double.init)
        func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
        return LossOutput(loss: loss, metrics: [
            Metric.accuracy: mean(values.map { $0 > 0 ? 1 : 0 }),
            Metric.margin: mean(values),
            Metric.rewardsChosen: mean(chosen.toArray().map(Double.init)),
            Metric.rewardsRejected: mean(rejected.toArray().map(Double.init)),
        ])
    }
}
