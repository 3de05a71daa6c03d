import Foundation

// Reverse-mode automatic differentiation.
//
// Design (micrograd/tinygrad style: the graph hangs off the tensors, there is no global tape)
// ----------------------------------------------------------------------------------------------
// * Recording. Every differentiable op computes its output eagerly and then calls
//   `Tensor.record(op:inputs:output:backward:)`. If grad mode is on (see `withNoGrad`) and at least one
//   input `requiresGrad`, the output gets a `GraphNode` holding the op name, one edge per input and the
//   backward closure (which captures whatever the op saved: activations, indices…). Otherwise nothing
//   is stored and the closure is dropped at once.
// * Edges point to the producing NODE of an intermediate input, to the tensor itself for a leaf that
//   requires grad, and to nothing for an input that does not require grad. So the graph never keeps an
//   intermediate tensor's data alive: only what backward closures capture stays in memory, as in
//   PyTorch's saved tensors. (Op authors: capture shapes and `requiresGrad` flags rather than whole
//   tensors when that is all backward needs.)
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
//   its edges and its pending gradient. The graph is therefore single-use: tensors computed before a
//   backward() no longer require grad afterwards, and backward() through an already consumed graph is
//   a programming error (precondition).
// * Grad mode is per thread (a pthread key), so a reference model can be evaluated under `withNoGrad`
//   on one thread while another records a graph.

/// One recorded op application: the edge list and backward closure of the graph.
final class GraphNode {
    enum Edge {
        case node(GraphNode)   // an intermediate input: its producer
        case leaf(Tensor)      // a leaf that requires grad: accumulate into its .grad
        case none              // an input that does not require grad
    }

    let op: String
    let outputShape: [Int]
    var edges: [Edge]
    var backward: ((_ gradOutput: Tensor) -> [Tensor?])?
    /// dL/d(output) accumulated so far during a backward pass.
    var pendingGrad: Tensor?
    var pendingGradIsExclusive = false
    var visited = false
    /// False once a backward pass has run (and released) this node.
    var isLive: Bool { backward != nil }

    init(op: String, outputShape: [Int], edges: [Edge], backward: @escaping (_ gradOutput: Tensor) -> [Tensor?]) {
        self.op = op
        self.outputShape = outputShape
        self.edges = edges
        self.backward = backward
    }

