import Foundation
import KeelCore
import XCTest
@testable import DPO

/// DPO against an independent Double-precision computation of each formula and its analytic gradient
/// with respect to the four log-prob inputs, and against PyTorch's numbers on SmolLM2 (the fixture).
final class DPOTests: XCTestCase {
    /// Six pairs: ordinary margins, a tiny one (h ≈ 1e-4), |βh| = 1e3 both ways (β = 0.1), and h = 0.
    static let batch = DPOTestBatch(
        policyChosen: [-12.5, -80.25, -3.0, -100, -5100, -40],
        policyRejected: [-20.0, -60.5, -5.0, -5100, -100, -40],
        referenceChosen: [-13.0, -80.0, -3.0, -5100, -100, -41],
        referenceRejected: [-19.25, -62.0, -5.0001, -100, -5100, -41],
        chosenTokens: [3, 40, 1, 200, 150, 10], rejectedTokens: [5, 30, 2, 180, 220, 10])

    func testEveryLossTypeMatchesTheFormulaAndItsGradient() throws {
        let cases: [(DPOLoss.LossType, Double)] = [(.sigmoid, 0), (.cdpo, 0.1), (.robust, 0.2), (.hinge, 0), (.ipo, 0)]
        for (type, epsilon) in cases {
            let plugin = try DPOLoss(options: options(["loss_type": .string(type.rawValue), "label_smoothing": .double(epsilon)]))
            XCTAssertEqual(DPOLoss.checkOptions(options(["loss_type": .string(type.rawValue), "label_smoothing": .double(epsilon)])), [])
            let got = try Self.batch.evaluate(plugin)
            let want = ExpectedDPO(type: type, beta: 0.1, epsilon: epsilon, batch: Self.batch)
            assertClose(got.loss, want.loss, "\(type) loss")
            for (k, name) in ["policy chosen", "policy rejected", "reference chosen", "reference rejected"].enumerated() {
                for i in 0..<Self.batch.count {
                    assertClose(got.gradients[k][i], want.gradients[k][i], "\(type) ∂L/∂\(name)[\(i)]")
                }
            }
            for (key, value) in want.metrics { assertClose(try XCTUnwrap(got.metrics[key], key), value, "\(type) \(key)") }
            XCTAssertEqual(Set(got.metrics.keys), Set(DPOLoss.descriptor.metrics))
        }
    }

    func testScheduledBetaOverridesTheOption() throws {
        let plugin = try DPOLoss(options: options([:]))
        let got = try Self.batch.evaluate(plugin, hyperparameters: ["beta": 0.5])
        let want = ExpectedDPO(type: .sigmoid, beta: 0.5, epsilon: 0, batch: Self.batch)
        assertClose(got.loss, want.loss, "loss at β = 0.5")
        assertClose(got.gradients[0][0], want.gradients[0][0], "∂L/∂policy chosen[0] at β = 0.5")
    }

    /// Policy = reference gives log 2 per pair; after PyTorch's SGD step, the fixture's per-pair losses.
    func testSmolLM2FixtureLosses() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("../shared/fixtures/smollm2_hh8_dpo.json")
        let data = try Data(contentsOf: url)
        let fixture = try JSONDecoder().decode(Fixture.self, from: data)
        let initial = fixture.fp64, after = fixture.fp64.after_sgd_step
        let plugin = try DPOLoss(options: options(["beta": .double(fixture.beta)]))

        let equal = DPOTestBatch(policyChosen: initial.logp_chosen, policyRejected: initial.logp_rejected,
                              referenceChosen: initial.logp_chosen, referenceRejected: initial.logp_rejected)
        XCTAssertEqual(try equal.evaluate(plugin).loss, log(2), accuracy: 1e-7)

