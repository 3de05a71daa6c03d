/// A GGUF file (llama.cpp's model format, versions 2 and 3), memory-mapped and fully validated on open.
///
/// Layout (little-endian; spec: ggml/docs/gguf.md):
///
///     "GGUF" u32 version  u64 tensor_count  u64 metadata_kv_count
///     metadata_kv_count × (string key, u32 value_type, value)
///     tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset)
///     padding to `general.alignment` (default 32)
///     tensor data; each tensor at data_start + offset, offset a multiple of the alignment
///
/// where `string` = u64 byte length + UTF-8 bytes (no terminator). Every count and length is checked
/// against the bytes that remain before anything is allocated, so a corrupt file yields a `GGUFError`
/// naming the offset and the field, never a crash or a huge allocation.
///
/// The tensor bytes stay in the mapping: `data(of:)` points into it and `dequantize` converts to Float32.
public final class GGUFFile: @unchecked Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" read as a little-endian u32
    public static let defaultAlignment = 32
    public static let alignmentKey = "general.alignment"
    /// Nested arrays deeper than this are rejected: real files use depth 1, and recursion on a crafted
    /// file must not exhaust the stack.
    public static let maxArrayNesting = 8
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4

    public let path: String
    public let version: Int
    /// All metadata, by key.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor descriptions in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute file offset where tensor data starts.
    public let dataOffset: Int
    public var fileSize: Int { file.size }

    private let file: MappedFile
    private let tensorIndex: [String: Int]

    public convenience init(path: String) throws {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch let error as MappedFileError {
            throw GGUFError(path: path, offset: nil, message: error.description)
        }
        try self.init(mapped: file)
    }

    init(mapped file: MappedFile) throws {
        self.file = file
        self.path = file.path
        var reader = GGUFByteReader(bytes: file.bytes, path: file.path)

        let magic = try reader.u32("magic")
        guard magic == Self.magic else {
            throw reader.error(at: 0, "not a GGUF file: magic is 0x\(String(magic, radix: 16)), expected 0x46554747 (\"GGUF\")")
        }
        let rawVersion = try reader.u32("version")
        guard rawVersion == 2 || rawVersion == 3 else {
            let hint = rawVersion.byteSwapped <= 3 ? " (a big-endian GGUF, which is not supported)" : ""
            throw reader.error(at: 4, "unsupported GGUF version \(rawVersion)\(hint), expected 2 or 3")
        }
        version = Int(rawVersion)
        // Smallest encodings: a tensor info is 8 (name length) + 4 + 4 + 8 bytes; a key/value 8 + 4 + 1.
        let tensorCount = try reader.count("tensor_count", minimumBytesEach: 24)
        let metadataCount = try reader.count("metadata_kv_count", minimumBytesEach: 13)

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        metadata.reserveCapacity(metadataCount)
        keys.reserveCapacity(metadataCount)
        for index in 0..<metadataCount {
            let keyOffset = reader.offset
            let key = try reader.string("key of metadata entry #\(index)")
            guard metadata[key] == nil else {
                throw reader.error(at: keyOffset, "duplicate metadata key '\(key)'")
            }
            let typeOffset = reader.offset
            let type = try reader.u32("value type of metadata key '\(key)'")
            metadata[key] = try reader.value(type: type, typeOffset: typeOffset, key: key, depth: 0)
            keys.append(key)
        }

        var alignment = Self.defaultAlignment
        if let value = metadata[Self.alignmentKey] {
            guard case .uint32(let a) = value, a > 0, a & (a - 1) == 0 else {
                throw reader.error(at: nil, "metadata '\(Self.alignmentKey)' is \(value), expected a uint32 power of two")
            }
            alignment = Int(a)
        }

        var tensors: [GGUFTensorInfo] = []
        var tensorIndex: [String: Int] = [:]
        tensors.reserveCapacity(tensorCount)
        for index in 0..<tensorCount {
            let infoOffset = reader.offset
            let name = try reader.string("name of tensor #\(index)")
            guard tensorIndex[name] == nil else { throw reader.error(at: infoOffset, "duplicate tensor name '\(name)'") }
            let rank = try reader.u32("n_dims of tensor '\(name)'")
            guard rank >= 1, rank <= Self.maxDimensions else {
                throw reader.error(at: reader.offset - 4, "tensor '\(name)' has \(rank) dimensions, expected 1...\(Self.maxDimensions)")
            }
            var dims: [Int] = []
            for d in 0..<Int(rank) {
                let raw = try reader.u64("dimension \(d) of tensor '\(name)'")
                guard let dim = Int(exactly: raw), dim <= file.size * 64 else {
                    throw reader.error(at: reader.offset - 8, "tensor '\(name)' dimension \(d) is \(raw), larger than the file could hold")
                }
                dims.append(dim)
            }
            let typeCode = try reader.u32("type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: typeCode) else {
                throw reader.error(at: reader.offset - 4, "tensor '\(name)' has unknown ggml type \(typeCode)")
            }
            let rawOffset = try reader.u64("data offset of tensor '\(name)'")
            guard let offset = Int(exactly: rawOffset), offset % alignment == 0 else {
                throw reader.error(at: reader.offset - 8, "tensor '\(name)' data offset \(rawOffset) is not a multiple of the alignment \(alignment)")
            }
            guard dims[0] % type.blockSize == 0 else {
                throw reader.error(at: infoOffset, "tensor '\(name)' of type \(type) has a row of \(dims[0]) elements, not a multiple of its block size \(type.blockSize)")
            }
            var elements = 1
            var byteCount = 0
            var overflow = false
            for dim in dims {
                (elements, overflow) = elements.multipliedReportingOverflow(by: dim)
                if overflow { break }
            }
            if !overflow { (byteCount, overflow) = (elements / type.blockSize).multipliedReportingOverflow(by: type.blockBytes) }
            guard !overflow, byteCount <= file.size else {
                throw reader.error(at: infoOffset, "tensor '\(name)' dimensions \(dims) need more bytes than the file holds")
            }
            tensorIndex[name] = tensors.count
            tensors.append(GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: offset, byteCount: byteCount))
        }

        let headerEnd = reader.offset
        let dataOffset = (headerEnd + alignment - 1) / alignment * alignment
        for tensor in tensors {
            let (start, o1) = dataOffset.addingReportingOverflow(tensor.offset)
            let (end, o2) = start.addingReportingOverflow(tensor.byteCount)
            guard !o1, !o2, end <= file.size else {
                throw reader.error(at: nil, "tensor '\(tensor.name)' data [\(tensor.offset), +\(tensor.byteCount)) after the data start \(dataOffset) ends beyond the file size \(file.size)")
            }
        }
        self.metadata = metadata
        self.metadataKeys = keys
        self.alignment = alignment
        self.dataOffset = dataOffset
        self.tensors = tensors
        self.tensorIndex = tensorIndex
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The raw bytes of a tensor, valid while this `GGUFFile` is alive.
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[(dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount)])
    }

    /// The tensor as Float32 in row-major order with shape `tensor.shape` (GGUF dimensions reversed).
    public func dequantize(_ tensor: GGUFTensorInfo) throws -> Tensor {
        let out = Tensor.zeros(tensor.shape)
        try dequantize(tensor, into: out.pointer)
        return out
    }

    public func dequantize(named name: String) throws -> Tensor {
        guard let info = tensor(named: name) else {
            throw GGUFError(path: path, offset: nil, message: "no tensor named '\(name)'")
        }
        return try dequantize(info)
    }

    /// Writes `tensor.elementCount` floats at `destination`.
    public func dequantize(_ tensor: GGUFTensorInfo, into destination: UnsafeMutablePointer<Float>) throws {
        guard tensor.elementCount > 0, let source = data(of: tensor).baseAddress else { return }
        do {
            try Dequantize.parallel(type: tensor.type, from: source, count: tensor.elementCount, to: destination)
        } catch let error as DequantizeError {
            throw GGUFError(path: path, offset: dataOffset + tensor.offset, message: "tensor '\(tensor.name)': \(error)")
        }
    }

    // MARK: Typed metadata access with errors that name the key.

    public func requiredValue(_ key: String) throws -> GGUFValue {
        guard let value = metadata[key] else { throw GGUFError(path: path, offset: nil, message: "missing metadata key '\(key)'") }
        return value
    }

    public func requiredInt(_ key: String) throws -> Int {
        try typed(key, "an integer") { $0.int }
    }

    public func requiredFloat(_ key: String) throws -> Float {
        try typed(key, "a number") { $0.float }
    }

    public func requiredString(_ key: String) throws -> String {
        try typed(key, "a string") { $0.string }
    }

    public func requiredStringArray(_ key: String) throws -> [String] {
        try typed(key, "an array of strings") { $0.stringArray }
    }

    public func requiredIntArray(_ key: String) throws -> [Int] {
        try typed(key, "an array of integers") { $0.intArray }
    }

    public func requiredFloatArray(_ key: String) throws -> [Float] {
        try typed(key, "an array of numbers") { $0.floatArray }
    }

    private func typed<T>(_ key: String, _ expected: String, _ convert: (GGUFValue) -> T?) throws -> T {
        let value = try requiredValue(key)
        guard let converted = convert(value) else {
            throw GGUFError(path: path, offset: nil, message: "metadata key '\(key)' is \(value.typeName), expected \(expected)")
        }
        return converted
    }
}

