import XCTest
@testable import KeelRuntime

/// The differentiable wrappers of the fused kernels: values against compositions of the generic runtime
/// ops (an independent implementation) and gradients through autodiff against finite differences
/// (`GradientChecker`, tolerance 2e-3 + 1e-2·|g|). The kernels themselves are proven in KernelTests.
final class KernelOpsTests: XCTestCase {
    private func assertValuesClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float, _ label: String) {
        XCTAssertEqual(a.shape, b.shape, label)
        let worst = zip(a.toArray(), b.toArray()).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance, label)
    }

    func testLinearMatchesMatmulAndDifferentiates() {
        let x = randomTensor([2, 3, 5], seed: 1), w = randomTensor([4, 5], seed: 2)
        assertValuesClose(x.linear(w), x.matmul(w, transposeB: true), 1e-5, "linear")
        GradientChecker().check("linear", [x, w]) { $0[0].linear($0[1]) }
    }

    func testRMSNormMatchesComposedOpsAndDifferentiates() {
        let x = randomTensor([3, 7], seed: 3), w = randomTensor([7], seed: 4)
        let composed = x / ((x * x).mean(axes: [1], keepDims: true) + 1e-5).sqrt() * w
        assertValuesClose(x.rmsNorm(weight: w, eps: 1e-5), composed, 1e-5, "rmsNorm")
        GradientChecker().check("rmsNorm", [x, w]) { $0[0].rmsNorm(weight: $0[1], eps: 1e-5) }
    }

    func testRotaryEmbeddingDifferentiatesAndLeavesItsInputUntouched() {
        let table = RoPETable(headDim: 4, maxPositions: 8, theta: 10_000)
        let x = randomTensor([1, 3, 2, 4], seed: 5)
        let before = x.toArray()
        let y = x.rotaryEmbedding(table, positionOffset: 2)
        XCTAssertEqual(x.toArray(), before)
        XCTAssertNotEqual(y.toArray(), before)
        GradientChecker().check("rotaryEmbedding", [x]) { $0[0].rotaryEmbedding(table, positionOffset: 2) }
    }

    func testCausalAttentionDifferentiatesWithGroupedHeads() {
        let q = randomTensor([2, 4, 4, 3], seed: 6), k = randomTensor([2, 4, 2, 3], seed: 7)
        let v = randomTensor([2, 4, 2, 3], seed: 8)
        GradientChecker().check("causalAttention", [q, k, v]) { Tensor.causalAttention(q: $0[0], k: $0[1], v: $0[2]) }
    }

    func testSwiGLUMatchesComposedOpsAndDifferentiates() {
        let gate = randomTensor([3, 6], seed: 9), up = randomTensor([3, 6], seed: 10)
        assertValuesClose(Tensor.swiglu(gate: gate, up: up), gate.silu() * up, 1e-5, "swiglu")
        GradientChecker().check("swiglu", [gate, up]) { Tensor.swiglu(gate: $0[0], up: $0[1]) }
    }

    func testTargetLogProbsMatchesLogSoftmaxGatherAndDifferentiates() {
        let h = randomTensor([2, 3, 4], seed: 11), w = randomTensor([9, 4], seed: 12)
        let targets = [0, 8, 3, 3, 1, 7]
        let composed = h.matmul(w, transposeB: true).logSoftmax().gatherLastAxis(targets)
        assertValuesClose(h.targetLogProbs(weight: w, targets: targets), composed, 1e-5, "targetLogProbs")
        let withIgnored = [0, -1, 3, -1, 1, 7]
        GradientChecker().check("targetLogProbs", [h, w]) {
            $0[0].targetLogProbs(weight: $0[1], targets: withIgnored, tiling: LMHeadTiling(rowChunk: 2, vocabTile: 4))
        }
    }

    func testLMHeadLogitsOfChosenRows() {
        let h = randomTensor([2, 3, 4], seed: 13), w = randomTensor([9, 4], seed: 14)
        let all = h.reshaped([6, 4]).matmul(w, transposeB: true)
        let chosen = h.lmHeadLogits(weight: w, rows: [5, 2])
        assertValuesClose(chosen, Tensor(shape: [2, 9], data: Array(all.toArray()[45..<54] + all.toArray()[18..<27])),
                          1e-5, "lmHeadLogits")
    }

    func testInputsWithoutGradGetNone() {
        let x = randomTensor([2, 5], seed: 15), w = randomTensor([3, 5], seed: 16)
        w.requiresGrad = true
        x.linear(w).sum().backward()
        XCTAssertNil(x.grad)
        XCTAssertEqual(w.grad?.shape, [3, 5])
    }
}