        let stepped = DPOTestBatch(policyChosen: after.logp_chosen, policyRejected: after.logp_rejected,
                                referenceChosen: initial.logp_chosen, referenceRejected: initial.logp_rejected)
        XCTAssertEqual(try stepped.evaluate(plugin).loss, after.dpo_loss, accuracy: 1e-6)
        for i in 0..<stepped.count {
            XCTAssertEqual(try stepped.row(i).evaluate(plugin).loss, after.dpo_loss_per_pair[i], accuracy: 1e-6, "pair \(i)")
        }
    }

    func testLabelSmoothingOnlyWithTheVariantsThatUseIt() {
        XCTAssertEqual(DPOLoss.checkOptions(options(["loss_type": .string("cdpo")])).map(\.option), ["label_smoothing"])
        XCTAssertEqual(DPOLoss.checkOptions(options(["loss_type": .string("ipo"), "label_smoothing": .double(0.1)])).map(\.option),
                       ["label_smoothing"])
    }

    func testMissingReferenceAndEmptyIPOCompletionAreRefused() throws {
        let plugin = try DPOLoss(options: options([:]))
        let policy = Self.batch.tensors().policy
        XCTAssertThrowsError(try plugin.loss(LossInput(policy: policy))) {
            XCTAssertTrue("\($0)".contains("no signal `reference-logprobs`"), "\($0)")
        }
        var empty = Self.batch
        empty.rejectedTokens[4] = 0
        let ipo = try DPOLoss(options: options(["loss_type": .string("ipo")]))
        XCTAssertThrowsError(try empty.evaluate(ipo)) { XCTAssertTrue("\($0)".contains("row 4"), "\($0)") }
    }

    func options(_ overrides: [String: OptionValue]) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: DPOLoss.descriptor.options.map { spec in
            overrides[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        })
    }
}

/// Closeness for values of any magnitude: 1e-5 relative, 1e-7 absolute (Float arithmetic vs Double).
func assertClose(_ got: Double, _ want: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(got.isFinite, "\(what) is \(got)", file: file, line: line)
    XCTAssertEqual(got, want, accuracy: 1e-7 + 1e-5 * abs(want), what, file: file, line: line)
}

/// DPO per the paper and TRL, in Double, with ∂L/∂(policy chosen, policy rejected, reference chosen,
/// reference rejected) written out from the chain rule through h.
struct ExpectedDPO {
    var loss = 0.0
    var gradients: [[Double]]
    var metrics: [String: Double]

    init(type: DPOLoss.LossType, beta: Double, epsilon: Double, batch: DPOTestBatch) {
        func logSigmoid(_ x: Double) -> Double { min(x, 0) - log1p(exp(-abs(x))) }
        func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
        let n = batch.count, b = Double(n)
        gradients = Array(repeating: Array(repeating: 0, count: n), count: 4)
        var sums = [String: Double]()
        for i in 0..<n {
            // IPO compares per-token log-ratios: each log-prob divided by its completion's length.
            let scaleChosen = type == .ipo ? 1 / Double(batch.chosenTokens[i]) : 1
            let scaleRejected = type == .ipo ? 1 / Double(batch.rejectedTokens[i]) : 1
            let pc = Double(batch.policyChosen[i]) * scaleChosen, rc = Double(batch.referenceChosen[i]) * scaleChosen
            let pr = Double(batch.policyRejected[i]) * scaleRejected, rr = Double(batch.referenceRejected[i]) * scaleRejected
            let h = (pc - rc) - (pr - rr), z = beta * h
            let value: Double, dh: Double
            switch type {
            case .sigmoid, .cdpo:
                value = -(1 - epsilon) * logSigmoid(z) - epsilon * logSigmoid(-z)
                dh = beta * (-(1 - epsilon) * sigmoid(-z) + epsilon * sigmoid(z))
            case .robust:
                value = (-(1 - epsilon) * logSigmoid(z) + epsilon * logSigmoid(-z)) / (1 - 2 * epsilon)
                dh = beta * (-(1 - epsilon) * sigmoid(-z) - epsilon * sigmoid(z)) / (1 - 2 * epsilon)
            case .hinge:
                value = max(0, 1 - z)
                dh = z < 1 ? -beta : 0
            case .ipo:
                value = (h - 1 / (2 * beta)) * (h - 1 / (2 * beta))
                dh = 2 * (h - 1 / (2 * beta))
            }
            loss += value / b
            gradients[0][i] = dh * scaleChosen / b
            gradients[1][i] = -dh * scaleRejected / b
            gradients[2][i] = -dh * scaleChosen / b
            gradients[3][i] = dh * scaleRejected / b
            let (chosenReward, rejectedReward) = (beta * (pc - rc), beta * (pr - rr))
            sums["rewards/chosen", default: 0] += chosenReward / b
            sums["rewards/rejected", default: 0] += rejectedReward / b
            sums["rewards/margins", default: 0] += (chosenReward - rejectedReward) / b
            sums["rewards/accuracies", default: 0] += (chosenReward > rejectedReward ? 1 : 0) / b
            sums["logps/chosen", default: 0] += pc / b
            sums["logps/rejected", default: 0] += pr / b
        }
        metrics = sums
    }
}

