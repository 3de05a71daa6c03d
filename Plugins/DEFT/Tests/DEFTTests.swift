import Foundation
import KeelCore
import XCTest
@testable import DEFT

/// DEFT's statistics on hand-counted tokens and its selection with a fake policy whose scores the test
/// computes itself.
final class DEFTTests: XCTestCase {
    /// Chosen tokens: 1, 2, 2 | 3 (4 in all); rejected: 1, 1 | 0, 3 (4 in all); V = 5.
    static let handPairs = [
        TokenizedPair(id: "a:1", prompt: [4], chosen: [1, 2, 2], rejected: [1, 1]),
        TokenizedPair(id: "a:2", prompt: [4, 4], chosen: [3], rejected: [0, 3]),
    ]

    func testDifferentialDistributionFromTokenCounts() throws {
        let qDiff = try DEFTFilter.differentialDistribution(Self.handPairs, vocabularySize: 5)
        // Q_pos = (0, 1/4, 2/4, 1/4, 0), Q_neg = (1/4, 2/4, 0, 1/4, 0).
        XCTAssertEqual(qDiff, [-0.25, -0.25, 0.5, 0, 0])
        // Fifty pairs of scattered lengths and ids: the totals differ, the difference still sums to 0.
        let random = (0..<50).map { i in
            TokenizedPair(id: "r:\(i)", prompt: [], chosen: (0..<(1 + i % 9)).map { (i * 31 + $0 * 17) % 97 },
                          rejected: (0..<(1 + (i * 5) % 7)).map { (i * 13 + $0 * 29) % 97 })
        }
        XCTAssertEqual(try DEFTFilter.differentialDistribution(random, vocabularySize: 97).reduce(0, +), 0, accuracy: 1e-6)
        XCTAssertThrowsError(try DEFTFilter.differentialDistribution(Self.handPairs, vocabularySize: 3)) {
            XCTAssertTrue("\($0)".contains("pair a:2 has chosen token id 3"), "\($0)")
        }
    }

    /// The oracle scorer gives E = mean_t Q_diff(y_t); the filter asks it once per completion side with Q_diff.
    func testKeepsTheTopPairsByDifferentialReward() throws {
        let scorer = OracleScorer(vocabularySize: 5)
        let plugin = try DEFTFilter(options: options(["keep": .double(0.5)]))
        var pairs = Self.handPairs
        var report = DataNodeReport(node: "deft")
        try plugin.filter(&pairs, split: "train", scorer: scorer, report: &report)
        // R(a:1 chosen) = (−0.25 + 0.5 + 0.5)/3 = 0.25, R(a:1 rejected) = −0.25: score 0.5.
        // R(a:2 chosen) = 0, R(a:2 rejected) = (−0.25 + 0)/2 = −0.125: score 0.125.
        XCTAssertEqual(pairs.map(\.id), ["a:1"])
        XCTAssertEqual(scorer.vectors, [[-0.25, -0.25, 0.5, 0, 0], [-0.25, -0.25, 0.5, 0, 0]])
        XCTAssertEqual(report.exampleScores, [ExampleScore(id: "a:1", score: 0.5, kept: true),
                                              ExampleScore(id: "a:2", score: 0.125, kept: false)])
        XCTAssertEqual(report.produced, 1)
        XCTAssertEqual(report.skipped, [DEFTFilter.belowTopFraction: 1])
        XCTAssertEqual(report.metrics[DEFTFilter.Metric.scoreThreshold], 0.5)
        XCTAssertEqual(report.metrics[DEFTFilter.Metric.meanScore], 0.3125)

        // score: chosen ranks by R(x, y_w) alone: 0.25 vs 0, and asks the scorer once.
        let chosenOnly = try DEFTFilter(options: options(["keep": .double(0.5), "score": .string("chosen")]))
        let counting = OracleScorer(vocabularySize: 5)
        var again = Self.handPairs
        try chosenOnly.filter(&again, split: "train", scorer: counting, report: &report)
        XCTAssertEqual(again.map(\.id), ["a:1"])
        XCTAssertEqual(counting.vectors.count, 1)
    }

