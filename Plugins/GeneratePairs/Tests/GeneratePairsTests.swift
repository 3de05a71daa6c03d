import Foundation
import KeelCore
import XCTest
@testable import GeneratePairs

/// generate-pairs with a scripted sampler and reward: best and worst reply by reward, ties skipped and
/// counted, seeds that depend only on (seed, line), chat and plain prompts.
final class GeneratePairsTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-genpairs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try FileManager.default.removeItem(at: folder) }

    func promptFile(_ text: String) throws -> String {
        let url = folder.appendingPathComponent("prompts.txt")
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func plugin(_ overrides: [String: OptionValue]) throws -> GeneratePairsSource {
        try GeneratePairsSource(options: ResolvedOptions(defaultsOf: GeneratePairsSource.descriptor.options.map { spec in
            overrides[spec.name].map { OptionSpec(spec.name, spec.type, default: .value($0), help: spec.help) } ?? spec
        }))
    }

    func testChosenIsTheBestReplyRejectedTheWorstAndTiesAreSkipped() throws {
        // Line 1 comment, line 3 blank: prompts on lines 2, 4, 5.
        let path = try promptFile("# everyday questions\nWhy is the sky blue?\n\nHow do I boil an egg?\nName a colour.\n")
        let source = try plugin(["prompts": .path(path), "samples": .int(3), "chat": .bool(false), "seed": .int(7)])
        // Replies by prompt; the reward is minus the reply's length, so the shortest reply is the best.
        let sampler = ScriptedSampler(replies: [
            "Why is the sky blue?": ["Rayleigh scattering.", "Air.", "Because of the way sunlight scatters in air."],
            "How do I boil an egg?": ["Boil it.", "Heat it.", "Cook it."],          // all 8 characters: a tie
            "Name a colour.": ["Red.", "Green.", "Blue."],
        ])
        var data = Dataset(), report = DataNodeReport(node: "generate-pairs")
        try source.generate(&data, report: &report, context: DataContext(seed: 0, node: "data[0]"),
                            sampler: sampler, reward: NegativeLengthReward())
        let pairs = data.train.compactMap { if case .pair(let p) = $0 { return p } else { return nil } }
        XCTAssertEqual(pairs.map(\.id), ["prompts.txt:2", "prompts.txt:5"])
        XCTAssertEqual(pairs.map(\.prompt), [.text("Why is the sky blue?"), .text("Name a colour.")])
        XCTAssertEqual(pairs.map(\.chosen), [.text("Air."), .text("Red.")])
        // 44 characters; "Green." (6) is the longest reply to the third prompt.
        XCTAssertEqual(pairs.map(\.rejected), [.text("Because of the way sunlight scatters in air."), .text("Green.")])
        XCTAssertEqual(report.produced, 2)
        XCTAssertEqual(report.skipped, [GeneratePairsSource.tie: 1])
        XCTAssertEqual(report.metrics[GeneratePairsSource.Metric.rewardChosen], -4)
        XCTAssertEqual(report.metrics[GeneratePairsSource.Metric.rewardRejected], -(44 + 6) / 2)
        XCTAssertEqual(sampler.requests.map(\.count), [3, 3, 3])
        XCTAssertEqual(sampler.requests.map(\.options), [SamplingRequest](repeating: source.sampling, count: 3))
        XCTAssertEqual(sampler.progressLines.last, "generate-pairs: 3/3 prompts, 2 pairs, 1 ties")
    }

    /// A prompt's seed depends on the seed and its line only: dropping another prompt (limit) or moving
    /// to another node position does not change it; another seed does.
    func testSeedsFollowFromTheSeedAndTheLine() throws {
        let path = try promptFile("a\nb\nc\n")
        func seeds(_ options: [String: OptionValue], trainingSeed: UInt64 = 0) throws -> [UInt64] {
            let sampler = ScriptedSampler(replies: [:])
            var data = Dataset(), report = DataNodeReport(node: "g")
            try plugin(["prompts": .path(path)].merging(options) { $1 })
                .generate(&data, report: &report, context: DataContext(seed: trainingSeed, node: "data[3]"),
                          sampler: sampler, reward: NegativeLengthReward())
            return sampler.requests.map(\.seed)
        }
        let all = try seeds(["seed": .int(1)])
        XCTAssertEqual(Set(all).count, 3)
        XCTAssertEqual(try seeds(["seed": .int(1)]), all)
        XCTAssertEqual(try seeds(["seed": .int(1), "limit": .int(2)]), Array(all.prefix(2)))
        XCTAssertNotEqual(try seeds(["seed": .int(2)]), all)
        // Without a seed option: a sub-stream of training.seed.
        XCTAssertEqual(try seeds([:], trainingSeed: 5), try seeds([:], trainingSeed: 5))
        XCTAssertNotEqual(try seeds([:], trainingSeed: 5), try seeds([:], trainingSeed: 6))
    }

    func testChatPromptsBecomeUserAndAssistantMessages() throws {
        let path = try promptFile("Hi?\n")
        let sampler = ScriptedSampler(replies: ["Hi?": ["Hello there!", "Hey."]])
        var data = Dataset(), report = DataNodeReport(node: "g")
        try plugin(["prompts": .path(path), "samples": .int(2)])
            .generate(&data, report: &report, context: DataContext(seed: 0, node: "data[0]"), sampler: sampler, reward: NegativeLengthReward())
        guard case .pair(let pair)? = data.train.first else { return XCTFail("no pair") }
        XCTAssertEqual(pair.prompt, .messages([ChatMessage(role: "user", content: "Hi?")]))
        XCTAssertEqual(pair.chosen, .messages([ChatMessage(role: "assistant", content: "Hey.")]))
        XCTAssertEqual(pair.rejected, .messages([ChatMessage(role: "assistant", content: "Hello there!")]))
        XCTAssertEqual(sampler.requests.first?.prompt, .messages([ChatMessage(role: "user", content: "Hi?")]))
    }

    func testAnEmptyPromptFileAndANonFiniteRewardAreRefused() throws {
        let empty = try plugin(["prompts": .path(try promptFile("# nothing\n\n"))])
        var data = Dataset(), report = DataNodeReport(node: "g")
        XCTAssertThrowsError(try empty.generate(&data, report: &report, context: DataContext(seed: 0, node: "d"),
                                                sampler: ScriptedSampler(replies: [:]), reward: NegativeLengthReward())) {
            XCTAssertTrue("\($0)".contains("has no prompts"), "\($0)")
        }
        let source = try plugin(["prompts": .path(try promptFile("x\n")), "chat": .bool(false)])
        XCTAssertThrowsError(try source.generate(&data, report: &report, context: DataContext(seed: 0, node: "d"),
                                                 sampler: ScriptedSampler(replies: ["x": ["a", "b", "c", "d"]]), reward: NaNReward())) {
            XCTAssertTrue("\($0)".contains("line 1 of") && "\($0)".contains("expected a finite number"), "\($0)")
        }
    }
}

