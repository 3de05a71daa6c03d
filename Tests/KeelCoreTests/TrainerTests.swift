import Foundation
import XCTest
@testable import KeelCore

/// Sigmoid DPO written out in the test (the `dpo` plugin lives in Plugins/DPO, which KeelCoreTests does
/// not link): −mean log σ(β·[(π_c − ref_c) − (π_r − ref_r)]), differentiable through runtime ops.
final class TrainerTestDPOLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "trainer-test-dpo", kind: .loss, summary: "test: sigmoid DPO",
        options: [.double("beta", 0.1, in: .positive, "β")],
        capabilities: [.pairwiseLoss], needs: [Signals.policyLogProbs.key, Signals.referenceLogProbs.key], consumes: [.paired],
        metrics: ["rewards/accuracies"])
    let beta: Float
    init(options: ResolvedOptions) { beta = Float(options.double("beta") ?? 0.1) }
    func loss(_ input: LossInput) throws -> LossOutput {
        let (policy, reference) = (try input[Signals.policyLogProbs], try input[Signals.referenceLogProbs])
        let h = (policy.chosen.logProbs - reference.chosen.logProbs) - (policy.rejected.logProbs - reference.rejected.logProbs)
        let accuracy = h.toArray().map { $0 > 0 ? 1.0 : 0.0 }.reduce(0, +) / Double(h.count)
        return LossOutput(loss: -(h * beta).logSigmoid().mean(), metrics: ["rewards/accuracies": accuracy])
    }
}

/// Keeps what the trainer reports, in memory.
final class RecordingObserver: TrainingObserver {
    var metrics: [(step: Int, split: MetricSplit, values: [String: Double])] = []
    var checkpointSteps: [Int] = []
    func record(step: Int, split: MetricSplit, metrics: [String: Double]) throws { self.metrics.append((step, split, metrics)) }
    func checkpoint(_ trainer: Trainer) throws { checkpointSteps.append(trainer.step) }
}

final class TrainerTests: XCTestCase {
    func testByteLevelTokenizerHasOneTokenPerByteAndTheChatSpecials() throws {
        let tokenizer = try BPETokenizer.byteLevel()
        XCTAssertEqual(tokenizer.vocabularySize, 259)
        let text = "héllo\n\u{0}€"
        XCTAssertEqual(tokenizer.encode(text), Array(text.utf8).map(Int.init))
        XCTAssertEqual(try tokenizer.decode(tokenizer.encode(text)), text)
        XCTAssertEqual(tokenizer.encode("<|im_start|>a<|im_end|><|endoftext|>", allowSpecial: true), [257, 97, 258, 256])
        XCTAssertEqual(tokenizer.eosTokenID, 256)
        XCTAssertEqual(tokenizer.paddingTokenID, 256)
        XCTAssertEqual(try tokenizer.chatTemplate(), ChatMLTemplate(defaultSystemPrompt: nil))
    }

    func testTextPairsAreTokenisedJointlyWithEOSAppended() throws {
        let tokenizer = try PairTokenizer(tokenizer: BPETokenizer.byteLevel())
        let pair = PreferencePair(id: "p", prompt: .text("Q:"), chosen: .text(" A"), rejected: .text(""))
        let (pairs, report) = try tokenizer.tokenize([.pair(pair)], node: "t")
        XCTAssertEqual(pairs, [TokenizedPair(id: "p", prompt: [81, 58], chosen: [32, 65, 256], rejected: [256])])
        XCTAssertEqual(report.produced, 1)
    }

    func testConversationalPairsUseTheChatTemplate() throws {
        let tokenizer = try PairTokenizer(tokenizer: BPETokenizer.byteLevel())
        let pair = PreferencePair(id: "c", prompt: .messages([ChatMessage(role: "user", content: "hi")]),
                                  chosen: .messages([ChatMessage(role: "assistant", content: "yo")]),
                                  rejected: .messages([ChatMessage(role: "assistant", content: "no")]))
        let tokens = try XCTUnwrap(try tokenizer.tokenize([.pair(pair)], node: "t").pairs.first)
        func bytes(_ s: String) -> [Int] { Array(s.utf8).map(Int.init) }
        XCTAssertEqual(tokens.prompt, [257] + bytes("user\nhi") + [258] + bytes("\n") + [257] + bytes("assistant\n"))
        XCTAssertEqual(tokens.chosen, bytes("yo") + [258] + bytes("\n") + [256])
        XCTAssertEqual(tokens.rejected, bytes("no") + [258] + bytes("\n") + [256])
    }

