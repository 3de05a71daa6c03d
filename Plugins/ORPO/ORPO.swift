import KeelCore

/// ORPO: Monolithic Preference Optimization without Reference Model (Hong et al. 2024, arXiv 2403.07691).
///
/// Supervised fine-tuning on the chosen completion plus an odds-ratio penalty on the rejected one, with the
/// odds of a completion taken from its length-averaged log-probability a = logπθ(y|x)/|y|:
///
///     log odds(y) = a − log(1 − eᵃ)
///     h           = log odds(y_w) − log odds(y_l)
///     L           = L_NLL − λ·mean(log σ(h)),    L_NLL = −Σ_i logπθ(y_w,i|x_i) / Σ_i |y_w,i|
///
/// with λ = `beta` as in TRL's ORPOTrainer (`odds_ratio_loss`, loss = nll_loss − mean(β·log σ(h))).
/// log(1 − eᵃ) is evaluated with the runtime's `log1mexp`, accurate for a near 0 where TRL's
/// `log1p(-exp(a))` loses digits in Float; the two agree to Float precision elsewhere. No reference model
/// is loaded (the plugin is reference-free).
///
/// L_NLL is the token mean over the chosen COMPLETIONS of the batch, as Keel's `sft` and the paper's
/// L_SFT; TRL 1.16 also counts the prompt's tokens in its nll_loss, which Keel's policy signal does not
/// score (it holds completion log-probs only).
///
/// Empty completions: |y| = 0 would divide by zero; the plugin declares `requires-non-empty-completions`
/// (the graph then requires `drop-flagged`), and a row that still reaches the loss with zero tokens is
/// refused with an error naming the row.
///
/// Metrics (TRL's names): rewards/chosen = mean β·a_w, rewards/rejected = mean β·a_l, rewards/margins,
/// rewards/accuracies, logps/chosen = mean a_w, logps/rejected = mean a_l, nll_loss = L_NLL,
/// log_odds_ratio = mean log σ(h), log_odds_chosen = mean h.
public final class ORPOLoss: LossPlugin {
    public enum Option {
        public static let beta = "beta"
    }

    public enum Metric {
        public static let nllLoss = "nll_loss"
        public static let logOddsRatio = "log_odds_ratio"
        public static let logOddsChosen = "log_odds_chosen"
    }

    public static let descriptor = PluginDescriptor(
        name: "orpo", kind: .loss,
        summary: "ORPO: chosen NLL plus λ·(−log σ(log-odds ratio)) on length-averaged log-probs, reference-free",
        options: [
            .double(Option.beta, 0.1, in: .positive,
                    "λ: weight of the odds-ratio term beside the chosen NLL (TRL's beta; a `beta` scheduler overrides it)"),
        ],
        capabilities: [.referenceFree, .pairwiseLoss, .requiresNonEmptyCompletions], needs: [Signals.policyLogProbs.key],
        consumes: [.paired],
        metrics: PairwiseMetrics.names + [Metric.nllLoss, Metric.logOddsRatio, Metric.logOddsChosen])

    public let beta: Double

    public init(options: ResolvedOptions) throws {
        beta = options.double(defaulted: Option.beta)
    }

    public func loss(_ input: LossInput) throws -> LossOutput {
        let name = Self.descriptor.name
        let policy = try input[Signals.policyLogProbs].pairs("policy", for: name)
        let lambda = input.hyperparameters[ControlledValue.beta] ?? beta
        let chosen = try policy.chosen.lengthAveraged("chosen", for: name)          // a_w [B]
        let rejected = try policy.rejected.lengthAveraged("rejected", for: name)    // a_l [B]
        let logOdds = (chosen - rejected) - (chosen.log1mexp() - rejected.log1mexp())
        let logSigmoid = logOdds.logSigmoid()
        let chosenTokens = policy.chosen.tokenCounts.reduce(0, +)
        let nll = -policy.chosen.logProbs.sum() / Float(chosenTokens)

        let (averageChosen, averageRejected) = (chosen.toArray().map(Double.init), rejected.toArray().map(Double.init))
        var metrics = PairwiseMetrics.values(
            chosenRewards: averageChosen.map { lambda * $0 }, rejectedRewards: averageRejected.map { lambda * $0 },
            chosenLogProbs: averageChosen, rejectedLogProbs: averageRejected)
        metrics[Metric.nllLoss] = Double(nll.item())
        metrics[Metric.logOddsRatio] = Double(logSigmoid.mean().item())
        metrics[Metric.logOddsChosen] = Double(logOdds.mean().item())
        return LossOutput(loss: nll - Float(lambda) * logSigmoid.mean(), metrics: metrics)
    }
}
