import Foundation

/// A reward model in Hugging Face's `LlamaForSequenceClassification` layout with one label: a LLaMA
/// backbone and a bias-free linear head `score.weight` [1, C] on its final hidden state (after the final
/// RMSNorm) at each sequence's last token (Ouyang et al. 2022, §3.5; TRL's `RewardTrainer`):
///
///     r(x, y) = score · h_L(x ⊕ y)[last]          h: [B, C] → r: [B]
///
/// The LM head is never evaluated. Saved as a Hugging Face folder: the backbone's tensors under their
/// `model.*` names plus `score.weight`, and a config.json whose architecture is
/// `LlamaForSequenceClassification`, so `transformers.AutoModelForSequenceClassification` loads it.
public final class LlamaRewardModel {
    public static let scoreWeightName = "score.weight"

    public let backbone: LlamaModel
    /// [1, C]
    public let score: Tensor

    public init(backbone: LlamaModel, score: Tensor) throws {
        guard score.shape == [1, backbone.config.hidden] else {
            throw ModelFormatError(source: Self.scoreWeightName, message: "shape \(score.shape); expected [1, \(backbone.config.hidden)]")
        }
        self.backbone = backbone
        self.score = score
    }

    /// A fresh head as transformers initialises one (`initializer_range` 0.02): N(0, 0.02²), from `generator`.
    public static func initialScore(hidden: Int, generator: inout Philox) -> Tensor {
        Tensor.randomNormal([1, hidden], std: 0.02, generator: &generator)
    }

    /// Loads a folder written by `save(to:)` (or by transformers for a one-label LLaMA classifier).
    public convenience init(huggingFaceDirectory directory: URL) throws {
        let backbone = try LlamaModel(weights: ModelWeights(huggingFaceDirectory: directory))
        var score: Tensor?
        for shard in try ModelWeights.safetensorsShards(in: directory) {
            let file = try SafeTensorsFile(path: directory.appendingPathComponent(shard).path)
            if file.tensor(named: Self.scoreWeightName) != nil { score = try file.load(Self.scoreWeightName) }
        }
        guard let score else {
            throw ModelFormatError(source: directory.path, message: "no tensor '\(Self.scoreWeightName)'; expected a reward model "
                                   + "(LlamaForSequenceClassification, e.g. the export of a `reward-model` run)")
        }
        try self.init(backbone: backbone, score: score)
    }

    /// [B] r of each row at its last real token. Differentiable with respect to the backbone's
    /// parameters and `score` when grad mode is on.
    public func rewards(_ batch: SequenceBatch) -> Tensor {
        backbone.lastHiddenStates(batch).matmul(score, transposeB: true).reshaped([batch.rows])
    }

    /// The reward of each sequence (prompt + completion as given: append EOS beforehand to score as the
    /// trainer does), in `sequences`' order, without gradients, in length-packed batches.
    public func scoreSequences(_ sequences: [PromptCompletionTokens], padID: Int, tokenBudget: Int = 4096) -> [Double] {
        var scores = [Double](repeating: 0, count: sequences.count)
        for members in lengthPackedBatches(sequences, tokenBudget: tokenBudget) {
            let values = withNoGrad { rewards(SequenceBatch(members.map { sequences[$0] }, padID: padID)) }.toArray()
            for (row, index) in members.enumerated() { scores[index] = Double(values[row]) }
        }
        return scores
    }

    /// Whether `path` is a Hugging Face folder whose config.json names `LlamaForSequenceClassification`.
    public static func isRewardModelFolder(_ path: String) -> Bool {
        let url = URL(fileURLWithPath: path).appendingPathComponent(ModelWeights.configFileName)
        guard let data = try? Data(contentsOf: url),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
        return (json["architectures"] as? [String])?.contains("LlamaForSequenceClassification") ?? false
    }

    /// Writes the Hugging Face folder (see the type's documentation); `extraFiles` as in `ModelWeights.saveHuggingFace`.
    public func save(to directory: URL, extraFiles: [String: Data] = [:]) throws {
        try backbone.weights().saveHuggingFace(to: directory, extraFiles: extraFiles, scoreHead: score.detached())
    }
}
