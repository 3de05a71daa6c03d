import Foundation

// The expectation of a fixed vector q over the vocabulary under the LM head's next-token distribution:
//     E[n] = Σ_v softmax(h[n] · Wᵀ)_v · q[v]
// A response's score is then the mean of E over its completion positions (e.g. with q the difference
// of the chosen and rejected token-frequency distributions of a preference data set).
// As in LMHead.swift, the [N, V] logits are never stored: one sgemm fills a rowChunk × vocabTile block
// and an online softmax folds it in, keeping per row a running max m, the rescaled sum s = Σ e^(l−m)
// and the rescaled weighted sum t = Σ e^(l−m)·q (both multiplied by e^(m_old − m_new) when m grows),
// so E = t/s and lse = m + log s. Vocabulary blocks are merged in block order: deterministic results.
// Rows are selected exactly as by the LM head: rows whose target is `ignoreIndex` cost nothing, so the
// model passes the same targets array to both kernels and only completion positions are scored.
// `softcap` caps the logits as the LM head does (LMHead.swift).

/// E [N] (0 for ignored rows), lse [N] (saved for backward; 0 for ignored rows)
/// ← h [N,C], W [V,C], q [V], targets [N] in 0..<V or `ignoreIndex` (only ignored-or-not is read)
public func softmaxExpectationForward(_ expectation: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>,
                                      _ h: UnsafePointer<Float>, _ W: UnsafePointer<Float>, _ q: UnsafePointer<Float>,
                                      _ targets: UnsafePointer<Int32>, N: Int, C: Int, V: Int,
                                      softcap: Float? = nil, tiling: LMHeadTiling = LMHeadTiling()) {
    let token = Profiler.begin()
    defer { Profiler.end("softmaxExpectation.forward", token) }
    expectation.initialize(repeating: 0, count: N)
    lse.initialize(repeating: 0, count: N)
    let rows = LMHeadRows(targets, N: N, V: V)
    // The third per-row value is the rescaled q-weighted sum t = Σ e^(l−m)·q, so E = t / s.
    sweepVocabularyOnline(rows: rows, h: h, W: W, C: C, V: V, softcap: softcap, tiling: tiling, rescalesExtra: true) { extra, i, row, v0, width in
        extra[i] += dotOf(row, q + v0, width)
    } merge: { i, rowLSE, weighted, total in
        lse[rows.indices[i]] = rowLSE
        expectation[rows.indices[i]] = weighted / total
    }
}

