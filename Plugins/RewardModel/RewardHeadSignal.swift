import Foundation
import KeelCore

/// The reward model's head as a signal: a scalar head `score.weight` [1, C] on the policy's final hidden
/// state at each sequence's last token (`last-hidden-states`), r(x, y) = score · h_L(x ⊕ y)[last]. The
/// head is created before training from its own sub-stream of `training.seed`, N(0, 0.02²) as
/// transformers initialises one, and added to the run's trainable parameters under `score.weight`: the
/// optimizer updates it with the backbone, checkpoints store it, and the run's export (and `keel export`)
/// is a Hugging Face `LlamaForSequenceClassification` (`LlamaRewardModel`).
public final class RewardHeadSignal: SignalProvider {
    /// r of the chosen and the rejected completion of each pair, [B] each; differentiable through the
    /// head and the backbone.
    public static let scores = Signal<PairedTensors>("reward-head")
    /// The `training.seed` sub-stream of the head's initial weights.
    static let seedStream: UInt64 = 17

    public static let descriptor = PluginDescriptor(
        name: "reward-head", kind: .signal, summary: "a trainable scalar head on the last hidden state: r = score·h",
        provides: [ProvidedSignal(scores.key, needs: [Signals.lastHiddenStates.key], "r(x, y) of the chosen and the rejected completion")])

    private var score: Tensor?

    public init(options: ResolvedOptions) throws {}

    public func prepare(_ run: SignalRun) throws {
        var generator = Philox(seed: run.seed).split(Self.seedStream)
        let score = LlamaRewardModel.initialScore(hidden: run.policy.config.hidden, generator: &generator)
        try run.addTrainable(LlamaRewardModel.scoreWeightName, score)
        self.score = score
    }

    /// The run's model is a reward model: the backbone and the trained head, as `LlamaRewardModel` saves it.
    public func exportModel(_ policy: LlamaModel, parameters: [String: Tensor], to directory: URL) throws -> Bool {
        guard let score = parameters[LlamaRewardModel.scoreWeightName] else {
            throw PluginInputError("\(Self.descriptor.name): no trained '\(LlamaRewardModel.scoreWeightName)' to export")
        }
        try LlamaRewardModel(backbone: policy, score: score).save(to: directory)
        return true
    }

    public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
        guard let score else { throw PluginInputError("\(Self.descriptor.name): no head yet; expected prepare(_:) before the first batch") }
        let hidden = try values[Signals.lastHiddenStates]
        let pairs = batch.pairs.count
        guard hidden.shape == [2 * pairs, score.shape[1]] else {
            throw PluginInputError("\(Self.descriptor.name): last hidden states of shape \(hidden.shape); expected [\(2 * pairs), \(score.shape[1])]")
        }
        let rewards = hidden.matmul(score, transposeB: true).reshaped([2 * pairs])
        values.set(Self.scores, PairedTensors(chosen: rewards.rows(0..<pairs), rejected: rewards.rows(pairs..<2 * pairs)))
    }
}
