import Foundation
import Glibc

/// An interval for numeric options; each bound may be open, closed or absent.
/// Printed the mathematical way, e.g. `(0, 1]`, `[1, ∞)`.
public struct NumericRange: Equatable, Sendable, CustomStringConvertible {
    public var lower: Double?
    public var upper: Double?
    public var lowerOpen = false
    public var upperOpen = false

    public init(lower: Double? = nil, upper: Double? = nil, lowerOpen: Bool = false, upperOpen: Bool = false) {
        self.lower = lower
        self.upper = upper
        self.lowerOpen = lowerOpen
        self.upperOpen = upperOpen
    }

    public static let positive = NumericRange(lower: 0, lowerOpen: true)
    public static let nonNegative = NumericRange(lower: 0)
    public static let unitInterval = NumericRange(lower: 0, upper: 1)
    public static func atLeast(_ x: Double) -> NumericRange { NumericRange(lower: x) }
    public static func closed(_ a: Double, _ b: Double) -> NumericRange { NumericRange(lower: a, upper: b) }

    public func contains(_ x: Double) -> Bool {
        if let lower, lowerOpen ? !(x > lower) : !(x >= lower) { return false }
        if let upper, upperOpen ? !(x < upper) : !(x <= upper) { return false }
        return true
    }

    public var description: String {
        func number(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
        let left = lower.map { (lowerOpen ? "(" : "[") + number($0) } ?? "(-∞"
        let right = upper.map { number($0) + (upperOpen ? ")" : "]") } ?? "∞)"
        return "\(left), \(right)"
    }
}

/// What kind of value an option takes. Paths resolve against the recipe's folder.
public enum OptionType: Equatable, Sendable {
    case int(NumericRange?)
    case double(NumericRange?)
    case bool
    case string
    case choice([String])
    /// `mustExist`: an input file or folder (checked when the recipe loads); false for outputs.
    case path(mustExist: Bool)

    /// "an integer in [1, ∞)", for messages and docs.
    public var expectation: String {
        switch self {
        case .int(let range): return "an integer" + (range.map { " in \($0)" } ?? "")
        case .double(let range): return "a number" + (range.map { " in \($0)" } ?? "")
        case .bool: return "true or false"
        case .string: return "a string"
        case .choice(let values): return "one of " + values.joined(separator: ", ")
        case .path(let mustExist): return mustExist ? "a path to an existing file" : "a path"
        }
    }

    /// Short name for tables: int, float, bool, string, enum, path.
    public var shortName: String {
        switch self {
        case .int: return "int"
        case .double: return "float"
        case .bool: return "bool"
        case .string: return "string"
        case .choice: return "enum"
        case .path: return "path"
        }
    }
}

/// A decoded option value. Paths are absolute after resolution.
public enum OptionValue: Equatable, Codable, Sendable, CustomStringConvertible {
    case int(Int)
    case double(Double)
    case bool(Bool)
    case string(String)
    case path(String)

    public var description: String {
        switch self {
        case .int(let x): return String(x)
        case .double(let x): return String(x)
        case .bool(let x): return String(x)
        case .string(let x): return x
        case .path(let x): return x
        }
    }
}

/// The value an option takes when the recipe does not set it.
public enum OptionDefault: Equatable, Sendable {
    /// The recipe must set it.
    case required
    /// Unset means "not used" (e.g. `training.steps` when `epochs` is given); `note` says what then applies.
    case absent(note: String)
    case value(OptionValue)
}

/// One declared option of a plugin or of a recipe section: the single source of truth for decoding,
/// `keel plan`, `keel plugins` and docs/plugins.md.
public struct OptionSpec: Equatable, Sendable {
    public let name: String
    public let type: OptionType
    public let defaultValue: OptionDefault
    public let help: String

    public init(_ name: String, _ type: OptionType, default defaultValue: OptionDefault, help: String) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.help = help
    }

