// SwiGLU feed-forward gate (Shazeer 2020, "GLU Variants Improve Transformer"): out = silu(gate) · up,
// silu(x) = x·σ(x). Fused so the [N,H] silu(gate) intermediate is never stored.

/// out [N·H] ← gate [N·H], up [N·H]
public func swigluForward(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>,
                          _ up: UnsafePointer<Float>, count: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("swiglu.forward", token) }
    ThreadPool.shared.parallelFor(count, grain: 4096) { range in
        for i in range {
            let g = gate[i]
            out[i] = g * fastSigmoid(g) * up[i]
        }
    }
}

/// dgate += dout · up · silu'(gate),  dup += dout · silu(gate),  silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
public func swigluBackward(_ dgate: UnsafeMutablePointer<Float>, _ dup: UnsafeMutablePointer<Float>,
                           _ dout: UnsafePointer<Float>, _ gate: UnsafePointer<Float>,
                           _ up: UnsafePointer<Float>, count: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("swiglu.backward", token) }
    ThreadPool.shared.parallelFor(count, grain: 4096) { range in
        for i in range {
            let g = gate[i], s = fastSigmoid(g), dy = dout[i]
            dgate[i] += dy * up[i] * s * (1 + g * (1 - s))
            dup[i] += dy * g * s
        }
    }
}
