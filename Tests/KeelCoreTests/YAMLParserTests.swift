import XCTest
@testable import KeelCore

final class YAMLParserTests: XCTestCase {
    func parse(_ text: String, _ parser: YAMLParser = YAMLParser()) throws -> YAMLNode {
        let document = try parser.parse(bytes: Array(text.utf8), file: "t.yaml")
        XCTAssertEqual(document.problems, [])
        return document.root
    }

    func error(_ text: String, _ parser: YAMLParser = YAMLParser()) -> String? {
        do { _ = try parse(text, parser); return nil } catch { return "\(error)" }
    }

    func testTreeKeepsOneBasedMarksForNodesAndKeys() throws {
        let root = try parse("a: 1\nb:\n  - x\n  - 'y'\nc: {d: true}\n")
        let entries = try XCTUnwrap(root.entries)
        XCTAssertEqual(entries.map(\.key), ["a", "b", "c"])
        XCTAssertEqual(entries.map(\.keyMark), [Mark(line: 1, column: 1), Mark(line: 2, column: 1), Mark(line: 5, column: 1)])
        XCTAssertEqual(entries[0].value, YAMLNode(.scalar("1", plain: true), at: Mark(line: 1, column: 4)))
        XCTAssertEqual(entries[1].value.items, [YAMLNode(.scalar("x", plain: true), at: Mark(line: 3, column: 5)),
                                                YAMLNode(.scalar("y", plain: false), at: Mark(line: 4, column: 5))])
        XCTAssertEqual(entries[2].value["d"]?.mark, Mark(line: 5, column: 8))
    }

    func testDuplicateKeysAreAllReportedAndTheFirstIsKept() throws {
        let document = try YAMLParser().parse(bytes: Array("a: 1\nb: 2\na: 3\nb: {c: 1, c: 2}\n".utf8), file: "t.yaml")
        XCTAssertEqual(document.problems.map(\.description), [
            "t.yaml:3:1: duplicate key 'a' (first at 1:1); expected each key once",
            "t.yaml:4:11: duplicate key 'c' (first at 4:5); expected each key once",
            "t.yaml:4:1: duplicate key 'b' (first at 2:1); expected each key once",
        ])
        XCTAssertEqual(document.root["a"]?.scalar, "1")
        XCTAssertEqual(document.root["b"]?.scalar, "2")
    }

    func testNullScalars() throws {
        let root = try parse("a:\nb: ~\nc: null\nd: ''\n")
        XCTAssertEqual(["a", "b", "c", "d"].map { root[$0]?.isNull }, [true, true, true, false])
    }

    /// "Billion laughs": nine levels of ten aliases would expand to 10⁹ nodes; refused at the limit,
    /// quickly, at the alias that crosses it.
    func testAliasBombIsRefused() {
        var lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        for level in 1...9 {
            lines.append("l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ") + "]")
        }
        let start = Date()
        XCTAssertEqual(error(lines.joined(separator: "\n")),
                       "t.yaml:5:45: document expands to more than 100000 nodes (alias expansion bomb?); expected at most 100000")
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
    }

    func testAliasesWithinTheLimitExpand() throws {
        var parser = YAMLParser()
        parser.maxNodes = 20
        let root = try parse("a: &x [1, 2, 3]\nb: *x\n", parser)
        XCTAssertEqual(root["b"]?.items?.compactMap(\.scalar), ["1", "2", "3"])
        // The root mapping and four values of 4 nodes each make 21 nodes: the fifth alias crosses 20.
        XCTAssertEqual(root["b"]?.mark, Mark(line: 2, column: 4))
        XCTAssertEqual(error("a: &x [1, 2, 3]\nb: *x\nc: *x\nd: *x\ne: *x\n", parser),
                       "t.yaml:5:4: document expands to more than 20 nodes (alias expansion bomb?); expected at most 20")
    }

    func testFileSizeLimit() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("keel-big-\(UUID().uuidString).yaml")
        try Data(repeating: UInt8(ascii: "#"), count: (1 << 20) + 1).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try YAMLParser().parse(contentsOf: url, displayName: "big.yaml").root) {
            XCTAssertEqual("\($0)", "big.yaml:1:1: file is 1048577 bytes; expected at most 1048576 bytes for a recipe")
        }
    }

    func testNestingLimit() {
        XCTAssertEqual(error(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)),
                       "t.yaml:1:65: nesting deeper than 64 levels; expected at most 64")
    }

    func testSyntaxErrorPositionAndText() {
        XCTAssertEqual(error("a: 1\nb: [2, 3\nc: 4\n"),
                       "t.yaml:3:2: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at 2:4); expected YAML: key: value pairs, nested by indenting with spaces")
        XCTAssertEqual(error("a: 1\n b: 2\n"), "t.yaml:2:3: YAML syntax error: mapping values are not allowed in this context; expected YAML: key: value pairs, nested by indenting with spaces")
    }

    func testUnknownAliasAndSecondDocumentAndComplexKey() {
        XCTAssertEqual(error("a: *nope\n"), "t.yaml:1:4: unknown alias *nope; expected an anchor &nope defined before it")
        XCTAssertEqual(error("a: 1\n---\nb: 2\n"), "t.yaml:2:1: a second YAML document; expected a single document per recipe")
        XCTAssertEqual(error("? [a, b]\n: 1\n"), "t.yaml:1:3: a mapping key must be a plain word; expected key: value")
    }
}
