import Foundation
import XCTest
@testable import KeelCore

final class PluginRegistryTests: XCTestCase {
    final class BadName: DataPlugin {
        static let descriptor = PluginDescriptor(name: "Bad_Name", kind: .data, summary: "", dataRole: .filter)
        init(options: ResolvedOptions) {}
        func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
    }
    final class ReservedOption: DataPlugin {
        static let descriptor = PluginDescriptor(name: "reserved-option", kind: .data, summary: "",
                                                 options: [.double("weight", 1, "")], dataRole: .filter)
        init(options: ResolvedOptions) {}
        func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
    }
    final class DefaultOutOfRange: DataPlugin {
        static let descriptor = PluginDescriptor(name: "default-out-of-range", kind: .data, summary: "",
                                                 options: [.int("count", 0, in: .atLeast(1), "")], dataRole: .filter)
        init(options: ResolvedOptions) {}
        func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
    }
    final class WrongKind: DataPlugin {
        static let descriptor = PluginDescriptor(name: "wrong-kind", kind: .loss, summary: "")
        init(options: ResolvedOptions) {}
        func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
    }
    final class StateWithoutCheckpointable: DataPlugin {
        static let descriptor = PluginDescriptor(name: "stateful", kind: .data, summary: "", dataRole: .filter, stateKeys: ["x"])
        init(options: ResolvedOptions) {}
        func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
    }

    func registrationError(_ type: any KeelPlugin.Type) -> String? {
        var registry = PluginRegistry.builtin()
        do { try registry.register(type); return nil } catch { return "\(error)" }
    }

    func testRegistrationChecksDeclarations() {
        XCTAssertEqual(registrationError(BadName.self), "plugin 'Bad_Name': name must be lowercase letters, digits and '-', starting with a letter")
        XCTAssertEqual(registrationError(ReservedOption.self), "plugin 'reserved-option': option name 'weight' is reserved")
        XCTAssertEqual(registrationError(DefaultOutOfRange.self), "plugin 'default-out-of-range': default 0 of option 'count' is not an integer in [1, ∞)")
        XCTAssertEqual(registrationError(WrongKind.self), "plugin 'wrong-kind': declared kind loss but does not conform to its protocol")
        XCTAssertEqual(registrationError(StateWithoutCheckpointable.self), "plugin 'stateful': declares state keys but is not Checkpointable")
        XCTAssertEqual(registrationError(HHSource.self), "plugin 'hh': a plugin with this name is already registered")
    }

    final class GoodFilter: DataPlugin {
        static let descriptor = PluginDescriptor(name: "good-filter", kind: .data, summary: "", dataRole: .filter)
        init(options: ResolvedOptions) {}
        func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
    }

    /// A plugin library registers all its types or none: the good one before the bad one is not left behind.
    func testLibraryRegistrationIsAllOrNothing() throws {
        var registry = PluginRegistry.builtin()
        let library = URL(fileURLWithPath: "/plugins/libMixed.so")
        XCTAssertThrowsError(try registry.register([GoodFilter.self, ReservedOption.self], library: library)) { error in
            XCTAssertEqual("\(error)", "plugin 'reserved-option': option name 'weight' is reserved")
        }
        XCTAssertNil(registry.type(named: "good-filter"))
        XCTAssertNil(registry.library(of: "good-filter"))
        try registry.register([GoodFilter.self], library: library)
        XCTAssertEqual(registry.library(of: "good-filter"), library)
        XCTAssertNil(registry.library(of: "hh"), "built-ins come from no library")
        XCTAssertTrue(registry.markdown().contains("Custom plugin, loaded from `/plugins/libMixed.so`."))
    }

    func testBuiltinsAndExternalRegistration() throws {
        var registry = PluginRegistry.builtin()
        XCTAssertEqual(registry.names(of: .data), ["drop-flagged", "hh", "preference-jsonl", "shuffle", "split", "synthetic-preferences"])
        XCTAssertEqual(registry.names(of: .loss), [])
        try registry.register(TestPairwiseLoss.self)
        XCTAssertEqual(registry.names(of: .loss), ["test-pairwise"])
        XCTAssertEqual(registry.descriptor(named: "test-pairwise")?.metrics, ["margin"])
    }

