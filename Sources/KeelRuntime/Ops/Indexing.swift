/// Index-driven ops: gather along the last axis, embedding lookup, select / maskedFill.
extension Tensor {
    /// out[r] = x[r, indices[r]]: picks one entry per row, e.g. the target token's log-probability.
    ///   x: [..., V], indices: R = count/V values in 0..<V  →  [...]
    /// Backward: dx = zeros with g[r] scattered to (r, indices[r]).
    public func gatherLastAxis(_ indices: [Int]) -> Tensor {
        precondition(rank >= 1, "gatherLastAxis: tensor of shape \(shape) has no last axis")
        let v = shape[rank - 1]
        let rowCount = Array(shape.dropLast()).reduce(1, *)
        precondition(indices.count == rowCount,
                     "gatherLastAxis: \(indices.count) indices for \(rowCount) rows of shape \(shape)")
        let out = Tensor(uninitialized: Array(shape.dropLast()))
        let px = pointer, po = out.pointer
        for r in 0..<rowCount {
            let index = indices[r]
            precondition(index >= 0 && index < v, "gatherLastAxis: index \(index) at row \(r) outside 0..<\(v)")
            po[r] = px[r * v + index]
        }
        return Tensor.record(op: "gatherLastAxis", inputs: [self], output: out) { [shape] g in
            let dx = Tensor(zeros: shape)
            let pd = dx.pointer, pg = g.pointer
            for r in 0..<rowCount { pd[r * v + indices[r]] = pg[r] }
            return [dx]
        }
    }

    /// Rows of `weight` selected by token ids.
    ///   weight: [V, D], ids: shape S (count ids)  →  S + [D]
    /// Backward: dweight[id] += g[position] for every position holding id (scatter-add; repeated ids sum).
    public static func embedding(_ weight: Tensor, ids: [Int], shape idShape: [Int]? = nil) -> Tensor {
        precondition(weight.rank == 2, "embedding: weight must be [vocab, dim], got \(weight.shape)")
        let idShape = idShape ?? [ids.count]
        precondition(idShape.reduce(1, *) == ids.count,
                     "embedding: id shape \(idShape) does not hold \(ids.count) ids")
        let (vocab, d) = (weight.shape[0], weight.shape[1])
        let out = Tensor(uninitialized: idShape + [d])
        for (position, id) in ids.enumerated() {
            precondition(id >= 0 && id < vocab, "embedding: id \(id) at position \(position) outside 0..<\(vocab)")
            (out.pointer + position * d).update(from: weight.pointer + id * d, count: d)
        }
        let weightShape = weight.shape
        return record(op: "embedding", inputs: [weight], output: out) { g in
            let dw = Tensor(zeros: weightShape)
            let pw = dw.pointer, pg = g.pointer
            for (position, id) in ids.enumerated() {
                let dst = pw + id * d, src = pg + position * d
                for i in 0..<d { dst[i] += src[i] }
            }
            return [dw]
        }
    }

    /// Elementwise choice: out = condition ≠ 0 ? a : b, all three broadcast together (NumPy rules).
    /// Unlike `cond·a + (1−cond)·b` this is exact when the unchosen side is ±inf or NaN.
    ///   condition: C, a: A, b: B → broadcastShapes(C, A, B)
    /// Backward: da = Σ_broadcast (cond ? g : 0), db = Σ_broadcast (cond ? 0 : g); none for condition.
    public static func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        let outShape = broadcastShape("select", condition.shape, a.shape, b.shape)
        let out = Tensor(uninitialized: outShape)
        let plan = BroadcastPlan(shape: outShape, operands: [condition.shape, a.shape, b.shape])
        let n = plan.rowLength
        let (sc, sa, sb) = (plan.innerStride(0), plan.innerStride(1), plan.innerStride(2))
        let pc = condition.pointer, pa = a.pointer, pb = b.pointer, po = out.pointer
        plan.forEachRow { row, offsets in
            let c = pc + offsets[0], x = pa + offsets[1], y = pb + offsets[2], o = po + row * n
            for i in 0..<n { o[i] = c[i * sc] != 0 ? x[i * sa] : y[i * sb] }
        }
        let (needA, needB, shapeA, shapeB) = (a.requiresGrad, b.requiresGrad, a.shape, b.shape)
        let savedCondition = condition.detached()   // keeps the mask's storage alive for backward
        return record(op: "select", inputs: [condition, a, b], output: out) { g in
            func masked(keepWhere keep: Bool) -> Tensor {
                let d = Tensor(uninitialized: outShape)
                let cplan = BroadcastPlan(shape: outShape, operands: [savedCondition.shape])
                let pc = savedCondition.pointer, pd = d.pointer, pg = g.pointer
                let cn = cplan.rowLength, s = cplan.innerStride(0)
                cplan.forEachRow { row, offsets in
                    let c = pc + offsets[0], o = pd + row * cn, gr = pg + row * cn
                    for i in 0..<cn { o[i] = (c[i * s] != 0) == keep ? gr[i] : 0 }
                }
                return d
            }
            return [nil,
                    needA ? masked(keepWhere: true).sum(toShape: shapeA) : nil,
                    needB ? masked(keepWhere: false).sum(toShape: shapeB) : nil]
        }
    }

    /// `value` where `mask` ≠ 0, else self (mask broadcasts to self's shape), e.g. −inf attention masks.
    public func maskedFill(_ mask: Tensor, value: Float) -> Tensor {
        Tensor.select(mask, Tensor.scalar(value), self)
    }
}
