import Foundation
import XCTest
@testable import KeelRuntime

/// Forward values against Double references, with the numerically hard inputs.
final class OpsValueTests: XCTestCase {
    private func logSoftmaxReference(_ row: [Float]) -> [Double] {
        let x = row.map(Double.init)
        let m = x.max()!
        let lse = m + Foundation.log(x.map { Foundation.exp($0 - m) }.reduce(0, +))
        return x.map { $0 - lse }
    }

    func testSoftmaxWithMasksAndExtremeLogits() {
        let x = Tensor(shape: [3, 4], data: [1e4, -1e4, 0, 1e4 - 1,
                                             -.infinity, 2, -.infinity, 3,
                                             -.infinity, -.infinity, -.infinity, -.infinity])
        let logP = x.logSoftmax().toArray(), p = x.softmax().toArray()
        let row0 = logSoftmaxReference(Array(x.toArray()[0..<4]))
        for i in 0..<4 { XCTAssertEqual(Double(logP[i]), row0[i], accuracy: 1e-3) }
        XCTAssertEqual(Double(p[0]), 1 / (1 + Foundation.exp(-1.0)), accuracy: 1e-6)
        XCTAssertEqual(p[1], 0)
        // −inf entries: probability 0, log-probability −inf; the rest normalise among themselves.
        XCTAssertEqual(p[4], 0)
        XCTAssertEqual(logP[6], -.infinity)
        XCTAssertEqual(Double(p[5]), 1 / (1 + Foundation.exp(1.0)), accuracy: 1e-6)
        XCTAssertEqual(Double(logP[7]), -Foundation.log(1 + Foundation.exp(-1.0)), accuracy: 1e-6)
        // A fully masked row: softmax 0, log-softmax −inf, never NaN.
        XCTAssertEqual(Array(p[8..<12]), [0, 0, 0, 0])
        XCTAssertEqual(Array(logP[8..<12]), [-.infinity, -.infinity, -.infinity, -.infinity])
        // Gradients stay finite through the masks.
        let leaf = x.copy()
        leaf.requiresGrad = true
        (leaf.softmax() * Tensor([1, 2, 3, 4])).sum().backward()
        XCTAssertTrue(leaf.grad!.toArray().allSatisfy(\.isFinite))
    }

    /// A vocabulary-sized row (49152 = SmolLM2's vocabulary): error stays at Float resolution.
    func testLogSoftmaxLongRows() {
        let v = 49152
        let x = randomTensor([2, v], seed: 30, low: -20, high: 20)
        let y = x.logSoftmax().toArray()
        for r in 0..<2 {
            let reference = logSoftmaxReference(Array(x.toArray()[(r * v)..<((r + 1) * v)]))
            let worst = zip(y[(r * v)..<((r + 1) * v)], reference).map { abs(Double($0) - $1) }.max()!
            XCTAssertLessThan(worst, 1e-4)
            let total = y[(r * v)..<((r + 1) * v)].reduce(0.0) { $0 + Foundation.exp(Double($1)) }
            XCTAssertEqual(total, 1, accuracy: 1e-4)
        }
    }

    /// Naive log(1/(1+e^−x)) overflows at −1e4 and loses everything below 1e-7 near +50; the stable
    /// forms match a Double reference (relative 1e-6) across the range.
    func testStableLogSigmoidAndSoftplusAtExtremes() {
        let xs: [Float] = [-1e4, -50, -1, 0, 1, 50, 1e4]
        let x = Tensor(xs)
        func softplus(_ v: Double) -> Double { max(v, 0) + Foundation.log1p(Foundation.exp(-abs(v))) }
        func close(_ a: Float, _ b: Double) -> Bool { abs(Double(a) - b) <= 1e-6 * max(abs(b), 1e-30) }
        for (i, v) in xs.map(Double.init).enumerated() {
            XCTAssertTrue(close(x.logSigmoid().toArray()[i], -softplus(-v)), "logSigmoid(\(v))")
            XCTAssertTrue(close(x.softplus().toArray()[i], softplus(v)), "softplus(\(v))")
            XCTAssertTrue(close(x.sigmoid().toArray()[i], 1 / (1 + Foundation.exp(-v))), "sigmoid(\(v))")
        }
        let leaf = x.copy()
        leaf.requiresGrad = true
        leaf.logSigmoid().sum().backward()
        for (i, v) in xs.map(Double.init).enumerated() {   // d/dx log σ(x) = σ(−x)
            XCTAssertTrue(close(leaf.grad!.toArray()[i], 1 / (1 + Foundation.exp(v))), "d logSigmoid(\(v))")
        }
    }

