import Foundation

/// A dense, row-major Float32 tensor.
///
/// This file fixes the public contract that models, plugins and the trainer code against:
/// `Tensor(shape:data:)`, `Tensor.zeros`, `shape`, `count`, `toArray()`, `item()`.
/// Storage is shared with views (reshape), so a tensor is a class.
///
/// Every tensor is one contiguous row-major block `storage[offset ..< offset + count]`: the only views
/// are those that keep that property (`reshaped`, slicing along the first axis with `rows`/`row`), and
/// everything else (transpose, broadcast) materialises. That keeps every kernel a plain loop over an
/// `UnsafeMutablePointer<Float>`; matrix products take transpose flags instead of strided views.
///
/// Autodiff state (`requiresGrad`, `grad`, the recorded graph node) lives here too; see Autodiff.swift.
public final class Tensor {
    public let shape: [Int]
    public let storage: TensorStorage
    public let offset: Int

    /// Accumulated dL/d(self) of a leaf after `backward()`; nil until a backward pass reaches it or after
    /// `zeroGrad()`. It may share storage with other gradients: treat it as read-only (optimizers
    /// replace it rather than write into it unless the engine marked it exclusive).
    public internal(set) var grad: Tensor?
    /// True when `grad` is a buffer only this leaf references, so accumulation may add in place.
    var gradIsExclusive = false
    /// The op that produced this tensor, while the graph is alive (nil for leaves and after backward).
    var node: GraphNode?
    /// Leaf flag set by the user (parameters); see `requiresGrad`.
    var isTrainableLeaf = false

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }

    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        precondition(offset + shape.reduce(1, *) <= storage.count,
                     "Tensor: shape \(shape) at offset \(offset) exceeds storage of \(storage.count) floats")
        self.shape = shape
        self.storage = storage
        self.offset = offset
    }

    public convenience init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count,
                     "Tensor: shape \(shape) holds \(shape.reduce(1, *)) values but \(data.count) were given")
        let storage = TensorStorage(count: data.count)
        data.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: data.count) }
        self.init(shape: shape, storage: storage)
    }

    /// A 1-D tensor holding `values`.
    public convenience init(_ values: [Float]) {
        self.init(shape: [values.count], data: values)
    }

    /// A new tensor of `shape` whose storage is fresh and zeroed (the usual output buffer of an op).
    public convenience init(zeros shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    /// A new tensor of `shape` whose contents are unspecified: for op outputs that write every element
    /// (saves the zeroing pass over memory).
    public convenience init(uninitialized shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(uninitializedCount: shape.reduce(1, *)))
    }

    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    public static func ones(_ shape: [Int]) -> Tensor { full(shape, value: 1) }

    public static func full(_ shape: [Int], value: Float) -> Tensor {
        let t = Tensor(zeros: shape)
        if value != 0 { t.pointer.update(repeating: value, count: t.count) }
        return t
    }

    /// A rank-0 tensor.
    public static func scalar(_ value: Float) -> Tensor { full([], value: value) }

    /// Values drawn i.i.d. from N(mean, std²), in row-major order from `generator` (so a seed fixes them).
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                    generator: inout Philox) -> Tensor {
        let t = Tensor(zeros: shape)
        let p = t.pointer
        for i in 0..<t.count { p[i] = mean + std * generator.nextNormal() }
        return t
    }

    /// Values drawn i.i.d. from U[low, high), in row-major order from `generator`.
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                                     generator: inout Philox) -> Tensor {
        let t = Tensor(zeros: shape)
        let p = t.pointer
        for i in 0..<t.count { p[i] = low + (high - low) * generator.nextFloat() }
        return t
    }

    /// First element of this tensor's view.
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// The value of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "Tensor.item(): tensor of shape \(shape) has \(count) elements, expected 1")
        return pointer.pointee
    }

    /// A tensor sharing this one's storage but cut off from the graph (no gradient flows through it).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage, offset: offset) }

    /// A copy with its own storage, cut off from the graph.
    public func copy() -> Tensor {
        let out = Tensor(zeros: shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = UnsafeBufferPointer(start: pointer, count: Swift.min(count, 8)).map { "\($0)" }
        return "Tensor(shape: \(shape), [\(shown.joined(separator: ", "))\(count > 8 ? ", …" : "")])"
    }
}

/// Zero-initialised, 64-byte aligned Float32 buffer owned by one or more tensors.
public final class TensorStorage {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// Number of storages currently alive in the process; tests use it to prove that the autodiff graph
    /// releases saved activations and intermediate gradients as soon as backward has used them.
    public static var liveCount: Int { liveCounter.load() }
    static let liveCounter = AtomicCounter()

    public init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        pointer = raw.assumingMemoryBound(to: Float.self)
        TensorStorage.liveCounter.add(1)
    }

    /// A buffer whose contents are unspecified (the caller writes every element before reading).
    public init(uninitializedCount count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        TensorStorage.liveCounter.add(1)
    }

    deinit {
        UnsafeMutableRawPointer(pointer).deallocate()
        TensorStorage.liveCounter.add(-1)
    }
}

/// A lock-protected integer (storages may be created and freed on worker threads).
final class AtomicCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func add(_ delta: Int) { lock.lock(); value += delta; lock.unlock() }
    func load() -> Int { lock.lock(); defer { lock.unlock() }; return value }
}
