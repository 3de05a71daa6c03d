import XCTest
@testable import KeelRuntime

/// Each kernel against an independent, naive Double-precision reference (forward), and each backward
/// against central finite differences of that Double reference for the scalar loss L = Σ R ∘ out with
/// a random R (so dout = R). Float kernels vs Double: tolerances are stated per test.
final class KernelTests: XCTestCase {
    // MARK: - Matmul

    func testMatmulForwardAndBackward() {
        let (N, C, OC) = (70, 13, 37)   // 70 rows split over the pool; shapes not multiples of anything
        var rng = Philox(seed: 1)
        let inp = KernelCheck.normal(N * C, &rng), weight = KernelCheck.normal(OC * C, &rng)
        let R = KernelCheck.normal(N * OC, &rng)
        func reference(_ x: [Double], _ w: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: N * OC)
            for n in 0..<N { for o in 0..<OC { for c in 0..<C { out[n * OC + o] += x[n * C + c] * w[o * C + c] } } }
            return out
        }
        var out = [Float](repeating: 0, count: N * OC)
        matmulForward(&out, inp, weight, N: N, C: C, OC: OC)
        KernelCheck.assertClose(out, reference(inp.doubles, weight.doubles), tolerance: 1e-5, "matmul out")

        var dinp = [Float](repeating: 0, count: N * C), dweight = [Float](repeating: 0, count: OC * C)
        matmulBackward(&dinp, &dweight, R, inp, weight, N: N, C: C, OC: OC)
        KernelCheck.assertClose(dinp, KernelCheck.gradient(of: inp) { reference($0, weight.doubles).dot(R) },
                                tolerance: 1e-4, "matmul dinp")
        KernelCheck.assertClose(dweight, KernelCheck.gradient(of: weight) { reference(inp.doubles, $0).dot(R) },
                                tolerance: 1e-4, "matmul dweight")
    }

    /// Few rows (the pool splits columns), many rows (it splits rows), transposed operands, and the
    /// OpenBLAS-threads mode, all against a Double reference.
    func testParallelSgemmInEverySplit() {
        let saved = BLASThreads.sgemmSplit
        defer { BLASThreads.sgemmSplit = saved }
        for split in [BLASThreads.SgemmSplit.pool, .openBLAS] {
            BLASThreads.sgemmSplit = split
            for (M, N, K, transA, transB) in [(3, 200, 9, false, false), (150, 40, 7, true, false), (97, 5, 11, false, true)] {
                var rng = Philox(seed: 2)
                let A = KernelCheck.normal(M * K, &rng), B = KernelCheck.normal(K * N, &rng)
                var C = [Float](repeating: 1, count: M * N)
                parallelSgemm(transA: transA, transB: transB, M: M, N: N, K: K, alpha: 2, A, lda: transA ? M : K,
                              B, ldb: transB ? K : N, beta: 1, &C, ldc: N)
                var expected = [Double](repeating: 1, count: M * N)
                for m in 0..<M {
                    for n in 0..<N {
                        for k in 0..<K {
                            let a = Double(transA ? A[k * M + m] : A[m * K + k])
                            let b = Double(transB ? B[n * K + k] : B[k * N + n])
                            expected[m * N + n] += 2 * a * b
                        }
                    }
                }
                KernelCheck.assertClose(C, expected, tolerance: 1e-5, "parallelSgemm \(split) \(M)×\(N)×\(K) tA=\(transA) tB=\(transB)")
            }
        }
        XCTAssertEqual(BLASThreads.count, 1, "the OpenBLAS split must restore single-threaded OpenBLAS")
    }

    // MARK: - RMSNorm

    func testRMSNormForwardAndBackward() {
        checkRMSNorm(weightOffset: 0)
    }

    /// Gemma's norms: out = x · rstd · (1 + weight).
    func testRMSNormWithWeightOffset() {
        checkRMSNorm(weightOffset: 1)
    }

    private func checkRMSNorm(weightOffset: Float) {
        let (N, C, eps) = (19, 37, Float(1e-5))
        var rng = Philox(seed: 3)
        let inp = KernelCheck.normal(N * C, &rng), weight = KernelCheck.normal(C, &rng)
        let R = KernelCheck.normal(N * C, &rng)
        func reference(_ x: [Double], _ w: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: N * C)
            for n in 0..<N {
                let ms = (0..<C).map { x[n * C + $0] * x[n * C + $0] }.reduce(0, +) / Double(C)
                let r = 1 / (ms + Double(eps)).squareRoot()
                for c in 0..<C { out[n * C + c] = x[n * C + c] * r * (Double(weightOffset) + w[c]) }
            }
            return out
        }
        var out = [Float](repeating: 0, count: N * C), rstd = [Float](repeating: 0, count: N)
        rmsnormForward(&out, &rstd, inp, weight, N: N, C: C, eps: eps, weightOffset: weightOffset)
        KernelCheck.assertClose(out, reference(inp.doubles, weight.doubles), tolerance: 1e-5, "rmsnorm out")

        var dinp = [Float](repeating: 0, count: N * C), dweight = [Float](repeating: 0, count: C)
        rmsnormBackward(&dinp, &dweight, R, inp, weight, rstd, N: N, C: C, weightOffset: weightOffset)
        KernelCheck.assertClose(dinp, KernelCheck.gradient(of: inp) { reference($0, weight.doubles).dot(R) },
                                tolerance: 1e-4, "rmsnorm dinp")
        KernelCheck.assertClose(dweight, KernelCheck.gradient(of: weight) { reference(inp.doubles, $0).dot(R) },
                                tolerance: 1e-4, "rmsnorm dweight")
    }

    // MARK: - RoPE

    func testRoPEMatchesRotateHalfAndBackwardIsTheInverseRotation() {
        let (B, T, NH, D, offset) = (2, 5, 3, 8, 3)
        let theta: Float = 100_000
        let table = RoPETable(headDim: D, maxPositions: 16, theta: theta)
        var rng = Philox(seed: 4)
        let x = KernelCheck.normal(B * T * NH * D, &rng), R = KernelCheck.normal(B * T * NH * D, &rng)
        func reference(_ v: [Double]) -> [Double] {
            var out = v
            for b in 0..<B { for t in 0..<T { for h in 0..<NH {
                let base = ((b * T + t) * NH + h) * D
                for i in 0..<D / 2 {
                    let angle = Double(offset + t) * Foundation.pow(Double(theta), -Double(2 * i) / Double(D))
                    let (a, c) = (v[base + i], v[base + i + D / 2])
                    out[base + i] = a * Foundation.cos(angle) - c * Foundation.sin(angle)
                    out[base + i + D / 2] = c * Foundation.cos(angle) + a * Foundation.sin(angle)
                }
            } } }
            return out
        }
        var y = x
        ropeForward(&y, table, B: B, T: T, NH: NH, D: D, positionOffset: offset)
        KernelCheck.assertClose(y, reference(x.doubles), tolerance: 2e-5, "rope out")

        var dx = R
        ropeBackward(&dx, table, B: B, T: T, NH: NH, D: D, positionOffset: offset)
        KernelCheck.assertClose(dx, KernelCheck.gradient(of: x) { reference($0).dot(R) }, tolerance: 1e-4, "rope dx")
    }

    // MARK: - Attention

    func testAttentionGQAForwardAndBackward() {
        // NH=6, NKV=2 (groups of 3); T=70 crosses the 64-row block; T=1 is a single position.
        for (B, T, D) in [(1, 70, 4), (1, 1, 8), (3, 5, 8)] {
            checkAttention(B: B, T: T, NH: 6, NKV: 2, D: D, seed: UInt64(T))
        }
    }

    func testAttentionMultiHeadWithoutGrouping() {
        checkAttention(B: 1, T: 9, NH: 2, NKV: 2, D: 4, seed: 11)
    }

    /// Gemma's scoring: another scale, scores soft-capped as cap · tanh(s / cap), and a sliding window
    /// given as a key mask (first visible key t − window + 1); T = 70 crosses a row block.
    func testAttentionWithScaleSoftcapAndSlidingWindow() {
        for (B, T, window) in [(1, 70, 24), (2, 9, 3)] {
            checkAttention(B: B, T: T, NH: 2, NKV: 1, D: 4, seed: 12, scale: 0.4, softcap: 1.5, window: window)
        }
    }

    private func checkAttention(B: Int, T: Int, NH: Int, NKV: Int, D: Int, seed: UInt64,
                                scale: Float? = nil, softcap: Float? = nil, window: Int? = nil) {
        let keyMask: [Int32]? = window.map { window in
            (0..<B * T).flatMap { bt in [Int32(max(0, bt % T - window + 1)), 0, 0] }
        }
        let scoreScale = scale.map(Double.init) ?? 1 / Double(D).squareRoot()
        var rng = Philox(seed: seed)
        let q = KernelCheck.normal(B * T * NH * D, &rng), k = KernelCheck.normal(B * T * NKV * D, &rng)
        let v = KernelCheck.normal(B * T * NKV * D, &rng), R = KernelCheck.normal(B * T * NH * D, &rng)
        func reference(_ q: [Double], _ k: [Double], _ v: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: B * T * NH * D)
            for b in 0..<B {
                for h in 0..<NH {
                    let kvh = h / (NH / NKV)
                    for t in 0..<T {
                        let qRow: Int = ((b * T + t) * NH + h) * D
                        let first = window.map { max(0, t - $0 + 1) } ?? 0
                        var scores = [Double](repeating: -.infinity, count: t + 1)
                        for s in first...t {
                            let kRow: Int = ((b * T + s) * NKV + kvh) * D
                            var score = 0.0
                            for d in 0..<D { score += q[qRow + d] * k[kRow + d] }
                            scores[s] = score * scoreScale
                            if let softcap { scores[s] = Double(softcap) * Foundation.tanh(scores[s] / Double(softcap)) }
                        }
                        let top = scores.max()!
                        let weights = scores.map { Foundation.exp($0 - top) }
                        let total = weights.reduce(0, +)
                        for s in first...t {
                            let vRow: Int = ((b * T + s) * NKV + kvh) * D
                            for d in 0..<D { out[qRow + d] += weights[s] / total * v[vRow + d] }
                        }
                    }
                }
            }
            return out
        }
        let label = "attention B=\(B) T=\(T) NH=\(NH) NKV=\(NKV) softcap=\(softcap.map { "\($0)" } ?? "-") window=\(window ?? 0)"
        var out = [Float](repeating: 0, count: q.count), lse = [Float](repeating: 0, count: B * NH * T)
        keyMask.withOptionalPointer { mask in
            attentionForward(&out, &lse, q, k, v, B: B, T: T, NH: NH, NKV: NKV, D: D, keyMask: mask, scale: scale, softcap: softcap)
        }
        KernelCheck.assertClose(out, reference(q.doubles, k.doubles, v.doubles), tolerance: 2e-5, label)

        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count)
        var dv = [Float](repeating: 0, count: v.count)
        keyMask.withOptionalPointer { mask in
            attentionBackward(&dq, &dk, &dv, R, q, k, v, out, lse, B: B, T: T, NH: NH, NKV: NKV, D: D, keyMask: mask,
                              scale: scale, softcap: softcap)
        }
        KernelCheck.assertClose(dq, KernelCheck.gradient(of: q) { reference($0, k.doubles, v.doubles).dot(R) },
                                tolerance: 2e-4, label + " dq")
        KernelCheck.assertClose(dk, KernelCheck.gradient(of: k) { reference(q.doubles, $0, v.doubles).dot(R) },
                                tolerance: 2e-4, label + " dk")
        KernelCheck.assertClose(dv, KernelCheck.gradient(of: v) { reference(q.doubles, k.doubles, $0).dot(R) },
                                tolerance: 2e-4, label + " dv")
    }

    // MARK: - SwiGLU

    func testSwiGLUForwardAndBackward() {
        checkGatedActivation("swiglu", forward: swigluForward, backward: swigluBackward) { g in g / (1 + Foundation.exp(-g)) }
    }

    /// Gemma's GeGLU with PyTorch's tanh-approximated gelu.
    func testGeGLUForwardAndBackward() {
        checkGatedActivation("geglu", forward: gegluForward, backward: gegluBackward) { g in
            0.5 * g * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (g + 0.044715 * g * g * g)))
        }
    }

    private func checkGatedActivation(
        _ name: String,
        forward: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void,
        backward: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void,
        activation: @escaping (Double) -> Double) {
        let count = 5000   // crosses the pool's 4096-element grain
        var rng = Philox(seed: 5)
        let gate = KernelCheck.normal(count, &rng, scale: 4), up = KernelCheck.normal(count, &rng)
        let R = KernelCheck.normal(count, &rng)
        func reference(_ g: [Double], _ u: [Double]) -> [Double] {
            zip(g, u).map { g, u in activation(g) * u }
        }
        var out = [Float](repeating: 0, count: count)
        forward(&out, gate, up, count)
        KernelCheck.assertClose(out, reference(gate.doubles, up.doubles), tolerance: 1e-5, "\(name) out")
        var dgate = [Float](repeating: 0, count: count), dup = [Float](repeating: 0, count: count)
        backward(&dgate, &dup, R, gate, up, count)
        // The loss is a sum of independent per-element terms, so one perturbation per element suffices.
        let h = 1e-6
        let g = gate.doubles, u = up.doubles
        let fdGate = (0..<count).map { i in
            (reference([g[i] + h], [u[i]])[0] - reference([g[i] - h], [u[i]])[0]) / (2 * h) * Double(R[i])
        }
        let fdUp = (0..<count).map { i in
            (reference([g[i]], [u[i] + h])[0] - reference([g[i]], [u[i] - h])[0]) / (2 * h) * Double(R[i])
        }
        KernelCheck.assertClose(dgate, fdGate, tolerance: 1e-4, "\(name) dgate")
        KernelCheck.assertClose(dup, fdUp, tolerance: 1e-4, "\(name) dup")
    }

    // MARK: - Bias and soft-capping

    func testBiasForwardAndBackward() {
        let (N, C) = (70, 13)
        var rng = Philox(seed: 13)
        let x = KernelCheck.normal(N * C, &rng), bias = KernelCheck.normal(C, &rng), R = KernelCheck.normal(N * C, &rng)
        var out = x
        biasForward(&out, bias, N: N, C: C)
        KernelCheck.assertClose(out, (0..<N * C).map { Double(x[$0]) + Double(bias[$0 % C]) }, tolerance: 1e-6, "bias out")
        var dbias = [Float](repeating: 1, count: C)   // accumulates onto what is there
        biasBackward(&dbias, R, N: N, C: C)
        KernelCheck.assertClose(dbias, (0..<C).map { c in 1 + (0..<N).reduce(0.0) { $0 + Double(R[$1 * C + c]) } },
                                tolerance: 1e-5, "bias dbias")
    }

    func testSoftcapForwardAndBackward() {
        let (count, cap) = (257, Float(2.5))
        var rng = Philox(seed: 14)
        let x = KernelCheck.normal(count, &rng, scale: 5), R = KernelCheck.normal(count, &rng)
        func reference(_ v: [Double]) -> [Double] { v.map { Double(cap) * Foundation.tanh($0 / Double(cap)) } }
        var y = x
        softcapForward(&y, count: count, cap: cap)
        KernelCheck.assertClose(y, reference(x.doubles), tolerance: 1e-6, "softcap out")
        var dy = R
        softcapBackward(&dy, y, count: count, cap: cap)
        KernelCheck.assertClose(dy, KernelCheck.gradient(of: x) { reference($0).dot(R) }, tolerance: 1e-4, "softcap dx")
    }

    // MARK: - Embedding

    func testEmbeddingLookupAndScatterAddWithRepeatedTokens() {
        let (N, C, V) = (9, 5, 3000)
        var rng = Philox(seed: 6)
        let table = KernelCheck.normal(V * C, &rng), R = KernelCheck.normal(N * C, &rng)
        let tokens: [Int32] = [7, 2999, 7, 0, 1500, 7, 1500, 3, 0]
        var out = [Float](repeating: 0, count: N * C)
        embeddingForward(&out, tokens, table, N: N, C: C, V: V)
        for n in 0..<N { XCTAssertEqual(Array(out[n * C..<(n + 1) * C]), Array(table[Int(tokens[n]) * C..<(Int(tokens[n]) + 1) * C])) }

        var dtable = [Float](repeating: 0, count: V * C)
        embeddingBackward(&dtable, tokens, R, N: N, C: C, V: V)
        var expected = [Double](repeating: 0, count: V * C)
        for n in 0..<N { for c in 0..<C { expected[Int(tokens[n]) * C + c] += Double(R[n * C + c]) } }
        KernelCheck.assertClose(dtable, expected, tolerance: 1e-6, "embedding dtable")
    }

    // MARK: - LM head

    func testLMHeadLogProbForwardAndBackward() {
        checkLMHead(softcap: nil)
    }

    /// Gemma 2's final-logit soft-capping: logits cap · tanh(l / cap) before the log-softmax.
    func testLMHeadWithSoftcap() {
        checkLMHead(softcap: 3)
    }

    private func checkLMHead(softcap: Float?) {
        let (N, C, V) = (11, 8, 37)
        var rng = Philox(seed: 7)
        let h = KernelCheck.normal(N * C, &rng), W = KernelCheck.normal(V * C, &rng, scale: 2)
        let targets: [Int32] = [3, -1, 36, 0, -1, 5, 5, 20, -1, 1, 30]
        let R = KernelCheck.normal(N, &rng)
        func reference(_ h: [Double], _ W: [Double]) -> [Double] {
            (0..<N).map { n in
                guard targets[n] != ignoreIndex else { return 0 }
                let raw = (0..<V).map { v in (0..<C).map { h[n * C + $0] * W[v * C + $0] }.reduce(0, +) }
                let logits = softcap.map { cap in raw.map { Double(cap) * Foundation.tanh($0 / Double(cap)) } } ?? raw
                let top = logits.max()!
                let lse = top + Foundation.log(logits.map { Foundation.exp($0 - top) }.reduce(0, +))
                return logits[Int(targets[n])] - lse
            }
        }
        let expected = reference(h.doubles, W.doubles)
        let dhExpected = KernelCheck.gradient(of: h) { reference($0, W.doubles).dot(R) }
        let dWExpected = KernelCheck.gradient(of: W) { reference(h.doubles, $0).dot(R) }
        // Tiny tiles exercise partial row chunks, partial vocabulary tiles and the cross-thread merge.
        for tiling in [LMHeadTiling(), LMHeadTiling(rowChunk: 3, vocabTile: 5), LMHeadTiling(rowChunk: 1, vocabTile: 37)] {
            let label = "lmhead rowChunk=\(tiling.rowChunk) vocabTile=\(tiling.vocabTile)"
            var logp = [Float](repeating: .nan, count: N), lse = [Float](repeating: 0, count: N)
            lmHeadLogProbForward(&logp, &lse, h, W, targets, N: N, C: C, V: V, softcap: softcap, tiling: tiling)
            KernelCheck.assertClose(logp, expected, tolerance: 1e-5, label + " logp")
            var dh = [Float](repeating: 0, count: N * C), dW = [Float](repeating: 0, count: V * C)
            lmHeadLogProbBackward(&dh, &dW, R, h, W, targets, lse, N: N, C: C, V: V, softcap: softcap, tiling: tiling)
            KernelCheck.assertClose(dh, dhExpected, tolerance: 1e-4, label + " dh")
            KernelCheck.assertClose(dW, dWExpected, tolerance: 1e-4, label + " dW")
        }
    }

    func testLMHeadWithEveryRowIgnoredCostsNothingAndReturnsZeros() {
        let (N, C, V) = (4, 3, 10)
        let h = [Float](repeating: 1, count: N * C), W = [Float](repeating: 1, count: V * C)
        let targets = [Int32](repeating: ignoreIndex, count: N)
        var logp = [Float](repeating: .nan, count: N), lse = [Float](repeating: .nan, count: N)
        lmHeadLogProbForward(&logp, &lse, h, W, targets, N: N, C: C, V: V)
        XCTAssertEqual(logp, [0, 0, 0, 0])
        var dh = [Float](repeating: 0, count: N * C), dW = [Float](repeating: 0, count: V * C)
        lmHeadLogProbBackward(&dh, &dW, [1, 1, 1, 1], h, W, targets, lse, N: N, C: C, V: V)
        XCTAssertEqual(dh, [Float](repeating: 0, count: N * C))
        XCTAssertEqual(dW, [Float](repeating: 0, count: V * C))
    }

    func testLMHeadLogitsForChosenRows() {
        let (N, C, V) = (5, 4, 70)
        var rng = Philox(seed: 8)
        let h = KernelCheck.normal(N * C, &rng), W = KernelCheck.normal(V * C, &rng)
        var out = [Float](repeating: 0, count: 2 * V)
        lmHeadLogits(&out, h, rows: [4, 1], W, C: C, V: V)
        var expected = [Double]()
        for n in [4, 1] {
            for v in 0..<V {
                var logit = 0.0
                for c in 0..<C { logit += Double(h[n * C + c]) * Double(W[v * C + c]) }
                expected.append(logit)
            }
        }
        KernelCheck.assertClose(out, expected, tolerance: 1e-5, "lmHeadLogits")
    }

    // MARK: - Determinism

    /// Kernels that split work across the pool (partial sums per block, dynamic block hand-out) give
    /// bitwise-identical gradients run after run.
    func testParallelKernelsAreBitwiseReproducible() {
        let (N, C, V) = (300, 16, 5000)
        var rng = Philox(seed: 9)
        let h = KernelCheck.normal(N * C, &rng), W = KernelCheck.normal(V * C, &rng), dlogp = KernelCheck.normal(N, &rng)
        let targets = (0..<N).map { Int32($0 % 7 == 0 ? -1 : ($0 * 37) % V) }
        let (B, T, NH, NKV, D) = (2, 150, 6, 2, 16)
        let q = KernelCheck.normal(B * T * NH * D, &rng), k = KernelCheck.normal(B * T * NKV * D, &rng)
        let v = KernelCheck.normal(B * T * NKV * D, &rng), dout = KernelCheck.normal(B * T * NH * D, &rng)
        func run() -> [[UInt32]] {
            var logp = [Float](repeating: 0, count: N), lse = [Float](repeating: 0, count: N)
            lmHeadLogProbForward(&logp, &lse, h, W, targets, N: N, C: C, V: V, tiling: LMHeadTiling(rowChunk: 64, vocabTile: 128))
            var dh = [Float](repeating: 0, count: N * C), dW = [Float](repeating: 0, count: V * C)
            lmHeadLogProbBackward(&dh, &dW, dlogp, h, W, targets, lse, N: N, C: C, V: V,
                                  tiling: LMHeadTiling(rowChunk: 64, vocabTile: 128))
            var out = [Float](repeating: 0, count: q.count), alse = [Float](repeating: 0, count: B * NH * T)
            attentionForward(&out, &alse, q, k, v, B: B, T: T, NH: NH, NKV: NKV, D: D)
            var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count)
            var dv = [Float](repeating: 0, count: v.count)
            attentionBackward(&dq, &dk, &dv, dout, q, k, v, out, alse, B: B, T: T, NH: NH, NKV: NKV, D: D)
            var rstd = [Float](repeating: 0, count: N), normed = [Float](repeating: 0, count: N * C)
            var dnorm = [Float](repeating: 0, count: N * C), dweight = [Float](repeating: 0, count: C)
            rmsnormForward(&normed, &rstd, h, Array(W[0..<C]), N: N, C: C, eps: 1e-5)
            rmsnormBackward(&dnorm, &dweight, dh, h, Array(W[0..<C]), rstd, N: N, C: C)
            return [logp, dh, dW, out, dq, dk, dv, dnorm, dweight].map { $0.map(\.bitPattern) }
        }
        let first = run()
        for _ in 0..<5 { XCTAssert(run() == first, "a parallel kernel changed its result between runs") }
    }

    // MARK: - Math

    func testFastExpIsAccurateToAFewUlp() {
        var worst: Double = 0
        for i in 0...200_000 {
            let x = Float(-87 + 175 * Double(i) / 200_000)
            let exact = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(fastExp(x)) - exact) / exact)
        }
        XCTAssertLessThan(worst, 3e-7)
        XCTAssertEqual(fastExp(0), 1)
    }
}

