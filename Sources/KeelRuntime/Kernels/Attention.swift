import Foundation

// Causal self-attention with grouped-query heads (Ainslie et al. 2023, "GQA"): query head h reads
// key/value head h / (NH/NKV). Computed flash-attention style (Dao et al. 2022): rows are processed in
// blocks of `attentionRowBlock`; a block's scores against the keys it may see (columns 0..<blockEnd,
// the causal prefix) live only in a per-thread scratch of rowBlock × T floats, and forward keeps just
// the log-sum-exp of each row, from which backward recomputes the probabilities.
// Every product is one sgemm reading q/k/v in place through row strides (NH·D, NKV·D), so the
// [B,T,NH,D] layout that the projections produce needs no transposition.
// Right padding needs no extra mask: with a causal mask real positions never see later (padded) ones.
// Packed rows need more than the causal mask: `keyMask` [B,T,3] gives each query t its first visible
// key (sequences packed back to back start where their own tokens start) and a span of keys
// [hiddenStart, hiddenEnd) it must not see. Prompt-shared preference pairs (Wang et al. 2024,
// "Accelerating Direct Preference Optimization with Prefix Sharing") pack [prompt | chosen | rejected]
// and hide the chosen span from the rejected tokens, so each completion attends to the prompt and
// itself only. A block's scores start at the smallest first visible key of its rows, so keys of
// earlier packed sequences cost nothing; hidden scores inside that range are computed (the blocks
// stay single sgemms) and masked out of the softmax. A sliding window (Mistral, Gemma's local layers) is
// a key mask too: each query's first visible key is t − window + 1.
// Scores are scaled by `scale` (1/√D unless given: Gemma's query_pre_attn_scalar^−½) and, with
// `softcap`, capped as cap · tanh(s / cap) before the mask and softmax (Gemma 2).

/// Rows of a head processed per sgemm. 64 keeps scores for T=2048 at 512 KiB per thread, and wastes
/// at most 63·64/2 scores per block on the masked upper triangle of the diagonal block.
let attentionRowBlock = 64

/// out [B,T,NH,D], lse [B,NH,T] (log-sum-exp of each row's scaled scores, saved for backward)
/// ← q [B,T,NH,D], k [B,T,NKV,D], v [B,T,NKV,D], optional keyMask [B,T,3] (per query: first visible key,
/// hidden span start, hidden span end; nil = plain causal);  scores s = scale · q·kᵀ (scale nil: 1/√D),
/// then cap · tanh(s / cap) with a `softcap`.
public func attentionForward(_ out: UnsafeMutablePointer<Float>, _ lse: UnsafeMutablePointer<Float>,
                             _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                             B: Int, T: Int, NH: Int, NKV: Int, D: Int, keyMask: UnsafePointer<Int32>? = nil,
                             scale: Float? = nil, softcap: Float? = nil) {
    checkAttentionShapes(B: B, T: T, NH: NH, NKV: NKV, keyMask: keyMask)
    let token = Profiler.begin()
    defer { Profiler.end("attention.forward", token) }
    let scale = scale ?? 1 / Float(D).squareRoot()
    let group = NH / NKV
    let ldq = NH * D, ldkv = NKV * D
    let pool = ThreadPool.shared
    withScratch(pool.threadCount * attentionRowBlock * T) { scratch in
        pool.parallelBlocks(B * NH, blocks: B * NH) { _, worker, units in
            let scores = scratch + worker * attentionRowBlock * T
            for unit in units {
                let b = unit / NH, h = unit % NH, kvh = h / group
                let qh = q + b * T * ldq + h * D, oh = out + b * T * ldq + h * D
                let kh = k + b * T * ldkv + kvh * D, vh = v + b * T * ldkv + kvh * D
                let lseh = lse + (b * NH + h) * T
                for rowStart in stride(from: 0, to: T, by: attentionRowBlock) {
                    let rows = min(attentionRowBlock, T - rowStart)
                    let first = firstKey(keyMask, row: b, T: T, queries: rowStart..<rowStart + rows)
                    let cols = rowStart + rows - first
                    // scores [rows, cols] = scale · q[rowStart..<rowStart+rows] · k[first..<rowStart+rows]ᵀ
                    sgemm(transA: false, transB: true, M: rows, N: cols, K: D, alpha: scale,
                          qh + rowStart * ldq, lda: ldq, kh + first * ldkv, ldb: ldkv, beta: 0, scores, ldc: cols)
                    for r in 0..<rows {
                        let p = scores + r * cols, visible = rowStart + r + 1 - first
                        if let softcap { softcapForward(p, count: visible, cap: softcap) }
                        let masked = maskedKeys(keyMask, row: b, T: T, query: rowStart + r, first: first)
                        for j in masked.before { p[j] = -.greatestFiniteMagnitude }
                        for j in masked.hidden { p[j] = -.greatestFiniteMagnitude }
                        let rowMax = maxOf(p, visible)
                        expShifted(p, visible, shift: rowMax)
                        for j in masked.before { p[j] = 0 }
                        for j in masked.hidden { p[j] = 0 }
                        let total = sumOf(p, visible)
                        let inverse = 1 / total
                        for j in 0..<visible { p[j] *= inverse }
                        for j in visible..<cols { p[j] = 0 }
                        lseh[rowStart + r] = rowMax + Foundation.log(total)
                    }
                    // out[rows] = P [rows, cols] · v[first..<rowStart+rows]
                    sgemm(transA: false, transB: false, M: rows, N: D, K: cols, alpha: 1,
                          scores, lda: cols, vh + first * ldkv, ldb: ldkv, beta: 0, oh + rowStart * ldq, ldc: ldq)
                }
            }
        }
    }
}

