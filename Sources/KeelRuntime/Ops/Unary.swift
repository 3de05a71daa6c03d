import Foundation

/// Elementwise functions y = f(x), x and y of the same shape, with backward dx = g · f′(x).
/// Each kernel states f and f′, written in terms of x or, when that is cheaper, of y = f(x); only that
/// one value is saved for backward.
protocol UnaryKernel {
    static func forward(_ x: Float) -> Float
    /// f′ from the saved value: y when `derivativeUsesOutput`, else x.
    static func derivative(_ saved: Float) -> Float
    static var derivativeUsesOutput: Bool { get }
}

extension UnaryKernel {
    static var derivativeUsesOutput: Bool { false }
}

/// exp: f′ = y
enum ExpKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.exp(x) }
    @inline(__always) static func derivative(_ y: Float) -> Float { y }
}

/// log: f′ = 1/x
enum LogKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) static func derivative(_ x: Float) -> Float { 1 / x }
}

/// σ(x) = 1/(1+e^−x), evaluated so that e^… never overflows; f′ = y(1−y)
enum SigmoidKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { stableSigmoid(x) }
    @inline(__always) static func derivative(_ y: Float) -> Float { y * (1 - y) }
}

/// log σ(x) = min(x, 0) − log1p(e^−|x|) (stable for |x| large); f′ = σ(−x)
enum LogSigmoidKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Swift.min(x, 0) - Foundation.log1p(Foundation.exp(-abs(x))) }
    @inline(__always) static func derivative(_ x: Float) -> Float { stableSigmoid(-x) }
}

/// softplus(x) = log(1+e^x) = max(x, 0) + log1p(e^−|x|); f′ = σ(x)
enum SoftplusKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-abs(x))) }
    @inline(__always) static func derivative(_ x: Float) -> Float { stableSigmoid(x) }
}

/// log(1 − eˣ) for x < 0, the log-probability of "not y" from log p(y) = x (Mächler 2012's split keeps
/// both halves accurate): log1p(−eˣ) for x < −ln 2, log(−expm1(x)) above; f′ = −1/expm1(−x) = −eˣ/(1 − eˣ)
enum Log1mExpKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float {
        x < -0.693_147_2 ? Foundation.log1p(-Foundation.exp(x)) : Foundation.log(-Foundation.expm1(x))
    }
    @inline(__always) static func derivative(_ x: Float) -> Float { -1 / Foundation.expm1(-x) }
}

/// tanh: f′ = 1 − y²
enum TanhKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.tanh(x) }
    @inline(__always) static func derivative(_ y: Float) -> Float { 1 - y * y }
}

/// SiLU (swish) x·σ(x); f′ = σ(x)(1 + x(1 − σ(x)))
enum SiluKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x * stableSigmoid(x) }
    @inline(__always) static func derivative(_ x: Float) -> Float {
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
    @inline(__always) static func derivative(_ x: Float) -> Float {
        let t = Foundation.tanh(c * (x + k * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x)
    }
}

/// relu = max(x, 0); f′ = 1 for x > 0, else 0 (0 at x = 0, as PyTorch)
enum ReluKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Swift.max(x, 0) }
    @inline(__always) static func derivative(_ x: Float) -> Float { x > 0 ? 1 : 0 }
}

/// √x; f′ = 1/(2y)
enum SqrtKernel: UnaryKernel {
    static let derivativeUsesOutput = true
    @inline(__always) static func forward(_ x: Float) -> Float { x.squareRoot() }
    @inline(__always) static func derivative(_ y: Float) -> Float { 0.5 / y }
}

/// x²; f′ = 2x
enum SquareKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x * x }
    @inline(__always) static func derivative(_ x: Float) -> Float { 2 * x }
}

/// σ(x) without overflow: with e = e^−|x| ∈ (0, 1], σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0.
/// One exp and a select, no branch (random signs would mispredict).
@inline(__always)
func stableSigmoid(_ x: Float) -> Float {
    let e = Foundation.exp(-abs(x))
    let r = 1 / (1 + e)
    return x >= 0 ? r : e * r
}

extension Tensor {
    @inline(__always)
    func unary<K: UnaryKernel>(_ kernel: K.Type, op: String) -> Tensor {
        let out = Tensor(uninitialized: shape)
        let px = pointer, py = out.pointer
        for i in 0..<count { py[i] = K.forward(px[i]) }
        let saved = K.derivativeUsesOutput ? out.detached() : detached()
        return Tensor.record(op: op, inputs: [self], output: out) { g in
            let dx = Tensor(uninitialized: saved.shape)
            let pg = g.pointer, pd = dx.pointer, ps = saved.pointer
            for i in 0..<saved.count { pd[i] = pg[i] * K.derivative(ps[i]) }
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
    /// log(1 − eˣ), for x < 0 (log-probabilities): accurate near 0 and for large |x|; NaN for x > 0.
    public func log1mexp() -> Tensor { unary(Log1mExpKernel.self, op: "log1mexp") }
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
