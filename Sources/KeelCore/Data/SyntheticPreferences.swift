import Foundation

/// A small preference set Keel generates itself, so that the first run needs no download: templated
/// questions whose chosen answer is correct and whose rejected answer is a plausible wrong one of the
/// same kind. Three families, each learnable by a tiny byte-level model from a few hundred pairs:
///
/// - capitals: "Question: What is the capital of France?\nAnswer:" → " Paris." vs " Rome."
/// - opposites: "Question: What is the opposite of hot?\nAnswer:" → " cold." vs " tall."
/// - counting: "Continue: 4, 5, 6,\nAnswer:" → " 7." vs " 9."
///
/// Every choice (family, fact, phrasing, wrong answer) is drawn from Philox seeded by `seed`, so the
/// same options give the same pairs, byte for byte, on every machine. Ids are `synthetic:<index>`.
public final class SyntheticPreferencesSource: DataPlugin {
    public enum Option {
        public static let count = "count"
        public static let seed = "seed"
    }

    public static let descriptor = PluginDescriptor(
        name: "synthetic-preferences", kind: .data,
        summary: "generated preference pairs (capitals, opposites, counting): chosen correct, rejected wrong",
        options: [
            .int(Option.count, 512, in: .atLeast(1), "number of pairs to generate"),
            .int(Option.seed, 0, in: .nonNegative, "seed of the generator (the same seed gives the same pairs)"),
        ],
        dataRole: .source, produces: .paired)

    static let capitals: [(String, String)] = [
        ("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
        ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Greece", "Athens"),
        ("Canada", "Ottawa"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Poland", "Warsaw"),
        ("Austria", "Vienna"), ("Ireland", "Dublin"),
    ]
    static let opposites: [(String, String)] = [
        ("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("day", "night"), ("wet", "dry"),
        ("old", "new"), ("open", "closed"), ("early", "late"), ("happy", "sad"), ("light", "dark"),
        ("full", "empty"), ("short", "tall"), ("hard", "soft"), ("win", "lose"), ("left", "right"),
    ]
    static let capitalQuestions = ["Question: What is the capital of %@?\nAnswer:", "Question: Name the capital city of %@.\nAnswer:"]
    static let oppositeQuestions = ["Question: What is the opposite of %@?\nAnswer:", "Question: Give the antonym of %@.\nAnswer:"]

    let count: Int
    let seed: Int

    public required init(options: ResolvedOptions) {
        count = options.int(Option.count) ?? 512
        seed = options.int(Option.seed) ?? 0
    }

    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        var rng = Philox(seed: UInt64(seed))
        for index in 0..<count {
            let (prompt, chosen, rejected) = Self.question(&rng)
            let pair = PreferencePair(id: "synthetic:\(index)", prompt: .text(prompt), chosen: .text(" \(chosen)."),
                                      rejected: .text(" \(rejected)."))
            data.train.append(.pair(pair))
            report.produced += 1
        }
    }

    /// One (prompt, correct answer, wrong answer).
    static func question(_ rng: inout Philox) -> (String, String, String) {
        switch rng.uniform(below: 3) {
        case 0: return fact(capitals, capitalQuestions, &rng)
        case 1: return fact(opposites, oppositeQuestions, &rng)
        default:
            let start = 1 + rng.uniform(below: 40)
            let next = start + 3
            let wrong = next + [-2, -1, 1, 2, 3][rng.uniform(below: 5)]
            return ("Continue: \(start), \(start + 1), \(start + 2),\nAnswer:", "\(next)", "\(wrong)")
        }
    }

    private static func fact(_ table: [(String, String)], _ templates: [String], _ rng: inout Philox) -> (String, String, String) {
        let i = rng.uniform(below: table.count)
        var j = rng.uniform(below: table.count - 1)
        if j >= i { j += 1 }
        let template = templates[rng.uniform(below: templates.count)]
        return (template.replacingOccurrences(of: "%@", with: table[i].0), table[i].1, table[j].1)
    }
}
