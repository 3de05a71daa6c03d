/// Broadcasting arithmetic: add, sub, mul, div, neg, and their tensor-scalar forms.
///
/// Forward  out = a ⊙ b   a: A, b: B, out: broadcastShapes(A, B)
/// Backward each input's gradient is computed at the output shape and summed over the axes it was
///          broadcast along (`sum(toShape:)`), so e.g. a bias [D] added to [B, T, D] gets Σ_{b,t} g.
///   add  da = g            db = g
///   sub  da = g            db = −g
///   mul  da = g·b          db = g·a
///   div  da = g / b        db = −g·a / b²

protocol BinaryKernel {
    static func apply(_ a: Float, _ b: Float) -> Float
}
enum AddKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b } }

/// out = K(a, b) with broadcasting; no graph recording. The three inner loops are the stride patterns a
/// `BroadcastPlan` row can have (both contiguous / b repeated / a repeated); each vectorizes.
@inline(__always)
func broadcastBinary<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _ kernel: K.Type, op: String) -> Tensor {
    let pa = a.pointer, pb = b.pointer
    if a.shape == b.shape {
        let out = Tensor(uninitialized: a.shape)
        let po = out.pointer
        for i in 0..<out.count { po[i] = K.apply(pa[i], pb[i]) }
        return out
    }
    let out = Tensor(uninitialized: broadcastShape(op, a.shape, b.shape))
    let plan = BroadcastPlan(shape: out.shape, operands: [a.shape, b.shape])
    let po = out.pointer
    let n = plan.rowLength
    switch (plan.innerStride(0), plan.innerStride(1)) {
    case (0, 0):
        plan.forEachRow { row, offsets in
            let value = K.apply(pa[offsets[0]], pb[offsets[1]])
            (po + row * n).update(repeating: value, count: n)
        }
    case (_, 0):
        plan.forEachRow { row, offsets in
            let o = po + row * n, x = pa + offsets[0], y = pb[offsets[1]]
            for i in 0..<n { o[i] = K.apply(x[i], y) }
        }
    case (0, _):
        plan.forEachRow { row, offsets in
            let o = po + row * n, x = pa[offsets[0]], y = pb + offsets[1]
            for i in 0..<n { o[i] = K.apply(x, y[i]) }
        }
    default:
        plan.forEachRow { row, offsets in
            let o = po + row * n, x = pa + offsets[0], y = pb + offsets[1]
            for i in 0..<n { o[i] = K.apply(x[i], y[i]) }
        }
    }
    return out
}

extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, AddKernel.self, op: "add")
        let (needA, needB, shapeA, shapeB) = (a.requiresGrad, b.requiresGrad, a.shape, b.shape)
        return record(op: "add", inputs: [a, b], output: out) { g in
            [needA ? g.sum(toShape: shapeA) : nil, needB ? g.sum(toShape: shapeB) : nil]
        }
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, SubKernel.self, op: "sub")
        let (needA, needB, shapeA, shapeB) = (a.requiresGrad, b.requiresGrad, a.shape, b.shape)
        return record(op: "sub", inputs: [a, b], output: out) { g in
            [needA ? g.sum(toShape: shapeA) : nil, needB ? (-g).sum(toShape: shapeB) : nil]
        }
    }

    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, MulKernel.self, op: "mul")
        // Save each factor only if the other one needs its gradient.
        let (savedA, savedB) = (b.requiresGrad ? a.detached() : nil, a.requiresGrad ? b.detached() : nil)
        let (shapeA, shapeB) = (a.shape, b.shape)
        return record(op: "mul", inputs: [a, b], output: out) { g in
            [savedB.map { (g * $0).sum(toShape: shapeA) }, savedA.map { (g * $0).sum(toShape: shapeB) }]
        }
    }

    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = broadcastBinary(a, b, DivKernel.self, op: "div")
        // −g·a/b² = −g·(a/b)/b: saves the quotient (never the output tensor itself: out → node → closure
        // → out would be a cycle) and the divisor.
        let quotient = b.requiresGrad ? out.detached() : nil
        let (needA, divisor, shapeA, shapeB) = (a.requiresGrad, b.detached(), a.shape, b.shape)
        return record(op: "div", inputs: [a, b], output: out) { g in
            [needA ? (g / divisor).sum(toShape: shapeA) : nil,
             quotient.map { (-(g * $0) / divisor).sum(toShape: shapeB) }]
        }
    }

    /// out = −x
    public static prefix func - (x: Tensor) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        let px = x.pointer, po = out.pointer
        for i in 0..<x.count { po[i] = -px[i] }
        return record(op: "neg", inputs: [x], output: out) { g in [-g] }
    }

    // Tensor-scalar forms: the scalar is a constant rank-0 tensor, broadcast with stride 0.
    public static func + (a: Tensor, b: Float) -> Tensor { a + Tensor.scalar(b) }
    public static func + (a: Float, b: Tensor) -> Tensor { Tensor.scalar(a) + b }
    public static func - (a: Tensor, b: Float) -> Tensor { a - Tensor.scalar(b) }
    public static func - (a: Float, b: Tensor) -> Tensor { Tensor.scalar(a) - b }
    public static func * (a: Tensor, b: Float) -> Tensor { a * Tensor.scalar(b) }
    public static func * (a: Float, b: Tensor) -> Tensor { Tensor.scalar(a) * b }
    public static func / (a: Tensor, b: Float) -> Tensor { a / Tensor.scalar(b) }
    public static func / (a: Float, b: Tensor) -> Tensor { Tensor.scalar(a) / b }
}
