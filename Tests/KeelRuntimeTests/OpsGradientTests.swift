import XCTest
@testable import KeelRuntime

/// Every differentiable op against finite differences (see GradientChecker for the tolerances).
final class OpsGradientTests: XCTestCase {
    let checker = GradientChecker()

    func testArithmeticWithBroadcasting() {
        let cases: [([Int], [Int])] = [([2, 3], [2, 3]), ([2, 3], [3]), ([2, 1], [1, 3]), ([4], []),
                                       ([2, 1, 3], [4, 1]), ([1], [3, 1])]
        for (sa, sb) in cases {
            let a = randomTensor(sa, seed: 1), b = randomTensor(sb, seed: 2, low: 0.5, high: 2)
            checker.check("add \(sa) \(sb)", [a, b]) { $0[0] + $0[1] }
            checker.check("sub \(sa) \(sb)", [a, b]) { $0[0] - $0[1] }
            checker.check("mul \(sa) \(sb)", [a, b]) { $0[0] * $0[1] }
            checker.check("div \(sa) \(sb)", [a, b]) { $0[0] / $0[1] }
            checker.check("div swapped \(sb) \(sa)", [b, a.clamp(min: 0.5) + 0.1]) { $0[0] / $0[1] }
        }
    }

    func testNegationAndScalarForms() {
        let x = randomTensor([3, 2], seed: 3, low: 0.5, high: 2)
        checker.check("neg", [x]) { -$0[0] }
        checker.check("tensor+scalar", [x]) { $0[0] + 3 }
        checker.check("scalar-tensor", [x]) { 3 - $0[0] }
        checker.check("tensor*scalar", [x]) { $0[0] * -1.5 }
        checker.check("scalar/tensor", [x]) { 2 / $0[0] }
        checker.check("tensor/scalar", [x]) { $0[0] / 4 }
    }

    func testUnaryFunctions() {
        let x = randomTensor([2, 5], seed: 4, low: -3, high: 3)
        let positive = randomTensor([2, 5], seed: 5, low: 0.3, high: 3)
        let awayFromZero = Tensor(shape: x.shape, data: x.toArray().map { $0 > 0 ? $0 + 0.1 : $0 - 0.1 })
        checker.check("exp", [x]) { $0[0].exp() }
        checker.check("log", [positive]) { $0[0].log() }
        checker.check("sqrt", [positive]) { $0[0].sqrt() }
        checker.check("square", [x]) { $0[0].square() }
        checker.check("sigmoid", [x]) { $0[0].sigmoid() }
        checker.check("logSigmoid", [x]) { $0[0].logSigmoid() }
        checker.check("softplus", [x]) { $0[0].softplus() }
        let negative = randomTensor([2, 5], seed: 6, low: -4, high: -0.05)
        checker.check("log1mexp", [negative]) { $0[0].log1mexp() }
        checker.check("tanh", [x]) { $0[0].tanh() }
        checker.check("silu", [x]) { $0[0].silu() }
        checker.check("gelu", [x]) { $0[0].gelu() }
        checker.check("relu", [awayFromZero]) { $0[0].relu() }
        let c = Tensor([-2, -0.5, 0.3, 1.7, 2.5])
        checker.check("clamp", [c]) { $0[0].clamp(min: -1, max: 2) }
    }

    func testReductions() {
        let x = randomTensor([2, 3, 4], seed: 6)
        checker.check("sum all", [x]) { $0[0].sum() }
        checker.check("sum axis 1", [x]) { $0[0].sum(axes: [1]) }
        checker.check("sum axes 0,2 keepDims", [x]) { $0[0].sum(axes: [0, -1], keepDims: true) }
        checker.check("mean axis -1", [x]) { $0[0].mean(axes: [-1]) }
        checker.check("mean all", [x]) { $0[0].mean() }
        checker.check("sum(toShape:)", [x]) { $0[0].sum(toShape: [3, 1]) }
        let small = randomTensor([3, 1], seed: 7)
        checker.check("broadcast(to:)", [small]) { $0[0].broadcast(to: [2, 3, 4]) }
    }

