import XCTest
@testable import KeelModels

/// The hand-written regex matchers against chunkings worked out by hand from the regexes
/// (GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`), each also
/// confirmed with HF tokenizers 0.23.3 `pre_tokenize_str`.
final class TokenizerPretokenizerTests: XCTestCase {
    private func chunks(_ text: String, _ pretokenizer: Pretokenizer) -> [String] {
        let bytes = Array(text.utf8)
        var pieces: [Range<Int>] = []
        bytes.withUnsafeBufferPointer { pretokenizer.split($0, 0..<bytes.count, into: &pieces) }
        return pieces.map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    func testGPT2Words() {
        XCTAssertEqual(chunks("Hello world", .gpt2), ["Hello", " world"])
        XCTAssertEqual(chunks("Hello, world!!", .gpt2), ["Hello", ",", " world", "!!"])
        XCTAssertEqual(chunks("$$$ ?!", .gpt2), ["$$$", " ?!"])
        XCTAssertEqual(chunks("", .gpt2), [])
    }

    func testGPT2Contractions() {
        XCTAssertEqual(chunks("don't", .gpt2), ["don", "'t"])
        XCTAssertEqual(chunks("it's we're I've I'm we'll he'd", .gpt2),
                       ["it", "'s", " we", "'re", " I", "'ve", " I", "'m", " we", "'ll", " he", "'d"])
        // Case-sensitive: "'S" is punctuation then a word.
        XCTAssertEqual(chunks("IT'S", .gpt2), ["IT", "'", "S"])
        XCTAssertEqual(chunks("'s", .gpt2), ["'s"])
        XCTAssertEqual(chunks("''s", .gpt2), ["''", "s"])
        XCTAssertEqual(chunks("'r", .gpt2), ["'", "r"])
    }

    func testGPT2WhitespaceGivesLastScalarToNextWord() {
        XCTAssertEqual(chunks("a  b", .gpt2), ["a", " ", " b"])
        XCTAssertEqual(chunks("a   b", .gpt2), ["a", "  ", " b"])
        // A newline cannot join a word: \s+(?!\S) keeps "\n" alone, then \s+ takes the last one.
        XCTAssertEqual(chunks("a\n\nb", .gpt2), ["a", "\n", "\n", "b"])
        XCTAssertEqual(chunks("a \n b", .gpt2), ["a", " \n", " b"])
        // At the end of the text the whole run is one chunk.
        XCTAssertEqual(chunks("a  ", .gpt2), ["a", "  "])
        XCTAssertEqual(chunks("  \n\n ", .gpt2), ["  \n\n "])
        XCTAssertEqual(chunks(" ", .gpt2), [" "])
        // NBSP and tab are \s but only U+0020 joins the next word.
        XCTAssertEqual(chunks("x\u{A0}y\tz", .gpt2), ["x", "\u{A0}", "y", "\t", "z"])
    }

    func testGPT2UnicodeClasses() {
        XCTAssertEqual(chunks("héllo wörld 日本語", .gpt2), ["héllo", " wörld", " 日本語"])
        // Arabic-Indic digits are \p{N}; superscript two is No.
        XCTAssertEqual(chunks("x ١٢ ²", .gpt2), ["x", " ١٢", " ²"])
        // Emoji and skin-tone modifier are symbols (So, Sk): one punctuation-class run.
        XCTAssertEqual(chunks("👍🏽 ok", .gpt2), ["👍🏽", " ok"])
        XCTAssertEqual(chunks("a\u{0}\u{7F}b", .gpt2), ["a", "\u{0}\u{7F}", "b"])
    }

    func testGPT2KeepsNumberRuns() {
        XCTAssertEqual(chunks("12345", .gpt2), ["12345"])
        XCTAssertEqual(chunks("in 2024.", .gpt2), ["in", " 2024", "."])
        XCTAssertEqual(chunks("\n\n1.", .gpt2), ["\n", "\n", "1", "."])
    }

    func testIsolatedDigitsSplitsEveryNumberScalarFirst() {
        XCTAssertEqual(chunks("12345", .isolatedDigitsThenGPT2), ["1", "2", "3", "4", "5"])
        XCTAssertEqual(chunks("in 2024.", .isolatedDigitsThenGPT2), ["in", " ", "2", "0", "2", "4", "."])
        // The chunk before the digit ends at the digit, so its whitespace run is a trailing one.
        XCTAssertEqual(chunks("\n\n1.", .isolatedDigitsThenGPT2), ["\n\n", "1", "."])
        XCTAssertEqual(chunks("a  1", .isolatedDigitsThenGPT2), ["a", "  ", "1"])
        XCTAssertEqual(chunks("x١٢y", .isolatedDigitsThenGPT2), ["x", "١", "٢", "y"])
        XCTAssertEqual(chunks("don't 3's", .isolatedDigitsThenGPT2), ["don", "'t", " ", "3", "'s"])
    }

    func testChunksCoverTheTextForEveryPretokenizer() {
        let text = "Mixed: 42 times, «quotes», tabs\t\tand\r\nCRLF, 😀😀, 한국어 text  \n"
        for pretokenizer in Pretokenizer.allCases {
            XCTAssertEqual(chunks(text, pretokenizer).joined(), text, "\(pretokenizer)")
        }
    }

    func testGGUFNames() {
        XCTAssertEqual(Pretokenizer(ggufName: "smollm"), .isolatedDigitsThenGPT2)
        XCTAssertEqual(Pretokenizer(ggufName: "gpt2"), .gpt2)
        XCTAssertEqual(Pretokenizer(ggufName: "llama-bpe"), .llama3)
        XCTAssertEqual(Pretokenizer(ggufName: "qwen2"), .qwen2)
        XCTAssertNil(Pretokenizer(ggufName: "deepseek-llm"))
    }
}
