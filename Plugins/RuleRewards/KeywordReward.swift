import Foundation
import KeelCore

/// Deterministic reward for the presence of wanted and unwanted content:
///
///     r = weight_per_match · (#required entries found in the response − #forbidden entries found)
///
/// Each entry counts once however often it occurs, so repeating a keyword earns nothing more.
/// `match: keyword` entries are plain substrings, separated by commas (surrounding spaces trimmed);
/// `match: regex` entries are regular expressions (ICU syntax, NSRegularExpression), one per line (a YAML
/// block scalar `|`), so that commas inside a pattern such as `\d{2,3}` need no escaping. Matching ignores
/// case unless `case_sensitive`. (`weight_per_match`, not `weight`: a node's `weight` is reserved.)
public final class KeywordReward: RewardPlugin {
    public enum Match: String, CaseIterable { case keyword, regex }

    public enum Option {
        public static let required = "required"
        public static let forbidden = "forbidden"
        public static let match = "match"
        public static let weight = "weight_per_match"
        public static let caseSensitive = "case_sensitive"
    }

    public static let descriptor = PluginDescriptor(
        name: "keyword-reward", kind: .reward,
        summary: "+weight_per_match per required keyword/regex present in the response, −weight_per_match per forbidden one",
        options: [
            OptionSpec(Option.required, .string, default: .value(.string("")),
                       help: "entries that earn weight_per_match each when present: comma-separated keywords, or one regex per line"),
            OptionSpec(Option.forbidden, .string, default: .value(.string("")),
                       help: "entries that cost weight_per_match each when present, written like `required`"),
            .choice(Option.match, Match.allCases.map(\.rawValue), Match.keyword.rawValue,
                    "keyword: plain substrings separated by commas; regex: regular expressions, one per line"),
            .double(Option.weight, 1.0, in: .positive, "reward per required entry found, and penalty per forbidden one"),
            .bool(Option.caseSensitive, false, "match letter case exactly"),
        ])

    public let required: [NSRegularExpression]
    public let forbidden: [NSRegularExpression]
    public let weight: Double

    public init(options: ResolvedOptions) throws {
        weight = options.double(Option.weight) ?? 1
        switch Self.compile(options) {
        case .success(let entries): (required, forbidden) = entries
        case .failure(let problem): throw PluginInputError("keyword-reward: \(problem.option.map { $0 + ": " } ?? "")\(problem.message)")
        }
    }

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] {
        if case .failure(let problem) = compile(options) { return [problem.problem] }
        return []
    }

    struct EntryProblem: Error {
        let problem: OptionProblem
        var option: String? { problem.option }
        var message: String { problem.message }
    }

    /// The options' entries as expressions (keywords escaped), or the first problem, naming its option.
    static func compile(_ options: ResolvedOptions) -> Result<([NSRegularExpression], [NSRegularExpression]), EntryProblem> {
        let match = Match(rawValue: options.string(Option.match) ?? "") ?? .keyword
        let flags: NSRegularExpression.Options = options.bool(Option.caseSensitive) == true ? [] : [.caseInsensitive]
        func expressions(_ option: String) -> Result<[NSRegularExpression], EntryProblem> {
            let text = options.string(option) ?? ""
            let entries = match == .keyword
                ? text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                : text.split(whereSeparator: \.isNewline).map(String.init)
            var compiled: [NSRegularExpression] = []
            for entry in entries where !entry.isEmpty {
                let pattern = match == .keyword ? NSRegularExpression.escapedPattern(for: entry) : entry
                guard let expression = try? NSRegularExpression(pattern: pattern, options: flags) else {
                    return .failure(EntryProblem(problem: OptionProblem(
                        option: option, "entry '\(entry)' is not a valid regular expression; expected ICU regex syntax")))
                }
                compiled.append(expression)
            }
            return .success(compiled)
        }
        return expressions(Option.required).flatMap { required in
            expressions(Option.forbidden).flatMap { forbidden in
                guard !required.isEmpty || !forbidden.isEmpty else {
                    return .failure(EntryProblem(problem: OptionProblem(
                        option: Option.required, "no entries in `required` or `forbidden`; expected at least one")))
                }
                return .success((required, forbidden))
            }
        }
    }

    public func score(prompt: String, response: String) throws -> Double {
        let range = NSRange(response.startIndex..., in: response)
        func found(_ list: [NSRegularExpression]) -> Double {
            Double(list.filter { $0.firstMatch(in: response, range: range) != nil }.count)
        }
        return weight * (found(required) - found(forbidden))
    }
}
