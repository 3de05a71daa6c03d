import Foundation

/// Hugging Face tensor names of a LLaMA model (`LlamaForCausalLM.state_dict()` keys).
public enum LlamaTensorName {
    public static let embedTokens = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    /// Present only when the head is not tied to the embedding.
    public static let lmHead = "lm_head.weight"

    /// Per-layer tensors; the full name is `model.layers.{i}.<rawValue>`. Which of them a model has
    /// depends on its features (`LlamaConfig.layerTensors`). `postAttentionNorm` is LLaMA's pre-MLP norm;
    /// with Gemma's sandwich norms it normalises the attention output and `preFeedforwardNorm` is the
    /// pre-MLP norm.
    public enum Layer: String, CaseIterable, Sendable {
        case inputNorm = "input_layernorm.weight"
        case qProj = "self_attn.q_proj.weight"
        case qBias = "self_attn.q_proj.bias"
        case kProj = "self_attn.k_proj.weight"
        case kBias = "self_attn.k_proj.bias"
        case vProj = "self_attn.v_proj.weight"
        case vBias = "self_attn.v_proj.bias"
        case oProj = "self_attn.o_proj.weight"
        case qNorm = "self_attn.q_norm.weight"
        case kNorm = "self_attn.k_norm.weight"
        case postAttentionNorm = "post_attention_layernorm.weight"
        case preFeedforwardNorm = "pre_feedforward_layernorm.weight"
        case postFeedforwardNorm = "post_feedforward_layernorm.weight"
        case gateProj = "mlp.gate_proj.weight"
        case upProj = "mlp.up_proj.weight"
        case downProj = "mlp.down_proj.weight"
    }

    public static func layer(_ index: Int, _ tensor: Layer) -> String { "model.layers.\(index).\(tensor.rawValue)" }
}

extension LlamaConfig {
    /// Number of tensors in `tensorShapes()`.
    public var tensorCount: Int { 2 + layerTensors.count * layers + (tiedEmbeddings ? 0 : 1) }

    /// The tensors of each layer, in state-dict order.
    public var layerTensors: [LlamaTensorName.Layer] {
        LlamaTensorName.Layer.allCases.filter { tensor in
            switch tensor {
            case .qBias, .kBias, .vBias: return attentionBias
            case .qNorm, .kNorm: return queryKeyNorm
            case .preFeedforwardNorm, .postFeedforwardNorm: return sandwichNorms
            default: return true
            }
        }
    }

    /// Refuses a config with more layers than a file has tensors, before its tensor list is built
    /// (a corrupt `block_count` must not make us enumerate billions of names).
    func checkTensorCount(_ available: Int, source: String) throws {
        guard layers <= available else {
            throw ModelFormatError(source: source, message: "the config has \(layers) layers but only \(available) tensors are present")
        }
    }

    /// Tensors a checkpoint of this family stores as one (Phi-3's `qkv_proj` and `gate_up_proj`): the
    /// stored name and the tensors whose rows it concatenates, in order.
    public var fusedTensors: [(name: String, parts: [String])] {
        guard family == .phi3 else { return [] }
        return (0..<layers).flatMap { i in
            [("model.layers.\(i).self_attn.qkv_proj.weight", [LlamaTensorName.Layer.qProj, .kProj, .vProj].map { LlamaTensorName.layer(i, $0) }),
             ("model.layers.\(i).mlp.gate_up_proj.weight", [LlamaTensorName.Layer.gateProj, .upProj].map { LlamaTensorName.layer(i, $0) })]
        }
    }

