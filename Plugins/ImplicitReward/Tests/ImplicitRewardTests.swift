import Foundation
import KeelCore
import XCTest
@testable import ImplicitReward

/// `implicit` against an independent computation: each model's summed log-probs of the response tokens
/// and EOS after the prompt (`scoreCompletions`, in Double), r = β·(log π − log πref).
final class ImplicitRewardTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-implicit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try FileManager.default.removeItem(at: folder) }

    /// A tiny random model (byte-level tokenizer) saved as a Hugging Face folder.
    func saveTinyModel(_ name: String, seed: UInt64, vocab: Int = ModelLoading.tinyMinimumVocabulary) throws -> (path: String, model: LlamaModel) {
        let config = LlamaConfig(layers: 2, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, intermediate: 48, vocab: vocab,
                                 rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 128, tiedEmbeddings: true, eosTokenId: 256, padTokenId: 256)
        let model = try LlamaModel(randomWithConfig: config, seed: seed)
        let directory = folder.appendingPathComponent(name)
        try TrainingRun.export(model, tokenizer: try BPETokenizer.byteLevel(), to: directory)
        return (directory.path, model)
    }

    func plugin(_ values: [String: OptionValue]) throws -> ImplicitReward {
        try ImplicitReward(options: ResolvedOptions(defaultsOf: ImplicitReward.descriptor.options.map { spec in
            values[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        }))
    }

    func testRewardIsBetaTimesTheLogRatioOfTheResponseAndEOS() throws {
        let policy = try saveTinyModel("policy", seed: 1), reference = try saveTinyModel("reference", seed: 2)
        let reward = try plugin(["policy": .path(policy.path), "reference": .path(reference.path), "beta": .double(0.5)])
        let tokenizer = try BPETokenizer.byteLevel()
        let prompt = "Question: what is the capital of France?\nAnswer:", responses = [" Paris.", " Lyon, I think", ""]
        for response in responses {
            let joint = try tokenizer.encode(prompt: prompt, completion: response)
            let tokens = PromptCompletionTokens(prompt: joint.prompt, completion: joint.completion + [256])
            let logRatio = policy.model.scoreCompletions([tokens])[0].logProb - reference.model.scoreCompletions([tokens])[0].logProb
            XCTAssertEqual(try reward.score(prompt: prompt, response: response), 0.5 * logRatio, accuracy: 1e-4, "response '\(response)'")
        }
        let pair = try reward.scorePair(prompt: prompt, chosen: responses[0], rejected: responses[1])
        XCTAssertEqual(pair.chosen, try reward.score(prompt: prompt, response: responses[0]), accuracy: 1e-4)
        XCTAssertEqual(pair.rejected, try reward.score(prompt: prompt, response: responses[1]), accuracy: 1e-4)
        // The same model as policy and reference: every reward is 0.
        let same = try plugin(["policy": .path(policy.path), "reference": .path(policy.path)])
        XCTAssertEqual(try same.score(prompt: prompt, response: responses[1]), 0)
    }

    func testModelsWithDifferentVocabulariesAreRefused() throws {
        let policy = try saveTinyModel("policy", seed: 1), reference = try saveTinyModel("reference", seed: 2, vocab: 300)
        XCTAssertThrowsError(try plugin(["policy": .path(policy.path), "reference": .path(reference.path)])) {
            XCTAssertTrue("\($0)".contains("vocabulary"), "\($0)")
        }
    }
}
