import CYaml
import Foundation

/// A parsed document, and the problems that did not stop parsing (duplicate keys: the first
/// occurrence is kept, so that the rest of the recipe is still checked and reported in the same run).
public struct YAMLDocument {
    public let root: YAMLNode
    public let problems: [YAMLError]
}

/// A YAML error at a position: libyaml's own syntax errors, and the limits below.
public struct YAMLError: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let mark: Mark
    public let message: String

    public init(file: String, mark: Mark, message: String) {
        self.file = file
        self.mark = mark
        self.message = message
    }

    public var description: String { "\(file):\(mark): \(message)" }
}

/// Reads one YAML document into a `YAMLNode` tree with libyaml's event API.
///
/// Why events and not libyaml's document loader: the loader expands aliases eagerly, so a "billion
/// laughs" file (nine nested anchors, each aliased ten times) would allocate 10⁹ nodes before anyone
/// could refuse it. Building the tree ourselves lets us charge every alias with the size of the subtree
/// it copies and stop at `maxNodes`. `maxBytes` bounds the input, `maxDepth` our recursion.
public struct YAMLParser {
    public var maxBytes = 1 << 20
    public var maxNodes = 100_000
    public var maxDepth = 64
    /// What every YAML syntax error message ends with.
    static let syntaxExpectation = "expected YAML: key: value pairs, nested by indenting with spaces"

    public init() {}

    /// Parses a file (read and decoded by `RecipeSource`); `displayName` is how errors name it (the path
    /// as the user typed it).
    public func parse(contentsOf url: URL, displayName: String? = nil) throws -> YAMLDocument {
        let name = displayName ?? url.path
        return try parse(bytes: Array(RecipeSource.read(url, displayName: name, maxBytes: maxBytes).text.utf8), file: name)
    }

    /// Parses YAML text; an empty document is an error (a recipe must say something).
    public func parse(bytes: [UInt8], file: String) throws -> YAMLDocument {
        guard bytes.count <= maxBytes else { throw tooLarge(file, bytes.count) }
        return try bytes.withUnsafeBufferPointer { buffer in
            let reader = EventReader(file: file)
            yaml_parser_set_input_string(&reader.parser, buffer.baseAddress, buffer.count)
            var builder = TreeBuilder(reader: reader, limits: self)
            let root = try builder.document()
            return YAMLDocument(root: root, problems: builder.problems)
        }
    }

    private func tooLarge(_ file: String, _ size: Int) -> YAMLError {
        YAMLError(file: file, mark: Mark(line: 1, column: 1),
                  message: "file is \(size) bytes; expected at most \(maxBytes) bytes for a recipe")
    }
}

/// One libyaml event, copied out of C memory (which is freed right after).
private struct Event {
    enum Kind {
        case streamStart, streamEnd, documentStart, documentEnd
        case scalar(String, plain: Bool)
        case sequenceStart, sequenceEnd, mappingStart, mappingEnd
        case alias(String)
    }
    let kind: Kind
    let anchor: String?
    let mark: Mark
}

private final class EventReader {
    var parser = yaml_parser_t()
    let file: String

    init(file: String) {
        self.file = file
        yaml_parser_initialize(&parser)
    }

    deinit { yaml_parser_delete(&parser) }

    func next() throws -> Event {
        var event = yaml_event_t()
        guard yaml_parser_parse(&parser, &event) == 1 else { throw syntaxError() }
        defer { yaml_event_delete(&event) }
        let mark = Mark(line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
        func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? { p.map { String(cString: $0) } }
        switch event.type {
        case YAML_STREAM_START_EVENT: return Event(kind: .streamStart, anchor: nil, mark: mark)
        case YAML_STREAM_END_EVENT: return Event(kind: .streamEnd, anchor: nil, mark: mark)
        case YAML_DOCUMENT_START_EVENT: return Event(kind: .documentStart, anchor: nil, mark: mark)
        case YAML_DOCUMENT_END_EVENT: return Event(kind: .documentEnd, anchor: nil, mark: mark)
        case YAML_SEQUENCE_START_EVENT:
            return Event(kind: .sequenceStart, anchor: string(event.data.sequence_start.anchor), mark: mark)
        case YAML_SEQUENCE_END_EVENT: return Event(kind: .sequenceEnd, anchor: nil, mark: mark)
        case YAML_MAPPING_START_EVENT:
            return Event(kind: .mappingStart, anchor: string(event.data.mapping_start.anchor), mark: mark)
        case YAML_MAPPING_END_EVENT: return Event(kind: .mappingEnd, anchor: nil, mark: mark)
        case YAML_ALIAS_EVENT: return Event(kind: .alias(string(event.data.alias.anchor) ?? ""), anchor: nil, mark: mark)
        case YAML_SCALAR_EVENT:
            let s = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
            let plain = s.style == YAML_PLAIN_SCALAR_STYLE && s.tag == nil
            return Event(kind: .scalar(text, plain: plain), anchor: string(s.anchor), mark: mark)
        default:
            throw YAMLError(file: file, mark: mark, message: "unexpected YAML event \(event.type.rawValue)")
        }
    }

    /// libyaml's problem text at its position, with its context ("while parsing a block mapping") if any.
    private func syntaxError() -> YAMLError {
        let m = parser.problem_mark
        let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        var message = "YAML syntax error: \(problem)"
        if let context = parser.context.map({ String(cString: $0) }) {
            let c = parser.context_mark
            message += " (\(context) at \(c.line + 1):\(c.column + 1))"
        }
        message += "; " + YAMLParser.syntaxExpectation
        return YAMLError(file: file, mark: Mark(line: Int(m.line) + 1, column: Int(m.column) + 1), message: message)
    }
}

/// Turns the event stream into a tree, resolving aliases and enforcing the limits.
private struct TreeBuilder {
    let reader: EventReader
    let limits: YAMLParser
    /// Anchored subtrees and how many nodes each one costs when an alias copies it.
    var anchors: [String: (node: YAMLNode, cost: Int)] = [:]
    var nodes = 0
    var problems: [YAMLError] = []

