import Foundation

// GeGLU feed-forward gate (Shazeer 2020, "GLU Variants Improve Transformer"), as Gemma uses it:
// out = gelu_tanh(gate) · up with PyTorch's tanh approximation (`gelu_pytorch_tanh`)
// gelu_tanh(x) = x/2 · (1 + tanh(a)),  a = √(2/π) · (x + 0.044715 x³).

private let geluScale: Float = 0.797_884_560_802_865_4   // √(2/π)
private let geluCubic: Float = 0.044_715

/// out [N·H] ← gate [N·H], up [N·H]:  out = gelu_tanh(gate) · up.
public func gegluForward(_ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>,
                         _ up: UnsafePointer<Float>, count: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("geglu.forward", token) }
    ThreadPool.shared.parallelFor(count, grain: 4096) { range in
        for i in range {
            let x = gate[i]
            let t = Foundation.tanh(geluScale * (x + geluCubic * x * x * x))
            out[i] = 0.5 * x * (1 + t) * up[i]
        }
    }
}

/// dgate += dout · up · gelu_tanh'(gate),  dup += dout · gelu_tanh(gate), with
/// gelu_tanh'(x) = (1 + tanh a)/2 + x/2 · (1 − tanh² a) · √(2/π) · (1 + 3·0.044715 x²).
public func gegluBackward(_ dgate: UnsafeMutablePointer<Float>, _ dup: UnsafeMutablePointer<Float>,
                          _ dout: UnsafePointer<Float>, _ gate: UnsafePointer<Float>,
                          _ up: UnsafePointer<Float>, count: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("geglu.backward", token) }
    ThreadPool.shared.parallelFor(count, grain: 4096) { range in
        for i in range {
            let x = gate[i], dy = dout[i]
            let t = Foundation.tanh(geluScale * (x + geluCubic * x * x * x))
            let slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * geluScale * (1 + 3 * geluCubic * x * x)
            dgate[i] += dy * up[i] * slope
            dup[i] += dy * 0.5 * x * (1 + t)
        }
    }
}
