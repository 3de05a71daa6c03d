import Foundation
import KeelCore
import XCTest
@testable import VAR

/// VAR against an independent Double computation of the weights (naive softmax: exp(s)/Σexp(s) on
/// moderate scores), the loss and its gradient w.r.t. the policy log-probs with the weights held constant.
final class VARTests: XCTestCase {
    /// Three pairs with rewards, policy and reference log-probs and completion lengths.
    static let batch = VARBatch(
        policyChosen: [-12.5, -30.0, -4.0], policyRejected: [-20.0, -18.5, -9.0],
        referenceChosen: [-13.0, -29.0, -4.5], referenceRejected: [-19.0, -19.5, -8.0],
        chosenTokens: [5, 12, 2], rejectedTokens: [8, 6, 3],
        chosenRewards: [1.5, -0.5, 2.0], rejectedRewards: [0.25, 0.75, -1.0])

    func testValueGradientAndMetricsForEveryOptionCombination() throws {
        for normalize in VARLoss.Normalization.allCases {
            for ref in VARLoss.ReferenceTerm.allCases {
                for policyTerm in VARLoss.PolicyTerm.allCases {
                    for lambda in [1.0, 4.0] {
                        let label = "normalize \(normalize) ref \(ref) policy \(policyTerm) λ \(lambda)"
                        let plugin = try VARLoss(options: options([
                            "lambda": .double(lambda), "normalize": .string(normalize.rawValue),
                            "ref_logp": .string(ref.rawValue), "policy_logp": .string(policyTerm.rawValue)]))
                        let got = try Self.batch.evaluate(plugin)
                        let want = ExpectedVAR(Self.batch, lambda: lambda, normalize: normalize, ref: ref, policy: policyTerm)
                        XCTAssertEqual(want.weights.reduce(0, +), 1, accuracy: 1e-12, label)
                        assertClose(got.loss, want.loss, label + " loss")
                        for i in 0..<3 {
                            assertClose(got.policyGradients[0][i], want.gradients[0][i], label + " ∂L/∂policy chosen[\(i)]")
                            assertClose(got.policyGradients[1][i], want.gradients[1][i], label + " ∂L/∂policy rejected[\(i)]")
                        }
                        XCTAssertTrue(got.referenceHasNoGradient, label + ": the weights must be detached from the reference")
                        assertClose(try XCTUnwrap(got.metrics[VARLoss.Metric.weightEntropy]), want.entropy, label + " entropy")
                        assertClose(try XCTUnwrap(got.metrics[VARLoss.Metric.maxWeight]), want.weights.max()!, label + " max weight")
                    }
                }
            }
        }
    }

    /// Weights sum to 1 in both modes; per pair in `prompt` mode each pair holds 1/B of the mass.
    func testWeightsSumToOne() {
        let scores = [0.3, -2.0, 5.0, 1.0, 1.0, -7.5]
        let batch = VARLoss.weights(scores: scores, groups: [Array(0..<6)])
        XCTAssertEqual(batch.reduce(0, +), 1, accuracy: 1e-12)
        let prompt = VARLoss.weights(scores: scores, groups: [[0, 3], [1, 4], [2, 5]])
        XCTAssertEqual(prompt.reduce(0, +), 1, accuracy: 1e-12)
        for b in 0..<3 { XCTAssertEqual(prompt[b] + prompt[b + 3], 1.0 / 3, accuracy: 1e-12) }
        // Pair 0: softmax(0.3, 1.0) = (1/(1+e^0.7), e^0.7/(1+e^0.7)), divided by 3 pairs.
        XCTAssertEqual(prompt[0], 1 / (1 + exp(0.7)) / 3, accuracy: 1e-12)
    }

    /// Equal rewards and no reference: uniform weights, so L = mean over all 2B responses of the
    /// per-token NLL −logπθ(y)/|y| (SFT's objective, sequence-mean form, on both completions).
    func testEqualRewardsWithoutReferenceIsSequenceMeanSFT() throws {
        var batch = Self.batch
        batch.chosenRewards = [0.7, 0.7, 0.7]
        batch.rejectedRewards = [0.7, 0.7, 0.7]
        let plugin = try VARLoss(options: options(["ref_logp": .string("none")]))
        let got = try batch.evaluate(plugin)
        let perToken = zip(batch.policyChosen, batch.chosenTokens).map { Double($0) / Double($1) }
            + zip(batch.policyRejected, batch.rejectedTokens).map { Double($0) / Double($1) }
        assertClose(got.loss, -perToken.reduce(0, +) / 6, "uniform-weight loss")
        assertClose(try XCTUnwrap(got.metrics[VARLoss.Metric.weightEntropy]), log(6), "uniform entropy")
        assertClose(got.policyGradients[0][1], -1.0 / 6 / 12, "∂L/∂policy chosen[1]")
    }

    /// Rewards of ±1e4 with λ = 1: the softmax puts all the weight on the best response, finitely.
    func testExtremeRewardsDoNotOverflow() throws {
        var batch = Self.batch
        batch.chosenRewards = [1e4, -1e4, 0]
        batch.rejectedRewards = [-1e4, 1e4 - 1, 5]
        for normalize in ["batch", "prompt"] {
            let plugin = try VARLoss(options: options(["normalize": .string(normalize)]))
            let got = try batch.evaluate(plugin)
            let want = ExpectedVAR(batch, lambda: 1, normalize: VARLoss.Normalization(rawValue: normalize)!, ref: .sum, policy: .mean)
            XCTAssertTrue(got.loss.isFinite, normalize)
            assertClose(got.loss, want.loss, normalize + " loss")
            for k in 0..<2 { for i in 0..<3 { assertClose(got.policyGradients[k][i], want.gradients[k][i], "\(normalize) gradient \(k) \(i)") } }
        }
        // Batch mode: s = 1e4 − 13 for the chosen of pair 0, 1e4 − 1 − 19.5 for the rejected of pair 1, the
        // rest far below: max w = 1/(1 + e^−7.5) ≈ 0.99945.
        let plugin = try VARLoss(options: options([:]))
        XCTAssertEqual(try XCTUnwrap(try batch.evaluate(plugin).metrics[VARLoss.Metric.maxWeight]), 1 / (1 + exp(-7.5)), accuracy: 1e-9)
    }

