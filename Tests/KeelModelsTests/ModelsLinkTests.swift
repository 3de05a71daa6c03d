import XCTest
@testable import KeelModels

final class ModelsLinkTests: XCTestCase {
    func testRuntimeIsReExported() {
        XCTAssertEqual(Tensor.zeros([2, 2]).count, 4)
    }
}
