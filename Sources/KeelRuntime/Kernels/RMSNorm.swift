// RMSNorm (Zhang & Sennrich 2019), as in HF LlamaRMSNorm: out = (x · rstd) · weight,
// rstd = 1/sqrt(mean(x²) + eps). No mean subtraction and no bias, unlike LayerNorm.

/// out [N,C], rstd [N] (saved for backward) ← inp [N,C], weight [C]
public func rmsnormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
                           _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                           N: Int, C: Int, eps: Float) {
    let token = Profiler.begin()
    defer { Profiler.end("rmsnorm.forward", token) }
    ThreadPool.shared.parallelFor(N, grain: 16) { rows in
        for n in rows {
            let x = inp + n * C, y = out + n * C
            let r = 1 / (dot(x, x, C) / Float(C) + eps).squareRoot()
            rstd[n] = r
            for i in 0..<C { y[i] = (x[i] * r) * weight[i] }
        }
    }
}

/// dinp [N,C] += ∂L/∂inp;  dweight [C] += Σ_n dout·x̂  (either may be nil)
///
/// With x̂ = x·rstd and g = dout·weight:  ∂L/∂x = rstd · (g − x̂ · mean(g·x̂)).
/// The weight gradient is summed per ThreadPool chunk and the chunks added in order (deterministic).
public func rmsnormBackward(_ dinp: UnsafeMutablePointer<Float>?, _ dweight: UnsafeMutablePointer<Float>?,
                            _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>,
                            _ weight: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, N: Int, C: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("rmsnorm.backward", token) }
    let pool = ThreadPool.shared
    let grain = 16
    let chunks = pool.chunkCount(N, grain: grain)
    withZeroedScratch(chunks * C) { partial in
        pool.parallelFor(N, grain: grain) { chunk, rows in
            let dw = partial + chunk * C
            for n in rows {
                let x = inp + n * C, dy = dout + n * C, r = rstd[n]
                if let dinp {
                    var gxhat: Float = 0
                    for i in 0..<C { gxhat += dy[i] * weight[i] * x[i] }
                    let meanGXhat = gxhat * r / Float(C)
                    let dx = dinp + n * C
                    for i in 0..<C { dx[i] += r * (dy[i] * weight[i] - x[i] * r * meanGXhat) }
                }
                if dweight != nil {
                    for i in 0..<C { dw[i] += dy[i] * (x[i] * r) }
                }
            }
        }
        if let dweight {
            for chunk in 0..<chunks {
                for i in 0..<C { dweight[i] += partial[chunk * C + i] }
            }
        }
    }
}
