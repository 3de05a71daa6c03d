import Foundation

/// A LLaMA-family decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU, tied or untied
/// LM head; Touvron et al. 2023) written the way llm.c writes GPT-2: the forward pass calls the runtime's
/// kernels layer by layer and saves what backward needs; `backward` walks the layers in reverse calling
/// each kernel's backward. The whole network is ONE node of the autodiff graph (from all parameters to
/// the per-position target log-probs), so losses built from those log-probs with ordinary tensor ops
/// differentiate straight through it, while the model itself pays no per-op graph overhead.
///
/// The other families' features (`ModelFamily`) are switches of the same layer: q/k/v biases, per-head
/// q/k RMSNorm, sliding-window layers, (1 + w) norms and norms after attention and MLP, GeGLU, scaled
/// embeddings, attention and final-logit soft-capping, a RoPE table per layer kind.
///
/// Shapes: B sequences × T positions, N = B·T rows; C hidden, NH query heads, NKV key/value heads,
/// D head dim, F MLP width, V vocabulary. No dropout (alignment trains with dropout off).
public final class LlamaModel {
    public let config: LlamaConfig
    /// Trainable tensors under their HF names in state-dict order; the tied LM head is the embedding.
    public let parameters: Parameters
    let embedding: Tensor
    let finalNorm: Tensor
    let lmHead: Tensor
    let layers: [LayerWeights]
    /// Gradient storages of the last backward pass, by parameter (see `gradientBuffer(for:zeroed:)`).
    private var gradientStorages: [ObjectIdentifier: TensorStorage] = [:]

    struct LayerWeights {
        let preAttentionNorm, qProj, kProj, vProj, oProj, preMLPNorm, gateProj, upProj, downProj: Tensor
        let qBias, kBias, vBias: Tensor?
        /// Per-head RMSNorm weights [D] of queries and keys.
        let qNorm, kNorm: Tensor?
        /// Norms of the attention and MLP outputs before their residual adds (sandwich norms).
        let attentionOutputNorm, mlpOutputNorm: Tensor?
        let kind: AttentionKind
        let rope: RoPETable
    }

    public init(weights: ModelWeights) throws {
        config = weights.config
        var parameters = Parameters()
        for name in weights.names { parameters.add(name, try weights.tensor(name)) }
        self.parameters = parameters
        embedding = try weights.tensor(LlamaTensorName.embedTokens)
        finalNorm = try weights.tensor(LlamaTensorName.finalNorm)
        lmHead = config.tiedEmbeddings ? embedding : try weights.tensor(LlamaTensorName.lmHead)
        let config = config
        let ropes = [AttentionKind.full, .sliding].map { config.ropeTable(for: $0) }
        layers = try (0..<config.layers).map { i in
            func w(_ t: LlamaTensorName.Layer) throws -> Tensor { try weights.layer(i, t) }
            func optional(_ t: LlamaTensorName.Layer) throws -> Tensor? { config.layerTensors.contains(t) ? try w(t) : nil }
            let kind = config.attentionKind(ofLayer: i), sandwich = config.sandwichNorms
            return LayerWeights(preAttentionNorm: try w(.inputNorm), qProj: try w(.qProj), kProj: try w(.kProj),
                                vProj: try w(.vProj), oProj: try w(.oProj),
                                preMLPNorm: try w(sandwich ? .preFeedforwardNorm : .postAttentionNorm),
                                gateProj: try w(.gateProj), upProj: try w(.upProj), downProj: try w(.downProj),
                                qBias: try optional(.qBias), kBias: try optional(.kBias), vBias: try optional(.vBias),
                                qNorm: try optional(.qNorm), kNorm: try optional(.kNorm),
                                attentionOutputNorm: sandwich ? try w(.postAttentionNorm) : nil,
                                mlpOutputNorm: try optional(.postFeedforwardNorm),
                                kind: kind, rope: ropes[kind == .full ? 0 : 1])
        }
    }

    /// A randomly initialised model as HF initialises LLaMA (`initializer_range` 0.02): every matrix
    /// ~ N(0, 0.02²), every norm an identity (weight 1, or 0 under Gemma's 1 + w), biases 0.
    /// Deterministic for a seed.
    public convenience init(randomWithConfig config: LlamaConfig, seed: UInt64) throws {
        var generator = Philox(seed: seed)
        var tensors: [String: Tensor] = [:]
        for (name, shape) in config.tensorShapes() {
            if name.hasSuffix(".bias") {
                tensors[name] = Tensor.zeros(shape)
            } else if shape.count == 1 {
                // Norm weights: 1 as stored, or 0 stored as an offset from one (Gemma).
                tensors[name] = config.normWeightOffset == 0 ? Tensor.ones(shape) : Tensor.zeros(shape)
            } else {
                tensors[name] = Tensor.randomNormal(shape, std: 0.02, generator: &generator)
            }
        }
        try self.init(weights: ModelWeights(config: config, tensors: tensors, source: "random(seed: \(seed))"))
    }

    /// The current weights as `ModelWeights` sharing this model's storage (for export and checkpoints).
    public func weights() throws -> ModelWeights {
        var tensors: [String: Tensor] = [:]
        for entry in parameters { tensors[entry.name] = entry.tensor.detached() }
        return try ModelWeights(config: config, tensors: tensors, source: "LlamaModel")
    }

