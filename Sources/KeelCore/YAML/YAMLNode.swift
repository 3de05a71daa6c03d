/// A position in a text file, 1-based, as editors show it.
public struct Mark: Equatable, Comparable, Hashable, Sendable, CustomStringConvertible {
    public let line: Int
    public let column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public static func < (a: Mark, b: Mark) -> Bool { (a.line, a.column) < (b.line, b.column) }
    public var description: String { "\(line):\(column)" }
}

/// One node of a parsed YAML document, with the position it started at.
///
/// Only the three YAML kinds exist here; typing ("is this an integer?") is left to the recipe decoder,
/// which knows what each key expects and can say so in its error. `plain` records whether a scalar was
/// written unquoted: only plain scalars may be read as numbers, booleans or null (so `"8"` is a string).
public struct YAMLNode: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        case mapping([YAMLEntry])
    }

    public var kind: Kind
    public var mark: Mark

    public init(_ kind: Kind, at mark: Mark) {
        self.kind = kind
        self.mark = mark
    }

    /// The text of a scalar node, nil for collections.
    public var scalar: String? {
        if case .scalar(let text, _) = kind { return text }
        return nil
    }

    /// A plain scalar that YAML reads as null: empty, `~` or `null`.
    public var isNull: Bool {
        if case .scalar(let text, plain: true) = kind { return ["", "~", "null", "Null", "NULL"].contains(text) }
        return false
    }

    /// The entries of a mapping node, nil otherwise.
    public var entries: [YAMLEntry]? {
        if case .mapping(let entries) = kind { return entries }
        return nil
    }

    /// The items of a sequence node, nil otherwise.
    public var items: [YAMLNode]? {
        if case .sequence(let items) = kind { return items }
        return nil
    }

    /// What the user wrote, in words, for "expected X, found Y" messages.
    public var kindName: String {
        switch kind {
        case .scalar: return isNull ? "null" : "a scalar"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }

    /// The value of the entry with this key in a mapping node.
    public subscript(key: String) -> YAMLNode? { entries?.first { $0.key == key }?.value }

}

/// A mapping entry. Keys are scalars only (recipes have no complex keys), with their own position so
/// that "unknown key" errors point at the key, not at its value.
public struct YAMLEntry: Equatable, Sendable {
    public var key: String
    public var keyMark: Mark
    public var value: YAMLNode

    public init(key: String, keyMark: Mark, value: YAMLNode) {
        self.key = key
        self.keyMark = keyMark
        self.value = value
    }
}
