// RMSNorm (Zhang & Sennrich 2019), as in HF LlamaRMSNorm: out = (x · rstd) · weight,
// rstd = 1/sqrt(mean(x²) + eps). No mean subtraction and no bias, unlike LayerNorm. Gemma stores the
// weight as an offset from one (Gemma2RMSNorm: out = (x · rstd) · (1 + weight)): `weightOffset` 1.

/// out [N,C], rstd [N] (saved for backward) ← inp [N,C], weight [C];  out = x · rstd · (weightOffset + weight)
public func rmsnormForward(_ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>,
                           _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                           N: Int, C: Int, eps: Float, weightOffset: Float = 0) {
    let token = Profiler.begin()
    defer { Profiler.end("rmsnorm.forward", token) }
    ThreadPool.shared.parallelFor(N, grain: 16) { rows in
        for n in rows {
            let x = inp + n * C, y = out + n * C
            let r = 1 / (dotOf(x, x, C) / Float(C) + eps).squareRoot()
            rstd[n] = r
            for i in 0..<C { y[i] = (x[i] * r) * (weightOffset + weight[i]) }
        }
    }
}

/// dinp [N,C] += ∂L/∂inp;  dweight [C] += Σ_n dout·x̂  (either may be nil)
///
/// With x̂ = x·rstd and g = dout·(weightOffset + weight):  ∂L/∂x = rstd · (g − x̂ · mean(g·x̂)),
/// ∂L/∂weight = Σ_n dout·x̂ whatever the offset.
/// The weight gradient is summed per ThreadPool chunk and the chunks added in order (deterministic).
public func rmsnormBackward(_ dinp: UnsafeMutablePointer<Float>?, _ dweight: UnsafeMutablePointer<Float>?,
                            _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>,
                            _ weight: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, N: Int, C: Int,
                            weightOffset: Float = 0) {
    let token = Profiler.begin()
    defer { Profiler.end("rmsnorm.backward", token) }
    let pool = ThreadPool.shared
    let grain = 16
    let chunks = pool.chunkCount(N, grain: grain)
    // Per chunk: its weight-gradient partial sum [C], then a row of g = dout·weight [C].
    withZeroedScratch(chunks * 2 * C) { partial in
        pool.parallelFor(N, grain: grain) { chunk, rows in
            let dw = partial + chunk * 2 * C, g = dw + C
            for n in rows {
                let x = inp + n * C, dy = dout + n * C, r = rstd[n]
                if let dinp {
                    for i in 0..<C { g[i] = dy[i] * (weightOffset + weight[i]) }
                    let meanGXhat = dotOf(g, x, C) * r / Float(C)
                    let dx = dinp + n * C
                    for i in 0..<C { dx[i] += r * (g[i] - x[i] * r * meanGXhat) }
                }
                if dweight != nil {
                    for i in 0..<C { dw[i] += dy[i] * (x[i] * r) }
                }
            }
        }
        if let dweight {
            for chunk in 0..<chunks {
                for i in 0..<C { dweight[i] += partial[chunk * 2 * C + i] }
            }
        }
    }
}
