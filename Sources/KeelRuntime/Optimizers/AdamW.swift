import Foundation

/// Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
/// ICLR 2019), as PyTorch `torch.optim.AdamW`. For each parameter θ with gradient g, at step t ≥ 1:
///
///     m ← β₁·m + (1 − β₁)·g
///     v ← β₂·v + (1 − β₂)·g²
///     θ ← θ·(1 − η·λ)                               decoupled decay (skipped for exempt names)
///     θ ← θ − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// Why decoupled: with Adam, L2 decay added to g gets divided by √v, so weights with large gradients
/// would be decayed less; applying λ directly to θ decays every weight at the same rate.
public final class AdamW: Optimizer {
    /// State slot names (PyTorch's, so checkpoints read naturally).
    public enum StateKey {
        public static let firstMoment = "exp_avg"
        public static let secondMoment = "exp_avg_sq"
    }

    public let parameters: Parameters
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// Parameter names that get no weight decay (typically norms and biases).
    public let weightDecayExempt: Set<String>
    public private(set) var stepCount = 0
    private let firstMoments: StateSlot, secondMoments: StateSlot

    public init(parameters: Parameters, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0.01, weightDecayExempt: Set<String> = []) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.weightDecayExempt = weightDecayExempt
        firstMoments = StateSlot(name: StateKey.firstMoment, parameters: parameters)
        secondMoments = StateSlot(name: StateKey.secondMoment, parameters: parameters)
    }

    public func step() {
        stepCount += 1
        let t = Double(stepCount)
        let stepSize = Float(Double(learningRate) / (1 - Foundation.pow(Double(beta1), t)))
        let inverseSqrtCorrection2 = Float(1 / (1 - Foundation.pow(Double(beta2), t)).squareRoot())
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        for (index, entry) in parameters.entries.enumerated() {
            guard let grad = entry.tensor.grad else { continue }
            let decay = weightDecayExempt.contains(entry.name) ? 1 : 1 - learningRate * weightDecay
            adamWUpdate(entry.tensor.pointer, grad.pointer, firstMoments.buffers[index].pointer,
                        secondMoments.buffers[index].pointer, count: entry.tensor.count, beta1: b1, beta2: b2,
                        epsilon: eps, decay: decay, stepSize: stepSize,
                        inverseSqrtCorrection2: inverseSqrtCorrection2)
        }
    }

    public var state: OptimizerState {
        OptimizerState(stepCount: stepCount, slots: [
            firstMoments.name: firstMoments.export(parameters),
            secondMoments.name: secondMoments.export(parameters),
        ])
    }

    public var stateBuffers: [(name: String, tensor: Tensor)] {
        firstMoments.named(parameters) + secondMoments.named(parameters)
    }

    public func loadState(_ state: OptimizerState) throws {
        guard state.stepCount >= 0 else { throw OptimizerStateError("AdamW state: negative step count \(state.stepCount)") }
        try StateSlot.load([firstMoments, secondMoments], from: state, parameters: parameters)
        stepCount = state.stepCount
    }
}

/// The update of one parameter tensor (see `AdamW`), with the bias corrections folded into
/// `stepSize` = η/(1 − β₁ᵗ) and `inverseSqrtCorrection2` = 1/√(1 − β₂ᵗ), as PyTorch's implementation.
/// The loop auto-vectorizes only when C math may skip errno (`-Xcc -fno-math-errno`): on Linux,
/// `Float.squareRoot()` otherwise lowers to a `sqrtf` call for negative inputs.
private func adamWUpdate(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>,
                         _ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, count: Int,
                         beta1: Float, beta2: Float, epsilon: Float, decay: Float, stepSize: Float,
                         inverseSqrtCorrection2: Float) {
    for i in 0..<count {
        let gi = g[i]
        let mi = beta1 * m[i] + (1 - beta1) * gi
        let vi = beta2 * v[i] + (1 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() * inverseSqrtCorrection2 + epsilon)
    }
}