    /// Against a brute-force top-k: exactly the ⌈keep·n⌉ best, ties to the earlier pair, input order kept.
    func testSelectionIsTheExactTopFractionWithDeterministicTies() throws {
        let scores = [0.3, 0.9, 0.3, -1.0, 0.9, 0.3, 0.5, 0.3, 0.0, 0.3]
        let pairs = scores.indices.map { TokenizedPair(id: "p:\($0)", prompt: [], chosen: [$0], rejected: [0]) }
        for (keep, expected) in [(0.1, [1]), (0.2, [1, 4]), (0.25, [1, 4, 6]), (0.4, [0, 1, 4, 6]), (0.5, [0, 1, 2, 4, 6]), (1.0, Array(0..<10))] {
            let plugin = try DEFTFilter(options: options(["keep": .double(keep)]))
            var kept = pairs, report = DataNodeReport(node: "deft")
            try plugin.filter(&kept, split: "train", scorer: FixedScorer(chosen: scores), report: &report)
            XCTAssertEqual(kept.map(\.id), expected.map { "p:\($0)" }, "keep \(keep)")
            XCTAssertEqual(report.exampleScores.filter(\.kept).map(\.id), expected.map { "p:\($0)" }, "keep \(keep)")
        }
        XCTAssertEqual(try DEFTFilter(options: options(["keep": .double(0.07)])).keptCount(of: 100), 7)
    }

    func testMinExamplesFloorAndEvalPassThrough() throws {
        let plugin = try DEFTFilter(options: options(["keep": .double(0.01), "min_examples": .int(3)]))
        XCTAssertEqual(plugin.keptCount(of: 1000), 10)
        XCTAssertEqual(plugin.keptCount(of: 100), 3)
        XCTAssertEqual(plugin.keptCount(of: 2), 2)
        let scores = [0.1, 0.4, 0.2, 0.3]
        var pairs = scores.indices.map { TokenizedPair(id: "p:\($0)", prompt: [], chosen: [$0], rejected: [0]) }
        var report = DataNodeReport(node: "deft")
        try plugin.filter(&pairs, split: "train", scorer: FixedScorer(chosen: scores), report: &report)
        XCTAssertEqual(pairs.map(\.id), ["p:1", "p:2", "p:3"])
        var evalPairs = Self.handPairs
        try plugin.filter(&evalPairs, split: "eval", scorer: FixedScorer(chosen: []), report: &report)
        XCTAssertEqual(evalPairs, Self.handPairs)
    }

    func testAScorerReturningTheWrongCountIsRefused() throws {
        let plugin = try DEFTFilter(options: options([:]))
        var pairs = Self.handPairs, report = DataNodeReport(node: "deft")
        XCTAssertThrowsError(try plugin.filter(&pairs, split: "train", scorer: FixedScorer(chosen: [1]), report: &report)) {
            XCTAssertTrue("\($0)".contains("returned 1 and 1 values for 2 pairs"), "\($0)")
        }
    }

    /// Through a real recipe graph and `PluginInstances.transformTokenized`: the scorer reaches DEFT, the
    /// report is named like the other token-level nodes, and without a scorer the node is refused by name.
    func testTokenLevelPassThroughARecipe() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-deft-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data(#"{"prompt": "2+2?", "chosen": " 4", "rejected": " 5"}"#.utf8).write(to: folder.appendingPathComponent("p.jsonl"))
        let recipe = folder.appendingPathComponent("r.yaml")
        try Data("""
            model: {tiny: {}}
            data:
              - {name: preference-jsonl, path: p.jsonl}
              - {name: deft, keep: 0.5}
            loss: [{name: any-loss}]
            training: {steps: 1}
            """.utf8).write(to: recipe)
        var registry = PluginRegistry.builtin()
        try registry.register(DEFTFilter.self)
        try registry.register(AnyLoss.self)
        let instances = try RecipeLoader(registry: registry).load(recipe).instantiate()
        var pairs = Self.handPairs
        let reports = try instances.transformTokenized(&pairs, split: "train", scorer: OracleScorer(vocabularySize: 5))
        XCTAssertEqual(pairs.map(\.id), ["a:1"])
        XCTAssertEqual(reports.map(\.node), ["data[1] deft (train, tokens)"])
        var unscored = Self.handPairs
        XCTAssertThrowsError(try instances.transformTokenized(&unscored, split: "train")) {
            XCTAssertTrue("\($0)".contains("'deft'") && "\($0)".contains("no PolicyScorer"), "\($0)")
        }
    }

