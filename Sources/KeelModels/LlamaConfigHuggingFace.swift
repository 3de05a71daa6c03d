import Foundation

// transformers' `config.json` for every `ModelFamily`: read in both RoPE layouts (transformers 5's
// `rope_parameters`, flat or per layer type, and the older top-level `rope_theta` / `rope_scaling`),
// written back in the older layout, which transformers 4 and 5 both read.

extension LlamaConfig {
    /// The `config.json` keys Keel reads and writes (transformers' names).
    public enum HFKey {
        public static let modelType = "model_type"
        public static let architectures = "architectures"
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
        public static let ropeLocalBase = "rope_local_base_freq"
        public static let partialRotary = "partial_rotary_factor"
        public static let maxPositions = "max_position_embeddings"
        public static let tiedEmbeddings = "tie_word_embeddings"
        public static let bos = "bos_token_id"
        public static let eos = "eos_token_id"
        public static let pad = "pad_token_id"
        public static let hiddenAct = "hidden_act"
        public static let hiddenActivation = "hidden_activation"
        public static let attentionBias = "attention_bias"
        public static let mlpBias = "mlp_bias"
        public static let slidingWindow = "sliding_window"
        public static let useSlidingWindow = "use_sliding_window"
        public static let maxWindowLayers = "max_window_layers"
        public static let layerTypes = "layer_types"
        public static let slidingWindowPattern = "_sliding_window_pattern"
        public static let queryPreAttentionScalar = "query_pre_attn_scalar"
        public static let attentionSoftcap = "attn_logit_softcapping"
        public static let finalLogitSoftcap = "final_logit_softcapping"
        public static let bidirectional = "use_bidirectional_attention"
        public static let quantization = "quantization_config"
    }

    public init(huggingFaceConfigAt url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelFormatError(source: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        try self.init(huggingFaceJSON: data, source: url.path)
    }

    /// Parses transformers' `config.json` for any `ModelFamily`, with transformers' defaults for absent
    /// keys. An unknown `model_type`, and any setting Keel would have to approximate (another RoPE type,
    /// partial rotary embeddings, biases elsewhere, another activation, quantisation, bidirectional
    /// attention), is refused by name.
    public init(huggingFaceJSON data: Data, source: String = "config.json") throws {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelFormatError(source: source, message: "not a JSON object")
        }
        let json = HFConfigReader(object: object, source: source)
        let family: ModelFamily
        switch object[HFKey.modelType] {
        case nil, is NSNull: family = .llama
        case let name as String:
            guard let known = ModelFamily(rawValue: name) else {
                throw json.fail("model_type '\(name)' is not supported; expected one of \(ModelFamily.supportedList)")
            }
            family = known
        case let other?: throw json.fail("'model_type' is \(other); expected a string")
        }
        if let architectures = object[HFKey.architectures] as? [String], let architecture = architectures.first,
           !architecture.hasSuffix("ForCausalLM"), !architecture.hasSuffix("ForSequenceClassification") {
            throw json.fail("architectures[0] '\(architecture)' is not supported; expected a ForCausalLM model")
        }
        if object[HFKey.quantization] != nil {
            throw json.fail("'\(HFKey.quantization)' is set: quantised Hugging Face checkpoints are not supported")
        }
        if try json.bool(HFKey.mlpBias, default: false) { throw json.fail("'mlp_bias' is true: MLP biases are not supported") }
        if try json.bool(HFKey.bidirectional, default: false) {
            throw json.fail("'\(HFKey.bidirectional)' is true: only causal attention is supported")
        }
        let gemma = family == .gemma2 || family == .gemma3
        let activationKey = gemma ? HFKey.hiddenActivation : HFKey.hiddenAct
        let activationName = try json.string(activationKey, default: gemma ? MLPActivation.geluTanh.rawValue : MLPActivation.silu.rawValue)
        let expectedActivation: MLPActivation = gemma ? .geluTanh : .silu
        guard activationName == expectedActivation.rawValue else {
            throw json.fail("'\(activationKey)' is '\(activationName)'; expected '\(expectedActivation.rawValue)' for \(family.rawValue)")
        }
        let hidden = try json.int(HFKey.hidden)
        let heads = try json.int(HFKey.heads)
        guard heads > 0 else { throw json.fail("'\(HFKey.heads)' is \(heads), expected > 0") }
        let layers = try json.int(HFKey.layers)
        self.init(layers: layers,
                  hidden: hidden,
                  heads: heads,
                  kvHeads: try json.int(HFKey.kvHeads, default: heads),
                  headDim: try json.int(HFKey.headDim, default: hidden / heads),
                  intermediate: try json.int(HFKey.intermediate),
                  vocab: try json.int(HFKey.vocab),
                  rmsEps: Float(try json.number(HFKey.rmsEps, default: 1e-6)),
                  ropeTheta: 10_000,
                  maxPositions: try json.int(HFKey.maxPositions, default: 2048),
                  tiedEmbeddings: try json.bool(HFKey.tiedEmbeddings, default: gemma),
                  bosTokenId: try json.optionalTokenID(HFKey.bos),
                  eosTokenId: try json.optionalTokenID(HFKey.eos),
                  padTokenId: try json.optionalTokenID(HFKey.pad))
        applyFeatures(of: family)
        if try json.bool(HFKey.attentionBias, default: attentionBias) != attentionBias {
            throw json.fail("'attention_bias' is \(!attentionBias): biased attention projections are supported for qwen2 only, which always has them (and no o_proj bias)")
        }
        if gemma {
            queryPreAttentionScalar = Float(try json.number(HFKey.queryPreAttentionScalar, default: 256))
            let softcapDefault: Double? = family == .gemma2 ? 50 : nil
            attentionSoftcap = try json.optionalNumber(HFKey.attentionSoftcap, default: softcapDefault).map(Float.init)
            finalLogitSoftcap = try json.optionalNumber(HFKey.finalLogitSoftcap, default: family == .gemma2 ? 30 : nil).map(Float.init)
        } else {
            for key in [HFKey.queryPreAttentionScalar, HFKey.attentionSoftcap, HFKey.finalLogitSoftcap]
            where !(object[key] == nil || object[key] is NSNull) {
                throw json.fail("'\(key)' is set, which \(family.rawValue) does not use")
            }
        }
        try readAttentionLayout(json, family: family)
        try readRoPE(json, family: family)
        try validate(source: source)
    }