    // MARK: Log-probs

    /// [N] log π(targets[n] | tokens[..n]) for every position of the batch (0 where the target is
    /// `ignoreIndex`). Differentiable with respect to `parameters` when grad mode is on.
    public func targetLogProbs(_ batch: SequenceBatch) -> Tensor {
        let N = batch.rows * batch.length
        let rows = batch.targets.withUnsafeBufferPointer { LMHeadRows($0.baseAddress!, N: N, V: config.vocab) }
        return summedLogProbs(ModelInput(tokens: batch.tokens, B: batch.rows, T: batch.length, layout: nil),
                              rows: rows, outputs: rows.indices, outputCount: N)
    }

    /// From one forward: [N] log π(targets[n] | tokens[..n]) and [N] E[n] = Σ_v π(v | tokens[..n])·q[v],
    /// the expectation of the constant vector q [V] under the same next-token distribution, at the same
    /// (non-ignored target) positions; both 0 elsewhere and both differentiable with respect to
    /// `parameters` (a loss may train through E while another trains through the log-probs: the model
    /// runs, and backpropagates, once).
    public func targetLogProbsAndExpectations(_ batch: SequenceBatch, vector q: [Float]) -> (logProbs: Tensor, expectations: Tensor) {
        precondition(q.count == config.vocab, "expectation vector of \(q.count) values for a vocabulary of \(config.vocab)")
        let recording = Tensor.isGradEnabled && parameters.entries.contains { $0.tensor.requiresGrad }
        let N = batch.rows * batch.length, C = config.hidden, V = config.vocab
        let forward = self.forward(ModelInput(tokens: batch.tokens, B: batch.rows, T: batch.length, layout: nil),
                                   saveActivations: recording)
        let targets = batch.targets
        let rows = targets.withUnsafeBufferPointer { LMHeadRows($0.baseAddress!, N: N, V: V) }
        let M = rows.count
        // Rows 0 and 1 of one output: the autodiff node returns a single tensor.
        let both = Tensor(zeros: [2, N])
        let logp = Tensor(uninitialized: [M]), lse = Tensor(uninitialized: [M]), expectationLSE = Tensor(uninitialized: [N])
        lmHeadLogProbForward(logp.pointer, lse.pointer, forward.output.pointer, lmHead.pointer, rows: rows, C: C, V: V,
                             softcap: config.finalLogitSoftcap)
        for (m, n) in rows.indices.enumerated() { both.pointer[n] = logp.pointer[m] }
        targets.withUnsafeBufferPointer { t in
            softmaxExpectationForward(both.pointer + N, expectationLSE.pointer, forward.output.pointer, lmHead.pointer, q,
                                      t.baseAddress!, N: N, C: C, V: V, softcap: config.finalLogitSoftcap)
        }
        func split(_ t: Tensor) -> (Tensor, Tensor) { (t.rows(0..<1).reshaped([N]), t.rows(1..<2).reshaped([N])) }
        guard recording else { return split(both) }
        let expectations = Tensor(shape: [N], storage: both.storage, offset: both.offset + N)
        let recorded = Tensor.record(op: "llama", inputs: parameters.entries.map(\.tensor), output: both) { [self] g in
            let dlogp = Tensor(uninitialized: [M])
            for (m, n) in rows.indices.enumerated() { dlogp.pointer[m] = g.pointer[n] }
            let dE = Tensor(shape: [N], storage: g.storage, offset: g.offset + N)
            return backward(forward) { doutput, gradient in
                lmHeadLogProbBackward(doutput.pointer, gradient(lmHead), dlogp.pointer, forward.output.pointer,
                                      lmHead.pointer, rows: rows, lse: lse.pointer, C: C, V: V, softcap: config.finalLogitSoftcap)
                targets.withUnsafeBufferPointer { t in
                    softmaxExpectationBackward(doutput.pointer, gradient(lmHead), dE.pointer, forward.output.pointer,
                                               lmHead.pointer, q, t.baseAddress!, expectations.pointer, expectationLSE.pointer,
                                               N: N, C: C, V: V, softcap: config.finalLogitSoftcap)
                }
            }
        }
        return split(recorded)
    }

    /// [N] E[n] = Σ_v π(v | tokens[..n])·q[v] at the non-ignored target positions (0 elsewhere), without
    /// a graph: the no-grad half of `targetLogProbsAndExpectations` (model-scored data filters use it).
    public func targetExpectations(_ batch: SequenceBatch, vector q: [Float]) -> Tensor {
        precondition(q.count == config.vocab, "expectation vector of \(q.count) values for a vocabulary of \(config.vocab)")
        return withNoGrad {
            let N = batch.rows * batch.length
            let forward = self.forward(ModelInput(tokens: batch.tokens, B: batch.rows, T: batch.length, layout: nil),
                                       saveActivations: false)
            let expectations = Tensor(uninitialized: [N]), lse = Tensor(uninitialized: [N])
            batch.targets.withUnsafeBufferPointer { t in
                softmaxExpectationForward(expectations.pointer, lse.pointer, forward.output.pointer, lmHead.pointer, q,
                                          t.baseAddress!, N: N, C: config.hidden, V: config.vocab,
                                          softcap: config.finalLogitSoftcap)
            }
            return expectations
        }
    }

