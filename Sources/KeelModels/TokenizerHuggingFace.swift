import Foundation

/// Reading and writing the Hugging Face tokenizer files (`tokenizer.json`, `tokenizer_config.json`,
/// `special_tokens_map.json`), so that a model directory Keel exports loads with
/// `transformers.AutoTokenizer.from_pretrained(dir)` and an HF download loads in Keel.
///
/// Only what byte-level BPE uses is supported: model BPE without byte fallback, dropout, subword
/// prefixes/suffixes or `ignore_merges`; no normalizer; pre-tokenizer `ByteLevel(use_regex, no prefix
/// space)` optionally preceded by `Digits(individual_digits)`; added tokens without lstrip/rstrip/single-word.
/// Anything else is rejected with an error naming the field, rather than tokenised differently.
extension BPETokenizer {
    /// File names inside an HF model directory.
    public enum HuggingFaceFile {
        public static let tokenizer = "tokenizer.json"
        public static let tokenizerConfig = "tokenizer_config.json"
        public static let specialTokensMap = "special_tokens_map.json"
    }

    /// Loads `tokenizer.json` and, if present, `tokenizer_config.json` (special token names, chat template).
    public convenience init(huggingFaceDirectory directory: URL) throws {
        let tokenizerURL = directory.appendingPathComponent(HuggingFaceFile.tokenizer)
        let configURL = directory.appendingPathComponent(HuggingFaceFile.tokenizerConfig)
        let tokenizerData = try Self.read(tokenizerURL)
        let configData = FileManager.default.fileExists(atPath: configURL.path) ? try Self.read(configURL) : nil
        try self.init(huggingFaceTokenizerJSON: tokenizerData, tokenizerConfigJSON: configData,
                      source: directory.path)
    }

