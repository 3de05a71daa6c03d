// Linear layers without bias, in the PyTorch/HF weight layout (weight [OC, C], out = inp · weightᵀ),
// and the parallel sgemm they are built on.
//
// Threading: OpenBLAS runs single-threaded (see `BLASThreads`) and the ThreadPool cuts the output
// into contiguous row blocks, one sgemm per block. No block reduces over another's rows, so the
// result does not depend on timing, and OpenBLAS's spinning threads never compete with the pool's.

/// `C = alpha · op(A) · op(B) + beta · C` on all cores: by default with the rows of C split over `ThreadPool.shared`
/// (over columns when C has fewer rows than columns and too few for two 32-row blocks per thread);
/// with `BLASThreads.sgemmSplit = .openBLAS`, as one call on OpenBLAS's own threads. Call it only from
/// outside a ThreadPool body (inside one, use a single-threaded `sgemm` per block).
/// op(A) [M,K], op(B) [K,N], C [M,N], row-major with row strides lda/ldb/ldc.
public func parallelSgemm(transA: Bool, transB: Bool, M: Int, N: Int, K: Int, alpha: Float = 1,
                          _ A: UnsafePointer<Float>, lda: Int, _ B: UnsafePointer<Float>, ldb: Int,
                          beta: Float, _ C: UnsafeMutablePointer<Float>, ldc: Int) {
    let pool = ThreadPool.shared
    if BLASThreads.sgemmSplit == .openBLAS && pool.threadCount > 1 {
        BLASThreads.count = pool.threadCount
        sgemm(transA: transA, transB: transB, M: M, N: N, K: K, alpha: alpha, A, lda: lda, B, ldb: ldb,
              beta: beta, C, ldc: ldc)
        BLASThreads.count = 1
        return
    }
    // Two blocks per thread balance the load when another process slows one core, at the price of
    // packing op(B) once more per block; blocks keep ≥ 32 rows so OpenBLAS's micro-kernels stay efficient.
    let minRows = 32, wanted = 2 * pool.threadCount
    if M >= N || M / minRows >= wanted {
        pool.parallelBlocks(M, blocks: Swift.min(wanted, M / minRows)) { _, _, rows in
            // Row i of op(A) starts at A + i·lda without transposition, at A + i with it.
            let aRows = transA ? A + rows.lowerBound : A + rows.lowerBound * lda
            sgemm(transA: transA, transB: transB, M: rows.count, N: N, K: K, alpha: alpha, aRows, lda: lda,
                  B, ldb: ldb, beta: beta, C + rows.lowerBound * ldc, ldc: ldc)
        }
    } else {
        pool.parallelBlocks(N, blocks: Swift.min(wanted, N / minRows)) { _, _, cols in
            let bCols = transB ? B + cols.lowerBound * ldb : B + cols.lowerBound
            sgemm(transA: transA, transB: transB, M: M, N: cols.count, K: K, alpha: alpha, A, lda: lda,
                  bCols, ldb: ldb, beta: beta, C + cols.lowerBound, ldc: ldc)
        }
    }
}

/// out [N,OC] = inp [N,C] · weight [OC,C]ᵀ
public func matmulForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
                          _ weight: UnsafePointer<Float>, N: Int, C: Int, OC: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("matmul.forward", token) }
    parallelSgemm(transA: false, transB: true, M: N, N: OC, K: C, inp, lda: C, weight, ldb: C,
                  beta: 0, out, ldc: OC)
}

/// dinp [N,C] += dout [N,OC] · weight [OC,C];  dweight [OC,C] += dout [N,OC]ᵀ · inp [N,C].
/// Either gradient may be nil (frozen weight, or an input that needs no gradient).
public func matmulBackward(_ dinp: UnsafeMutablePointer<Float>?, _ dweight: UnsafeMutablePointer<Float>?,
                           _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>,
                           _ weight: UnsafePointer<Float>, N: Int, C: Int, OC: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("matmul.backward", token) }
    if let dinp {
        parallelSgemm(transA: false, transB: false, M: N, N: C, K: OC, dout, lda: OC, weight, ldb: C,
                      beta: 1, dinp, ldc: C)
    }
    if let dweight {
        parallelSgemm(transA: true, transB: false, M: OC, N: C, K: N, dout, lda: OC, inp, ldb: C,
                      beta: 1, dweight, ldc: C)
    }
}
