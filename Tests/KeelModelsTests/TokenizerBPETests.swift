import XCTest
@testable import KeelModels

/// The merge loop and the initializer's validation on tiny vocabularies whose results follow by hand.
final class TokenizerBPETests: XCTestCase {
    private func tiny(_ tokens: [String], merges: [String], special: Set<Int> = []) throws -> BPETokenizer {
        try BPETokenizer(tokens: tokens, merges: merges,
                         tokenTypes: tokens.indices.map { special.contains($0) ? .control : .normal },
                         pretokenizer: .gpt2, bosTokenID: nil, eosTokenID: nil, unknownTokenID: nil, paddingTokenID: nil)
    }

    func testLowestRankMergesFirst() throws {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"]
        // "b c" outranks "a b": abc → a·bc → abc.
        let bcFirst = try tiny(tokens, merges: ["b c", "a b", "a bc"])
        XCTAssertEqual(bcFirst.encode("abc"), [5])
        // "a b" outranks "b c": abc → ab·c, and no rule joins "ab" and "c".
        let abFirst = try tiny(tokens, merges: ["a b", "b c", "a bc"])
        XCTAssertEqual(abFirst.encode("abc"), [3, 2])
    }

    func testEqualRanksMergeLeftmostFirst() throws {
        let tokenizer = try tiny(["a", "aa"], merges: ["a a"])
        XCTAssertEqual(tokenizer.encode("aaa"), [1, 0])
        XCTAssertEqual(tokenizer.encode("aaaa"), [1, 1])
    }

    func testByteLevelSpellingOfSpaceAndNewline() throws {
        // " a" is one chunk: bytes 0x20 0x61, spelled "Ġa".
        let tokenizer = try tiny(["a", "Ġ", "Ċ", "Ġa"], merges: ["Ġ a"])
        XCTAssertEqual(tokenizer.encode(" a\n"), [3, 2])
        XCTAssertEqual(try tokenizer.decode([3, 2]), " a\n")
    }

    func testLiteralSpecialTokens() throws {
        let tokenizer = try tiny(["<", "|", ">", "x", "<|x|>", "<|x|>>"], merges: [], special: [4, 5])
        XCTAssertEqual(tokenizer.encode("x<|x|>x", allowSpecial: true), [3, 4, 3])
        XCTAssertEqual(tokenizer.encode("<|x|>>", allowSpecial: true), [5], "longest match wins")
        XCTAssertEqual(tokenizer.encode("<|x|>", allowSpecial: false), [0, 1, 3, 1, 2])
    }

    func testInvalidVocabulariesAreRejectedWithTheReason() {
        func message(_ make: () throws -> BPETokenizer) -> String {
            do { _ = try make(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { try tiny(["a", "b"], merges: ["a c"]) }.contains("merge 0 \"a c\" names a token missing"))
        XCTAssertTrue(message { try tiny(["a", "b", "ab"], merges: ["ab"]) }.contains("merge 0 \"ab\" is not two tokens"))
        XCTAssertTrue(message { try tiny(["a", "a"], merges: []) }.contains("appears twice"))
        XCTAssertTrue(message { try tiny(["a", "é\u{301}"], merges: []) }.contains("not in GPT-2 byte-level spelling"))
        XCTAssertTrue(message {
            try BPETokenizer(tokens: ["a"], merges: [], tokenTypes: [], pretokenizer: .gpt2, bosTokenID: nil,
                             eosTokenID: nil, unknownTokenID: nil, paddingTokenID: nil)
        }.contains("1 tokens but 0 token types"))
        XCTAssertTrue(message {
            try BPETokenizer(tokens: ["a"], merges: [], tokenTypes: [.normal], pretokenizer: .gpt2, bosTokenID: 7,
                             eosTokenID: nil, unknownTokenID: nil, paddingTokenID: nil)
        }.contains("bos token id 7 is outside"))
    }
}