    /// Every tensor of the model with its row-major shape, in state_dict order. Linear weights are
    /// [out, in] as in `torch.nn.Linear`: y = x Wᵀ.
    public func tensorShapes() -> [(name: String, shape: [Int])] {
        var shapes: [(name: String, shape: [Int])] = [(LlamaTensorName.embedTokens, [vocab, hidden])]
        for i in 0..<layers {
            for tensor in layerTensors {
                let shape: [Int]
                switch tensor {
                case .inputNorm, .postAttentionNorm, .preFeedforwardNorm, .postFeedforwardNorm: shape = [hidden]
                case .qNorm, .kNorm: shape = [headDim]
                case .qBias: shape = [queryDim]
                case .kBias, .vBias: shape = [keyValueDim]
                case .qProj: shape = [queryDim, hidden]
                case .kProj, .vProj: shape = [keyValueDim, hidden]
                case .oProj: shape = [hidden, queryDim]
                case .gateProj, .upProj: shape = [intermediate, hidden]
                case .downProj: shape = [hidden, intermediate]
                }
                shapes.append((LlamaTensorName.layer(i, tensor), shape))
            }
        }
        shapes.append((LlamaTensorName.finalNorm, [hidden]))
        if !tiedEmbeddings { shapes.append((LlamaTensorName.lmHead, [vocab, hidden])) }
        return shapes
    }
}

/// The Float32 parameters of a LLaMA model under their HF names, checked against a `LlamaConfig`:
/// exactly the tensors of `config.tensorShapes()`, each with its shape, kept in that order.
/// `Tensor` is a class, so copies of a `ModelWeights` share the parameter memory (an in-place optimizer
/// step is seen by every copy); `replace` swaps a tensor in one copy only.
public struct ModelWeights {
    public let config: LlamaConfig
    /// State-dict order (`config.tensorShapes()`).
    public let names: [String]
    private var tensorsByName: [String: Tensor]

    /// - Throws: `ModelFormatError` naming the first missing, unexpected or mis-shaped tensor.
    public init(config: LlamaConfig, tensors: [String: Tensor], source: String = "ModelWeights") throws {
        try config.validate(source: source)
        let expected = config.tensorShapes()
        for (name, shape) in expected {
            guard let tensor = tensors[name] else {
                throw ModelFormatError(source: source, message: "missing tensor '\(name)' (expected shape \(shape))")
            }
            guard tensor.shape == shape else {
                throw ModelFormatError(source: source, message: "tensor '\(name)' has shape \(tensor.shape), expected \(shape)")
            }
        }
        if tensors.count != expected.count {
            let known = Set(expected.map(\.name))
            let extra = tensors.keys.filter { !known.contains($0) }.sorted()
            throw ModelFormatError(source: source, message: "unexpected tensors for this config: \(extra.prefix(5).joined(separator: ", "))")
        }
        self.config = config
        self.names = expected.map(\.name)
        self.tensorsByName = tensors
    }

    public subscript(name: String) -> Tensor? { tensorsByName[name] }

    public func tensor(_ name: String) throws -> Tensor {
        guard let tensor = tensorsByName[name] else {
            throw ModelFormatError(source: "ModelWeights", message: "no tensor named '\(name)'")
        }
        return tensor
    }

    public func layer(_ index: Int, _ tensor: LlamaTensorName.Layer) throws -> Tensor {
        try self.tensor(LlamaTensorName.layer(index, tensor))
    }

    /// The output projection [vocab, hidden]: `lm_head.weight`, or the embedding when tied.
    public var lmHead: Tensor? { tensorsByName[config.tiedEmbeddings ? LlamaTensorName.embedTokens : LlamaTensorName.lmHead] }

    /// (name, tensor) in state-dict order.
    public var namedTensors: [(name: String, tensor: Tensor)] { names.compactMap { n in tensorsByName[n].map { (n, $0) } } }

    public var parameterCount: Int { tensorsByName.values.reduce(0) { $0 + $1.count } }

    /// Swaps in a new tensor of the same shape (e.g. after an out-of-place update).
    public mutating func replace(_ name: String, with tensor: Tensor) throws {
        guard let old = tensorsByName[name] else {
            throw ModelFormatError(source: "ModelWeights", message: "no tensor named '\(name)'")
        }
        guard old.shape == tensor.shape else {
            throw ModelFormatError(source: "ModelWeights", message: "replacing '\(name)': shape \(tensor.shape), expected \(old.shape)")
        }
        tensorsByName[name] = tensor
    }
}

