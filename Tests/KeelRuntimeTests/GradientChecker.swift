import XCTest
@testable import KeelRuntime

/// Finite-difference gradient checker.
///
/// The op under test, `f(inputs) -> y`, is reduced to the scalar L = Σ_j w_j·y_j with fixed
/// pseudo-random weights w (so every output element matters with a different weight). The analytic
/// gradient comes from `L.backward()` on Float tensors. The numeric gradient perturbs one input element
/// at a time by ±h, runs the same Float op, and evaluates L and the central difference
///     ∂L/∂x_i ≈ (L(x + h e_i) − L(x − h e_i)) / (x_i⁺ − x_i⁻)
/// in Double, where x_i± are the perturbed values actually representable in Float (so the step is exact).
///
/// Tolerances: Float32 outputs carry relative rounding ~6e-8, which the difference divides by 2h
/// (h = 1e-2 → ~1e-5 · Σ|w·y|), and the truncation error of central differences is O(h²·f‴) ≈ 1e-4 for
/// the smooth functions here. We accept |numeric − analytic| ≤ 2e-3 + 1e-2·|analytic| per element.
/// Inputs must avoid kinks (relu at 0, clamp bounds) by more than h.
struct GradientChecker {
    var step: Double = 1e-2
    var absoluteTolerance: Double = 2e-3
    var relativeTolerance: Double = 1e-2

    func check(_ name: String, _ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
               _ f: ([Tensor]) -> Tensor) {
        for x in inputs { x.zeroGrad(); x.requiresGrad = true }
        let probe = withNoGrad { f(inputs) }
        var rng = Philox(seed: 99)
        // Outputs that are ±inf (log-softmax of −inf-masked logits) get weight 0: they are constant.
        let weights = probe.toArray().map { y in
            let w = Double(rng.nextFloat()) * 2 - 1
            return y.isFinite ? w : 0
        }
        let weightTensor = Tensor(shape: probe.shape, data: weights.map(Float.init))

        (f(inputs) * weightTensor).sum().backward()

        func loss() -> Double {
            let y = withNoGrad { f(inputs) }
            return zip(y.toArray(), weights).reduce(0.0) { $1.1 == 0 ? $0 : $0 + Double($1.0) * $1.1 }
        }
        for (k, x) in inputs.enumerated() {
            let analytic = x.grad?.toArray() ?? [Float](repeating: 0, count: x.count)
            XCTAssertEqual(analytic.count, x.count, "\(name): gradient of input \(k) has wrong size", file: file, line: line)
            for i in 0..<x.count {
                let original = x.pointer[i]
                guard original.isFinite else { continue }
                let plus = Float(Double(original) + step), minus = Float(Double(original) - step)
                x.pointer[i] = plus
                let lPlus = loss()
                x.pointer[i] = minus
                let lMinus = loss()
                x.pointer[i] = original
                let numeric = (lPlus - lMinus) / (Double(plus) - Double(minus))
                let a = Double(analytic[i])
                XCTAssert(abs(numeric - a) <= absoluteTolerance + relativeTolerance * abs(a),
                          "\(name): d/d input\(k)[\(i)] analytic \(a) vs numeric \(numeric)", file: file, line: line)
            }
            x.zeroGrad()
            x.requiresGrad = false
        }
    }
}

/// Deterministic test data.
func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -2, high: Float = 2) -> Tensor {
    var rng = Philox(seed: seed)
    return Tensor.randomUniform(shape, low: low, high: high, generator: &rng)
}
