import Foundation

/// Options every file source shares.
private let sourceOptions: [OptionSpec] = [
    OptionSpec("path", .path(mustExist: true), default: .required, help: "JSON-lines file, relative to the recipe's folder"),
    OptionSpec("limit", .int(.atLeast(1)), default: .absent(note: "all"), help: "read at most this many examples (smoke runs)"),
]

/// TRL's preference format: one JSON object per line with `prompt`, `chosen`, `rejected`, each either a
/// string ("standard") or a list of `{role, content}` messages ("conversational"). Without `prompt`,
/// conversational pairs use their shared leading messages as the prompt (TRL's "implicit prompt").
/// Extra keys are ignored, as TRL does.
public final class PreferenceJSONLSource: DataPlugin {
    public static let descriptor = PluginDescriptor(
        name: "preference-jsonl", kind: .data,
        summary: "TRL preference pairs from JSON lines: prompt/chosen/rejected as strings or message lists",
        options: sourceOptions, dataRole: .source, produces: .paired)

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] { folderProblems(options, fileOptions: ["path"]) }

    let path: String
    let limit: Int?

    public required init(options: ResolvedOptions) {
        path = options.string("path") ?? ""
        limit = options.int("limit")
    }

    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        try readJSONLines(path: path, limit: limit) { object, line in
            let chosen = try turnsField(object, "chosen"), rejected = try turnsField(object, "rejected")
            let pair: PreferencePair
            if object["prompt"] != nil {
                let prompt = try turnsField(object, "prompt")
                guard Self.sameFormat(prompt, chosen), Self.sameFormat(prompt, rejected) else {
                    throw DataLineProblem("prompt, chosen and rejected mix strings and message lists; expected one format")
                }
                pair = PreferencePair(id: exampleID(path: path, line: line), prompt: prompt, chosen: chosen, rejected: rejected)
            } else {
                guard case .messages(let c) = chosen, case .messages(let r) = rejected else {
                    throw DataLineProblem("missing \"prompt\"; expected a prompt (or message lists with a shared beginning; for Anthropic HH dialogues use the hh source)")
                }
                let shared = zip(c, r).prefix { $0 == $1 }.count
                guard shared > 0, shared < c.count, shared < r.count else {
                    throw DataLineProblem("no \"prompt\" and chosen/rejected share no leading messages (or one is entirely shared); expected an explicit prompt")
                }
                pair = PreferencePair(id: exampleID(path: path, line: line), prompt: .messages(Array(c[..<shared])),
                                      chosen: .messages(Array(c[shared...])), rejected: .messages(Array(r[shared...])))
            }
            data.train.append(.pair(pair))
            report.produced += 1
            for name in pair.flags.names { report.flagged[name, default: 0] += 1 }
        }
    }

    private static func sameFormat(_ a: Turns, _ b: Turns) -> Bool {
        switch (a, b) {
        case (.text, .text), (.messages, .messages): return true
        default: return false
        }
    }
}

/// Anthropic HH-RLHF: `{"chosen", "rejected"}`, each a whole dialogue ("\n\nHuman: …\n\nAssistant: …").
///
/// The prompt is the longest common prefix of the two dialogues, cut just after its last
/// "\n\nAssistant:"; the completions are the rest (they usually start with a space). This is the split
/// the PyTorch fixture (shared/fixtures/README.md) and TRL's HH script use. A pair is skipped when that
/// cut does not isolate the final reply — the dialogues share no "\n\nAssistant:" at all, or they
/// diverge before the last assistant turn (the cut then falls on an earlier turn and each "completion"
/// would contain more dialogue) — and is counted under its cause. Empty replies are kept but flagged.
public final class HHSource: DataPlugin {
    public static let descriptor = PluginDescriptor(
        name: "hh", kind: .data,
        summary: "Anthropic HH-RLHF dialogues {chosen, rejected}; prompt = shared prefix up to the last \"\\n\\nAssistant:\"",
        options: sourceOptions, dataRole: .source, produces: .paired)

    /// Report keys for skipped pairs.
    public enum SkipCause {
        public static let noSharedAssistantTurn = "no-shared-assistant-turn"
        public static let divergeBeforeLastTurn = "diverge-before-last-assistant-turn"
    }

    static let assistantMarker = Array("\n\nAssistant:".utf8)

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] { folderProblems(options, fileOptions: ["path"]) }

    let path: String
    let limit: Int?

    public required init(options: ResolvedOptions) {
        path = options.string("path") ?? ""
        limit = options.int("limit")
    }

    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        try readJSONLines(path: path, limit: limit) { object, line in
            switch Self.split(chosen: try stringField(object, "chosen"), rejected: try stringField(object, "rejected")) {
            case .failure(let skip):
                report.skipped[skip.cause, default: 0] += 1
            case .success(let (prompt, chosen, rejected)):
                let pair = PreferencePair(id: exampleID(path: path, line: line), prompt: .text(prompt),
                                          chosen: .text(chosen), rejected: .text(rejected))
                data.train.append(.pair(pair))
                report.produced += 1
                for name in pair.flags.names { report.flagged[name, default: 0] += 1 }
            }
        }
    }

    struct Skip: Error { let cause: String }

    /// (prompt, chosen completion, rejected completion). Works on UTF-8 bytes: the marker is ASCII, so
    /// a cut right after it never splits a character even if the raw common prefix did.
    static func split(chosen: String, rejected: String) -> Result<(String, String, String), Skip> {
        let a = Array(chosen.utf8), b = Array(rejected.utf8)
        let common = zip(a, b).prefix { $0 == $1 }.count
        guard let cut = lastEnd(of: assistantMarker, in: a[..<common]) else {
            return .failure(Skip(cause: SkipCause.noSharedAssistantTurn))
        }
        guard lastEnd(of: assistantMarker, in: a[...]) == cut, lastEnd(of: assistantMarker, in: b[...]) == cut else {
            return .failure(Skip(cause: SkipCause.divergeBeforeLastTurn))
        }
        return .success((String(decoding: a[..<cut], as: UTF8.self), String(decoding: a[cut...], as: UTF8.self),
                         String(decoding: b[cut...], as: UTF8.self)))
    }

    /// Index just past the last occurrence of `needle` in `haystack`.
    static func lastEnd(of needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var start = haystack.endIndex - needle.count
        while start >= haystack.startIndex {
            if haystack[start..<start + needle.count].elementsEqual(needle) { return start + needle.count }
            start -= 1
        }
        return nil
    }
}
