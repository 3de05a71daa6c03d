import XCTest
@testable import KeelCore

final class DataPluginTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    /// Runs one data plugin of `type` with `options` on `input`.
    func run<P: DataPlugin>(_ type: P.Type, _ options: [String: OptionValue], input: Dataset = Dataset(),
                            seed: UInt64 = 0) throws -> (Dataset, DataNodeReport, P) {
        let resolved = ResolvedOptions(entries: P.descriptor.options.map { spec in
            if let value = options[spec.name] { return .init(spec: spec, value: value, origin: .defaultValue) }
            return ResolvedOptions(defaultsOf: [spec]).entries[0]
        })
        let plugin = try P(options: resolved)
        var data = input, report = DataNodeReport(node: P.descriptor.name)
        try plugin.process(&data, report: &report, context: DataContext(seed: seed, node: "data[0]"))
        return (data, report, plugin)
    }

    func pairs(_ data: Dataset) -> [PreferencePair] {
        data.train.compactMap { if case .pair(let p) = $0 { return p } else { return nil } }
    }

    // MARK: hh

    func testRealHHFileCountsSkipsAndFlagsByCause() throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: RepoPaths.hhData.path), "missing shared data \(RepoPaths.hhData.path)")
        let (data, report, _) = try run(HHSource.self, ["path": .path(RepoPaths.hhData.path)])
        XCTAssertEqual(report.produced, 1798)
        XCTAssertEqual(report.skipped, [HHSource.SkipCause.divergeBeforeLastTurn: 2])
        XCTAssertEqual(report.flagged, ["empty-chosen": 4])
        let empty = pairs(data).filter { $0.flags.contains(.emptyChosen) }.map(\.id)
        XCTAssertEqual(empty, ["hh-harmless-1800.jsonl:87", "hh-harmless-1800.jsonl:517",
                               "hh-harmless-1800.jsonl:926", "hh-harmless-1800.jsonl:1104"])
    }

    /// The first eight pairs split exactly as the PyTorch fixture's prompts and completions.
    func testHHSplitMatchesTheFixture() throws {
        let fixtureURL = RepoPaths.shared.appendingPathComponent("fixtures/smollm2_hh8_dpo.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtureURL)) as? [String: Any]
        let expected = try XCTUnwrap(json?["pairs"] as? [[String: Any]])
        let (data, _, _) = try run(HHSource.self, ["path": .path(RepoPaths.hhData.path), "limit": .int(8)])
        let loaded = pairs(data)
        XCTAssertEqual(loaded.count, 8)
        for (pair, reference) in zip(loaded, expected) {
            XCTAssertEqual(pair.prompt, .text(reference["prompt"] as? String ?? "?"))
            XCTAssertEqual(pair.chosen, .text(reference["completion_chosen"] as? String ?? "?"))
            XCTAssertEqual(pair.rejected, .text(reference["completion_rejected"] as? String ?? "?"))
        }
    }

    func testHandMadeHHCases() throws {
        let file = try fixture.write("""
            {"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello!", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: Go away."}
            {"chosen": "Human: Hi\\nAI: Hello", "rejected": "Human: Hi\\nAI: Bye"}
            {"chosen": "\\n\\nHuman: A\\n\\nAssistant: x\\n\\nHuman: B\\n\\nAssistant: y", "rejected": "\\n\\nHuman: A\\n\\nAssistant: z\\n\\nHuman: B\\n\\nAssistant: y"}
            {"chosen": "\\n\\nHuman: Hi\\n\\nAssistant:", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: Hey"}
            {"chosen": "\\n\\nHuman: Café?\\n\\nAssistant: Oui", "rejected": "\\n\\nHuman: Café?\\n\\nAssistant: Non"}
            """, to: "hh.jsonl")
        let (data, report, _) = try run(HHSource.self, ["path": .path(file.path)])
        XCTAssertEqual(pairs(data), [
            PreferencePair(id: "hh.jsonl:1", prompt: .text("\n\nHuman: Hi\n\nAssistant:"), chosen: .text(" Hello!"), rejected: .text(" Go away.")),
            PreferencePair(id: "hh.jsonl:4", prompt: .text("\n\nHuman: Hi\n\nAssistant:"), chosen: .text(""), rejected: .text(" Hey"),
                           flags: .emptyChosen),
            PreferencePair(id: "hh.jsonl:5", prompt: .text("\n\nHuman: Café?\n\nAssistant:"), chosen: .text(" Oui"), rejected: .text(" Non")),
        ])
        XCTAssertEqual(report.skipped, [HHSource.SkipCause.noSharedAssistantTurn: 1, HHSource.SkipCause.divergeBeforeLastTurn: 1])
        XCTAssertEqual(report.flagged, ["empty-chosen": 1])
    }

    func testHHErrorsAreLineNumbered() throws {
        let file = try fixture.write("""
            {"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: a", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: b"}
            {"chosen": "x", "rejected": 3}
            not json
            {"rejected": "x"}
            """, to: "bad-hh.jsonl")
        XCTAssertThrowsError(try run(HHSource.self, ["path": .path(file.path)])) {
            XCTAssertEqual(($0 as? DataError)?.problems, [
                "\(file.path):2: \"rejected\" is not a string",
                "\(file.path):3: invalid JSON; expected one JSON object per line",
                "\(file.path):4: missing \"chosen\"; expected a string",
            ])
        }
    }

    // MARK: preference-jsonl

    func testTRLStandardConversationalAndImplicitPrompt() throws {
        let file = try fixture.write("""
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "score_chosen": 9}
            {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}], "rejected": [{"role": "assistant", "content": "Go"}]}
            {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go"}]}
            {"prompt": "Same?", "chosen": "yes", "rejected": "yes"}
            {"prompt": "Say nothing", "chosen": "", "rejected": "No."}
            """, to: "trl.jsonl")
        let (data, report, _) = try run(PreferenceJSONLSource.self, ["path": .path(file.path)])
        let user = ChatMessage(role: "user", content: "Hi"), hello = ChatMessage(role: "assistant", content: "Hello")
        XCTAssertEqual(pairs(data), [
            PreferencePair(id: "trl.jsonl:1", prompt: .text("2+2?"), chosen: .text("4"), rejected: .text("5")),
            PreferencePair(id: "trl.jsonl:2", prompt: .messages([user]), chosen: .messages([hello]),
                           rejected: .messages([ChatMessage(role: "assistant", content: "Go")])),
            PreferencePair(id: "trl.jsonl:3", prompt: .messages([user]), chosen: .messages([hello]),
                           rejected: .messages([ChatMessage(role: "assistant", content: "Go")])),
            PreferencePair(id: "trl.jsonl:4", prompt: .text("Same?"), chosen: .text("yes"), rejected: .text("yes"),
                           flags: .identicalCompletions),
            PreferencePair(id: "trl.jsonl:5", prompt: .text("Say nothing"), chosen: .text(""), rejected: .text("No."),
                           flags: .emptyChosen),
        ])
        XCTAssertEqual(report.flagged, ["empty-chosen": 1, "identical-completions": 1])
    }

    func testTRLErrorsAreLineNumbered() throws {
        let file = try fixture.write("""
            {"prompt": "p", "chosen": "a"}
            {"prompt": "p", "chosen": [{"role": "assistant"}], "rejected": "b"}
            {"prompt": [{"role": "user", "content": "p"}], "chosen": "a", "rejected": "b"}
            {"chosen": "a", "rejected": "b"}
            [1, 2]
            {"prompt": "p", "chosen": 1, "rejected": "b"}
            {"chosen": [{"role": "user", "content": "p"}], "rejected": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "b"}]}
            """, to: "bad.jsonl")
        XCTAssertThrowsError(try run(PreferenceJSONLSource.self, ["path": .path(file.path)])) {
            XCTAssertEqual(($0 as? DataError)?.problems, [
                "\(file.path):1: missing \"rejected\"; expected a string or a list of {\"role\", \"content\"} messages",
                "\(file.path):2: \"chosen\"[0] is not a {\"role\", \"content\"} message with string values",
                "\(file.path):3: prompt, chosen and rejected mix strings and message lists; expected one format",
                "\(file.path):4: missing \"prompt\"; expected a prompt (or message lists with a shared beginning; for Anthropic HH dialogues use the hh source)",
                "\(file.path):5: expected a JSON object",
                "\(file.path):6: \"chosen\" has the wrong type; expected a string or a list of {\"role\", \"content\"} messages",
                "\(file.path):7: no \"prompt\" and chosen/rejected share no leading messages (or one is entirely shared); expected an explicit prompt",
            ])
        }
    }

    func testLimitReadsOnlyTheFirstExamples() throws {
        let (data, _, _) = try run(PreferenceJSONLSource.self, ["path": .path(fixture.path("pairs.jsonl")), "limit": .int(1)])
        XCTAssertEqual(data.train.map(\.id), ["pairs.jsonl:1"])
    }

    // MARK: shuffle, split, filter

    func numbered(_ n: Int) -> Dataset {
        Dataset(train: (0..<n).map { .sft(SFTExample(id: "\($0)", prompt: .text("p"), completion: .text("c"))) })
    }

    func testShuffleIsASeededPermutation() throws {
        let (a, _, _) = try run(ShuffleTransform.self, ["seed": .int(5)], input: numbered(50))
        let (b, _, _) = try run(ShuffleTransform.self, ["seed": .int(5)], input: numbered(50))
        let (c, _, _) = try run(ShuffleTransform.self, ["seed": .int(6)], input: numbered(50))
        let (d, _, _) = try run(ShuffleTransform.self, [:], input: numbered(50), seed: 5)
        XCTAssertEqual(a.train.map(\.id), b.train.map(\.id))
        XCTAssertNotEqual(a.train.map(\.id), c.train.map(\.id))
        XCTAssertNotEqual(a.train.map(\.id), d.train.map(\.id), "training.seed 5 uses a sub-stream, not seed 5 itself")
        XCTAssertNotEqual(a.train.map(\.id), numbered(50).train.map(\.id))
        XCTAssertEqual(a.train.map(\.id).sorted(), numbered(50).train.map(\.id).sorted())
    }

    /// A shuffle restored from a checkpoint draws the same next permutation as one that never stopped.
    func testShuffleResumesFromSavedState() throws {
        let (_, _, original) = try run(ShuffleTransform.self, ["seed": .int(9)], input: numbered(20))
        let saved = try JSONDecoder().decode(PluginState.self, from: JSONEncoder().encode(try original.saveState()))
        let context = DataContext(seed: 0, node: "data[0]")
        var continued = Array(0..<20)
        original.shuffle(&continued, context: context)

        let resumed = ShuffleTransform(options: ResolvedOptions(defaultsOf: ShuffleTransform.descriptor.options))
        try resumed.restoreState(saved)
        var afterResume = Array(0..<20)
        resumed.shuffle(&afterResume, context: context)
        XCTAssertEqual(afterResume, continued)
        XCTAssertEqual(Set(saved.values.keys), Set(ShuffleTransform.descriptor.stateKeys))
    }

    /// Fisher–Yates with unbiased bounded draws: each of the 6 orders of 3 items ≈ 1/6 of 60 000 shuffles
    /// (binomial sd ≈ 91; 5 sd = 456).
    func testShufflePermutationsAreUniform() {
        var rng = Philox(seed: 1)
        var counts: [[Int]: Int] = [:]
        for _ in 0..<60_000 {
            var items = [0, 1, 2]
            rng.shuffle(&items)
            counts[items, default: 0] += 1
        }
        XCTAssertEqual(counts.count, 6)
        for (order, count) in counts { XCTAssertLessThan(abs(count - 10_000), 456, "\(order)") }
    }

    func testSplitByCountAndFractionKeepsOrderAndIsSeeded() throws {
        let (byCount, _, _) = try run(SplitTransform.self, ["eval_count": .int(3), "seed": .int(1)], input: numbered(10))
        XCTAssertEqual(byCount.eval.count, 3)
        XCTAssertEqual(byCount.train.count, 7)
        XCTAssertEqual(Set(byCount.train.map(\.id) + byCount.eval.map(\.id)), Set((0..<10).map(String.init)))
        XCTAssertEqual(byCount.eval.map(\.id), byCount.eval.map(\.id).sorted { Int($0)! < Int($1)! })
        let (again, _, _) = try run(SplitTransform.self, ["eval_count": .int(3), "seed": .int(1)], input: numbered(10))
        XCTAssertEqual(again.eval.map(\.id), byCount.eval.map(\.id))
        let (byFraction, _, _) = try run(SplitTransform.self, ["eval_fraction": .double(0.25)], input: numbered(10))
        XCTAssertEqual(byFraction.eval.count, 3, "0.25 × 10 = 2.5 rounds to 3")
    }

    func testSplitThatLeavesNoTrainingDataFails() {
        XCTAssertThrowsError(try run(SplitTransform.self, ["eval_count": .int(4)], input: numbered(4))) {
            XCTAssertEqual("\($0)", "data[0]: an eval split of 4 out of 4 examples; expected at least 1 for evaluation and 1 for training")
        }
    }

    func testDropFlaggedRemovesFlaggedPairs() throws {
        let clean = PreferencePair(id: "a", prompt: .text("p"), chosen: .text("x"), rejected: .text("y"))
        let empty = PreferencePair(id: "b", prompt: .text("p"), chosen: .text(" "), rejected: .text("y"))
        let same = PreferencePair(id: "c", prompt: .text("p"), chosen: .text("y"), rejected: .text("y"))
        let input = Dataset(train: [.pair(clean), .pair(empty), .pair(same)])
        let (onlyEmpty, report, _) = try run(DropFlaggedFilter.self, ["flag": .string("empty-chosen")], input: input)
        XCTAssertEqual(onlyEmpty.train.map(\.id), ["a", "c"])
        XCTAssertEqual(report.skipped, ["empty-chosen": 1])
        let (any, _, _) = try run(DropFlaggedFilter.self, [:], input: input)
        XCTAssertEqual(any.train.map(\.id), ["a"])
    }

    /// The whole pipeline of a recipe, through `keel plan --data`'s path.
    func testRecipePipelineRunsInOrder() throws {
        let graph = try fixture.load("""
            model: model.gguf
            data:
              - {name: hh, path: \(RepoPaths.hhData.path)}
              - {name: drop-flagged}
              - {name: shuffle}
              - {name: split, eval_count: 100}
            loss: {name: test-pairwise}
            training: {steps: 1, seed: 3}
            """)
        let data = try graph.instantiate().loadData(seed: graph.recipe.trainingConfig.seed)
        XCTAssertEqual(data.train.count + data.eval.count, 1794)
        XCTAssertEqual(data.eval.count, 100)
        XCTAssertEqual(data.report.map(\.node), ["data[0] hh", "data[1] drop-flagged", "data[2] shuffle", "data[3] split"])
        XCTAssertEqual(data.report[1].skipped, ["empty-chosen": 4])
    }
}
