import Dispatch

/// Conversion of ggml / safetensors storage types to Float32.
///
/// Block layouts (ggml-common.h), all little-endian, blocks of 32 elements:
///
///     Q4_0  { f16 d;          u8 qs[16] }   x[j] = (lo(qs[j]) - 8)·d,  x[j+16] = (hi(qs[j]) - 8)·d
///     Q4_1  { f16 d; f16 m;   u8 qs[16] }   x[j] = lo(qs[j])·d + m,    x[j+16] = hi(qs[j])·d + m
///     Q8_0  { f16 d;          i8 qs[32] }   x[j] = qs[j]·d
///
/// with lo = the low nibble (elements 0..15) and hi = the high nibble (elements 16..31).
/// The loops read the raw mapping with unaligned loads (a Q4_1 block is 20 bytes, so its `d` is only
/// 4-byte aligned) and write straight into the destination buffer: no intermediate arrays.
public enum Dequantize {
    /// Below this many elements a tensor is converted on the calling thread (thread start-up costs more).
    static let parallelThreshold = 1 << 16

    /// Converts `count` elements (a multiple of `type.blockSize`) from `source` to `destination`.
    public static func run(type: GGMLType, from source: UnsafeRawPointer, count: Int,
                           to destination: UnsafeMutablePointer<Float>) throws {
        guard count % type.blockSize == 0 else { throw DequantizeError.partialBlock(type: type, count: count) }
        let blocks = count / type.blockSize
        switch type {
        case .f32: UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
        case .f16: f16(source, count, destination)
        case .bf16: bf16(source, count, destination)
        case .f64: f64(source, count, destination)
        case .q8_0: q8_0(source, blocks, destination)
        case .q4_0: q4_0(source, blocks, destination)
        case .q4_1: q4_1(source, blocks, destination)
        default: throw DequantizeError.unsupported(type: type)
        }
    }

    /// `run`, split into block-aligned chunks converted concurrently.
    public static func parallel(type: GGMLType, from source: UnsafeRawPointer, count: Int,
                                to destination: UnsafeMutablePointer<Float>) throws {
        guard count >= parallelThreshold, count % type.blockSize == 0 else {
            return try run(type: type, from: source, count: count, to: destination)
        }
        // Validate the type once on a single block so the workers cannot fail.
        try run(type: type, from: source, count: type.blockSize, to: destination)
        let blocks = count / type.blockSize
        let chunks = min(blocks, max(1, count / parallelThreshold))
        let blocksPerChunk = (blocks + chunks - 1) / chunks
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let firstBlock = chunk * blocksPerChunk
            let blockCount = min(blocksPerChunk, blocks - firstBlock)
            guard blockCount > 0 else { return }
            try? run(type: type, from: source + firstBlock * type.blockBytes, count: blockCount * type.blockSize,
                     to: destination + firstBlock * type.blockSize)
        }
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ byteOffset: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: byteOffset, as: UInt16.self))))
    }

    static func f16(_ source: UnsafeRawPointer, _ count: Int, _ out: UnsafeMutablePointer<Float>) {
        for i in 0..<count { out[i] = half(source, 2 * i) }
    }

    /// bfloat16 is the upper half of a float32.
    static func bf16(_ source: UnsafeRawPointer, _ count: Int, _ out: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            out[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    }

    static func f64(_ source: UnsafeRawPointer, _ count: Int, _ out: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            out[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        }
    }

    static func q8_0(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 34
            let d = half(block, 0)
            let qs = (block + 2).assumingMemoryBound(to: Int8.self)
            let y = out + b * 32
            for j in 0..<32 { y[j] = Float(qs[j]) * d }
        }
    }

    static func q4_0(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 18
            let d = half(block, 0)
            let qs = (block + 2).assumingMemoryBound(to: UInt8.self)
            let y = out + b * 32
            for j in 0..<16 {
                y[j] = Float(Int(qs[j] & 0x0F) - 8) * d
                y[j + 16] = Float(Int(qs[j] >> 4) - 8) * d
            }
        }
    }

    static func q4_1(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 20
            let d = half(block, 0)
            let m = half(block, 2)
            let qs = (block + 4).assumingMemoryBound(to: UInt8.self)
            let y = out + b * 32
            for j in 0..<16 {
                y[j] = Float(qs[j] & 0x0F) * d + m
                y[j + 16] = Float(qs[j] >> 4) * d + m
            }
        }
    }
}

public enum DequantizeError: Error, CustomStringConvertible {
    case unsupported(type: GGMLType)
    case partialBlock(type: GGMLType, count: Int)

    public var description: String {
        switch self {
        case .unsupported(let type):
            return "cannot convert \(type) to Float32 (supported: F32, F16, BF16, F64, Q8_0, Q4_0, Q4_1)"
        case .partialBlock(let type, let count):
            return "\(count) elements are not a whole number of \(type) blocks of \(type.blockSize)"
        }
    }
}
