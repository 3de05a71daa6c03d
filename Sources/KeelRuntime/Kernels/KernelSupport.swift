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
    _ = BLASThreads.configured   // a one-time check: OpenBLAS must be set up before its first use
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
}

/// `exp(x)` in Float to ~2 ulp without a libm call, written so that loops over it auto-vectorise
/// (libm `expf` is an opaque scalar call, ~5 ns per element, which would make softmax over the
/// 49152-word vocabulary cost as much as the LM-head sgemm; Swift's SIMD8 types compile `min`/`max`
/// to calls and split vectors, measured 2.3 ns per element). Cephes `expf`: x = n·ln2 + r,
/// |r| ≤ ln2/2, exp(r) by a degree-6 minimax polynomial, 2^n put in the exponent bits. n is found by the
/// round-to-nearest "magic number" 1.5·2^23 trick, with no float→int conversion (whose overflow trap
/// would stop vectorisation). Inputs are clamped to [-87.3, 88.7]: results stay normal floats
/// (exp(-87.3) ≈ 1.2e-38).
@inline(__always)
public func fastExp(_ x: Float) -> Float {
    let magic: Float = 12_582_912   // 1.5·2^23: adding it rounds to an integer
    let clamped = Swift.min(Swift.max(x, -87.3), 88.7)
    let shifted = magic.addingProduct(clamped, 1.442_695_04)   // one rounding: n + magic
    let n = shifted - magic
    let r = clamped.addingProduct(n, -0.693_359_375).addingProduct(n, 2.121_944_4e-4)
    var p: Float = 1.987_569_15e-4
    p = Float(1.398_199_95e-3).addingProduct(p, r)
    p = Float(8.333_451_9e-3).addingProduct(p, r)
    p = Float(4.166_579_59e-2).addingProduct(p, r)
    p = Float(1.666_666_55e-1).addingProduct(p, r)
    p = Float(5.000_000_12e-1).addingProduct(p, r)
    let expR = (r + 1).addingProduct(p, r * r)
    // The low mantissa bits of `shifted` hold n (two's complement); n + 127 goes into the exponent.
    let exponent = (shifted.bitPattern &- magic.bitPattern &+ 127) &<< 23
    return expR * Float(bitPattern: exponent)
}

/// Logistic sigmoid 1/(1+e^{-x}).
@inline(__always)
public func fastSigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

/// p[i] = exp(p[i] − shift) for i in 0..<count.
@inline(__always)
func expShifted(_ p: UnsafeMutablePointer<Float>, _ count: Int, shift: Float) {
    for i in 0..<count { p[i] = fastExp(p[i] - shift) }
}

/// max a[0..<count] (count ≥ 1), with four independent running maxima so the comparisons pipeline
/// (a max reduction does not auto-vectorise, and Swift's SIMD `pointwiseMax` compiles to a call).
@inline(__always)
func maxOf(_ a: UnsafePointer<Float>, _ count: Int) -> Float {
    var m0 = a[0], m1 = a[0], m2 = a[0], m3 = a[0]
    var i = 0
    while i + 4 <= count {
        m0 = Swift.max(m0, a[i]); m1 = Swift.max(m1, a[i + 1])
        m2 = Swift.max(m2, a[i + 2]); m3 = Swift.max(m3, a[i + 3])
        i += 4
    }
    while i < count { m0 = Swift.max(m0, a[i]); i += 1 }
    return Swift.max(Swift.max(m0, m1), Swift.max(m2, m3))
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