    /// [R, C] the backbone's final hidden states (after the final RMSNorm: HF's `last_hidden_state`, what
    /// `LlamaForSequenceClassification`'s score head reads) at the flattened [B·T] positions `rows`.
    /// Differentiable with respect to `parameters`; the LM head is never evaluated, so a reward model
    /// pays neither its V×C product nor its log-softmax.
    public func hiddenStates(_ batch: SequenceBatch, rows: [Int]) -> Tensor {
        let recording = Tensor.isGradEnabled && parameters.entries.contains { $0.tensor.requiresGrad }
        let N = batch.rows * batch.length, C = config.hidden
        precondition(rows.allSatisfy { (0..<N).contains($0) }, "LlamaModel.hiddenStates: a row is outside the batch's \(N) positions")
        let forward = self.forward(ModelInput(tokens: batch.tokens, B: batch.rows, T: batch.length, layout: nil),
                                   saveActivations: recording)
        let hidden = Tensor(uninitialized: [rows.count, C])
        gatherRowsForward(hidden.pointer, forward.output.pointer, rows: rows, C: C)
        guard recording else { return hidden }
        return Tensor.record(op: "llama.hidden", inputs: parameters.entries.map(\.tensor), output: hidden) { [self] dhidden in
            backward(forward) { doutput, _ in gatherRowsBackward(doutput.pointer, dhidden.pointer, rows: rows, C: C) }
        }
    }

    /// [B, C] the final hidden state at each row's last real token (for a pair batch: the last
    /// completion token, the EOS the trainer appends unless truncation cut it).
    public func lastHiddenStates(_ batch: SequenceBatch) -> Tensor {
        hiddenStates(batch, rows: batch.lastPositions)
    }

    /// [B] Σ over each row's completion tokens of log π(token | prefix), and the token counts: the
    /// quantity every preference loss starts from.
    public func sequenceLogProbs(_ batch: SequenceBatch) -> (logProbs: Tensor, tokenCounts: [Int]) {
        let perPosition = targetLogProbs(batch).reshaped([batch.rows, batch.length])
        return (perPosition.sum(axes: [1]), batch.completionCounts)
    }

    /// [2B] the same quantity for prompt-shared pairs (chosen 0..<B, rejected B..<2B), computing each
    /// prompt once; equal to the unshared `SequenceBatch` result up to float summation order.
    public func sequenceLogProbs(_ batch: SharedPromptPairBatch) -> (logProbs: Tensor, tokenCounts: [Int]) {
        let rows = LMHeadRows(indices: batch.scoredPositions, targets: batch.scoredTargets, V: config.vocab)
        let layout = PackedLayout(positions: batch.positions, keyMask: batch.keyMask)
        let logProbs = summedLogProbs(ModelInput(tokens: batch.tokens, B: 1, T: batch.length, layout: layout),
                                      rows: rows, outputs: batch.scoredSequences, outputCount: 2 * batch.pairCount)
        return (logProbs, batch.completionCounts)
    }

    /// out [outputCount]: out[o] = Σ over the scored rows m with outputs[m] = o of
    /// log π(rows.targets[m] | the tokens up to row rows.indices[m]), summed in m order (0 for an output
    /// no row feeds). Differentiable with respect to `parameters` when grad mode is on.
    private func summedLogProbs(_ input: ModelInput, rows: LMHeadRows, outputs: [Int], outputCount: Int) -> Tensor {
        let recording = Tensor.isGradEnabled && parameters.entries.contains { $0.tensor.requiresGrad }
        let forward = self.forward(input, saveActivations: recording)
        let M = rows.count
        let logp = Tensor(uninitialized: [M]), lse = Tensor(uninitialized: [M])
        lmHeadLogProbForward(logp.pointer, lse.pointer, forward.output.pointer, lmHead.pointer, rows: rows,
                             C: config.hidden, V: config.vocab, softcap: config.finalLogitSoftcap)
        let out = Tensor(zeros: [outputCount])
        for m in 0..<M { out.pointer[outputs[m]] += logp.pointer[m] }
        guard recording else { return out }
        return Tensor.record(op: "llama", inputs: parameters.entries.map(\.tensor), output: out) { [self] dout in
            let dlogp = Tensor(uninitialized: [M])
            for m in 0..<M { dlogp.pointer[m] = dout.pointer[outputs[m]] }
            return backward(forward) { doutput, gradient in
                lmHeadLogProbBackward(doutput.pointer, gradient(lmHead), dlogp.pointer, forward.output.pointer,
                                      lmHead.pointer, rows: rows, lse: lse.pointer, C: config.hidden, V: config.vocab,
                                      softcap: config.finalLogitSoftcap)
            }
        }
    }

    /// Logits [R, V] of the last real position of each row.
    public func lastLogits(_ batch: SequenceBatch) -> Tensor {
        logits(batch, rows: batch.lastPositions)
    }

