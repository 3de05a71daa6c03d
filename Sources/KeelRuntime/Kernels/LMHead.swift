import Foundation

// The language-model head fused with log-softmax and the target pick:
//     logp[n] = (h[n] · Wᵀ)[target[n]] − logsumexp_v (h[n] · Wᵀ)[v]
// The [N, V] logits (1024 × 49152 floats = 192 MiB for a 4×256 batch) are never stored: the vocabulary
// is cut into tiles of `LMHeadTiling.vocabTile` rows of W and the tokens into chunks of `rowChunk`; one
// sgemm fills a rowChunk × vocabTile block of logits (1 MiB, L2 resident) and an online
// log-sum-exp (running max and rescaled sum, as in Milakov & Gimelshein 2018) folds it in.
// The vocabulary tiles are grouped into a fixed number of contiguous blocks (4 per thread, handed to
// whichever thread is free); each block's partial (max, sum) and dh are merged in block order, so the
// results are deterministic whatever the scheduling.
// Rows whose target is `ignoreIndex` are compacted away first and cost nothing.
// With `softcap` (Gemma 2's final-logit soft-capping) each logit l becomes cap · tanh(l / cap) before
// the softmax, and its gradient is multiplied by 1 − (capped / cap)² (Softcap.swift).

/// Target value that marks a row to skip (prompt tokens, padding), as in PyTorch's `ignore_index`.
public let ignoreIndex: Int32 = -1

/// Block sizes of the fused LM head. A logits block is rowChunk × vocabTile floats.
public struct LMHeadTiling: Sendable {
    public var rowChunk: Int
    public var vocabTile: Int
    public init(rowChunk: Int = 1024, vocabTile: Int = 256) {
        self.rowChunk = rowChunk
        self.vocabTile = vocabTile
    }
}

/// logp [N] (0 for ignored rows), lse [N] (saved for backward; 0 for ignored rows)
/// ← h [N,C], W [V,C], targets [N] in 0..<V or `ignoreIndex`
public func lmHeadLogProbForward(_ logp: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>,
                                 _ h: UnsafePointer<Float>, _ W: UnsafePointer<Float>,
                                 _ targets: UnsafePointer<Int32>, N: Int, C: Int, V: Int,
                                 softcap: Float? = nil, tiling: LMHeadTiling = LMHeadTiling()) {
    logp.initialize(repeating: 0, count: N)
    lse.initialize(repeating: 0, count: N)
    let rows = LMHeadRows(targets, N: N, V: V)
    withScratch(2 * rows.count) { compact in
        lmHeadLogProbForward(compact, compact + rows.count, h, W, rows: rows, C: C, V: V, softcap: softcap, tiling: tiling)
        for (i, n) in rows.indices.enumerated() { logp[n] = compact[i]; lse[n] = compact[rows.count + i] }
    }
}

/// logp [M], lse [M] (saved for backward) ← h [N,C], W [V,C], rows: M (row of h, target) pairs.
/// A row may be listed more than once (prompt-shared pairs: the last prompt position predicts the
/// first token of both completions).
public func lmHeadLogProbForward(_ logp: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>,
                                 _ h: UnsafePointer<Float>, _ W: UnsafePointer<Float>, rows: LMHeadRows,
                                 C: Int, V: Int, softcap: Float? = nil, tiling: LMHeadTiling = LMHeadTiling()) {
    let token = Profiler.begin()
    defer { Profiler.end("lmhead.forward", token) }
    // The third per-row value is the target's logit, which exactly one block sees.
    sweepVocabularyOnline(rows: rows, h: h, W: W, C: C, V: V, softcap: softcap, tiling: tiling) { extra, i, row, v0, width in
        let target = Int(rows.targets[i])
        if target >= v0 && target < v0 + width { extra[i] = row[target - v0] }
    } merge: { i, rowLSE, extra, _ in
        lse[i] = rowLSE
        logp[i] = extra - rowLSE
    }
}

