import KeelCore

/// Supervised fine-tuning: negative log-likelihood of the target completion (the chosen one of a pair).
///
///     L = −Σ_i logπθ(y_i|x_i) / Σ_i |y_i|     over the batch rows i
///
/// a TOKEN mean (every completion token of the batch weighs the same, as TRL's SFTTrainer and RPO's NLL
/// term), not a mean of per-sequence means. Alone it is SFT; weighted beside `dpo` it is RPO
/// (Pang et al. 2024, arXiv 2404.19733): L_DPO + α·L_SFT on the chosen completions, e.g.
///
///     loss:
///       - {name: dpo, beta: 0.1}
///       - {name: sft, weight: 1.0}     # α
///
/// Metric: logps/chosen = mean per-sequence logπθ of the target completions (TRL's name).
public final class SFTLoss: LossPlugin {
    public enum Metric {
        public static let logpsChosen = PairwiseMetrics.logpsChosen
    }

    public static let descriptor = PluginDescriptor(
        name: "sft", kind: .loss,
        summary: "token-mean negative log-likelihood of the chosen completion",
        capabilities: [.referenceFree], needs: [Signals.policyLogProbs.key], consumes: [.paired, .sft], metrics: [Metric.logpsChosen])

    public init(options: ResolvedOptions) throws {}

    public func loss(_ input: LossInput) throws -> LossOutput {
        let target = try input[Signals.policyLogProbs].chosen
        let tokens = target.tokenCounts.reduce(0, +)
        guard target.logProbs.shape == [target.tokenCounts.count], tokens > 0 else {
            throw PluginInputError("sft: \(target.tokenCounts.count) target completions with \(tokens) tokens in all "
                                 + "(log-probs of shape \(target.logProbs.shape)); expected at least one token")
        }
        let logProbs = target.logProbs.toArray().map(Double.init)
        return LossOutput(loss: -target.logProbs.sum() / Float(tokens),
                          metrics: [Metric.logpsChosen: logProbs.reduce(0, +) / Double(logProbs.count)])
    }
}
