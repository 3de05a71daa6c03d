import Foundation
import XCTest
@testable import KeelModels

/// The reader on synthetic files made by `GGUFWriter`.
final class GGUFReaderTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws { directory = try ModelFixtures.temporaryDirectory("gguf") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private func write(_ data: Data, _ name: String = "model.gguf") throws -> String {
        let path = directory.appendingPathComponent(name).path
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    private func expectError(_ data: Data, mentioning fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try write(data, "bad.gguf")
        XCTAssertThrowsError(try GGUFFile(path: path), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(error is GGUFError, "\(type(of: error)): \(text)", file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(text.contains(fragment), "'\(text)' should mention '\(fragment)'", file: file, line: line)
            }
        }
    }

    func testMetadataOfEveryTypeRoundTrips() throws {
        let values: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60_000)), ("i16", .int16(-30_000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("f32", .float32(-1.5)),
            ("bool", .bool(true)), ("string", .string("héllo ✓")), ("u64", .uint64(1 << 40)),
            ("i64", .int64(-(1 << 40))), ("f64", .float64(0.1)),
            ("strings", .array([.string("a"), .string(""), .string("Ġ t")])),
            ("ints", .array([.int32(3), .int32(-1)])),
            ("nested", .array([.array([.uint8(1), .uint8(2)]), .array([.uint8(3)])])),
            ("empty", .array([])),
            (GGUFFile.alignmentKey, .uint32(64)),
        ]
        var writer = GGUFWriter()
        for (key, value) in values { writer.set(key, value) }
        writer.addFloat32Tensor(name: "a", shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        writer.addFloat32Tensor(name: "b", shape: [5], values: [-1, -2, -3, -4, -5])
        let gguf = try GGUFFile(path: try write(writer.encoded()))

        XCTAssertEqual(gguf.metadataKeys, values.map(\.0))
        for (key, value) in values { XCTAssertEqual(gguf.metadata[key], value, key) }
        XCTAssertEqual(gguf.metadata["u32"]?.int, 4_000_000_000)
        XCTAssertEqual(gguf.metadata["f64"]?.float, 0.1)
        XCTAssertEqual(gguf.metadata["strings"]?.stringArray, ["a", "", "Ġ t"])
        XCTAssertEqual(gguf.metadata["ints"]?.intArray, [3, -1])
        XCTAssertNil(gguf.metadata["ints"]?.stringArray)
        XCTAssertEqual(try gguf.requiredInt("i16"), -30_000)
        XCTAssertThrowsError(try gguf.requiredString("u8")) { XCTAssertTrue("\($0)".contains("'u8' is uint8, expected a string")) }
        XCTAssertThrowsError(try gguf.requiredInt("absent")) { XCTAssertTrue("\($0)".contains("missing metadata key 'absent'")) }

        XCTAssertEqual(gguf.alignment, 64)
        XCTAssertEqual(gguf.dataOffset % 64, 0)
        XCTAssertEqual(gguf.tensors.map(\.name), ["a", "b"])
        XCTAssertEqual(gguf.tensors.map(\.offset), [0, 64])
        XCTAssertEqual(gguf.tensor(named: "a")?.dimensions, [3, 2])
        XCTAssertEqual(try gguf.dequantize(named: "a").shape, [2, 3])
        XCTAssertEqual(try gguf.dequantize(named: "a").toArray(), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try gguf.dequantize(named: "b").toArray(), [-1, -2, -3, -4, -5])
    }

    func testHeaderErrorsNameTheOffsetAndTheField() throws {
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        writer.addFloat32Tensor(name: "w", shape: [4], values: [1, 2, 3, 4])
        let good = writer.encoded()

        var badMagic = good
        badMagic[0] = UInt8(ascii: "X")
        try expectError(badMagic, mentioning: ["at byte 0", "not a GGUF file"])

        var version1 = good
        version1[4] = 1
        try expectError(version1, mentioning: ["at byte 4", "unsupported GGUF version 1"])

        try expectError(good.prefix(60), mentioning: ["at byte 56", "truncated", "length of value of metadata key 'general.architecture'"])
        try expectError(good.prefix(30), mentioning: ["at byte 8", "tensor_count is 1", "truncated or corrupt"])
        try expectError(good.prefix(good.count - 20), mentioning: ["tensor 'w'", "beyond the file size"])

        var hugeCount = good
        hugeCount.replaceSubrange(8..<16, with: [UInt8](repeating: 0xFF, count: 8))
        try expectError(hugeCount, mentioning: ["at byte 8", "tensor_count"])

        // The value type of the first key sits after the 24-byte header and the 8 + 20 byte key.
        var badType = good
        badType[24 + 8 + 20] = 99
        try expectError(badType, mentioning: ["at byte 52", "unknown value type 99"])

        var alignment = GGUFWriter()
        alignment.set(GGUFFile.alignmentKey, .uint32(24))
        try expectError(alignment.encoded(), mentioning: ["general.alignment", "power of two"])

        var duplicate = GGUFWriter()
        duplicate.metadata = [("k", .bool(true)), ("k", .bool(false))]
        try expectError(duplicate.encoded(), mentioning: ["duplicate metadata key 'k'"])

        var misaligned = writer
        misaligned.addFloat32Tensor(name: "v", shape: [1], values: [0])
        var misalignedData = misaligned.encoded()
        // The second tensor info's u64 offset ends where the header padding starts; set it to 4.
        let secondOffsetAt = 24 + (8 + 20 + 4 + 8 + 5) + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1 + 4 + 8 + 4)
        misalignedData[secondOffsetAt] = 4
        try expectError(misalignedData, mentioning: ["tensor 'v'", "not a multiple of the alignment 32"])

        XCTAssertThrowsError(try GGUFFile(path: directory.appendingPathComponent("absent.gguf").path)) {
            XCTAssertTrue("\($0)".contains("absent.gguf"))
        }
    }
}