/// The vocabulary sweep of the fused LM-head kernels (log-prob, softmax expectation): the rows of h
/// with a real target are gathered; the vocabulary is cut into tiles, grouped into a fixed number of
/// contiguous blocks handed to whichever thread is free; per block, tile and chunk of rows one sgemm
/// fills a rowChunk × vocabTile logits block, and an online log-sum-exp folds each row into the block's
/// running max m and rescaled sum s = Σ e^(l−m). Each kernel keeps one more value per row (`extra`),
/// updated by `fold`: from the raw logits, or — with `rescalesExtra` — from e^(l − m) after the value
/// was rescaled to the new max like s. Blocks are merged in block order, so results are deterministic;
/// `merge` gets each row's log-sum-exp, its combined extra value (rescaled to the row max when
/// `rescalesExtra`, summed as is otherwise) and its total Σ e^(l − max).
@inline(__always)
func sweepVocabularyOnline(rows: LMHeadRows, h: UnsafePointer<Float>, W: UnsafePointer<Float>, C: Int, V: Int,
                           softcap: Float?, tiling: LMHeadTiling, rescalesExtra: Bool = false,
                           fold: (_ extra: UnsafeMutablePointer<Float>, _ i: Int, _ row: UnsafeMutablePointer<Float>,
                                  _ v0: Int, _ width: Int) -> Void,
                           merge: (_ i: Int, _ lse: Float, _ extra: Float, _ total: Float) -> Void) {
    let M = rows.count
    if M == 0 { return }
    let pool = ThreadPool.shared
    let tiles = (V + tiling.vocabTile - 1) / tiling.vocabTile
    let blocks = Swift.min(tiles, 4 * pool.threadCount)
    let blockSize = tiling.rowChunk * tiling.vocabTile
    withScratch(M * C) { hc in
        rows.gather(hc, from: h, C: C)
        // Per block: running max [M], running sum [M], the kernel's extra value [M]. Per worker: a logits block.
        withScratch(blocks * 3 * M + pool.threadCount * blockSize) { scratch in
            let logitsScratch = scratch + blocks * 3 * M
            pool.parallelBlocks(tiles, blocks: blocks) { block, worker, tileRange in
                let runMax = scratch + block * 3 * M, runSum = runMax + M, extra = runSum + M
                let logits = logitsScratch + worker * blockSize
                for i in 0..<M { runMax[i] = -.greatestFiniteMagnitude; runSum[i] = 0; extra[i] = 0 }
                for tile in tileRange {
                    let v0 = tile * tiling.vocabTile, width = min(tiling.vocabTile, V - v0)
                    for r0 in stride(from: 0, to: M, by: tiling.rowChunk) {
                        let height = min(tiling.rowChunk, M - r0)
                        sgemm(transA: false, transB: true, M: height, N: width, K: C, alpha: 1,
                              hc + r0 * C, lda: C, W + v0 * C, ldb: C, beta: 0, logits, ldc: width)
                        if let softcap { softcapForward(logits, count: height * width, cap: softcap) }
                        for r in 0..<height {
                            let i = r0 + r, row = logits + r * width
                            if !rescalesExtra { fold(extra, i, row, v0, width) }
                            let newMax = max(runMax[i], maxOf(row, width))
                            expShifted(row, width, shift: newMax)
                            let rescale = fastExp(runMax[i] - newMax)
                            runSum[i] = runSum[i] * rescale + sumOf(row, width)
                            if rescalesExtra {
                                extra[i] *= rescale
                                fold(extra, i, row, v0, width)
                            }
                            runMax[i] = newMax
                        }
                    }
                }
            }
            for i in 0..<M {
                var rowMax = -Float.greatestFiniteMagnitude
                for block in 0..<blocks { rowMax = max(rowMax, scratch[block * 3 * M + i]) }
                var total: Float = 0, extra: Float = 0
                for block in 0..<blocks {
                    let base = scratch + block * 3 * M
                    let rescale = fastExp(base[i] - rowMax)
                    total += base[M + i] * rescale
                    extra += rescalesExtra ? base[2 * M + i] * rescale : base[2 * M + i]
                }
                merge(i, rowMax + Foundation.log(total), extra, total)
            }
        }
    }
}

/// dh [N,C] += ∂L/∂h,  dW [V,C] += ∂L/∂W  (either may be nil)  ← dlogp [N] and the forward's h, W,
/// targets, lse (all [N] like the forward's outputs).
public func lmHeadLogProbBackward(_ dh: UnsafeMutablePointer<Float>?, _ dW: UnsafeMutablePointer<Float>?,
                                  _ dlogp: UnsafePointer<Float>, _ h: UnsafePointer<Float>,
                                  _ W: UnsafePointer<Float>, _ targets: UnsafePointer<Int32>,
                                  _ lse: UnsafePointer<Float>, N: Int, C: Int, V: Int,
                                  softcap: Float? = nil, tiling: LMHeadTiling = LMHeadTiling()) {
    let rows = LMHeadRows(targets, N: N, V: V)
    withScratch(2 * rows.count) { compact in
        for (i, n) in rows.indices.enumerated() { compact[i] = dlogp[n]; compact[rows.count + i] = lse[n] }
        lmHeadLogProbBackward(dh, dW, compact, h, W, rows: rows, lse: compact + rows.count, C: C, V: V,
                              softcap: softcap, tiling: tiling)
    }
}

