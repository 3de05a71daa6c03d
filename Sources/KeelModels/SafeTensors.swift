import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The safetensors format (huggingface/safetensors):
///
///     u64 N (little-endian)  |  N bytes of JSON header  |  tensor bytes
///     header = { "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
///                "__metadata__": {"<key>": "<string>"} }
///
/// offsets are relative to the end of the header, little-endian, row-major, no gaps or overlaps.
/// Keel writes Float32 only (what it trains) and reads F32, F16, BF16 and F64.
public enum SafeTensors {
    public static let metadataKey = "__metadata__"
    /// The reference implementation refuses headers above 100 MB; so do we, before allocating.
    public static let maxHeaderBytes = 100_000_000

    /// Writes Float32 tensors in the given order, atomically (a `.partial` file renamed at the end),
    /// so a crash mid-write never leaves a truncated file under `path`.
    public static func write(path: String, tensors: [(name: String, tensor: Tensor)],
                             metadata: [String: String] = [:]) throws {
        let entries = tensors.map { (name: $0.name, shape: $0.tensor.shape,
                                     data: UnsafeBufferPointer(start: UnsafePointer($0.tensor.pointer), count: $0.tensor.count)) }
        // The tensors own the memory the buffers point at; keep them alive until the write is done.
        try withExtendedLifetime(tensors) { try write(path: path, tensors: entries, metadata: metadata) }
    }

    /// As above, from raw buffers (e.g. optimizer moments that are not `Tensor`s). The buffers must stay
    /// valid for the duration of the call.
    public static func write(path: String, tensors: [(name: String, shape: [Int], data: UnsafeBufferPointer<Float>)],
                             metadata: [String: String] = [:]) throws {
        let prefix = try header(tensors.map { (name: $0.name, shape: $0.shape, count: $0.data.count) }, metadata: metadata, source: path)
        let partial = path + ".partial"
        let fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw ModelFormatError(source: partial, message: "cannot create: \(String(cString: strerror(errno)))")
        }
        do {
            defer { close(fd) }
            try prefix.withUnsafeBytes { try writeAll(fd, $0, path: partial) }
            for entry in tensors {
                try writeAll(fd, UnsafeRawBufferPointer(entry.data), path: partial)
            }
            guard fsync(fd) == 0 else {
                throw ModelFormatError(source: partial, message: "fsync failed: \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(partial)
            throw error
        }
        guard rename(partial, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(partial)
            throw ModelFormatError(source: path, message: "cannot rename \(partial): \(reason)")
        }
    }

    /// Everything of a safetensors file before the tensor bytes (the size, then the JSON header padded
    /// to 8 bytes) for Float32 tensors of the given element counts, stored in the given order. A writer
    /// that streams the tensor bytes itself (a checkpoint, hashed on the way) appends them after it.
    /// `source` names the file in errors.
    public static func header(_ tensors: [(name: String, shape: [Int], count: Int)], metadata: [String: String] = [:],
                              source: String) throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for entry in tensors {
            guard header[entry.name] == nil, entry.name != metadataKey else {
                throw ModelFormatError(source: source, message: "duplicate or reserved tensor name '\(entry.name)'")
            }
            guard entry.shape.allSatisfy({ $0 >= 0 }), entry.shape.reduce(1, *) == entry.count else {
                throw ModelFormatError(source: source, message: "tensor '\(entry.name)': shape \(entry.shape) does not hold \(entry.count) values")
            }
            let bytes = entry.count * MemoryLayout<Float>.size
            header[entry.name] = ["dtype": SafeTensorsDType.f32.rawValue, "shape": entry.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        if !metadata.isEmpty { header[metadataKey] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the tensor data starts 8-byte aligned (as the reference writer does).
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var prefix = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix.append(contentsOf: $0) }
        return prefix + json
    }

    private static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        guard var next = buffer.baseAddress else { return }
        var left = buffer.count
        while left > 0 {
            let n = posixWrite(fd, next, min(left, 1 << 30))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw ModelFormatError(source: path, message: "write failed: \(String(cString: strerror(errno)))")
            }
            next += n
            left -= n
        }
    }
}

/// `write(2)`, under a name the `SafeTensors.write` methods do not shadow.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