    func testPairsWhosePromptIsNotATokenPrefixAreSkippedAndCounted() throws {
        // One merge "a b": "a" + "b" tokenise jointly as "ab", so the prompt "a" is not a token prefix.
        let bytes = (0..<256).map { BPETokenizer.gpt2ByteSpelling(UInt8($0)) }
        let bpe = try BPETokenizer(tokens: bytes + ["ab", "<|endoftext|>"], merges: ["a b"],
                                   tokenTypes: [TokenType](repeating: .normal, count: 257) + [.control], pretokenizer: .gpt2,
                                   bosTokenID: nil, eosTokenID: 257, unknownTokenID: nil, paddingTokenID: nil)
        let crossing = PreferencePair(id: "x", prompt: .text("a"), chosen: .text("b"), rejected: .text(" c"))
        let clean = PreferencePair(id: "y", prompt: .text("a"), chosen: .text(" b"), rejected: .text(" c"))
        let (pairs, report) = try PairTokenizer(tokenizer: bpe).tokenize([.pair(crossing), .pair(clean)], node: "t")
        XCTAssertEqual(pairs.map(\.id), ["y"])
        XCTAssertEqual(report.skipped, [PairTokenizer.SkipCause.promptPrefixMismatch: 1])
    }

    func testTruncationKeepsThePromptEndAndTheCompletionsStart() {
        // Long completions: the prompt keeps max(12 − 8, 12 / 2) = 6 tokens (its end), completions 12 − 6.
        var long = TokenizedPair(id: "l", prompt: Array(0..<10), chosen: Array(100..<108), rejected: Array(200..<203))
        XCTAssertTrue(PairTokenizer.truncate(&long, maxLength: 12))
        XCTAssertEqual(long, TokenizedPair(id: "l", prompt: Array(4..<10), chosen: Array(100..<106), rejected: Array(200..<203)))
        // Short completions: they stay whole and the prompt gives up its beginning (8 − 2 = 6 tokens kept).
        var short = TokenizedPair(id: "s", prompt: Array(0..<10), chosen: [100, 101], rejected: [200])
        XCTAssertTrue(PairTokenizer.truncate(&short, maxLength: 8))
        XCTAssertEqual(short, TokenizedPair(id: "s", prompt: Array(4..<10), chosen: [100, 101], rejected: [200]))
        var fits = TokenizedPair(id: "f", prompt: [1, 2], chosen: [3], rejected: [4, 5])
        XCTAssertFalse(PairTokenizer.truncate(&fits, maxLength: 4))
        XCTAssertEqual(fits.prompt, [1, 2])
    }

    func testSyntheticPreferencesAreDeterministicAndPreferTheCorrectAnswer() throws {
        func generate(seed: Int) throws -> [PreferencePair] {
            let fixture = try RecipeFixture()
            let graph = try fixture.load("""
                model: {tiny: {}}
                data: [{name: synthetic-preferences, count: 50, seed: \(seed)}]
                loss: {name: test-pairwise}
                training: {steps: 1}
                """)
            return try graph.instantiate().loadData(seed: 0).train.map { example in
                guard case .pair(let pair) = example else { throw PluginInputError("not a pair") }
                return pair
            }
        }
        let pairs = try generate(seed: 3)
        XCTAssertEqual(pairs.count, 50)
        XCTAssertEqual(pairs, try generate(seed: 3))
        XCTAssertNotEqual(pairs, try generate(seed: 4))
        for pair in pairs {
            guard case .text(let prompt) = pair.prompt, case .text(let chosen) = pair.chosen else { return XCTFail("text pairs expected") }
            XCTAssertNotEqual(pair.chosen, pair.rejected)
            if let (_, capital) = SyntheticPreferencesSource.capitals.first(where: { prompt.contains(" \($0.0)") }) {
                XCTAssertEqual(chosen, " \(capital).", prompt)
            }
        }
    }

