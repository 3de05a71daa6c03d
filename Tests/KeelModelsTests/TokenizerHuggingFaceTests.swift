import XCTest
@testable import KeelModels

/// Writing and reading the HF tokenizer files.
final class TokenizerHuggingFaceTests: XCTestCase {
    private let sampleTexts = [
        "", "  \n\n ", "12345 and 3.5", "don't 's", "\n\nHuman: hi\n\nAssistant: 😀 日本語 e\u{301}",
        "<|im_start|>user\nHi<|im_end|>\n", "tab\tnull\u{0} end  ",
    ]

    func testWriteThenReadGivesTheSameTokenizer() throws {
        let original = try ModelFixtures.smolLM2Tokenizer()
        let reread = try ModelFixtures.rereadThroughHuggingFaceFiles(original, name: "tokenizer-export")

        XCTAssertEqual(reread.tokens, original.tokens)
        XCTAssertEqual(reread.merges, original.merges)
        XCTAssertEqual(reread.tokenTypes, original.tokenTypes)
        XCTAssertEqual(reread.pretokenizer, original.pretokenizer)
        XCTAssertEqual(reread.bosTokenID, 1)
        XCTAssertEqual(reread.eosTokenID, 2)
        XCTAssertEqual(reread.paddingTokenID, 2)
        XCTAssertEqual(reread.unknownTokenID, 0)
        XCTAssertEqual(reread.chatTemplateSource, original.chatTemplateSource)
        for text in sampleTexts {
            for allowSpecial in [false, true] {
                XCTAssertEqual(reread.encode(text, allowSpecial: allowSpecial),
                               original.encode(text, allowSpecial: allowSpecial), text.debugDescription)
            }
        }
    }