/// Replies from a table (the prompt's plain text → replies; missing: "r0", "r1", …), recording requests.
final class ScriptedSampler: PolicySampler {
    let replies: [String: [String]]
    var requests: [(prompt: Turns, count: Int, options: SamplingRequest, seed: UInt64)] = []
    var progressLines: [String] = []
    init(replies: [String: [String]]) { self.replies = replies }

    func sample(prompts: [Turns], count: Int, options: SamplingRequest, seeds: [UInt64]) throws -> [[String]] {
        for (prompt, seed) in zip(prompts, seeds) { requests.append((prompt, count, options, seed)) }
        return prompts.map { Array((replies[$0.plainText] ?? (0..<count).map { "r\($0)" }).prefix(count)) }
    }

    func progress(_ line: String) { progressLines.append(line) }
}

final class NegativeLengthReward: RewardPlugin {
    static let descriptor = PluginDescriptor(name: "negative-length", kind: .reward, summary: "test: −characters")
    init(options: ResolvedOptions = ResolvedOptions(defaultsOf: [])) {}
    func score(prompt: String, response: String) throws -> Double { -Double(response.count) }
}

final class NaNReward: RewardPlugin {
    static let descriptor = PluginDescriptor(name: "nan", kind: .reward, summary: "test: NaN")
    init(options: ResolvedOptions = ResolvedOptions(defaultsOf: [])) {}
    func score(prompt: String, response: String) throws -> Double { .nan }
}
