import Foundation

/// Hyper-parameters of a LLaMA-family decoder (RMSNorm, RoPE with HF's rotate_half pairing, SwiGLU MLP,
/// grouped-query attention, no biases). Codable in Keel's own camelCase form; `huggingFaceJSON()` and
/// `init(huggingFaceJSON:)` speak transformers' `config.json`.
public struct LlamaConfig: Codable, Equatable, Sendable {
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    /// Key/value heads (grouped-query attention: each serves `heads / kvHeads` query heads).
    public var kvHeads: Int
    public var headDim: Int
    public var intermediate: Int
    public var vocab: Int
    public var rmsEps: Float
    /// RoPE base θ: frequency i of a head is θ^(−2i/headDim).
    public var ropeTheta: Float
    public var maxPositions: Int
    /// The LM head is the token embedding matrix (no separate `lm_head.weight`).
    public var tiedEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var padTokenId: Int?

    public init(layers: Int, hidden: Int, heads: Int, kvHeads: Int, headDim: Int, intermediate: Int, vocab: Int,
                rmsEps: Float, ropeTheta: Float, maxPositions: Int, tiedEmbeddings: Bool,
                bosTokenId: Int? = nil, eosTokenId: Int? = nil, padTokenId: Int? = nil) {
        self.layers = layers
        self.hidden = hidden
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.intermediate = intermediate
        self.vocab = vocab
        self.rmsEps = rmsEps
        self.ropeTheta = ropeTheta
        self.maxPositions = maxPositions
        self.tiedEmbeddings = tiedEmbeddings
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.padTokenId = padTokenId
    }

    /// Two layers, width 16, 4 query heads sharing 2 KV heads: exercises GQA and RoPE in fast tests.
    public static let tiny = LlamaConfig(layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, intermediate: 32,
                                         vocab: 64, rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 64,
                                         tiedEmbeddings: true, bosTokenId: 1, eosTokenId: 2, padTokenId: 2)
    /// `tiny` with a separate LM head.
    public static let tinyUntied: LlamaConfig = {
        var config = tiny
        config.tiedEmbeddings = false
        return config
    }()
    /// HuggingFaceTB/SmolLM2-135M-Instruct, as in its config.json.
    public static let smolLM2_135M = LlamaConfig(layers: 30, hidden: 576, heads: 9, kvHeads: 3, headDim: 64,
                                                 intermediate: 1536, vocab: 49152, rmsEps: 1e-5, ropeTheta: 100_000,
                                                 maxPositions: 8192, tiedEmbeddings: true,
                                                 bosTokenId: 1, eosTokenId: 2, padTokenId: 2)

    /// Query projection rows: heads × headDim.
    public var queryDim: Int { heads * headDim }
    /// Key / value projection rows: kvHeads × headDim.
    public var keyValueDim: Int { kvHeads * headDim }

    /// Checks the relations the transformer relies on.
    public func validate(source: String = "LlamaConfig") throws {
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(source: source, message: message) }
        for (name, value) in [("layers", layers), ("hidden", hidden), ("heads", heads), ("kvHeads", kvHeads),
                              ("headDim", headDim), ("intermediate", intermediate), ("vocab", vocab),
                              ("maxPositions", maxPositions)] where value <= 0 {
            throw fail("\(name) is \(value), expected a positive integer")
        }
        for (name, a, b) in [("heads × headDim", heads, headDim), ("kvHeads × headDim", kvHeads, headDim),
                             ("vocab × hidden", vocab, hidden), ("intermediate × hidden", intermediate, hidden)]
        where a.multipliedReportingOverflow(by: b).overflow {
            throw fail("\(name) = \(a) × \(b) overflows")
        }
        guard heads % kvHeads == 0 else { throw fail("heads \(heads) is not a multiple of kvHeads \(kvHeads)") }
        guard headDim % 2 == 0 else { throw fail("headDim \(headDim) is odd; RoPE rotates pairs of dimensions") }
        guard rmsEps > 0, rmsEps.isFinite else { throw fail("rmsEps is \(rmsEps), expected a small positive number") }
        guard ropeTheta > 1, ropeTheta.isFinite else { throw fail("ropeTheta is \(ropeTheta), expected > 1") }
        for (name, id) in [("bosTokenId", bosTokenId), ("eosTokenId", eosTokenId), ("padTokenId", padTokenId)] {
            if let id, !(0..<vocab).contains(id) { throw fail("\(name) \(id) is outside the vocabulary 0..<\(vocab)") }
        }
    }
}

/// A model file or config that does not describe a supported LLaMA model: which file, and why.
public struct ModelFormatError: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let message: String

    public init(source: String, message: String) {
        self.source = source
        self.message = message
    }

    public var description: String { "\(source): \(message)" }
}

// MARK: - From GGUF metadata

