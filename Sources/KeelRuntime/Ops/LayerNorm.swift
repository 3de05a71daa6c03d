import Foundation

extension Tensor {
    /// Layer normalisation over the last axis (Ba, Kiros & Hinton 2016), biased variance as PyTorch.
    ///
    /// Forward   x: [..., D], weight: [D], bias: [D] (optional) → y: [..., D]
    ///   μ = mean x,  σ² = mean (x − μ)²,  r = 1/√(σ² + eps),  x̂ = (x − μ)·r,  y = x̂·w + b
    /// Backward (llm.c layernorm_backward; per row, x̂ recomputed from the saved μ and r)
    ///   dx̂ = g·w,  dx = r·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)),  dw = Σ_rows g·x̂,  db = Σ_rows g
    public func layerNorm(weight: Tensor, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        let d = shape.last ?? 0
        precondition(weight.shape == [d] && (bias?.shape ?? [d]) == [d],
                     "layerNorm: input \(shape) needs weight/bias of shape [\(d)], got \(weight.shape) / "
                     + "\(bias.map { "\($0.shape)" } ?? "none")")
        let rowCount = d == 0 ? 0 : count / d
        let out = Tensor(uninitialized: shape)
        let stats = Tensor(uninitialized: [rowCount, 2])   // (μ, r) per row, saved for backward
        let px = pointer, py = out.pointer, pw = weight.pointer, ps = stats.pointer
        let pb = bias?.pointer
        for row in 0..<rowCount {
            let x = px + row * d, y = py + row * d
            let mu = sumOf(x, d) / Float(d)
            var variance: Float = 0
            for i in 0..<d { variance += (x[i] - mu) * (x[i] - mu) }
            let r = 1 / (variance / Float(d) + eps).squareRoot()
            ps[2 * row] = mu
            ps[2 * row + 1] = r
            if let pb {
                for i in 0..<d { y[i] = (x[i] - mu) * r * pw[i] + pb[i] }
            } else {
                for i in 0..<d { y[i] = (x[i] - mu) * r * pw[i] }
            }
        }
        let inputs = [self, weight] + (bias.map { [$0] } ?? [])
        let (x, w) = (detached(), weight.detached())
        let (needX, needW, needB, hasBias) = (requiresGrad, weight.requiresGrad, bias?.requiresGrad ?? false, bias != nil)
        return Tensor.record(op: "layerNorm", inputs: inputs, output: out) { g in
            let dx = needX ? Tensor(uninitialized: x.shape) : nil
            let dw = needW ? Tensor(zeros: [d]) : nil
            let db = needB ? Tensor(zeros: [d]) : nil
            let px = x.pointer, pg = g.pointer, pw = w.pointer, ps = stats.pointer
            for row in 0..<rowCount {
                let x = px + row * d, gr = pg + row * d
                let mu = ps[2 * row], r = ps[2 * row + 1]
                if let dw {
                    let p = dw.pointer
                    for i in 0..<d { p[i] += gr[i] * (x[i] - mu) * r }
                }
                if let db {
                    let p = db.pointer
                    for i in 0..<d { p[i] += gr[i] }
                }
                if let dx {
                    var meanDxhat: Float = 0, meanDxhatXhat: Float = 0
                    for i in 0..<d {
                        let dxhat = gr[i] * pw[i]
                        meanDxhat += dxhat
                        meanDxhatXhat += dxhat * (x[i] - mu) * r
                    }
                    meanDxhat /= Float(d)
                    meanDxhatXhat /= Float(d)
                    let out = dx.pointer + row * d
                    for i in 0..<d { out[i] = r * (gr[i] * pw[i] - meanDxhat - (x[i] - mu) * r * meanDxhatXhat) }
                }
            }
            return [dx, dw] + (hasBias ? [db] : [])
        }
    }
}