// MARK: - Loading by path

extension ModelWeights {
    /// A Hugging Face model directory, or a `.gguf` file.
    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelFormatError(source: path, message: "no such file or directory")
        }
        if isDirectory.boolValue {
            try self.init(huggingFaceDirectory: URL(fileURLWithPath: path))
        } else if path.hasSuffix(".gguf") {
            try self.init(ggufPath: path)
        } else {
            throw ModelFormatError(source: path, message: "expected a .gguf file or a Hugging Face model directory (config.json + *.safetensors)")
        }
    }
}

// MARK: - Hugging Face directories

extension ModelWeights {
    public static let configFileName = "config.json"
    public static let safetensorsFileName = "model.safetensors"
    /// Written beside a causal LM's config.json (not a reward model's): `LlamaConfig.generationConfigJSON`.
    public static let generationConfigFileName = "generation_config.json"
    public static let safetensorsIndexFileName = "model.safetensors.index.json"

    /// Loads `config.json` plus `model.safetensors`, or the shards listed in `model.safetensors.index.json`
    /// (dtypes F32, F16, BF16, F64, converted to Float32).
    public init(huggingFaceDirectory directory: URL) throws {
        let config = try LlamaConfig(huggingFaceConfigAt: directory.appendingPathComponent(Self.configFileName))
        let shardNames = try Self.safetensorsShards(in: directory)
        let shards = try shardNames.map { try SafeTensorsFile(path: directory.appendingPathComponent($0).path) }
        try config.checkTensorCount(shards.reduce(0) { $0 + $1.tensors.count }, source: directory.path)
        let expected = Dictionary(uniqueKeysWithValues: config.tensorShapes().map { ($0.name, $0.shape) })
        let fused = Dictionary(uniqueKeysWithValues: config.fusedTensors.map { ($0.name, $0.parts) })
        var tensors: [String: Tensor] = [:]
        for shard in shards {
            for info in shard.tensors {
                if let parts = fused[info.name] {
                    let partShapes = parts.compactMap { expected[$0] }
                    let shape = [partShapes.reduce(0) { $0 + $1[0] }, config.hidden]
                    guard info.shape == shape else {
                        throw ModelFormatError(source: shard.path, message: "tensor '\(info.name)' has shape \(info.shape), expected \(shape)")
                    }
                    let whole = Tensor.zeros(shape)
                    try shard.load(info, into: whole.pointer)
                    try Self.split(whole, into: parts, config: config, tensors: &tensors)
                    continue
                }
                // Some writers store the tied head a second time, and old checkpoints carry RoPE buffers.
                if info.name == LlamaTensorName.lmHead && config.tiedEmbeddings { continue }
                if info.name.hasSuffix(".rotary_emb.inv_freq") { continue }
                // A reward model's head; `LlamaRewardModel` reads it, the backbone does not use it.
                if info.name == LlamaRewardModel.scoreWeightName { continue }
                guard let shape = expected[info.name] else {
                    throw ModelFormatError(source: shard.path, message: "unexpected tensor '\(info.name)' for a LLaMA model with this config")
                }
                guard info.shape == shape else {
                    throw ModelFormatError(source: shard.path, message: "tensor '\(info.name)' has shape \(info.shape), expected \(shape)")
                }
                guard tensors[info.name] == nil else {
                    throw ModelFormatError(source: shard.path, message: "tensor '\(info.name)' appears in two shards")
                }
                let tensor = Tensor.zeros(shape)
                try shard.load(info, into: tensor.pointer)
                tensors[info.name] = tensor
            }
        }
        try self.init(config: config, tensors: tensors, source: directory.path)
    }

