/// Stochastic gradient descent with heavy-ball momentum, as PyTorch `torch.optim.SGD` (dampening 0,
/// not Nesterov). For each parameter θ with gradient g:
///
///     g ← g + λ·θ                  L2 weight decay, coupled (added to the gradient)
///     b ← μ·b + g                  b starts at 0, so the first step has b = g
///     θ ← θ − η·b
public final class SGD: Optimizer {
    public enum StateKey {
        public static let momentumBuffer = "momentum_buffer"
    }

    public let parameters: Parameters
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float
    public private(set) var stepCount = 0
    private let momentumBuffers: StateSlot

    public init(parameters: Parameters, learningRate: Float, momentum: Float = 0.9, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        momentumBuffers = StateSlot(name: StateKey.momentumBuffer, parameters: parameters)
    }

    public func step() {
        stepCount += 1
        let (lr, mu, lambda) = (learningRate, momentum, weightDecay)
        for (index, entry) in parameters.entries.enumerated() {
            guard let grad = entry.tensor.grad else { continue }
            let p = entry.tensor.pointer, g = grad.pointer, b = momentumBuffers.buffers[index].pointer
            for i in 0..<entry.tensor.count {
                b[i] = mu * b[i] + (g[i] + lambda * p[i])
                p[i] -= lr * b[i]
            }
        }
    }

    public var state: OptimizerState {
        OptimizerState(stepCount: stepCount, slots: [momentumBuffers.name: momentumBuffers.export(parameters)])
    }

    public var stateBuffers: [(name: String, tensor: Tensor)] { momentumBuffers.named(parameters) }

    public func loadState(_ state: OptimizerState) throws {
        guard state.stepCount >= 0 else { throw OptimizerStateError("SGD state: negative step count \(state.stepCount)") }
        try StateSlot.load([momentumBuffers], from: state, parameters: parameters)
        stepCount = state.stepCount
    }
}
