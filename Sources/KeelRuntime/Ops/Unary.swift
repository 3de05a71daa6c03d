import Foundation

/// Elementwise functions y = f(x), x and y of the same shape, with backward dx = g · f′(x).
/// Each kernel states f and f′; f′ may use y = f(x) when that is cheaper or more stable.
protocol UnaryKernel {
    static func forward(_ x: Float) -> Float
    static func derivative(x: Float, y: Float) -> Float
    /// Whether `derivative` reads y (then the output is saved for backward; otherwise the input is).
    static var derivativeUsesOutput: Bool { get }
}

extension UnaryKernel {
    static var derivativeUsesOutput: Bool { false }
}

/// exp: f′ = y
enum ExpKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.exp(x) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { y }
}

/// log: f′ = 1/x
enum LogKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { 1 / x }
}

/// σ(x) = 1/(1+e^−x), evaluated so that e^… never overflows; f′ = y(1−y)
enum SigmoidKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { stableSigmoid(x) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { y * (1 - y) }
}

/// log σ(x) = min(x, 0) − log1p(e^−|x|) (stable for |x| large); f′ = σ(−x)
enum LogSigmoidKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Swift.min(x, 0) - Foundation.log1p(Foundation.exp(-abs(x))) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { stableSigmoid(-x) }
}

/// softplus(x) = log(1+e^x) = max(x, 0) + log1p(e^−|x|); f′ = σ(x)
enum SoftplusKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-abs(x))) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { stableSigmoid(x) }
}

/// tanh: f′ = 1 − y²
enum TanhKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.tanh(x) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { 1 - y * y }
}

/// SiLU (swish) x·σ(x); f′ = σ(x)(1 + x(1 − σ(x)))
enum SiluKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x * stableSigmoid(x) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float {
        let s = stableSigmoid(x)
        return s * (1 + x * (1 - s))
    }
}

/// GELU, TANH APPROXIMATION (Hendrycks & Gimpel 2016; GPT-2, PyTorch approximate="tanh"):
///   f(x) = ½x(1 + tanh(u)),  u = √(2/π)(x + 0.044715x³)
///   f′(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)
enum GeluTanhKernel: UnaryKernel {
    static let c: Float = 0.797_884_560_802_865_4   // √(2/π)
    static let k: Float = 0.044_715
    @inline(__always) static func forward(_ x: Float) -> Float {
        0.5 * x * (1 + Foundation.tanh(c * (x + k * x * x * x)))
    }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float {
        let t = Foundation.tanh(c * (x + k * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x)
    }
}

/// relu = max(x, 0); f′ = 1 for x > 0, else 0 (0 at x = 0, as PyTorch)
enum ReluKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Swift.max(x, 0) }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { x > 0 ? 1 : 0 }
}

/// √x; f′ = 1/(2y)
enum SqrtKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { x.squareRoot() }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { 0.5 / y }
}

/// x²; f′ = 2x
enum SquareKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x * x }
    @inline(__always) static func derivative(x: Float, y: Float) -> Float { 2 * x }
}

/// σ(x) without overflow: for x ≥ 0, 1/(1+e^−x); for x < 0, e^x/(1+e^x).
@inline(__always)
func stableSigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
    let e = Foundation.exp(x)
    return e / (1 + e)
}

extension Tensor {
    @inline(__always)
    func unary<K: UnaryKernel>(_ kernel: K.Type, op: String) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let px = pointer, py = out.pointer
        for i in 0..<count { py[i] = K.forward(px[i]) }
        // Save one of x and y: the derivative of each kernel reads only one of them.
        let saved = K.derivativeUsesOutput ? out.detached() : detached()
        return Tensor.record(op: op, inputs: [self], output: out) { g in
            let dx = Tensor(uninitialized: saved.shape)
            let pg = g.pointer, pd = dx.pointer, ps = saved.pointer
            if K.derivativeUsesOutput {
                for i in 0..<saved.count { pd[i] = pg[i] * K.derivative(x: .nan, y: ps[i]) }
            } else {
                for i in 0..<saved.count { pd[i] = pg[i] * K.derivative(x: ps[i], y: .nan) }
            }
            return [dx]
        }
    }

    public func exp() -> Tensor { unary(ExpKernel.self, op: "exp") }
    public func log() -> Tensor { unary(LogKernel.self, op: "log") }
    public func sigmoid() -> Tensor { unary(SigmoidKernel.self, op: "sigmoid") }
    /// log σ(x), stable: min(x, 0) − log1p(exp(−|x|)).
    public func logSigmoid() -> Tensor { unary(LogSigmoidKernel.self, op: "logSigmoid") }
    /// log(1 + eˣ), stable: max(x, 0) + log1p(exp(−|x|)).
    public func softplus() -> Tensor { unary(SoftplusKernel.self, op: "softplus") }
    public func tanh() -> Tensor { unary(TanhKernel.self, op: "tanh") }
    public func silu() -> Tensor { unary(SiluKernel.self, op: "silu") }
    /// GELU with the tanh approximation (PyTorch `gelu(approximate="tanh")`), not the erf form.
    public func gelu() -> Tensor { unary(GeluTanhKernel.self, op: "gelu") }
    public func relu() -> Tensor { unary(ReluKernel.self, op: "relu") }
    public func sqrt() -> Tensor { unary(SqrtKernel.self, op: "sqrt") }
    public func square() -> Tensor { unary(SquareKernel.self, op: "square") }

    /// min(max(x, lower), upper). Gradient passes where lower ≤ x ≤ upper (as PyTorch), else 0.
    ///   x: S → S
    public func clamp(min lower: Float = -.infinity, max upper: Float = .infinity) -> Tensor {
        precondition(lower <= upper, "clamp: min \(lower) > max \(upper)")
        let out = Tensor(uninitialized: shape)
        let px = pointer, py = out.pointer
        for i in 0..<count { py[i] = Swift.min(Swift.max(px[i], lower), upper) }
        let x = detached()
        return Tensor.record(op: "clamp", inputs: [self], output: out) { g in
            let dx = Tensor(uninitialized: x.shape)
            let pg = g.pointer, pd = dx.pointer, px = x.pointer
            for i in 0..<x.count { pd[i] = px[i] >= lower && px[i] <= upper ? pg[i] : 0 }
            return [dx]
        }
    }
}
