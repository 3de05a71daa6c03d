/// The trainable leaves of a model, each under a unique name, in a stable order (the order they were
/// added). Optimizers key their state by these names and checkpoints store tensors under them, so the
/// name — not the position — is what identifies a parameter across runs.
public struct Parameters: Sequence {
    public struct Entry {
        public let name: String
        public let tensor: Tensor
    }

    public private(set) var entries: [Entry] = []
    private var indexByName: [String: Int] = [:]

    public init() {}

    /// Adds `tensor` under `name` and marks it `requiresGrad`. Names must be unique: a duplicate is a
    /// bug in the model code that builds the collection.
    public mutating func add(_ name: String, _ tensor: Tensor) {
        precondition(indexByName[name] == nil, "Parameters.add: duplicate parameter name '\(name)'")
        precondition(tensor.node == nil, "Parameters.add: '\(name)' was produced by op "
                     + "'\(tensor.node?.op ?? "")'; parameters must be leaf tensors")
        tensor.requiresGrad = true
        indexByName[name] = entries.count
        entries.append(Entry(name: name, tensor: tensor))
    }

    public subscript(name: String) -> Tensor? {
        indexByName[name].map { entries[$0].tensor }
    }

    public var names: [String] { entries.map(\.name) }
    public var count: Int { entries.count }
    /// Total number of scalar parameters.
    public var scalarCount: Int { entries.reduce(0) { $0 + $1.tensor.count } }

    /// Forgets every accumulated gradient (start of a new optimizer step).
    public func zeroGrad() {
        for entry in entries { entry.tensor.zeroGrad() }
    }

    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }
}
