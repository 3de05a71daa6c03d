import Foundation
import XCTest
@testable import KeelRuntime

final class AutodiffTests: XCTestCase {
    /// L = Σ (a·b + a): dL/da = b + 1, dL/db = a; a used twice exercises accumulation inside one pass.
    func testChainAndFanOut() {
        let a = Tensor([1, 2, 3]), b = Tensor([4, 5, 6])
        a.requiresGrad = true
        b.requiresGrad = true
        let loss = (a * b + a).sum()
        loss.backward()
        XCTAssertEqual(a.grad?.toArray(), [5, 6, 7])
        XCTAssertEqual(b.grad?.toArray(), [1, 2, 3])
    }

    /// Gradients add up across backward calls (micro-batches) until zeroGrad.
    func testGradientsAccumulateAcrossBackwardCalls() {
        let w = Tensor([2, -1])
        w.requiresGrad = true
        (w * Tensor([3, 4])).sum().backward()
        (w * Tensor([10, 20])).sum().backward()
        XCTAssertEqual(w.grad?.toArray(), [13, 24])
        w.zeroGrad()
        XCTAssertNil(w.grad)
        (w * w).sum().backward()
        XCTAssertEqual(w.grad?.toArray(), [4, -2])
    }

    /// Two leaves that received the same adopted gradient buffer must not see each other's later sums.
    func testSharedAdoptedGradientIsNotMutated() {
        let a = Tensor([1, 1]), b = Tensor([1, 1])
        a.requiresGrad = true
        b.requiresGrad = true
        (a + b).sum().backward()              // a.grad and b.grad are the same buffer (adopted)
        (a * Tensor([5, 7])).sum().backward()  // accumulates into a only
        XCTAssertEqual(a.grad?.toArray(), [6, 8])
        XCTAssertEqual(b.grad?.toArray(), [1, 1])
    }

    func testNoGradScopeRecordsNothing() {
        let w = Tensor([1, 2])
        w.requiresGrad = true
        let y = withNoGrad { (w * w + 1).sum() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.producingOp)
        XCTAssertTrue(Tensor.isGradEnabled)
        let z = (w * w).sum()
        XCTAssertEqual(z.producingOp, "sum")
    }

    /// Grad mode is per thread: a no-grad scope on one thread does not stop another from recording.
    func testNoGradIsPerThread() {
        final class Probe: @unchecked Sendable {   // written by the thread before it signals `done`
            let weight = Tensor([1])
            var recorded = false
            let done = DispatchSemaphore(value: 0)
        }
        let probe = Probe()
        probe.weight.requiresGrad = true
        withNoGrad {
            Thread {
                probe.recorded = (probe.weight * 2).requiresGrad
                probe.done.signal()
            }.start()
            probe.done.wait()
            XCTAssertFalse((probe.weight * 2).requiresGrad)
        }
        XCTAssertTrue(probe.recorded)
    }

    /// The op-author contract: a custom op defined with `Tensor.record` (y = x³, dy/dx = 3x²) is
    /// differentiated like the built-in ones and composes with them.
    func testCustomOpThroughRecord() {
        func cube(_ x: Tensor) -> Tensor {
            let y = Tensor(uninitialized: x.shape)
            for i in 0..<x.count { y.pointer[i] = x.pointer[i] * x.pointer[i] * x.pointer[i] }
            let saved = x.detached()
            return Tensor.record(op: "cube", inputs: [x], output: y) { g in [g * saved * saved * 3] }
        }
        GradientChecker().check("cube", [randomTensor([2, 3], seed: 40)]) { cube($0[0]).exp() }
        XCTAssertEqual(cube(Tensor([2])).producingOp, nil)   // no input requires grad: nothing recorded
    }

    func testInputsNotRequiringGradGetNone() {
        let w = Tensor([1, 2]), x = Tensor([3, 4])
        w.requiresGrad = true
        (w * x).sum().backward()
        XCTAssertNil(x.grad)
        XCTAssertEqual(w.grad?.toArray(), [3, 4])
    }

