import KeelCore

/// SimPO: Simple Preference Optimization with a reference-free reward (Meng et al. 2024, arXiv 2405.14734).
///
/// The implicit reward is the policy's length-averaged log-likelihood, r(y) = β·logπθ(y|x)/|y|, and the
/// chosen completion must beat the rejected one by a target margin γ = β·gamma_beta_ratio:
///
///     z = β·(avg_w − avg_l − gamma_beta_ratio),   avg = logπθ(y)/|y|
///     sigmoid: −(1−ε)·log σ(z) − ε·log σ(−z)      (ε = label_smoothing, 0 in the paper)
///     hinge:   max(0, 1 − z)
///
/// averaged over the batch (TRL's CPOTrainer with loss_type simpo). No reference model is loaded.
///
/// Empty completions: |y| = 0 would divide by zero. The plugin declares `requires-non-empty-completions`,
/// so the graph refuses a recipe whose data list does not drop pairs flagged `empty-chosen`/`empty-rejected`
/// (`drop-flagged`, which counts them in its report before training); a row that still reaches the loss
/// with zero tokens is refused with an error naming the row, never turned into NaN.
///
/// Metrics (TRL names, from length-averaged log-probs as TRL's SimPO): rewards/chosen = mean β·avg_w,
/// rewards/rejected, rewards/margins, rewards/accuracies, logps/chosen = mean avg_w, logps/rejected.
public final class SimPOLoss: LossPlugin {
    public enum LossType: String, CaseIterable {
        case sigmoid, hinge
    }

    public enum Option {
        public static let beta = "beta"
        public static let gammaBetaRatio = "gamma_beta_ratio"
        public static let lossType = "loss_type"
        public static let labelSmoothing = "label_smoothing"
    }

    public static let descriptor = PluginDescriptor(
        name: "simpo", kind: .loss,
        summary: "SimPO: reference-free preference loss on length-averaged log-probs with a target margin",
        options: [
            .double(Option.beta, 2.0, in: .positive, "β: reward scale (a `beta` scheduler overrides it)"),
            .double(Option.gammaBetaRatio, 0.5, in: .nonNegative, "γ/β: target reward margin divided by β"),
            .choice(Option.lossType, LossType.allCases.map(\.rawValue), LossType.sigmoid.rawValue, "sigmoid or hinge"),
            .double(Option.labelSmoothing, 0.0, in: NumericRange(lower: 0, upper: 0.5, upperOpen: true),
                    "ε: assumed probability that a preference label is flipped (sigmoid only)"),
        ],
        capabilities: [.referenceFree, .pairwiseLoss, .requiresNonEmptyCompletions], needs: [Signals.policyLogProbs.key], consumes: [.paired],
        metrics: PairwiseMetrics.names)

    public let beta: Double
    public let gammaBetaRatio: Double
    public let lossType: LossType
    public let labelSmoothing: Double

    public init(options: ResolvedOptions) throws {
        beta = options.double(Option.beta) ?? 2.0
        gammaBetaRatio = options.double(Option.gammaBetaRatio) ?? 0.5
        lossType = LossType(rawValue: options.string(Option.lossType) ?? "") ?? .sigmoid
        labelSmoothing = options.double(Option.labelSmoothing) ?? 0
    }

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] {
        guard options.string(Option.lossType) == LossType.hinge.rawValue, (options.double(Option.labelSmoothing) ?? 0) > 0
        else { return [] }
        return [OptionProblem(option: Option.labelSmoothing, "loss_type hinge does not use label_smoothing; expected loss_type sigmoid, or label_smoothing 0")]
    }

    public func loss(_ input: LossInput) throws -> LossOutput {
        let name = Self.descriptor.name
        let policy = try input[Signals.policyLogProbs].pairs("policy", for: name)
        let beta = input.hyperparameters[ControlledValue.beta] ?? self.beta
        let chosen = try policy.chosen.lengthAveraged("chosen", for: name)          // [B]
        let rejected = try policy.rejected.lengthAveraged("rejected", for: name)    // [B]
        let z = Float(beta) * (chosen - rejected - Float(gammaBetaRatio))

        let perPair: Tensor
        switch lossType {
        case .sigmoid: perPair = PairwiseObjective.sigmoid(z, labelSmoothing: labelSmoothing)
        case .hinge: perPair = PairwiseObjective.hinge(z)
        }

        let (averageChosen, averageRejected) = (chosen.toArray().map(Double.init), rejected.toArray().map(Double.init))
        let metrics = PairwiseMetrics.values(
            chosenRewards: averageChosen.map { beta * $0 }, rejectedRewards: averageRejected.map { beta * $0 },
            chosenLogProbs: averageChosen, rejectedLogProbs: averageRejected)
        return LossOutput(loss: perPair.mean(), metrics: metrics)
    }
}
