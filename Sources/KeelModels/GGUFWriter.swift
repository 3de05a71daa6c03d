import Foundation

/// Builds a GGUF v3 file in memory from metadata and already-encoded tensor bytes (the inverse of
/// `GGUFFile`). Used to make synthetic models for tests and to export small models; it does not quantise.
public struct GGUFWriter {
    public struct TensorEntry {
        public var name: String
        /// GGUF order (fastest-varying first), i.e. the row-major shape reversed.
        public var dimensions: [Int]
        public var type: GGMLType
        public var bytes: Data
    }

    public var metadata: [(key: String, value: GGUFValue)] = []
    public var tensors: [TensorEntry] = []

    public init() {}

    /// `general.alignment` when set, else the default 32.
    public var alignment: Int {
        metadata.last { $0.key == GGUFFile.alignmentKey }?.value.int ?? GGUFFile.defaultAlignment
    }

    public mutating func set(_ key: String, _ value: GGUFValue) {
        metadata.removeAll { $0.key == key }
        metadata.append((key, value))
    }

    public mutating func addTensor(name: String, dimensions: [Int], type: GGMLType, bytes: Data) {
        tensors.append(TensorEntry(name: name, dimensions: dimensions, type: type, bytes: bytes))
    }

    /// An F32 tensor from row-major `values` of row-major `shape`.
    public mutating func addFloat32Tensor(name: String, shape: [Int], values: [Float]) {
        var bytes = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        addTensor(name: name, dimensions: shape.reversed(), type: .f32, bytes: bytes)
    }

    public func encoded() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func pad(to alignment: Int) { out.append(contentsOf: [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment)) }
        func value(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let x): string(x)
            case .array(let elements):
                // An empty array has no element to take the type from; it is written as an array of uint8.
                u32(elements.first?.typeCode ?? 0)
                u64(UInt64(elements.count))
                elements.forEach(value)
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float64(let x): u64(x.bitPattern)
            }
        }

        let alignment = self.alignment
        u32(GGUFFile.magic)
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, v) in metadata {
            string(key)
            u32(v.typeCode)
            value(v)
        }
        var offset = 0
        for tensor in tensors {
            string(tensor.name)
            u32(UInt32(tensor.dimensions.count))
            tensor.dimensions.forEach { u64(UInt64($0)) }
            u32(tensor.type.rawValue)
            u64(UInt64(offset))
            offset += (tensor.bytes.count + alignment - 1) / alignment * alignment
        }
        pad(to: alignment)
        for tensor in tensors {
            out.append(tensor.bytes)
            pad(to: alignment)
        }
        return out
    }

    public func write(to path: String) throws {
        try encoded().write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
