import Foundation
import XCTest
@testable import KeelModels

/// The reward model's path through the backbone: `hiddenStates` (the final-norm output gathered at given
/// rows, forward and backward) and `LlamaRewardModel` (a [1, C] head on it, saved and loaded in Hugging
/// Face's LlamaForSequenceClassification layout).
final class LlamaRewardModelTests: XCTestCase {
    static let config = LlamaConfig(layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24, vocab: 32,
                                    rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 16, tiedEmbeddings: true, eosTokenId: 3)
    static let batch = SequenceBatch([PromptCompletionTokens(prompt: [1, 4], completion: [7, 9, 3]),
                                      PromptCompletionTokens(prompt: [2], completion: [5, 6, 8, 11, 30, 3]),
                                      PromptCompletionTokens(prompt: [12, 13, 14], completion: [3])], padID: 0)

    func rewardModel(seed: UInt64) throws -> LlamaRewardModel {
        var generator = Philox(seed: seed + 100)
        return try LlamaRewardModel(backbone: try LlamaModel(randomWithConfig: Self.config, seed: seed),
                                    score: LlamaRewardModel.initialScore(hidden: Self.config.hidden, generator: &generator))
    }

    /// The gathered rows are the rows the LM head reads: hidden · lm_headᵀ at each row's last token equals
    /// the model's own last-position logits.
    func testLastHiddenStatesAreWhatTheLMHeadReads() throws {
        let model = try LlamaModel(randomWithConfig: Self.config, seed: 1)
        XCTAssertEqual(Self.batch.lastPositions, [4, 7 + 6, 14 + 3])
        let hidden = withNoGrad { model.lastHiddenStates(Self.batch) }.toArray()
        let logits = model.lastLogits(Self.batch).toArray()
        let embedding = try XCTUnwrap(model.parameters[LlamaTensorName.embedTokens]).toArray()
        let (C, V) = (Self.config.hidden, Self.config.vocab)
        for b in 0..<3 {
            for v in 0..<V {
                let dot = (0..<C).reduce(0.0) { $0 + Double(hidden[b * C + $1]) * Double(embedding[v * C + $1]) }
                XCTAssertEqual(Double(logits[b * V + v]), dot, accuracy: 1e-4, "row \(b) token \(v)")
            }
        }
    }

    /// r = score·h in Double, and the gradient of L = Σ_b u_b·r_b: w.r.t. the head exactly (Σ_b u_b·h_b),
    /// w.r.t. backbone tensors (embedding, a projection, the final norm) against central differences
    /// along a random direction.
    func testRewardsAndTheirGradientMatchIndependentComputations() throws {
        let model = try rewardModel(seed: 2)
        let u: [Float] = [0.7, -1.3, 0.4]
        let C = Self.config.hidden
        func objective() -> Double {
            withNoGrad { zip(model.rewards(Self.batch).toArray(), u).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }
        }

        let hidden = withNoGrad { model.backbone.lastHiddenStates(Self.batch) }.toArray()
        let score = model.score.toArray()
        let rewards = withNoGrad { model.rewards(Self.batch) }.toArray()
        for b in 0..<3 {
            let want = (0..<C).reduce(0.0) { $0 + Double(hidden[b * C + $1]) * Double(score[$1]) }
            XCTAssertEqual(Double(rewards[b]), want, accuracy: 1e-6, "r of row \(b)")
        }

        model.score.requiresGrad = true
        (model.rewards(Self.batch) * Tensor(u)).sum().backward()
        let scoreGradient = try XCTUnwrap(model.score.grad).toArray()
        for c in 0..<C {
            let want = (0..<3).reduce(0.0) { $0 + Double(u[$1]) * Double(hidden[$1 * C + c]) }
            XCTAssertEqual(Double(scoreGradient[c]), want, accuracy: 1e-5, "∂L/∂score[\(c)]")
        }

        var generator = Philox(seed: 9)
        for name in [LlamaTensorName.embedTokens, LlamaTensorName.layer(1, .qProj), LlamaTensorName.layer(0, .downProj), LlamaTensorName.finalNorm] {
            let tensor = try XCTUnwrap(model.backbone.parameters[name])
            let gradient = try XCTUnwrap(tensor.grad, name).toArray()
            let direction = Tensor.randomNormal(tensor.shape, generator: &generator).toArray()
            let analytic = zip(gradient, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let original = tensor.toArray()
            // Small against the weights (std 0.02): RMSNorm makes the objective strongly curved at larger steps.
            let epsilon: Float = 5e-4
            func shifted(_ sign: Float) -> Double {
                for i in 0..<tensor.count { tensor.pointer[i] = original[i] + sign * epsilon * direction[i] }
                return objective()
            }
            let numeric = (shifted(1) - shifted(-1)) / Double(2 * epsilon)
            for i in 0..<tensor.count { tensor.pointer[i] = original[i] }
            XCTAssertEqual(analytic, numeric, accuracy: 2e-2 * max(1, abs(numeric)), "directional derivative along \(name)")
        }
    }

    /// Saved and loaded as a Hugging Face LlamaForSequenceClassification folder: the same rewards, the
    /// architecture and one label in config.json, score.weight beside the backbone's tensors.
    func testSavedFolderLoadsBackWithTheSameRewards() throws {
        let model = try rewardModel(seed: 3)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-rm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try model.save(to: directory)

        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForSequenceClassification"])
        XCTAssertEqual((config["id2label"] as? [String: String])?.count, 1)
        let file = try SafeTensorsFile(path: directory.appendingPathComponent("model.safetensors").path)
        XCTAssertEqual(file.tensor(named: LlamaRewardModel.scoreWeightName)?.shape, [1, Self.config.hidden])
        XCTAssertNotNil(file.tensor(named: LlamaTensorName.embedTokens))

        let loaded = try LlamaRewardModel(huggingFaceDirectory: directory)
        XCTAssertEqual(withNoGrad { loaded.rewards(Self.batch) }.toArray(), withNoGrad { model.rewards(Self.batch) }.toArray())
        // The backbone alone still loads from the folder (the head is skipped, not refused).
        XCTAssertNoThrow(try ModelWeights(huggingFaceDirectory: directory))
    }

    func testAFolderWithoutAHeadIsRefusedNamingTheTensor() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-lm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try LlamaModel(randomWithConfig: Self.config, seed: 4).weights().saveHuggingFace(to: directory)
        XCTAssertThrowsError(try LlamaRewardModel(huggingFaceDirectory: directory)) {
            XCTAssertTrue("\($0)".contains("score.weight"), "\($0)")
        }
    }
}