    func testMissingRewardsOrReferenceAreRefused() throws {
        let plugin = try VARLoss(options: options([:]))
        let (_, policy, reference) = Self.batch.tensors()
        XCTAssertThrowsError(try plugin.loss(LossInput(policy: policy, reference: reference))) {
            XCTAssertTrue("\($0)".contains("no signal `rewards`"), "\($0)")
        }
        XCTAssertThrowsError(try plugin.loss(LossInput(policy: policy).with(Signals.rewards, .paired(chosen: [1, 2, 3], rejected: [0, 0, 0])))) {
            XCTAssertTrue("\($0)".contains("no signal `reference-logprobs`"), "\($0)")
        }
        XCTAssertThrowsError(try plugin.loss(LossInput(policy: policy, reference: reference)
                                                .with(Signals.rewards, .paired(chosen: [1, .nan, 3], rejected: [0, 0, 0])))) {
            XCTAssertTrue("\($0)".contains("chosen completion of row 1"), "\($0)")
        }
        // Without a reference term the reference batch is not needed.
        let free = try VARLoss(options: options(["ref_logp": .string("none")]))
        XCTAssertNoThrow(try free.loss(LossInput(policy: policy).with(Signals.rewards, .paired(chosen: [1, 2, 3], rejected: [0, 0, 0]))))
    }

    func options(_ overrides: [String: OptionValue]) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: VARLoss.descriptor.options.map { spec in
            overrides[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        })
    }
}

func assertClose(_ got: Double, _ want: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(got.isFinite, "\(what) is \(got)", file: file, line: line)
    XCTAssertEqual(got, want, accuracy: 1e-7 + 1e-5 * abs(want), what, file: file, line: line)
}

/// VAR written out in Double: w_i = exp(s_i − c)/Σ_group exp(s_j − c) / #groups with c the group's largest
/// score (any constant cancels; this one keeps exp finite for the ±1e4 rewards), loss −Σ w·term,
/// ∂L/∂logπθ(y_i) = −w_i/|y_i| (mean) or −w_i (sum).
struct ExpectedVAR {
    var weights: [Double] = []
    var loss = 0.0
    var gradients: [[Double]]
    var entropy = 0.0

    init(_ batch: VARBatch, lambda: Double, normalize: VARLoss.Normalization, ref: VARLoss.ReferenceTerm, policy: VARLoss.PolicyTerm) {
        let n = batch.policyChosen.count
        let tokens = (batch.chosenTokens + batch.rejectedTokens).map(Double.init)
        let rewards = batch.chosenRewards + batch.rejectedRewards
        let refSums = (batch.referenceChosen + batch.referenceRejected).map(Double.init)
        let policySums = (batch.policyChosen + batch.policyRejected).map(Double.init)
        let s = (0..<2 * n).map { i -> Double in
            let refTerm: Double
            switch ref {
            case .sum: refTerm = refSums[i]
            case .mean: refTerm = refSums[i] / tokens[i]
            case .none: refTerm = 0
            }
            return rewards[i] / lambda + refTerm
        }
        let groups = normalize == .batch ? [Array(0..<2 * n)] : (0..<n).map { [$0, $0 + n] }
        weights = [Double](repeating: 0, count: 2 * n)
        for group in groups {
            let shift = group.map { s[$0] }.max()!
            let z = group.map { exp(s[$0] - shift) }.reduce(0, +)
            for i in group { weights[i] = exp(s[i] - shift) / z / Double(groups.count) }
        }
        gradients = [[Double](repeating: 0, count: n), [Double](repeating: 0, count: n)]
        for i in 0..<2 * n {
            let scale = policy == .mean ? 1 / tokens[i] : 1
            loss -= weights[i] * policySums[i] * scale
            gradients[i / n][i % n] = -weights[i] * scale
            if weights[i] > 0 { entropy -= weights[i] * log(weights[i]) }
        }
    }
}

/// A batch of pairs with rewards; `evaluate` runs the loss on fresh leaves and reads their gradients.
struct VARBatch {
    var policyChosen, policyRejected, referenceChosen, referenceRejected: [Float]
    var chosenTokens, rejectedTokens: [Int]
    var chosenRewards, rejectedRewards: [Double]

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

    func evaluate(_ plugin: VARLoss) throws
        -> (loss: Double, policyGradients: [[Double]], referenceHasNoGradient: Bool, metrics: [String: Double]) {
        let (leaves, policy, reference) = tensors()
        let output = try plugin.loss(LossInput(policy: policy, reference: reference)
                                        .with(Signals.rewards, .paired(chosen: chosenRewards, rejected: rejectedRewards)))
        XCTAssertEqual(output.loss.shape, [])
        output.loss.backward()
        let zeros = [Double](repeating: 0, count: policyChosen.count)
        let gradients = leaves.map { $0.grad?.toArray().map(Double.init) ?? zeros }
        return (Double(output.loss.item()), Array(gradients[0..<2]), gradients[2] == zeros && gradients[3] == zeros,
                output.metrics)
    }
}