extension LlamaConfig {
    /// Reads `<arch>.*` and `tokenizer.ggml.*` keys (llama.cpp's names; `arch` = general.architecture).
    public init(gguf: GGUFFile) throws {
        let arch = try gguf.requiredString("general.architecture")
        guard arch == "llama" else {
            throw ModelFormatError(source: gguf.path, message: "general.architecture is '\(arch)', expected 'llama'")
        }
        func optionalInt(_ key: String) throws -> Int? { gguf.metadata[key] == nil ? nil : try gguf.requiredInt(key) }
        let hidden = try gguf.requiredInt("llama.embedding_length")
        let heads = try gguf.requiredInt("llama.attention.head_count")
        guard heads > 0 else {
            throw ModelFormatError(source: gguf.path, message: "llama.attention.head_count is \(heads), expected > 0")
        }
        let headDim = try optionalInt("llama.attention.key_length") ?? hidden / heads
        if let ropeDims = try optionalInt("llama.rope.dimension_count"), ropeDims != headDim {
            throw ModelFormatError(source: gguf.path, message: "llama.rope.dimension_count \(ropeDims) differs from the head size \(headDim): partial rotary embeddings are not supported")
        }
        if let scaling = gguf.metadata["llama.rope.scaling.type"]?.string, scaling != "none" {
            throw ModelFormatError(source: gguf.path, message: "llama.rope.scaling.type '\(scaling)' is not supported")
        }
        let vocab = try optionalInt("llama.vocab_size")
            ?? gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
            ?? gguf.tensor(named: "token_embd.weight")?.shape.first
        guard let vocab else {
            throw ModelFormatError(source: gguf.path, message: "no vocabulary size: none of llama.vocab_size, tokenizer.ggml.tokens, token_embd.weight")
        }
        self.init(layers: try gguf.requiredInt("llama.block_count"),
                  hidden: hidden,
                  heads: heads,
                  kvHeads: try optionalInt("llama.attention.head_count_kv") ?? heads,
                  headDim: headDim,
                  intermediate: try gguf.requiredInt("llama.feed_forward_length"),
                  vocab: vocab,
                  rmsEps: try gguf.requiredFloat("llama.attention.layer_norm_rms_epsilon"),
                  ropeTheta: gguf.metadata["llama.rope.freq_base"] == nil ? 10_000 : try gguf.requiredFloat("llama.rope.freq_base"),
                  maxPositions: try gguf.requiredInt("llama.context_length"),
                  tiedEmbeddings: gguf.tensor(named: "output.weight") == nil,
                  bosTokenId: try optionalInt("tokenizer.ggml.bos_token_id"),
                  eosTokenId: try optionalInt("tokenizer.ggml.eos_token_id"),
                  padTokenId: try optionalInt("tokenizer.ggml.padding_token_id"))
        try validate(source: gguf.path)
    }
}

// MARK: - HF config.json

extension LlamaConfig {
    /// The `config.json` keys Keel reads and writes (transformers' LlamaConfig names).
    public enum HFKey {
        public static let layers = "num_hidden_layers"
        public static let hidden = "hidden_size"
        public static let heads = "num_attention_heads"
        public static let kvHeads = "num_key_value_heads"
        public static let headDim = "head_dim"
        public static let intermediate = "intermediate_size"
        public static let vocab = "vocab_size"
        public static let rmsEps = "rms_norm_eps"
        public static let ropeTheta = "rope_theta"
        public static let ropeScaling = "rope_scaling"
        public static let ropeParameters = "rope_parameters"
        public static let maxPositions = "max_position_embeddings"
        public static let tiedEmbeddings = "tie_word_embeddings"
        public static let bos = "bos_token_id"
        public static let eos = "eos_token_id"
        public static let pad = "pad_token_id"
    }

