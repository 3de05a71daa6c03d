import Foundation
import XCTest
import KeelRuntime
@testable import KeelModels

/// The families' checkpoints beyond the forward parity of `FamilyParityTests`: export back to the same
/// Hugging Face layout, prompt-shared pairs with sliding windows, and KV-cached decoding past the window.
final class FamilyModelTests: XCTestCase {
    static let families = ["llama3", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi3"]

    /// Saved and reloaded, each model has the same config and the same log-probs; Phi-3 is stored with its
    /// fused `qkv_proj` / `gate_up_proj` as its own checkpoints are, and the tensor names equal the source's.
    func testExportKeepsTheFamilysLayoutAndLogProbs() throws {
        for name in Self.families {
            let (directory, fixture) = try FamilyParityTests.load(name)
            let model = try LlamaModel(weights: ModelWeights(huggingFaceDirectory: directory))
            let out = try ModelFixtures.temporaryDirectory("export-\(name)")
            defer { try? FileManager.default.removeItem(at: out) }
            try model.weights().saveHuggingFace(to: out)
            let source = try SafeTensorsFile(path: directory.appendingPathComponent("model.safetensors").path)
            let written = try SafeTensorsFile(path: out.appendingPathComponent("model.safetensors").path)
            XCTAssertEqual(Set(written.tensors.map(\.name)), Set(source.tensors.map(\.name)), name)
            let reloaded = try LlamaModel(weights: ModelWeights(huggingFaceDirectory: out))
            XCTAssertEqual(reloaded.config, model.config, name)
            let batch = FamilyParityTests.batch(fixture)
            let before = withNoGrad { model.targetLogProbs(batch).toArray() }
            let after = withNoGrad { reloaded.targetLogProbs(batch).toArray() }
            XCTAssertEqual(before, after, name)
        }
    }

    /// Prompt-shared pairs on sliding-window models: the window is counted in each sequence's own
    /// positions, so the packed row's log-probs and gradients equal the unshared batch's. Prompts and
    /// completions longer than Mistral's and Gemma's window of 24 make it bite.
    func testSharedPromptPairsEqualTheUnsharedBatchUnderSlidingWindows() throws {
        for name in ["mistral", "gemma2", "gemma3"] {
            let (directory, fixture) = try FamilyParityTests.load(name)
            let ids = fixture.input_ids[0]
            let pairs = [(prompt: Array(ids[0..<30]), chosen: Array(ids[30..<60]), rejected: Array(ids[60..<80])),
                         (prompt: Array(ids[5..<12]), chosen: Array(ids[40..<75]), rejected: Array(ids[12..<40]))]
            func run(_ body: (LlamaModel) -> Tensor) throws -> (values: [Float], gradients: [[Float]]) {
                let model = try LlamaModel(weights: ModelWeights(huggingFaceDirectory: directory))
                let logProbs = body(model)
                logProbs.sum().backward()
                return (logProbs.toArray(), model.parameters.map { $0.tensor.grad!.toArray() })
            }
            let shared = try run { $0.sequenceLogProbs(SharedPromptPairBatch(pairs, padID: 0)).logProbs }
            let unshared = try run { model in
                model.sequenceLogProbs(SequenceBatch(pairs.map { PromptCompletionTokens(prompt: $0.prompt, completion: $0.chosen) }
                                                     + pairs.map { PromptCompletionTokens(prompt: $0.prompt, completion: $0.rejected) },
                                                     padID: 0)).logProbs
            }
            for (a, b) in zip(shared.values, unshared.values) { XCTAssertEqual(a, b, accuracy: 2e-3, name) }
            for (g, h) in zip(shared.gradients, unshared.gradients) {
                let scale = h.map(abs).max() ?? 1
                for (a, b) in zip(g, h) { XCTAssertEqual(a, b, accuracy: 1e-3 * max(1, scale), name) }
            }
        }
    }

    /// Token-by-token decoding through the KV cache gives the full forward's logits at every position,
    /// far past the sliding window (soft-capped scores and logits for Gemma 2).
    func testCachedDecodingMatchesTheFullForwardPastTheWindow() throws {
        for name in ["mistral", "gemma2", "gemma3"] {
            let (directory, fixture) = try FamilyParityTests.load(name)
            let model = try LlamaModel(weights: ModelWeights(huggingFaceDirectory: directory))
            let ids = fixture.input_ids[0]
            let full = model.logits(SequenceBatch([PromptCompletionTokens(prompt: ids, completion: [])], padID: 0)).toArray()
            let V = model.config.vocab, cache = model.makeKVCache()
            var logits = try model.decode(Array(ids[0..<10]), cache: cache).toArray()
            for t in 10..<ids.count {
                let expected = Array(full[(t - 1) * V..<t * V])
                for (a, b) in zip(logits, expected) { XCTAssertEqual(a, b, accuracy: 1e-3, "\(name) position \(t - 1)") }
                logits = try model.decode([ids[t]], cache: cache).toArray()
            }
        }
    }
}
