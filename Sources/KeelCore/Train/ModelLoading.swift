import Foundation

/// Everything the trainer loads from a recipe's `model:` (and `reference:`) sections.
public enum ModelLoading {
    /// A pretrained model and its tokenizer from a GGUF file or a Hugging Face directory (what `keel
    /// generate` and `keel score` take, and what `keel export` writes). `ggufPretokenizer` overrides a
    /// GGUF's own pre-tokenizer (`.gpt2` reproduces transformers' GGUF loader); a Hugging Face directory
    /// always uses its tokenizer.json.
    public static func pretrained(at path: String, ggufPretokenizer: Pretokenizer? = nil) throws -> (model: LlamaModel, tokenizer: BPETokenizer) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let directory = URL(fileURLWithPath: path)
            return (try LlamaModel(weights: ModelWeights(huggingFaceDirectory: directory)),
                    try BPETokenizer(huggingFaceDirectory: directory))
        }
        let gguf = try GGUFFile(path: path)
        return (try LlamaModel(weights: ModelWeights(gguf: gguf)), try BPETokenizer(gguf: gguf, pretokenizer: ggufPretokenizer))
    }

    /// The byte-level tokenizer's size: the smallest vocabulary a tiny model can have.
    public static let tinyMinimumVocabulary = 256 + BPETokenizer.ByteLevelSpecial.all.count

    /// The tokenizer that goes with a model source: the GGUF's own, the HF folder's tokenizer.json, or
    /// the byte-level tokenizer for tiny models (`BPETokenizer.byteLevel()`).
    public static func tokenizer(_ source: ModelSource) throws -> BPETokenizer {
        switch source {
        case .gguf(let path): return try BPETokenizer(gguf: try GGUFFile(path: path))
        case .huggingFace(let directory): return try BPETokenizer(huggingFaceDirectory: URL(fileURLWithPath: directory))
        case .tiny: return try BPETokenizer.byteLevel()
        }
    }

    /// The configuration of a tiny model. Its vocabulary must hold the byte-level tokenizer's 259 tokens:
    /// a smaller `vocab` (the recipe default is 256, the byte count) is raised to 259; a larger one adds
    /// rows no token uses. Head size = hidden / heads; positions = `maxLength` (the longest sequence).
    public static func tinyConfig(_ options: ResolvedOptions, maxLength: Int) -> LlamaConfig {
        let hidden = options.int("hidden") ?? 64, heads = options.int("heads") ?? 4
        let eos = 256
        return LlamaConfig(layers: options.int("layers") ?? 2, hidden: hidden, heads: heads,
                           kvHeads: options.int("kv_heads") ?? 2, headDim: hidden / max(1, heads),
                           intermediate: options.int("intermediate") ?? 128,
                           vocab: max(options.int("vocab") ?? 256, tinyMinimumVocabulary), rmsEps: 1e-5,
                           ropeTheta: 10_000, maxPositions: max(1, maxLength), tiedEmbeddings: true,
                           bosTokenId: nil, eosTokenId: eos, padTokenId: eos)
    }

    /// A model as the source describes it: weights from the file, or seeded random weights for tiny ones.
    /// Each call loads new storage, so a reference loaded this way never shares memory with the policy.
    public static func model(_ source: ModelSource, maxLength: Int) throws -> LlamaModel {
        switch source {
        case .gguf(let path): return try LlamaModel(weights: ModelWeights(ggufPath: path))
        case .huggingFace(let directory): return try LlamaModel(weights: ModelWeights(path: directory))
        case .tiny(let options):
            let config = tinyConfig(options, maxLength: maxLength)
            try config.validate(source: "model.tiny")
            return try LlamaModel(randomWithConfig: config, seed: UInt64(options.int("seed") ?? 0))
        }
    }

    /// The model `reference.path` names, if set, else the policy's source.
    public static func referenceSource(_ recipe: Recipe) -> ModelSource {
        guard let path = recipe.reference.string("path") else { return recipe.model }
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        return isDirectory.boolValue ? .huggingFace(directory: path) : .gguf(path: path)
    }

    /// Copies the tensors of a safetensors file into `parameters` in place, by name. Every parameter must
    /// be present as F32 with its shape; nothing is written unless all are.
    public static func load(_ parameters: Parameters, from url: URL) throws {
        let file = try SafeTensorsFile(path: url.path)
        var sources: [(Tensor, SafeTensorInfo)] = []
        for entry in parameters {
            guard let info = file.tensor(named: entry.name) else {
                throw ModelFormatError(source: url.path, message: "no tensor '\(entry.name)'; expected every parameter of the model")
            }
            guard info.dtype == .f32, info.shape == entry.tensor.shape else {
                throw ModelFormatError(source: url.path, message: "tensor '\(entry.name)' is \(info.dtype.rawValue) \(info.shape); expected F32 \(entry.tensor.shape)")
            }
            sources.append((entry.tensor, info))
        }
        for (tensor, info) in sources {
            let bytes = file.data(of: info)
            UnsafeMutableRawPointer(tensor.pointer).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
    }
}
