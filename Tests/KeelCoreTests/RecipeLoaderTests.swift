import XCTest
@testable import KeelCore

/// Valid recipes: what they resolve to, with values and origins.
final class RecipeLoaderTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    func testMinimalRecipeResolvesDefaultsAndOrigins() throws {
        let graph = try fixture.load(RecipeErrorTests.head + "training:\n  steps: 10\n")
        let recipe = graph.recipe
        XCTAssertEqual(recipe.model, .gguf(path: fixture.path("model.gguf")))
        XCTAssertEqual(recipe.data.map(\.name), ["preference-jsonl"])
        XCTAssertEqual(recipe.data[0].options.string("path"), fixture.path("pairs.jsonl"))
        XCTAssertEqual(recipe.loss.map(\.name), ["test-pairwise"])
        XCTAssertEqual(recipe.loss[0].options.double("beta"), 0.1)
        XCTAssertEqual(recipe.loss[0].options.origin(of: "beta"), .recipe(Mark(line: 7, column: 9)))
        XCTAssertEqual(recipe.loss[0].weight, 1)
        XCTAssertEqual(recipe.trainingConfig.steps, 10)
        XCTAssertNil(recipe.trainingConfig.epochs)
        XCTAssertEqual(recipe.trainingConfig.batchSize, 8)
        XCTAssertEqual(recipe.training.origin(of: "batch_size"), .defaultValue)
        XCTAssertEqual(recipe.optimizerConfig.learningRate, 1e-6)
        XCTAssertEqual(recipe.outputName, "r")
        XCTAssertEqual(graph.dataShape, .paired)
        XCTAssertEqual(graph.referenceNeededBy?.name, "test-pairwise")
        XCTAssertNil(graph.split)
    }

    func testTinyModelWithReferenceFreeLossNeverLoadsTheReference() throws {
        let graph = try fixture.load("""
            model:
              tiny: {layers: 1, hidden: 32, heads: 2, kv_heads: 1}
            data: [{name: preference-jsonl, path: pairs.jsonl}]
            loss: {name: test-single}
            training: {epochs: 2, seed: 7}
            """)
        guard case .tiny(let tiny) = graph.recipe.model else { return XCTFail("expected a tiny model") }
        XCTAssertEqual([tiny.int("layers"), tiny.int("hidden"), tiny.int("heads"), tiny.int("kv_heads"), tiny.int("vocab")],
                       [1, 32, 2, 1, 256])
        XCTAssertNil(graph.referenceNeededBy)
        XCTAssertEqual(graph.recipe.trainingConfig.epochs, 2)
        XCTAssertEqual(graph.recipe.trainingConfig.seed, 7)
    }

    func testFullGraphWithWeightedLossesRewardSchedulerAndSplit() throws {
        let graph = try fixture.load("""
            model: hf
            data:
              - name: preference-jsonl
                path: pairs.jsonl
              - name: shuffle
                seed: 3
              - name: split
                eval_count: 1
            reward: {name: test-length}
            loss:
              - {name: test-pairwise, beta: 0.5}
              - {name: test-reward-loss, weight: 0.25}
            schedulers:
              - {name: test-ref-sync, every: 8}
              - {name: test-lr}
            training: {steps: 4, eval_every: 2, checkpoint_every: 2}
            output: {name: full-graph, dir: out}
            """)
        let recipe = graph.recipe
        XCTAssertEqual(recipe.model, .huggingFace(directory: fixture.path("hf")))
        XCTAssertEqual(recipe.data.map(\.name), ["preference-jsonl", "shuffle", "split"])
        XCTAssertEqual(recipe.reward.first?.name, "test-length")
        XCTAssertEqual(recipe.loss.map(\.weight), [1, 0.25])
        XCTAssertEqual(recipe.loss.map(\.weightOrigin), [.defaultValue, .recipe(Mark(line: 12, column: 38))])
        XCTAssertEqual(recipe.schedulers.map(\.name), ["test-ref-sync", "test-lr"])
        XCTAssertEqual(graph.split?.keyPath, "data[2]")
        XCTAssertEqual(recipe.output.string("dir"), fixture.path("out"))
        XCTAssertEqual(recipe.outputName, "full-graph")
    }

    /// `reward:` as a list is a weighted sum, like `loss:`: r = Σ wₖ·rₖ, each term's own score kept.
    func testRewardListIsAWeightedSumOfItsTerms() throws {
        let graph = try fixture.load(RecipeErrorTests.head + """
            reward:
              - {name: test-length, weight: 0.5}
              - {name: test-pair-reward}
            training: {steps: 1}
            """)
        XCTAssertEqual(graph.recipe.reward.map(\.keyPath), ["reward[0]", "reward[1]"])
        XCTAssertEqual(graph.recipe.reward.map(\.weight), [0.5, 1])
        let reward = try XCTUnwrap(try graph.instantiate().reward)
        XCTAssertTrue(reward.isComposite)
        let pair = try reward.scorePair(prompt: "p", chosen: "abcd", rejected: "ab")
        XCTAssertEqual(pair.chosen, 0.5 * 4 + 1)
        XCTAssertEqual(pair.rejected, 0.5 * 2 + 0)
        XCTAssertThrowsError(try reward.score(prompt: "p", response: "abcd"))   // a pairwise term refuses single scores
        XCTAssertTrue(graph.planText().contains("reward[0]: test-length"))
    }

    func testRewardListRefusesARepeatedTermAndABadWeight() {
        let problems = fixture.errors(RecipeErrorTests.head + """
            reward:
              - {name: test-length}
              - {name: test-length, weight: -1}
            training: {steps: 1}
            """)
        XCTAssertEqual(problems.count, 1, "\(problems)")
        XCTAssertTrue(problems.first?.contains("reward[1].weight") == true, "\(problems)")
        let repeated = fixture.errors(RecipeErrorTests.head + """
            reward: [{name: test-length}, {name: test-length, weight: 2}]
            training: {steps: 1}
            """)
        XCTAssertTrue(repeated.contains { $0.contains("reward[1]") && $0.contains("repeats reward[0]") }, "\(repeated)")
    }

    func testUnpairedDataWithSingleLossAndLearningRateScheduler() throws {
        let graph = try fixture.load("""
            model: model.gguf
            data: [{name: test-unpaired, count: 5}]
            loss: {name: test-single}
            schedulers: [{name: test-lr}]
            training: {steps: 1}
            """)
        XCTAssertEqual(graph.dataShape, .unpaired)
        XCTAssertNil(graph.referenceNeededBy)
    }

    func testAnchorsAndAliasesShareOptions() throws {
        let graph = try fixture.load("""
            model: model.gguf
            data:
              - &source {name: preference-jsonl, path: pairs.jsonl, limit: 1}
              - *source
            loss: {name: test-pairwise}
            training: {steps: 1}
            """)
        XCTAssertEqual(graph.recipe.data.map { $0.options.int("limit") }, [1, 1])
        XCTAssertEqual(graph.recipe.data[1].mark, Mark(line: 4, column: 5))
    }

    /// The annotated recipe of docs/recipes.md validates (with a test declaration of the `dpo` loss),
    /// so the documentation cannot drift from the decoder. It is placed in recipes/ as documented.
    func testDocumentedRecipeIsValid() throws {
        let docs = try String(contentsOf: RepoPaths.root.appendingPathComponent("docs/recipes.md"), encoding: .utf8)
        let start = try XCTUnwrap(docs.range(of: "```yaml\n"))
        let end = try XCTUnwrap(docs.range(of: "```", range: start.upperBound..<docs.endIndex))
        let model = RepoPaths.root.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        XCTAssertTrue(FileManager.default.fileExists(atPath: model.path), "run scripts/setup.sh first: \(model.path) is missing")
        let folder = RepoPaths.root.appendingPathComponent("recipes")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let url = folder.appendingPathComponent(".docs-recipe-\(UUID().uuidString).yaml")
        try Data(docs[start.upperBound..<end.lowerBound].utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        var registry = testRegistry()
        try registry.register(DocsDPOLoss.self)
        let graph = try RecipeLoader(registry: registry).load(url, displayName: "docs/recipes.md")
        XCTAssertEqual(graph.recipe.data.map(\.name), ["hh", "drop-flagged", "shuffle", "split"])
        XCTAssertEqual(graph.recipe.optimizerConfig.schedule, .cosine)
        XCTAssertEqual(graph.referenceNeededBy?.name, "dpo")
    }

    func testPlanShowsEveryValueWithItsOrigin() throws {
        let plan = try fixture.load(RecipeErrorTests.head + "training:\n  steps: 10\n").planText()
        let lines = plan.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[0], "recipe r.yaml")
        XCTAssertEqual(lines[1], "model: GGUF file \(fixture.path("model.gguf"))")
        XCTAssertEqual(lines[2], "reference: frozen copy of the starting policy, loaded for loss 'test-pairwise' (line 6)")
        XCTAssertTrue(lines.contains("  data[0]: preference-jsonl  [line 3:5]"), plan)
        XCTAssertTrue(lines.contains("    path  = \(fixture.path("pairs.jsonl"))  [line 4:11]"), plan)
        XCTAssertTrue(lines.contains("    limit = (all)  [default]"), plan)
        XCTAssertTrue(lines.contains("  loss: test-pairwise  [line 6:3]  weight 1.0 [default]"), plan)
        XCTAssertTrue(lines.contains("    beta = 0.1  [line 7:9]"), plan)
        XCTAssertTrue(lines.contains("  steps               = 10  [line 9:10]"), plan)
        XCTAssertTrue(lines.contains("  batch_size          = 8  [default]"), plan)
        XCTAssertTrue(lines.contains("schedulers: none"), plan)
    }
}

/// The options the documentation's `dpo` node uses.
final class DocsDPOLoss: LossPlugin {
    static let descriptor = PluginDescriptor(
        name: "dpo", kind: .loss, summary: "test declaration of the documented DPO node",
        options: [.double("beta", 0.1, in: .positive, "KL strength")],
        capabilities: [.pairwiseLoss], needs: [Signals.policyLogProbs.key, Signals.referenceLogProbs.key], consumes: [.paired])
    init(options: ResolvedOptions) {}
    func loss(_ input: LossInput) throws -> LossOutput { throw PluginStateError(message: "declaration only") }
}
