import Foundation
import XCTest
@testable import KeelCore

/// One decoding of recipe files (`RecipeSource`), shared by validate, run and the daemon: a UTF-8
/// byte-order mark is dropped, UTF-16 is refused by name, a bad byte is reported where it is.
final class RecipeEncodingTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    static let yaml = RecipeErrorTests.head + "training:\n  steps: 10\n"

    func load(_ bytes: [UInt8]) throws -> PluginGraph {
        let url = fixture.directory.appendingPathComponent("r.yaml")
        try Data(bytes).write(to: url)
        return try RecipeLoader(registry: testRegistry()).load(url, displayName: "r.yaml")
    }

    func testByteOrderMarkIsDroppedOnceForEveryReader() throws {
        let graph = try load([0xEF, 0xBB, 0xBF] + Array(Self.yaml.utf8))
        XCTAssertEqual(graph.recipe.text, Self.yaml, "the text parsed, hashed and stored has no byte-order mark")
        let withMark = try RunFingerprint.parts(recipe: graph.recipe, recipeText: graph.recipe.text)
        let without = try RunFingerprint.parts(recipe: try load(Array(Self.yaml.utf8)).recipe, recipeText: Self.yaml)
        XCTAssertEqual(withMark["recipe"], without["recipe"])
    }

    func testUTF16IsRefusedByName() throws {
        for (bom, name) in [([UInt8]([0xFF, 0xFE]), "UTF-16 (little-endian)"), ([0xFE, 0xFF], "UTF-16 (big-endian)")] {
            let units = Array(Self.yaml.utf16).flatMap { name.contains("little") ? [UInt8($0 & 0xFF), UInt8($0 >> 8)] : [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
            XCTAssertThrowsError(try load(bom + units)) {
                XCTAssertEqual("\($0)", "r.yaml:1:1: found \(name) text (its byte-order mark); expected UTF-8 (convert it, e.g. iconv -t UTF-8)")
            }
        }
        XCTAssertThrowsError(try load(Array(Self.yaml.utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })) {
            XCTAssertEqual("\($0)", "r.yaml:1:2: found a NUL byte; expected UTF-8 text (is the file UTF-16 or binary?)")
        }
    }

    func testBadByteIsReportedAtItsLineAndColumn() throws {
        var bytes = Array(Self.yaml.utf8)
        let lineStart = try XCTUnwrap(Self.yaml.range(of: "  name: test-pairwise")).lowerBound.utf16Offset(in: Self.yaml)
        bytes[lineStart + 8] = 0xFF  // line 6, column 9: the "t" of test-pairwise
        XCTAssertThrowsError(try load(bytes)) {
            XCTAssertEqual("\($0)", "r.yaml:6:9: found a byte that is not UTF-8; expected UTF-8 text")
        }
    }
}
