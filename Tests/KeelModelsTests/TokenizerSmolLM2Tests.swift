import XCTest
@testable import KeelModels

extension ModelFixtures {
    private static let tokenizerCache = NSCache<NSString, BPETokenizer>()

    /// SmolLM2's tokenizer read from the real GGUF (loaded once per pre-tokenizer and test run).
    static func smolLM2Tokenizer(pretokenizer: Pretokenizer? = nil, file: StaticString = #filePath,
                                 line: UInt = #line) throws -> BPETokenizer {
        let key = (pretokenizer?.rawValue ?? "from-gguf") as NSString
        if let cached = tokenizerCache.object(forKey: key) { return cached }
        let gguf = try GGUFFile(path: try requireSmolLM2(file: file, line: line))
        let tokenizer = try BPETokenizer(gguf: gguf, pretokenizer: pretokenizer)
        tokenizerCache.setObject(tokenizer, forKey: key)
        return tokenizer
    }
}

/// SmolLM2's tokenizer from the GGUF against ids from an independent implementation: HF `tokenizers`
/// 0.23.3 built from the same GGUF vocabulary and merges with SmolLM2's tokenizer.json pipeline
/// (`Sequence[Digits(individual_digits), ByteLevel]`, control tokens as special added tokens).
final class TokenizerSmolLM2Tests: XCTestCase {
    func testMetadata() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        XCTAssertEqual(tokenizer.vocabularySize, 49152)
        XCTAssertEqual(tokenizer.merges.count, 48900)
        XCTAssertEqual(tokenizer.pretokenizer, .isolatedDigitsThenGPT2)
        XCTAssertEqual(tokenizer.bosTokenID, 1)
        XCTAssertEqual(tokenizer.eosTokenID, 2)
        XCTAssertEqual(tokenizer.unknownTokenID, 0)
        XCTAssertEqual(tokenizer.paddingTokenID, 2)
        XCTAssertEqual(tokenizer.id(forToken: "<|im_start|>"), 1)
        XCTAssertEqual(tokenizer.id(forToken: "<|im_end|>"), 2)
        XCTAssertEqual((0..<tokenizer.vocabularySize).filter(tokenizer.isSpecial), Array(0...16))
    }

    func testIDsMatchHuggingFaceTokenizers() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        let expected: [(String, [Int])] = [
            ("", []),
            ("   ", [333]),
            ("  \n\n ", [256, 8866]),
            ("12345", [33, 34, 35, 36, 37]),
            ("don't", [12420, 982]),
            ("'s", [506]),
            ("Hello world", [19556, 905]),
            ("in 2024, 3 cats\n\n1. x", [254, 216, 34, 32, 34, 36, 28, 216, 35, 7680, 1116, 33, 30, 1792]),
            ("日本語のテキスト 😀 👩‍👩‍👧 café e\u{301}",
             [23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 40303,
              218, 15107, 235, 119, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 37366, 297, 151, 219]),
            ("tab\there\r\nnull\u{0}esc\u{1B} del\u{7F}", [15999, 197, 1531, 201, 198, 18220, 190, 2599, 212, 1347, 217]),
        ]
        for (text, ids) in expected {
            XCTAssertEqual(tokenizer.encode(text), ids, text.debugDescription)
        }
        XCTAssertEqual(tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n", allowSpecial: true), [1, 4093, 198, 26843, 2, 198])
    }

    func testSpecialTokensAreTextUnlessAllowed() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        let text = "a<|im_start|>b<|im_end|><|endoftext|>"
        let asText = tokenizer.encode(text)
        XCTAssertFalse(asText.contains { tokenizer.isSpecial($0) })
        XCTAssertEqual(try tokenizer.decode(asText), text)
        let asSpecial = tokenizer.encode(text, allowSpecial: true)
        XCTAssertEqual(asSpecial.filter { tokenizer.isSpecial($0) }, [1, 2, 0])
        XCTAssertEqual(try tokenizer.decode(asSpecial), text)
        XCTAssertEqual(try tokenizer.decode(asSpecial, skipSpecial: true), "ab")
        // A partial control token is text.
        XCTAssertFalse(tokenizer.encode("<|im_start|", allowSpecial: true).contains(1))
    }

    func testRoundTripEdgeCases() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        let texts = ["", " ", "   ", "  \n\n ", "\n", "\r\n\t", "12345", "3.14159 × 10⁻³", "don't", "'s", "I'M", "'",
                     "😀👍🏽👩‍👩‍👧 🇫🇷", "中文，日本語、한국어", "e\u{301} vs é", "Ω≈ç√∫", "\u{0}\u{1}\u{1B}\u{7F}\u{85}\u{A0}",
                     "\u{FEFF}BOM", "\u{10FFFF}\u{E000}", "trailing   ", String(repeating: "ab", count: 3000),
                     String(repeating: " ", count: 5000), "<|im_start|>user"]
        for text in texts {
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(text)), text, text.debugDescription)
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(text, allowSpecial: true)), text, text.debugDescription)
        }
    }

    /// SmolLM2's vocabulary lacks 21 byte tokens (bytes that never occur in UTF-8, some C0 controls,
    /// and the lead bytes of planes 4–12); HF drops such bytes, and so does Keel.
    func testBytesWithoutTokenAreDropped() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        XCTAssertEqual(tokenizer.bytesWithoutToken,
                       [0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2] + Array(0xF5...0xFF))
        XCTAssertEqual(try tokenizer.decode(tokenizer.encode("a\u{4}b\u{6}")), "ab")
    }

    func testDecodeRejectsIDsOutsideTheVocabulary() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        XCTAssertThrowsError(try tokenizer.decode([1, 49152])) { error in
            XCTAssertTrue("\(error)".contains("id 49152 at position 1"), "\(error)")
        }
        XCTAssertThrowsError(try tokenizer.decode([-1]))
    }

    func testDecodeBytesKeepsCutCharacters() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        let ids = tokenizer.encode("😀")
        XCTAssertGreaterThan(ids.count, 1, "the emoji is several byte tokens")
        XCTAssertEqual(try ids.flatMap { try tokenizer.decodeBytes([$0]) }, Array("😀".utf8))
    }
}