/// dq [B,T,NH,D] += ∂L/∂q, dk, dv [B,T,NKV,D] += ∂L/∂k, ∂L/∂v
/// ← dout [B,T,NH,D] and the forward's q, k, v, out, lse (and keyMask [B,T,3], if it had one).
///
/// With P = softmax(S), S = scale·q·kᵀ:  dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − rowsum(dO ∘ O)),
/// dQ = scale·dS·K,  dK = scale·dSᵀ·Q; with a softcap, P = softmax(Z), Z = cap·tanh(S/cap), and
/// dS = dZ ∘ (1 − (Z/cap)²). Work is split over (batch, key/value head) so that the query heads sharing
/// a key/value head accumulate into dk/dv on one thread, in a fixed order. `scale` and `softcap` as in
/// the forward.
public func attentionBackward(_ dq: UnsafeMutablePointer<Float>, _ dk: UnsafeMutablePointer<Float>,
                              _ dv: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>,
                              _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                              _ out: UnsafePointer<Float>, _ lse: UnsafePointer<Float>,
                              B: Int, T: Int, NH: Int, NKV: Int, D: Int, keyMask: UnsafePointer<Int32>? = nil,
                              scale: Float? = nil, softcap: Float? = nil) {
    checkAttentionShapes(B: B, T: T, NH: NH, NKV: NKV, keyMask: keyMask)
    let token = Profiler.begin()
    defer { Profiler.end("attention.backward", token) }
    let scale = scale ?? 1 / Float(D).squareRoot()
    let group = NH / NKV
    let ldq = NH * D, ldkv = NKV * D
    let pool = ThreadPool.shared
    let perWorker = 2 * attentionRowBlock * T + attentionRowBlock
    withScratch(pool.threadCount * perWorker) { scratch in
        pool.parallelBlocks(B * NKV, blocks: B * NKV) { _, worker, units in
            let probs = scratch + worker * perWorker
            let dprobs = probs + attentionRowBlock * T
            let rowDelta = dprobs + attentionRowBlock * T
            for unit in units {
                let b = unit / NKV, kvh = unit % NKV
                let kh = k + b * T * ldkv + kvh * D, vh = v + b * T * ldkv + kvh * D
                let dkh = dk + b * T * ldkv + kvh * D, dvh = dv + b * T * ldkv + kvh * D
                for h in kvh * group..<(kvh + 1) * group {
                    let offset = b * T * ldq + h * D
                    let qh = q + offset, oh = out + offset, doh = dout + offset, dqh = dq + offset
                    let lseh = lse + (b * NH + h) * T
                    for rowStart in stride(from: 0, to: T, by: attentionRowBlock) {
                        let rows = min(attentionRowBlock, T - rowStart)
                        let first = firstKey(keyMask, row: b, T: T, queries: rowStart..<rowStart + rows)
                        let cols = rowStart + rows - first
                        let qBlock = qh + rowStart * ldq, doBlock = doh + rowStart * ldq
                        let kFirst = kh + first * ldkv, vFirst = vh + first * ldkv
                        sgemm(transA: false, transB: true, M: rows, N: cols, K: D, alpha: scale,
                              qBlock, lda: ldq, kFirst, ldb: ldkv, beta: 0, probs, ldc: cols)
                        sgemm(transA: false, transB: true, M: rows, N: cols, K: D, alpha: 1,
                              doBlock, lda: ldq, vFirst, ldb: ldkv, beta: 0, dprobs, ldc: cols)
                        for r in 0..<rows {
                            rowDelta[r] = dotOf(doBlock + r * ldq, oh + (rowStart + r) * ldq, D)
                        }
                        for r in 0..<rows {
                            let p = probs + r * cols, dp = dprobs + r * cols
                            let visible = rowStart + r + 1 - first, rowLSE = lseh[rowStart + r], delta = rowDelta[r]
                            if let softcap {
                                for j in 0..<visible {
                                    let z = softcapped(p[j], cap: softcap)
                                    p[j] = fastExp(z - rowLSE)
                                    dp[j] = p[j] * (dp[j] - delta) * softcapSlope(output: z, cap: softcap)
                                }
                            } else {
                                expShifted(p, visible, shift: rowLSE)
                                for j in 0..<visible { dp[j] = p[j] * (dp[j] - delta) }
                            }
                            let masked = maskedKeys(keyMask, row: b, T: T, query: rowStart + r, first: first)
                            for j in masked.before { p[j] = 0; dp[j] = 0 }
                            for j in masked.hidden { p[j] = 0; dp[j] = 0 }
                            for j in visible..<cols { p[j] = 0; dp[j] = 0 }
                        }
                        // dq[rows] += scale · dS · k[first..<first+cols]
                        sgemm(transA: false, transB: false, M: rows, N: D, K: cols, alpha: scale,
                              dprobs, lda: cols, kFirst, ldb: ldkv, beta: 1, dqh + rowStart * ldq, ldc: ldq)
                        // dk[first..<first+cols] += scale · dSᵀ · q[rows]
                        sgemm(transA: true, transB: false, M: cols, N: D, K: rows, alpha: scale,
                              dprobs, lda: cols, qBlock, ldb: ldq, beta: 1, dkh + first * ldkv, ldc: ldkv)
                        // dv[first..<first+cols] += Pᵀ · dout[rows]
                        sgemm(transA: true, transB: false, M: cols, N: D, K: rows, alpha: 1,
                              probs, lda: cols, doBlock, ldb: ldq, beta: 1, dvh + first * ldkv, ldc: ldkv)
                    }
                }
            }
        }
    }
}

