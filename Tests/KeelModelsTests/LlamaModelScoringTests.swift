import Foundation
import XCTest
@testable import KeelModels

/// `keel score`'s model path (joint tokenisation of prompt + completion, length-sorted no-grad batches)
/// on the 8 HH pairs of ../shared/fixtures/smollm2_hh8_dpo.json, against PyTorch's fp64 log-probs.
/// The fixture's prompt/completion strings are the HH split of the first 8 lines of
/// ../shared/data/hh-harmless-1800.jsonl (the same split as KeelCore's `HHSource`), and its ids come
/// from transformers' GGUF loader, which pre-tokenises with the plain GPT-2 regex: hence `.gpt2`.
final class LlamaModelScoringTests: XCTestCase {
    struct Fixture: Decodable {
        struct Pair: Decodable {
            let prompt: String, completion_chosen: String, completion_rejected: String
            let n_prompt: Int, ids_chosen: [Int], ids_rejected: [Int]
        }
        struct Block: Decodable { let logp_chosen: [Double]; let logp_rejected: [Double] }
        let pairs: [Pair]; let fp64: Block
    }

    func testScoresOfFixturePairsMatchPyTorch() throws {
        let root = LlamaParityTests.repoRoot
        let modelPath = root.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: modelPath) else {
            return XCTFail("\(modelPath) is missing: run scripts/setup.sh")
        }
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: root.appendingPathComponent("../shared/fixtures/smollm2_hh8_dpo.json")))
        let gguf = try GGUFFile(path: modelPath)
        let tokenizer = try BPETokenizer(gguf: gguf, pretokenizer: .gpt2)
        let model = try LlamaModel(weights: ModelWeights(gguf: gguf))

        var sequences: [PromptCompletionTokens] = []
        for (i, pair) in fixture.pairs.enumerated() {
            let chosen = try tokenizer.encode(prompt: pair.prompt, completion: pair.completion_chosen)
            let rejected = try tokenizer.encode(prompt: pair.prompt, completion: pair.completion_rejected)
            XCTAssertEqual(chosen.prompt + chosen.completion, pair.ids_chosen, "ids of chosen \(i)")
            XCTAssertEqual(rejected.prompt + rejected.completion, pair.ids_rejected, "ids of rejected \(i)")
            XCTAssertEqual(chosen.prompt.count, pair.n_prompt, "prompt length of pair \(i)")
            sequences += [chosen, rejected]
        }
        // A small budget forces several batches of different lengths; order must be restored.
        let scores = model.scoreCompletions(sequences, tokenBudget: 1500)
        for i in fixture.pairs.indices {
            XCTAssertEqual(scores[2 * i].logProb, fixture.fp64.logp_chosen[i], accuracy: 2e-3, "chosen \(i)")
            XCTAssertEqual(scores[2 * i + 1].logProb, fixture.fp64.logp_rejected[i], accuracy: 2e-3, "rejected \(i)")
            XCTAssertEqual(scores[2 * i].tokens, fixture.pairs[i].ids_chosen.count - fixture.pairs[i].n_prompt)
            XCTAssertEqual(scores[2 * i + 1].tokens, fixture.pairs[i].ids_rejected.count - fixture.pairs[i].n_prompt)
        }
    }
}
