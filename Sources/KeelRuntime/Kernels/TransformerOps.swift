// The fused transformer kernels as differentiable `Tensor` ops (see Autodiff.swift for the contract):
// each op runs its forward kernel eagerly and records a closure that runs the backward kernel.
// Gradients are returned in fresh buffers (the kernels accumulate, so they start from zeros);
// inputs that do not require grad get `nil` and cost no backward work. Closures save detached views
// of what backward reads and the requiresGrad flags as they were at forward time.

extension Tensor {
    /// Linear layer without bias in the PyTorch/HF layout, sgemm split over `ThreadPool.shared`:
    ///   self [..., C] · weight [OC, C]ᵀ → [..., OC]
    public func linear(_ weight: Tensor) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && weight.shape[1] == shape[rank - 1],
                     "linear: input \(shape) does not match weight [out, in] = \(weight.shape)")
        let (C, OC) = (weight.shape[1], weight.shape[0])
        let N = count / Swift.max(C, 1)
        let out = Tensor(uninitialized: Array(shape.dropLast()) + [OC])
        matmulForward(out.pointer, pointer, weight.pointer, N: N, C: C, OC: OC)
        let (x, w) = (detached(), weight.detached())
        let (needX, needW) = (requiresGrad, weight.requiresGrad)
        return Tensor.record(op: "linear", inputs: [self, weight], output: out) { g in
            let dx = needX ? Tensor(zeros: x.shape) : nil
            let dw = needW ? Tensor(zeros: w.shape) : nil
            matmulBackward(dx?.pointer, dw?.pointer, g.pointer, x.pointer, w.pointer, N: N, C: C, OC: OC)
            return [dx, dw]
        }
    }

    /// RMSNorm over the last axis:  self [..., C], weight [C] → [..., C]  (see RMSNorm.swift).
    public func rmsNorm(weight: Tensor, eps: Float) -> Tensor {
        precondition(rank >= 1 && weight.shape == [shape[rank - 1]],
                     "rmsNorm: weight \(weight.shape) does not match the last axis of \(shape)")
        let C = weight.count
        let N = count / Swift.max(C, 1)
        let out = Tensor(uninitialized: shape), rstd = Tensor(uninitialized: [N])
        rmsnormForward(out.pointer, rstd.pointer, pointer, weight.pointer, N: N, C: C, eps: eps)
        let (x, w) = (detached(), weight.detached())
        let (needX, needW) = (requiresGrad, weight.requiresGrad)
        return Tensor.record(op: "rmsNorm", inputs: [self, weight], output: out) { g in
            let dx = needX ? Tensor(zeros: x.shape) : nil
            let dw = needW ? Tensor(zeros: w.shape) : nil
            rmsnormBackward(dx?.pointer, dw?.pointer, g.pointer, x.pointer, w.pointer, rstd.pointer, N: N, C: C)
            return [dx, dw]
        }
    }

    /// Rotary position embedding (HF rotate_half) at positions positionOffset + t:
    ///   self [B, T, NH, D] → [B, T, NH, D]
    public func rotaryEmbedding(_ table: RoPETable, positionOffset: Int = 0) -> Tensor {
        precondition(rank == 4, "rotaryEmbedding: expected [batch, time, heads, headDim], got \(shape)")
        let (B, T, NH, D) = (shape[0], shape[1], shape[2], shape[3])
        let out = copy()
        ropeForward(out.pointer, table, B: B, T: T, NH: NH, D: D, positionOffset: positionOffset)
        return Tensor.record(op: "rotaryEmbedding", inputs: [self], output: out) { g in
            let dx = g.copy()
            ropeBackward(dx.pointer, table, B: B, T: T, NH: NH, D: D, positionOffset: positionOffset)
            return [dx]
        }
    }

    /// Causal grouped-query self-attention, softmax(q·kᵀ/√D + causal mask)·v, fused (Attention.swift):
    ///   q [B, T, NH, D], k [B, T, NKV, D], v [B, T, NKV, D] → [B, T, NH, D]   (NH a multiple of NKV)
    public static func causalAttention(q: Tensor, k: Tensor, v: Tensor) -> Tensor {
        precondition(q.rank == 4 && k.rank == 4 && k.shape == v.shape && q.shape[0...1] == k.shape[0...1]
                     && q.shape[3] == k.shape[3] && k.shape[2] > 0 && q.shape[2] % k.shape[2] == 0,
                     "causalAttention: q \(q.shape), k \(k.shape), v \(v.shape) are not [B,T,NH,D], [B,T,NKV,D] ×2 "
                     + "with NH a multiple of NKV")
        let (B, T, NH, NKV, D) = (q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.shape[3])
        let out = Tensor(uninitialized: q.shape), lse = Tensor(uninitialized: [B, NH, T])
        attentionForward(out.pointer, lse.pointer, q.pointer, k.pointer, v.pointer, B: B, T: T, NH: NH, NKV: NKV, D: D)
        let (savedQ, savedK, savedV, savedOut) = (q.detached(), k.detached(), v.detached(), out.detached())
        let needs = (q.requiresGrad, k.requiresGrad, v.requiresGrad)
        return record(op: "causalAttention", inputs: [q, k, v], output: out) { g in
            let dq = Tensor(zeros: savedQ.shape), dk = Tensor(zeros: savedK.shape), dv = Tensor(zeros: savedV.shape)
            attentionBackward(dq.pointer, dk.pointer, dv.pointer, g.pointer, savedQ.pointer, savedK.pointer,
                              savedV.pointer, savedOut.pointer, lse.pointer, B: B, T: T, NH: NH, NKV: NKV, D: D)
            return [needs.0 ? dq : nil, needs.1 ? dk : nil, needs.2 ? dv : nil]
        }
    }

    /// SwiGLU gate: silu(gate) · up, elementwise on equal shapes (SwiGLU.swift).
    public static func swiglu(gate: Tensor, up: Tensor) -> Tensor {
        precondition(gate.shape == up.shape, "swiglu: gate \(gate.shape) and up \(up.shape) differ")
        let out = Tensor(uninitialized: gate.shape)
        swigluForward(out.pointer, gate.pointer, up.pointer, count: gate.count)
        let (savedGate, savedUp) = (gate.detached(), up.detached())
        let needs = (gate.requiresGrad, up.requiresGrad)
        return record(op: "swiglu", inputs: [gate, up], output: out) { g in
            let dgate = Tensor(zeros: savedGate.shape), dup = Tensor(zeros: savedUp.shape)
            swigluBackward(dgate.pointer, dup.pointer, g.pointer, savedGate.pointer, savedUp.pointer, count: savedGate.count)
            return [needs.0 ? dgate : nil, needs.1 ? dup : nil]
        }
    }

    /// Log-probability of each target token under the LM head, without materialising the logits
    /// (LMHead.swift):  self = hidden [..., C], weight [V, C] (the tied embedding), targets: one per row,
    /// in 0..<V or -1 (`ignoreIndex`: the row costs nothing and gets 0)  →  [...]
    public func targetLogProbs(weight: Tensor, targets: [Int], tiling: LMHeadTiling = LMHeadTiling()) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && weight.shape[1] == shape[rank - 1],
                     "targetLogProbs: hidden \(shape) does not match weight [vocab, channels] = \(weight.shape)")
        let (V, C) = (weight.shape[0], weight.shape[1])
        let N = count / Swift.max(C, 1)
        precondition(targets.count == N, "targetLogProbs: \(targets.count) targets for \(N) rows of \(shape)")
        for (n, t) in targets.enumerated() {
            precondition(t == Int(ignoreIndex) || (t >= 0 && t < V),
                         "targetLogProbs: target \(t) at row \(n) is neither \(ignoreIndex) nor in 0..<\(V)")
        }
        let ids = targets.map { Int32($0) }
        let logp = Tensor(uninitialized: Array(shape.dropLast())), lse = Tensor(uninitialized: [N])
        ids.withUnsafeBufferPointer {
            lmHeadLogProbForward(logp.pointer, lse.pointer, pointer, weight.pointer, $0.baseAddress!,
                                 N: N, C: C, V: V, tiling: tiling)
        }
        let (h, w) = (detached(), weight.detached())
        let (needH, needW) = (requiresGrad, weight.requiresGrad)
        return Tensor.record(op: "targetLogProbs", inputs: [self, weight], output: logp) { g in
            let dh = needH ? Tensor(zeros: h.shape) : nil
            let dw = needW ? Tensor(zeros: w.shape) : nil
            ids.withUnsafeBufferPointer {
                lmHeadLogProbBackward(dh?.pointer, dw?.pointer, g.pointer, h.pointer, w.pointer, $0.baseAddress!,
                                      lse.pointer, N: N, C: C, V: V, tiling: tiling)
            }
            return [dh, dw]
        }
    }

    /// Full logits of chosen rows for generation (e.g. each sequence's last real position); not
    /// differentiable, so the result is never linked into a graph:
    ///   self = hidden [N, C] (or [..., C], rows index the flattened rows), weight [V, C] → [rows.count, V]
    public func lmHeadLogits(weight: Tensor, rows: [Int]) -> Tensor {
        precondition(rank >= 1 && weight.rank == 2 && weight.shape[1] == shape[rank - 1],
                     "lmHeadLogits: hidden \(shape) does not match weight [vocab, channels] = \(weight.shape)")
        let (V, C) = (weight.shape[0], weight.shape[1])
        let N = count / Swift.max(C, 1)
        for (i, n) in rows.enumerated() {
            precondition(n >= 0 && n < N, "lmHeadLogits: row \(n) at index \(i) is outside 0..<\(N)")
        }
        let out = Tensor(uninitialized: [rows.count, V])
        KeelRuntime.lmHeadLogits(out.pointer, pointer, rows: rows, weight.pointer, C: C, V: V)
        return out
    }
}