    /// Logits [B·T, V] of every position, as HF's forward returns them (evaluation, benchmarks); the
    /// buffer is large (192 MiB for 4 × 256 positions of a 49152-word vocabulary).
    public func logits(_ batch: SequenceBatch) -> Tensor {
        logits(batch, rows: Array(0..<batch.rows * batch.length))
    }

    /// Logits [rows.count, V] of the given rows of the flattened [B·T] positions; no gradient.
    private func logits(_ batch: SequenceBatch, rows: [Int]) -> Tensor {
        withNoGrad {
            let forward = self.forward(ModelInput(tokens: batch.tokens, B: batch.rows, T: batch.length, layout: nil),
                                       saveActivations: false)
            let logits = Tensor(uninitialized: [rows.count, config.vocab])
            headLogits(logits.pointer, forward.output.pointer, rows: rows)
            return logits
        }
    }

    // MARK: Forward

    /// What one layer's backward needs. `input` is the residual stream entering the layer, `mid` the
    /// stream after the attention block, `product` = act(gate)∘up (the down projection's input). Saving
    /// the product costs N·F floats per layer (6 MiB at 4×256) and spares backward recomputing it.
    /// Without saved activations `product` is `gate` itself, overwritten in place. The optional buffers
    /// exist only with the feature that needs them: `qRaw`/`kRaw` the projections before the per-head
    /// norms (whose outputs are `q`/`k`), `attentionProjection`/`down` the attention and MLP outputs
    /// before the sandwich norms, each norm with its rstd.
    struct LayerActivations {
        var input: Tensor
        let norm1, rstd1, q, k, v, attention, lse, mid, norm2, rstd2, gate, up, product: Tensor
        let qRaw, qRstd, kRaw, kRstd: Tensor?
        let attentionProjection, attentionOutputRstd, down, mlpOutputRstd: Tensor?

        /// The same buffers reading another input (scratch reuse in the no-grad forward).
        func with(input: Tensor) -> LayerActivations {
            var copy = self
            copy.input = input
            return copy
        }
    }

    /// B rows of T tokens; packed rows (prompt-shared pairs) carry explicit positions and a key mask.
    struct ModelInput {
        let tokens: [Int32]
        let B: Int, T: Int
        let layout: PackedLayout?
    }

    struct ForwardState {
        let input: ModelInput
        /// The key mask of the sliding-window layers (nil without any).
        let slidingMask: SlidingWindowMask?
        var layers: [LayerActivations] = []
        /// The residual stream after the last layer [N,C], its RMS statistics [N], and the normalised
        /// output [N,C] that feeds the LM head.
        var final: Tensor, finalRstd: Tensor, output: Tensor

        /// The key mask a layer of this kind attends with.
        func keyMask(_ kind: AttentionKind) -> UnsafePointer<Int32>? {
            Self.keyMask(kind, sliding: slidingMask, layout: input.layout)
        }

        static func keyMask(_ kind: AttentionKind, sliding: SlidingWindowMask?, layout: PackedLayout?) -> UnsafePointer<Int32>? {
            kind == .sliding ? sliding.map { UnsafePointer($0.keyMask) } : layout.map { UnsafePointer($0.keyMask) }
        }
    }

    private func forward(_ input: ModelInput, saveActivations: Bool) -> ForwardState {
        let B = input.B, T = input.T, N = B * T, C = config.hidden
        precondition(input.layout != nil || T <= config.maxPositions,
                     "LlamaModel: sequence length \(T) exceeds the model's \(config.maxPositions) positions")
        let slidingMask = config.slidingWindow.flatMap { window in
            config.layerTypes.contains(.sliding) ? SlidingWindowMask(B: B, T: T, window: window, layout: input.layout) : nil
        }
        var saved: [LayerActivations] = []
        var x = embed(input.tokens)
        // Without saved activations one set of scratch buffers serves every layer.
        let shared = saveActivations ? nil : makeActivations(B: B, T: T, input: x, forBackward: false)
        for w in layers {
            let a = shared.map { $0.with(input: x) } ?? makeActivations(B: B, T: T, input: x, forBackward: true)
            let keyMask = ForwardState.keyMask(w.kind, sliding: slidingMask, layout: input.layout)
            x = layerForward(w, a, B: B, T: T, positionOffset: 0, positions: input.layout?.positions) { a in
                attentionForward(a.attention.pointer, a.lse.pointer, a.q.pointer, a.k.pointer, a.v.pointer,
                                 B: B, T: T, NH: config.heads, NKV: config.kvHeads, D: config.headDim,
                                 keyMask: keyMask, scale: config.attentionScale, softcap: config.attentionSoftcap)
            }
            if saveActivations { saved.append(a) }
        }
        let output = Tensor(uninitialized: [N, C]), finalRstd = Tensor(uninitialized: [N])
        finalNormForward(output.pointer, finalRstd.pointer, x.pointer, N: N)
        return ForwardState(input: input, slidingMask: slidingMask, layers: saved, final: x, finalRstd: finalRstd, output: output)
    }