    /// Saved activations, closures and intermediate gradients are freed by backward, not at the end:
    /// after backward only the leaves, their gradients and what the test holds remain alive.
    func testGraphBuffersAreReleasedByBackward() {
        let before = TensorStorage.liveCount
        let w = Tensor([1, 2, 3])
        w.requiresGrad = true
        weak var intermediate: Tensor?
        do {
            let h = (w * w).exp()
            intermediate = h
            let loss = (h * 2).sum()
            XCTAssertGreaterThan(TensorStorage.liveCount, before + 3)
            loss.backward()
        }
        XCTAssertNil(intermediate, "intermediate tensor still referenced after backward")
        XCTAssertEqual(TensorStorage.liveCount, before + 2, "expected only w and w.grad to stay alive")
    }

    /// A graph that is built but never differentiated is freed too (no output → closure → output cycle).
    func testUnusedGraphIsFreed() {
        let before = TensorStorage.liveCount
        let w = Tensor([1, 2, 3])
        w.requiresGrad = true
        do { _ = ((w / (w + 1)).sigmoid() * w).sum() }
        XCTAssertEqual(TensorStorage.liveCount, before + 1)
    }
}

final class AutodiffMemoryTests: XCTestCase {
    /// The graph references producer nodes, not intermediate tensors: an intermediate that no backward
    /// closure needs (inputs of add) is freed as soon as the caller drops it, before backward runs.
    func testGraphDoesNotKeepUnneededIntermediates() {
        let w = Tensor([1, 2, 3])
        w.requiresGrad = true
        weak var dropped: Tensor?
        let loss: Tensor
        do {
            let h = w + 1          // needed by nobody's backward: add saves nothing
            dropped = h
            loss = (h + 2).sum()
        }
        XCTAssertNil(dropped, "an intermediate no backward needs is kept alive by the graph")
        loss.backward()
        XCTAssertEqual(w.grad?.toArray(), [1, 1, 1])
    }

    /// After backward the graph is consumed: its tensors no longer require grad.
    func testBackwardConsumesTheGraph() {
        let w = Tensor([2])
        w.requiresGrad = true
        let y = w * w
        y.sum().backward()
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.producingOp)
        XCTAssertTrue(w.requiresGrad)
    }
}

final class ParametersAndDepthTests: XCTestCase {
    func testParametersKeepInsertionOrderAndNames() {
        var parameters = Parameters()
        let a = Tensor.zeros([2, 3]), b = Tensor.zeros([4])
        parameters.add("model.layers.0.weight", a)
        parameters.add("model.bias", b)
        XCTAssertEqual(parameters.names, ["model.layers.0.weight", "model.bias"])
        XCTAssertTrue(parameters["model.bias"] === b)
        XCTAssertNil(parameters["missing"])
        XCTAssertEqual(parameters.count, 2)
        XCTAssertEqual(parameters.scalarCount, 10)
        XCTAssertTrue(a.requiresGrad && b.requiresGrad)
        (a.sum() + b.sum()).backward()
        XCTAssertNotNil(a.grad)
        parameters.zeroGrad()
        XCTAssertNil(a.grad)
        XCTAssertNil(b.grad)
    }

    /// A 20000-op chain: the topological sort is iterative, so depth is not limited by the stack.
    func testLongChainBackward() {
        let w = Tensor([1])
        w.requiresGrad = true
        var x = w
        for _ in 0..<20000 { x = x + 1 }
        x.sum().backward()
        XCTAssertEqual(w.grad?.toArray(), [1])
    }

    /// Dropping a 50000-op graph without backward frees it (iteratively, without overflowing the stack).
    func testDroppingLongGraphFreesIt() {
        let before = TensorStorage.liveCount
        let w = Tensor([1])
        w.requiresGrad = true
        do {
            var x = w
            for _ in 0..<50000 { x = x * 1.5 }
            XCTAssertGreaterThan(TensorStorage.liveCount, before + 1)
        }
        XCTAssertEqual(TensorStorage.liveCount, before + 1)
    }
}
