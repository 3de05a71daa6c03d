import Foundation

/// Philox4x32-10, a counter-based random generator (Salmon et al., "Parallel random numbers: as easy
/// as 1, 2, 3", SC 2011) — the generator PyTorch and JAX use on accelerators.
///
/// Why counter-based: the whole state is `(key, counter)`, two plain integers, so a checkpoint saves it
/// exactly and a resumed run draws exactly the same numbers; and `split(_:)` derives independent
/// streams (data shuffle, init, sampling) from one recipe seed without them interfering.
public struct Philox: RandomNumberGenerator, Codable, Equatable, Sendable {
    /// The stream's identity: derived from the seed (and split path). Never changes while drawing.
    public private(set) var key: UInt64
    /// How many 128-bit blocks have been drawn so far.
    public private(set) var counter: UInt64
    /// Unconsumed 32-bit words of the current block (0...4 of them), kept so that a checkpoint taken
    /// between two draws resumes mid-block.
    private var buffer: [UInt32] = []

    public init(seed: UInt64) {
        key = seed
        counter = 0
    }

    /// An independent generator for a named purpose, e.g. `rng.split(1)` for the shuffle.
    /// The child's key mixes the parent key with `stream`; the parent is unchanged.
    public func split(_ stream: UInt64) -> Philox {
        var mixer = Philox(seed: key ^ 0x9E37_79B9_7F4A_7C15)
        mixer.counter = stream
        let (a, b, _, _) = mixer.block(counter: stream)
        return Philox(seed: UInt64(a) << 32 | UInt64(b))
    }

    public mutating func next() -> UInt64 {
        UInt64(nextUInt32()) << 32 | UInt64(nextUInt32())
    }

    public mutating func nextUInt32() -> UInt32 {
        if buffer.isEmpty {
            let (a, b, c, d) = block(counter: counter)
            counter &+= 1
            buffer = [d, c, b, a]
        }
        return buffer.removeLast()
    }

    /// Uniform in [0, 1) with 24 random bits, the resolution of Float32.
    public mutating func nextFloat() -> Float {
        Float(nextUInt32() >> 8) * (1.0 / 16_777_216.0)
    }

    /// Standard normal by Box–Muller (two uniforms per draw; the second value is discarded so that the
    /// number of words consumed per call is constant, which keeps streams easy to reason about).
    public mutating func nextNormal() -> Float {
        let u1 = Double(nextUInt32() >> 8) * (1.0 / 16_777_216.0) + 0.5 / 16_777_216.0
        let u2 = Double(nextUInt32() >> 8) * (1.0 / 16_777_216.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// Ten rounds of the Philox-4x32 bijection on (counter, key).
    func block(counter: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        var c0 = UInt32(truncatingIfNeeded: counter), c1 = UInt32(truncatingIfNeeded: counter >> 32)
        var c2: UInt32 = 0, c3: UInt32 = 0
        var k0 = UInt32(truncatingIfNeeded: key), k1 = UInt32(truncatingIfNeeded: key >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) * UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) * UInt64(c2)
            (c0, c1, c2, c3) = (UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0, UInt32(truncatingIfNeeded: p1),
                                UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1, UInt32(truncatingIfNeeded: p0))
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }
}

@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