    public init(huggingFaceConfigAt url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelFormatError(source: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        try self.init(huggingFaceJSON: data, source: url.path)
    }

    /// Parses transformers' `config.json` for `model_type: llama`, with transformers' defaults for absent keys.
    public init(huggingFaceJSON data: Data, source: String = "config.json") throws {
        func fail(_ message: String) -> ModelFormatError { ModelFormatError(source: source, message: message) }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        func int(_ key: String, default fallback: Int? = nil) throws -> Int {
            switch json[key] {
            case let n as NSNumber where Double(n.int64Value) == n.doubleValue: return n.intValue
            case nil, is NSNull:
                if let fallback { return fallback }
                throw fail("missing '\(key)'")
            case let other?: throw fail("'\(key)' is \(other), expected an integer")
            }
        }
        func optionalInt(_ key: String) throws -> Int? {
            switch json[key] {
            case nil, is NSNull: return nil
            // eos_token_id may be a list (generation stops at any); the first is the canonical one.
            case let list as [NSNumber]: return list.first?.intValue
            default: return try int(key)
            }
        }
        func number(_ key: String, in object: [String: Any], default fallback: Double) throws -> Double {
            switch object[key] {
            case nil, is NSNull: return fallback
            case let n as NSNumber: return n.doubleValue
            case let other?: throw fail("'\(key)' is \(other), expected a number")
            }
        }
        if let modelType = json["model_type"] as? String, modelType != "llama" {
            throw fail("model_type is '\(modelType)', expected 'llama'")
        }
        if let act = json["hidden_act"] as? String, act != "silu" {
            throw fail("hidden_act is '\(act)', expected 'silu'")
        }
        for key in ["attention_bias", "mlp_bias"] where (json[key] as? Bool) == true {
            throw fail("'\(key)' is true: biased projections are not supported")
        }
        var ropeTheta = try number(HFKey.ropeTheta, in: json, default: 10_000)
        if let scaling = json[HFKey.ropeScaling] as? [String: Any] {
            let type = (scaling["rope_type"] ?? scaling["type"]) as? String ?? "?"
            if type != "default" { throw fail("rope_scaling of type '\(type)' is not supported") }
        }
        // transformers ≥ 5 nests θ in rope_parameters.
        if let parameters = json[HFKey.ropeParameters] as? [String: Any] {
            if let type = parameters["rope_type"] as? String, type != "default" {
                throw fail("rope_parameters.rope_type '\(type)' is not supported")
            }
            ropeTheta = try number(HFKey.ropeTheta, in: parameters, default: ropeTheta)
        }
        let hidden = try int(HFKey.hidden)
        let heads = try int(HFKey.heads)
        guard heads > 0 else { throw fail("'\(HFKey.heads)' is \(heads), expected > 0") }
        self.init(layers: try int(HFKey.layers),
                  hidden: hidden,
                  heads: heads,
                  kvHeads: try int(HFKey.kvHeads, default: heads),
                  headDim: try int(HFKey.headDim, default: hidden / heads),
                  intermediate: try int(HFKey.intermediate),
                  vocab: try int(HFKey.vocab),
                  rmsEps: Float(try number(HFKey.rmsEps, in: json, default: 1e-6)),
                  ropeTheta: Float(ropeTheta),
                  maxPositions: try int(HFKey.maxPositions, default: 2048),
                  tiedEmbeddings: (json[HFKey.tiedEmbeddings] as? Bool) ?? false,
                  bosTokenId: try optionalInt(HFKey.bos),
                  eosTokenId: try optionalInt(HFKey.eos),
                  padTokenId: try optionalInt(HFKey.pad))
        try validate(source: source)
    }

    /// transformers' `generation_config.json` of a causal LM: its special token ids (generation then stops
    /// at EOS, as `keel generate` does) and greedy decoding, transformers' default.
    public func generationConfigJSON() throws -> Data {
        let json: [String: Any] = [
            HFKey.bos: bosTokenId ?? NSNull(), HFKey.eos: eosTokenId ?? NSNull(), HFKey.pad: padTokenId ?? NSNull(),
            "do_sample": false,
        ]
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }

    /// transformers' `config.json` for `LlamaForCausalLM` in float32, with every field it needs to
    /// rebuild this architecture (biases off, SiLU, no rope scaling), keys sorted for stable diffs.
    /// `sequenceClassification`: a one-label `LlamaForSequenceClassification` (a reward model) instead.
    public func huggingFaceJSON(sequenceClassification: Bool = false) throws -> Data {
        var json: [String: Any] = [
            "architectures": [sequenceClassification ? "LlamaForSequenceClassification" : "LlamaForCausalLM"],
            "model_type": "llama",
            HFKey.layers: layers,
            HFKey.hidden: hidden,
            HFKey.heads: heads,
            HFKey.kvHeads: kvHeads,
            HFKey.headDim: headDim,
            HFKey.intermediate: intermediate,
            HFKey.vocab: vocab,
            // Float → Double through the shortest decimal string, so 1e-5 is written as 1e-05, not 9.99999974737875e-06.
            HFKey.rmsEps: Double("\(rmsEps)") ?? Double(rmsEps),
            HFKey.ropeTheta: Double("\(ropeTheta)") ?? Double(ropeTheta),
            HFKey.ropeScaling: NSNull(),
            HFKey.maxPositions: maxPositions,
            HFKey.tiedEmbeddings: tiedEmbeddings,
            "hidden_act": "silu",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": true,
            "torch_dtype": "float32",
        ]
        json[HFKey.bos] = bosTokenId ?? NSNull()
        json[HFKey.eos] = eosTokenId ?? NSNull()
        json[HFKey.pad] = padTokenId ?? NSNull()
        if sequenceClassification {
            json["id2label"] = ["0": "LABEL_0"]
            json["label2id"] = ["LABEL_0": 0]
        }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }
}
