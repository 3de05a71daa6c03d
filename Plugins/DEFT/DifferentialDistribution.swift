import KeelCore

/// DEFT's token statistics (arXiv 2604.01787), shared by its data filter and the expectation vector of its guidance term:
///
///     Q_pos(v) = count of v in all chosen completions / their total tokens       (a distribution over V)
///     Q_neg(v) = the same over the rejected completions
///     Q_diff   = Q_pos − Q_neg                                                      (Σ_v Q_diff(v) = 0)
///
/// over token ids after tokenisation (completions include EOS).
public enum DifferentialDistribution {
    /// Q_diff [V] of `pairs`, in Double. `user` names who asks, for errors (e.g. `deft`).
    public static func of(_ pairs: [TokenizedPair], vocabularySize V: Int, user: String) throws -> [Double] {
        var chosenCounts = [Double](repeating: 0, count: V), rejectedCounts = [Double](repeating: 0, count: V)
        for pair in pairs {
            for (tokens, name) in [(pair.chosen, "chosen"), (pair.rejected, "rejected")] {
                if let bad = tokens.first(where: { $0 < 0 || $0 >= V }) {
                    throw PluginInputError("\(user): pair \(pair.id) has \(name) token id \(bad); expected ids in 0..<\(V) (the policy's vocabulary)")
                }
            }
            for v in pair.chosen { chosenCounts[v] += 1 }
            for v in pair.rejected { rejectedCounts[v] += 1 }
        }
        let (chosenTotal, rejectedTotal) = (chosenCounts.reduce(0, +), rejectedCounts.reduce(0, +))
        guard chosenTotal > 0, rejectedTotal > 0 else {
            throw PluginInputError("\(user): the \(pairs.count) training pairs have \(Int(chosenTotal)) chosen and \(Int(rejectedTotal)) "
                                 + "rejected completion tokens; expected some of each to estimate their distributions")
        }
        return (0..<V).map { chosenCounts[$0] / chosenTotal - rejectedCounts[$0] / rejectedTotal }
    }
}