    func testDocsComeFromDescriptors() {
        let markdown = PluginRegistry.builtin().markdown()
        XCTAssertTrue(markdown.contains("### `split` — data split\n\nseeded train/eval split by fraction or count\n"), markdown)
        XCTAssertTrue(markdown.contains("| `eval_count` | int | an integer in [1, ∞) | unset | number of examples for evaluation (or use eval_fraction) |"), markdown)
        XCTAssertTrue(markdown.contains("- checkpoint state: generator"), markdown)
        XCTAssertTrue(markdown.contains("## Loss plugins\n\nNone registered yet.\n"), markdown)
        XCTAssertEqual(TestPairwiseLoss.descriptor.helpText(), """
            test-pairwise  (loss)  test: pairwise loss with a reference
              capabilities: pairwise-loss
              needs: policy-logprobs, reference-logprobs
              consumes: paired
              metrics: margin
              beta  a number in (0, ∞); default: 0.1 — strength
            """)
    }

    func testSuggestionsUseEditDistanceWithSwaps() {
        XCTAssertEqual(editDistance("tiyn", "tiny"), 1)
        XCTAssertEqual(editDistance("kitten", "sitting"), 3)
        XCTAssertEqual(editDistance("", "abc"), 3)
        XCTAssertEqual(closestMatch(to: "batch_sise", in: RecipeSchema.training.map(\.name)), "batch_size")
        XCTAssertNil(closestMatch(to: "wandb", in: RecipeSchema.sections))
    }

    func testNumericRangesPrintMathematically() {
        XCTAssertEqual(NumericRange.positive.description, "(0, ∞)")
        XCTAssertEqual(NumericRange(lower: 0, upper: 1, upperOpen: true).description, "[0, 1)")
        XCTAssertEqual(NumericRange(upper: 0.5).description, "(-∞, 0.5]")
        XCTAssertFalse(NumericRange.positive.contains(0))
        XCTAssertTrue(NumericRange.unitInterval.contains(1))
    }
}

final class TrainingPieceTests: XCTestCase {
    func optimizer(_ values: [String: OptionValue]) -> OptimizerConfig {
        OptimizerConfig(ResolvedOptions(entries: RecipeSchema.optimizer.map { spec in
            values[spec.name].map { .init(spec: spec, value: $0, origin: .defaultValue) } ?? ResolvedOptions(defaultsOf: [spec]).entries[0]
        }))
    }

    /// Hand-computed: lr 1, warmup 10, 110 steps → decay over 100 steps.
    func testLearningRateSchedules() {
        let cosine = optimizer(["lr": .double(1), "schedule": .string("cosine"), "warmup_steps": .int(10), "min_lr_ratio": .double(0.1)])
        XCTAssertEqual(cosine.learningRate(step: 0, totalSteps: 110), 0)
        XCTAssertEqual(cosine.learningRate(step: 5, totalSteps: 110), 0.5)
        XCTAssertEqual(cosine.learningRate(step: 10, totalSteps: 110), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(step: 60, totalSteps: 110), 0.1 + 0.9 * 0.5, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(step: 110, totalSteps: 110), 0.1, accuracy: 1e-12)
        let linear = optimizer(["lr": .double(2), "schedule": .string("linear"), "warmup_steps": .int(10)])
        XCTAssertEqual(linear.learningRate(step: 35, totalSteps: 110), 2 * 0.75, accuracy: 1e-12)
        let constant = optimizer(["lr": .double(3)])
        XCTAssertEqual(constant.learningRate(step: 99, totalSteps: 100), 3)
    }

    func testWeightedLossNamespacesMetricsAndKeepsWeights() throws {
        let fixture = try RecipeFixture()
        let graph = try fixture.load("""
            model: model.gguf
            data: [{name: preference-jsonl, path: pairs.jsonl}]
            loss:
              - {name: test-pairwise, beta: 2}
              - {name: test-single, weight: 0.5}
            training: {steps: 1}
            """)
        let loss = try graph.instantiate().loss
        XCTAssertEqual(loss.metricNames, ["test-pairwise/loss", "test-pairwise/margin", "test-single/loss", "test-single/nll"])
        let chosen = SequenceScores(logProbs: Tensor(shape: [2], data: [-1, -2]), tokenCounts: [3, 4])
        let rejected = SequenceScores(logProbs: Tensor(shape: [2], data: [-3, -3]), tokenCounts: [2, 5])
        let (terms, metrics) = try loss.evaluate(LossInput(policy: .paired(chosen: chosen, rejected: rejected)))
        XCTAssertEqual(terms.map(\.weight), [1, 0.5])
        // margins 2 and 1 → mean 1.5; pairwise loss −β·1.5 = −3; nll of chosen = 1.5.
        XCTAssertEqual(terms.map { $0.loss.item() }, [-3, 1.5])
        XCTAssertEqual(metrics, ["test-pairwise/loss": -3, "test-pairwise/margin": 1.5, "test-single/loss": 1.5, "test-single/nll": 1.5])
    }
}
