import Foundation

// Logit soft-capping (Gemma 2, Team Gemma 2024, "Gemma 2: Improving Open Language Models at a Practical
// Size", §2): y = cap · tanh(x / cap) bounds logits to (−cap, cap) smoothly. The attention and LM-head
// kernels apply it to their score blocks with these scalar functions; the buffer pair serves tests and
// any op that caps a stored tensor.

/// cap · tanh(x / cap).
@inline(__always)
public func softcapped(_ x: Float, cap: Float) -> Float { cap * Foundation.tanh(x / cap) }

/// dy/dx of y = cap · tanh(x / cap), from the output: 1 − (y / cap)².
@inline(__always)
public func softcapSlope(output y: Float, cap: Float) -> Float {
    let t = y / cap
    return 1 - t * t
}

/// In place: x [count] ← cap · tanh(x / cap).
public func softcapForward(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
    for i in 0..<count { x[i] = softcapped(x[i], cap: cap) }
}

/// In place: dy [count] ← ∂L/∂x = dy · (1 − (y / cap)²), y [count] the forward's output.
public func softcapBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int, cap: Float) {
    for i in 0..<count { dy[i] *= softcapSlope(output: y[i], cap: cap) }
}