    /// L = −mean_b R(x_b, y_w,b): its value, its gradient (−1/B on each chosen reward, none on the
    /// rejected ones) and its metrics; without the `policy-expectations` signal it says what is missing.
    func testGuidanceIsMinusTheMeanChosenReward() throws {
        let chosen = Tensor([0.02, -0.01, 0.05]), rejected = Tensor([0.01, 0.0, -0.03])
        chosen.requiresGrad = true
        rejected.requiresGrad = true
        let scores = SequenceScores(logProbs: Tensor([-3, -4, -5]), tokenCounts: [2, 3, 4])
        let input = LossInput().with(Signals.policyExpectations, PairedTensors(chosen: chosen, rejected: rejected))
        let output = try DEFTGuidanceLoss(options: ResolvedOptions(defaultsOf: [])).loss(input)
        XCTAssertEqual(output.loss.item(), -0.02, accuracy: 1e-7)
        output.loss.backward()
        XCTAssertEqual(try XCTUnwrap(chosen.grad).toArray(), [-1 / 3, -1 / 3, -1 / 3])
        XCTAssertNil(rejected.grad?.toArray().first { $0 != 0 })
        XCTAssertEqual(try XCTUnwrap(output.metrics[DEFTGuidanceLoss.Metric.rewardMargin]), (0.06 - (-0.02)) / 3, accuracy: 1e-7)
        XCTAssertThrowsError(try DEFTGuidanceLoss(options: ResolvedOptions(defaultsOf: []))
            .loss(LossInput(policy: .paired(chosen: scores, rejected: scores)))) {
            XCTAssertTrue("\($0)".contains("no signal `policy-expectations`"), "\($0)")
        }
    }

    func options(_ overrides: [String: OptionValue]) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: DEFTFilter.descriptor.options.map { spec in
            overrides[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        })
    }
}

/// A teacher-forced oracle: pθ(v | x, y_<t) is one-hot on y_t, so E = mean over t of vector[y_t].
final class OracleScorer: PolicyScorer {
    let vocabularySize: Int
    var vectors: [[Float]] = []
    init(vocabularySize: Int) { self.vocabularySize = vocabularySize }

    func expectedValue(of vector: [Float], prompts: [[Int]], completions: [[Int]]) throws -> [Double] {
        vectors.append(vector)
        return completions.map { y in y.isEmpty ? 0 : y.map { Double(vector[$0]) }.reduce(0, +) / Double(y.count) }
    }
}

/// Returns fixed values for chosen completions (recognised as the first call) and 0 for rejected ones.
final class FixedScorer: PolicyScorer {
    let vocabularySize = 16
    let chosen: [Double]
    var calls = 0
    init(chosen: [Double]) { self.chosen = chosen }

    func expectedValue(of vector: [Float], prompts: [[Int]], completions: [[Int]]) throws -> [Double] {
        calls += 1
        return calls == 1 ? chosen : [Double](repeating: 0, count: chosen.count)
    }
}

/// A loss for the recipe of the pipeline test, which only needs the graph to have one (DEFT works with any).
final class AnyLoss: LossPlugin {
    static let descriptor = PluginDescriptor(name: "any-loss", kind: .loss, summary: "test: the mean policy log-prob",
                                             needs: [Signals.policyLogProbs.key], consumes: [.paired])
    init(options: ResolvedOptions) throws {}
    func loss(_ input: LossInput) throws -> LossOutput {
        let chosen = try input[Signals.policyLogProbs].chosen
        return LossOutput(loss: -chosen.logProbs.mean(), metrics: [:])
    }
}