    /// out [N,C], rstd [N] ← the final RMSNorm of the residual stream x [N,C].
    func finalNormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, N: Int) {
        rmsnormForward(out, rstd, x, finalNorm.pointer, N: N, C: config.hidden, eps: config.rmsEps,
                       weightOffset: config.normWeightOffset)
    }

    /// Logits [rows.count, V] of the given rows of the normalised output h [N,C] (soft-capped if the model caps).
    func headLogits(_ out: UnsafeMutablePointer<Float>, _ h: UnsafePointer<Float>, rows: [Int]) {
        lmHeadLogits(out, h, rows: rows, lmHead.pointer, C: config.hidden, V: config.vocab, softcap: config.finalLogitSoftcap)
    }

    /// √hidden, Gemma's embedding multiplier, as transformers computes it (in the weights' dtype).
    private var embeddingScale: Float { Float(Double(config.hidden).squareRoot()) }

    /// [N, C] token embeddings (× √C when the model scales them). Ids must be in 0..<V (callers validate
    /// user data; the kernel traps otherwise).
    func embed(_ tokens: [Int32]) -> Tensor {
        let x = Tensor(uninitialized: [tokens.count, config.hidden])
        tokens.withUnsafeBufferPointer {
            embeddingForward(x.pointer, $0.baseAddress!, embedding.pointer, N: tokens.count, C: config.hidden, V: config.vocab)
        }
        if config.scalesEmbeddings { scale(x.pointer, by: embeddingScale, count: x.count) }
        return x
    }

    /// Uninitialised buffers for one layer over B×T rows; `forBackward` keeps the gate apart from the
    /// MLP product.
    func makeActivations(B: Int, T: Int, input: Tensor, forBackward: Bool) -> LayerActivations {
        let N = B * T, C = config.hidden, F = config.intermediate
        let QD = config.heads * config.headDim, KVD = config.kvHeads * config.headDim
        let gate = Tensor(uninitialized: [N, F])
        func optional(_ present: Bool, _ shape: [Int]) -> Tensor? { present ? Tensor(uninitialized: shape) : nil }
        let qk = config.queryKeyNorm, sandwich = config.sandwichNorms
        return LayerActivations(
            input: input, norm1: Tensor(uninitialized: [N, C]), rstd1: Tensor(uninitialized: [N]),
            q: Tensor(uninitialized: [N, QD]), k: Tensor(uninitialized: [N, KVD]), v: Tensor(uninitialized: [N, KVD]),
            attention: Tensor(uninitialized: [N, QD]), lse: Tensor(uninitialized: [B, config.heads, T]),
            mid: Tensor(uninitialized: [N, C]), norm2: Tensor(uninitialized: [N, C]), rstd2: Tensor(uninitialized: [N]),
            gate: gate, up: Tensor(uninitialized: [N, F]), product: forBackward ? Tensor(uninitialized: [N, F]) : gate,
            qRaw: optional(qk, [N, QD]), qRstd: optional(qk, [N * config.heads]),
            kRaw: optional(qk, [N, KVD]), kRstd: optional(qk, [N * config.kvHeads]),
            attentionProjection: optional(sandwich, [N, C]), attentionOutputRstd: optional(sandwich, [N]),
            down: optional(sandwich, [N, C]), mlpOutputRstd: optional(sandwich, [N]))
    }

    /// One decoder layer over B×T rows at positions positionOffset + t (or `positions` [B,T]); returns
    /// the residual stream leaving it [N,C]. `attend` fills `a.attention` from the rotated `a.q`, `a.k`, `a.v` (the causal
    /// kernel during training, the KV cache during generation).
    func layerForward(_ w: LayerWeights, _ a: LayerActivations, B: Int, T: Int, positionOffset: Int,
                      positions: UnsafePointer<Int32>? = nil, attend: (LayerActivations) -> Void) -> Tensor {
        let N = B * T, C = config.hidden, NH = config.heads, NKV = config.kvHeads, D = config.headDim
        let F = config.intermediate, QD = NH * D, KVD = NKV * D
        let eps = config.rmsEps, offset = config.normWeightOffset
        let x = a.input
        // Attention block: mid = x + [norm](Wo · attention(rope(q), rope(k), v)), with q = [norm](Wq·n1 [+ bq])
        // per head (k alike, v = Wv·n1 [+ bv]) and n1 = rmsnorm(x).
        rmsnormForward(a.norm1.pointer, a.rstd1.pointer, x.pointer, w.preAttentionNorm.pointer, N: N, C: C, eps: eps,
                       weightOffset: offset)
        for (out, raw, rstd, weight, bias, headNorm, width, heads) in [
            (a.q, a.qRaw, a.qRstd, w.qProj, w.qBias, w.qNorm, QD, NH), (a.k, a.kRaw, a.kRstd, w.kProj, w.kBias, w.kNorm, KVD, NKV),
            (a.v, nil, nil, w.vProj, w.vBias, nil, KVD, NKV)] {
            let projected = raw ?? out
            matmulForward(projected.pointer, a.norm1.pointer, weight.pointer, N: N, C: C, OC: width)
            if let bias { biasForward(projected.pointer, bias.pointer, N: N, C: width) }
            if let headNorm, let raw, let rstd {
                rmsnormForward(out.pointer, rstd.pointer, raw.pointer, headNorm.pointer, N: N * heads, C: D, eps: eps,
                               weightOffset: offset)
            }
        }
        ropeForward(a.q.pointer, w.rope, B: B, T: T, NH: NH, D: D, positionOffset: positionOffset, positions: positions)
        ropeForward(a.k.pointer, w.rope, B: B, T: T, NH: NKV, D: D, positionOffset: positionOffset, positions: positions)
        attend(a)
        if let norm = w.attentionOutputNorm, let projection = a.attentionProjection, let rstd = a.attentionOutputRstd {
            matmulForward(projection.pointer, a.attention.pointer, w.oProj.pointer, N: N, C: QD, OC: C)
            rmsnormForward(a.mid.pointer, rstd.pointer, projection.pointer, norm.pointer, N: N, C: C, eps: eps, weightOffset: offset)
        } else {
            matmulForward(a.mid.pointer, a.attention.pointer, w.oProj.pointer, N: N, C: QD, OC: C)
        }
        add(a.mid.pointer, x.pointer, count: N * C)
        // MLP block: out = mid + [norm](Wd · (act(Wg·n2) ∘ Wu·n2)), n2 = rmsnorm(mid)
        rmsnormForward(a.norm2.pointer, a.rstd2.pointer, a.mid.pointer, w.preMLPNorm.pointer, N: N, C: C, eps: eps,
                       weightOffset: offset)
        matmulForward(a.gate.pointer, a.norm2.pointer, w.gateProj.pointer, N: N, C: C, OC: F)
        matmulForward(a.up.pointer, a.norm2.pointer, w.upProj.pointer, N: N, C: C, OC: F)
        switch config.activation {
        case .silu: swigluForward(a.product.pointer, a.gate.pointer, a.up.pointer, count: N * F)
        case .geluTanh: gegluForward(a.product.pointer, a.gate.pointer, a.up.pointer, count: N * F)
        }
        let out = Tensor(uninitialized: [N, C])
        if let norm = w.mlpOutputNorm, let down = a.down, let rstd = a.mlpOutputRstd {
            matmulForward(down.pointer, a.product.pointer, w.downProj.pointer, N: N, C: F, OC: C)
            rmsnormForward(out.pointer, rstd.pointer, down.pointer, norm.pointer, N: N, C: C, eps: eps, weightOffset: offset)
        } else {
            matmulForward(out.pointer, a.product.pointer, w.downProj.pointer, N: N, C: F, OC: C)
        }
        add(out.pointer, a.mid.pointer, count: N * C)
        return out
    }

    // MARK: Backward

    /// dL/d(parameter) for every entry of `parameters` (nil for frozen ones). `head` writes dL/d(output)
    /// [N,C] (the final norm's output, zero-filled beforehand) from whatever read it — the LM head's
    /// log-probs, or gathered hidden rows — and may ask for a head weight's gradient buffer.
    private func backward(_ f: ForwardState,
                          head: (_ doutput: Tensor, _ gradient: (Tensor) -> UnsafeMutablePointer<Float>?) -> Void) -> [Tensor?] {
        let B = f.input.B, T = f.input.T, N = B * T, C = config.hidden, NH = config.heads, NKV = config.kvHeads
        let D = config.headDim, F = config.intermediate, QD = NH * D, KVD = NKV * D
        let offset = config.normWeightOffset
        var grads: [ObjectIdentifier: Tensor] = [:]
        /// The gradient buffer of `p` (nil if frozen). Matrices are used once per forward, so their
        /// gradient is written, not accumulated (`weightGradient`), and needs no zeroing; norms, biases
        /// and the embedding / tied LM head accumulate and start from zeros.
        func grad(_ p: Tensor, accumulates: Bool) -> UnsafeMutablePointer<Float>? {
            guard p.requiresGrad else { return nil }
            if let g = grads[ObjectIdentifier(p)] { return g.pointer }
            let g = gradientBuffer(for: p, zeroed: accumulates)
            grads[ObjectIdentifier(p)] = g
            return g.pointer
        }
        func norm(_ p: Tensor) -> UnsafeMutablePointer<Float>? { grad(p, accumulates: true) }
        func matrix(_ p: Tensor) -> UnsafeMutablePointer<Float>? { grad(p, accumulates: false) }

        // Head and final norm. dx is the gradient of the residual stream, carried down the layers.
        let doutput = Tensor(zeros: [N, C]), dx = Tensor(zeros: [N, C])
        head(doutput) { grad($0, accumulates: true) }
        let positions = f.input.layout?.positions
        rmsnormBackward(dx.pointer, norm(finalNorm), doutput.pointer, f.final.pointer, finalNorm.pointer,
                        f.finalRstd.pointer, N: N, C: C, weightOffset: offset)

        // Scratch reused by every layer (zeroed before each use: the kernels accumulate).
        let dnorm = Tensor(uninitialized: [N, C]), dattention = Tensor(uninitialized: [N, QD])
        let dq = Tensor(uninitialized: [N, QD]), dk = Tensor(uninitialized: [N, KVD]), dv = Tensor(uninitialized: [N, KVD])
        let dproduct = Tensor(uninitialized: [N, F])
        let dgate = Tensor(uninitialized: [N, F]), dup = Tensor(uninitialized: [N, F])
        // dL/d(the input of a sandwich norm) and dL/d(a projection before its per-head norm).
        let dsublayer = config.sandwichNorms ? Tensor(uninitialized: [N, C]) : nil
        let dqRaw = config.queryKeyNorm ? Tensor(uninitialized: [N, QD]) : nil
        let dkRaw = config.queryKeyNorm ? Tensor(uninitialized: [N, KVD]) : nil
        /// dL/d(the input of the sublayer output norm `norm`) from dL/d(its output) `dout`, or `dout` without one.
        func throughOutputNorm(_ outputNorm: Tensor?, input: Tensor?, rstd: Tensor?, _ dout: Tensor) -> Tensor {
            guard let outputNorm, let input, let rstd, let dsublayer else { return dout }
            zero(dsublayer)
            rmsnormBackward(dsublayer.pointer, norm(outputNorm), dout.pointer, input.pointer, outputNorm.pointer, rstd.pointer,
                            N: N, C: C, weightOffset: offset)
            return dsublayer
        }
        for (w, a) in zip(layers, f.layers).reversed() {
            // MLP block; dx holds dL/d(out) and, through the residual, becomes dL/d(mid).
            zero(dproduct, dgate, dup, dnorm)
            let ddown = throughOutputNorm(w.mlpOutputNorm, input: a.down, rstd: a.mlpOutputRstd, dx)
            linearBackward(dproduct, matrix(w.downProj), ddown, a.product, w.downProj, N: N, C: F, OC: C)
            switch config.activation {
            case .silu: swigluBackward(dgate.pointer, dup.pointer, dproduct.pointer, a.gate.pointer, a.up.pointer, count: N * F)
            case .geluTanh: gegluBackward(dgate.pointer, dup.pointer, dproduct.pointer, a.gate.pointer, a.up.pointer, count: N * F)
            }
            linearBackward(dnorm, matrix(w.gateProj), dgate, a.norm2, w.gateProj, N: N, C: C, OC: F)
            linearBackward(dnorm, matrix(w.upProj), dup, a.norm2, w.upProj, N: N, C: C, OC: F)
            rmsnormBackward(dx.pointer, norm(w.preMLPNorm), dnorm.pointer, a.mid.pointer,
                            w.preMLPNorm.pointer, a.rstd2.pointer, N: N, C: C, weightOffset: offset)
            // Attention block; dx becomes dL/d(input).
            zero(dattention, dq, dk, dv, dnorm)
            let dprojection = throughOutputNorm(w.attentionOutputNorm, input: a.attentionProjection, rstd: a.attentionOutputRstd, dx)
            linearBackward(dattention, matrix(w.oProj), dprojection, a.attention, w.oProj, N: N, C: QD, OC: C)
            attentionBackward(dq.pointer, dk.pointer, dv.pointer, dattention.pointer, a.q.pointer, a.k.pointer, a.v.pointer,
                              a.attention.pointer, a.lse.pointer, B: B, T: T, NH: NH, NKV: NKV, D: D, keyMask: f.keyMask(w.kind),
                              scale: config.attentionScale, softcap: config.attentionSoftcap)
            ropeBackward(dq.pointer, w.rope, B: B, T: T, NH: NH, D: D, positions: positions)
            ropeBackward(dk.pointer, w.rope, B: B, T: T, NH: NKV, D: D, positions: positions)
            // The projections saw the RoPE'd outputs only through the (linear) rotation, undone above,
            // and through the per-head norms, undone here.
            for (dout, draw, raw, rstd, headNorm, weight, bias, width, heads) in [
                (dq, dqRaw, a.qRaw, a.qRstd, w.qNorm, w.qProj, w.qBias, QD, NH),
                (dk, dkRaw, a.kRaw, a.kRstd, w.kNorm, w.kProj, w.kBias, KVD, NKV),
                (dv, nil, nil, nil, nil, w.vProj, w.vBias, KVD, NKV)] {
                var dprojected = dout
                if let draw, let raw, let rstd, let headNorm {
                    zero(draw)
                    rmsnormBackward(draw.pointer, norm(headNorm), dout.pointer, raw.pointer, headNorm.pointer, rstd.pointer,
                                    N: N * heads, C: D, weightOffset: offset)
                    dprojected = draw
                }
                if let bias, let dbias = norm(bias) { biasBackward(dbias, dprojected.pointer, N: N, C: width) }
                linearBackward(dnorm, matrix(weight), dprojected, a.norm1, weight, N: N, C: C, OC: width)
            }
            rmsnormBackward(dx.pointer, norm(w.preAttentionNorm), dnorm.pointer, a.input.pointer, w.preAttentionNorm.pointer,
                            a.rstd1.pointer, N: N, C: C, weightOffset: offset)
        }
        if let dEmbedding = grad(embedding, accumulates: true) {
            if config.scalesEmbeddings { scale(dx.pointer, by: embeddingScale, count: dx.count) }
            f.input.tokens.withUnsafeBufferPointer {
                embeddingBackward(dEmbedding, $0.baseAddress!, dx.pointer, N: N, C: C, V: config.vocab)
            }
        }
        return parameters.entries.map { grads[ObjectIdentifier($0.tensor)] }
    }

    /// A gradient buffer for parameter `p`, zero-filled if `zeroed`, else with unspecified contents.
    /// The storage handed out by the previous backward is reused when nobody else holds it any more
    /// (the optimizer step is done and `zeroGrad` released it), so a training step neither allocates
    /// nor page-faults a new set of gradients (540 MB for SmolLM2-135M). While the caller still holds
    /// it (gradient accumulation over micro-batches), a fresh buffer is returned, which the autodiff
    /// engine adds to the held one; nothing is ever written into a gradient after it was returned.
    private func gradientBuffer(for p: Tensor, zeroed: Bool) -> Tensor {
        let key = ObjectIdentifier(p)
        if gradientStorages[key] == nil || !isKnownUniquelyReferenced(&gradientStorages[key]!) {
            gradientStorages[key] = TensorStorage(uninitializedCount: p.count)
        }
        let g = Tensor(shape: p.shape, storage: gradientStorages[key]!)
        if zeroed { g.pointer.update(repeating: 0, count: g.count) }
        return g
    }
}

