/// One message of a conversation, as in TRL's conversational datasets (`{"role", "content"}`).
public struct ChatMessage: Codable, Equatable, Sendable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// Text of a prompt or completion: raw text (HH dialogues, TRL "standard" format) or a list of messages
/// (TRL "conversational" format), rendered later by the model's chat template.
public enum Turns: Codable, Equatable, Sendable {
    case text(String)
    case messages([ChatMessage])

    /// The words without the chat format: the text, or the messages' contents separated by blank lines
    /// (what rule rewards and reports see of a prompt).
    public var plainText: String {
        switch self {
        case .text(let s): return s
        case .messages(let m): return m.map(\.content).joined(separator: "\n\n")
        }
    }

    /// True when there is nothing but whitespace to learn from.
    public var isBlank: Bool {
        switch self {
        case .text(let s): return s.allSatisfy(\.isWhitespace)
        case .messages(let m): return m.allSatisfy { $0.content.allSatisfy(\.isWhitespace) }
        }
    }
}

/// Marks on an example that is kept but that some methods must drop or treat specially.
public struct ExampleFlags: OptionSet, Codable, Hashable, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// The chosen completion is empty or whitespace: length-normalised losses (1/|y|) must drop it.
    public static let emptyChosen = ExampleFlags(rawValue: 1 << 0)
    public static let emptyRejected = ExampleFlags(rawValue: 1 << 1)
    /// chosen == rejected: the pair carries no preference signal.
    public static let identicalCompletions = ExampleFlags(rawValue: 1 << 2)

    static let names: [(ExampleFlags, String)] = [
        (.emptyChosen, "empty-chosen"), (.emptyRejected, "empty-rejected"), (.identicalCompletions, "identical-completions"),
    ]

    public var names: [String] { Self.names.filter { contains($0.0) }.map(\.1) }

    /// The flags a pair deserves from its completions.
    static func of(chosen: Turns, rejected: Turns) -> ExampleFlags {
        var flags: ExampleFlags = []
        if chosen.isBlank { flags.insert(.emptyChosen) }
        if rejected.isBlank { flags.insert(.emptyRejected) }
        if chosen == rejected { flags.insert(.identicalCompletions) }
        return flags
    }
}

/// A preference pair: for `prompt`, `chosen` is preferred over `rejected`.
public struct PreferencePair: Codable, Equatable, Sendable {
    /// Where it came from, `file:line`, so that any number in a report traces back to the data.
    public var id: String
    public var prompt: Turns
    public var chosen: Turns
    public var rejected: Turns
    public var flags: ExampleFlags

    public init(id: String, prompt: Turns, chosen: Turns, rejected: Turns, flags: ExampleFlags? = nil) {
        self.id = id
        self.prompt = prompt
        self.chosen = chosen
        self.rejected = rejected
        self.flags = flags ?? ExampleFlags.of(chosen: chosen, rejected: rejected)
    }
}

/// A supervised example: learn to produce `completion` after `prompt`.
public struct SFTExample: Codable, Equatable, Sendable {
    public var id: String
    public var prompt: Turns
    public var completion: Turns

    public init(id: String, prompt: Turns, completion: Turns) {
        self.id = id
        self.prompt = prompt
        self.completion = completion
    }
}

/// One completion with a binary label (desirable or not) and/or a scalar score.
public struct UnpairedExample: Codable, Equatable, Sendable {
    public var id: String
    public var prompt: Turns
    public var completion: Turns
    public var label: Bool?
    public var score: Double?

    public init(id: String, prompt: Turns, completion: Turns, label: Bool? = nil, score: Double? = nil) {
        self.id = id
        self.prompt = prompt
        self.completion = completion
        self.label = label
        self.score = score
    }
}

/// Any example the pipeline carries; its case is its `DataShape`.
public enum Example: Codable, Equatable, Sendable {
    case pair(PreferencePair)
    case sft(SFTExample)
    case unpaired(UnpairedExample)

    public var shape: DataShape {
        switch self {
        case .pair: return .paired
        case .sft: return .sft
        case .unpaired: return .unpaired
        }
    }

    public var id: String {
        switch self {
        case .pair(let p): return p.id
        case .sft(let s): return s.id
        case .unpaired(let u): return u.id
        }
    }
}
