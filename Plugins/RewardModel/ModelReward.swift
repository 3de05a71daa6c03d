import Foundation
import KeelCore

/// `rm`: the reward a trained reward model gives a response, r(x, y) = score · h_L(x ⊕ y ⊕ EOS)[last]
/// (see `LlamaRewardModel`; Ouyang et al. 2022, arXiv 2203.02155). The model is a Hugging Face folder
/// in the `LlamaForSequenceClassification` layout — the `export/` of a `reward-model` run, or
/// `keel export` of one — read with its own tokenizer, so it may differ from the policy being trained.
/// The response is tokenised after the prompt exactly as the trainer tokenises a completion (EOS
/// appended, cut to `max_length`). Usable as the `reward:` of any recipe (e.g. with `var`).
public final class ModelReward: BatchedRewardPlugin {
    public enum Option {
        public static let path = "path"
        public static let maxLength = "max_length"
    }

    public static let descriptor = PluginDescriptor(
        name: "rm", kind: .reward,
        summary: "scores a response with a trained reward model (the export of a reward-model run)",
        options: [
            OptionSpec(Option.path, .path(mustExist: true), default: .required,
                       help: "reward-model folder (LlamaForSequenceClassification: config.json, model.safetensors with score.weight, tokenizer.json), relative to the recipe's folder"),
            .int(Option.maxLength, 1024, in: .atLeast(2), "tokens of prompt + response + EOS; longer ones keep the prompt's end and the response's start"),
        ])

    public let model: LlamaRewardModel
    let tokenizer: PairTokenizer
    let maxLength: Int

    public init(options: ResolvedOptions) throws {
        let directory = URL(fileURLWithPath: options.string(Option.path) ?? "")
        model = try LlamaRewardModel(huggingFaceDirectory: directory)
        tokenizer = try PairTokenizer(tokenizer: try BPETokenizer(huggingFaceDirectory: directory))
        maxLength = min(options.int(Option.maxLength) ?? 1024, model.backbone.config.maxPositions)
    }

    /// The rewards of several responses in one forward pass, without gradients.
    public func scores(_ items: [(prompt: String, response: String)]) -> [Double] {
        let sequences = items.map { tokenizer.sequence(prompt: $0.prompt, response: $0.response, maxLength: maxLength) }
        return withNoGrad { model.rewards(SequenceBatch(sequences, padID: tokenizer.padID)) }.toArray().map(Double.init)
    }
}