    /// Sliding-window layers: every layer for Mistral and Phi-3 when `sliding_window` is set; Gemma's
    /// and Qwen's from `layer_types`, or transformers' rule when it is absent (Gemma 2 alternates from a
    /// sliding layer 0, Gemma 3 makes every `_sliding_window_pattern`-th layer full, Qwen slides from
    /// layer `max_window_layers` when `use_sliding_window`).
    private mutating func readAttentionLayout(_ json: HFConfigReader, family: ModelFamily) throws {
        let window = try json.optionalInt(HFKey.slidingWindow)
        switch family {
        case .llama:
            if window != nil { throw json.fail("'sliding_window' is set, which llama does not use") }
        case .mistral, .phi3:
            if let window { slidingWindow = window; layerTypes = Array(repeating: .sliding, count: layers) }
        case .qwen2, .qwen3:
            if let types = try json.layerTypes(count: layers) {
                layerTypes = types
            } else if try json.bool(HFKey.useSlidingWindow, default: false) {
                let first = try json.int(HFKey.maxWindowLayers, default: 28)
                layerTypes = (0..<layers).map { $0 >= first ? .sliding : .full }
            }
            if layerTypes.contains(.sliding) { slidingWindow = window }
        case .gemma2, .gemma3:
            let pattern = family == .gemma2 ? 2 : try json.int(HFKey.slidingWindowPattern, default: 6)
            layerTypes = try json.layerTypes(count: layers) ?? Self.gemmaLayerTypes(layers: layers, pattern: pattern)
            slidingWindow = window ?? 4096
        }
        if layerTypes.allSatisfy({ $0 == .full }) { layerTypes = [] }
    }