/// dh [N,C] += ∂L/∂h,  dW [V,C] += ∂L/∂W  (either may be nil)  ← dE [N] and the forward's h, W, q,
/// targets, E, lse.  With p = softmax(h·Wᵀ):  ∂E/∂logits_v = p_v·(q_v − E), so
/// ∂L/∂logits_v = dE · p_v · (q_v − E), recomputed block by block from lse as in `lmHeadLogProbBackward`.
public func softmaxExpectationBackward(_ dh: UnsafeMutablePointer<Float>?, _ dW: UnsafeMutablePointer<Float>?,
                                       _ dExpectation: UnsafePointer<Float>, _ h: UnsafePointer<Float>,
                                       _ W: UnsafePointer<Float>, _ q: UnsafePointer<Float>,
                                       _ targets: UnsafePointer<Int32>, _ expectation: UnsafePointer<Float>,
                                       _ lse: UnsafePointer<Float>, N: Int, C: Int, V: Int,
                                       softcap: Float? = nil, tiling: LMHeadTiling = LMHeadTiling()) {
    let token = Profiler.begin()
    defer { Profiler.end("softmaxExpectation.backward", token) }
    let rows = LMHeadRows(targets, N: N, V: V)
    let M = rows.count
    if M == 0 || (dh == nil && dW == nil) { return }
    let pool = ThreadPool.shared
    let tiles = (V + tiling.vocabTile - 1) / tiling.vocabTile
    let blocks = Swift.min(tiles, 4 * pool.threadCount)
    let partialSize = dh == nil ? 0 : M * C
    let blockSize = tiling.rowChunk * tiling.vocabTile
    withScratch(M * C + 3 * M) { compact in
        let hc = compact, dEc = compact + M * C, Ec = dEc + M, lsec = Ec + M
        rows.gather(hc, from: h, C: C)
        for i in 0..<M {
            let n = rows.indices[i]
            (dEc[i], Ec[i], lsec[i]) = (dExpectation[n], expectation[n], lse[n])
        }
        // Per block: its dh partial sum [M, C]. Per worker: a block of logit gradients.
        withScratch(blocks * partialSize + pool.threadCount * blockSize) { scratch in
            let gradScratch = scratch + blocks * partialSize
            pool.parallelBlocks(tiles, blocks: blocks) { block, worker, tileRange in
                let dhPartial = scratch + block * partialSize, grad = gradScratch + worker * blockSize
                dhPartial.initialize(repeating: 0, count: partialSize)
                for tile in tileRange {
                    let v0 = tile * tiling.vocabTile, width = min(tiling.vocabTile, V - v0)
                    for r0 in stride(from: 0, to: M, by: tiling.rowChunk) {
                        let height = min(tiling.rowChunk, M - r0)
                        sgemm(transA: false, transB: true, M: height, N: width, K: C, alpha: 1,
                              hc + r0 * C, lda: C, W + v0 * C, ldb: C, beta: 0, grad, ldc: width)
                        for r in 0..<height {
                            let i = r0 + r, row = grad + r * width
                            let scale = dEc[i], mean = Ec[i], qTile = q + v0
                            if let softcap {
                                for j in 0..<width {
                                    let z = softcapped(row[j], cap: softcap)
                                    row[j] = scale * fastExp(z - lsec[i]) * (qTile[j] - mean) * softcapSlope(output: z, cap: softcap)
                                }
                                continue
                            }
                            expShifted(row, width, shift: lsec[i])
                            // ∂L/∂logit_v = dE · p_v · (q_v − E); a plain loop, which auto-vectorises.
                            for j in 0..<width { row[j] = scale * row[j] * (qTile[j] - mean) }
                        }
                        if dh != nil {
                            sgemm(transA: false, transB: false, M: height, N: C, K: width, alpha: 1,
                                  grad, lda: width, W + v0 * C, ldb: C, beta: 1, dhPartial + r0 * C, ldc: C)
                        }
                        if let dW {
                            sgemm(transA: true, transB: false, M: width, N: C, K: height, alpha: 1,
                                  grad, lda: width, hc + r0 * C, ldb: C, beta: 1, dW + v0 * C, ldc: C)
                        }
                    }
                }
            }
            if let dh {
                for block in 0..<blocks {
                    let partial = scratch + block * partialSize
                    for i in 0..<M {
                        let src = partial + i * C, dst = dh + rows.indices[i] * C
                        for c in 0..<C { dst[c] += src[c] }
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// E_v∼softmax(h·Wᵀ)[q_v] per row, without materialising the logits (SoftmaxExpectation.swift):
    /// self = hidden [..., C], weight [V, C], vector q [V] (a constant: no gradient flows to it),
    /// targets: one per row; rows whose target is -1 (`ignoreIndex`) get 0 and no gradient  →  [...]
    public func softmaxExpectation(weight: Tensor, vector q: [Float], targets: [Int],
                                   tiling: LMHeadTiling = LMHeadTiling()) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && weight.shape[1] == shape[rank - 1],
                     "softmaxExpectation: hidden \(shape) does not match weight [vocab, channels] = \(weight.shape)")
        let (V, C) = (weight.shape[0], weight.shape[1])
        let N = count / Swift.max(C, 1)
        precondition(q.count == V, "softmaxExpectation: vector of \(q.count) values for a vocabulary of \(V)")
        precondition(targets.count == N, "softmaxExpectation: \(targets.count) targets for \(N) rows of \(shape)")
        for (n, t) in targets.enumerated() {
            precondition(t == Int(ignoreIndex) || (t >= 0 && t < V),
                         "softmaxExpectation: target \(t) at row \(n) is neither \(ignoreIndex) nor in 0..<\(V)")
        }
        let ids = targets.map { Int32($0) }
        let h = self
        let out = Tensor(uninitialized: Array(shape.dropLast())), lse = Tensor(uninitialized: [N])
        ids.withUnsafeBufferPointer {
            softmaxExpectationForward(out.pointer, lse.pointer, h.pointer, weight.pointer, q, $0.baseAddress!,
                                      N: N, C: C, V: V, tiling: tiling)
        }
        let expectation = out.detached()
        return Tensor.record(op: "softmaxExpectation", inputs: [h, weight], output: out) { g in
            let dh = h.requiresGrad ? Tensor(zeros: h.shape) : nil
            let dw = weight.requiresGrad ? Tensor(zeros: weight.shape) : nil
            ids.withUnsafeBufferPointer {
                softmaxExpectationBackward(dh?.pointer, dw?.pointer, g.pointer, h.pointer, weight.pointer, q,
                                           $0.baseAddress!, expectation.pointer, lse.pointer, N: N, C: C, V: V,
                                           tiling: tiling)
            }
            return [dh, dw]
        }
    }
}
