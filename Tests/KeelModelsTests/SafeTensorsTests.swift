import Foundation
import XCTest
@testable import KeelModels

final class SafeTensorsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws { directory = try ModelFixtures.temporaryDirectory("safetensors") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// A file assembled byte by byte: u64 header length, JSON, data.
    private func handMade(header: String, data: [UInt8]) -> Data {
        var out = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        out.append(contentsOf: data)
        return out
    }

    func testRoundTripIsBitwise() throws {
        var rng = Philox(seed: 5)
        let special: [Float] = [.nan, Float(bitPattern: 0x7FC0_1234), -0.0, .infinity, -.infinity,
                                .leastNonzeroMagnitude, .greatestFiniteMagnitude, Float(bitPattern: 0x0001_2345)]
        let tensors: [(name: String, tensor: Tensor)] = [
            ("special", Tensor(shape: [2, 4], data: special)),
            ("random", Tensor(shape: [3, 5, 7], data: (0..<105).map { _ in rng.nextNormal() })),
            ("scalar", Tensor(shape: [], data: [42])),
            ("empty", Tensor(shape: [0, 3], data: [])),
        ]
        let moments: [Float] = [1, 2, 3, 4, 5, 6]
        try SafeTensors.write(path: path("a.safetensors"), tensors: tensors, metadata: ["step": "12", "format": "pt"])
        try moments.withUnsafeBufferPointer {
            try SafeTensors.write(path: path("b.safetensors"), tensors: [("m", [2, 3], $0)])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("a.safetensors.partial")))

        let file = try SafeTensorsFile(path: path("a.safetensors"))
        XCTAssertEqual(file.metadata, ["step": "12", "format": "pt"])
        XCTAssertEqual(file.tensors.map(\.name), tensors.map(\.name), "data order is the write order")
        XCTAssertEqual(file.tensors.first?.byteRange.lowerBound.isMultiple(of: 8), true, "data starts 8-byte aligned")
        for (name, tensor) in tensors {
            let loaded = try file.load(name)
            XCTAssertEqual(loaded.shape, tensor.shape, name)
            XCTAssertEqual(loaded.toArray().map(\.bitPattern), tensor.toArray().map(\.bitPattern), name)
        }
        XCTAssertEqual(try SafeTensorsFile(path: path("b.safetensors")).load("m").toArray(), moments)
    }

    func testReadsHalfAndBFloatWrittenByHand() throws {
        // F16 0x3C00 = 1, 0xC000 = −2; BF16 0x3F80 = 1, 0xC040 = −3.
        let header = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]},"__metadata__":{"format":"pt"}}"#
        try handMade(header: header, data: [0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x40, 0xC0]).write(to: URL(fileURLWithPath: path("h.safetensors")))
        let file = try SafeTensorsFile(path: path("h.safetensors"))
        XCTAssertEqual(try file.load("h").toArray(), [1, -2])
        XCTAssertEqual(try file.load("b").shape, [1, 2])
        XCTAssertEqual(try file.load("b").toArray(), [1, -3])
    }

    func testCorruptFilesAreRejectedWithNames() throws {
        func expectError(_ data: Data, _ fragment: String, line: UInt = #line) {
            let p = path("bad.safetensors")
            XCTAssertNoThrow(try data.write(to: URL(fileURLWithPath: p)), line: line)
            XCTAssertThrowsError(try SafeTensorsFile(path: p).tensors.forEach { _ = try SafeTensorsFile(path: p).load($0.name) }, line: line) {
                XCTAssertTrue("\($0)".contains(fragment), "'\($0)' should mention '\(fragment)'", line: line)
                XCTAssertTrue("\($0)".contains("bad.safetensors"), line: line)
            }
        }
        let entry = #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        expectError(Data([1, 2, 3]), "shorter than the 8-byte header size")
        expectError(handMade(header: entry, data: [0, 0, 0, 0]), "tensor 'x': data_offsets [0, 8)")
        expectError(handMade(header: "[1, 2]", data: []), "not a JSON object")
        expectError(handMade(header: #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)), "do not hold shape [3]")
        expectError(handMade(header: #"{"x":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)), "unknown dtype 'Q9'")
        expectError(handMade(header: #"{"x":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)), "dtype I32; expected F32, F16, BF16 or F64")
        expectError(handMade(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                             data: [UInt8](repeating: 0, count: 8)), "overlap")
        var hugeHeader = handMade(header: entry, data: [UInt8](repeating: 0, count: 8))
        hugeHeader.replaceSubrange(0..<8, with: [UInt8](repeating: 0xFF, count: 8))
        expectError(hugeHeader, "exceeds the file")
    }

    func testEveryTruncationOfAValidFileIsRejected() throws {
        try SafeTensors.write(path: path("t.safetensors"), tensors: [("a", Tensor(shape: [3], data: [1, 2, 3])),
                                                                    ("b", Tensor(shape: [2], data: [4, 5]))])
        let full = try Data(contentsOf: URL(fileURLWithPath: path("t.safetensors")))
        for length in 0..<full.count {
            try full.prefix(length).write(to: URL(fileURLWithPath: path("cut.safetensors")))
            XCTAssertThrowsError(try SafeTensorsFile(path: path("cut.safetensors")), "truncated to \(length)")
        }
    }
}
