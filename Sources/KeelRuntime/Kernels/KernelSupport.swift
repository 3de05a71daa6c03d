import COpenBLAS

// Shared building blocks of the kernels: a single-threaded sgemm call, a fast vectorisable exp,
// SIMD reductions with a fixed summation order, and 64-byte aligned scratch buffers.

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

/// `exp(x)` in Float to ~2 ulp without a libm call, so that loops over it auto-vectorise
/// (libm `expf` is an opaque call: ~5 ns per element, which would make softmax over the 49152-word
/// vocabulary cost as much as the LM-head sgemm). Cephes `expf`: x = n·ln2 + r, |r| ≤ ln2/2,
/// exp(r) by a degree-6 minimax polynomial, 2^n built in the exponent bits.
/// Inputs are clamped to [-87.3, 88.7] (results stay normal floats; exp(-87.3) ≈ 1.2e-38).
@inline(__always)
public func fastExp(_ x: Float) -> Float {
    let clamped = min(max(x, -87.3), 88.7)
    let n = (clamped * 1.442_695_04).rounded(.toNearestOrEven)
    let r = clamped - n * 0.693_359_375 + n * 2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    let expR = p * r * r + r + 1
    let scale = Float(bitPattern: UInt32(bitPattern: (Int32(n) &+ 127) &<< 23))
    return expR * scale
}

/// Logistic sigmoid 1/(1+e^{-x}) through `fastExp`.
@inline(__always)
public func fastSigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

/// Σ a[i]·b[i] with 16-wide partial sums combined in a fixed order (deterministic, vectorised).
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 16 <= count {
        acc0.addProduct(ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                        rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
        acc1.addProduct(ra.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self),
                        rb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self))
        i += 16
    }
    var total = (acc0 + acc1).sum()
    while i < count { total += a[i] * b[i]; i += 1 }
    return total
}

/// Σ a[i], vectorised like `dot`.
@inline(__always)
func sum(_ a: UnsafePointer<Float>, _ count: Int) -> Float {
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    let ra = UnsafeRawPointer(a)
    while i + 16 <= count {
        acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        acc1 += ra.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
        i += 16
    }
    var total = (acc0 + acc1).sum()
    while i < count { total += a[i]; i += 1 }
    return total
}

/// max a[i] (count ≥ 1).
@inline(__always)
func maximum(_ a: UnsafePointer<Float>, _ count: Int) -> Float {
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
