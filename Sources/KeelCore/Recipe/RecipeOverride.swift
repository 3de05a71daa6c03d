import Foundation

/// `keel run --set KEY=VALUE`: one change to a recipe, made to its YAML tree before decoding, so that the
/// value is checked exactly as if the file said it. KEY is a dotted key path as messages print them
/// (`training.steps`, `loss.beta`, `loss[1].weight`, `data[2].eval_count`); a missing key is added, a
/// missing section created. VALUE is YAML (`50`, `cosine`, `"8"`, `{name: shuffle}`). Messages about
/// it name the override (`--set training.steps=ten: training.steps: …`) instead of a line of the file.
public struct RecipeOverride: Equatable, Sendable {
    /// As given: `training.steps=50`.
    public let text: String
    let path: [Segment]
    let value: String

    enum Segment: Equatable { case key(String), index(Int) }

    public init(_ text: String) throws {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw RecipeOverrideError("--set \(text): found no KEY=VALUE; expected e.g. --set training.steps=50")
        }
        self.text = text
        value = String(text[text.index(after: equals)...])
        var segments: [Segment] = []
        for part in text[..<equals].split(separator: ".", omittingEmptySubsequences: false) {
            var rest = Substring(part)
            let key = rest.prefix { $0 != "[" }
            guard !key.isEmpty else { throw RecipeOverrideError("--set \(text): empty key in '\(text[..<equals])'; expected a key path such as training.steps or loss[0].beta") }
            segments.append(.key(String(key)))
            rest = rest.dropFirst(key.count)
            while rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]"), let index = Int(rest[rest.index(after: rest.startIndex)..<close]), index >= 0 else {
                    throw RecipeOverrideError("--set \(text): '\(part)' has a malformed index; expected KEY[N] with N ≥ 0")
                }
                segments.append(.index(index))
                rest = rest[rest.index(after: close)...]
            }
            guard rest.isEmpty else { throw RecipeOverrideError("--set \(text): unexpected '\(rest)' after '\(part.dropLast(rest.count))'; expected a key path such as loss[0].beta") }
        }
        path = segments
    }

    /// Where messages about nodes this override wrote point: line 0 (no line of the file), column = its
    /// position among the overrides, counted from 1.
    static func mark(ofOverride index: Int) -> Mark { Mark(line: 0, column: index + 1) }

    /// The recipe's tree with this override (the `index`-th) applied, or the reason it cannot be.
    func apply(to root: YAMLNode, index: Int) -> Result<YAMLNode, RecipeDiagnostic> {
        let mark = Self.mark(ofOverride: index)
        let node: YAMLNode
        if value.isEmpty {
            node = YAMLNode(.scalar("", plain: true), at: mark)
        } else {
            do {
                node = Self.remark(try YAMLParser().parse(bytes: Array(value.utf8), file: "--set \(text)").root, mark)
            } catch let error as YAMLError {
                return .failure(RecipeDiagnostic(file: "--set \(text)", mark: mark, keyPath: "", message: error.message))
            } catch {
                return .failure(RecipeDiagnostic(file: "--set \(text)", mark: mark, keyPath: "", message: "\(error)"))
            }
        }
        var tree = root
        if let problem = Self.set(&tree, path[...], to: node, mark: mark, walked: "") {
            return .failure(RecipeDiagnostic(file: "--set \(text)", mark: mark, keyPath: "", message: problem))
        }
        return .success(tree)
    }

    /// Every mark of `node` set to `mark`.
    private static func remark(_ node: YAMLNode, _ mark: Mark) -> YAMLNode {
        switch node.kind {
        case .scalar: return YAMLNode(node.kind, at: mark)
        case .sequence(let items): return YAMLNode(.sequence(items.map { remark($0, mark) }), at: mark)
        case .mapping(let entries):
            return YAMLNode(.mapping(entries.map { YAMLEntry(key: $0.key, keyMark: mark, value: remark($0.value, mark)) }), at: mark)
        }
    }

    /// Puts `value` at `path` below `node`; returns what stood in the way, if anything.
    private static func set(_ node: inout YAMLNode, _ path: ArraySlice<Segment>, to value: YAMLNode, mark: Mark, walked: String) -> String? {
        guard let first = path.first else {
            node = value
            return nil
        }
        switch first {
        case .key(let key):
            let here = walked.isEmpty ? key : "\(walked).\(key)"
            if node.isNull { node = YAMLNode(.mapping([]), at: mark) }
            guard var entries = node.entries else {
                return "\(walked.isEmpty ? "the recipe" : walked) is \(node.kindName), not a mapping; expected a key path that follows the recipe"
                    + (node.items != nil ? " (a list: \(walked)[N].\(key))" : "")
            }
            if let i = entries.firstIndex(where: { $0.key == key }) {
                let problem = set(&entries[i].value, path.dropFirst(), to: value, mark: mark, walked: here)
                node.kind = .mapping(entries)
                return problem
            }
            var child = YAMLNode(.scalar("", plain: true), at: mark)
            if let problem = set(&child, path.dropFirst(), to: value, mark: mark, walked: here) { return problem }
            entries.append(YAMLEntry(key: key, keyMark: mark, value: child))
            node.kind = .mapping(entries)
            return nil
        case .index(let index):
            let here = "\(walked)[\(index)]"
            guard var items = node.items else { return "\(walked) is \(node.kindName), not a list; expected \(walked).KEY" }
            guard index < items.count else { return "\(walked) has \(items.count) item\(items.count == 1 ? "" : "s"); expected an index below \(items.count)" }
            let problem = set(&items[index], path.dropFirst(), to: value, mark: mark, walked: here)
            node.kind = .sequence(items)
            return problem
        }
    }
}

/// A `--set` argument that is not KEY=VALUE.
public struct RecipeOverrideError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
