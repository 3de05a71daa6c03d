/// Shape of the synthetic LLaMA-family step used to benchmark the kernels.
public struct SyntheticStepConfig: Sendable {
    public var vocab: Int, channels: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int, ffnHidden: Int
    public var batch: Int, sequence: Int
    public var eps: Float = 1e-5, ropeTheta: Float = 100_000

    public init(vocab: Int, channels: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int, ffnHidden: Int,
                batch: Int, sequence: Int) {
        (self.vocab, self.channels, self.layers, self.heads) = (vocab, channels, layers, heads)
        (self.kvHeads, self.headDim, self.ffnHidden, self.batch, self.sequence) = (kvHeads, headDim, ffnHidden, batch, sequence)
    }

    /// SmolLM2-135M: 30 layers, C=576, 9 query / 3 key-value heads of 64, SwiGLU 1536, vocabulary 49152,
    /// tied embedding; batch 4 × 256 as in the PyTorch reference numbers.
    public static let smolLM2 = SyntheticStepConfig(vocab: 49152, channels: 576, layers: 30, heads: 9, kvHeads: 3,
                                                    headDim: 64, ffnHidden: 1536, batch: 4, sequence: 256)

    public var description: String {
        "synthetic \(layers)-layer LLaMA stack assembled from Keel kernels + sgemm with random weights "
            + "(V=\(vocab) C=\(channels) NH=\(heads) NKV=\(kvHeads) D=\(headDim) FFN=\(ffnHidden), "
            + "batch \(batch)×\(sequence), loss = Σ target log-probs)"
    }
}

/// A training step of a LLaMA-family decoder built directly from the kernels, with random weights and
/// random tokens: the benchmark's stand-in for the model (the real one lives in KeelModels). Buffers are
/// allocated once; `forward()` keeps every activation backward needs, `backward()` fills the gradients.
final class SyntheticLLaMAStep {
    let config: SyntheticStepConfig
    let rope: RoPETable
    let tokens: [Int32], targets: [Int32]

    struct Layer {
        // Weights and their gradients, HF layout [out, in].
        let attnNorm, wq, wk, wv, wo, ffnNorm, wGate, wUp, wDown: TensorStorage
        let dAttnNorm, dwq, dwk, dwv, dwo, dFfnNorm, dwGate, dwUp, dwDown: TensorStorage
        // Activations saved by forward: input, normalised input, rstd, q/k (after RoPE), v, attention
        // output and its log-sum-exp, residual after attention, second norm, gate, up, SwiGLU output.
        let input, norm1, rstd1, q, k, v, att, lse, mid, norm2, rstd2, gate, up, act: TensorStorage
    }

    let embedding, dEmbedding, finalNorm, dFinalNorm: TensorStorage
    var layers: [Layer] = []
    let output, normF, rstdF, logp, headLSE: TensorStorage
    // Backward scratch, reused by every layer.
    let dx, dnorm, dq, dk, dv, datt, dact, dgate, dup, dlogp, scratchC: TensorStorage

    init(_ config: SyntheticStepConfig) {
        self.config = config
        let (N, C, H) = (config.batch * config.sequence, config.channels, config.ffnHidden)
        let (QC, KVC, V) = (config.heads * config.headDim, config.kvHeads * config.headDim, config.vocab)
        rope = RoPETable(headDim: config.headDim, maxPositions: config.sequence, theta: config.ropeTheta)
        var rng = Philox(seed: 2024)
        tokens = (0..<N).map { _ in Int32(rng.nextUInt32() % UInt32(V)) }
        targets = (0..<N).map { _ in Int32(rng.nextUInt32() % UInt32(V)) }
        func weight(_ count: Int, std: Float = 0.02) -> TensorStorage {
            let s = TensorStorage(count: count)
            for i in 0..<count { s.pointer[i] = rng.nextNormal() * std }
            return s
        }
        func ones(_ count: Int) -> TensorStorage {
            let s = TensorStorage(count: count)
            s.pointer.update(repeating: 1, count: count)
            return s
        }
        func zeros(_ count: Int) -> TensorStorage { TensorStorage(count: count) }
        embedding = weight(V * C); dEmbedding = zeros(V * C)
        finalNorm = ones(C); dFinalNorm = zeros(C)
        for _ in 0..<config.layers {
            layers.append(Layer(
                attnNorm: ones(C), wq: weight(QC * C), wk: weight(KVC * C), wv: weight(KVC * C), wo: weight(C * QC),
                ffnNorm: ones(C), wGate: weight(H * C), wUp: weight(H * C), wDown: weight(C * H),
                dAttnNorm: zeros(C), dwq: zeros(QC * C), dwk: zeros(KVC * C), dwv: zeros(KVC * C), dwo: zeros(C * QC),
                dFfnNorm: zeros(C), dwGate: zeros(H * C), dwUp: zeros(H * C), dwDown: zeros(C * H),
                input: zeros(N * C), norm1: zeros(N * C), rstd1: zeros(N), q: zeros(N * QC), k: zeros(N * KVC),
                v: zeros(N * KVC), att: zeros(N * QC), lse: zeros(N * config.heads), mid: zeros(N * C),
                norm2: zeros(N * C), rstd2: zeros(N), gate: zeros(N * H), up: zeros(N * H), act: zeros(N * H)))
        }
        output = zeros(N * C); normF = zeros(N * C); rstdF = zeros(N); logp = zeros(N); headLSE = zeros(N)
        dx = zeros(N * C); dnorm = zeros(N * C); dq = zeros(N * QC); dk = zeros(N * KVC); dv = zeros(N * KVC)
        datt = zeros(N * QC); dact = zeros(N * H); dgate = zeros(N * H); dup = zeros(N * H)
        dlogp = ones(N); scratchC = zeros(N * C)
    }

