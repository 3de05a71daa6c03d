import COpenBLAS

// Shared building blocks of the kernels: a single-threaded sgemm call, a fast vectorisable exp,
// a SIMD max, and 64-byte aligned scratch buffers (sums and dots: `sumOf`/`dotOf` in Ops/Broadcast.swift).

/// One row-major `C = alpha · op(A) · op(B) + beta · C` on the calling thread's OpenBLAS.
/// op(A) is [M,K], op(B) is [K,N], C is [M,N]; `lda/ldb/ldc` are row strides in floats.
@inline(__always)
func sgemm(transA: Bool, transB: Bool, M: Int, N: Int, K: Int, alpha: Float,
           _ A: UnsafePointer<Float>, lda: Int, _ B: UnsafePointer<Float>, ldb: Int,
           beta: Float, _ C: UnsafeMutablePointer<Float>, ldc: Int) {
    if M == 0 || N == 0 { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
}

/// `exp(x)` on 8 lanes to ~2 ulp without a libm call (libm `expf` is an opaque scalar call, ~5 ns per
/// element, which would make softmax over the 49152-word vocabulary cost as much as the LM-head sgemm).
/// Cephes `expf`: x = n·ln2 + r, |r| ≤ ln2/2, exp(r) by a degree-6 minimax polynomial, 2^n put in the
/// exponent bits. n is found by the round-to-nearest "magic number" 1.5·2^23 trick, so no float→int
/// conversion (whose overflow trap would stop LLVM from vectorising) is needed. Inputs are clamped to
/// [-87.3, 88.7]: results stay normal floats (exp(-87.3) ≈ 1.2e-38).
@inline(__always)
func fastExp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let magic = SIMD8<Float>(repeating: 12_582_912)   // 1.5·2^23: adding it rounds to an integer
    let clamped = pointwiseMin(pointwiseMax(x, SIMD8(repeating: -87.3)), SIMD8(repeating: 88.7))
    let shifted = magic.addingProduct(clamped, SIMD8(repeating: 1.442_695_04))   // one rounding: n + magic
    let n = shifted - magic
    let r = clamped.addingProduct(n, SIMD8(repeating: -0.693_359_375)).addingProduct(n, SIMD8(repeating: 2.121_944_4e-4))
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = SIMD8(repeating: 1.398_199_95e-3).addingProduct(p, r)
    p = SIMD8(repeating: 8.333_451_9e-3).addingProduct(p, r)
    p = SIMD8(repeating: 4.166_579_59e-2).addingProduct(p, r)
    p = SIMD8(repeating: 1.666_666_55e-1).addingProduct(p, r)
    p = SIMD8(repeating: 5.000_000_12e-1).addingProduct(p, r)
    let expR = (r + 1).addingProduct(p, r * r)
    // The low mantissa bits of `shifted` hold n (two's complement); n + 127 shifted into the exponent.
    let bits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    let scale = unsafeBitCast((bits &+ 127) &<< 23, to: SIMD8<Float>.self)
    return expR * scale
}

/// Scalar `exp` through the 8-lane version (for loop tails and single values).
@inline(__always)
public func fastExp(_ x: Float) -> Float { fastExp(SIMD8(repeating: x))[0] }

/// Logistic sigmoid 1/(1+e^{-x}) on 8 lanes.
@inline(__always)
func fastSigmoid(_ x: SIMD8<Float>) -> SIMD8<Float> { 1 / (1 + fastExp(-x)) }

/// Lanes `0..<lanes` (≤ 8) of p, zero elsewhere: the vector loops' tails.
@inline(__always)
func load8(_ p: UnsafePointer<Float>, lanes: Int = 8) -> SIMD8<Float> {
    if lanes == 8 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    var v = SIMD8<Float>()
    for i in 0..<lanes { v[i] = p[i] }
    return v
}

/// Writes lanes `0..<lanes` (≤ 8) of v to p.
@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, lanes: Int = 8) {
    if lanes == 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self); return }
    for i in 0..<lanes { p[i] = v[i] }
}

/// Calls `body(i, lanes)` for i = start, start+8, … below end, lanes = min(8, end − i).
@inline(__always)
func forEachVector(_ start: Int, _ end: Int, _ body: (_ i: Int, _ lanes: Int) -> Void) {
    var i = start
    while i < end {
        body(i, Swift.min(8, end - i))
        i += 8
    }
}

/// p[i] = exp(p[i] − shift) for i in 0..<count.
@inline(__always)
func expShifted(_ p: UnsafeMutablePointer<Float>, _ count: Int, shift: Float) {
    let s = SIMD8<Float>(repeating: shift)
    forEachVector(0, count) { i, lanes in store8(fastExp(load8(p + i, lanes: lanes) - s), p + i, lanes: lanes) }
}

/// max p[0..<n] (n ≥ 1), vectorised like `sumOf` (Ops/Broadcast.swift).
@inline(__always)
func maxOf(_ a: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: -.greatestFiniteMagnitude)
    var i = 0
    let ra = UnsafeRawPointer(a)
    while i + 8 <= count {
        acc = pointwiseMax(acc, ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
        i += 8
    }
    var best = acc.max()
    while i < count { best = max(best, a[i]); i += 1 }
    return best
}

/// A 64-byte aligned, uninitialised Float scratch buffer that lives for the duration of `body`.
@inline(__always)
func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
    defer { raw.deallocate() }
    return try body(raw.bindMemory(to: Float.self, capacity: max(count, 1)))
}

/// Same, zero-filled.
@inline(__always)
func withZeroedScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
    try withScratch(count) { buffer in
        buffer.initialize(repeating: 0, count: max(count, 1))
        return try body(buffer)
    }
}
