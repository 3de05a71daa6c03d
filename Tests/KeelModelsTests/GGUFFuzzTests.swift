import Foundation
import XCTest
@testable import KeelModels

/// Seeded corruptions of a small quantised GGUF: each must load or throw a `GGUFError` /
/// `ModelFormatError`; a crash, a trap or a huge allocation would fail the whole test run.
final class GGUFFuzzTests: XCTestCase {
    private var directory: URL!
    private var base = Data()
    private var dataOffset = 0

    override func setUpWithError() throws {
        directory = try ModelFixtures.temporaryDirectory("gguf-fuzz")
        base = SyntheticLlama(config: SyntheticLlama.quantizable, seed: 11, quantized: true).writer.encoded()
        let path = directory.appendingPathComponent("base.gguf").path
        try base.write(to: URL(fileURLWithPath: path))
        let gguf = try GGUFFile(path: path)
        dataOffset = gguf.dataOffset
        XCTAssertNoThrow(try ModelWeights(gguf: gguf), "the uncorrupted file must load")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private enum Outcome: Equatable { case loaded, rejectedByReader, rejectedByLoader }

    /// Parses the bytes as GGUF (in memory: thousands of cases), converts every tensor, then builds
    /// `ModelWeights`.
    private func probe(_ data: Data, _ label: String, file: StaticString = #filePath, line: UInt = #line) -> Outcome {
        let gguf: GGUFFile
        do { gguf = try GGUFFile(mapped: MappedFile(copying: [UInt8](data), path: label)) } catch {
            XCTAssertTrue(error is GGUFError, "\(label): \(type(of: error)) \(error)", file: file, line: line)
            return .rejectedByReader
        }
        for info in gguf.tensors where info.elementCount <= 1 << 20 {
            do { _ = try gguf.dequantize(info) } catch {
                XCTAssertTrue(error is GGUFError, "\(label): \(type(of: error)) \(error)", file: file, line: line)
            }
        }
        do { _ = try ModelWeights(gguf: gguf) } catch {
            XCTAssertTrue(error is ModelFormatError || error is GGUFError, "\(label): \(type(of: error)) \(error)", file: file, line: line)
            return .rejectedByLoader
        }
        return .loaded
    }

    private func patched(_ data: Data, at offset: Int, _ bytes: [UInt8]) -> Data {
        var copy = data
        copy.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        return copy
    }

    private func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    private func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    /// Offset just after the first occurrence of `string` (a key or tensor name) in the base file.
    private func end(of string: String) throws -> Int {
        try XCTUnwrap(base.range(of: Data(string.utf8))).upperBound
    }

    func testTruncationsAtEveryHeaderByteAndThroughTheData() {
        var lengths = Array(0..<(dataOffset + 64))
        lengths += stride(from: dataOffset + 64, to: base.count, by: 61)
        var rejected = 0
        for length in lengths {
            let outcome = probe(base.prefix(length), "truncated to \(length)")
            XCTAssertEqual(outcome, .rejectedByReader, "a file truncated to \(length) of \(base.count) bytes was accepted")
            rejected += outcome == .rejectedByReader ? 1 : 0
        }
        XCTAssertEqual(rejected, lengths.count)
    }

    func testRandomByteFlipsInHeaderMetadataAndTensorInfos() {
        var outcomes: [Outcome: Int] = [:]
        for seed in 0..<300 {
            var rng = Philox(seed: UInt64(seed))
            var data = base
            for _ in 0..<(1 + Int(rng.nextUInt32() % 4)) {
                data[Int(rng.nextUInt32()) % dataOffset] = UInt8(truncatingIfNeeded: rng.nextUInt32())
            }
            outcomes[probe(data, "flip seed \(seed)"), default: 0] += 1
        }
        // Most flips land in strings (token texts, names) or break the structure; both outcomes occur.
        XCTAssertGreaterThan(outcomes[.rejectedByReader, default: 0] + outcomes[.rejectedByLoader, default: 0], 30, "\(outcomes)")
        XCTAssertGreaterThan(outcomes[.loaded, default: 0], 0, "\(outcomes)")
    }

    func testByteFlipsInTensorDataStillLoad() {
        for seed in 0..<30 {
            var rng = Philox(seed: UInt64(1000 + seed))
            var data = base
            for _ in 0..<8 {
                data[dataOffset + Int(rng.nextUInt32()) % (base.count - dataOffset)] = UInt8(truncatingIfNeeded: rng.nextUInt32())
            }
            XCTAssertEqual(probe(data, "data flip seed \(seed)"), .loaded)
        }
    }

    func testHugeCountsLengthsDimensionsAndOffsetsAreRejected() throws {
        let tokens = try end(of: "tokenizer.ggml.tokens")      // then u32 type 9, u32 element type, u64 count
        let tensor = try end(of: "token_embd.weight")          // then u32 n_dims, 2 × u64 dims, u32 type, u64 offset
        let cases: [(String, Data)] = [
            ("tensor_count 2^64-1", patched(base, at: 8, le64(.max))),
            ("tensor_count 2^32", patched(base, at: 8, le64(1 << 32))),
            ("metadata_kv_count 2^64-1", patched(base, at: 16, le64(.max))),
            ("first key length 2^63", patched(base, at: 24, le64(1 << 63))),
            ("token array count 2^60", patched(base, at: tokens + 8, le64(1 << 60))),
            ("token array count + 1", patched(base, at: tokens + 8, le64(UInt64(SyntheticLlama.quantizable.vocab + 1) << 32))),
            ("token array element type 13", patched(base, at: tokens + 4, le32(13))),
            ("token array of arrays", patched(base, at: tokens + 4, le32(9))),
            ("value type 200", patched(base, at: tokens, le32(200))),
            ("token string length 2^62", patched(base, at: tokens + 16, le64(1 << 62))),
            ("invalid UTF-8 in a token", patched(base, at: tokens + 24, [0xFF])),
            ("n_dims 0", patched(base, at: tensor, le32(0))),
            ("n_dims 5", patched(base, at: tensor, le32(5))),
            ("n_dims 2^32-1", patched(base, at: tensor, le32(.max))),
            ("dimension 2^62", patched(base, at: tensor + 4, le64(1 << 62))),
            ("dimension 2^63+", patched(base, at: tensor + 12, le64(.max))),
            ("row not a whole block", patched(base, at: tensor + 4, le64(33))),
            ("rows 2^40", patched(base, at: tensor + 12, le64(1 << 40))),
            ("type 100", patched(base, at: tensor + 20, le32(100))),
            ("offset 2^40", patched(base, at: tensor + 24, le64(1 << 40))),
            ("offset misaligned", patched(base, at: tensor + 24, le64(8))),
            ("offset 2^64-32", patched(base, at: tensor + 24, le64(.max - 31))),
        ]
        for (label, data) in cases {
            XCTAssertEqual(probe(data, label), .rejectedByReader, label)
        }
    }

    func testBadAlignmentNestingAndBooleans() throws {
        func file(_ edit: (inout GGUFWriter) -> Void) -> Data {
            var writer = SyntheticLlama(config: SyntheticLlama.quantizable, seed: 11, quantized: true).writer
            edit(&writer)
            return writer.encoded()
        }
        func nested(_ depth: Int) -> GGUFValue { depth == 0 ? .uint8(1) : .array([nested(depth - 1)]) }
        // Laid out with alignment 32, then the stored value is overwritten: the reader must notice.
        let aligned = file { $0.set(GGUFFile.alignmentKey, .uint32(32)) }
        let alignmentValue = try XCTUnwrap(aligned.range(of: Data(GGUFFile.alignmentKey.utf8))).upperBound + 4
        let cases: [(String, Data)] = [
            ("alignment 0", patched(aligned, at: alignmentValue, le32(0))),
            ("alignment 3", patched(aligned, at: alignmentValue, le32(3))),
            ("alignment 64", patched(aligned, at: alignmentValue, le32(64))),
            ("alignment 2^31", patched(aligned, at: alignmentValue, le32(1 << 31))),
            ("alignment as uint64", file { $0.set(GGUFFile.alignmentKey, .uint64(32)) }),
            ("arrays nested 20 deep", file { $0.set("deep", nested(20)) }),
            ("bool byte 2", patched(file { $0.metadata.insert(("flag", .bool(true)), at: 0) }, at: 24 + 8 + 4 + 4, [2])),
        ]
        for (label, data) in cases {
            XCTAssertEqual(probe(data, label), .rejectedByReader, label)
        }
        XCTAssertEqual(probe(aligned, "alignment 32 stated"), .loaded)
        // Nesting up to the limit is valid GGUF.
        XCTAssertEqual(probe(file { $0.set("deep", nested(GGUFFile.maxArrayNesting)) }, "nested to the limit"), .loaded)
    }
}