/// Helpers of the kernel tests: random inputs, Double finite differences, closeness checks.
enum KernelCheck {
    static func normal(_ count: Int, _ rng: inout Philox, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in rng.nextNormal() * scale }
    }

    /// ∂f/∂x at x (converted to Double) by central differences with step 1e-6.
    static func gradient(of x: [Float], _ f: ([Double]) -> Double) -> [Double] {
        var point = x.doubles
        let h = 1e-6
        return (0..<point.count).map { i in
            let saved = point[i]
            point[i] = saved + h
            let up = f(point)
            point[i] = saved - h
            let down = f(point)
            point[i] = saved
            return (up - down) / (2 * h)
        }
    }

    /// |actual − expected| ≤ tolerance · max(1, max|expected|) elementwise (scale-aware absolute error).
    static func assertClose(_ actual: [Float], _ expected: [Double], tolerance: Double, _ label: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, label, file: file, line: line)
        let scale = max(1, expected.map(abs).max() ?? 0)
        var worst = 0.0, worstIndex = 0
        for (i, (a, e)) in zip(actual, expected).enumerated() where !(abs(Double(a) - e) <= worst) {
            worst = abs(Double(a) - e)
            worstIndex = i
        }
        XCTAssertLessThanOrEqual(worst, tolerance * scale,
                                 "\(label): worst error \(worst) at \(worstIndex) (scale \(scale))", file: file, line: line)
    }
}

extension Array where Element == Float {
    var doubles: [Double] { map(Double.init) }
}

extension Array where Element == Double {
    func dot(_ other: [Float]) -> Double { zip(self, other).map { $0 * Double($1) }.reduce(0, +) }
}

extension Optional where Wrapped == [Int32] {
    /// The array's base address for a kernel's optional pointer argument, nil when there is no array.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Int32>?) -> R) -> R {
        guard let array = self else { return body(nil) }
        return array.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
