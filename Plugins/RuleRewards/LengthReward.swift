import Foundation
import KeelCore

/// Deterministic reward for brevity (tests, demos, and as a term beside a model reward): with L the
/// response's length after trimming surrounding whitespace, in `unit`s, and N = `limit`,
///
///     r = 1                              L ≤ N
///     r = max(0, 1 − (L − N)/width)      L > N, decay: linear       (0 from L = N + width on)
///     r = exp(−(L − N)/width)            L > N, decay: exponential  (e^−1 at L = N + width)
///
/// Lengths are in characters (Swift `Character`s: user-perceived, so "é" counts once) or words
/// (whitespace-separated runs). Tokens are not offered: a reward plugin sees text, not the tokenizer.
public final class LengthReward: RewardPlugin {
    public enum Unit: String, CaseIterable { case characters, words }
    public enum Decay: String, CaseIterable { case linear, exponential }

    public enum Option {
        public static let limit = "limit"
        public static let unit = "unit"
        public static let decay = "decay"
        public static let width = "width"
    }

    public static let descriptor = PluginDescriptor(
        name: "length-reward", kind: .reward,
        summary: "1 for responses of at most `limit` words or characters, decaying linearly or exponentially beyond",
        options: [
            .int(Option.limit, 200, in: .atLeast(0), "N: the longest response that still earns the full reward 1"),
            .choice(Option.unit, Unit.allCases.map(\.rawValue), Unit.words.rawValue,
                    "what the length counts: characters or whitespace-separated words"),
            .choice(Option.decay, Decay.allCases.map(\.rawValue), Decay.linear.rawValue,
                    "beyond the limit: linear 1 − (L−N)/width, floored at 0, or exponential exp(−(L−N)/width)"),
            .double(Option.width, 100, in: .positive, "length beyond the limit over which the reward falls to 0 (linear) or to 1/e (exponential)"),
        ])

    public let limit: Int
    public let unit: Unit
    public let decay: Decay
    public let width: Double

    public init(options: ResolvedOptions) throws {
        limit = options.int(Option.limit) ?? 200
        unit = Unit(rawValue: options.string(Option.unit) ?? "") ?? .words
        decay = Decay(rawValue: options.string(Option.decay) ?? "") ?? .linear
        width = options.double(Option.width) ?? 100
    }

    public func length(of response: String) -> Int {
        let text = response.trimmingCharacters(in: .whitespacesAndNewlines)
        switch unit {
        case .characters: return text.count
        case .words: return text.split(whereSeparator: \.isWhitespace).count
        }
    }

    public func score(prompt: String, response: String) throws -> Double {
        let excess = Double(length(of: response) - limit)
        guard excess > 0 else { return 1 }
        switch decay {
        case .linear: return max(0, 1 - excess / width)
        case .exponential: return exp(-excess / width)
        }
    }
}
