import XCTest
import COpenBLAS
@testable import KeelRuntime

final class TensorContractTests: XCTestCase {
    func testRoundTripAndItem() {
        let t = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(t.shape, [2, 3])
        XCTAssertEqual(t.count, 6)
        XCTAssertEqual(t.toArray(), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(Tensor(shape: [], data: [7]).item(), 7)
        XCTAssertEqual(Tensor.zeros([4]).toArray(), [0, 0, 0, 0])
    }

    /// The OpenBLAS system-library target links and computes: [[1,2],[3,4]] · [[5,6],[7,8]].
    func testOpenBLASLinks() {
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
        XCTAssertEqual(c, [19, 22, 43, 50])
    }
}
