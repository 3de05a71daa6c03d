import Foundation
import KeelCore

/// `implicit`: the reward DPO trains into a policy (Rafailov et al. 2023, arXiv 2305.18290, §5: "your
/// language model is secretly a reward model"), read back from the trained policy and its reference:
///
///     r(x, y) = β · (log π(y|x) − log πref(y|x))      log π(y|x) = Σ over y's tokens and EOS
///
/// Both models are given by path (a GGUF file or a Hugging Face folder, e.g. a run's `export/` and the
/// model it started from) and must share a vocabulary; the policy's tokenizer reads the text, which is
/// tokenised as the trainer tokenises a completion (EOS appended, cut to `max_length`). β should be the
/// β the policy was trained with, so that rewards are on the scale its loss saw.
public final class ImplicitReward: BatchedRewardPlugin {
    public enum Option {
        public static let policy = "policy"
        public static let reference = "reference"
        public static let beta = "beta"
        public static let maxLength = "max_length"
    }

    public static let descriptor = PluginDescriptor(
        name: "implicit", kind: .reward,
        summary: "DPO's implicit reward β·(log π − log πref) of a trained policy against its reference",
        options: [
            OptionSpec(Option.policy, .path(mustExist: true), default: .required,
                       help: "the trained policy: GGUF file or Hugging Face folder (e.g. a run's export/), relative to the recipe's folder"),
            OptionSpec(Option.reference, .path(mustExist: true), default: .required,
                       help: "the policy's reference (usually the model it started from): GGUF file or Hugging Face folder"),
            .double(Option.beta, 0.1, in: .positive, "β: the scale of the log-ratio (the β the policy was trained with)"),
            .int(Option.maxLength, 1024, in: .atLeast(2), "tokens of prompt + response + EOS; longer ones keep the prompt's end and the response's start"),
        ])

    public let policy: LlamaModel
    public let reference: LlamaModel
    public let beta: Double
    let tokenizer: PairTokenizer
    let maxLength: Int

    public init(options: ResolvedOptions) throws {
        let policyPath = options.string(Option.policy) ?? "", referencePath = options.string(Option.reference) ?? ""
        let loaded = try ModelLoading.pretrained(at: policyPath)
        policy = loaded.model
        reference = try ModelLoading.pretrained(at: referencePath).model
        guard reference.config.vocab == policy.config.vocab else {
            throw PluginInputError("implicit: the reference \(referencePath) has a vocabulary of \(reference.config.vocab) tokens, the policy "
                                 + "\(policyPath) \(policy.config.vocab); expected the same tokenizer for both")
        }
        tokenizer = try PairTokenizer(tokenizer: loaded.tokenizer)
        beta = options.double(Option.beta) ?? 0.1
        maxLength = min(options.int(Option.maxLength) ?? 1024, policy.config.maxPositions, reference.config.maxPositions)
    }

    /// The rewards of several responses, one forward pass per model, without gradients.
    public func scores(_ items: [(prompt: String, response: String)]) -> [Double] {
        let batch = SequenceBatch(items.map { tokenizer.sequence(prompt: $0.prompt, response: $0.response, maxLength: maxLength) },
                                  padID: tokenizer.padID)
        let (policyLogps, referenceLogps) = withNoGrad {
            (policy.sequenceLogProbs(batch).logProbs.toArray(), reference.sequenceLogProbs(batch).logProbs.toArray())
        }
        return zip(policyLogps, referenceLogps).map { beta * (Double($0) - Double($1)) }
    }
}