/// dh [N,C] += ∂L/∂h,  dW [V,C] += ∂L/∂W  (either may be nil)  ← dlogp [M] and the forward's h, W,
/// rows, lse [M].  With p = softmax(h·Wᵀ):  ∂L/∂logits = dlogp · (onehot(target) − p), recomputed block
/// by block; dh is summed per thread over its vocabulary range and the partial sums added in order
/// (a row listed twice receives both gradients).
public func lmHeadLogProbBackward(_ dh: UnsafeMutablePointer<Float>?, _ dW: UnsafeMutablePointer<Float>?,
                                  _ dlogp: UnsafePointer<Float>, _ h: UnsafePointer<Float>, _ W: UnsafePointer<Float>,
                                  rows: LMHeadRows, lse: UnsafePointer<Float>, C: Int, V: Int,
                                  softcap: Float? = nil, tiling: LMHeadTiling = LMHeadTiling()) {
    let token = Profiler.begin()
    defer { Profiler.end("lmhead.backward", token) }
    let M = rows.count
    if M == 0 || (dh == nil && dW == nil) { return }
    let pool = ThreadPool.shared
    let tiles = (V + tiling.vocabTile - 1) / tiling.vocabTile
    let blocks = Swift.min(tiles, 4 * pool.threadCount)
    let partialSize = dh == nil ? 0 : M * C
    let blockSize = tiling.rowChunk * tiling.vocabTile
    withScratch(M * C) { hc in
        rows.gather(hc, from: h, C: C)
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
                            let rowLSE = lse[i], scale = -dlogp[i]
                            if let softcap {
                                // ∂L/∂l = (scale · p + dlogp·[target]) · (1 − (z/cap)²), z the capped logit.
                                let target = Int(rows.targets[i]) - v0
                                for j in 0..<width {
                                    let z = softcapped(row[j], cap: softcap)
                                    let dz = scale * fastExp(z - rowLSE) + (j == target ? dlogp[i] : 0)
                                    row[j] = dz * softcapSlope(output: z, cap: softcap)
                                }
                                continue
                            }
                            expShifted(row, width, shift: rowLSE)
                            for j in 0..<width { row[j] *= scale }
                            let target = Int(rows.targets[i])
                            if target >= v0 && target < v0 + width { row[target - v0] += dlogp[i] }
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

/// Full logits for chosen rows, e.g. each sequence's last real position during generation:
/// out [R,V] = h[rows] · Wᵀ  with h [N,C], W [V,C], rows [R] indices into 0..<N (then capped with `softcap`).
public func lmHeadLogits(_ out: UnsafeMutablePointer<Float>, _ h: UnsafePointer<Float>, rows: [Int],
                         _ W: UnsafePointer<Float>, C: Int, V: Int, softcap: Float? = nil) {
    let token = Profiler.begin()
    defer { Profiler.end("lmhead.logits", token) }
    withScratch(rows.count * C) { gathered in
        for (i, n) in rows.enumerated() { (gathered + i * C).update(from: h + n * C, count: C) }
        parallelSgemm(transA: false, transB: true, M: rows.count, N: V, K: C, gathered, lda: C, W, ldb: C,
                      beta: 0, out, ldc: V)
        if let softcap { softcapForward(out, count: rows.count * V, cap: softcap) }
    }
}

/// The rows of h the LM head scores, each with its target: the rows of a batch that have one (in
/// order), or an explicit list in which a row may repeat.
public struct LMHeadRows: Sendable {
    public private(set) var indices: [Int] = []
    public private(set) var targets: [Int32] = []
    public var count: Int { indices.count }

    /// The (row, target) pairs listed; every target must be in 0..<V.
    public init(indices: [Int], targets: [Int32], V: Int) {
        precondition(indices.count == targets.count, "lmHead: \(indices.count) rows but \(targets.count) targets")
        for target in targets {
            precondition(target >= 0 && Int(target) < V, "lmHead: target \(target) is not in 0..<\(V)")
        }
        self.indices = indices
        self.targets = targets
    }

    /// The rows n of 0..<N whose target is not `ignoreIndex`.
    public init(_ allTargets: UnsafePointer<Int32>, N: Int, V: Int) {
        for n in 0..<N where allTargets[n] != ignoreIndex {
            let target = allTargets[n]
            precondition(target >= 0 && Int(target) < V,
                         "lmHead: target \(target) at row \(n) is neither \(ignoreIndex) nor in 0..<\(V)")
            indices.append(n)
            targets.append(target)
        }
    }

    /// out [count, C] ← source rows `indices`.
    func gather(_ out: UnsafeMutablePointer<Float>, from source: UnsafePointer<Float>, C: Int) {
        for (i, n) in indices.enumerated() { (out + i * C).update(from: source + n * C, count: C) }
    }
}