    /// θ and scaling of the full-attention layers, and Gemma 3's base for the sliding ones.
    private mutating func readRoPE(_ json: HFConfigReader, family: ModelFamily) throws {
        if let partial = try json.optionalNumber(HFKey.partialRotary, default: nil), partial != 1 {
            throw json.fail("'\(HFKey.partialRotary)' is \(partial): partial rotary embeddings are not supported")
        }
        let defaultTheta = family == .gemma3 ? 1_000_000.0 : 10_000.0
        if let parameters = json.object[HFKey.ropeParameters] as? [String: Any] {
            let perType = parameters[AttentionKind.full.rawValue] as? [String: Any]
            let full = try RoPEReading(perType ?? parameters, path: HFKey.ropeParameters + (perType == nil ? "" : ".full_attention"), json)
            ropeTheta = Float(full.theta ?? defaultTheta)
            ropeScaling = full.scaling
            if let sliding = parameters[AttentionKind.sliding.rawValue] as? [String: Any] {
                let local = try RoPEReading(sliding, path: HFKey.ropeParameters + ".sliding_attention", json)
                if let scaling = local.scaling {
                    throw json.fail("rope_parameters.sliding_attention.rope_type '\(scaling.typeName)' is not supported; expected 'default'")
                }
                slidingRopeTheta = local.theta.map(Float.init)
            }
        } else {
            ropeTheta = Float(try json.number(HFKey.ropeTheta, default: defaultTheta))
            if let scaling = json.object[HFKey.ropeScaling] as? [String: Any] {
                ropeScaling = try RoPEReading(scaling, path: HFKey.ropeScaling, json).scaling
            }
            if family == .gemma3 { slidingRopeTheta = Float(try json.number(HFKey.ropeLocalBase, default: 10_000)) }
        }
        if slidingRopeTheta == ropeTheta && ropeScaling == nil { slidingRopeTheta = nil }
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

    /// transformers' `config.json` for this family's causal LM in float32 (RoPE in the top-level layout),
    /// keys sorted for stable diffs. `sequenceClassification`: a one-label `LlamaForSequenceClassification`
    /// (a reward model; LLaMA only).
    public func huggingFaceJSON(sequenceClassification: Bool = false) throws -> Data {
        if sequenceClassification && family != .llama {
            throw ModelFormatError(source: "config.json", message: "a reward-model export is a LlamaForSequenceClassification; this model is \(family.rawValue)")
        }
        /// Float → Double through the shortest decimal string, so 1e-5 is written as 1e-05, not 9.99999974737875e-06.
        func decimal(_ value: Float) -> Double { Double("\(value)") ?? Double(value) }
        var json: [String: Any] = [
            HFKey.architectures: [sequenceClassification ? "LlamaForSequenceClassification" : family.causalLMArchitecture],
            HFKey.modelType: family.rawValue,
            HFKey.layers: layers,
            HFKey.hidden: hidden,
            HFKey.heads: heads,
            HFKey.kvHeads: kvHeads,
            HFKey.headDim: headDim,
            HFKey.intermediate: intermediate,
            HFKey.vocab: vocab,
            HFKey.rmsEps: decimal(rmsEps),
            HFKey.ropeTheta: decimal(ropeTheta),
            HFKey.maxPositions: maxPositions,
            HFKey.tiedEmbeddings: tiedEmbeddings,
            HFKey.attentionBias: attentionBias,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
            "torch_dtype": "float32",
        ]
        switch ropeScaling {
        case nil: json[HFKey.ropeScaling] = NSNull()
        case .linear(let factor)?: json[HFKey.ropeScaling] = ["rope_type": "linear", "factor": decimal(factor)]
        case let .llama3(factor, low, high, original)?:
            json[HFKey.ropeScaling] = ["rope_type": "llama3", "factor": decimal(factor), "low_freq_factor": decimal(low),
                                       "high_freq_factor": decimal(high), "original_max_position_embeddings": original]
        }
        switch family {
        case .gemma2, .gemma3:
            json[HFKey.hiddenActivation] = activation.rawValue
            json[HFKey.queryPreAttentionScalar] = queryPreAttentionScalar.map(decimal) ?? NSNull()
            json[HFKey.attentionSoftcap] = attentionSoftcap.map(decimal) ?? NSNull()
            json[HFKey.finalLogitSoftcap] = finalLogitSoftcap.map(decimal) ?? NSNull()
            if family == .gemma3 { json[HFKey.ropeLocalBase] = decimal(slidingRopeTheta ?? ropeTheta) }
        default:
            json[HFKey.hiddenAct] = activation.rawValue
        }
        if family == .llama { json[HFKey.mlpBias] = false; json["pretraining_tp"] = 1 }
        json[HFKey.slidingWindow] = slidingWindow ?? NSNull()
        if !layerTypes.isEmpty {
            json[HFKey.layerTypes] = layerTypes.map(\.rawValue)
            if family == .qwen2 || family == .qwen3 { json[HFKey.useSlidingWindow] = true }
        }
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

/// One RoPE settings object (`rope_parameters`, one of its per-layer-type entries, or `rope_scaling`):
/// its θ if it names one, and its scaling (nil for `default`); any other type is refused by name.
private struct RoPEReading {
    let theta: Double?
    let scaling: RoPEScaling?

    init(_ object: [String: Any], path: String, _ json: HFConfigReader) throws {
        let reader = HFConfigReader(object: object, source: json.source, prefix: path + ".")
        theta = try reader.optionalNumber(LlamaConfig.HFKey.ropeTheta, default: nil)
        if let partial = try reader.optionalNumber(LlamaConfig.HFKey.partialRotary, default: nil), partial != 1 {
            throw reader.fail("'\(path).\(LlamaConfig.HFKey.partialRotary)' is \(partial): partial rotary embeddings are not supported")
        }
        let type = try reader.string("rope_type", default: try reader.string("type", default: "default"))
        switch type {
        case "default": scaling = nil
        case "linear": scaling = .linear(factor: Float(try reader.number("factor")))
        case "llama3":
            scaling = .llama3(factor: Float(try reader.number("factor")),
                              lowFrequencyFactor: Float(try reader.number("low_freq_factor")),
                              highFrequencyFactor: Float(try reader.number("high_freq_factor")),
                              originalMaxPositions: try reader.int("original_max_position_embeddings"))
        default:
            throw reader.fail("'\(path).rope_type' is '\(type)', which is not supported; expected default, linear or llama3")
        }
    }
}

/// Typed reads of a `config.json` object, failing with the file and the key: "found X; expected Y".
struct HFConfigReader {
    let object: [String: Any]
    let source: String
    /// Prepended to key names in messages (a nested object's path).
    var prefix = ""

    func fail(_ message: String) -> ModelFormatError { ModelFormatError(source: source, message: message) }

    private func absent(_ key: String) -> Bool { object[key] == nil || object[key] is NSNull }

    func int(_ key: String, default fallback: Int? = nil) throws -> Int {
        if absent(key) {
            if let fallback { return fallback }
            throw fail("missing '\(prefix)\(key)'")
        }
        guard let n = object[key] as? NSNumber, Double(n.int64Value) == n.doubleValue else {
            throw fail("'\(prefix)\(key)' is \(object[key]!); expected an integer")
        }
        return n.intValue
    }

    func optionalInt(_ key: String) throws -> Int? { absent(key) ? nil : try int(key) }

    /// A token id; `eos_token_id` may be a list (generation stops at any), whose first is the canonical one.
    func optionalTokenID(_ key: String) throws -> Int? {
        if let list = object[key] as? [NSNumber] { return list.first?.intValue }
        return try optionalInt(key)
    }

    func number(_ key: String, default fallback: Double? = nil) throws -> Double {
        guard let value = try optionalNumber(key, default: fallback) else { throw fail("missing '\(prefix)\(key)'") }
        return value
    }

    func optionalNumber(_ key: String, default fallback: Double?) throws -> Double? {
        if absent(key) { return fallback }
        guard let n = object[key] as? NSNumber else {
            throw fail("'\(prefix)\(key)' is \(object[key]!); expected a number")
        }
        return n.doubleValue
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        if absent(key) { return fallback }
        guard let value = object[key] as? Bool else { throw fail("'\(prefix)\(key)' is \(object[key]!); expected true or false") }
        return value
    }

    func string(_ key: String, default fallback: String) throws -> String {
        if absent(key) { return fallback }
        guard let value = object[key] as? String else { throw fail("'\(prefix)\(key)' is \(object[key]!); expected a string") }
        return value
    }

    /// `layer_types`, if present: one of full_attention / sliding_attention per layer.
    func layerTypes(count: Int) throws -> [AttentionKind]? {
        if absent(LlamaConfig.HFKey.layerTypes) { return nil }
        guard let names = object[LlamaConfig.HFKey.layerTypes] as? [String] else {
            throw fail("'layer_types' is \(object[LlamaConfig.HFKey.layerTypes]!); expected a list of attention kinds")
        }
        guard names.count == count else { throw fail("'layer_types' lists \(names.count) layers; expected \(count)") }
        return try names.enumerated().map { index, name in
            guard let kind = AttentionKind(rawValue: name) else {
                throw fail("layer_types[\(index)] is '\(name)'; expected full_attention or sliding_attention")
            }
            return kind
        }
    }
}