    /// `training.share_prompt` (on by default) packs each pair's prompt once; switched off, chosen and
    /// rejected are separate rows. Both must train the same run up to float summation order, with the
    /// reference log-probs computed live and cached.
    func testSharedAndSeparatePromptsTrainTheSameRun() throws {
        func train(sharePrompt: Bool, cache: Bool) throws -> (metrics: [[String: Double]], weights: [Float]) {
            let fixture = try RecipeFixture()
            var registry = testRegistry()
            try registry.register(TrainerTestDPOLoss.self)
            let graph = try fixture.load("""
                model: {tiny: {layers: 2, hidden: 32, heads: 4, kv_heads: 2, intermediate: 48, vocab: 259, seed: 1}}
                data: [{name: synthetic-preferences, count: 24, seed: 0}]
                reference: {cache_logprobs: \(cache)}
                loss: {name: trainer-test-dpo, beta: 2.0}
                optimizer: {lr: 1.0e-2}
                training: {steps: 3, batch_size: 8, max_length: 64, share_prompt: \(sharePrompt)}
                """, registry: registry)
            let trainer = try Trainer(graph: graph)
            XCTAssertEqual(trainer.config.sharesPrompt, sharePrompt)
            let observer = RecordingObserver()
            try trainer.train(observer: observer)
            return (observer.metrics.map(\.values), try XCTUnwrap(trainer.policy.parameters["model.layers.1.mlp.down_proj.weight"]).toArray())
        }
        for cache in [false, true] {
            let shared = try train(sharePrompt: true, cache: cache), separate = try train(sharePrompt: false, cache: cache)
            XCTAssertEqual(shared.metrics.count, 3)
            for (a, b) in zip(shared.metrics, separate.metrics) {
                for name in [TrainMetric.loss, TrainMetric.gradNorm] {
                    let x = try XCTUnwrap(a[name], name), y = try XCTUnwrap(b[name], name)
                    XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(y)), "\(name), cache_logprobs \(cache)")
                }
            }
            XCTAssertGreaterThan(abs(shared.metrics[2][TrainMetric.loss]! - log(2)), 1e-3, "the policy moved away from the reference")
            for (x, y) in zip(shared.weights, separate.weights) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        }
    }

    /// Two real optimizer steps on SmolLM2-135M (Q4_1 GGUF dequantised) with short sequences.
    func testTwoStepsOnSmolLM2() throws {
        let model = RepoPaths.root.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        guard FileManager.default.fileExists(atPath: model.path) else {
            return XCTFail("\(model.path) is missing; run scripts/setup.sh (it unpacks the model)")
        }
        let fixture = try RecipeFixture()
        var registry = testRegistry()
        try registry.register(TrainerTestDPOLoss.self)
        let graph = try fixture.load("""
            model: \(model.path)
            data: [{name: preference-jsonl, path: pairs.jsonl}]
            loss: {name: trainer-test-dpo, beta: 0.1}
            optimizer: {lr: 1.0e-5}
            training: {steps: 2, batch_size: 1, max_length: 64}
            """, registry: registry)
        let trainer = try Trainer(graph: graph)
        let before = try XCTUnwrap(trainer.policy.parameters["model.layers.0.self_attn.q_proj.weight"]).toArray()
        let observer = RecordingObserver()
        try trainer.train(observer: observer)
        XCTAssertEqual(trainer.step, 2)
        XCTAssertEqual(observer.metrics.map(\.step), [1, 2])
        XCTAssertEqual(observer.checkpointSteps, [2])
        for (_, _, values) in observer.metrics {
            let loss = try XCTUnwrap(values[TrainMetric.loss]), norm = try XCTUnwrap(values[TrainMetric.gradNorm])
            XCTAssertTrue(loss.isFinite && loss > 0, "loss \(loss)")
            XCTAssertTrue(norm.isFinite && norm > 0, "grad_norm \(norm)")
        }
        // Step 1 has the policy equal to the reference: −log σ(0) = log 2.
        XCTAssertEqual(try XCTUnwrap(observer.metrics.first?.values[TrainMetric.loss]), log(2), accuracy: 1e-4)
        XCTAssertNotEqual(try XCTUnwrap(trainer.policy.parameters["model.layers.0.self_attn.q_proj.weight"]).toArray(), before)
    }
}
