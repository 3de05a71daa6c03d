/// Building a `BPETokenizer` from the tokenizer metadata of a GGUF file (llama.cpp's key names).
extension BPETokenizer {
    /// GGUF metadata keys the tokenizer reads (gguf-py `Keys.Tokenizer`).
    public enum GGUFKey {
        public static let model = "tokenizer.ggml.model"
        public static let pre = "tokenizer.ggml.pre"
        public static let tokens = "tokenizer.ggml.tokens"
        public static let tokenType = "tokenizer.ggml.token_type"
        public static let merges = "tokenizer.ggml.merges"
        public static let bosTokenID = "tokenizer.ggml.bos_token_id"
        public static let eosTokenID = "tokenizer.ggml.eos_token_id"
        public static let unknownTokenID = "tokenizer.ggml.unknown_token_id"
        public static let paddingTokenID = "tokenizer.ggml.padding_token_id"
        public static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
        public static let chatTemplate = "tokenizer.chat_template"
    }

    /// The `tokenizer.ggml.model` value of byte-level BPE vocabularies.
    public static let ggufByteLevelBPEModel = "gpt2"

    /// Reads the tokenizer stored in `gguf`.
    ///
    /// - Parameter pretokenizer: overrides the split named by `tokenizer.ggml.pre`. transformers'
    ///   GGUF loader (`GGUFGPTConverter`) ignores that key for "smollm" and always applies GPT-2's split,
    ///   so reproducing ids produced that way (the shared DPO fixture) needs `.gpt2` here.
    public convenience init(gguf: GGUFFile, pretokenizer override: Pretokenizer? = nil) throws {
        let source = gguf.path
        let model = try gguf.requiredString(GGUFKey.model)
        guard model == Self.ggufByteLevelBPEModel else {
            throw TokenizerError("\(source): \(GGUFKey.model) is \(model.debugDescription); only byte-level BPE (\"gpt2\") is supported")
        }
        if gguf.metadata[GGUFKey.addSpacePrefix]?.bool == true {
            throw TokenizerError("\(source): \(GGUFKey.addSpacePrefix) is true, which byte-level BPE in Keel does not support")
        }
        let pretokenizer: Pretokenizer
        if let override {
            pretokenizer = override
        } else {
            let name = try gguf.requiredString(GGUFKey.pre)
            guard let named = Pretokenizer(ggufName: name) else {
                throw TokenizerError("\(source): \(GGUFKey.pre) \(name.debugDescription) names a pre-tokenizer regex Keel does not implement (known: GPT-2's, isolated digits then GPT-2's, llama-bpe, qwen2)")
            }
            pretokenizer = named
        }
        let tokens = try gguf.requiredStringArray(GGUFKey.tokens)
        let tokenTypes: [TokenType]
        if gguf.metadata[GGUFKey.tokenType] == nil {
            tokenTypes = Array(repeating: .normal, count: tokens.count)  // llama.cpp's default too
        } else {
            tokenTypes = try gguf.requiredIntArray(GGUFKey.tokenType).enumerated().map { id, raw in
                guard let type = Int32(exactly: raw).flatMap(TokenType.init(rawValue:)) else {
                    throw TokenizerError("\(source): \(GGUFKey.tokenType)[\(id)] is \(raw), expected 0…6")
                }
                return type
            }
        }
        func optionalID(_ key: String) throws -> Int? {
            gguf.metadata[key] == nil ? nil : try gguf.requiredInt(key)
        }
        try self.init(tokens: tokens, merges: try gguf.requiredStringArray(GGUFKey.merges), tokenTypes: tokenTypes,
                      pretokenizer: pretokenizer, ignoresMerges: pretokenizer == .llama3,
                      bosTokenID: try optionalID(GGUFKey.bosTokenID), eosTokenID: try optionalID(GGUFKey.eosTokenID),
                      unknownTokenID: try optionalID(GGUFKey.unknownTokenID),
                      paddingTokenID: try optionalID(GGUFKey.paddingTokenID),
                      chatTemplateSource: gguf.metadata[GGUFKey.chatTemplate]?.string, source: source)
    }
}
