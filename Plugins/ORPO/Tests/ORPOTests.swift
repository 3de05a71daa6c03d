import Foundation
import KeelCore
import XCTest
@testable import ORPO

/// ORPO against TRL's ORPOTrainer recomputed in float64 (Fixtures/orpo_trl.json, made by
/// Fixtures/make_orpo_fixture.py): loss, TRL's metrics, and the gradient with respect to every row's
/// log-prob (central finite differences of the reference function).
final class ORPOTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let name: String
            let beta: Double
            let chosen_logps: [Float], rejected_logps: [Float]
            let chosen_tokens: [Int], rejected_tokens: [Int]
            let loss: Double
            let metrics: [String: Double]
            let grad_chosen: [Double], grad_rejected: [Double]
        }
        let cases: [Case]
    }

    static let fixture: Fixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/orpo_trl.json")
        do { return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url)) } catch {
            preconditionFailure("\(url.path): \(error)")
        }
    }()

    func testLossMetricsAndGradientMatchTRL() throws {
        XCTAssertEqual(Self.fixture.cases.count, 3)
        for fixture in Self.fixture.cases {
            let plugin = try ORPOLoss(options: options(beta: fixture.beta))
            try assertMatches(plugin, fixture)
        }
    }

    /// A `beta` scheduler's value replaces the option, as for the other pairwise losses.
    func testScheduledBetaOverridesTheOption() throws {
        let fixture = try XCTUnwrap(Self.fixture.cases.first { $0.name == "large-beta" })
        let plugin = try ORPOLoss(options: options(beta: 0.1))
        try assertMatches(plugin, fixture, hyperparameters: [ControlledValue.beta: fixture.beta])
    }

    func testIsReferenceFreeAndReadsOnlyThePolicy() {
        XCTAssertTrue(ORPOLoss.descriptor.capabilities.contains(.referenceFree))
        XCTAssertEqual(ORPOLoss.descriptor.needs, [Signals.policyLogProbs.key])
        XCTAssertEqual(Set(ORPOLoss.descriptor.metrics), Set(Self.fixture.cases[0].metrics.keys))
    }

    func testEmptyCompletionIsRefusedNotNaN() throws {
        let plugin = try ORPOLoss(options: options(beta: 0.1))
        let input = LossInput(policy: .paired(chosen: SequenceScores(logProbs: Tensor([-1, -2]), tokenCounts: [1, 2]),
                                              rejected: SequenceScores(logProbs: Tensor([-1, 0]), tokenCounts: [1, 0])))
        XCTAssertThrowsError(try plugin.loss(input)) { error in
            XCTAssertTrue("\(error)".contains("row 1 of the batch has a rejected completion of 0 tokens"), "\(error)")
        }
    }

    func assertMatches(_ plugin: ORPOLoss, _ fixture: Fixture.Case, hyperparameters: [String: Double] = [:]) throws {
        let (chosen, rejected) = (Tensor(fixture.chosen_logps), Tensor(fixture.rejected_logps))
        chosen.requiresGrad = true
        rejected.requiresGrad = true
        let output = try plugin.loss(LossInput(
            policy: .paired(chosen: SequenceScores(logProbs: chosen, tokenCounts: fixture.chosen_tokens),
                            rejected: SequenceScores(logProbs: rejected, tokenCounts: fixture.rejected_tokens)),
            hyperparameters: hyperparameters))
        output.loss.backward()
        let name = fixture.name
        assertClose(Double(output.loss.item()), fixture.loss, "\(name) loss")
        for (key, value) in fixture.metrics { assertClose(try XCTUnwrap(output.metrics[key], key), value, "\(name) \(key)") }
        let (gc, gr) = (try XCTUnwrap(chosen.grad).toArray(), try XCTUnwrap(rejected.grad).toArray())
        for i in fixture.grad_chosen.indices {
            assertClose(Double(gc[i]), fixture.grad_chosen[i], "\(name) ∂L/∂chosen[\(i)]")
            assertClose(Double(gr[i]), fixture.grad_rejected[i], "\(name) ∂L/∂rejected[\(i)]")
        }
    }

    func options(beta: Double) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: ORPOLoss.descriptor.options.map { spec in
            spec.name == ORPOLoss.Option.beta ? OptionSpec(spec.name, spec.type, default: .value(.double(beta)), help: spec.help) : spec
        })
    }
}

/// Float arithmetic against float64: 2e-5 relative, 1e-6 absolute.
func assertClose(_ got: Double, _ want: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(got.isFinite, "\(what) is \(got)", file: file, line: line)
    XCTAssertEqual(got, want, accuracy: 1e-6 + 2e-5 * abs(want), what, file: file, line: line)
}
