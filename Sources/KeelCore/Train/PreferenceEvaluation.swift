import Foundation

/// Held-out preference metrics of a policy against its reference, as `keel eval` prints them: each
/// metric's mean over the pairs with its standard error s/√n (s the sample standard deviation; for an
/// accuracy, the 0/1 indicator's). Computed with the trainer's own pieces — pairs tokenised by
/// `PairTokenizer` (EOS appended, cut to max_length), scored in `PairBatch`es, means by
/// `PairwiseMetrics.values` with the implicit reward β·(log π − log πref) of `dpo` — so that on the
/// trainer's evaluation pairs the means are the `eval/rewards/*` and `eval/logps/*` numbers it logs.
///
/// Besides those: `logps/accuracies`, the share of pairs whose chosen completion the policy gives the
/// higher summed log-prob (no reference), and `reference/logps/accuracies`, the same for the reference.
public struct PreferenceEvaluation: Equatable {
    public struct Estimate: Codable, Equatable {
        public let mean: Double
        public let standardError: Double

        enum CodingKeys: String, CodingKey {
            case mean
            case standardError = "standard_error"
        }

        /// The mean of `values` and its standard error (0 for fewer than two values).
        public init(_ values: [Double]) {
            let n = Double(values.count), average = values.reduce(0, +) / max(n, 1)
            let variance = n > 1 ? values.reduce(0) { $0 + ($1 - average) * ($1 - average) } / (n - 1) : 0
            mean = average
            standardError = (variance / max(n, 1)).squareRoot()
        }
    }

    public static let logpsAccuracies = "logps/accuracies"
    public static let referenceLogpsAccuracies = "reference/logps/accuracies"

    public let pairs: Int
    public let metrics: [String: Estimate]

    /// `policy` and `reference` scored on `pairs` (tokenised as the trainer does) in batches of `batchSize`.
    public init(policy: LlamaModel, reference: LlamaModel, pairs: [TokenizedPair], beta: Double, padID: Int, batchSize: Int) {
        var policyChosen: [Double] = [], policyRejected: [Double] = [], referenceChosen: [Double] = [], referenceRejected: [Double] = []
        withNoGrad {
            for start in stride(from: 0, to: pairs.count, by: max(batchSize, 1)) {
                let batch = PairBatch(Array(pairs[start..<min(start + max(batchSize, 1), pairs.count)]), padID: padID)
                let scored = batch.scores(policy), referenceScored = batch.scores(reference)
                policyChosen += scored.chosen.logProbs.toArray().map(Double.init)
                policyRejected += scored.rejected.logProbs.toArray().map(Double.init)
                referenceChosen += referenceScored.chosen.logProbs.toArray().map(Double.init)
                referenceRejected += referenceScored.rejected.logProbs.toArray().map(Double.init)
            }
        }
        let chosenRewards = zip(policyChosen, referenceChosen).map { beta * ($0 - $1) }
        let rejectedRewards = zip(policyRejected, referenceRejected).map { beta * ($0 - $1) }
        // Each pair's values as the trainer's batch means see them: PairwiseMetrics of a batch of one.
        var perPair: [String: [Double]] = [:]
        for i in chosenRewards.indices {
            let values = PairwiseMetrics.values(chosenRewards: [chosenRewards[i]], rejectedRewards: [rejectedRewards[i]],
                                                chosenLogProbs: [policyChosen[i]], rejectedLogProbs: [policyRejected[i]])
            for (name, value) in values { perPair[name, default: []].append(value) }
            perPair[Self.logpsAccuracies, default: []].append(policyChosen[i] > policyRejected[i] ? 1 : 0)
            perPair[Self.referenceLogpsAccuracies, default: []].append(referenceChosen[i] > referenceRejected[i] ? 1 : 0)
        }
        self.pairs = chosenRewards.count
        metrics = perPair.mapValues(Estimate.init)
    }
}
