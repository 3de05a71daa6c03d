import Foundation
import XCTest
@testable import KeelCore

// Test-only plugin types with real declarations, standing in for the method plugins of later issues,
// so that the graph rules can be exercised. Their computations are deliberately simple plain-Swift
// formulas on tiny tensors (no runtime ops exist yet).

/// −mean(chosen − rejected) over the batch: a pairwise loss that needs a reference, like DPO.
final class TestPairwiseLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-pairwise", kind: .loss, summary: "test: pairwise loss with a reference",
        options: [.double("beta", 0.1, in: .positive, "strength")],
        capabilities: [.pairwiseLoss], needs: [Signals.policyLogProbs.key, Signals.referenceLogProbs.key], consumes: [.paired], metrics: ["margin"])
    let beta: Double
    init(options: ResolvedOptions) { beta = options.double("beta") ?? 0 }
    func loss(_ input: LossInput) throws -> LossOutput {
        let scores = try input[Signals.policyLogProbs]
        let margins = zip(scores.chosen.logProbs.toArray(), scores.rejected.logProbs.toArray()).map { Double($0 - $1) }
        let margin = margins.reduce(0, +) / Double(margins.count)
        return LossOutput(loss: Tensor(shape: [], data: [Float(-beta * margin)]), metrics: ["margin": margin])
    }
}

/// mean(−log p) of single sequences: a non-pairwise, reference-free loss, like SFT.
final class TestSingleLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-single", kind: .loss, summary: "test: single-sequence reference-free loss",
        capabilities: [.referenceFree], needs: [Signals.policyLogProbs.key], consumes: [.paired, .unpaired, .sft], metrics: ["nll"])
    init(options: ResolvedOptions) {}
    func loss(_ input: LossInput) throws -> LossOutput {
        let scores = try input[Signals.policyLogProbs].chosen
        let values = scores.logProbs.toArray()
        let nll = -Double(values.reduce(0, +)) / Double(values.count)
        return LossOutput(loss: Tensor(shape: [], data: [Float(nll)]), metrics: ["nll": nll])
    }
}

/// A loss that needs a signal only the test providers compute, `test-signal` (through `test-vector`).
final class TestSignalLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-signal-loss", kind: .loss, summary: "test: loss reading a custom signal",
        needs: [TestSignalProvider.signal.key], consumes: [.paired])
    init(options: ResolvedOptions) {}
    func loss(_ input: LossInput) throws -> LossOutput { LossOutput(loss: Tensor(shape: [], data: [0]), metrics: [:]) }
}

/// A loss that needs a signal no provider computes.
final class TestUnprovidedLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-unprovided", kind: .loss, summary: "test: loss reading a signal nobody provides",
        needs: [SignalKey("nobody-computes-this")], consumes: [.paired])
    init(options: ResolvedOptions) {}
    func loss(_ input: LossInput) throws -> LossOutput { LossOutput(loss: Tensor(shape: [], data: [0]), metrics: [:]) }
}

/// Computes `test-signal` from `test-vector` (which needs the recipe's reward).
final class TestSignalProvider: SignalProvider {
    static let signal = Signal<Tensor>("test-signal")
    static let descriptor = PluginDescriptor(
        name: "test-signal-provider", kind: .signal, summary: "test: a provider",
        provides: [ProvidedSignal(signal.key, needs: [TestVectorProvider.vector.key], requires: .policy, "a test signal")])
    init(options: ResolvedOptions) {}
    func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {}
}

/// Computes `test-vector`; requires a reward scorer.
final class TestVectorProvider: SignalProvider {
    static let vector = Signal<[Float]>("test-vector")
    static let descriptor = PluginDescriptor(
        name: "test-vector-provider", kind: .signal, summary: "test: a provider that needs rewards",
        provides: [ProvidedSignal(vector.key, requires: .rewardScorer, "a test vector")])
    init(options: ResolvedOptions) {}
    func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {}
}

/// A second provider of `test-vector`, registered only where a test wants two.
final class TestVectorProvider2: SignalProvider {
    static let descriptor = PluginDescriptor(
        name: "test-vector-provider-2", kind: .signal, summary: "test: another provider of test-vector",
        provides: [ProvidedSignal(TestVectorProvider.vector.key, "the same test vector")])
    init(options: ResolvedOptions) {}
    func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {}
}

/// A loss that needs reward scores.
final class TestRewardLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-reward-loss", kind: .loss, summary: "test: loss weighted by rewards",
        capabilities: [.pairwiseLoss], needs: [Signals.rewards.key], consumes: [.paired])
    init(options: ResolvedOptions) {}
    func loss(_ input: LossInput) throws -> LossOutput { LossOutput(loss: Tensor(shape: [], data: [0]), metrics: [:]) }
}

/// Length of the response as its reward.
final class TestLengthReward: RewardPlugin {
    static let descriptor = PluginDescriptor(name: "test-length", kind: .reward, summary: "test: length as reward")
    init(options: ResolvedOptions) {}
    func score(prompt: String, response: String) throws -> Double { Double(response.count) }
}

