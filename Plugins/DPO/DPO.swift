import KeelCore

/// Direct Preference Optimization and its TRL variants (`loss_type`), one loss over preference pairs.
///
/// DPO (Rafailov et al. 2023, arXiv 2305.18290) fits the policy πθ so that its implicit reward
/// r(y) = β·log πθ(y|x)/πref(y|x) ranks the chosen completion y_w above the rejected y_l. With
/// logπ(y) the sum of completion-token log-probs and
///
///     h = [logπθ(y_w) − logπref(y_w)] − [logπθ(y_l) − logπref(y_l)]
///
/// the per-pair losses are (TRL names; the batch loss is their mean):
/// - sigmoid: −log σ(βh)
/// - cdpo (conservative DPO, labels flipped with probability ε): −(1−ε)·log σ(βh) − ε·log σ(−βh)
/// - robust (Chowdhury et al. 2024, arXiv 2403.00409, unbiased under label noise ε):
///   [−(1−ε)·log σ(βh) + ε·log σ(−βh)] / (1−2ε)
/// - hinge (SLiC, arXiv 2305.10425): max(0, 1 − βh)
/// - ipo (Azar et al. 2023, arXiv 2310.12036): (h̄ − 1/(2β))², where h̄ is h with each log-prob divided by
///   its completion's token count (as TRL, which then also reports length-averaged logps and rewards).
///
/// β is the `beta` option unless a scheduler sets the `beta` hyper-parameter.
/// Metrics (TRL names): rewards/chosen = mean β·(logπθ(y_w) − logπref(y_w)), rewards/rejected,
/// rewards/margins, rewards/accuracies (fraction of pairs with chosen reward > rejected), logps/chosen,
/// logps/rejected (policy).
public final class DPOLoss: LossPlugin {
    public enum LossType: String, CaseIterable {
        case sigmoid, cdpo, robust, hinge, ipo
    }

    public enum Option {
        public static let beta = "beta"
        public static let lossType = "loss_type"
        public static let labelSmoothing = "label_smoothing"
    }

    public static let descriptor = PluginDescriptor(
        name: "dpo", kind: .loss,
        summary: "DPO and its variants (sigmoid, cdpo, robust, hinge, ipo) on preference pairs against a reference",
        options: [
            .double(Option.beta, 0.1, in: .positive, "β: strength of the implicit KL penalty (a `beta` scheduler overrides it)"),
            .choice(Option.lossType, LossType.allCases.map(\.rawValue), LossType.sigmoid.rawValue,
                    "sigmoid (DPO), cdpo (label smoothing), robust (noise-corrected), hinge (SLiC), ipo (IPO)"),
            .double(Option.labelSmoothing, 0.0, in: NumericRange(lower: 0, upper: 0.5, upperOpen: true),
                    "ε: assumed probability that a preference label is flipped (cdpo and robust only)"),
        ],
        capabilities: [.pairwiseLoss], needs: [Signals.policyLogProbs.key, Signals.referenceLogProbs.key], consumes: [.paired],
        metrics: PairwiseMetrics.names)

    public let beta: Double
    public let lossType: LossType
    public let labelSmoothing: Double

    public init(options: ResolvedOptions) throws {
        beta = options.double(Option.beta) ?? 0.1
        lossType = LossType(rawValue: options.string(Option.lossType) ?? "") ?? .sigmoid
        labelSmoothing = options.double(Option.labelSmoothing) ?? 0
    }

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] {
        let type = LossType(rawValue: options.string(Option.lossType) ?? "") ?? .sigmoid
        let epsilon = options.double(Option.labelSmoothing) ?? 0
        let smooths = type == .cdpo || type == .robust
        if smooths, epsilon == 0 {
            return [OptionProblem(option: Option.labelSmoothing,
                                  "loss_type \(type.rawValue) with label_smoothing 0 is plain sigmoid DPO; expected label_smoothing in (0, 0.5)")]
        }
        if !smooths, epsilon > 0 {
            return [OptionProblem(option: Option.labelSmoothing,
                                  "loss_type \(type.rawValue) does not use label_smoothing; expected loss_type cdpo or robust, or label_smoothing 0")]
        }
        return []
    }

    public func loss(_ input: LossInput) throws -> LossOutput {
        let name = Self.descriptor.name
        let policy = try input[Signals.policyLogProbs].pairs("policy", for: name)
        let reference = try input[Signals.referenceLogProbs].pairs("reference", for: name)
        guard policy.chosen.logProbs.shape == reference.chosen.logProbs.shape else {
            throw PluginInputError("\(name): \(policy.chosen.logProbs.count) policy pairs but \(reference.chosen.logProbs.count) reference pairs")
        }
        let beta = input.hyperparameters[ControlledValue.beta] ?? self.beta

        // IPO compares per-token log-ratios; the other variants compare whole-sequence ones.   all [B]
        let (policyChosen, policyRejected, referenceChosen, referenceRejected): (Tensor, Tensor, Tensor, Tensor)
        if lossType == .ipo {
            policyChosen = try policy.chosen.lengthAveraged("chosen", for: name)
            policyRejected = try policy.rejected.lengthAveraged("rejected", for: name)
            referenceChosen = try reference.chosen.lengthAveraged("chosen", for: name)
            referenceRejected = try reference.rejected.lengthAveraged("rejected", for: name)
        } else {
            (policyChosen, policyRejected) = (policy.chosen.logProbs, policy.rejected.logProbs)
            (referenceChosen, referenceRejected) = (reference.chosen.logProbs, reference.rejected.logProbs)
        }
        let chosenRatio = policyChosen - referenceChosen
        let rejectedRatio = policyRejected - referenceRejected
        let h = chosenRatio - rejectedRatio
        let z = Float(beta) * h

        let perPair: Tensor
        switch lossType {
        case .sigmoid, .cdpo:
            perPair = PairwiseObjective.sigmoid(z, labelSmoothing: labelSmoothing)
        case .robust:
            let e = Float(labelSmoothing)
            perPair = ((e - 1) * z.logSigmoid() + e * (-z).logSigmoid()) / (1 - 2 * e)
        case .hinge:
            perPair = PairwiseObjective.hinge(z)
        case .ipo:
            perPair = (h - Float(1 / (2 * beta))).square()
        }

        let metrics = PairwiseMetrics.values(
            chosenRewards: chosenRatio.toArray().map { beta * Double($0) },
            rejectedRewards: rejectedRatio.toArray().map { beta * Double($0) },
            chosenLogProbs: policyChosen.toArray().map(Double.init),
            rejectedLogProbs: policyRejected.toArray().map(Double.init))
        return LossOutput(loss: perPair.mean(), metrics: metrics)
    }
}
