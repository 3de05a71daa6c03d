import Foundation
import Glibc
import XCTest
@testable import KeelCore

/// var/ and everything keel writes in it is owner-only: folders 0700, files 0600 (recipe texts,
/// prompts, answers and weights may be private); a var/ an older keel left readable is tightened.
final class OwnerOnlyFilesTests: XCTestCase {
    func testEverythingARunWritesIsOwnerOnly() throws {
        let fixture = try RunFixture()
        try FileManager.default.createDirectory(at: fixture.varDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try fixture.writeTinyDPO([("steps: 300", "steps: 2"), ("eval_every: 100", "eval_every: 0")])
        let result = try fixture.keel(["run", fixture.recipe.path])
        XCTAssertEqual(result.status, 0, result.error)

        var checked = 0
        let items = try XCTUnwrap(FileManager.default.enumerator(atPath: fixture.varDirectory.path)).compactMap { $0 as? String }
        for path in [""] + items {
            var status = stat()
            XCTAssertEqual(lstat(fixture.varDirectory.appendingPathComponent(path).path, &status), 0, path)
            XCTAssertEqual(status.st_mode & 0o077, 0, "var/\(path) is \(String(status.st_mode & 0o777, radix: 8)); expected owner-only")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 8, "the store, the run's folder, checkpoints and the export were all checked")
    }
}
