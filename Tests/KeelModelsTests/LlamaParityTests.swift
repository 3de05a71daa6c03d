import Foundation
import XCTest
@testable import KeelModels

/// SmolLM2-135M-Instruct against PyTorch (../shared/fixtures/smollm2_hh8_dpo.json, see its README):
/// per-sequence completion log-probs of 8 real HH pairs, the DPO gradient's global norm, and the
/// log-probs and loss after one plain SGD step. Tolerances are the fixture README's for fp32 against
/// its fp64 block: 2e-3 absolute on log-probs, 1e-3 relative on the gradient norm, 1e-4 on the loss.
final class LlamaParityTests: XCTestCase {
    struct Fixture: Decodable {
        struct Pair: Decodable { let n_prompt: Int; let ids_chosen: [Int]; let ids_rejected: [Int] }
        struct AfterStep: Decodable { let logp_chosen: [Double]; let logp_rejected: [Double]; let dpo_loss: Double }
        struct Block: Decodable {
            let logp_chosen: [Double]; let logp_rejected: [Double]; let dpo_loss: Double
            let grad_global_l2_norm: Double; let after_sgd_step: AfterStep
        }
        let beta: Double; let sgd_lr: Double; let pairs: [Pair]; let fp64: Block
    }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testSmolLM2MatchesPyTorchLogProbsGradientAndSGDStep() throws {
        try checkAgainstFixture(sharedPrompts: false)
    }

    /// The same with each pair packed as [prompt | chosen | rejected] (`SharedPromptPairBatch`).
    func testSmolLM2WithSharedPromptsMatchesPyTorchLogProbsGradientAndSGDStep() throws {
        try checkAgainstFixture(sharedPrompts: true)
    }

    private func checkAgainstFixture(sharedPrompts: Bool) throws {
        let fixtureURL = Self.repoRoot.appendingPathComponent("../shared/fixtures/smollm2_hh8_dpo.json")
        let modelPath = Self.repoRoot.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: modelPath) else {
            return XCTFail("\(modelPath) is missing: run scripts/setup.sh")
        }
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtureURL))
        let model = try LlamaModel(weights: ModelWeights(ggufPath: modelPath))

        // Rows 0..<8 are the chosen sequences, rows 8..<16 the rejected ones, right-padded together.
        func split(_ ids: [Int], _ nPrompt: Int) -> PromptCompletionTokens {
            PromptCompletionTokens(prompt: Array(ids[..<nPrompt]), completion: Array(ids[nPrompt...]))
        }
        let batch = SequenceBatch(fixture.pairs.map { split($0.ids_chosen, $0.n_prompt) }
                                    + fixture.pairs.map { split($0.ids_rejected, $0.n_prompt) }, padID: 2)
        let shared = SharedPromptPairBatch(fixture.pairs.map { pair in
            (Array(pair.ids_chosen[..<pair.n_prompt]), Array(pair.ids_chosen[pair.n_prompt...]), Array(pair.ids_rejected[pair.n_prompt...]))
        }, padID: 2)
        XCTAssertTrue(fixture.pairs.allSatisfy { $0.ids_chosen[..<$0.n_prompt] == $0.ids_rejected[..<$0.n_prompt] })
        func sequenceLogProbs() -> Tensor {
            sharedPrompts ? model.sequenceLogProbs(shared).logProbs : model.sequenceLogProbs(batch).logProbs
        }
        let pairs = fixture.pairs.count

        // DPO with reference = policy: h = (π_c − ref_c) − (π_r − ref_r), loss = mean −log σ(β h) = log 2.
        let logps = sequenceLogProbs()
        let reference = logps.detached().copy()
        let values = logps.toArray()
        for i in 0..<pairs {
            XCTAssertEqual(Double(values[i]), fixture.fp64.logp_chosen[i], accuracy: 2e-3, "logp chosen of pair \(i)")
            XCTAssertEqual(Double(values[pairs + i]), fixture.fp64.logp_rejected[i], accuracy: 2e-3, "logp rejected of pair \(i)")
        }
        let loss = dpoLoss(policy: logps, reference: reference, pairs: pairs, beta: Float(fixture.beta))
        XCTAssertEqual(Double(loss.item()), fixture.fp64.dpo_loss, accuracy: 1e-4)
        loss.backward()

        var squaredNorm = 0.0
        for entry in model.parameters {
            let g = try XCTUnwrap(entry.tensor.grad, "no gradient reached \(entry.name)")
            for i in 0..<g.count { squaredNorm += Double(g.pointer[i]) * Double(g.pointer[i]) }
        }
        XCTAssertEqual(squaredNorm.squareRoot(), fixture.fp64.grad_global_l2_norm,
                       accuracy: 1e-3 * fixture.fp64.grad_global_l2_norm)

        // One plain SGD step on every parameter; the reference keeps the old log-probs.
        let lr = Float(fixture.sgd_lr)
        for entry in model.parameters {
            let p = entry.tensor.pointer, g = entry.tensor.grad!.pointer
            for i in 0..<entry.tensor.count { p[i] -= lr * g[i] }
        }
        let after = withNoGrad { sequenceLogProbs() }
        let afterValues = after.toArray()
        for i in 0..<pairs {
            XCTAssertEqual(Double(afterValues[i]), fixture.fp64.after_sgd_step.logp_chosen[i], accuracy: 2e-3)
            XCTAssertEqual(Double(afterValues[pairs + i]), fixture.fp64.after_sgd_step.logp_rejected[i], accuracy: 2e-3)
        }
        let afterLoss = withNoGrad { dpoLoss(policy: after, reference: reference, pairs: pairs, beta: Float(fixture.beta)) }
        XCTAssertEqual(Double(afterLoss.item()), fixture.fp64.after_sgd_step.dpo_loss, accuracy: 1e-4)
    }

    /// −mean log σ(β·h) over pairs; rows [0, pairs) are chosen, [pairs, 2·pairs) rejected.
    private func dpoLoss(policy: Tensor, reference: Tensor, pairs: Int, beta: Float) -> Tensor {
        let ratio = policy - reference
        let h = ratio.reshaped([2, pairs])
        let margin = h.rows(0..<1) - h.rows(1..<2)
        return (margin * beta).logSigmoid().mean() * -1
    }
}