    func forward() {
        let c = config
        let (N, C, H, V) = (c.batch * c.sequence, c.channels, c.ffnHidden, c.vocab)
        let (QC, KVC) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        tokens.withUnsafeBufferPointer { embeddingForward(layers.first?.input.pointer ?? output.pointer, $0.baseAddress!,
                                                          embedding.pointer, N: N, C: C, V: V) }
        for (l, layer) in layers.enumerated() {
            rmsnormForward(layer.norm1.pointer, layer.rstd1.pointer, layer.input.pointer, layer.attnNorm.pointer,
                           N: N, C: C, eps: c.eps)
            matmulForward(layer.q.pointer, layer.norm1.pointer, layer.wq.pointer, N: N, C: C, OC: QC)
            matmulForward(layer.k.pointer, layer.norm1.pointer, layer.wk.pointer, N: N, C: C, OC: KVC)
            matmulForward(layer.v.pointer, layer.norm1.pointer, layer.wv.pointer, N: N, C: C, OC: KVC)
            ropeForward(layer.q.pointer, rope, B: c.batch, T: c.sequence, NH: c.heads, D: c.headDim)
            ropeForward(layer.k.pointer, rope, B: c.batch, T: c.sequence, NH: c.kvHeads, D: c.headDim)
            attentionForward(layer.att.pointer, layer.lse.pointer, layer.q.pointer, layer.k.pointer, layer.v.pointer,
                             B: c.batch, T: c.sequence, NH: c.heads, NKV: c.kvHeads, D: c.headDim)
            matmulForward(scratchC.pointer, layer.att.pointer, layer.wo.pointer, N: N, C: QC, OC: C)
            residualAdd(layer.mid.pointer, layer.input.pointer, scratchC.pointer, count: N * C)
            rmsnormForward(layer.norm2.pointer, layer.rstd2.pointer, layer.mid.pointer, layer.ffnNorm.pointer,
                           N: N, C: C, eps: c.eps)
            matmulForward(layer.gate.pointer, layer.norm2.pointer, layer.wGate.pointer, N: N, C: C, OC: H)
            matmulForward(layer.up.pointer, layer.norm2.pointer, layer.wUp.pointer, N: N, C: C, OC: H)
            swigluForward(layer.act.pointer, layer.gate.pointer, layer.up.pointer, count: N * H)
            matmulForward(scratchC.pointer, layer.act.pointer, layer.wDown.pointer, N: N, C: H, OC: C)
            let next = l + 1 < layers.count ? layers[l + 1].input : output
            residualAdd(next.pointer, layer.mid.pointer, scratchC.pointer, count: N * C)
        }
        rmsnormForward(normF.pointer, rstdF.pointer, output.pointer, finalNorm.pointer, N: N, C: C, eps: c.eps)
        targets.withUnsafeBufferPointer {
            lmHeadLogProbForward(logp.pointer, headLSE.pointer, normF.pointer, embedding.pointer, $0.baseAddress!,
                                 N: N, C: C, V: V)
        }
    }