    func testGPT2SplitIsWrittenAsPlainByteLevel() throws {
        let original = try ModelFixtures.smolLM2Tokenizer(pretokenizer: .gpt2)
        let directory = try ModelFixtures.temporaryDirectory("tokenizer-export-gpt2")
        defer { try? FileManager.default.removeItem(at: directory) }
        try original.writeHuggingFaceFiles(to: directory)
        let file = try jsonObject(directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.tokenizer))
        XCTAssertEqual((file["pre_tokenizer"] as? [String: Any])?["type"] as? String, "ByteLevel")
        let reread = try BPETokenizer(huggingFaceDirectory: directory)
        XCTAssertEqual(reread.pretokenizer, .gpt2)
        XCTAssertEqual(reread.encode("fun.\n\n1."), original.encode("fun.\n\n1."))
    }

    /// The fields transformers reads, as SmolLM2's own files on the Hub spell them.
    func testWrittenFilesCarryTheFieldsTransformersReads() throws {
        let tokenizer = try ModelFixtures.smolLM2Tokenizer()
        let directory = try ModelFixtures.temporaryDirectory("tokenizer-export-fields")
        defer { try? FileManager.default.removeItem(at: directory) }
        try tokenizer.writeHuggingFaceFiles(to: directory)

        let file = try jsonObject(directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.tokenizer))
        let preTokenizer = try XCTUnwrap(file["pre_tokenizer"] as? [String: Any])
        XCTAssertEqual(preTokenizer["type"] as? String, "Sequence")
        let steps = try XCTUnwrap(preTokenizer["pretokenizers"] as? [[String: Any]])
        XCTAssertEqual(steps.map { $0["type"] as? String }, ["Digits", "ByteLevel"])
        XCTAssertEqual(steps[0]["individual_digits"] as? Bool, true)
        let model = try XCTUnwrap(file["model"] as? [String: Any])
        XCTAssertEqual(model["type"] as? String, "BPE")
        XCTAssertEqual((model["vocab"] as? [String: Any])?.count, 49152)
        XCTAssertEqual((model["merges"] as? [String])?.first, "Ġ t")
        let added = try XCTUnwrap(file["added_tokens"] as? [[String: Any]])
        XCTAssertEqual(added.count, 17)
        XCTAssertEqual(added[1]["content"] as? String, "<|im_start|>")
        XCTAssertEqual(added[1]["special"] as? Bool, true)

        let config = try jsonObject(directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.tokenizerConfig))
        XCTAssertEqual(config["bos_token"] as? String, "<|im_start|>")
        XCTAssertEqual(config["eos_token"] as? String, "<|im_end|>")
        XCTAssertEqual(config["pad_token"] as? String, "<|im_end|>")
        XCTAssertEqual(config["unk_token"] as? String, "<|endoftext|>")
        XCTAssertEqual(config["chat_template"] as? String, tokenizer.chatTemplateSource)
        XCTAssertEqual(config["add_bos_token"] as? Bool, false)
        XCTAssertEqual((config["added_tokens_decoder"] as? [String: Any])?.count, 17)

        let map = try jsonObject(directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.specialTokensMap))
        XCTAssertEqual(map["eos_token"] as? String, "<|im_end|>")
        XCTAssertEqual((map["additional_special_tokens"] as? [String])?.count, 17)
    }

    /// tokenizers ≥ 0.20 writes merges as pairs, older versions as "left right".
    func testReadsBothMergeSpellings() throws {
        for merges in [#"["a b"]"#, #"[["a", "b"]]"#] {
            let json = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": \#(merges)},"#
                + #" "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}}"#
            let tokenizer = try BPETokenizer(huggingFaceTokenizerJSON: Data(json.utf8))
            XCTAssertEqual(tokenizer.encode("abba"), [2, 1, 0], merges)
        }
    }

    func testChatTemplateFileOverridesTheConfig() throws {
        let directory = try ModelFixtures.temporaryDirectory("tokenizer-chat-template-file")
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenizerJSON = #"{"model": {"vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}"#
        try Data(tokenizerJSON.utf8).write(to: directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.tokenizer))
        try Data(#"{"chat_template": "from config", "eos_token": {"content": "a"}}"#.utf8)
            .write(to: directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.tokenizerConfig))
        XCTAssertEqual(try BPETokenizer(huggingFaceDirectory: directory).chatTemplateSource, "from config")
        try Data("from file".utf8).write(to: directory.appendingPathComponent(BPETokenizer.HuggingFaceFile.chatTemplate))
        let tokenizer = try BPETokenizer(huggingFaceDirectory: directory)
        XCTAssertEqual(tokenizer.chatTemplateSource, "from file")
        XCTAssertEqual(tokenizer.eosTokenID, 0)
    }

    func testRejectsWhatItCannotRunFaithfully() {
        func error(_ json: String) -> String {
            do { _ = try BPETokenizer(huggingFaceTokenizerJSON: Data(json.utf8), source: "dir"); return "no error" }
            catch { return "\(error)" }
        }
        let vocab = #""vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]"#
        let byteLevel = #""pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}"#
        XCTAssertTrue(error(#"{"model": {\#(vocab)}, "pre_tokenizer": {"type": "Metaspace"}}"#)
            .contains("dir/tokenizer.json: pre_tokenizer is type \"Metaspace\""))
        XCTAssertTrue(error(#"{"model": {\#(vocab), "byte_fallback": true}, \#(byteLevel)}"#)
            .contains("model.byte_fallback is set"))
        XCTAssertTrue(error(#"{"model": {"type": "Unigram", \#(vocab)}, \#(byteLevel)}"#)
            .contains("model.type is \"Unigram\""))
        XCTAssertTrue(error(#"{"model": {"vocab": {"a": 0, "b": 2}, "merges": []}, \#(byteLevel)}"#)
            .contains("id 1 is missing"))
        XCTAssertTrue(error(#"{\#(byteLevel)}"#).contains("missing field model"))
        XCTAssertTrue(error(#"{"model": {"vocab": [], "merges": []}}"#).contains("field model.vocab is not a"))
        XCTAssertTrue(error("not json").contains("dir/tokenizer.json"))
        XCTAssertTrue(error(#"{"model": {\#(vocab)}, "normalizer": {"type": "NFKD"}, \#(byteLevel)}"#)
            .contains("normalizer \"NFKD\" is not supported"))
    }

    func testMissingDirectoryNamesTheFile() {
        let directory = URL(fileURLWithPath: "/nonexistent/keel-tokenizer")
        XCTAssertThrowsError(try BPETokenizer(huggingFaceDirectory: directory)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/keel-tokenizer/tokenizer.json: cannot read"), "\(error)")
        }
    }

    private func jsonObject(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }
}
