import Foundation

/// A training run's memory, estimated from the model's shape and the batch before anything is
/// allocated, so that a run that cannot fit is refused with the estimate instead of aborting (or being
/// killed by the out-of-memory killer) part way through allocating.
///
/// The estimate, in fp32 bytes: the parameters 8 times over (policy weights, gradients, AdamW's two
/// moments, the checkpoint staging copy of those three, and a frozen reference when the loss has one)
/// plus one micro-batch's activations kept for the backward pass — per layer and token about
/// 8·hidden + 3·intermediate values (norms, q/k/v/o, residuals, the MLP's gate, up and product) — and the
/// logits with their gradient (2·vocab per token). A micro-batch is `batch_size` pairs of `max_length`
/// tokens, chosen and rejected (packed or not, at most 2·max_length tokens a pair). Measured against
/// it: SmolLM2-135M, 2 pairs × 256 tokens, estimate 5.4 GiB, `keel bench dpo` peak RSS 3.36 GiB; it errs
/// high, and a run is refused only when the estimate exceeds the machine's physical memory.
public struct MemoryEstimate: Equatable, CustomStringConvertible {
    public let parameters: Double
    public let bytes: Double

    public init(config: LlamaConfig, training: TrainingConfig) {
        let (h, i, v, layers) = (Double(config.hidden), Double(config.intermediate), Double(config.vocab), Double(config.layers))
        let kv = Double(config.kvHeads * config.headDim), q = Double(config.heads * config.headDim)
        let perLayer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h
        parameters = layers * perLayer + v * h * (config.tiedEmbeddings ? 1 : 2) + h
        let tokens = Double(training.batchSize) * 2 * Double(training.maxLength)
        let activations = tokens * (layers * (8 * h + 3 * i) + 2 * v)
        bytes = 4 * (8 * parameters + activations)
    }

    public var description: String {
        String(format: "about %@ (%.3g parameters; batch_size and max_length set the activations)",
               Self.format(bytes), parameters)
    }

    /// "3.1 GiB", "12 TiB".
    static func format(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var (value, unit) = (bytes, 0)
        while value >= 1024 && unit < units.count - 1 { (value, unit) = (value / 1024, unit + 1) }
        return String(format: value < 10 ? "%.1f %@" : "%.0f %@", value, units[unit])
    }

    /// "found a run that needs …; expected at most the machine's … of memory", or nil when it fits.
    public func problem(physicalMemory: Double = Double(ProcessInfo.processInfo.physicalMemory)) -> String? {
        guard bytes > physicalMemory else { return nil }
        return "found a run that needs \(self); expected at most this machine's \(Self.format(physicalMemory)) of memory "
            + "(a smaller model, batch_size or max_length)"
    }

    /// The estimate for a recipe's policy, reading only the model's configuration (a GGUF header, a
    /// config.json), never its weights.
    public static func of(_ recipe: Recipe) throws -> MemoryEstimate {
        let training = recipe.trainingConfig
        let config: LlamaConfig
        switch recipe.model {
        case .tiny(let options): config = ModelLoading.tinyConfig(options, maxLength: training.maxLength)
        case .gguf(let path): config = try LlamaConfig(gguf: GGUFFile(path: path))
        case .huggingFace(let directory): config = try LlamaConfig(huggingFaceConfigAt: URL(fileURLWithPath: directory).appendingPathComponent("config.json"))
        }
        return MemoryEstimate(config: config, training: training)
    }
}