private func checkAttentionShapes(B: Int, T: Int, NH: Int, NKV: Int, keyMask: UnsafePointer<Int32>?) {
    precondition(NKV > 0 && NH % NKV == 0, "attention: \(NH) query heads are not a multiple of \(NKV) key/value heads")
    guard let keyMask else { return }
    for bt in 0..<B * T {
        let t = Int32(bt % T), first = keyMask[3 * bt], hiddenStart = keyMask[3 * bt + 1], hiddenEnd = keyMask[3 * bt + 2]
        precondition(first >= 0 && first <= t && hiddenStart <= hiddenEnd && (hiddenEnd <= t || hiddenStart > t),
                     "attention: query \(t) of row \(bt / Int(T)) has first key \(first) and hidden keys \(hiddenStart)..<\(hiddenEnd); "
                     + "expected 0 ≤ first ≤ \(t) and a span that leaves the query itself visible")
    }
}

/// The smallest first visible key of the given queries of row b (0 without a mask).
@inline(__always)
private func firstKey(_ keyMask: UnsafePointer<Int32>?, row b: Int, T: Int, queries: Range<Int>) -> Int {
    guard let keyMask else { return 0 }
    var first = queries.upperBound
    for t in queries { first = min(first, Int(keyMask[3 * (b * T + t)])) }
    return first
}

/// The columns of query t's score row (which starts at key `first`) that it must not see: the keys
/// before its own first visible key, and its hidden span (clipped to the row).
@inline(__always)
private func maskedKeys(_ keyMask: UnsafePointer<Int32>?, row b: Int, T: Int, query t: Int, first: Int)
    -> (before: Range<Int>, hidden: Range<Int>) {
    guard let keyMask else { return (0..<0, 0..<0) }
    let m = keyMask + 3 * (b * T + t)
    let start = max(Int(m[1]), first), end = min(Int(m[2]), t + 1)
    return (0..<Int(m[0]) - first, start < end ? start - first..<end - first : 0..<0)
}
