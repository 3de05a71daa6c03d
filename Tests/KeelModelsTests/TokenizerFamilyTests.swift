import Foundation
import XCTest
@testable import KeelModels

/// tokenizer.json files with Llama 3's and Qwen 2's pre-tokenizer configurations (Tests/Fixtures/tokenizers,
/// trained with the `tokenizers` library by make_tokenizer_fixtures.py): on 332 varied strings (unicode,
/// decomposed accents, digit runs, whitespace runs with \r\n and tabs, contractions in any case, code), the
/// ids equal the library's; written back and read again, the tokenizer keeps its split, normaliser and
/// `ignore_merges`.
final class TokenizerFamilyTests: XCTestCase {
    struct Cases: Decodable {
        let strings: [String]
        let llama3: [[Int]]
        let qwen2: [[Int]]
    }

    static let fixtures = ModelFixtures.repoRoot.appendingPathComponent("Tests/Fixtures/tokenizers")

    func testIDsEqualTheTokenizersLibrary() throws {
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("cases.json")))
        for (name, expected, pretokenizer) in [("llama3", cases.llama3, Pretokenizer.llama3), ("qwen2", cases.qwen2, .qwen2)] {
            let tokenizer = try BPETokenizer(huggingFaceDirectory: Self.fixtures.appendingPathComponent(name))
            XCTAssertEqual(tokenizer.pretokenizer, pretokenizer)
            XCTAssertEqual(tokenizer.ignoresMerges, name == "llama3")
            XCTAssertEqual(tokenizer.normalizer, name == "qwen2" ? .nfc : nil)
            var mismatches = 0
            for (text, ids) in zip(cases.strings, expected) where tokenizer.encode(text) != ids {
                mismatches += 1
                if mismatches <= 5 { XCTFail("\(name): \(text.debugDescription): \(tokenizer.encode(text)), expected \(ids)") }
            }
            XCTAssertEqual(mismatches, 0, "\(name): strings whose ids differ")

            let reread = try ModelFixtures.rereadThroughHuggingFaceFiles(tokenizer, name: "tokenizer-\(name)")
            XCTAssertEqual(reread.pretokenizer, tokenizer.pretokenizer)
            XCTAssertEqual(reread.normalizer, tokenizer.normalizer)
            XCTAssertEqual(reread.ignoresMerges, tokenizer.ignoresMerges)
            for (text, ids) in zip(cases.strings, expected) { XCTAssertEqual(reread.encode(text), ids, "\(name) reread: \(text.debugDescription)") }
        }
    }

    func testUnknownSplitRegexAndNormalizerAreRefusedByName() throws {
        let llama3 = try String(contentsOf: Self.fixtures.appendingPathComponent("llama3/tokenizer.json"), encoding: .utf8)
        let otherRegex = llama3.replacingOccurrences(of: #"\\p{N}{1,3}"#, with: #"\\p{N}{1,2}"#)
        XCTAssertThrowsError(try BPETokenizer(huggingFaceTokenizerJSON: Data(otherRegex.utf8))) { error in
            XCTAssertTrue("\(error)".contains("pattern.Regex") && "\(error)".contains("is not one Keel implements"), "\(error)")
        }
        let nfkc = llama3.replacingOccurrences(of: #""normalizer": null"#, with: #""normalizer": {"type": "NFKC"}"#)
        XCTAssertNotEqual(nfkc, llama3)
        XCTAssertThrowsError(try BPETokenizer(huggingFaceTokenizerJSON: Data(nfkc.utf8))) { error in
            XCTAssertTrue("\(error)".contains("normalizer \"NFKC\" is not supported"), "\(error)")
        }
    }
}