    func backward() {
        let c = config
        let (N, C, H, V) = (c.batch * c.sequence, c.channels, c.ffnHidden, c.vocab)
        let (QC, KVC) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        zero(dEmbedding, V * C); zero(dFinalNorm, C)
        for layer in layers {
            for (g, n) in [(layer.dAttnNorm, C), (layer.dwq, QC * C), (layer.dwk, KVC * C), (layer.dwv, KVC * C),
                           (layer.dwo, C * QC), (layer.dFfnNorm, C), (layer.dwGate, H * C), (layer.dwUp, H * C),
                           (layer.dwDown, C * H)] { zero(g, n) }
        }
        zero(dnorm, N * C)
        targets.withUnsafeBufferPointer {
            lmHeadLogProbBackward(dnorm.pointer, dEmbedding.pointer, dlogp.pointer, normF.pointer, embedding.pointer,
                                  $0.baseAddress!, headLSE.pointer, N: N, C: C, V: V)
        }
        zero(dx, N * C)
        rmsnormBackward(dx.pointer, dFinalNorm.pointer, dnorm.pointer, output.pointer, finalNorm.pointer,
                        rstdF.pointer, N: N, C: C)
        for layer in layers.reversed() {
            // Feed-forward branch; its input gradient accumulates into the residual gradient dx.
            zero(dact, N * H)
            matmulBackward(dact.pointer, layer.dwDown.pointer, dx.pointer, layer.act.pointer, layer.wDown.pointer,
                           N: N, C: H, OC: C)
            zero(dgate, N * H); zero(dup, N * H)
            swigluBackward(dgate.pointer, dup.pointer, dact.pointer, layer.gate.pointer, layer.up.pointer, count: N * H)
            zero(dnorm, N * C)
            matmulBackward(dnorm.pointer, layer.dwGate.pointer, dgate.pointer, layer.norm2.pointer, layer.wGate.pointer,
                           N: N, C: C, OC: H)
            matmulBackward(dnorm.pointer, layer.dwUp.pointer, dup.pointer, layer.norm2.pointer, layer.wUp.pointer,
                           N: N, C: C, OC: H)
            rmsnormBackward(dx.pointer, layer.dFfnNorm.pointer, dnorm.pointer, layer.mid.pointer, layer.ffnNorm.pointer,
                            layer.rstd2.pointer, N: N, C: C)
            // Attention branch.
            zero(datt, N * QC)
            matmulBackward(datt.pointer, layer.dwo.pointer, dx.pointer, layer.att.pointer, layer.wo.pointer,
                           N: N, C: QC, OC: C)
            zero(dq, N * QC); zero(dk, N * KVC); zero(dv, N * KVC)
            attentionBackward(dq.pointer, dk.pointer, dv.pointer, datt.pointer, layer.q.pointer, layer.k.pointer,
                              layer.v.pointer, layer.att.pointer, layer.lse.pointer,
                              B: c.batch, T: c.sequence, NH: c.heads, NKV: c.kvHeads, D: c.headDim)
            ropeBackward(dq.pointer, rope, B: c.batch, T: c.sequence, NH: c.heads, D: c.headDim)
            ropeBackward(dk.pointer, rope, B: c.batch, T: c.sequence, NH: c.kvHeads, D: c.headDim)
            zero(dnorm, N * C)
            matmulBackward(dnorm.pointer, layer.dwq.pointer, dq.pointer, layer.norm1.pointer, layer.wq.pointer,
                           N: N, C: C, OC: QC)
            matmulBackward(dnorm.pointer, layer.dwk.pointer, dk.pointer, layer.norm1.pointer, layer.wk.pointer,
                           N: N, C: C, OC: KVC)
            matmulBackward(dnorm.pointer, layer.dwv.pointer, dv.pointer, layer.norm1.pointer, layer.wv.pointer,
                           N: N, C: C, OC: KVC)
            rmsnormBackward(dx.pointer, layer.dAttnNorm.pointer, dnorm.pointer, layer.input.pointer,
                            layer.attnNorm.pointer, layer.rstd1.pointer, N: N, C: C)
        }
        tokens.withUnsafeBufferPointer {
            embeddingBackward(dEmbedding.pointer, $0.baseAddress!, dx.pointer, N: N, C: C, V: V)
        }
    }

    private func residualAdd(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                             count: Int) {
        Profiler.measure("residual-add") {
            ThreadPool.shared.parallelFor(count, grain: 4096) { range in for i in range { out[i] = a[i] + b[i] } }
        }
    }

    private func zero(_ storage: TensorStorage, _ count: Int) {
        Profiler.measure("zero-fill") {
            let p = storage.pointer
            ThreadPool.shared.parallelFor(count, grain: 16384) { range in (p + range.lowerBound).update(repeating: 0, count: range.count) }
        }
    }
}
