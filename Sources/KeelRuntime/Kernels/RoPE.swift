import Foundation

/// Rotary position embedding tables (Su et al. 2021, "RoFormer") in the HF LLaMA "rotate_half"
/// convention: dimension i is paired with i + D/2 (not with i+1), both rotated by pos · θ^(−2i/D).
/// The angles are computed in Float exactly as HF does (inv_freq in fp32, pos·inv_freq in fp32) so
/// that results match the PyTorch reference; only cos/sin of that Float angle are taken in Double.
public struct RoPETable: Sendable {
    public let headDim: Int
    public let maxPositions: Int
    /// [maxPositions, headDim/2]
    public let cos: [Float]
    public let sin: [Float]

    public init(headDim: Int, maxPositions: Int, theta: Float) {
        self.init(headDim: headDim, maxPositions: maxPositions,
                  inverseFrequencies: RoPETable.inverseFrequencies(headDim: headDim, theta: theta))
    }

    /// θ^(−2i/D) for i in 0..<D/2, in Float as HF computes `inv_freq`.
    public static func inverseFrequencies(headDim: Int, theta: Float) -> [Float] {
        (0..<headDim / 2).map { 1 / Foundation.pow(theta, Float(2 * $0) / Float(headDim)) }
    }

    /// A table from explicit frequencies [headDim/2] (RoPE scaling remaps them: Llama 3, linear).
    public init(headDim: Int, maxPositions: Int, inverseFrequencies invFreq: [Float]) {
        precondition(headDim % 2 == 0, "RoPETable: head dimension \(headDim) must be even")
        precondition(invFreq.count == headDim / 2, "RoPETable: \(invFreq.count) frequencies for head dimension \(headDim)")
        self.headDim = headDim
        self.maxPositions = maxPositions
        let half = headDim / 2
        var cosTable = [Float](repeating: 0, count: maxPositions * half)
        var sinTable = cosTable
        for pos in 0..<maxPositions {
            for i in 0..<half {
                let angle = Double(Float(pos) * invFreq[i])
                cosTable[pos * half + i] = Float(Foundation.cos(angle))
                sinTable[pos * half + i] = Float(Foundation.sin(angle))
            }
        }
        cos = cosTable
        sin = sinTable
    }
}

/// In place: x [B,T,NH,D] ← rotate(x, position = positions[b,t] if given, else positionOffset + t).
/// Explicit positions [B,T] serve packed sequences whose positions restart (prompt-shared pairs).
/// Forward rotates by +angle; backward (same function with `inverse: true`) rotates the gradient by
/// −angle, because the rotation matrix is orthogonal (its transpose is its inverse).
public func ropeForward(_ x: UnsafeMutablePointer<Float>, _ table: RoPETable,
                        B: Int, T: Int, NH: Int, D: Int, positionOffset: Int = 0,
                        positions: UnsafePointer<Int32>? = nil) {
    let token = Profiler.begin()
    defer { Profiler.end("rope.forward", token) }
    ropeRotate(x, table, B: B, T: T, NH: NH, D: D, positionOffset: positionOffset, positions: positions, inverse: false)
}

/// In place: dx [B,T,NH,D] ← ∂L/∂x given ∂L/∂(rope(x)).
public func ropeBackward(_ dx: UnsafeMutablePointer<Float>, _ table: RoPETable,
                         B: Int, T: Int, NH: Int, D: Int, positionOffset: Int = 0,
                         positions: UnsafePointer<Int32>? = nil) {
    let token = Profiler.begin()
    defer { Profiler.end("rope.backward", token) }
    ropeRotate(dx, table, B: B, T: T, NH: NH, D: D, positionOffset: positionOffset, positions: positions, inverse: true)
}

private func ropeRotate(_ x: UnsafeMutablePointer<Float>, _ table: RoPETable, B: Int, T: Int, NH: Int, D: Int,
                        positionOffset: Int, positions: UnsafePointer<Int32>?, inverse: Bool) {
    precondition(D == table.headDim, "rope: head dimension \(D) differs from the table's \(table.headDim)")
    if let positions {
        for bt in 0..<B * T {
            precondition(positions[bt] >= 0 && Int(positions[bt]) < table.maxPositions,
                         "rope: position \(positions[bt]) at row \(bt) is outside the table's \(table.maxPositions) positions")
        }
    } else {
        precondition(positionOffset + T <= table.maxPositions,
                     "rope: position \(positionOffset + T - 1) is beyond the table's \(table.maxPositions) positions")
    }
    let half = D / 2
    let sign: Float = inverse ? -1 : 1
    table.cos.withUnsafeBufferPointer { cosBuffer in
        table.sin.withUnsafeBufferPointer { sinBuffer in
            let cosBase = cosBuffer.baseAddress!, sinBase = sinBuffer.baseAddress!
            ThreadPool.shared.parallelFor(B * T, grain: 8) { rows in
                for bt in rows {
                    let pos = positions.map { Int($0[bt]) } ?? positionOffset + bt % T
                    let c = cosBase + pos * half, s = sinBase + pos * half
                    for h in 0..<NH {
                        let v = x + (bt * NH + h) * D
                        let first = v, second = v + half
                        for i in 0..<half {
                            let a = first[i], b = second[i], si = sign * s[i]
                            first[i] = a * c[i] - b * si
                            second[i] = b * c[i] + a * si
                        }
                    }
                }
            }
        }
    }
}