    init(reader: EventReader, limits: YAMLParser) {
        self.reader = reader
        self.limits = limits
    }

    func error(_ mark: Mark, _ message: String) -> YAMLError {
        YAMLError(file: reader.file, mark: mark, message: message)
    }

    mutating func document() throws -> YAMLNode {
        _ = try reader.next()                                   // stream start
        let start = try reader.next()
        guard case .documentStart = start.kind else { throw error(start.mark, "the recipe is empty; expected a mapping") }
        let root = try node(try reader.next(), depth: 0)
        _ = try reader.next()                                   // document end
        let after = try reader.next()
        if case .documentStart = after.kind {
            throw error(after.mark, "a second YAML document; expected a single document per recipe")
        }
        return root
    }

    mutating func count(_ cost: Int, at mark: Mark) throws {
        nodes += cost
        if nodes > limits.maxNodes {
            throw error(mark, "document expands to more than \(limits.maxNodes) nodes (alias expansion bomb?); expected at most \(limits.maxNodes)")
        }
    }

    mutating func node(_ event: Event, depth: Int) throws -> YAMLNode {
        guard depth < limits.maxDepth else { throw error(event.mark, "nesting deeper than \(limits.maxDepth) levels; expected at most \(limits.maxDepth)") }
        let before = nodes
        let result: YAMLNode
        switch event.kind {
        case .scalar(let text, let plain):
            try count(1, at: event.mark)
            result = YAMLNode(.scalar(text, plain: plain), at: event.mark)
        case .alias(let name):
            guard let anchored = anchors[name] else { throw error(event.mark, "unknown alias *\(name); expected an anchor &\(name) defined before it") }
            try count(anchored.cost, at: event.mark)
            return YAMLNode(anchored.node.kind, at: event.mark)
        case .sequenceStart:
            try count(1, at: event.mark)
            var items: [YAMLNode] = []
            while true {
                let next = try reader.next()
                if case .sequenceEnd = next.kind { break }
                items.append(try node(next, depth: depth + 1))
            }
            result = YAMLNode(.sequence(items), at: event.mark)
        case .mappingStart:
            try count(1, at: event.mark)
            var entries: [YAMLEntry] = []
            var firstMarks: [String: Mark] = [:]  // duplicate checks in constant time: 10⁵ keys stay linear
            while true {
                let keyEvent = try reader.next()
                if case .mappingEnd = keyEvent.kind { break }
                guard case .scalar(let key, _) = keyEvent.kind, keyEvent.anchor == nil else {
                    throw error(keyEvent.mark, "a mapping key must be a plain word; expected key: value")
                }
                let value = try node(try reader.next(), depth: depth + 1)
                if let first = firstMarks[key] {
                    problems.append(error(keyEvent.mark, "duplicate key '\(excerpt(key))' (first at \(first)); expected each key once"))
                } else {
                    firstMarks[key] = keyEvent.mark
                    entries.append(YAMLEntry(key: key, keyMark: keyEvent.mark, value: value))
                }
            }
            result = YAMLNode(.mapping(entries), at: event.mark)
        default:
            throw error(event.mark, "unexpected YAML structure")
        }
        if let anchor = event.anchor { anchors[anchor] = (result, nodes - before) }
        return result
    }
}