/// Why a GGUF file could not be read: the file, the byte offset when known, and what was expected.
public struct GGUFError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let offset: Int?
    public let message: String

    public var description: String {
        if let offset { return "\(path): at byte \(offset): \(message)" }
        return "\(path): \(message)"
    }
}

/// One tensor's description from the GGUF header.
public struct GGUFTensorInfo: Equatable, Sendable {
    public let name: String
    /// GGUF order: `dimensions[0]` is the fastest-varying (ggml `ne[0]`).
    public let dimensions: [Int]
    public let type: GGMLType
    /// Relative to `GGUFFile.dataOffset`.
    public let offset: Int
    public let byteCount: Int

    /// Row-major (PyTorch/HF) shape: the GGUF dimensions reversed, e.g. token_embd [576, 49152] → [49152, 576].
    public var shape: [Int] { dimensions.reversed() }
    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// ggml tensor types with their block geometry (ggml.c `type_traits`: blck_size, type_size).
/// Sizes are known for more types than `Dequantize` converts, so files with other types still open.
public enum GGMLType: UInt32, Sendable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1: return 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8: return 1
        case .i64, .f64: return 8
        case .q4_0: return 18   // f16 d, 16 B nibbles
        case .q4_1: return 20   // f16 d, f16 m, 16 B nibbles
        case .q5_0: return 22   // f16 d, 4 B high bits, 16 B nibbles
        case .q5_1: return 24   // f16 d, f16 m, 4 B high bits, 16 B nibbles
        case .q8_0: return 34   // f16 d, 32 × i8
        case .q8_1: return 36   // f16 d, f16 s, 32 × i8
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .q8_K: return 292
        }
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        }
    }
}