    /// The parts of a fused tensor [Σ rows, hidden] (`LlamaConfig.fusedTensors`), each copied out by rows.
    static func split(_ whole: Tensor, into parts: [String], config: LlamaConfig, tensors: inout [String: Tensor]) throws {
        let shapes = Dictionary(uniqueKeysWithValues: config.tensorShapes().map { ($0.name, $0.shape) })
        var row = 0
        for part in parts {
            guard let rows = shapes[part]?[0] else {
                throw ModelFormatError(source: "ModelWeights", message: "fused tensor part '\(part)' is not a tensor of this model")
            }
            tensors[part] = whole.rows(row..<row + rows).copy()
            row += rows
        }
    }

    /// File names of the safetensors holding the weights, from the index when there is one.
    static func safetensorsShards(in directory: URL) throws -> [String] {
        let indexURL = directory.appendingPathComponent(safetensorsIndexFileName)
        guard FileManager.default.fileExists(atPath: indexURL.path) else { return [safetensorsFileName] }
        guard let data = try? Data(contentsOf: indexURL),
              let index = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let weightMap = index["weight_map"] as? [String: String] else {
            throw ModelFormatError(source: indexURL.path, message: "expected a JSON object with a 'weight_map' of tensor name → file name")
        }
        let files = Set(weightMap.values).sorted()
        for file in files where file.contains("/") || file.hasPrefix(".") {
            throw ModelFormatError(source: indexURL.path, message: "shard name '\(file)' is not a plain file name")
        }
        return files
    }

    /// Writes a directory that `transformers.AutoModelForCausalLM.from_pretrained` loads: `config.json`
    /// (LlamaForCausalLM, float32) and `model.safetensors` with HF names (no `lm_head.weight` when tied,
    /// the way transformers itself saves tied models). `extraFiles` (file name → contents) carries what
    /// other components own, e.g. the tokenizer files. With `scoreHead` [1, C] the folder is a reward
    /// model instead (`LlamaRewardModel`): `score.weight` beside the backbone, architecture
    /// `LlamaForSequenceClassification`.
    public func saveHuggingFace(to directory: URL, extraFiles: [String: Data] = [:], scoreHead: Tensor? = nil) throws {
        for name in extraFiles.keys where name.contains("/") || name.hasPrefix(".") || name.isEmpty
            || name == Self.configFileName || name == Self.generationConfigFileName || name == Self.safetensorsFileName {
            throw ModelFormatError(source: directory.path, message: "extra file name '\(name)' is not a plain file name or clashes with the weights")
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try config.huggingFaceJSON(sequenceClassification: scoreHead != nil).write(to: directory.appendingPathComponent(Self.configFileName), options: .atomic)
            if scoreHead == nil {
                try config.generationConfigJSON().write(to: directory.appendingPathComponent(Self.generationConfigFileName), options: .atomic)
            }
            for (name, contents) in extraFiles {
                try contents.write(to: directory.appendingPathComponent(name), options: .atomic)
            }
        } catch let error as ModelFormatError {
            throw error
        } catch {
            throw ModelFormatError(source: directory.path, message: "cannot write: \(error.localizedDescription)")
        }
        // transformers refuses safetensors files whose metadata lacks format = pt.
        try SafeTensors.write(path: directory.appendingPathComponent(Self.safetensorsFileName).path,
                              tensors: huggingFaceTensors + (scoreHead.map { [(name: LlamaRewardModel.scoreWeightName, tensor: $0)] } ?? []),
                              metadata: ["format": "pt"])
    }

    /// The tensors as the family's checkpoints store them: `namedTensors`, with Phi-3's fused
    /// projections concatenated back in place of their parts.
    public var huggingFaceTensors: [(name: String, tensor: Tensor)] {
        let fusedByFirstPart = Dictionary(uniqueKeysWithValues: config.fusedTensors.map { ($0.parts[0], $0) })
        let parts = Set(config.fusedTensors.flatMap(\.parts))
        return namedTensors.compactMap { entry in
            if let group = fusedByFirstPart[entry.name] {
                return (group.name, Tensor.concatenate(group.parts.compactMap { tensorsByName[$0] }, axis: 0))
            }
            return parts.contains(entry.name) ? nil : entry
        }
    }
}
