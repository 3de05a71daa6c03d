import Foundation
import KeelCore

/// Deterministic correctness reward: r = 1 when the response gives the expected answer, else 0.
///
/// The expected answer is the `answer` option when set (one answer for every prompt: demos, smoke
/// tests), otherwise the first capture group of `answer_pattern`'s first match in the PROMPT text (a
/// reward plugin sees only the prompt and the response; the default pattern reads a line
/// `Expected answer: 42`). A prompt without a match is refused, naming the pattern, rather than scored 0.
///
/// Both texts are compared after trimming, collapsing whitespace runs to one space and, unless
/// `case_sensitive`, lower-casing. `match: equals` wants the whole response to be the answer;
/// `match: contains` wants the answer somewhere in the response, not touching a letter or digit on either
/// side (so the answer "4" is found in "it is 4." but not in "14" or "4x").
public final class ExactAnswerReward: RewardPlugin {
    public enum Match: String, CaseIterable { case equals, contains }

    public enum Option {
        public static let answer = "answer"
        public static let answerPattern = "answer_pattern"
        public static let match = "match"
        public static let caseSensitive = "case_sensitive"
    }

    public static let defaultPattern = #"(?im)^\s*expected answer:\s*(.+?)\s*$"#

    public static let descriptor = PluginDescriptor(
        name: "exact-answer-reward", kind: .reward,
        summary: "1 if the response equals or contains the expected answer (fixed, or extracted from the prompt), else 0",
        options: [
            OptionSpec(Option.answer, .string, default: .absent(note: "extracted from the prompt with answer_pattern"),
                       help: "the expected answer for every prompt"),
            OptionSpec(Option.answerPattern, .string, default: .value(.string(defaultPattern)),
                       help: "regex whose first capture group, in the prompt, is the expected answer (when `answer` is unset)"),
            .choice(Option.match, Match.allCases.map(\.rawValue), Match.contains.rawValue,
                    "equals: the whole response is the answer; contains: the answer appears, not touching a letter or digit"),
            .bool(Option.caseSensitive, false, "compare letter case exactly"),
        ])

    public let answer: String?
    public let pattern: NSRegularExpression
    public let match: Match
    public let caseSensitive: Bool

    public init(options: ResolvedOptions) throws {
        answer = options.string(Option.answer)
        let source = options.string(Option.answerPattern) ?? Self.defaultPattern
        guard let pattern = Self.compile(source) else {
            throw PluginInputError("exact-answer-reward: answer_pattern '\(source)' is not a regular expression with a capture group")
        }
        self.pattern = pattern
        match = Match(rawValue: options.string(Option.match) ?? "") ?? .contains
        caseSensitive = options.bool(Option.caseSensitive) ?? false
    }

    static func compile(_ source: String) -> NSRegularExpression? {
        guard let expression = try? NSRegularExpression(pattern: source), expression.numberOfCaptureGroups >= 1 else { return nil }
        return expression
    }

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] {
        var problems: [OptionProblem] = []
        if compile(options.string(Option.answerPattern) ?? defaultPattern) == nil {
            problems.append(OptionProblem(option: Option.answerPattern, "not a valid regular expression with at least one capture group; expected ICU regex syntax"))
        }
        if case .recipe? = options.origin(of: Option.answer), case .recipe? = options.origin(of: Option.answerPattern) {
            problems.append(OptionProblem(option: Option.answerPattern, "unused because `answer` is set; expected one of the two"))
        }
        if let answer = options.string(Option.answer), answer.allSatisfy(\.isWhitespace) {
            problems.append(OptionProblem(option: Option.answer, "is blank; expected the answer text, or leave it unset"))
        }
        return problems
    }

    /// The answer the prompt asks for: the `answer` option, or the pattern's first group in the prompt.
    public func expectedAnswer(prompt: String) throws -> String {
        if let answer { return answer }
        let range = NSRange(prompt.startIndex..., in: prompt)
        guard let found = pattern.firstMatch(in: prompt, range: range), let group = Range(found.range(at: 1), in: prompt),
              !prompt[group].allSatisfy(\.isWhitespace) else {
            throw PluginInputError("exact-answer-reward: the prompt has no expected answer matching answer_pattern \(pattern.pattern) "
                                 + "(prompt starts: \(prompt.prefix(80).debugDescription)); expected e.g. a line 'Expected answer: 42'")
        }
        return String(prompt[group])
    }

    func normalised(_ text: String) -> String {
        let words = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        return caseSensitive ? words : words.lowercased()
    }

    public func score(prompt: String, response: String) throws -> Double {
        let expected = normalised(try expectedAnswer(prompt: prompt)), given = normalised(response)
        switch match {
        case .equals:
            return given == expected ? 1 : 0
        case .contains:
            var searchStart = given.startIndex
            while let found = given.range(of: expected, range: searchStart..<given.endIndex) {
                let before = found.lowerBound > given.startIndex ? given[given.index(before: found.lowerBound)] : nil
                let after = found.upperBound < given.endIndex ? given[found.upperBound] : nil
                if !(before?.isLetter ?? false || before?.isNumber ?? false) && !(after?.isLetter ?? false || after?.isNumber ?? false) {
                    return 1
                }
                searchStart = given.index(after: found.lowerBound)
            }
            return 0
        }
    }
}