    func testMatmulAllTransposeFlagsAndShapes() {
        let (m, k, n) = (3, 4, 2)
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                let a = randomTensor(transposeA ? [k, m] : [m, k], seed: 8)
                let b = randomTensor(transposeB ? [n, k] : [k, n], seed: 9)
                checker.check("matmul tA=\(transposeA) tB=\(transposeB)", [a, b]) {
                    $0[0].matmul($0[1], transposeA: transposeA, transposeB: transposeB)
                }
                let ba = randomTensor([2] + (transposeA ? [k, m] : [m, k]), seed: 10)
                let bb = randomTensor([2] + (transposeB ? [n, k] : [k, n]), seed: 11)
                checker.check("batched matmul tA=\(transposeA) tB=\(transposeB)", [ba, bb]) {
                    $0[0].matmul($0[1], transposeA: transposeA, transposeB: transposeB)
                }
            }
            let x = randomTensor([2, 3, k], seed: 12)
            let w = randomTensor(transposeA ? [n, k] : [k, n], seed: 13)
            checker.check("linear [2,3,k]·W tB=\(transposeA)", [x, w]) { $0[0].matmul($0[1], transposeB: transposeA) }
        }
    }

    func testSoftmaxFamily() {
        let x = randomTensor([3, 5], seed: 14, low: -4, high: 4)
        checker.check("softmax", [x]) { $0[0].softmax() }
        checker.check("logSoftmax", [x]) { $0[0].logSoftmax() }
        let masked = x.copy()
        masked.pointer[1] = -.infinity
        masked.pointer[7] = -.infinity
        checker.check("softmax with -inf", [masked]) { $0[0].softmax() }
        checker.check("logSoftmax with -inf", [masked]) { $0[0].logSoftmax() }
    }

    func testIndexingOps() {
        let x = randomTensor([2, 3, 4], seed: 15)
        checker.check("gatherLastAxis", [x]) { $0[0].gatherLastAxis([0, 3, 1, 1, 2, 0]) }
        let table = randomTensor([5, 3], seed: 16)
        checker.check("embedding (repeated ids)", [table]) { Tensor.embedding($0[0], ids: [4, 1, 4, 0], shape: [2, 2]) }
        let condition = Tensor(shape: [2, 1], data: [1, 0])
        let a = randomTensor([2, 3], seed: 17), b = randomTensor([3], seed: 18)
        checker.check("select", [a, b]) { Tensor.select(condition, $0[0], $0[1]) }
        let mask = Tensor(shape: [3], data: [0, 1, 0])
        checker.check("maskedFill", [a]) { $0[0].maskedFill(mask, value: -5) }
    }

    func testLayerNorm() {
        let x = randomTensor([3, 6], seed: 19), w = randomTensor([6], seed: 20), b = randomTensor([6], seed: 21)
        checker.check("layerNorm with bias", [x, w, b]) { $0[0].layerNorm(weight: $0[1], bias: $0[2]) }
        checker.check("layerNorm no bias", [x, w]) { $0[0].layerNorm(weight: $0[1], bias: nil) }
    }

    func testShapeOps() {
        let x = randomTensor([4, 3], seed: 22)
        checker.check("reshaped", [x]) { $0[0].reshaped([2, -1]) * $0[0].reshaped([2, 6]) }
        checker.check("rows", [x]) { $0[0].rows(1..<3) }
        checker.check("row", [x]) { $0[0].row(2) }
        checker.check("transposed", [x]) { $0[0].transposed() }
        let y = randomTensor([2, 3, 4], seed: 23)
        checker.check("transposed 3-D", [y]) { $0[0].transposed(0, 2) }
        let z = randomTensor([4, 2], seed: 24)
        checker.check("concatenate axis 1", [x, z]) { Tensor.concatenate($0, axis: 1) }
        checker.check("concatenate axis 0", [x, x.rows(0..<1).copy()]) { Tensor.concatenate($0, axis: 0) }
    }
}