extension GGUFValue {
    /// The spec's name of the value's type, for error messages.
    var typeName: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .float32: return "float32"
        case .bool: return "bool"
        case .string: return "string"
        case .array(let a): return "array[\(a.count)]"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float64: return "float64"
        }
    }
}

/// Bounds-checked little-endian cursor over the mapped header.
struct GGUFByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    var remaining: Int { bytes.count - offset }

    func error(at offset: Int?, _ message: String) -> GGUFError {
        GGUFError(path: path, offset: offset, message: message)
    }

    /// Reserves `n` bytes for `what` and returns their start.
    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawPointer {
        guard n >= 0, n <= remaining, let base = bytes.baseAddress else {
            throw error(at: offset, "file truncated: reading \(what()) needs \(n) bytes, only \(remaining) remain (file size \(bytes.count))")
        }
        defer { offset += n }
        return base + offset
    }

    mutating func u8(_ what: @autoclosure () -> String) throws -> UInt8 {
        try take(1, what()).load(as: UInt8.self)
    }

    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 {
        UInt16(littleEndian: try take(2, what()).loadUnaligned(as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        UInt32(littleEndian: try take(4, what()).loadUnaligned(as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 {
        UInt64(littleEndian: try take(8, what()).loadUnaligned(as: UInt64.self))
    }

    /// A u64 count of items that each need at least `minimumBytesEach` bytes of what remains.
    mutating func count(_ what: @autoclosure () -> String, minimumBytesEach: Int) throws -> Int {
        let start = offset
        let raw = try u64(what())
        guard raw <= UInt64(remaining / minimumBytesEach) else {
            throw error(at: start, "\(what()) is \(raw), but the \(remaining) remaining bytes hold at most \(remaining / minimumBytesEach)")
        }
        return Int(raw)
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let start = offset
        let length = try count("length of \(what())", minimumBytesEach: 1)
        let raw = try take(length, what())
        let utf8 = UnsafeBufferPointer(start: raw.assumingMemoryBound(to: UInt8.self), count: length)
        guard let s = String(validating: utf8, as: UTF8.self) else {
            throw error(at: start, "\(what()) is not valid UTF-8")
        }
        return s
    }

    /// Smallest encoded size of one value of a type, used to bound array counts before allocating.
    static func minimumBytes(ofType type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 10, 11, 12: return 8
        case 8: return 8       // u64 length
        case 9: return 12      // u32 type + u64 count
        default: return nil
        }
    }

    mutating func value(type: UInt32, typeOffset: Int, key: String, depth: Int) throws -> GGUFValue {
        func what() -> String { "value of metadata key '\(key)'" }
        switch type {
        case 0: return .uint8(try u8(what()))
        case 1: return .int8(Int8(bitPattern: try u8(what())))
        case 2: return .uint16(try u16(what()))
        case 3: return .int16(Int16(bitPattern: try u16(what())))
        case 4: return .uint32(try u32(what()))
        case 5: return .int32(Int32(bitPattern: try u32(what())))
        case 6: return .float32(Float(bitPattern: try u32(what())))
        case 7:
            let start = offset
            let b = try u8(what())
            guard b <= 1 else { throw error(at: start, "\(what()) is a bool with byte \(b), expected 0 or 1") }
            return .bool(b == 1)
        case 8: return .string(try string(what()))
        case 9:
            guard depth < GGUFFile.maxArrayNesting else {
                throw error(at: typeOffset, "\(what()) nests arrays deeper than \(GGUFFile.maxArrayNesting)")
            }
            let elementTypeOffset = offset
            let elementType = try u32("element type of \(what())")
            guard let minimum = Self.minimumBytes(ofType: elementType) else {
                throw error(at: elementTypeOffset, "\(what()) is an array of unknown type \(elementType), expected 0...12")
            }
            let n = try count("element count of \(what())", minimumBytesEach: minimum)
            var elements: [GGUFValue] = []
            elements.reserveCapacity(n)
            for _ in 0..<n {
                elements.append(try value(type: elementType, typeOffset: elementTypeOffset, key: key, depth: depth + 1))
            }
            return .array(elements)
        case 10: return .uint64(try u64(what()))
        case 11: return .int64(Int64(bitPattern: try u64(what())))
        case 12: return .float64(Double(bitPattern: try u64(what())))
        default:
            throw error(at: typeOffset, "metadata key '\(key)' has unknown value type \(type), expected 0...12")
        }
    }
}
