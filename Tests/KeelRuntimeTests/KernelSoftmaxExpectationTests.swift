import Foundation
import XCTest
@testable import KeelRuntime

/// The softmax expectation kernel against the naive Double formula (full logits, plain softmax) and its
/// gradients against central finite differences of that formula.
final class KernelSoftmaxExpectationTests: XCTestCase {
    /// Σ_v softmax(h[n]·Wᵀ)_v · q[v] per row in Double, 0 for ignored rows; logits capped as
    /// cap · tanh(l / cap) with a softcap.
    static func reference(_ h: [Double], _ W: [Double], _ q: [Float], _ targets: [Int32], N: Int, C: Int, V: Int,
                          softcap: Float? = nil) -> [Double] {
        (0..<N).map { n in
            guard targets[n] != ignoreIndex else { return 0 }
            let raw = (0..<V).map { v in (0..<C).map { h[n * C + $0] * W[v * C + $0] }.reduce(0, +) }
            let logits = softcap.map { cap in raw.map { Double(cap) * Foundation.tanh($0 / Double(cap)) } } ?? raw
            let top = logits.max()!
            let weights = logits.map { Foundation.exp($0 - top) }
            return zip(weights, q).map { $0 * Double($1) }.reduce(0, +) / weights.reduce(0, +)
        }
    }

    func testForwardAndBackwardMatchTheDoubleFormulaForEveryTiling() {
        checkAgainstReference(softcap: nil)
    }

    /// With Gemma 2's final-logit soft-capping.
    func testSoftcappedLogits() {
        checkAgainstReference(softcap: 3)
    }

    private func checkAgainstReference(softcap: Float?) {
        let (N, C, V) = (11, 8, 37)
        var rng = Philox(seed: 21)
        let h = KernelCheck.normal(N * C, &rng), W = KernelCheck.normal(V * C, &rng, scale: 2)
        let q = KernelCheck.normal(V, &rng), R = KernelCheck.normal(N, &rng)
        let targets: [Int32] = [3, -1, 36, 0, -1, 5, 5, 20, -1, 1, 30]
        let expected = Self.reference(h.doubles, W.doubles, q, targets, N: N, C: C, V: V, softcap: softcap)
        let dhExpected = KernelCheck.gradient(of: h) { Self.reference($0, W.doubles, q, targets, N: N, C: C, V: V, softcap: softcap).dot(R) }
        let dWExpected = KernelCheck.gradient(of: W) { Self.reference(h.doubles, $0, q, targets, N: N, C: C, V: V, softcap: softcap).dot(R) }
        // Tiny tiles exercise partial row chunks, partial vocabulary tiles and the cross-block merge.
        for tiling in [LMHeadTiling(), LMHeadTiling(rowChunk: 3, vocabTile: 5), LMHeadTiling(rowChunk: 1, vocabTile: 37)] {
            let label = "softmaxExpectation rowChunk=\(tiling.rowChunk) vocabTile=\(tiling.vocabTile)"
            var E = [Float](repeating: .nan, count: N), lse = [Float](repeating: .nan, count: N)
            softmaxExpectationForward(&E, &lse, h, W, q, targets, N: N, C: C, V: V, softcap: softcap, tiling: tiling)
            KernelCheck.assertClose(E, expected, tolerance: 1e-5, label + " E")
            var dh = [Float](repeating: 0, count: N * C), dW = [Float](repeating: 0, count: V * C)
            softmaxExpectationBackward(&dh, &dW, R, h, W, q, targets, E, lse, N: N, C: C, V: V, softcap: softcap, tiling: tiling)
            KernelCheck.assertClose(dh, dhExpected, tolerance: 1e-4, label + " dh")
            KernelCheck.assertClose(dW, dWExpected, tolerance: 1e-4, label + " dW")
        }
    }

    /// Logits of a few hundred (a peaked distribution) stay finite through the online rescaling, and a
    /// constant q has expectation exactly that constant and no gradient.
    func testLargeLogitsAndConstantVector() {
        let (N, C, V) = (3, 4, 50)
        var rng = Philox(seed: 22)
        let h = KernelCheck.normal(N * C, &rng, scale: 30), W = KernelCheck.normal(V * C, &rng, scale: 5)
        let q = KernelCheck.normal(V, &rng), targets: [Int32] = [0, 1, 2]
        var E = [Float](repeating: 0, count: N), lse = [Float](repeating: 0, count: N)
        softmaxExpectationForward(&E, &lse, h, W, q, targets, N: N, C: C, V: V, tiling: LMHeadTiling(rowChunk: 2, vocabTile: 7))
        KernelCheck.assertClose(E, Self.reference(h.doubles, W.doubles, q, targets, N: N, C: C, V: V), tolerance: 1e-5, "peaked E")

        let constant = [Float](repeating: 0.25, count: V)
        softmaxExpectationForward(&E, &lse, h, W, constant, targets, N: N, C: C, V: V)
        KernelCheck.assertClose(E, [0.25, 0.25, 0.25], tolerance: 1e-6, "constant q")
        var dh = [Float](repeating: 0, count: N * C)
        softmaxExpectationBackward(&dh, nil, [1, 1, 1], h, W, constant, targets, E, lse, N: N, C: C, V: V)
        KernelCheck.assertClose(dh, [Double](repeating: 0, count: N * C), tolerance: 1e-6, "constant q dh")
    }

