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
///
/// K-quants (blocks of 256 = 16 or 8 sub-blocks, each with its own scale; ggml-quants.c's reference
/// `dequantize_row_q*_K`, operation for operation in Float):
///
///     Q2_K  { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }            2-bit q, 4-bit scale and min per 16
///     Q3_K  { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }         3-bit q (high bit in hmask), 6-bit scale per 16
///     Q4_K  { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }            4-bit q, 6-bit scale and min per 32
///     Q5_K  { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] } 5-bit q (high bit in qh), as Q4_K
///     Q6_K  { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }           6-bit q (low 4 in ql, high 2 in qh), i8 scale per 16
///     Q8_K  { f32 d; i8 qs[256]; i16 bsums[16] }                      x[j] = qs[j]·d
///
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
        case .q2_K: q2_K(source, blocks, destination)
        case .q3_K: q3_K(source, blocks, destination)
        case .q4_K: q4_K(source, blocks, destination)
        case .q5_K: q5_K(source, blocks, destination)
        case .q6_K: q6_K(source, blocks, destination)
        case .q8_K: q8_K(source, blocks, destination)
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
            return "cannot convert \(type) to Float32 (supported: F32, F16, BF16, F64, Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)"
        case .partialBlock(let type, let count):
            return "\(count) elements are not a whole number of \(type) blocks of \(type.blockSize)"
        }
    }
}

// MARK: - K-quants

extension Dequantize {
    static func q2_K(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 84
            let scales = block.assumingMemoryBound(to: UInt8.self)
            let d = half(block, 80), dmin = half(block, 82)
            var y = out + b * 256, q = (block + 16).assumingMemoryBound(to: UInt8.self), scale = 0
            for _ in 0..<2 {
                for shift in stride(from: 0, to: 8, by: 2) {
                    for part in 0..<2 {
                        let sc = scales[scale]
                        scale += 1
                        let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                        for l in 0..<16 { y[l] = dl * Float((q[l + 16 * part] >> shift) & 3) - ml }
                        y += 16
                    }
                }
                q += 32
            }
        }
    }

    static func q3_K(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 110
            let hmask = block.assumingMemoryBound(to: UInt8.self)
            let d = half(block, 108)
            // The 16 6-bit scales: low 4 bits in bytes 0..7 (two per byte), high 2 bits in bytes 8..11.
            let packed = (0..<3).map { UInt32(littleEndian: (block + 96).loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
            let (low, high): (UInt32, UInt32) = (0x0F0F_0F0F, 0x0303_0303)
            let aux = [(packed[0] & low) | (((packed[2] >> 0) & high) << 4), (packed[1] & low) | (((packed[2] >> 2) & high) << 4),
                       ((packed[0] >> 4) & low) | (((packed[2] >> 4) & high) << 4), ((packed[1] >> 4) & low) | (((packed[2] >> 6) & high) << 4)]
            let scales = (0..<16).map { Int(Int8(bitPattern: UInt8(truncatingIfNeeded: aux[$0 / 4] >> (8 * UInt32($0 % 4))))) }
            var y = out + b * 256, q = (block + 32).assumingMemoryBound(to: UInt8.self), scale = 0
            var m: UInt8 = 1
            for _ in 0..<2 {
                for shift in stride(from: 0, to: 8, by: 2) {
                    for part in 0..<2 {
                        let dl = d * Float(scales[scale] - 32)
                        scale += 1
                        for l in 0..<16 {
                            let i = l + 16 * part
                            y[l] = dl * Float(Int((q[i] >> shift) & 3) - (hmask[i] & m != 0 ? 0 : 4))
                        }
                        y += 16
                    }
                    m <<= 1
                }
                q += 32
            }
        }
    }

    /// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (ggml's `get_scale_min_k4`).
    @inline(__always)
    static func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (scale: Float, min: Float) {
        if j < 4 { return (Float(q[j] & 63), Float(q[j + 4] & 63)) }
        return (Float((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)), Float((q[j + 4] >> 4) | ((q[j] >> 6) << 4)))
    }

    static func q4_K(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 144
            let d = half(block, 0), dmin = half(block, 2)
            let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
            var y = out + b * 256, q = (block + 16).assumingMemoryBound(to: UInt8.self)
            for j in stride(from: 0, to: 8, by: 2) {
                let (sc1, m1) = scaleMinK4(j, scales), (sc2, m2) = scaleMinK4(j + 1, scales)
                let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
                for l in 0..<32 { y[l] = d1 * Float(q[l] & 0xF) - min1 }
                for l in 0..<32 { y[32 + l] = d2 * Float(q[l] >> 4) - min2 }
                y += 64
                q += 32
            }
        }
    }

    static func q5_K(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 176
            let d = half(block, 0), dmin = half(block, 2)
            let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
            let qh = (block + 16).assumingMemoryBound(to: UInt8.self)
            var y = out + b * 256, ql = (block + 48).assumingMemoryBound(to: UInt8.self)
            var u1: UInt8 = 1, u2: UInt8 = 2
            for j in stride(from: 0, to: 8, by: 2) {
                let (sc1, m1) = scaleMinK4(j, scales), (sc2, m2) = scaleMinK4(j + 1, scales)
                let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
                for l in 0..<32 { y[l] = d1 * Float(Int(ql[l] & 0xF) + (qh[l] & u1 != 0 ? 16 : 0)) - min1 }
                for l in 0..<32 { y[32 + l] = d2 * Float(Int(ql[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)) - min2 }
                y += 64
                ql += 32
                u1 <<= 2
                u2 <<= 2
            }
        }
    }

    static func q6_K(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 210
            let d = half(block, 208)
            var ql = block.assumingMemoryBound(to: UInt8.self), qh = (block + 128).assumingMemoryBound(to: UInt8.self)
            var sc = (block + 192).assumingMemoryBound(to: Int8.self)
            var y = out + b * 256
            for _ in 0..<2 {
                for l in 0..<32 {
                    let s = l / 16
                    let q1 = Int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32
                    let q2 = Int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32
                    let q3 = Int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
                    let q4 = Int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
                    y[l] = d * Float(sc[s]) * Float(q1)
                    y[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                    y[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                    y[l + 96] = d * Float(sc[s + 6]) * Float(q4)
                }
                y += 128
                ql += 64
                qh += 32
                sc += 8
            }
        }
    }

    static func q8_K(_ source: UnsafeRawPointer, _ blocks: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let block = source + b * 292
            let d = Float(bitPattern: UInt32(littleEndian: block.loadUnaligned(as: UInt32.self)))
            let qs = (block + 4).assumingMemoryBound(to: Int8.self)
            let y = out + b * 256
            for j in 0..<256 { y[j] = d * Float(qs[j]) }
        }
    }
}