    /// Convenience initialisers so that declarations read like a table.
    public static func int(_ name: String, _ value: Int?, in range: NumericRange? = nil, _ help: String) -> OptionSpec {
        OptionSpec(name, .int(range), default: value.map { .value(.int($0)) } ?? .required, help: help)
    }
    public static func double(_ name: String, _ value: Double?, in range: NumericRange? = nil, _ help: String) -> OptionSpec {
        OptionSpec(name, .double(range), default: value.map { .value(.double($0)) } ?? .required, help: help)
    }
    public static func bool(_ name: String, _ value: Bool, _ help: String) -> OptionSpec {
        OptionSpec(name, .bool, default: .value(.bool(value)), help: help)
    }
    public static func choice(_ name: String, _ values: [String], _ value: String, _ help: String) -> OptionSpec {
        OptionSpec(name, .choice(values), default: .value(.string(value)), help: help)
    }

    /// The default as text for plans and docs.
    public var defaultText: String {
        switch defaultValue {
        case .required: return "required"
        case .absent(let note): return note
        case .value(let value): return value.description
        }
    }
}

/// Where a final option value came from, shown by `keel plan`.
public enum OptionOrigin: Equatable, Sendable {
    case recipe(Mark)
    case defaultValue
}

/// Decoded options of one node: every declared option with its final value and origin.
public struct ResolvedOptions: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public let spec: OptionSpec
        /// nil only for `.absent` options left unset.
        public let value: OptionValue?
        public let origin: OptionOrigin
    }

    public let entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// All defaults (for nodes built in code, e.g. by tests or the trainer).
    public init(defaultsOf specs: [OptionSpec]) {
        entries = specs.map {
            if case .value(let v) = $0.defaultValue { return Entry(spec: $0, value: v, origin: .defaultValue) }
            return Entry(spec: $0, value: nil, origin: .defaultValue)
        }
    }

    public subscript(name: String) -> OptionValue? {
        guard let entry = entries.first(where: { $0.spec.name == name }) else {
            preconditionFailure("option '\(name)' is not declared (declared: \(entries.map(\.spec.name)))")
        }
        return entry.value
    }

    public func origin(of name: String) -> OptionOrigin? { entries.first { $0.spec.name == name }?.origin }

    // Typed accessors. The decoder has already checked each value against its declared type, so a
    // mismatch here is a programming error in the plugin (asking for a float option as an int).
    public func int(_ name: String) -> Int? {
        switch self[name] {
        case .int(let x)?: return x
        case nil: return nil
        case let other?: preconditionFailure("option '\(name)' is \(other), not an int")
        }
    }
    public func double(_ name: String) -> Double? {
        switch self[name] {
        case .double(let x)?: return x
        case .int(let x)?: return Double(x)
        case nil: return nil
        case let other?: preconditionFailure("option '\(name)' is \(other), not a number")
        }
    }
    public func bool(_ name: String) -> Bool? {
        switch self[name] {
        case .bool(let x)?: return x
        case nil: return nil
        case let other?: preconditionFailure("option '\(name)' is \(other), not a bool")
        }
    }
    /// A number option declared with a default (so never unset): the read site restates no default.
    public func double(defaulted name: String) -> Double {
        guard let x = double(name) else { preconditionFailure("option '\(name)' is unset; it must be declared with a default") }
        return x
    }
    /// Strings, enum choices and paths.
    public func string(_ name: String) -> String? {
        switch self[name] {
        case .string(let x)?, .path(let x)?: return x
        case nil: return nil
        case let other?: preconditionFailure("option '\(name)' is \(other), not a string")
        }
    }
}