/// A reward that can only compare pairs.
final class TestPairReward: RewardPlugin {
    static let descriptor = PluginDescriptor(name: "test-pair-reward", kind: .reward, summary: "test: pair comparator",
                                             capabilities: [.pairwiseReward], consumes: [.paired])
    init(options: ResolvedOptions) {}
    func score(prompt: String, response: String) throws -> Double {
        throw PluginStateError(message: "test-pair-reward only compares pairs")
    }
    func scorePair(prompt: String, chosen: String, rejected: String) throws -> (chosen: Double, rejected: Double) {
        chosen.count >= rejected.count ? (1, 0) : (0, 1)
    }
}

/// Unpaired examples (KTO-style) from nothing: one example per `count`.
final class TestUnpairedSource: DataPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-unpaired", kind: .data, summary: "test: unpaired examples",
        options: [.int("count", 3, in: .atLeast(1), "examples")], dataRole: .source, produces: .unpaired)
    let count: Int
    init(options: ResolvedOptions) { count = options.int("count") ?? 0 }
    func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        for i in 0..<count { data.train.append(.unpaired(UnpairedExample(id: "u\(i)", prompt: .text("p"), completion: .text("c"), label: true))) }
    }
}

/// A pair transform that only a pairwise loss can use (a stand-in for POET-like pair truncation).
final class TestPairOnlyTransform: DataPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-pair-only", kind: .data, summary: "test: pairwise-only transform",
        capabilities: [.requiresPairwiseLoss], dataRole: .transform, consumes: [.paired])
    init(options: ResolvedOptions) {}
    func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {}
}

/// Copies the policy into the reference every `every` steps (TR-DPO-like hard sync).
final class TestReferenceSync: SchedulerPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-ref-sync", kind: .scheduler, summary: "test: reference sync",
        options: [.int("every", 10, in: .atLeast(1), "steps between syncs")],
        capabilities: [.mutatesReference], controls: [ControlledValue.reference])
    let every: Int
    init(options: ResolvedOptions) { every = options.int("every") ?? 1 }
    func afterOptimizerStep(_ context: TrainingContext) throws {}
}

/// Sets the learning rate (halves it each step).
final class TestLRScheduler: SchedulerPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-lr", kind: .scheduler, summary: "test: learning-rate scheduler", controls: [ControlledValue.learningRate])
    init(options: ResolvedOptions) {}
    func afterOptimizerStep(_ context: TrainingContext) throws { context.learningRate /= 2 }
}

/// Another learning-rate scheduler, to collide with the first.
final class TestLRScheduler2: SchedulerPlugin {
    static let descriptor = PluginDescriptor(
        name: "test-lr-2", kind: .scheduler, summary: "test: another learning-rate scheduler", controls: [ControlledValue.learningRate])
    init(options: ResolvedOptions) {}
    func afterOptimizerStep(_ context: TrainingContext) throws {}
}

func testRegistry() -> PluginRegistry {
    var registry = PluginRegistry.builtin()
    let types: [any KeelPlugin.Type] = [
        TestPairwiseLoss.self, TestSingleLoss.self, TestSignalLoss.self, TestUnprovidedLoss.self, TestSignalProvider.self,
        TestVectorProvider.self, TestRewardLoss.self, TestLengthReward.self, TestPairReward.self,
        TestUnpairedSource.self, TestPairOnlyTransform.self, TestReferenceSync.self, TestLRScheduler.self, TestLRScheduler2.self,
    ]
    for type in types { XCTAssertNoThrow(try registry.register(type)) }
    return registry
}

/// A scratch folder with the files recipes refer to: a fake GGUF (magic only), a Hugging Face folder,
/// a non-GGUF file, and a two-pair TRL JSONL file.
final class RecipeFixture {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-recipes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("hf"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("empty-folder"), withIntermediateDirectories: true)
        try write("GGUF\u{3}\0\0\0", to: "model.gguf")
        try write("{}", to: "hf/config.json")
        try write("not a model", to: "notgguf.bin")
        try write("""
            {"prompt": "2+2?", "chosen": " 4", "rejected": " 5"}
            {"prompt": "Capital of France?", "chosen": " Paris", "rejected": " Lyon"}

            """, to: "pairs.jsonl")
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    @discardableResult
    func write(_ text: String, to name: String) throws -> URL {
        let url = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// Absolute path of a fixture file, as messages print it.
    func path(_ name: String) -> String { directory.appendingPathComponent(name).standardizedFileURL.path }

    /// Loads `yaml` as `r.yaml` in the fixture folder.
    func load(_ yaml: String, registry: PluginRegistry = testRegistry()) throws -> PluginGraph {
        try RecipeLoader(registry: registry).load(write(yaml, to: "r.yaml"), displayName: "r.yaml")
    }

    /// The diagnostics of a recipe that must fail (fails the test if it loads).
    func errors(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        do {
            _ = try load(yaml)
            XCTFail("recipe unexpectedly valid", file: file, line: line)
            return []
        } catch let errors as RecipeErrors {
            return errors.diagnostics.map(\.description)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return []
        }
    }
}

/// Repository paths: the repo root and the shared read-only inputs next to it.
enum RepoPaths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = root.appendingPathComponent("../shared").standardizedFileURL
    static let hhData = shared.appendingPathComponent("data/hh-harmless-1800.jsonl")
}
