import Foundation

/// Softmax and log-softmax over the last axis, numerically stable (the row max is subtracted first, so
/// logits of ±1e4 neither overflow nor lose the winner).
///
/// Forward   x: [..., V] → y: [..., V]
///   logSoftmax  y = x − m − log Σ e^(x−m),   m = max x
///   softmax     y = e^(x−m) / Σ e^(x−m)
/// Backward (p = softmax, computed from the saved output)
///   logSoftmax  dx = g − p · Σ g
///   softmax     dx = p · (g − Σ g·p)
/// Masks: entries of −inf get probability 0 (log-probability −inf). A row that is −inf everywhere has
/// no distribution; we define its softmax as all zeros and its log-softmax as all −inf (rather than
/// NaN), so a fully masked attention row contributes nothing.
extension Tensor {
    public func softmax() -> Tensor { softmaxRows(log: false) }
    public func logSoftmax() -> Tensor { softmaxRows(log: true) }

    private func softmaxRows(log: Bool) -> Tensor {
        let op = log ? "logSoftmax" : "softmax"
        precondition(rank >= 1, "\(op): tensor of shape \(shape) has no last axis")
        let v = shape[rank - 1]
        let rowCount = v == 0 ? 0 : count / v
        let out = Tensor(uninitialized: shape)
        let px = pointer, py = out.pointer
        for r in 0..<rowCount {
            let x = px + r * v, y = py + r * v
            var m = -Float.infinity
            for i in 0..<v { m = Swift.max(m, x[i]) }
            if m == -.infinity {
                y.update(repeating: log ? -.infinity : 0, count: v)
                continue
            }
            var total: Float = 0
            for i in 0..<v {
                let e = Foundation.exp(x[i] - m)
                y[i] = e
                total += e
            }
            if log {
                let shift = m + Foundation.log(total)
                for i in 0..<v { y[i] = x[i] - shift }
            } else {
                let scale = 1 / total
                for i in 0..<v { y[i] *= scale }
            }
        }
        let saved = out.detached()
        return Tensor.record(op: op, inputs: [self], output: out) { [shape] g in
            let dx = Tensor(uninitialized: shape)
            let pg = g.pointer, py = saved.pointer, pd = dx.pointer
            for r in 0..<rowCount {
                let gr = pg + r * v, yr = py + r * v, dr = pd + r * v
                if log {
                    let gSum = sumOf(gr, v)
                    for i in 0..<v { dr[i] = gr[i] - Foundation.exp(yr[i]) * gSum }
                } else {
                    let gDotP = dotOf(gr, yr, v)
                    for i in 0..<v { dr[i] = yr[i] * (gr[i] - gDotP) }
                }
            }
            return [dx]
        }
    }
}