    /// Releases a dropped (never differentiated) graph iteratively: the default recursive release of a
    /// chain of 10⁴ nodes would overflow the stack. Nodes only we reference are emptied before they go.
    deinit {
        var pending: [GraphNode] = []
        for case .node(let input) in edges { pending.append(input) }
        edges = []
        while var node = pending.popLast() {
            guard isKnownUniquelyReferenced(&node) else { continue }
            for case .node(let input) in node.edges { pending.append(input) }
            node.edges = []
            node.backward = nil
        }
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

    /// True for leaves marked trainable and for every tensor computed from one while grad mode was on
    /// (until a backward pass consumes its graph). Setting it is allowed on leaves only (tensors that no
    /// op produced).
    public var requiresGrad: Bool {
        get { isTrainableLeaf || (node?.isLive ?? false) }
        set {
            precondition(node == nil, "Tensor.requiresGrad: only leaf tensors can be marked; this one was "
                         + "produced by op '\(node?.op ?? "")' with shape \(shape)")
            isTrainableLeaf = newValue
        }
    }

    /// Name of the op that produced this tensor while its graph is alive (nil for leaves): for debugging.
    public var producingOp: String? { node?.isLive == true ? node?.op : nil }

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
    /// `output.detached()` instead, which shares the storage but not the graph. Whatever it captures
    /// stays alive until backward, so capture only what the gradient needs.
    ///
    ///     let y = Tensor(uninitialized: x.shape)    // forward: y = 2x
    ///     ...
    ///     return Tensor.record(op: "double", inputs: [x], output: y) { g in
    ///         [g * 2]                                 // only called when x requires grad
    ///     }
    @discardableResult
    public static func record(op: String, inputs: [Tensor], output: Tensor,
                              backward: @escaping (_ gradOutput: Tensor) -> [Tensor?]) -> Tensor {
        guard isGradEnabled, inputs.contains(where: { $0.requiresGrad }) else { return output }
        precondition(output.node == nil, "Tensor.record(\(op)): output already belongs to op "
                     + "'\(output.node?.op ?? "")'; every op must return a new Tensor object")
        let edges = inputs.map { input -> GraphNode.Edge in
            if let node = input.node, node.isLive { return .node(node) }
            return input.isTrainableLeaf ? .leaf(input) : .none
        }
        output.node = GraphNode(op: op, outputShape: output.shape, edges: edges, backward: backward)
        return output
    }

    /// Reverse-mode sweep from this one-element tensor (seed dL/dL = 1): accumulates into the `.grad`
    /// of every reachable leaf that requires grad, and frees the graph as it goes.
    public func backward() {
        precondition(count == 1, "Tensor.backward(): the root must have exactly one element, got shape \(shape)")
        let seed = Tensor.ones(shape)
        if isTrainableLeaf && node == nil {
            (grad, gradIsExclusive) = Tensor.sum(grad, exclusive: gradIsExclusive, seed)
            return
        }
        guard let rootNode = node, rootNode.isLive else {
            preconditionFailure("Tensor.backward(): the root does not require grad (no trainable leaf reached "
                                + "it, it was computed inside withNoGrad, or an earlier backward() consumed its graph)")
        }

        // Post-order DFS over nodes: a node is appended after every node it depends on.
        var order: [GraphNode?] = []
        var stack: [(node: GraphNode, nextEdge: Int)] = [(rootNode, 0)]
        rootNode.visited = true
        while let top = stack.last {
            if top.nextEdge < top.node.edges.count {
                stack[stack.count - 1].nextEdge += 1
                if case .node(let input) = top.node.edges[top.nextEdge], !input.visited {
                    precondition(input.isLive, "Tensor.backward(): graph through op '\(input.op)' already consumed")
                    input.visited = true
                    stack.append((input, 0))
                }
            } else {
                stack.removeLast()
                order.append(top.node)
            }
        }

        rootNode.pendingGrad = seed
        rootNode.pendingGradIsExclusive = true
        withNoGrad {
            for index in order.indices.reversed() {
                let node = order[index]!
                order[index] = nil
                let edges = node.edges, backwardFn = node.backward!, gradOutput = node.pendingGrad
                node.edges = []
                node.backward = nil
                node.pendingGrad = nil
                guard let gradOutput else { continue }   // every path to it returned nil (zero)
                let gradInputs = backwardFn(gradOutput)
                precondition(gradInputs.count == edges.count, "Tensor.backward(): op '\(node.op)' returned "
                             + "\(gradInputs.count) gradients for \(edges.count) inputs")
                for (edge, gradInput) in zip(edges, gradInputs) {
                    guard let gradInput else { continue }
                    switch edge {
                    case .node(let input):
                        Tensor.check(gradInput, fits: input.outputShape, op: node.op)
                        (input.pendingGrad, input.pendingGradIsExclusive) =
                            Tensor.sum(input.pendingGrad, exclusive: input.pendingGradIsExclusive, gradInput)
                    case .leaf(let leaf):
                        Tensor.check(gradInput, fits: leaf.shape, op: node.op)
                        (leaf.grad, leaf.gradIsExclusive) = Tensor.sum(leaf.grad, exclusive: leaf.gradIsExclusive, gradInput)
                    case .none:
                        break
                    }
                }
            }
        }
    }

    private static func check(_ gradient: Tensor, fits shape: [Int], op: String) {
        precondition(gradient.shape == shape, "Tensor.backward(): op '\(op)' returned a gradient of shape "
                     + "\(gradient.shape) for an input of shape \(shape)")
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
        let out = Tensor(uninitialized: existing.shape)
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
