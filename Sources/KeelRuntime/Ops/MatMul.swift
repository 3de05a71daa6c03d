/// Row-major single-precision GEMM of contiguous matrices: C = op(A) · op(B),
/// op(A): [m, k] (A stored [k, m] when transposeA), op(B): [k, n] (B stored [n, k] when transposeB),
/// C: [m, n]. Goes through the kernels' `parallelSgemm`, so tensor-level products share the thread
/// pool, the deterministic split and the OpenBLAS kernel selection of the fused kernels.
private func contiguousGemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                            m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) {
    guard m > 0, n > 0 else { return }
    if k == 0 {   // an empty sum; OpenBLAS rejects k = 0
        c.update(repeating: 0, count: m * n)
        return
    }
    parallelSgemm(transA: transposeA, transB: transposeB, M: m, N: n, K: k, a, lda: transposeA ? m : k,
                  b, ldb: transposeB ? k : n, beta: 0, c, ldc: n)
}

extension Tensor {
    /// Matrix product with transpose flags (no transposed copies are made).
    ///
    /// Shapes (op(X) = Xᵀ over the last two axes when its flag is set):
    ///   [M, K] · [K, N] → [M, N]
    ///   [..., M, K] · [K, N] → [..., M, N]          leading axes of `self` folded into M (linear layers;
    ///                                                 not with transposeA)
    ///   [B..., M, K] · [B..., K, N] → [B..., M, N]  batched: identical batch axes, one sgemm per batch
    /// Backward (C = op(A)·op(B), G = dC):
    ///   dA = G·op(B)ᵀ, stored transposed when transposeA:  A: [M,K] → G·op(B)ᵀ,  A: [K,M] → op(B)·Gᵀ
    ///   dB = op(A)ᵀ·G, stored transposed when transposeB:  B: [K,N] → op(A)ᵀ·G,  B: [N,K] → Gᵀ·op(A)
    public func matmul(_ other: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        let a = self, b = other
        let describe = "matmul(transposeA: \(transposeA), transposeB: \(transposeB)): shapes \(a.shape) and \(b.shape)"
        precondition(a.rank >= 2 && b.rank >= 2, "\(describe): both operands need at least 2 axes")
        if b.rank == 2 && a.rank > 2 {
            precondition(!transposeA, "\(describe): transposeA is only supported for rank-2 or batched operands")
            let k = a.shape[a.rank - 1]
            let flat = a.reshaped([a.count / Swift.max(k, 1), k])
            let product = flat.matmul(b, transposeB: transposeB)
            return product.reshaped(Array(a.shape.dropLast()) + [product.shape[1]])
        }
        precondition(a.rank == b.rank && a.shape.dropLast(2) == b.shape.dropLast(2),
                     "\(describe): batch axes differ")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (kb, n) = transposeB ? (bc, br) : (br, bc)
        precondition(k == kb, "\(describe): inner dimensions \(k) and \(kb) differ")
        let batch = a.shape.dropLast(2).reduce(1, *)
        let out = Tensor(uninitialized: Array(a.shape.dropLast(2)) + [m, n])
        for i in 0..<batch {
            contiguousGemm(a.pointer + i * m * k, b.pointer + i * k * n, out.pointer + i * m * n, m: m, n: n, k: k,
                           transposeA: transposeA, transposeB: transposeB)
        }
        // Save each operand only if the other one needs its gradient.
        let (savedA, savedB) = (b.requiresGrad ? a.detached() : nil, a.requiresGrad ? b.detached() : nil)
        return Tensor.record(op: "matmul", inputs: [a, b], output: out) { g in
            let da = savedB.map { b in
                transposeA ? b.matmul(g, transposeA: transposeB, transposeB: true) : g.matmul(b, transposeB: !transposeB)
            }
            let db = savedA.map { a in
                transposeB ? g.matmul(a, transposeA: true, transposeB: transposeA) : a.matmul(g, transposeA: !transposeA)
            }
            return [da, db]
        }
    }
}
