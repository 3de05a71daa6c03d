import Foundation

// What pairwise preference losses (DPO and its variants, reference-free ones, …) share, written once: reading a paired
// batch, length averaging, the two objectives of a scaled margin z, and TRL's metric names.

extension LossBatch {
    /// The chosen and rejected rows of the batch, checked. `role` ("policy", "reference") and `loss` name
    /// the batch in the error when it is empty or its parts disagree in size.
    public func pairs(_ role: String, for loss: String) throws -> (chosen: SequenceScores, rejected: SequenceScores) {
        let rows = chosen.logProbs.count
        for (name, scores) in [("chosen", chosen), ("rejected", rejected)] {
            guard scores.logProbs.shape == [rows], scores.tokenCounts.count == rows else {
                throw PluginInputError("\(loss): \(role) \(name) log-probs have shape \(scores.logProbs.shape) and "
                                     + "\(scores.tokenCounts.count) token counts; expected [\(rows)] and \(rows)")
            }
        }
        guard rows > 0 else { throw PluginInputError("\(loss): the \(role) batch is empty; expected at least one pair") }
        return (chosen, rejected)
    }
}

extension SequenceScores {
    /// logπ(y)/|y| per row, [B] → [B]. A row without completion tokens is refused, naming it, rather than
    /// divided by zero (the graph makes `drop-flagged` remove empty replies before training; this guards
    /// against anything that still yields zero tokens, e.g. truncation to `max_length`).
    public func lengthAveraged(_ what: String, for loss: String) throws -> Tensor {
        if let row = tokenCounts.firstIndex(where: { $0 <= 0 }) {
            throw PluginInputError("\(loss): row \(row) of the batch has a \(what) completion of \(tokenCounts[row]) tokens; "
                                 + "expected at least 1 (length-normalised losses divide by it)")
        }
        return logProbs / Tensor(shape: [tokenCounts.count], data: tokenCounts.map { Float($0) })
    }
}

/// Objectives of a scaled preference margin z (e.g. z = β·h for DPO), each [B] → [B], per pair.
public enum PairwiseObjective {
    /// Bradley–Terry with label smoothing ε (cDPO, Mitchell 2023): −(1−ε)·log σ(z) − ε·log σ(−z).
    /// ε = 0 is the plain sigmoid loss −log σ(z). log σ is evaluated stably, so |z| ~ 1e3 stays finite.
    public static func sigmoid(_ z: Tensor, labelSmoothing epsilon: Double) -> Tensor {
        let loss = -z.logSigmoid()
        guard epsilon > 0 else { return loss }
        return Float(1 - epsilon) * loss - Float(epsilon) * (-z).logSigmoid()
    }

    /// Hinge (SLiC, Zhao 2023): max(0, 1 − z).
    public static func hinge(_ z: Tensor) -> Tensor { (1 - z).relu() }
}

/// TRL's metrics of a pairwise loss, from per-pair implicit rewards and policy log-probs.
public enum PairwiseMetrics {
    public static let rewardsChosen = "rewards/chosen"
    public static let rewardsRejected = "rewards/rejected"
    public static let rewardsMargins = "rewards/margins"
    public static let rewardsAccuracies = "rewards/accuracies"
    public static let logpsChosen = "logps/chosen"
    public static let logpsRejected = "logps/rejected"
    public static let names = [rewardsChosen, rewardsRejected, rewardsMargins, rewardsAccuracies, logpsChosen, logpsRejected]

    /// Batch means; accuracy = fraction of pairs whose chosen reward is strictly above the rejected one.
    public static func values(chosenRewards: [Double], rejectedRewards: [Double],
                              chosenLogProbs: [Double], rejectedLogProbs: [Double]) -> [String: Double] {
        func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(max(1, x.count)) }
        let margins = zip(chosenRewards, rejectedRewards).map { $0 - $1 }
        return [
            rewardsChosen: mean(chosenRewards),
            rewardsRejected: mean(rejectedRewards),
            rewardsMargins: mean(margins),
            rewardsAccuracies: mean(margins.map { $0 > 0 ? 1 : 0 }),
            logpsChosen: mean(chosenLogProbs),
            logpsRejected: mean(rejectedLogProbs),
        ]
    }
}
