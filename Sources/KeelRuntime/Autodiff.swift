import Foundation

// Reverse-mode automatic differentiation.
//
// Design (micrograd/tinygrad style: the graph hangs off the tensors, there is no global tape)
// ----------------------------------------------------------------------------------------------
// * Recording. Every differentiable op computes its output eagerly and then calls
//   `Tensor.record(op:inputs:output:backward:)`. If grad mode is on (see `withNoGrad`) and at least one
//   input `requiresGrad`, the output gets a `GraphNode` holding the op name, strong references to the
//   inputs and the backward closure (which captures whatever the op saved: activations, indices…).
//   Otherwise nothing is stored and the closure is dropped at once.
// * Backward. `loss.backward()` (loss has one element; the seed is dL/dL = 1) sorts the nodes reachable
//   from the loss topologically (iterative depth-first search, so deep graphs cannot overflow the
//   stack), then runs them in reverse order. A node's closure receives dL/d(output) and returns
//   dL/d(input) for each input, `nil` for inputs that do not `requiresGrad` (it must check this to skip
//   work) or where the gradient is identically zero. Closures run with grad mode off, so they may use
//   the ordinary ops (`gradOutput * x`) without building a second graph.
// * Accumulation without copies. A returned gradient is ADOPTED, not copied, as the input's pending
//   gradient: returning `gradOutput` itself (add) or a view of it (reshape) costs nothing. When a second
//   contribution arrives, the engine computes `old + new` into a fresh buffer it then owns exclusively,
//   and adds later contributions in place. Consequently a backward closure must never write into a
//   tensor after returning it, and `gradOutput` must be treated as read-only.
// * Leaves (tensors with `requiresGrad = true` set by the user, i.e. parameters) keep their gradient in
//   `.grad`, which ACCUMULATES across backward calls (micro-batches) until `zeroGrad()`.
// * Memory. Right after a node has run, the engine drops its closure (and so the saved activations),
//   its input references and its pending gradient, and detaches it from its output tensor. The graph is
//   therefore single-use: calling `backward()` twice through the same ops is a programming error.
// * Grad mode is per thread (a pthread key), so a reference model can be evaluated under `withNoGrad`
//   on one thread while another records a graph.

/// One recorded op application: the edge list and backward closure of the graph.
final class GraphNode {
    let op: String
    var inputs: [Tensor]
    var backward: ((_ gradOutput: Tensor) -> [Tensor?])?
    /// dL/d(output) accumulated so far during a backward pass.
    var pendingGrad: Tensor?
    var pendingGradIsExclusive = false
    var visited = false

    init(op: String, inputs: [Tensor], backward: @escaping (_ gradOutput: Tensor) -> [Tensor?]) {
        self.op = op
        self.inputs = inputs
        self.backward = backward
    }
}

// MARK: - Grad mode

/// Per-thread depth of nested `withNoGrad` scopes, stored as the pthread-specific value's bit pattern
/// (no allocation, a few nanoseconds to read).
private let noGradDepthKey: pthread_key_t = {
    var key = pthread_key_t()
    let status = pthread_key_create(&key, nil)
    precondition(status == 0, "Autodiff: pthread_key_create failed with \(status)")
    return key
}()

private var noGradDepth: Int {
    get { Int(bitPattern: pthread_getspecific(noGradDepthKey)) }
    set { pthread_setspecific(noGradDepthKey, UnsafeRawPointer(bitPattern: newValue)) }
}

/// Runs `body` without recording any graph on this thread: for reference models, evaluation and
/// generation. Tensors created inside do not require grad, even when computed from parameters.
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    noGradDepth += 1
    defer { noGradDepth -= 1 }
    return try body()
}

extension Tensor {
    /// Whether ops on this thread currently record a graph (false inside `withNoGrad`).
    public static var isGradEnabled: Bool { noGradDepth == 0 }

    /// True for leaves marked trainable and for every tensor computed from one while grad mode was on.
    /// Setting it is allowed on leaves only (tensors that no op produced).
    public var requiresGrad: Bool {
        get { isTrainableLeaf || node != nil }
        set {
            precondition(node == nil, "Tensor.requiresGrad: only leaf tensors can be marked; this one was "
                         + "produced by op '\(node?.op ?? "")' with shape \(shape)")
            isTrainableLeaf = newValue
        }
    }

    /// Name of the op that produced this tensor while its graph is alive (nil for leaves): for debugging.
    public var producingOp: String? { node?.op }

    /// Clears the accumulated gradient of a leaf.
    public func zeroGrad() {
        grad = nil
        gradIsExclusive = false
    }