/// A batch of pairs as Float inputs; `evaluate` runs a loss on fresh leaf tensors and reads their grads.
struct DPOTestBatch {
    var policyChosen, policyRejected, referenceChosen, referenceRejected: [Float]
    var chosenTokens, rejectedTokens: [Int]

    init(policyChosen: [Double], policyRejected: [Double], referenceChosen: [Double], referenceRejected: [Double]) {
        self.init(policyChosen: policyChosen.map(Float.init), policyRejected: policyRejected.map(Float.init),
                  referenceChosen: referenceChosen.map(Float.init), referenceRejected: referenceRejected.map(Float.init),
                  chosenTokens: Array(repeating: 1, count: policyChosen.count),
                  rejectedTokens: Array(repeating: 1, count: policyChosen.count))
    }

    init(policyChosen: [Float], policyRejected: [Float], referenceChosen: [Float], referenceRejected: [Float],
         chosenTokens: [Int], rejectedTokens: [Int]) {
        (self.policyChosen, self.policyRejected) = (policyChosen, policyRejected)
        (self.referenceChosen, self.referenceRejected) = (referenceChosen, referenceRejected)
        (self.chosenTokens, self.rejectedTokens) = (chosenTokens, rejectedTokens)
    }

    var count: Int { policyChosen.count }

    func row(_ i: Int) -> DPOTestBatch {
        DPOTestBatch(policyChosen: [policyChosen[i]], policyRejected: [policyRejected[i]], referenceChosen: [referenceChosen[i]],
                  referenceRejected: [referenceRejected[i]], chosenTokens: [chosenTokens[i]], rejectedTokens: [rejectedTokens[i]])
    }

    func tensors() -> (leaves: [Tensor], policy: LossBatch, reference: LossBatch) {
        let leaves = [policyChosen, policyRejected, referenceChosen, referenceRejected].map { values -> Tensor in
            let t = Tensor(shape: [values.count], data: values)
            t.requiresGrad = true
            return t
        }
        return (leaves,
                .paired(chosen: SequenceScores(logProbs: leaves[0], tokenCounts: chosenTokens),
                        rejected: SequenceScores(logProbs: leaves[1], tokenCounts: rejectedTokens)),
                .paired(chosen: SequenceScores(logProbs: leaves[2], tokenCounts: chosenTokens),
                        rejected: SequenceScores(logProbs: leaves[3], tokenCounts: rejectedTokens)))
    }

    func evaluate(_ plugin: any LossPlugin, hyperparameters: [String: Double] = [:]) throws
        -> (loss: Double, gradients: [[Double]], metrics: [String: Double]) {
        let (leaves, policy, reference) = tensors()
        let output = try plugin.loss(LossInput(policy: policy, reference: reference, hyperparameters: hyperparameters))
        XCTAssertEqual(output.loss.shape, [])
        output.loss.backward()
        let gradients = leaves.map { leaf in leaf.grad?.toArray().map(Double.init) ?? Array(repeating: 0, count: count) }
        return (Double(output.loss.item()), gradients, output.metrics)
    }
}

/// The parts of fixtures/smollm2_hh8_dpo.json these tests read.
struct Fixture: Decodable {
    struct Block: Decodable {
        let logp_chosen: [Double]
        let logp_rejected: [Double]
        let dpo_loss: Double
        let dpo_loss_per_pair: [Double]
    }
    struct Precision: Decodable {
        let logp_chosen: [Double]
        let logp_rejected: [Double]
        let after_sgd_step: Block
    }
    let beta: Double
    let fp64: Precision
}
