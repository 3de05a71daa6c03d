import Foundation
import XCTest
import DPO
@testable import KeelCLI
import KeelCore

/// The method plugins as `keel` sees them: registered once, documented, composed by real recipes and
/// refused by the graph where they cannot run.
final class MethodRecipeTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let examples = root.appendingPathComponent("recipes/examples")

    var folder: URL!

    /// A scratch folder holding a small preference file for the recipes these tests write.
    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-examples-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("data"), withIntermediateDirectories: true)
        try Data("""
            {"prompt": "2+2?", "chosen": " 4", "rejected": " 5"}
            {"prompt": "Capital of France?", "chosen": " Paris", "rejected": " Lyon"}
            {"prompt": "Say hi", "chosen": " Hi!", "rejected": ""}

            """.utf8).write(to: folder.appendingPathComponent("data/preferences.jsonl"))
    }

    override func tearDownWithError() throws { try FileManager.default.removeItem(at: folder) }

    func load(_ yaml: String, as name: String = "r.yaml") throws -> PluginGraph {
        let url = folder.appendingPathComponent(name)
        try Data(yaml.utf8).write(to: url)
        return try RecipeLoader(registry: keelPluginRegistry()).load(url, displayName: name)
    }

    func refusals(_ yaml: String) -> [String] {
        do {
            _ = try load(yaml)
            XCTFail("recipe unexpectedly valid")
        } catch let errors as RecipeErrors {
            return errors.diagnostics.map(\.description)
        } catch {
            XCTFail("unexpected error \(error)")
        }
        return []
    }

    /// The SmolLM2 examples validate where they stand, reading the model scripts/setup.sh unpacks and the
    /// shared HH data; var-rm-hh.yaml reads the reward model reward-model-hh.yaml exports, which it requires.
    func testSmolLM2ExamplesAreValid() throws {
        let smollm2 = Self.examples.appendingPathComponent("smollm2")
        let files = try FileManager.default.contentsOfDirectory(atPath: smollm2.path).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(files, ["reward-model-hh.yaml", "var-rm-hh.yaml"])
        for file in files {
            let graph = try RecipeLoader(registry: keelPluginRegistry()).load(smollm2.appendingPathComponent(file), displayName: file)
            guard case .gguf = graph.recipe.model else { return XCTFail("\(file): expected the SmolLM2 GGUF") }
            XCTAssertEqual(graph.recipe.data.first?.name, "hh", file)
            XCTAssertEqual(graph.recipe.requirements.map(\.displayName), file == "var-rm-hh.yaml" ? ["reward-model-hh.yaml"] : [], file)
        }
    }

    func testRegistryHoldsTheMethodPlugins() {
        let registry = keelPluginRegistry()
        XCTAssertEqual(registry.names(of: .loss), ["deft-guidance", "dpo", "orpo", "reward-model", "sft", "simpo", "var"])
        XCTAssertEqual(registry.names(of: .reward), ["exact-answer-reward", "implicit", "keyword-reward", "length-reward", "rm", "topic-reward"])
        XCTAssertEqual(registry.names(of: .scheduler), ["ref-sync"])
        XCTAssertTrue(registry.names(of: .data).contains("poet"))
        XCTAssertTrue(registry.names(of: .data).contains("deft"))
        XCTAssertTrue(registry.names(of: .data).contains("generate-pairs"))
    }

    /// The recipes the main job runs (the top of recipes/) validate with the real plugins; the default one
    /// generates its pairs from the real model with a rule reward and answers held-out prompts before and after.
    func testMainJobRecipesValidate() throws {
        let registry = keelPluginRegistry()
        let top = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("recipes").path)
            .filter { $0.hasSuffix(".yaml") && !$0.hasPrefix(".") }
        XCTAssertEqual(Set(top), ["smollm2-concise.yaml", "tiny-dpo.yaml"])
        for file in top { _ = try RecipeLoader(registry: registry).load(Self.root.appendingPathComponent("recipes/\(file)")) }
        let recipe = try RecipeLoader(registry: registry).load(Self.root.appendingPathComponent("recipes/smollm2-concise.yaml")).recipe
        XCTAssertEqual(recipe.data.map(\.name), ["generate-pairs", "split"])
        XCTAssertEqual(recipe.reward.first?.name, "length-reward")
        XCTAssertEqual(recipe.loss.map(\.name), ["dpo"])
        XCTAssertGreaterThan(recipe.trainingConfig.evalGenerations, 0)
        guard case .gguf = recipe.model else { return XCTFail("expected the real SmolLM2 model") }
    }

    /// docs/plugins.md is `keel plugins --builtin-only --markdown`, regenerated whenever a declaration changes.
    func testPluginDocsAreCurrent() throws {
        let docs = try String(contentsOf: Self.root.appendingPathComponent("docs/plugins.md"), encoding: .utf8)
        XCTAssertEqual(docs, keelPluginRegistry().markdown() + "\n", "regenerate: swift run keel plugins --builtin-only --markdown > docs/plugins.md")
    }

    /// Every example recipe validates where it stands (the `keel validate` path: its data is generated,
    /// the models it reads are made by the recipes it requires), and builds the graph its comment promises.
    func testExampleRecipesValidate() throws {
        let expected: [String: (losses: [String], reference: Bool, schedulers: [String], poet: Bool)] = [
            "dpo.yaml": (["dpo"], true, [], false), "ipo.yaml": (["dpo"], true, [], false),
            "cdpo.yaml": (["dpo"], true, [], false), "robust.yaml": (["dpo"], true, [], false),
            "hinge.yaml": (["dpo"], true, [], false), "simpo.yaml": (["simpo"], false, [], false),
            "rpo.yaml": (["dpo", "sft"], true, [], false), "orpo.yaml": (["orpo"], false, [], false),
            "tr-dpo-soft.yaml": (["dpo"], true, ["ref-sync"], false), "tr-dpo-hard.yaml": (["dpo"], true, ["ref-sync"], false),
            "dpo-poet.yaml": (["dpo"], true, [], true), "simpo-poet.yaml": (["simpo"], false, [], true),
            "tiny-dpo.yaml": (["dpo"], true, [], false), "deft-dpo.yaml": (["dpo", "deft-guidance"], true, [], false),
            "reward-model.yaml": (["reward-model"], false, [], false),
            "var-rm.yaml": (["var"], true, [], false), "var-implicit.yaml": (["var"], true, [], false),
        ]
        let rewards = ["var-rm.yaml": "rm", "var-implicit.yaml": "implicit"]
        let requirements = ["var-rm.yaml": ["reward-model.yaml"], "var-implicit.yaml": ["dpo.yaml"]]
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.examples.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertEqual(Set(files), Set(expected.keys))
        for file in files.sorted() {
            let graph = try RecipeLoader(registry: keelPluginRegistry()).load(Self.examples.appendingPathComponent(file), displayName: file)
            let want = try XCTUnwrap(expected[file])
            XCTAssertEqual(graph.recipe.loss.map(\.name), want.losses, file)
            XCTAssertEqual(graph.needsReference, want.reference, file)
            XCTAssertEqual(graph.recipe.schedulers.map(\.name), want.schedulers, file)
            XCTAssertEqual(graph.recipe.data.contains { $0.name == "poet" }, want.poet, file)
            XCTAssertEqual(graph.recipe.reward.first?.name, rewards[file], file)
            XCTAssertEqual(graph.recipe.requirements.map(\.displayName), requirements[file] ?? [], file)
            guard case .tiny = graph.recipe.model else { return XCTFail("\(file): expected the tiny model") }
        }
        let soft = try load(String(contentsOf: Self.examples.appendingPathComponent("tr-dpo-soft.yaml"), encoding: .utf8))
        let hard = try load(String(contentsOf: Self.examples.appendingPathComponent("tr-dpo-hard.yaml"), encoding: .utf8))
        XCTAssertEqual(soft.recipe.schedulers[0].options.int("tau"), 1)
        XCTAssertLessThan(try XCTUnwrap(soft.recipe.schedulers[0].options.double("alpha")), 1)
        XCTAssertEqual(hard.recipe.schedulers[0].options.double("alpha"), 1)
        XCTAssertGreaterThan(try XCTUnwrap(hard.recipe.schedulers[0].options.int("tau")), 1)
    }

    /// RPO through the real graph: dpo and sft terms with their weights, metrics namespaced per loss.
    func testRPORecipeEvaluatesBothTerms() throws {
        let graph = try load("""
            model: {tiny: {}}
            data: [{name: preference-jsonl, path: data/preferences.jsonl}]
            loss:
              - {name: dpo, beta: 0.1}
              - {name: sft, weight: 0.5}
            training: {steps: 1}
            """)
        let loss = try graph.instantiate().loss
        let tokens = [2, 3]
        let policy = LossBatch.paired(chosen: SequenceScores(logProbs: Tensor([-3, -5]), tokenCounts: tokens),
                                      rejected: SequenceScores(logProbs: Tensor([-4, -4]), tokenCounts: tokens))
        let reference = LossBatch.paired(chosen: SequenceScores(logProbs: Tensor([-3.5, -5]), tokenCounts: tokens),
                                         rejected: SequenceScores(logProbs: Tensor([-4, -5]), tokenCounts: tokens))
        let (terms, metrics) = try loss.evaluate(LossInput(policy: policy, reference: reference))
        XCTAssertEqual(terms.map(\.weight), [1, 0.5])
        // h = 0.5 and −1: mean −log σ(0.1·h); sft = (3 + 5) / (2 + 3).
        let dpo = (log1p(exp(-0.05)) + log1p(exp(0.1))) / 2
        XCTAssertEqual(Double(terms[0].loss.item()), dpo, accuracy: 1e-6)
        XCTAssertEqual(Double(terms[1].loss.item()), 8.0 / 5, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(metrics["sft/loss"]), 8.0 / 5, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(metrics["dpo/rewards/accuracies"]), 0.5)
    }

    /// The trainer's token-level pass runs POET from the dpo-poet example, and nothing for plain dpo.
    func testTokenLevelPassRunsPOETOnly() throws {
        let pairs = [TokenizedPair(id: "p:1", prompt: [1, 2], chosen: [3, 4, 5, 0], rejected: [6, 0]),
                     TokenizedPair(id: "p:2", prompt: [1], chosen: [], rejected: [7, 0])]
        let poet = try load(String(contentsOf: Self.examples.appendingPathComponent("dpo-poet.yaml"), encoding: .utf8)).instantiate()
        var truncated = pairs
        let reports = try poet.transformTokenized(&truncated, split: "train")
        XCTAssertEqual(truncated, [TokenizedPair(id: "p:1", prompt: [1, 2], chosen: [3, 4], rejected: [6, 0])])
        XCTAssertEqual(reports.map(\.node), ["data[2] poet (train, tokens)"])
        XCTAssertEqual(reports.first?.skipped, ["zero-shared-length": 1])

        let plain = try load(String(contentsOf: Self.examples.appendingPathComponent("dpo.yaml"), encoding: .utf8)).instantiate()
        var untouched = pairs
        XCTAssertEqual(try plain.transformTokenized(&untouched, split: "train").count, 0)
        XCTAssertEqual(untouched, pairs)
    }

    /// The annotated recipe of docs/recipes.md validates against the real `dpo` declaration. Written into
    /// recipes/ as documented, so that its relative paths (model, shared data) resolve.
    func testDocumentedRecipeValidatesWithTheRealPlugins() throws {
        let docs = try String(contentsOf: Self.root.appendingPathComponent("docs/recipes.md"), encoding: .utf8)
        let start = try XCTUnwrap(docs.range(of: "```yaml\n"))
        let end = try XCTUnwrap(docs.range(of: "```", range: start.upperBound..<docs.endIndex))
        let model = Self.root.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        XCTAssertTrue(FileManager.default.fileExists(atPath: model.path), "run scripts/setup.sh first: \(model.path) is missing")
        let url = Self.root.appendingPathComponent("recipes/.docs-recipe-\(UUID().uuidString).yaml")
        try Data(docs[start.upperBound..<end.lowerBound].utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let graph = try RecipeLoader(registry: keelPluginRegistry()).load(url, displayName: "docs/recipes.md")
        XCTAssertEqual(graph.referenceNeededBy?.name, "dpo")
        XCTAssertTrue(graph.recipe.loss[0].type == DPOLoss.self)
    }

    func testRefSyncWithCachedReferenceLogProbsIsRefused() {
        XCTAssertEqual(refusals("""
            model: {tiny: {}}
            data: [{name: preference-jsonl, path: data/preferences.jsonl}]
            loss: {name: dpo}
            reference: {cache_logprobs: true}
            schedulers:
              - {name: ref-sync, tau: 4}
            training: {steps: 1}
            """), ["r.yaml:6:5: schedulers[0]: 'ref-sync' changes the reference model during training, but reference.cache_logprobs (line 4) computes reference log-probs once; expected cache_logprobs: false"])
    }

    func testRefSyncWithAReferenceFreeLossIsRefused() {
        XCTAssertEqual(refusals("""
            model: {tiny: {}}
            data: [{name: preference-jsonl, path: data/preferences.jsonl}, {name: drop-flagged}]
            loss: {name: simpo}
            schedulers: [{name: ref-sync}]
            training: {steps: 1}
            """), ["r.yaml:4:14: schedulers[0]: 'ref-sync' updates the reference model, but no plugin uses one (loss 'simpo' (line 3)); expected a loss that needs a reference"])
    }

    func testSimPOWithoutDroppingEmptyRepliesIsRefused() {
        XCTAssertEqual(refusals("""
            model: {tiny: {}}
            data:
              - {name: preference-jsonl, path: data/preferences.jsonl}
              - {name: drop-flagged, flag: empty-chosen}
            loss: {name: simpo}
            training: {steps: 1}
            """), ["r.yaml:5:7: loss: 'simpo' divides by completion length, but no data node drops pairs flagged empty-rejected; expected `- {name: drop-flagged}` in data"])
    }

    func testPOETWithANonPairwiseLossIsRefused() {
        XCTAssertEqual(refusals("""
            model: {tiny: {}}
            data: [{name: preference-jsonl, path: data/preferences.jsonl}, {name: poet}]
            loss: [{name: dpo}, {name: sft}]
            training: {steps: 1}
            """), ["r.yaml:2:64: data[1]: 'poet' only works with a pairwise loss, but loss[1] 'sft' (line 3) is not pairwise"])
    }

    func testDPOOptionsAreChecked() {
        let errors = refusals("""
            model: {tiny: {}}
            data: [{name: preference-jsonl, path: data/preferences.jsonl}]
            loss: {name: dpo, loss_type: robust, label_smoothing: 0.5}
            training: {steps: 1}
            """)
        XCTAssertEqual(errors.count, 1, "\(errors)")
        XCTAssertTrue(errors.first?.contains("0.5 is out of range; expected a number in [0, 0.5)") ?? false, "\(errors)")
    }
}
