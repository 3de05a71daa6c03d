/// Rescales all gradients together so that their global L2 norm ‖g‖ = √(Σ_params Σ g²) is at most
/// `maxNorm` (Pascanu et al. 2013; PyTorch `clip_grad_norm_`): g ← g · maxNorm / (‖g‖ + 1e-6) when
/// ‖g‖ > maxNorm. Scaling all parameters by one factor keeps the update's direction.
/// Returns the norm BEFORE clipping (what training logs report). A non-finite norm is returned
/// unchanged and nothing is scaled, so the caller can detect it and skip the step.
@discardableResult
public func clipGradNorm(_ parameters: Parameters, maxNorm: Float) -> Float {
    var sumOfSquares: Double = 0
    for entry in parameters {
        guard let grad = entry.tensor.grad else { continue }
        // Float partial sums over short chunks (vectorized), accumulated in Double across chunks so a
        // 28M-element embedding gradient loses no precision.
        let chunk = 4096
        for start in stride(from: 0, to: grad.count, by: chunk) {
            let g = grad.pointer + start
            sumOfSquares += Double(dotOf(g, g, Swift.min(chunk, grad.count - start)))
        }
    }
    let norm = Float(sumOfSquares.squareRoot())
    guard norm.isFinite, norm > maxNorm else { return norm }
    let scale = maxNorm / (norm + 1e-6)
    for entry in parameters {
        guard let grad = entry.tensor.exclusiveGrad() else { continue }
        let g = grad.pointer
        for i in 0..<grad.count { g[i] *= scale }
    }
    return norm
}
