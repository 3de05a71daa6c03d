import Foundation
import XCTest
@testable import KeelModels

/// KV-cached generation against recomputing the whole forward (flash attention over the full prefix)
/// at every step, and the sampler against the distribution it should draw from.
final class GenerationTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A small random model with large weights (std 0.3), so that logits are spread out and greedy
    /// choices are not decided by rounding.
    private func tinyModel() throws -> LlamaModel {
        let config = LlamaConfig(layers: 2, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, intermediate: 48, vocab: 40,
                                 rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 48, tiedEmbeddings: false)
        var generator = Philox(seed: 7)
        var tensors: [String: Tensor] = [:]
        for (name, shape) in config.tensorShapes() {
            tensors[name] = shape.count == 1 ? Tensor.ones(shape) : Tensor.randomNormal(shape, std: 0.3, generator: &generator)
        }
        return try LlamaModel(weights: ModelWeights(config: config, tensors: tensors, source: "test"))
    }

    /// Greedy continuation recomputing the full forward of prompt + generated tokens at each step.
    private func greedyByFullForward(_ model: LlamaModel, prompt: [Int], steps: Int) -> (tokens: [Int], lastLogits: [[Float]]) {
        var sequence = prompt, tokens: [Int] = [], logits: [[Float]] = []
        for _ in 0..<steps {
            let batch = SequenceBatch([PromptCompletionTokens(prompt: sequence, completion: [])], padID: 0)
            let row = model.lastLogits(batch).toArray()
            let next = row.indices.max { row[$0] < row[$1] }!
            logits.append(row)
            tokens.append(next)
            sequence.append(next)
        }
        return (tokens, logits)
    }

    private func assertCachedMatchesFullForward(_ model: LlamaModel, prompt: [Int], steps: Int,
                                                file: StaticString = #filePath, line: UInt = #line) throws {
        let reference = greedyByFullForward(model, prompt: prompt, steps: steps)
        let result = try model.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: steps))
        XCTAssertEqual(result.tokens, reference.tokens, "cached greedy tokens", file: file, line: line)
        XCTAssertEqual(result.stopReason, .tokenLimit, file: file, line: line)

        // Logits of every step through the cache against the full forward's last position.
        let cache = model.makeKVCache()
        var logits = try model.decode(prompt, cache: cache).toArray()
        for step in 0..<steps {
            var worst: Float = 0
            for (a, b) in zip(logits, reference.lastLogits[step]) { worst = max(worst, abs(a - b)) }
            XCTAssertLessThan(worst, 1e-4, "step \(step): max |cached − full| logit difference", file: file, line: line)
            logits = try model.decode([reference.tokens[step]], cache: cache).toArray()
        }
        XCTAssertEqual(cache.count, prompt.count + steps, file: file, line: line)
    }

    func testCachedGreedyMatchesFullForwardOnTinyModel() throws {
        try assertCachedMatchesFullForward(try tinyModel(), prompt: [3, 17, 9, 22, 5], steps: 20)
    }

    func testCachedGreedyMatchesFullForwardOnSmolLM2() throws {
        let modelPath = Self.repoRoot.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: modelPath) else {
            return XCTFail("\(modelPath) is missing: run scripts/setup.sh")
        }
        let gguf = try GGUFFile(path: modelPath)
        let model = try LlamaModel(weights: ModelWeights(gguf: gguf))
        let tokenizer = try BPETokenizer(gguf: gguf)
        let prompt = try tokenizer.encodeChat([ChatMessage(role: .user, content: "What is the capital of France?")],
                                              addGenerationPrompt: true)
        try assertCachedMatchesFullForward(model, prompt: prompt, steps: 6)
    }

    func testGenerationStopsAtStopTokenAndRejectsBadInput() throws {
        let model = try tinyModel()
        let prompt = [3, 17, 9]
        let free = try model.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 5))
        let stop = free.tokens[2]
        let stopped = try model.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 5, stopTokenIDs: [stop]))
        let firstStop = free.tokens.firstIndex(of: stop)!
        XCTAssertEqual(stopped.tokens, Array(free.tokens[...firstStop]))
        XCTAssertEqual(stopped.stopReason, .stopToken(stop))

        let full = try model.generate(prompt: prompt, options: GenerationOptions(maxNewTokens: 100))
        XCTAssertEqual(full.stopReason, .contextFull)
        XCTAssertEqual(prompt.count + full.tokens.count, model.config.maxPositions)

        XCTAssertThrowsError(try model.generate(prompt: [3, 40], options: GenerationOptions())) { error in
            XCTAssertTrue("\(error)".contains("token id 40 at index 1"), "\(error)")
        }
        XCTAssertThrowsError(try model.generate(prompt: [], options: GenerationOptions()))
    }

    /// Sampling at temperature 1 draws each token with its softmax probability; top-p 0.6 keeps the two
    /// most likely of (0.5, 0.3, 0.2) and renormalises them to (0.625, 0.375); the same seed repeats.
    func testSamplerFollowsSoftmaxAndNucleus() {
        let logits = Tensor([0.5, 0.3, 0.2].map { Float(Foundation.log($0)) })
        func frequencies(_ options: SamplingOptions, draws: Int = 20_000) -> [Double] {
            var sampler = TokenSampler(options, seed: 11)
            var counts = [0, 0, 0]
            for _ in 0..<draws { counts[sampler.sample(logits)] += 1 }
            return counts.map { Double($0) / Double(draws) }
        }
        for (observed, expected) in zip(frequencies(SamplingOptions(temperature: 1)), [0.5, 0.3, 0.2]) {
            XCTAssertEqual(observed, expected, accuracy: 0.015)
        }
        for (observed, expected) in zip(frequencies(SamplingOptions(temperature: 1, topP: 0.6)), [0.625, 0.375, 0]) {
            XCTAssertEqual(observed, expected, accuracy: 0.015)
        }
        // Temperature sharpens: at T = 0.5 the probabilities are ∝ p², i.e. (25, 9, 4) / 38.
        for (observed, expected) in zip(frequencies(SamplingOptions(temperature: 0.5)), [25.0 / 38, 9.0 / 38, 4.0 / 38]) {
            XCTAssertEqual(observed, expected, accuracy: 0.015)
        }
        XCTAssertEqual(frequencies(.greedy, draws: 10), [1, 0, 0])
        var a = TokenSampler(SamplingOptions(temperature: 1), seed: 3), b = TokenSampler(SamplingOptions(temperature: 1), seed: 3)
        XCTAssertEqual((0..<50).map { _ in a.sample(logits) }, (0..<50).map { _ in b.sample(logits) })
    }
}

