import Foundation
import KeelCore

/// Deterministic reward for staying on the question's topic: the share of the prompt's content words that
/// the response uses,
///
///     r = |W(prompt) ∩ W(response)| / |W(prompt)|        (r = 1 when the prompt has no content words)
///
/// where W(text) is the set of its content words: lowercased runs of letters and digits of at least
/// `min_word_length` characters, minus a short English stop-word list (and `ignore`), each cut to a crude
/// stem (a trailing "ing", "ed" or "s" dropped when at least 3 characters remain), so that "boiling"
/// answers "boil" and "eggs" answers "egg". It is a term to add beside another reward (e.g. length-reward
/// in a weighted sum): alone it pays for restating the question, but a concise reward penalises that, and
/// together they pay for short answers that stay on the question instead of short answers about anything.
public final class TopicReward: RewardPlugin {
    public enum Option {
        public static let minWordLength = "min_word_length"
        public static let ignore = "ignore"
    }

    public static let descriptor = PluginDescriptor(
        name: "topic-reward", kind: .reward,
        summary: "share of the prompt's content words (stemmed, stop words removed) that the response uses",
        options: [
            .int(Option.minWordLength, 3, in: .atLeast(1), "shortest word (letters and digits) that counts as a content word"),
            OptionSpec(Option.ignore, .string, default: .value(.string("")),
                       help: "more words to ignore besides the built-in English stop words, separated by commas"),
        ])

    /// Function words and question scaffolding ("what is the best way to …") that say nothing about the topic.
    static let stopWords: Set<String> = Set("""
        a about above after again against all also am an and any are as at be because been before being below \
        between both but by can could did do does doing done down during each few for from further get got had \
        has have having he her here hers him his how i if in into is it its itself just know like make me more \
        most my no nor not now of off on once only or other our out over own please same she should so some such \
        tell than that the their them then there these they this those through to too under until up use very \
        want was way we well were what when where which while who whom why will with would you your yours best \
        good thing things something someone anyone really need
        """.split(whereSeparator: \.isWhitespace).map(String.init))

    public let minWordLength: Int
    public let ignored: Set<String>

    public init(options: ResolvedOptions) throws {
        minWordLength = options.int(Option.minWordLength) ?? 3
        ignored = Set((options.string(Option.ignore) ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty })
    }

    /// The stemmed content words of `text`.
    public func contentWords(_ text: String) -> Set<String> {
        var words = Set<String>()
        for word in text.lowercased().split(whereSeparator: { !($0.isLetter || $0.isNumber) }) {
            let word = String(word)
            guard word.count >= minWordLength, !Self.stopWords.contains(word), !ignored.contains(word) else { continue }
            words.insert(Self.stem(word))
        }
        return words
    }

    static func stem(_ word: String) -> String {
        for suffix in ["ing", "ed", "s"] where word.hasSuffix(suffix) && word.count - suffix.count >= 3 {
            return String(word.dropLast(suffix.count))
        }
        return word
    }

    public func score(prompt: String, response: String) throws -> Double {
        let topic = contentWords(prompt)
        guard !topic.isEmpty else { return 1 }
        return Double(topic.intersection(contentWords(response)).count) / Double(topic.count)
    }
}