    /// Parses the contents of `tokenizer.json` (and optionally `tokenizer_config.json`).
    public convenience init(huggingFaceTokenizerJSON tokenizerData: Data, tokenizerConfigJSON configData: Data? = nil,
                            source: String = HuggingFaceFile.tokenizer) throws {
        let file = try Self.decode(TokenizerFileJSON.self, from: tokenizerData,
                                   source: "\(source)/\(HuggingFaceFile.tokenizer)")
        let config = try configData.map {
            try Self.decode(TokenizerConfigJSON.self, from: $0, source: "\(source)/\(HuggingFaceFile.tokenizerConfig)")
        }
        let tokenizerSource = "\(source)/\(HuggingFaceFile.tokenizer)"
        let model = file.model
        if let type = model.type, type != "BPE" { throw TokenizerError("\(tokenizerSource): model.type is \(type.debugDescription), expected \"BPE\"") }
        for (field, isSet) in [("byte_fallback", model.byte_fallback == true), ("ignore_merges", model.ignore_merges == true),
                               ("dropout", model.dropout != nil),
                               ("continuing_subword_prefix", !(model.continuing_subword_prefix ?? "").isEmpty),
                               ("end_of_word_suffix", !(model.end_of_word_suffix ?? "").isEmpty)] where isSet {
            throw TokenizerError("\(tokenizerSource): model.\(field) is set; Keel's byte-level BPE does not support it")
        }
        if let normalizer = file.normalizer {
            throw TokenizerError("\(tokenizerSource): normalizer \(normalizer.type.debugDescription) is not supported (expected null)")
        }
        let pretokenizer = try Self.pretokenizer(from: file.pre_tokenizer, source: tokenizerSource)

        // Vocabulary: model.vocab plus added tokens, ids dense from 0.
        var tokenForID: [Int: String] = [:]
        for (token, id) in model.vocab { tokenForID[id] = token }
        var typeForID: [Int: TokenType] = [:]
        for added in file.added_tokens ?? [] {
            if added.lstrip == true || added.rstrip == true || added.single_word == true {
                throw TokenizerError("\(tokenizerSource): added token \(added.content.debugDescription) uses lstrip/rstrip/single_word, which Keel does not support")
            }
            if let existing = tokenForID[added.id], existing != added.content {
                throw TokenizerError("\(tokenizerSource): added token id \(added.id) is \(added.content.debugDescription) but model.vocab has \(existing.debugDescription)")
            }
            tokenForID[added.id] = added.content
            typeForID[added.id] = added.special == true ? .control : .userDefined
        }
        var tokens: [String] = []
        tokens.reserveCapacity(tokenForID.count)
        for id in 0..<tokenForID.count {
            guard let token = tokenForID[id] else {
                throw TokenizerError("\(tokenizerSource): vocabulary ids are not dense: id \(id) is missing (largest is \(tokenForID.keys.max() ?? 0))")
            }
            tokens.append(token)
        }
        let tokenTypes = tokens.indices.map { typeForID[$0] ?? .normal }
        let merges = try model.merges.enumerated().map { rank, merge in
            guard merge.allSatisfy({ !$0.contains(" ") }) else {
                throw TokenizerError("\(tokenizerSource): merge \(rank) \(merge) has a token containing a space, which byte-level BPE never produces")
            }
            return merge.joined(separator: " ")
        }

        let idForToken = Dictionary(tokens.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        func specialID(_ name: String?, field: String) throws -> Int? {
            guard let name else { return nil }
            guard let id = idForToken[name] else {
                throw TokenizerError("\(source)/\(HuggingFaceFile.tokenizerConfig): \(field) \(name.debugDescription) is not in the vocabulary")
            }
            return id
        }
        try self.init(tokens: tokens, merges: merges, tokenTypes: tokenTypes, pretokenizer: pretokenizer,
                      bosTokenID: try specialID(config?.bos_token?.content, field: "bos_token"),
                      eosTokenID: try specialID(config?.eos_token?.content, field: "eos_token"),
                      unknownTokenID: try specialID(config?.unk_token?.content, field: "unk_token"),
                      paddingTokenID: try specialID(config?.pad_token?.content, field: "pad_token"),
                      chatTemplateSource: config?.chat_template?.defaultTemplate, source: tokenizerSource)
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into `directory`
    /// (created if needed). `tokenizer_class` is `PreTrainedTokenizerFast`, which loads `tokenizer.json`
    /// as written (a model-specific class could rebuild the pipeline from its own defaults).
    public func writeHuggingFaceFiles(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let literalIDs = tokens.indices.filter { tokenTypes[$0].isMatchedLiterally }
        func addedToken(_ id: Int) -> [String: Any] {
            ["content": tokens[id], "lstrip": false, "rstrip": false, "single_word": false, "normalized": false,
             "special": tokenTypes[id] == .control]
        }
        var vocab: [String: Int] = [:]
        for (id, token) in tokens.enumerated() { vocab[token] = id }
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        let preTokenizer: [String: Any]
        switch pretokenizer {
        case .gpt2:
            preTokenizer = byteLevel
        case .isolatedDigitsThenGPT2:
            preTokenizer = ["type": "Sequence",
                            "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel]]
        }
        let tokenizerFile: [String: Any] = [
            "version": "1.0",
            "truncation": NSNull(),
            "padding": NSNull(),
            "added_tokens": literalIDs.map { addedToken($0).merging(["id": $0]) { a, _ in a } },
            "normalizer": NSNull(),
            "pre_tokenizer": preTokenizer,
            // The ByteLevel post-processor only adjusts offsets; it adds no BOS/EOS, like `encode`.
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(),
                      "continuing_subword_prefix": NSNull(), "end_of_word_suffix": NSNull(),
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges] as [String: Any],
        ]

        var namedSpecials: [String: Any] = [:]
        for (key, id) in [("bos_token", bosTokenID), ("eos_token", eosTokenID), ("unk_token", unknownTokenID),
                          ("pad_token", paddingTokenID)] {
            if let id { namedSpecials[key] = tokens[id] }
        }
        var config: [String: Any] = namedSpecials
        config["add_bos_token"] = false
        config["add_eos_token"] = false
        config["add_prefix_space"] = false
        config["clean_up_tokenization_spaces"] = false
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config["added_tokens_decoder"] = Dictionary(uniqueKeysWithValues: literalIDs.map { (String($0), addedToken($0)) })
        if let chatTemplateSource { config["chat_template"] = chatTemplateSource }

        var specialTokensMap = namedSpecials
        specialTokensMap["additional_special_tokens"] = literalIDs.filter { tokenTypes[$0] == .control }.map { tokens[$0] }

        for (name, object) in [(HuggingFaceFile.tokenizer, tokenizerFile), (HuggingFaceFile.tokenizerConfig, config),
                               (HuggingFaceFile.specialTokensMap, specialTokensMap)] {
            let data = try JSONSerialization.data(withJSONObject: object,
                                                  options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try data.write(to: directory.appendingPathComponent(name), options: .atomic)
        }
    }

    // MARK: Parsing helpers

    private static func read(_ url: URL) throws -> Data {
        do { return try Data(contentsOf: url) } catch {
            throw TokenizerError("\(url.path): cannot read (\(error.localizedDescription))")
        }
    }

    private static func decode<T: Decodable>(_ type: T.Type, from data: Data, source: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch let DecodingError.keyNotFound(key, context) {
            throw TokenizerError("\(source): missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(expected, context) {
            throw TokenizerError("\(source): field \(path(context.codingPath)) is not a \(expected)")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw TokenizerError("\(source): field \(path(context.codingPath)) is null, expected a \(expected)")
        } catch let DecodingError.dataCorrupted(context) {
            throw TokenizerError("\(source): \(context.debugDescription) at \(path(context.codingPath))")
        } catch {
            throw TokenizerError("\(source): \(error)")
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.isEmpty ? "(root)" : keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    private static func pretokenizer(from json: PreTokenizerJSON?, source: String) throws -> Pretokenizer {
        func isGPT2ByteLevel(_ step: PreTokenizerJSON) -> Bool {
            step.type == "ByteLevel" && step.add_prefix_space != true && step.use_regex != false
        }
        if let json, isGPT2ByteLevel(json) { return .gpt2 }
        if let json, json.type == "Sequence", let steps = json.pretokenizers, steps.count == 2,
           steps[0].type == "Digits", steps[0].individual_digits == true, isGPT2ByteLevel(steps[1]) {
            return .isolatedDigitsThenGPT2
        }
        let found = json.map { "type \($0.type.debugDescription)" } ?? "null"
        throw TokenizerError("\(source): pre_tokenizer is \(found); supported are ByteLevel(add_prefix_space: false, use_regex: true) and Sequence[Digits(individual_digits: true), that ByteLevel]")
    }
}

// MARK: JSON shapes (field names as HF writes them)

private struct TokenizerFileJSON: Decodable {
    var added_tokens: [AddedTokenJSON]?
    var normalizer: TypedJSON?
    var pre_tokenizer: PreTokenizerJSON?
    var model: BPEModelJSON
}

private struct TypedJSON: Decodable { var type: String }

private struct AddedTokenJSON: Decodable {
    var id: Int
    var content: String
    var special: Bool?
    var lstrip: Bool?
    var rstrip: Bool?
    var single_word: Bool?
}

private final class PreTokenizerJSON: Decodable {
    var type: String
    var add_prefix_space: Bool?
    var use_regex: Bool?
    var individual_digits: Bool?
    var pretokenizers: [PreTokenizerJSON]?
}

private struct BPEModelJSON: Decodable {
    var type: String?
    var vocab: [String: Int]
    var merges: [[String]]
    var dropout: Double?
    var byte_fallback: Bool?
    var ignore_merges: Bool?
    var continuing_subword_prefix: String?
    var end_of_word_suffix: String?

    enum CodingKeys: String, CodingKey {
        case type, vocab, merges, dropout, byte_fallback, ignore_merges, continuing_subword_prefix, end_of_word_suffix
    }

    /// Merges are "left right" strings in files before tokenizers 0.20, ["left", "right"] pairs after.
    private enum MergeJSON: Decodable {
        case joined(String), pair([String])
        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let joined = try? container.decode(String.self) { self = .joined(joined); return }
            self = .pair(try container.decode([String].self))
        }
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try container.decodeIfPresent(String.self, forKey: .type)
        vocab = try container.decode([String: Int].self, forKey: .vocab)
        let rawMerges = try container.decode([MergeJSON].self, forKey: .merges)
        merges = []
        merges.reserveCapacity(rawMerges.count)
        for (rank, merge) in rawMerges.enumerated() {
            let sides: [String]
            switch merge {
            case .joined(let text): sides = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            case .pair(let pair): sides = pair
            }
            guard sides.count == 2 else {
                throw DecodingError.dataCorruptedError(forKey: .merges, in: container,
                                                       debugDescription: "merge \(rank) is not a pair of tokens")
            }
            merges.append(sides)
        }
        dropout = try container.decodeIfPresent(Double.self, forKey: .dropout)
        byte_fallback = try container.decodeIfPresent(Bool.self, forKey: .byte_fallback)
        ignore_merges = try container.decodeIfPresent(Bool.self, forKey: .ignore_merges)
        continuing_subword_prefix = try container.decodeIfPresent(String.self, forKey: .continuing_subword_prefix)
        end_of_word_suffix = try container.decodeIfPresent(String.self, forKey: .end_of_word_suffix)
    }
}

private struct TokenizerConfigJSON: Decodable {
    var bos_token: SpecialTokenNameJSON?
    var eos_token: SpecialTokenNameJSON?
    var unk_token: SpecialTokenNameJSON?
    var pad_token: SpecialTokenNameJSON?
    var chat_template: ChatTemplateFieldJSON?
}

/// A special token is written either as its text or as a serialized AddedToken {"content": …}.
private struct SpecialTokenNameJSON: Decodable {
    var content: String
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) { content = text; return }
        struct Serialized: Decodable { var content: String }
        content = try container.decode(Serialized.self).content
    }
}

/// `chat_template` is one template, or a list of named ones of which "default" is used by default.
private struct ChatTemplateFieldJSON: Decodable {
    var defaultTemplate: String?
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) { defaultTemplate = text; return }
        struct Named: Decodable { var name: String; var template: String }
        defaultTemplate = try container.decode([Named].self).first { $0.name == "default" }?.template
    }
}