/// safetensors dtype names with their element sizes.
public enum SafeTensorsDType: String, Sendable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case u16 = "U16", i16 = "I16", f16 = "F16", bf16 = "BF16"
    case u32 = "U32", i32 = "I32", f32 = "F32"
    case u64 = "U64", i64 = "I64", f64 = "F64"

    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .u16, .i16, .f16, .bf16: return 2
        case .u32, .i32, .f32: return 4
        case .u64, .i64, .f64: return 8
        }
    }

    /// The same storage as a ggml type, for the floating types `Dequantize` converts.
    var floatType: GGMLType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .f64: return .f64
        default: return nil
        }
    }
}

/// One entry of a safetensors header.
public struct SafeTensorInfo: Equatable, Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Absolute byte range in the file.
    public let byteRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file, memory-mapped; the header is validated on open.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    /// Entries in data order.
    public let tensors: [SafeTensorInfo]
    public let metadata: [String: String]
    private let file: MappedFile
    private let index: [String: Int]

    public init(path: String) throws {
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(source: path, message: message) }
        do { file = try MappedFile(path: path) } catch let error as MappedFileError { throw fail(error.description) }
        self.path = path
        let bytes = file.bytes
        guard bytes.count >= 8 else { throw fail("file of \(bytes.count) bytes is shorter than the 8-byte header size") }
        let headerSize = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerSize <= UInt64(min(bytes.count - 8, SafeTensors.maxHeaderBytes)) else {
            throw fail("header size \(headerSize) exceeds the file (\(bytes.count) bytes) or the 100 MB limit")
        }
        let dataStart = 8 + Int(headerSize)
        let headerData = Data(bytes[8..<dataStart])
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("header (bytes 8..<\(dataStart)) is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var tensors: [SafeTensorInfo] = []
        for (name, value) in header {
            if name == SafeTensors.metadataKey {
                guard let dict = value as? [String: String] else { throw fail("__metadata__ is not a string → string map") }
                metadata = dict
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeValues = entry["shape"] as? [NSNumber],
                  let offsets = entry["data_offsets"] as? [NSNumber], offsets.count == 2 else {
                throw fail("tensor '\(name)': expected {dtype, shape, data_offsets: [begin, end]}")
            }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else { throw fail("tensor '\(name)': unknown dtype '\(dtypeName)'") }
            let shape = shapeValues.map { $0.intValue }
            let (begin, end) = (offsets[0].intValue, offsets[1].intValue)
            var elements = 1
            var overflow = false
            for dim in shape where !overflow {
                guard dim >= 0 else { throw fail("tensor '\(name)': negative dimension in shape \(shape)") }
                (elements, overflow) = elements.multipliedReportingOverflow(by: dim)
            }
            let dataSize = bytes.count - dataStart
            guard !overflow, begin >= 0, begin <= end, end <= dataSize, end - begin == elements * dtype.byteSize else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)) do not hold shape \(shape) of \(dtypeName) within the \(dataSize) data bytes")
            }
            tensors.append(SafeTensorInfo(name: name, dtype: dtype, shape: shape, byteRange: (dataStart + begin)..<(dataStart + end)))
        }
        tensors.sort { ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound) }
        for (previous, next) in zip(tensors, tensors.dropFirst()) where next.byteRange.lowerBound < previous.byteRange.upperBound {
            throw fail("tensors '\(previous.name)' and '\(next.name)' overlap")
        }
        self.tensors = tensors
        self.metadata = metadata
        self.index = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
    }

    public func tensor(named name: String) -> SafeTensorInfo? { index[name].map { tensors[$0] } }

    /// Raw bytes of a tensor, valid while this file object is alive.
    public func data(of info: SafeTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[info.byteRange])
    }

    /// The named tensor converted to Float32.
    public func load(_ name: String) throws -> Tensor {
        guard let info = tensor(named: name) else {
            throw ModelFormatError(source: path, message: "no tensor named '\(name)'")
        }
        let out = Tensor.zeros(info.shape)
        try load(info, into: out.pointer)
        return out
    }

    /// Writes `info.elementCount` floats at `destination`.
    public func load(_ info: SafeTensorInfo, into destination: UnsafeMutablePointer<Float>) throws {
        guard let type = info.dtype.floatType else {
            throw ModelFormatError(source: path, message: "tensor '\(info.name)' has dtype \(info.dtype.rawValue); expected F32, F16, BF16 or F64")
        }
        guard info.elementCount > 0, let source = data(of: info).baseAddress else { return }
        try Dequantize.parallel(type: type, from: source, count: info.elementCount, to: destination)
    }
}
