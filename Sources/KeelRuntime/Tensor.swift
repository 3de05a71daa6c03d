/// A dense, row-major Float32 tensor.
///
/// This file fixes the public contract that models, plugins and the trainer code against:
/// `Tensor(shape:data:)`, `Tensor.zeros`, `shape`, `count`, `toArray()`, `item()`.
/// Storage is shared with views (reshape), so a tensor is a class.
public final class Tensor {
    public let shape: [Int]
    public let storage: TensorStorage
    public let offset: Int

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

    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    /// First element of this tensor's view.
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// The value of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "Tensor.item(): tensor of shape \(shape) has \(count) elements, expected 1")
        return pointer.pointee
    }
}

/// Zero-initialised, 64-byte aligned Float32 buffer owned by one or more tensors.
public final class TensorStorage {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        pointer = raw.assumingMemoryBound(to: Float.self)
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}