    /// The autodiff op gives the kernel's values and gradients (dh through `backward`), with ignored rows 0.
    func testTensorOpRecordsTheBackward() throws {
        let (N, C, V) = (4, 3, 9)
        var rng = Philox(seed: 23)
        let hValues = KernelCheck.normal(N * C, &rng), wValues = KernelCheck.normal(V * C, &rng)
        let q = KernelCheck.normal(V, &rng), targets = [2, -1, 8, 0]
        let h = Tensor(shape: [N, C], data: hValues), W = Tensor(shape: [V, C], data: wValues)
        h.requiresGrad = true
        W.requiresGrad = true
        let E = h.softmaxExpectation(weight: W, vector: q, targets: targets)
        XCTAssertEqual(E.shape, [N])
        let ids = targets.map(Int32.init)
        KernelCheck.assertClose(E.toArray(), Self.reference(hValues.doubles, wValues.doubles, q, ids, N: N, C: C, V: V),
                                tolerance: 1e-5, "op E")
        E.sum().backward()
        let ones = [Float](repeating: 1, count: N)
        KernelCheck.assertClose(try XCTUnwrap(h.grad).toArray(), KernelCheck.gradient(of: hValues) {
            Self.reference($0, wValues.doubles, q, ids, N: N, C: C, V: V).dot(ones)
        }, tolerance: 1e-4, "op dh")
        KernelCheck.assertClose(try XCTUnwrap(W.grad).toArray(), KernelCheck.gradient(of: wValues) {
            Self.reference(hValues.doubles, $0, q, ids, N: N, C: C, V: V).dot(ones)
        }, tolerance: 1e-4, "op dW")
    }

    /// At SmolLM2's LM-head size (C = 576, V = 49152; 64 rows), results are bitwise identical run after
    /// run whatever the thread scheduling, and the forward costs about what the LM head's forward does
    /// (both are one pass of sgemm tiles; printed for the record).
    func testBitwiseReproducibleAtModelSizeAndAsCheapAsTheLMHead() {
        let (N, C, V) = (64, 576, 49152)
        var rng = Philox(seed: 24)
        let h = KernelCheck.normal(N * C, &rng), W = KernelCheck.normal(V * C, &rng, scale: 0.05)
        let q = KernelCheck.normal(V, &rng, scale: 1e-4), dE = KernelCheck.normal(N, &rng)
        let targets = (0..<N).map { Int32($0 % 5 == 0 ? -1 : ($0 * 769) % V) }
        func run() -> (bits: [[UInt32]], seconds: Double) {
            var E = [Float](repeating: 0, count: N), lse = [Float](repeating: 0, count: N)
            let start = Date()
            softmaxExpectationForward(&E, &lse, h, W, q, targets, N: N, C: C, V: V)
            let seconds = Date().timeIntervalSince(start)
            var dh = [Float](repeating: 0, count: N * C), dW = [Float](repeating: 0, count: V * C)
            softmaxExpectationBackward(&dh, &dW, dE, h, W, q, targets, E, lse, N: N, C: C, V: V)
            return ([E, lse, dh, dW].map { $0.map(\.bitPattern) }, seconds)
        }
        let first = run(), again = run()
        XCTAssert(again.bits == first.bits, "softmaxExpectation changed its result between runs")
        let best = min(first.seconds, again.seconds)
        var logp = [Float](repeating: 0, count: N), lse = [Float](repeating: 0, count: N)
        var lmHeadBest = Double.infinity
        for _ in 0..<2 {
            let start = Date()
            lmHeadLogProbForward(&logp, &lse, h, W, targets, N: N, C: C, V: V)
            lmHeadBest = min(lmHeadBest, Date().timeIntervalSince(start))
        }
        print(String(format: "softmaxExpectationForward %d×%d×%d: %.1f ms (lmHeadLogProbForward: %.1f ms)",
                     N, C, V, best * 1000, lmHeadBest * 1000))
    }
}