/// Decodes the options of one mapping against their declarations, reporting every problem to `sink`.
///
/// `reserved` keys (e.g. a plugin node's `name`) are read by the caller and skipped here. Returns the
/// resolved options even when some failed (failed ones take their default) so that later checks still run.
/// `promised`: folders a required recipe exports to, which paths may name before they exist.
func decodeOptions(_ specs: [OptionSpec], entries: [YAMLEntry], reserved: [String] = [],
                   mapping: YAMLNode, path: String, baseDirectory: URL, promised: [URL] = [], sink: DiagnosticSink) -> ResolvedOptions {
    let known = specs.map(\.name) + reserved
    for entry in entries where !known.contains(entry.key) {
        sink.error(entry.keyMark, joinPath(path, entry.key), unknownKeyMessage("key", entry.key, in: known, at: path))
    }
    return ResolvedOptions(entries: specs.map { spec in
        let keyPath = joinPath(path, spec.name)
        guard let entry = entries.first(where: { $0.key == spec.name }) else {
            if case .required = spec.defaultValue {
                sink.error(mapping.mark, keyPath, "missing; expected \(spec.type.expectation) (\(spec.help))")
            }
            return ResolvedOptions(defaultsOf: [spec]).entries[0]
        }
        switch decodeValue(entry.value, as: spec.type, baseDirectory: baseDirectory, promised: promised) {
        case .success(let value):
            return .init(spec: spec, value: value, origin: .recipe(entry.value.mark))
        case .failure(let problem):
            sink.error(entry.value.mark, keyPath, problem.message)
            return ResolvedOptions(defaultsOf: [spec]).entries[0]
        }
    })
}

struct ValueProblem: Error { let message: String }

/// For `checkOptions` of plugins whose `.path(mustExist: true)` option names a file to read, not a
/// folder (decoding already refused what is neither).
public func folderProblems(_ options: ResolvedOptions, fileOptions names: [String]) -> [OptionProblem] {
    names.compactMap { name in
        var isFolder: ObjCBool = false
        guard let path = options.string(name), FileManager.default.fileExists(atPath: path, isDirectory: &isFolder),
              isFolder.boolValue else { return nil }
        return OptionProblem(option: name, "found a folder at \(path); expected a file")
    }
}

/// One scalar against one option type. Only plain (unquoted) scalars are read as numbers or booleans.
func decodeValue(_ node: YAMLNode, as type: OptionType, baseDirectory: URL, promised: [URL] = []) -> Result<OptionValue, ValueProblem> {
    let expected = "expected \(type.expectation)"
    guard case .scalar(let text, let plain) = node.kind, !node.isNull else {
        return .failure(ValueProblem(message: "found \(node.kindName); \(expected)"))
    }
    let shown = plain ? excerpt(text) : "\"\(excerpt(text))\""
    switch type {
    case .int(let range):
        guard plain, let x = Int(text) else { return .failure(ValueProblem(message: "\(shown) is not an integer; \(expected)")) }
        if let range, !range.contains(Double(x)) { return .failure(ValueProblem(message: "\(x) is out of range; \(expected)")) }
        return .success(.int(x))
    case .double(let range):
        guard plain, let x = Double(text), x.isFinite else {
            return .failure(ValueProblem(message: "\(shown) is not a number; \(expected)"))
        }
        if let range, !range.contains(x) { return .failure(ValueProblem(message: "\(excerpt(text)) is out of range; \(expected)")) }
        return .success(.double(x))
    case .bool:
        switch plain ? text : "" {
        case "true", "True", "TRUE": return .success(.bool(true))
        case "false", "False", "FALSE": return .success(.bool(false))
        default: return .failure(ValueProblem(message: "\(shown) is not a boolean; \(expected)"))
        }
    case .string:
        return .success(.string(text))
    case .choice(let values):
        guard values.contains(text) else {
            return .failure(ValueProblem(message: "unknown value '\(excerpt(text))'; " + suggestion(for: text, in: values)))
        }
        return .success(.string(text))
    case .path(let mustExist):
        guard !text.isEmpty else { return .failure(ValueProblem(message: "empty path; \(expected)")) }
        let url = URL(fileURLWithPath: text, relativeTo: baseDirectory).standardizedFileURL
        let isPromised = promised.contains { url.path == $0.path || url.path.hasPrefix($0.path + "/") }
        if mustExist, !isPromised {
            var status = stat()
            guard stat(url.path, &status) == 0 else {
                return .failure(ValueProblem(message: "no such file: \(url.path); expected a path to an existing file, relative to the recipe's folder"))
            }
            // Reading a FIFO or a device never ends (or blocks): only files and folders are inputs.
            guard [S_IFREG, S_IFDIR].contains(status.st_mode & S_IFMT) else {
                return .failure(ValueProblem(message: "found \(FileKind.name(of: status.st_mode)) at \(url.path); expected a regular file or a folder"))
            }
        }
        return .success(.path(url.path))
    }
}
