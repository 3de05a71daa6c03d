import KeelCore

/// POET: Prefix-Oriented Equal-length Training (Xiao et al. 2025, arXiv 2506.09457).
///
/// Sequence-level rewards let a pair be won on its tail, while generation is decided by its prefix.
/// POET truncates both completions of each pair to the shorter one's length,
///
///     L = min(|y_w|, |y_l|)   completion tokens (EOS included);   y_w ← y_w[..<L],  y_l ← y_l[..<L]
///
/// so that the preference is learnt over prefixes of equal length, which differ from pair to pair. The
/// prompt is untouched and the shorter completion keeps everything, its EOS included. It is a data
/// transform on token ids (`TokenizedPairTransform`): the trainer applies it right after tokenisation,
/// so the policy and the reference both score the truncated sequences. It has no hyper-parameter and
/// works with any pairwise loss (`dpo`, `simpo`, …); the graph refuses it with a non-pairwise one.
///
/// Pairs with L = 0 (a completion with no tokens at all) are dropped and counted (`zero-shared-length`).
/// Metrics over the pairs kept: `poet/mean_shared_len` = mean L, `poet/mean_kept_fraction` = mean of
/// 2L / (|y_w| + |y_l|), the fraction of the pair's completion tokens that survive.
public final class POETTransform: TokenizedPairTransform {
    public enum Metric {
        public static let meanKeptFraction = "poet/mean_kept_fraction"
        public static let meanSharedLength = "poet/mean_shared_len"
    }

    /// `report.skipped` key of the pairs dropped because a completion is empty.
    public static let zeroSharedLength = "zero-shared-length"

    public static let descriptor = PluginDescriptor(
        name: "poet", kind: .data,
        summary: "POET: truncate both completions of each pair to the shorter one's token length (after tokenisation)",
        capabilities: [.requiresPairwiseLoss], dataRole: .transform, consumes: [.paired],
        metrics: [Metric.meanKeptFraction, Metric.meanSharedLength])

    public init(options: ResolvedOptions) throws {}

    public func transform(_ pairs: inout [TokenizedPair], report: inout DataNodeReport) throws {
        var (keptFraction, sharedLength) = (0.0, 0.0)
        pairs = pairs.compactMap { pair in
            let length = min(pair.chosen.count, pair.rejected.count)
            guard length > 0 else {
                report.skipped[Self.zeroSharedLength, default: 0] += 1
                return nil
            }
            keptFraction += Double(2 * length) / Double(pair.chosen.count + pair.rejected.count)
            sharedLength += Double(length)
            var truncated = pair
            truncated.chosen = Array(pair.chosen.prefix(length))
            truncated.rejected = Array(pair.rejected.prefix(length))
            return truncated
        }
        report.produced = pairs.count
        let kept = Double(max(1, pairs.count))
        report.metrics[Metric.meanKeptFraction] = keptFraction / kept
        report.metrics[Metric.meanSharedLength] = sharedLength / kept
    }
}
