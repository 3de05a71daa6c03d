import Foundation
import XCTest
@testable import KeelCore

/// `keel status` shows the newest 50 runs by default and says so on standard error when there are
/// more (with --json too); `--all` and `--limit N` choose how many.
final class StatusListTests: XCTestCase {
    func testCutListsAreAnnouncedAndAllShowsEveryRun() throws {
        let fixture = try RunFixture()
        try FileManager.default.createDirectory(at: fixture.varDirectory, withIntermediateDirectories: true)
        let store = try fixture.store()
        for index in 0..<55 {
            try store.createRun(NewRun(id: String(format: "run-%02d", index), recipePath: "r.yaml", recipeText: "", fingerprint: "f",
                                       fingerprintParts: [:]), at: Date(timeIntervalSince1970: Double(1000 + index)))
        }
        XCTAssertEqual(try store.runCount(), 55)

        let cut = try fixture.keel(["status"])
        XCTAssertEqual(cut.status, 0, cut.error)
        XCTAssertEqual(cut.output.split(separator: "\n").count, 50)
        XCTAssertTrue(cut.output.hasPrefix("run-54"), cut.output)
        XCTAssertEqual(cut.error, "showing the newest 50 of 55 runs; --all shows every one, --limit N the newest N\n")

        let all = try fixture.keel(["status", "--all", "--json"])
        XCTAssertEqual(all.error, "")
        let runs = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(all.output.utf8)) as? [[String: Any]])
        XCTAssertEqual(runs.count, 55)

        let three = try fixture.keel(["status", "--limit", "3", "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(three.output.utf8)) as? [[String: Any]])?.count, 3)
        XCTAssertEqual(three.error, "showing the newest 3 of 55 runs; --all shows every one, --limit N the newest N\n")

        let enough = try fixture.keel(["status", "--limit", "55"])
        XCTAssertEqual(enough.error, "", "nothing cut, nothing said")
        XCTAssertEqual(try fixture.keel(["status", "run-00"]).output.split(separator: "\n").first, "run-00  queued  step 0/?")
    }
}
