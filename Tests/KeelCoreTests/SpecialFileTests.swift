import Foundation
import Glibc
import XCTest
@testable import KeelCore

/// Paths that are not regular files — a FIFO, a device, a folder where a file belongs, a dangling or
/// looping link — are refused when the recipe loads, naming what was found, instead of being read
/// forever (or failing later with a raw error).
final class SpecialFileTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    /// The base recipe of `RecipeErrorTests` with the data path on line 4 (its value at column 11).
    func recipe(dataPath: String) -> String {
        RecipeErrorTests.head.replacingOccurrences(of: "path: pairs.jsonl", with: "path: \(dataPath)") + "training:\n  steps: 10\n"
    }

    func testDataPathsThatAreNotRegularFilesAreRefused() throws {
        XCTAssertEqual(mkfifo(fixture.path("pipe.jsonl"), 0o600), 0)
        XCTAssertEqual(fixture.errors(recipe(dataPath: "pipe.jsonl")), [
            "r.yaml:4:11: data[0].path: found a FIFO (named pipe) at \(fixture.path("pipe.jsonl")); expected a regular file or a folder",
        ])
        XCTAssertEqual(fixture.errors(recipe(dataPath: "/dev/zero")), [
            "r.yaml:4:11: data[0].path: found a character device at /dev/zero; expected a regular file or a folder",
        ])
        XCTAssertEqual(fixture.errors(recipe(dataPath: "empty-folder")), [
            "r.yaml:4:11: data[0].path: found a folder at \(fixture.path("empty-folder")); expected a file",
        ])
    }

    /// The recipe file itself: each refused at 1:1 without blocking or reading without end.
    func testRecipeFilesThatAreNotRegularFilesAreRefused() throws {
        XCTAssertEqual(mkfifo(fixture.path("fifo.yaml"), 0o600), 0)
        try FileManager.default.createSymbolicLink(atPath: fixture.path("zero.yaml"), withDestinationPath: "/dev/zero")
        try FileManager.default.createSymbolicLink(atPath: fixture.path("dangling.yaml"), withDestinationPath: fixture.path("nowhere"))
        try FileManager.default.createSymbolicLink(atPath: fixture.path("loop.yaml"), withDestinationPath: fixture.path("loop.yaml"))
        let cases = [
            ("fifo.yaml", "found a FIFO (named pipe); expected a regular file holding a recipe (YAML)"),
            ("zero.yaml", "found a character device; expected a regular file holding a recipe (YAML)"),
            ("hf", "found a folder; expected a regular file holding a recipe (YAML)"),
            ("dangling.yaml", "found a symbolic link to \(fixture.path("nowhere")), which does not exist; expected a recipe file (YAML)"),
            ("loop.yaml", "found a symbolic link loop; expected a recipe file (YAML)"),
        ]
        for (name, message) in cases {
            XCTAssertThrowsError(try RecipeLoader(registry: testRegistry()).load(URL(fileURLWithPath: fixture.path(name)), displayName: name)) {
                XCTAssertEqual("\($0)", "\(name):1:1: \(message)")
            }
        }
    }

    /// Hashing (run fingerprints: a model folder may hold anything) refuses a FIFO instead of waiting on it.
    func testHashingRefusesAFIFO() throws {
        XCTAssertEqual(mkfifo(fixture.path("hf/pipe"), 0o600), 0)
        XCTAssertThrowsError(try SHA256.hex(ofFileAt: URL(fileURLWithPath: fixture.path("hf/pipe"))))
    }
}