/// dinp [N,C] += dout [N,OC] · weight [OC,C];  dweight [OC,C] = dout [N,OC]ᵀ · inp [N,C] (written, not
/// accumulated: each weight is used once per forward, so its buffer needs no zeroing beforehand).
private func linearBackward(_ dinp: Tensor, _ dweight: UnsafeMutablePointer<Float>?, _ dout: Tensor, _ inp: Tensor,
                            _ weight: Tensor, N: Int, C: Int, OC: Int) {
    matmulBackward(dinp.pointer, nil, dout.pointer, inp.pointer, weight.pointer, N: N, C: C, OC: OC)
    guard let dweight else { return }
    Profiler.measure("matmul.backward.weight") {
        parallelSgemm(transA: true, transB: false, M: OC, N: C, K: N, dout.pointer, lda: OC, inp.pointer, ldb: C,
                      beta: 0, dweight, ldc: C)
    }
}

/// x += y over `count` floats.
func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
    ThreadPool.shared.parallelFor(count, grain: 16_384) { range in
        for i in range { x[i] += y[i] }
    }
}

private func zero(_ tensors: Tensor...) {
    for t in tensors { t.pointer.update(repeating: 0, count: t.count) }
}

/// x *= factor over `count` floats.
private func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
    for i in 0..<count { x[i] *= factor }
}

