import KeelCore
import XCTest
@testable import RefSync

/// The trainer as ref-sync sees it: two sets of named parameters and a metric log.
final class FakeTrainingContext: TrainingContext {
    var step = 0
    var totalSteps = 100
    var learningRate = 1e-3
    var hyperparameters: [String: Double] = [:]
    var models: [ModelRole: [String: Tensor]] = [:]
    var recorded: [(step: Int, metric: String, value: Double)] = []

    func parameterNames(_ role: ModelRole) -> [String] { models[role, default: [:]].keys.sorted() }
    func parameter(_ name: String, of role: ModelRole) -> Tensor? { models[role]?[name] }
    func record(metric: String, value: Double) { recorded.append((step, metric, value)) }
}

final class RefSyncTests: XCTestCase {
    let policy: [String: [Float]] = ["a": [1.5, -2.25, 3.0e-8, 1e6], "b": [0.1, 0.2, -0.3]]
    let reference: [String: [Float]] = ["a": [1.0, 2.0, -7.0e-9, -1e6], "b": [0.4, -0.5, 0.6]]

    func context() -> FakeTrainingContext {
        let context = FakeTrainingContext()
        context.models[.policy] = policy.mapValues { Tensor($0) }
        context.models[.reference] = reference.mapValues { Tensor($0) }
        return context
    }

    func referenceValues(_ context: FakeTrainingContext) -> [String: [Float]] {
        context.models[.reference, default: [:]].mapValues { $0.toArray() }
    }

    func options(alpha: Double, tau: Int) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: ReferenceSyncScheduler.descriptor.options.map { spec in
            let value: OptionValue = spec.name == "alpha" ? .double(alpha) : .int(tau)
            return OptionSpec(spec.name, spec.type, default: .value(value), help: spec.help)
        })
    }

    /// Soft update: each reference value equals (1 − α)·ref + α·policy computed in Double, up to Float
    /// rounding of the two products and their sum (one Float epsilon of the terms' magnitudes).
    func testSoftSyncMixesEveryParameter() throws {
        let alpha = Double(Float(0.6))
        let scheduler = try ReferenceSyncScheduler(options: options(alpha: 0.6, tau: 1))
        let context = context()
        context.step = 1
        try scheduler.afterOptimizerStep(context)
        for (name, values) in referenceValues(context) {
            for (i, got) in values.enumerated() {
                let (kept, mixedIn) = ((1 - alpha) * Double(reference[name]![i]), alpha * Double(policy[name]![i]))
                let rounding = (abs(kept) + abs(mixedIn)) * Double(Float.ulpOfOne)
                XCTAssertEqual(Double(got), kept + mixedIn, accuracy: rounding, "\(name)[\(i)]")
            }
        }
        XCTAssertEqual(context.models[.policy]?["a"]?.toArray(), policy["a"], "the policy is not touched")
        var squared = 0.0
        for (name, values) in policy {
            for (p, r) in zip(values, reference[name]!) { squared += (Double(p) - Double(r)) * (Double(p) - Double(r)) }
        }
        XCTAssertEqual(context.recorded.map(\.metric), ["ref/sync_count", "ref/param_delta_norm"])
        XCTAssertEqual(context.recorded[0].value, 1)
        XCTAssertEqual(context.recorded[1].value, squared.squareRoot(), accuracy: 1e-9 * squared.squareRoot())
    }

    /// Hard update (α = 1) copies bitwise, and only after steps that are multiples of τ.
    func testHardSyncCopiesBitwiseOnMultiplesOfTau() throws {
        let scheduler = try ReferenceSyncScheduler(options: options(alpha: 1, tau: 3))
        let context = context()
        for step in [1, 2, 4, 5] {
            context.step = step
            try scheduler.afterOptimizerStep(context)
            XCTAssertEqual(referenceValues(context), reference, "no sync after step \(step)")
        }
        XCTAssertTrue(context.recorded.isEmpty)
        context.step = 6
        try scheduler.afterOptimizerStep(context)
        for (name, values) in referenceValues(context) {
            XCTAssertEqual(values.map(\.bitPattern), policy[name]!.map(\.bitPattern), name)
        }
        XCTAssertEqual(scheduler.syncCount, 1)
        XCTAssertEqual(context.recorded.map(\.step), [6, 6])
    }

    func testSyncCountSurvivesACheckpoint() throws {
        let scheduler = try ReferenceSyncScheduler(options: options(alpha: 0.5, tau: 2))
        let context = context()
        for step in 1...4 {
            context.step = step
            try scheduler.afterOptimizerStep(context)
        }
        let state = try scheduler.saveState()
        XCTAssertEqual(Set(state.values.keys), Set(ReferenceSyncScheduler.descriptor.stateKeys))
        let resumed = try ReferenceSyncScheduler(options: options(alpha: 0.5, tau: 2))
        try resumed.restoreState(state)
        XCTAssertEqual(resumed.syncCount, 2)
        context.step = 6
        try resumed.afterOptimizerStep(context)
        XCTAssertEqual(context.recorded.last { $0.metric == "ref/sync_count" }?.value, 3)
    }

    func testMissingReferenceParameterIsNamed() throws {
        let scheduler = try ReferenceSyncScheduler(options: options(alpha: 0.5, tau: 1))
        let context = context()
        context.models[.reference]?["b"] = nil
        context.step = 1
        XCTAssertThrowsError(try scheduler.afterOptimizerStep(context)) {
            XCTAssertTrue("\($0)".contains("no parameter 'b'"), "\($0)")
        }
        XCTAssertEqual(referenceValues(context)["a"], reference["a"], "nothing is written when a parameter is missing")
    }
}
