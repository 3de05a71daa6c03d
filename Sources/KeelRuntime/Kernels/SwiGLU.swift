// SwiGLU feed-forward gate (Shazeer 2020, "GLU Variants Improve Transformer"): out = silu(gate) · up,
// silu(x) = x·σ(x). Fused so the [N,H] silu(gate) intermediate is never stored.

/// out [N·H] ← gate [N·H], up [N·H]
public func swigluForward(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>,
                          _ up: UnsafePointer<Float>, count: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("swiglu.forward", token) }
    ThreadPool.shared.parallelFor(count, grain: 4096) { range in
        forEachVector(range.lowerBound, range.upperBound) { i, lanes in
            let g = load8(gate + i, lanes: lanes)
            store8(g * fastSigmoid(g) * load8(up + i, lanes: lanes), out + i, lanes: lanes)
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
        forEachVector(range.lowerBound, range.upperBound) { i, lanes in
            let g = load8(gate + i, lanes: lanes), s = fastSigmoid(g), dy = load8(dout + i, lanes: lanes)
            let dsilu = s * (1 + g * (1 - s))
            store8(load8(dgate + i, lanes: lanes) + dy * load8(up + i, lanes: lanes) * dsilu, dgate + i, lanes: lanes)
            store8(load8(dup + i, lanes: lanes) + dy * g * s, dup + i, lanes: lanes)
        }
    }
}
