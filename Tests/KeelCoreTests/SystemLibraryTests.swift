import XCTest
import CSQLite
import CYaml

/// The system-library targets for SQLite and libyaml resolve through pkg-config and link.
final class SystemLibraryTests: XCTestCase {
    func testSQLiteOpensInMemoryDatabase() {
        var db: OpaquePointer?
        XCTAssertEqual(sqlite3_open(":memory:", &db), SQLITE_OK)
        defer { sqlite3_close(db) }
        XCTAssertEqual(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (42);", nil, nil, nil), SQLITE_OK)
    }

    func testLibYAMLReportsVersion() {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        yaml_get_version(&major, &minor, &patch)
        XCTAssertEqual(major, 0)
        XCTAssertGreaterThanOrEqual(minor, 2)
    }
}
