import XCTest
@testable import KeelDaemon

final class DaemonLinkTests: XCTestCase {
    func testCoreIsReExported() { XCTAssertFalse(Keel.version.isEmpty) }
}
