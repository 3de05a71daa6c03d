import Foundation
import KeelCore
import XCTest
@testable import SimPO

/// SimPO against an independent Double-precision computation of the formula and its analytic gradient.
final class SimPOTests: XCTestCase {
    // Five pairs: ordinary, tiny margin, z ≈ ±1e3 (β = 2), and a margin exactly at γ/β.
    let chosen: [Float] = [-12.5, -30.0, -100, -50000, -20.0]
    let rejected: [Float] = [-20.0, -60.00003, -50000, -100, -25.0]
    let chosenTokens = [5, 20, 100, 100, 10]
    let rejectedTokens = [4, 30, 100, 100, 10]

    func testBothLossTypesMatchTheFormulaAndItsGradient() throws {
        for (type, epsilon) in [("sigmoid", 0.0), ("sigmoid", 0.1), ("hinge", 0.0)] {
            let plugin = try SimPOLoss(options: options(["loss_type": .string(type), "label_smoothing": .double(epsilon)]))
            XCTAssertEqual(SimPOLoss.checkOptions(options(["loss_type": .string(type), "label_smoothing": .double(epsilon)])), [])
            let got = try evaluate(plugin)
            let want = expected(hinge: type == "hinge", beta: 2, gammaBetaRatio: 0.5, epsilon: epsilon)
            assertClose(got.loss, want.loss, "\(type) ε=\(epsilon) loss")
            for i in chosen.indices {
                assertClose(got.chosenGradient[i], want.chosenGradient[i], "\(type) ∂L/∂chosen[\(i)]")
                assertClose(got.rejectedGradient[i], want.rejectedGradient[i], "\(type) ∂L/∂rejected[\(i)]")
            }
            for (key, value) in want.metrics { assertClose(try XCTUnwrap(got.metrics[key], key), value, "\(type) \(key)") }
            XCTAssertEqual(Set(got.metrics.keys), Set(SimPOLoss.descriptor.metrics))
        }
    }

    func testScheduledBetaAndGammaRatio() throws {
        let plugin = try SimPOLoss(options: options(["gamma_beta_ratio": .double(1.5)]))
        let got = try evaluate(plugin, hyperparameters: ["beta": 2.5])
        let want = expected(hinge: false, beta: 2.5, gammaBetaRatio: 1.5, epsilon: 0)
        assertClose(got.loss, want.loss, "loss at β = 2.5, γ/β = 1.5")
        assertClose(got.chosenGradient[0], want.chosenGradient[0], "∂L/∂chosen[0]")
    }

    /// A zero-length completion is refused with the row named, never divided by (no NaN reaches training).
    func testEmptyCompletionIsRefusedNotNaN() throws {
        let plugin = try SimPOLoss(options: options([:]))
        var tokens = chosenTokens
        tokens[2] = 0
        let input = LossInput(policy: .paired(chosen: SequenceScores(logProbs: Tensor(chosen), tokenCounts: tokens),
                                              rejected: SequenceScores(logProbs: Tensor(rejected), tokenCounts: rejectedTokens)))
        XCTAssertThrowsError(try plugin.loss(input)) { error in
            XCTAssertTrue("\(error)".contains("row 2 of the batch has a chosen completion of 0 tokens"), "\(error)")
        }
        XCTAssertTrue(SimPOLoss.descriptor.capabilities.contains(.requiresNonEmptyCompletions))
    }

    func testHingeRefusesLabelSmoothing() {
        XCTAssertEqual(SimPOLoss.checkOptions(options(["loss_type": .string("hinge"), "label_smoothing": .double(0.1)])).map(\.option),
                       ["label_smoothing"])
    }

    func evaluate(_ plugin: SimPOLoss, hyperparameters: [String: Double] = [:]) throws
        -> (loss: Double, chosenGradient: [Double], rejectedGradient: [Double], metrics: [String: Double]) {
        let (c, r) = (Tensor(chosen), Tensor(rejected))
        c.requiresGrad = true
        r.requiresGrad = true
        let output = try plugin.loss(LossInput(
            policy: .paired(chosen: SequenceScores(logProbs: c, tokenCounts: chosenTokens),
                            rejected: SequenceScores(logProbs: r, tokenCounts: rejectedTokens)),
            hyperparameters: hyperparameters))
        output.loss.backward()
        func values(_ t: Tensor) -> [Double] { t.grad?.toArray().map(Double.init) ?? Array(repeating: 0, count: t.count) }
        return (Double(output.loss.item()), values(c), values(r), output.metrics)
    }

    /// z = β(avg_w − avg_l − γ/β); ∂L/∂logπ(y_w) = L′(z)·β/|y_w|/B, ∂L/∂logπ(y_l) = −L′(z)·β/|y_l|/B.
    func expected(hinge: Bool, beta: Double, gammaBetaRatio: Double, epsilon: Double)
        -> (loss: Double, chosenGradient: [Double], rejectedGradient: [Double], metrics: [String: Double]) {
        func logSigmoid(_ x: Double) -> Double { min(x, 0) - log1p(exp(-abs(x))) }
        func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
        let b = Double(chosen.count)
        var loss = 0.0, gc = [Double](), gr = [Double](), metrics = [String: Double]()
        for i in chosen.indices {
            let aw = Double(chosen[i]) / Double(chosenTokens[i]), al = Double(rejected[i]) / Double(rejectedTokens[i])
            let z = beta * (aw - al - gammaBetaRatio)
            let dz: Double
            if hinge {
                loss += max(0, 1 - z) / b
                dz = z < 1 ? -1 : 0
            } else {
                loss += (-(1 - epsilon) * logSigmoid(z) - epsilon * logSigmoid(-z)) / b
                dz = -(1 - epsilon) * sigmoid(-z) + epsilon * sigmoid(z)
            }
            gc.append(dz * beta / Double(chosenTokens[i]) / b)
            gr.append(-dz * beta / Double(rejectedTokens[i]) / b)
            metrics["rewards/chosen", default: 0] += beta * aw / b
            metrics["rewards/rejected", default: 0] += beta * al / b
            metrics["rewards/margins", default: 0] += beta * (aw - al) / b
            metrics["rewards/accuracies", default: 0] += (aw > al ? 1 : 0) / b
            metrics["logps/chosen", default: 0] += aw / b
            metrics["logps/rejected", default: 0] += al / b
        }
        return (loss, gc, gr, metrics)
    }

    func options(_ overrides: [String: OptionValue]) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: SimPOLoss.descriptor.options.map { spec in
            overrides[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        })
    }
}

/// Closeness for values of any magnitude: 1e-5 relative, 1e-7 absolute (Float arithmetic vs Double).
func assertClose(_ got: Double, _ want: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(got.isFinite, "\(what) is \(got)", file: file, line: line)
    XCTAssertEqual(got, want, accuracy: 1e-7 + 1e-5 * abs(want), what, file: file, line: line)
}