/// The key mask [B,T,3] of sliding-window layers (`attentionForward`'s format): each query sees only
/// the keys less than `window` positions before it (itself included, as transformers'
/// `kv_idx > q_idx − sliding_window`), within what the packed layout, if any, already lets it see.
final class SlidingWindowMask {
    let keyMask: UnsafeMutablePointer<Int32>
    private let count: Int

    init(B: Int, T: Int, window: Int, layout: PackedLayout?) {
        count = 3 * B * T
        keyMask = .allocate(capacity: count)
        for b in 0..<B {
            for t in 0..<T {
                let bt = b * T + t, m = keyMask + 3 * bt
                guard let layout else {
                    (m[0], m[1], m[2]) = (Int32(max(0, t - window + 1)), 0, 0)
                    continue
                }
                // Packed rows: positions restart per sequence and a span may be hidden, so the first
                // key within the window is found by walking the visible keys from the layout's first.
                let base = layout.keyMask + 3 * bt, row = layout.positions + b * T
                let hidden = Int(base[1])..<Int(base[2])
                var first = Int(base[0])
                while first < t && (hidden.contains(first) || Int(row[t] - row[first]) >= window) {
                    first = hidden.contains(first) ? hidden.upperBound : first + 1
                }
                (m[0], m[1], m[2]) = (Int32(first), base[1], base[2])
            }
        }
    }