    /// THE way to make an op differentiable. Call it after computing `output` eagerly from `inputs`;
    /// it returns `output`, now linked into the graph when grad mode is on and any input requires grad.
    ///
    /// `backward` receives dL/d(output) (shape `output.shape`, read-only) and returns one entry per
    /// input, in the order of `inputs`: dL/d(input) with exactly that input's shape, or `nil` when
    /// `!inputs[i].requiresGrad` (check it to skip work) or the gradient is zero. It may return
    /// `gradOutput` itself or views of it; it must not write into a tensor after returning it.
    /// It runs with grad mode off and is released right after it has run. It must not capture `output`
    /// (that would be a reference cycle output → node → closure → output); capture
    /// `output.detached()` instead, which shares the storage but not the graph.
    ///
    ///     let y = Tensor(zeros: x.shape)           // forward: y = 2x
    ///     ...
    ///     return Tensor.record(op: "double", inputs: [x], output: y) { g in
    ///         [x.requiresGrad ? g * 2 : nil]
    ///     }
    @discardableResult
    public static func record(op: String, inputs: [Tensor], output: Tensor,
                              backward: @escaping (_ gradOutput: Tensor) -> [Tensor?]) -> Tensor {
        guard isGradEnabled, inputs.contains(where: { $0.requiresGrad }) else { return output }
        precondition(output.node == nil, "Tensor.record(\(op)): output already belongs to op "
                     + "'\(output.node?.op ?? "")'; every op must return a new Tensor object")
        output.node = GraphNode(op: op, inputs: inputs, backward: backward)
        return output
    }

    /// Reverse-mode sweep from this one-element tensor (seed dL/dL = 1): accumulates into the `.grad`
    /// of every reachable leaf that requires grad, and frees the graph as it goes.
    public func backward() {
        precondition(count == 1, "Tensor.backward(): the root must have exactly one element, got shape \(shape)")
        precondition(requiresGrad, "Tensor.backward(): the root does not require grad (no trainable leaf "
                     + "reached it, or it was computed inside withNoGrad)")
        let seed = Tensor.ones(shape)
        guard let rootNode = node else {
            Tensor.accumulate(seed, into: self, op: "backward seed")
            return
        }
        precondition(rootNode.backward != nil, "Tensor.backward(): graph already consumed by an earlier backward()")

        // Post-order DFS: a tensor is appended after all tensors it depends on.
        var order: [Tensor?] = []
        var stack: [(tensor: Tensor, nextInput: Int)] = [(self, 0)]
        rootNode.visited = true
        while let top = stack.last {
            let inputs = top.tensor.node!.inputs
            if top.nextInput < inputs.count {
                stack[stack.count - 1].nextInput += 1
                let input = inputs[top.nextInput]
                if let inputNode = input.node, !inputNode.visited {
                    precondition(inputNode.backward != nil,
                                 "Tensor.backward(): graph through op '\(inputNode.op)' already consumed")
                    inputNode.visited = true
                    stack.append((input, 0))
                }
            } else {
                stack.removeLast()
                order.append(top.tensor)
            }
        }

        rootNode.pendingGrad = seed
        rootNode.pendingGradIsExclusive = true
        withNoGrad {
            for index in order.indices.reversed() {
                let tensor = order[index]!
                order[index] = nil
                let node = tensor.node!
                tensor.node = nil
                let inputs = node.inputs
                let backwardFn = node.backward!
                let gradOutput = node.pendingGrad
                node.inputs = []
                node.backward = nil
                node.pendingGrad = nil
                guard let gradOutput else { continue }   // every path to it returned nil (zero)
                let gradInputs = backwardFn(gradOutput)
                precondition(gradInputs.count == inputs.count, "Tensor.backward(): op '\(node.op)' returned "
                             + "\(gradInputs.count) gradients for \(inputs.count) inputs")
                for (input, gradInput) in zip(inputs, gradInputs) {
                    guard let gradInput, input.requiresGrad else { continue }
                    Tensor.accumulate(gradInput, into: input, op: node.op)
                }
            }
        }
    }

    /// Adds `gradient` to the pending gradient of `target` (intermediate) or to its `.grad` (leaf).
    private static func accumulate(_ gradient: Tensor, into target: Tensor, op: String) {
        precondition(gradient.shape == target.shape, "Tensor.backward(): op '\(op)' returned a gradient of "
                     + "shape \(gradient.shape) for an input of shape \(target.shape)")
        if let node = target.node {
            (node.pendingGrad, node.pendingGradIsExclusive) =
                sum(node.pendingGrad, exclusive: node.pendingGradIsExclusive, gradient)
        } else {
            (target.grad, target.gradIsExclusive) = sum(target.grad, exclusive: target.gradIsExclusive, gradient)
        }
    }

    /// `existing + gradient`, adopting `gradient` when nothing is there yet and adding in place only
    /// into a buffer the engine exclusively owns.
    private static func sum(_ existing: Tensor?, exclusive: Bool, _ gradient: Tensor) -> (Tensor, Bool) {
        guard let existing else { return (gradient, false) }
        let n = gradient.count
        let g = gradient.pointer
        if exclusive {
            let e = existing.pointer
            for i in 0..<n { e[i] += g[i] }
            return (existing, true)
        }
        let out = Tensor(zeros: existing.shape)
        let o = out.pointer, e = existing.pointer
        for i in 0..<n { o[i] = e[i] + g[i] }
        return (out, true)
    }

    /// Makes `grad` a buffer only this leaf owns (copying if shared) and returns it, so that an
    /// optimizer or clipping may scale it in place.
    func exclusiveGrad() -> Tensor? {
        guard let grad else { return nil }
        if !gradIsExclusive {
            self.grad = grad.copy()
            gradIsExclusive = true
        }
        return self.grad
    }
}
