import Foundation

/// Hyper-parameters of a LLaMA-family decoder (RMSNorm, RoPE with HF's rotate_half pairing, SwiGLU MLP,
/// grouped-query attention, no biases), and the features by which the other families differ from it
/// (`ModelFamily`; all off for plain LLaMA). Codable in Keel's own camelCase form; `huggingFaceJSON()`
/// and `init(huggingFaceJSON:)` speak transformers' `config.json`.
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

    /// The transformers family the checkpoint came from (its export layout and `model_type`).
    public var family: ModelFamily = .llama
    /// RoPE frequency scaling of the (full-attention) layers.
    public var ropeScaling: RoPEScaling?
    /// RoPE base of the sliding-window layers when it differs from `ropeTheta` (Gemma 3's local base).
    public var slidingRopeTheta: Float?
    /// Keys visible to a query in a sliding layer, itself included (transformers' `sliding_window`).
    public var slidingWindow: Int?
    /// Per layer, full or sliding-window attention; empty: every layer full.
    public var layerTypes: [AttentionKind] = []
    /// Biases on the q, k and v projections (Qwen 2).
    public var attentionBias = false
    /// RMSNorm over each query and key head (weights [headDim]) before RoPE (Qwen 3, Gemma 3).
    public var queryKeyNorm = false
    /// Every RMSNorm multiplies by (offset + weight): 1 for Gemma, 0 otherwise.
    public var normWeightOffset: Float = 0
    /// RMSNorm on the attention and MLP outputs before the residual adds, and a separate pre-MLP norm
    /// (Gemma's post_attention / pre_feedforward / post_feedforward layernorms).
    public var sandwichNorms = false
    public var activation: MLPActivation = .silu
    /// Token embeddings are multiplied by √hidden (Gemma).
    public var scalesEmbeddings = false
    /// Attention scores are scaled by this^−½ instead of headDim^−½ (Gemma's query_pre_attn_scalar).
    public var queryPreAttentionScalar: Float?
    /// Attention scores become cap · tanh(s / cap) before the softmax (Gemma 2).
    public var attentionSoftcap: Float?
    /// Logits become cap · tanh(l / cap) before the softmax (Gemma 2).
    public var finalLogitSoftcap: Float?

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
        if !layerTypes.isEmpty && layerTypes.count != layers {
            throw fail("layerTypes lists \(layerTypes.count) layers, expected \(layers)")
        }
        if layerTypes.contains(.sliding) {
            guard let slidingWindow, slidingWindow > 0 else { throw fail("sliding-window layers without a positive slidingWindow") }
        }
        if let slidingRopeTheta, !(slidingRopeTheta > 1 && slidingRopeTheta.isFinite) {
            throw fail("slidingRopeTheta is \(slidingRopeTheta), expected > 1")
        }
        for (name, cap) in [("attentionSoftcap", attentionSoftcap), ("finalLogitSoftcap", finalLogitSoftcap),
                            ("queryPreAttentionScalar", queryPreAttentionScalar)] {
            if let cap, !(cap > 0 && cap.isFinite) { throw fail("\(name) is \(cap), expected a positive number") }
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

// MARK: - Family features

extension LlamaConfig {
    /// Switches on the features that come with `family` itself (not the numbers its config gives):
    /// Qwen 2's q/k/v biases, Qwen 3's and Gemma 3's q/k norms, Gemma's (1 + w) norms, sandwich norms,
    /// GeGLU and scaled embeddings. The config readers (Hugging Face, GGUF) call it once.
    mutating func applyFeatures(of family: ModelFamily) {
        self.family = family
        let gemma = family == .gemma2 || family == .gemma3
        attentionBias = family == .qwen2
        queryKeyNorm = family == .qwen3 || family == .gemma3
        normWeightOffset = gemma ? 1 : 0
        sandwichNorms = gemma
        scalesEmbeddings = gemma
        activation = gemma ? .geluTanh : .silu
    }

    /// Gemma's layer kinds when the config does not list them: every `pattern`-th layer full, the
    /// others sliding (Gemma 2: 2, Gemma 3: 6; transformers' and llama.cpp's rule).
    static func gemmaLayerTypes(layers: Int, pattern: Int) -> [AttentionKind] {
        (0..<layers).map { ($0 + 1) % pattern == 0 ? .full : .sliding }
    }
}

// MARK: - From GGUF metadata

extension LlamaConfig {
    /// llama.cpp's `general.architecture` names Keel reads, with their family. Mistral's GGUFs are `llama`.
    public static let ggufArchitectures: [String: ModelFamily] = [
        "llama": .llama, "qwen2": .qwen2, "qwen3": .qwen3, "gemma2": .gemma2, "gemma3": .gemma3, "phi3": .phi3,
    ]

    /// The GGUF tensor of Llama 3.1+'s RoPE frequency divisors (llama.cpp's `rope_freqs.weight`).
    public static let ggufRoPEFactorsTensor = "rope_freqs.weight"

    /// The `rope_type: llama3` parameters that give these per-frequency divisors, found among Meta's
    /// published settings (low 1, high 4, original context 8192, factor = the largest divisor), so that
    /// the model exports to transformers exactly; other divisors are refused rather than approximated.
    static func llama3Scaling(fromFactors factors: [Float], headDim: Int, theta: Float, source: String) throws -> RoPEScaling {
        let base = RoPETable.inverseFrequencies(headDim: headDim, theta: theta)
        guard factors.count == base.count, let largest = factors.max() else {
            throw ModelFormatError(source: source, message: "\(ggufRoPEFactorsTensor) has \(factors.count) values; expected \(base.count), one per frequency")
        }
        let candidate = RoPEScaling.llama3(factor: largest, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8192)
        let scaled = candidate.inverseFrequencies(base)
        for (i, factor) in factors.enumerated() where abs(base[i] / scaled[i] - factor) > 1e-4 * factor {
            throw ModelFormatError(source: source, message: "\(ggufRoPEFactorsTensor)[\(i)] is \(factor); Llama 3 scaling (factor \(largest), low 1, high 4, original 8192) gives \(base[i] / scaled[i]): other RoPE frequency factors are not supported")
        }
        return candidate
    }

    /// Reads `<arch>.*` and `tokenizer.ggml.*` keys (llama.cpp's names; `arch` = general.architecture).
    public init(gguf: GGUFFile) throws {
        let arch = try gguf.requiredString("general.architecture")
        guard let family = Self.ggufArchitectures[arch] else {
            throw ModelFormatError(source: gguf.path, message: "general.architecture is '\(arch)'; expected one of \(Self.ggufArchitectures.keys.sorted().joined(separator: ", "))")
        }
        func optionalInt(_ key: String) throws -> Int? { gguf.metadata[key] == nil ? nil : try gguf.requiredInt(key) }
        func optionalFloat(_ key: String) throws -> Float? { gguf.metadata[key] == nil ? nil : try gguf.requiredFloat(key) }
        let hidden = try gguf.requiredInt("\(arch).embedding_length")
        let heads = try gguf.requiredInt("\(arch).attention.head_count")
        guard heads > 0 else {
            throw ModelFormatError(source: gguf.path, message: "\(arch).attention.head_count is \(heads), expected > 0")
        }
        let headDim = try optionalInt("\(arch).attention.key_length") ?? hidden / heads
        if let ropeDims = try optionalInt("\(arch).rope.dimension_count"), ropeDims != headDim {
            throw ModelFormatError(source: gguf.path, message: "\(arch).rope.dimension_count \(ropeDims) differs from the head size \(headDim): partial rotary embeddings are not supported")
        }
        var ropeScaling: RoPEScaling?
        switch gguf.metadata["\(arch).rope.scaling.type"]?.string {
        case nil, "none"?: break
        case "linear"?: ropeScaling = .linear(factor: try gguf.requiredFloat("\(arch).rope.scaling.factor"))
        case let other?:
            throw ModelFormatError(source: gguf.path, message: "\(arch).rope.scaling.type '\(other)' is not supported; expected none or linear")
        }
        let vocab = try optionalInt("\(arch).vocab_size")
            ?? gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
            ?? gguf.tensor(named: "token_embd.weight")?.shape.first
        guard let vocab else {
            throw ModelFormatError(source: gguf.path, message: "no vocabulary size: none of \(arch).vocab_size, tokenizer.ggml.tokens, token_embd.weight")
        }
        let layers = try gguf.requiredInt("\(arch).block_count")
        self.init(layers: layers,
                  hidden: hidden,
                  heads: heads,
                  kvHeads: try optionalInt("\(arch).attention.head_count_kv") ?? heads,
                  headDim: headDim,
                  intermediate: try gguf.requiredInt("\(arch).feed_forward_length"),
                  vocab: vocab,
                  rmsEps: try gguf.requiredFloat("\(arch).attention.layer_norm_rms_epsilon"),
                  ropeTheta: try optionalFloat("\(arch).rope.freq_base") ?? 10_000,
                  maxPositions: try gguf.requiredInt("\(arch).context_length"),
                  tiedEmbeddings: gguf.tensor(named: "output.weight") == nil,
                  bosTokenId: try optionalInt("tokenizer.ggml.bos_token_id"),
                  eosTokenId: try optionalInt("tokenizer.ggml.eos_token_id"),
                  padTokenId: try optionalInt("tokenizer.ggml.padding_token_id"))
        applyFeatures(of: family)
        self.ropeScaling = ropeScaling
        if let factors = gguf.tensor(named: Self.ggufRoPEFactorsTensor) {
            guard ropeScaling == nil else {
                throw ModelFormatError(source: gguf.path, message: "both \(arch).rope.scaling.type and \(Self.ggufRoPEFactorsTensor); expected one")
            }
            let divisors = try gguf.dequantize(factors).toArray()
            // All ones: no scaling at all.
            if divisors.contains(where: { $0 != 1 }) {
                self.ropeScaling = try Self.llama3Scaling(fromFactors: divisors, headDim: headDim, theta: ropeTheta, source: gguf.path)
            }
        }
        slidingWindow = try optionalInt("\(arch).attention.sliding_window")
        switch family {
        case .gemma2, .gemma3:
            // `<arch>.attention.sliding_window_pattern`: a period, or one bool per layer (true = sliding);
            // without it llama.cpp's fixed periods.
            switch gguf.metadata["\(arch).attention.sliding_window_pattern"] {
            case nil: layerTypes = Self.gemmaLayerTypes(layers: layers, pattern: family == .gemma2 ? 2 : 6)
            case .array(let flags)?:
                let sliding = flags.compactMap { flag -> Bool? in if case .bool(let b) = flag { return b } else { return nil } }
                guard sliding.count == layers else {
                    throw ModelFormatError(source: gguf.path, message: "\(arch).attention.sliding_window_pattern has \(flags.count) entries; expected \(layers) booleans")
                }
                layerTypes = sliding.map { $0 ? .sliding : .full }
            case let value?:
                guard let period = value.int, period > 0 else {
                    throw ModelFormatError(source: gguf.path, message: "\(arch).attention.sliding_window_pattern is \(value); expected a positive period or one boolean per layer")
                }
                layerTypes = Self.gemmaLayerTypes(layers: layers, pattern: period)
            }
            // llama.cpp scales queries by 1/√(hidden/heads) for the 27B models (46 and 62 layers), by
            // 1/√headDim otherwise: the configs' query_pre_attn_scalar, which GGUFs do not store.
            let is27B = layers == (family == .gemma2 ? 46 : 62)
            queryPreAttentionScalar = Float(is27B ? hidden / heads : headDim)
            attentionSoftcap = try optionalFloat("\(arch).attn_logit_softcapping")
            finalLogitSoftcap = try optionalFloat("\(arch).final_logit_softcapping")
            // llama.cpp's fixed base of Gemma 3's local layers.
            if family == .gemma3 { slidingRopeTheta = 10_000 }
        case .phi3:
            if slidingWindow != nil { layerTypes = Array(repeating: .sliding, count: layers) }
        case .llama, .mistral, .qwen2, .qwen3:
            if let slidingWindow {
                throw ModelFormatError(source: gguf.path, message: "\(arch).attention.sliding_window is \(slidingWindow): sliding windows are read for gemma2, gemma3 and phi3 GGUFs only")
            }
        }
        try validate(source: gguf.path)
    }
}
