import Foundation
import XCTest
@testable import KeelModels

/// Hand-built blocks with hand-computed values (IEEE half constants: 0x3800 = 0.5, 0xBC00 = −1,
/// 0x4000 = 2, 0x3400 = 0.25, 0x3C00 = 1).
final class DequantizeTests: XCTestCase {
    private func convert(_ type: GGMLType, _ bytes: [UInt8], count: Int, parallel: Bool = false) throws -> [Float] {
        var out = [Float](repeating: .nan, count: count)
        try bytes.withUnsafeBytes { raw in
            try out.withUnsafeMutableBufferPointer { dst in
                if parallel {
                    try Dequantize.parallel(type: type, from: raw.baseAddress!, count: count, to: dst.baseAddress!)
                } else {
                    try Dequantize.run(type: type, from: raw.baseAddress!, count: count, to: dst.baseAddress!)
                }
            }
        }
        return out
    }

    private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

    func testQ4_1Block() throws {
        // d = 0.5, m = −1; byte j holds element j in its low nibble (value j) and element 16+j in its
        // high nibble (value 15−j).
        let qs = (0..<16).map { j in UInt8(j) | UInt8(15 - j) << 4 }
        let values = try convert(.q4_1, le16(0x3800) + le16(0xBC00) + qs, count: 32)
        XCTAssertEqual(values[0], -1.0)       // 0·0.5 − 1
        XCTAssertEqual(values[1], -0.5)       // 1·0.5 − 1
        XCTAssertEqual(values[15], 6.5)       // 15·0.5 − 1
        XCTAssertEqual(values[16], 6.5)       // high nibble of byte 0 = 15
        XCTAssertEqual(values[31], -1.0)      // high nibble of byte 15 = 0
        for j in 0..<16 {
            XCTAssertEqual(values[j], Float(j) * 0.5 - 1)
            XCTAssertEqual(values[16 + j], Float(15 - j) * 0.5 - 1)
        }
    }

    func testQ4_0Block() throws {
        // d = 2; value = (nibble − 8)·d. Low nibble j, high nibble (j + 3) mod 16.
        let qs = (0..<16).map { j in UInt8(j) | UInt8((j + 3) % 16) << 4 }
        let values = try convert(.q4_0, le16(0x4000) + qs, count: 32)
        XCTAssertEqual(values[0], -16)        // (0 − 8)·2
        XCTAssertEqual(values[8], 0)
        XCTAssertEqual(values[15], 14)        // (15 − 8)·2
        XCTAssertEqual(values[16], -10)       // (3 − 8)·2
        XCTAssertEqual(values[29], -16)       // j = 13: (16 mod 16 − 8)·2
        for j in 0..<16 {
            XCTAssertEqual(values[j], Float(j - 8) * 2)
            XCTAssertEqual(values[16 + j], Float((j + 3) % 16 - 8) * 2)
        }
    }

    func testQ8_0Block() throws {
        // d = 0.25; qs = −128, −120, …, 120.
        let qs = (0..<32).map { j in UInt8(bitPattern: Int8(j * 8 - 128)) }
        let values = try convert(.q8_0, le16(0x3400) + qs, count: 32)
        XCTAssertEqual(values[0], -32)
        XCTAssertEqual(values[16], 0)
        XCTAssertEqual(values[31], 30)
        for j in 0..<32 { XCTAssertEqual(values[j], Float(j * 8 - 128) * 0.25) }
    }

    func testHalfBFloatAndFloat() throws {
        // 0x3C00 = 1, 0xC000 = −2, 0x7BFF = 65504 (largest half), 0x0001 = 2^−24 (smallest subnormal), 0xFC00 = −∞.
        let half = try convert(.f16, [0x3C00, 0xC000, 0x7BFF, 0x0001, 0xFC00].flatMap(le16), count: 5)
        XCTAssertEqual(half, [1, -2, 65504, 0x1p-24, -.infinity])
        // bfloat16 = the top 16 bits of a float32: 0x3F80 = 1, 0xC040 = −3, 0x4049 = 3.140625.
        let bf = try convert(.bf16, [0x3F80, 0xC040, 0x4049].flatMap(le16), count: 3)
        XCTAssertEqual(bf, [1, -3, 3.140625])
        let f32 = try convert(.f32, [Float(1.5), -0.0, 7].flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }, count: 3)
        XCTAssertEqual(f32.map(\.bitPattern), [Float(1.5), -0.0, 7].map(\.bitPattern))
    }

    /// Many random Q4_1 blocks through the parallel path, starting at an odd address, against a
    /// scalar decoder written here from the block layout.
    func testParallelMatchesScalarDecoderOnUnalignedData() throws {
        var rng = Philox(seed: 41)
        let blocks = 5000
        var bytes: [UInt8] = [0xAA]  // shifts every block by one byte
        var expected: [Float] = []
        for _ in 0..<blocks {
            let d = Float16(rng.nextNormal() * 0.01), m = Float16(rng.nextNormal() * 0.1)
            bytes += le16(d.bitPattern) + le16(m.bitPattern)
            let qs = (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.nextUInt32()) }
            bytes += qs
            expected += qs.map { Float(Double($0 & 15) * Double(d) + Double(m)) }
            expected += qs.map { Float(Double($0 >> 4) * Double(d) + Double(m)) }
        }
        var out = [Float](repeating: .nan, count: blocks * 32)
        try bytes.withUnsafeBytes { raw in
            try out.withUnsafeMutableBufferPointer {
                try Dequantize.parallel(type: .q4_1, from: raw.baseAddress! + 1, count: blocks * 32, to: $0.baseAddress!)
            }
        }
        for i in 0..<out.count { XCTAssertEqual(out[i], expected[i], accuracy: 1e-6, "element \(i)") }
    }

    func testUnsupportedTypeAndPartialBlockThrow() {
        XCTAssertThrowsError(try convert(.q5_0, [UInt8](repeating: 0, count: 22), count: 32))
        XCTAssertThrowsError(try convert(.q8_0, [UInt8](repeating: 0, count: 34), count: 31))
    }

    /// Three random blocks of every K-quant type against the `gguf` PyPI package's dequantisation
    /// (Tests/Fixtures/kquants, made by its make_kquant_fixture.py), converted serially and in parallel.
    func testKQuantsMatchTheGGUFPackage() throws {
        struct Entry: Decodable { let hex: String; let values: [Float] }
        let url = ModelFixtures.repoRoot.appendingPathComponent("Tests/Fixtures/kquants/kquants.json")
        let fixture = try JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: url))
        let types: [GGMLType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K]
        XCTAssertEqual(Set(fixture.keys), Set(types.map(\.description)))
        for type in types {
            let entry = try XCTUnwrap(fixture[type.description])
            var hex = Substring(entry.hex), bytes: [UInt8] = []
            while !hex.isEmpty { bytes.append(try XCTUnwrap(UInt8(hex.prefix(2), radix: 16))); hex = hex.dropFirst(2) }
            XCTAssertEqual(bytes.count, entry.values.count / type.blockSize * type.blockBytes, "\(type)")
            for parallel in [false, true] {
                let values = try convert(type, bytes, count: entry.values.count, parallel: parallel)
                for (i, (a, b)) in zip(values, entry.values).enumerated() {
                    XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), "\(type) element \(i)")
                }
            }
        }
    }
}