    deinit { keyMask.deallocate() }
}

/// Explicit RoPE positions [B,T] and the attention key mask [B,T,3] of packed rows, at stable addresses
/// for the kernels from forward through backward.
final class PackedLayout {
    let positions: UnsafeMutablePointer<Int32>
    let keyMask: UnsafeMutablePointer<Int32>

    init(positions: [Int32], keyMask: [Int32]) {
        self.positions = .allocate(capacity: positions.count)
        self.positions.initialize(from: positions, count: positions.count)
        self.keyMask = .allocate(capacity: keyMask.count)
        self.keyMask.initialize(from: keyMask, count: keyMask.count)
    }

    deinit {
        positions.deallocate()
        keyMask.deallocate()
    }
}

/// out [R,C] = inp [N,C] at rows (R = rows.count): the rows a head reads.
func gatherRowsForward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: [Int], C: Int) {
    for (r, n) in rows.enumerated() { (out + r * C).update(from: inp + n * C, count: C) }
}

/// dinp [N,C] at rows += dout [R,C]; a row listed twice receives both gradients.
func gatherRowsBackward(_ dinp: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, rows: [Int], C: Int) {
    for (r, n) in rows.enumerated() {
        for c in 0..<C { dinp[n * C + c] += dout[r * C + c] }
    }
}