    /// log(1 − eˣ) on both sides of −ln 2 and near 0, where log1p(−eˣ) in Float keeps only a few digits:
    /// value and derivative −eˣ/(1 − eˣ) match a Double reference (relative 1e-6).
    func testLog1mExpIsAccurateNearZeroAndFarBelow() {
        let xs: [Float] = [-1e-6, -1e-3, -0.5, -0.7, -1, -20, -80]
        let leaf = Tensor(xs)
        leaf.requiresGrad = true
        let y = leaf.log1mexp()
        y.sum().backward()
        func close(_ a: Float, _ b: Double) -> Bool { abs(Double(a) - b) <= 1e-6 * max(abs(b), 1e-30) }
        for (i, v) in xs.map(Double.init).enumerated() {
            let want = v < -0.5 ? Foundation.log1p(-Foundation.exp(v)) : Foundation.log(-Foundation.expm1(v))   // each form far below 1e-6 in Double on its side
            XCTAssertTrue(close(y.toArray()[i], want), "log1mexp(\(v)) = \(y.toArray()[i]), expected \(want)")
            XCTAssertTrue(close(leaf.grad!.toArray()[i], -1 / Foundation.expm1(-v)), "d log1mexp(\(v))")
        }
    }

    func testElementwiseFunctionValues() {
        let xs: [Float] = [-3, -0.5, 0, 0.7, 2.5]
        let x = Tensor(xs)
        func check(_ name: String, _ out: Tensor, _ f: (Double) -> Double) {
            for (value, input) in zip(out.toArray(), xs) {
                XCTAssertEqual(Double(value), f(Double(input)), accuracy: 1e-6, "\(name)(\(input))")
            }
        }
        let c = 0.7978845608028654
        check("gelu(tanh)", x.gelu()) { 0.5 * $0 * (1 + Foundation.tanh(c * ($0 + 0.044715 * $0 * $0 * $0))) }
        check("silu", x.silu()) { $0 / (1 + Foundation.exp(-$0)) }
        check("tanh", x.tanh()) { Foundation.tanh($0) }
        check("relu", x.relu()) { max($0, 0) }
        check("exp", x.exp()) { Foundation.exp($0) }
        check("clamp", x.clamp(min: -1, max: 1)) { min(max($0, -1), 1) }
    }

    func testMatmulMatchesNaiveProduct() {
        let a = randomTensor([2, 5, 7], seed: 31), b = randomTensor([2, 7, 3], seed: 32)
        let c = a.matmul(b)
        XCTAssertEqual(c.shape, [2, 5, 3])
        for batch in 0..<2 { for i in 0..<5 { for j in 0..<3 {
            var expected = 0.0
            for k in 0..<7 { expected += Double(a.pointer[(batch * 5 + i) * 7 + k]) * Double(b.pointer[(batch * 7 + k) * 3 + j]) }
            XCTAssertEqual(Double(c.pointer[(batch * 5 + i) * 3 + j]), expected, accuracy: 1e-5)
        } } }
        // Transpose flags equal materialised transposes.
        let bt = b.transposed()
        XCTAssertEqual(a.matmul(bt, transposeB: true).toArray(), c.toArray())
        let at = a.transposed()
        XCTAssertEqual(at.matmul(b, transposeA: true).toArray(), c.toArray())
    }

    func testLayerNormValues() {
        let x = randomTensor([2, 5], seed: 33), w = randomTensor([5], seed: 34), b = randomTensor([5], seed: 35)
        let y = x.layerNorm(weight: w, bias: b, eps: 1e-5).toArray()
        for r in 0..<2 {
            let row = (0..<5).map { Double(x.pointer[r * 5 + $0]) }
            let mean = row.reduce(0, +) / 5
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 5
            for i in 0..<5 {
                let expected = (row[i] - mean) / (variance + 1e-5).squareRoot() * Double(w.pointer[i]) + Double(b.pointer[i])
                XCTAssertEqual(Double(y[r * 5 + i]), expected, accuracy: 1e-5)
            }
        }
    }

    func testGatherEmbeddingSelect() {
        let x = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(x.gatherLastAxis([2, 0]).toArray(), [3, 4])
        let table = Tensor(shape: [3, 2], data: [0, 1, 10, 11, 20, 21])
        let e = Tensor.embedding(table, ids: [2, 0, 2], shape: [1, 3])
        XCTAssertEqual(e.shape, [1, 3, 2])
        XCTAssertEqual(e.toArray(), [20, 21, 0, 1, 20, 21])
        table.requiresGrad = true
        Tensor.embedding(table, ids: [2, 0, 2]).sum().backward()
        XCTAssertEqual(table.grad?.toArray(), [1, 1, 0, 0, 2, 2])   // repeated id 2 accumulates
        let causal = Tensor(shape: [3, 3], data: [0, 1, 1, 0, 0, 1, 0, 0, 0])
        let scores = Tensor.zeros([2, 3, 3]).maskedFill(causal, value: -.infinity).softmax()
        let third: Float = 1 / 3
        let expected: [Float] = [1, 0, 0, 0.5, 0.5, 0, third, third, third]
        XCTAssertEqual(Array(scores.toArray()[0..<9]), expected)
        let picked = Tensor.select(Tensor([1, 0, 1]), Tensor([.infinity, 1, 2]), Tensor(shape: [2, 1], data: [7, 8]))
        XCTAssertEqual(picked.toArray(), [.infinity, 7, 2, .infinity, 8, 2])
    }
}
