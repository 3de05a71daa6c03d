import XCTest
@testable import KeelRuntime

final class TensorTests: XCTestCase {
    func testCreation() {
        XCTAssertEqual(Tensor.ones([2, 2]).toArray(), [1, 1, 1, 1])
        XCTAssertEqual(Tensor.full([3], value: -2.5).toArray(), [-2.5, -2.5, -2.5])
        XCTAssertEqual(Tensor.scalar(4).shape, [])
        XCTAssertEqual(Tensor([1, 2]).shape, [2])
        XCTAssertEqual(Tensor.zeros([0, 3]).count, 0)
    }

    /// Seeded draws are reproducible, follow the generator's stream, and have the requested moments.
    func testSeededRandomTensors() {
        var g1 = Philox(seed: 7), g2 = Philox(seed: 7)
        let a = Tensor.randomNormal([4096], mean: 1, std: 2, generator: &g1)
        let b = Tensor.randomNormal([4096], mean: 1, std: 2, generator: &g2)
        XCTAssertEqual(a.toArray(), b.toArray())
        var reference = Philox(seed: 7)
        XCTAssertEqual(a.toArray()[0], 1 + 2 * reference.nextNormal())
        let values = a.toArray().map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
        XCTAssertEqual(mean, 1, accuracy: 0.1)          // standard error 2/64 ≈ 0.03
        XCTAssertEqual(variance.squareRoot(), 2, accuracy: 0.1)
        var g3 = Philox(seed: 8)
        let u = Tensor.randomUniform([1000], low: -3, high: -1, generator: &g3).toArray()
        XCTAssertTrue(u.allSatisfy { $0 >= -3 && $0 < -1 })
        XCTAssertLessThan(u.min()!, -2.9)
        XCTAssertGreaterThan(u.max()!, -1.1)
    }

    func testViewsShareStorage() {
        let x = Tensor(shape: [3, 2], data: [0, 1, 2, 3, 4, 5])
        let r = x.reshaped([2, 3])
        XCTAssertTrue(r.storage === x.storage)
        XCTAssertEqual(x.reshaped([-1]).shape, [6])
        let middle = x.rows(1..<3)
        XCTAssertTrue(middle.storage === x.storage)
        XCTAssertEqual(middle.toArray(), [2, 3, 4, 5])
        XCTAssertEqual(x.row(2).toArray(), [4, 5])
        x.pointer[4] = 40
        XCTAssertEqual(middle.toArray(), [2, 3, 40, 5])
        XCTAssertEqual(x.transposed().toArray(), [0, 2, 40, 1, 3, 5])
        XCTAssertEqual(Tensor.concatenate([x.rows(0..<1), x.rows(2..<3)]).toArray(), [0, 1, 40, 5])
    }

    func testTransposeOfThreeAxes() {
        let x = Tensor(shape: [2, 3, 4], data: (0..<24).map(Float.init))
        let t = x.transposed(0, 2)   // [4, 3, 2]: t[i, j, k] = x[k, j, i]
        XCTAssertEqual(t.shape, [4, 3, 2])
        for i in 0..<4 { for j in 0..<3 { for k in 0..<2 {
            XCTAssertEqual(t.pointer[(i * 3 + j) * 2 + k], x.pointer[(k * 3 + j) * 4 + i])
        } } }
    }

    func testBroadcastShapes() {
        XCTAssertEqual(broadcastShapes([2, 1, 3], [4, 1]), [2, 4, 3])
        XCTAssertEqual(broadcastShapes([], [5]), [5])
        XCTAssertEqual(broadcastShapes([0, 3], [1, 3]), [0, 3])
        XCTAssertNil(broadcastShapes([2, 3], [2]))
    }

    /// Broadcast arithmetic against an index-by-index Double reference for every layout class.
    func testBroadcastArithmeticValues() {
        let cases: [([Int], [Int])] = [([2, 1, 3], [4, 1]), ([3], [2, 3]), ([2, 3], [2, 1]), ([1, 1], [3]),
                                       ([2, 3, 4], [3, 1]), ([5], []), ([1], [1])]
        for (sa, sb) in cases {
            let a = randomTensor(sa, seed: 1), b = randomTensor(sb, seed: 2, low: 0.5, high: 2)
            let shape = broadcastShapes(sa, sb)!
            let results = [a + b, a - b, a * b, a / b]
            let reference: [(Double, Double) -> Double] = [{ $0 + $1 }, { $0 - $1 }, { $0 * $1 }, { $0 / $1 }]
            for (out, f) in zip(results, reference) {
                XCTAssertEqual(out.shape, shape)
                for flat in 0..<out.count {
                    let x = Double(a.pointer[sourceIndex(flat, shape, sa)]), y = Double(b.pointer[sourceIndex(flat, shape, sb)])
                    XCTAssertEqual(Double(out.pointer[flat]), f(x, y), accuracy: 1e-6, "\(sa) ⊕ \(sb) at \(flat)")
                }
            }
        }
    }

    func testEmptyAndSizeOneAxes() {
        let empty = Tensor.zeros([0, 3])
        XCTAssertEqual((empty + Tensor([1, 2, 3])).shape, [0, 3])
        XCTAssertEqual(empty.sum(axes: [0]).toArray(), [0, 0, 0])
        XCTAssertEqual(empty.sum().item(), 0)
        XCTAssertTrue(empty.mean(axes: [0]).toArray().allSatisfy(\.isNaN))   // 0/0, as NumPy
        XCTAssertEqual(Tensor.zeros([2, 0]).sum(axes: [1]).toArray(), [0, 0])
        XCTAssertEqual(Tensor.zeros([2, 0]).softmax().shape, [2, 0])
        XCTAssertEqual(Tensor.zeros([0, 4]).logSoftmax().shape, [0, 4])
        XCTAssertEqual(Tensor.zeros([0, 4]).matmul(Tensor.zeros([4, 2])).shape, [0, 2])
        XCTAssertEqual(Tensor.zeros([2, 0]).matmul(Tensor.zeros([0, 3])).toArray(), [0, 0, 0, 0, 0, 0])
        let x = Tensor(shape: [2, 1, 3], data: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(x.sum(axes: [1]).shape, [2, 3])
        XCTAssertEqual(x.sum(axes: [1], keepDims: true).shape, [2, 1, 3])
        XCTAssertEqual(x.sum(axes: [0, 2]).toArray(), [21])
        XCTAssertEqual(x.sum(axes: []).toArray(), x.toArray())
        XCTAssertEqual(x.mean(axes: [-1]).toArray(), [2, 5])
        // Gradients through an empty tensor are empty, not a crash.
        let w = Tensor.zeros([0, 3])
        w.requiresGrad = true
        (w * 2).sum().backward()
        XCTAssertEqual(w.grad?.shape, [0, 3])
    }
}

/// Flat index into an operand of shape `source` for output element `flat` of `shape` (NumPy rules).
func sourceIndex(_ flat: Int, _ shape: [Int], _ source: [Int]) -> Int {
    var remaining = flat, index = 0, stride = 1
    let padded = [Int](repeating: 1, count: shape.count - source.count) + source
    for axis in shape.indices.reversed() {
        let coordinate = remaining % shape[axis]
        remaining /= shape[axis]
        if padded[axis] != 1 { index += coordinate * stride }
        stride *= padded[axis]
    }
    return index
}
