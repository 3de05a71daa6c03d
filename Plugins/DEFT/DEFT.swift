import Foundation
import KeelCore

/// DEFT: Distribution-guided Efficient Fine-Tuning (arXiv 2604.01787), as a data filter: train on the few
/// pairs whose chosen completion the starting policy already leans towards the most, measured against the
/// token statistics that separate chosen from rejected completions.
///
/// With Q_diff = Q_pos − Q_neg the chosen-minus-rejected token distribution of the pairs this node
/// receives (`DifferentialDistribution`):
///
///     R(x, y)  = (1/|y|) · Σ_t Σ_v pθ(v | x, y_<t) · Q_diff(v)                      (differential distribution reward)
///
/// with pθ the starting policy, computed in one no-grad pass by the trainer's `PolicyScorer`. The score
/// of a pair is R(x, y_w) − R(x, y_l) (`score: pair`, default) or R(x, y_w) (`score: chosen`). The
/// training pairs with the highest scores are kept:
///
///     kept = min(n, max(min_examples, ⌈keep · n⌉))
///
/// ties broken by input order (the earlier pair wins), and the kept pairs stay in their input order.
/// The evaluation split passes unchanged. Every training pair's score goes to `report.exampleScores`
/// (kept or not; the trainer stores them), dropped pairs are counted under `below-top-fraction`. The
/// kept subset then goes to whatever loss the recipe names.
///
/// Metrics: `deft/kept_fraction`, `deft/score_threshold` (lowest kept score), `deft/mean_score_kept`,
/// `deft/mean_score` (all pairs).
public final class DEFTFilter: ModelScoredPairFilter {
    public enum Score: String, CaseIterable { case pair, chosen }

    public enum Option {
        public static let keep = "keep"
        public static let minExamples = "min_examples"
        public static let score = "score"
    }

    public enum Metric {
        public static let keptFraction = "deft/kept_fraction"
        public static let scoreThreshold = "deft/score_threshold"
        public static let meanScoreKept = "deft/mean_score_kept"
        public static let meanScore = "deft/mean_score"
    }

    /// `report.skipped` key of the pairs outside the top fraction.
    public static let belowTopFraction = "below-top-fraction"

    public static let descriptor = PluginDescriptor(
        name: "deft", kind: .data,
        summary: "DEFT: keep the training pairs the starting policy scores highest under the chosen-minus-rejected token distribution",
        options: [
            .double(Option.keep, 0.05, in: NumericRange(lower: 0, upper: 1, lowerOpen: true), "fraction of the training pairs to keep (rounded up)"),
            .int(Option.minExamples, 1, in: .atLeast(1), "keep at least this many pairs (all of them if there are fewer)"),
            .choice(Option.score, Score.allCases.map(\.rawValue), Score.pair.rawValue,
                    "pair: R(x, y_w) − R(x, y_l); chosen: R(x, y_w) alone"),
        ],
        dataRole: .filter, consumes: [.paired],
        metrics: [Metric.keptFraction, Metric.scoreThreshold, Metric.meanScoreKept, Metric.meanScore])

    public let keep: Double
    public let minExamples: Int
    public let score: Score

    public init(options: ResolvedOptions) throws {
        keep = options.double(Option.keep) ?? 0.05
        minExamples = options.int(Option.minExamples) ?? 1
        score = Score(rawValue: options.string(Option.score) ?? "") ?? .pair
    }

    /// Q_diff = Q_pos − Q_neg [V] from the chosen and rejected completions' token counts, in Double.
    public static func differentialDistribution(_ pairs: [TokenizedPair], vocabularySize V: Int) throws -> [Double] {
        try DifferentialDistribution.of(pairs, vocabularySize: V, user: descriptor.name)
    }

    /// Indices of the `count` highest scores, in input order; ties go to the earlier index.
    public static func topIndices(_ scores: [Double], count: Int) -> [Int] {
        let ranked = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        return ranked.prefix(count).sorted()
    }

    public func keptCount(of n: Int) -> Int {
        // The 1e-9 absorbs binary rounding of keep (0.07 · 100 = 7.000000000000001 must keep 7, not 8).
        min(n, max(minExamples, Int((keep * Double(n) - 1e-9).rounded(.up))))
    }

    public func filter(_ pairs: inout [TokenizedPair], split: String, scorer: any PolicyScorer,
                       report: inout DataNodeReport) throws {
        guard split == "train", !pairs.isEmpty else {
            report.produced = pairs.count
            return
        }
        let qDiff = try Self.differentialDistribution(pairs, vocabularySize: scorer.vocabularySize).map { Float($0) }
        let prompts = pairs.map(\.prompt)
        let chosen = try scorer.expectedValue(of: qDiff, prompts: prompts, completions: pairs.map(\.chosen))
        let rejected = score == .pair
            ? try scorer.expectedValue(of: qDiff, prompts: prompts, completions: pairs.map(\.rejected))
            : [Double](repeating: 0, count: pairs.count)
        guard chosen.count == pairs.count, rejected.count == pairs.count else {
            throw PluginInputError("deft: the policy scorer returned \(chosen.count) and \(rejected.count) values for \(pairs.count) pairs")
        }
        let scores = zip(chosen, rejected).map { $0 - $1 }
        if let bad = scores.firstIndex(where: { !$0.isFinite }) {
            throw PluginInputError("deft: pair \(pairs[bad].id) scored \(scores[bad]); expected a finite number from the policy")
        }

        let kept = Self.topIndices(scores, count: keptCount(of: pairs.count))
        let keptSet = Set(kept)
        report.exampleScores = pairs.indices.map { ExampleScore(id: pairs[$0].id, score: scores[$0], kept: keptSet.contains($0)) }
        report.skipped[Self.belowTopFraction] = pairs.count - kept.count
        report.produced = kept.count
        let keptScores = kept.map { scores[$0] }
        report.metrics[Metric.keptFraction] = Double(kept.count) / Double(pairs.count)
        report.metrics[Metric.scoreThreshold] = keptScores.min() ?? 0
        report.metrics[Metric.meanScoreKept] = keptScores.reduce(0, +) / Double(max(1, kept.count))
        report.metrics[Metric.meanScore] = scores.reduce(0, +) / Double(scores.count)
        pairs = kept.map { pairs[$0] }
    }
}