extension GenerationTests {
    /// Batched decoding (rows of different prompt lengths, each at its own position with its own cache)
    /// gives every row what generating it alone gives: the same greedy tokens, the same sampled tokens for
    /// the same seed, and rows repeating a prompt (a copied cache) independent of each other.
    func testBatchedGenerationMatchesOneSequenceAtATime() throws {
        let model = try tinyModel()
        let prompts = [[3, 17, 9, 22, 5], [8], [3, 17, 9, 22, 5], [30, 2, 11]]
        let greedy = GenerationOptions(maxNewTokens: 12, stopTokenIDs: [39])
        let batched = try model.generateBatch(prompts: prompts, options: greedy, seeds: [0, 0, 0, 0])
        for (prompt, result) in zip(prompts, batched) {
            XCTAssertEqual(result, try model.generate(prompt: prompt, options: greedy), "\(prompt)")
        }
        var sampling = GenerationOptions(maxNewTokens: 12, stopTokenIDs: [39], sampling: SamplingOptions(temperature: 1.0, topP: 0.9))
        let seeds: [UInt64] = [11, 12, 13, 14]
        let sampled = try model.generateBatch(prompts: prompts, options: sampling, seeds: seeds)
        for (b, result) in sampled.enumerated() {
            sampling.seed = seeds[b]
            XCTAssertEqual(result, try model.generate(prompt: prompts[b], options: sampling), "row \(b)")
        }
        XCTAssertNotEqual(sampled[0].tokens, sampled[2].tokens, "same prompt, different seeds")
        XCTAssertThrowsError(try model.generateBatch(prompts: prompts, options: greedy, seeds: [1]))
    }
}
