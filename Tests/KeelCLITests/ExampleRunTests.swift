import Foundation
import XCTest
@testable import KeelCLI
import KeelCore

/// Every tiny-model example of recipes/examples/ runs as it is, end to end, as `keel run` runs it (store,
/// checkpoints, export): the examples are copied unchanged into a fresh folder, so that the models they
/// export (`output.dir`, relative to the recipe) land in a fresh var/ too and the ones that read them
/// (`requires:`) must train their requirement first.
final class ExampleRunTests: XCTestCase {
    var sandbox: URL!

    override func setUpWithError() throws {
        sandbox = FileManager.default.temporaryDirectory.appendingPathComponent("keel-example-runs-\(UUID().uuidString)")
        let examples = sandbox.appendingPathComponent("recipes/examples")
        try FileManager.default.createDirectory(at: examples, withIntermediateDirectories: true)
        for file in try Self.tinyExamples() {
            try FileManager.default.copyItem(at: MethodRecipeTests.examples.appendingPathComponent(file), to: examples.appendingPathComponent(file))
        }
    }

    /// Best effort: SQLite may still be removing its -wal file as the last connection closes.
    override func tearDown() { if let sandbox { try? FileManager.default.removeItem(at: sandbox) } }

    /// The examples at the top of recipes/examples/ (the SmolLM2 ones are in smollm2/).
    static func tinyExamples() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: MethodRecipeTests.examples.path).filter { $0.hasSuffix(".yaml") }.sorted()
    }

    /// The examples that require another run first, so that their requirement is trained for them; then
    /// the rest, each one run; every run completes and exports its model.
    func testEveryTinyExampleRunsAsItIs() throws {
        let layout = RunLayout(varDirectory: sandbox.appendingPathComponent("var"))
        let registry = keelPluginRegistry()
        let files = try Self.tinyExamples()
        let graphs = try files.map { try RecipeLoader(registry: registry).load(sandbox.appendingPathComponent("recipes/examples/\($0)")) }
        let order = zip(files, graphs).sorted { !$0.1.recipe.requirements.isEmpty && $1.1.recipe.requirements.isEmpty }.map(\.0)
        XCTAssertEqual(Array(order.prefix(2)), ["var-implicit.yaml", "var-rm.yaml"])
        var lines: [String] = []
        let display = ProgressDisplay(isTerminal: false, write: { lines.append($0) })
        var runIDs: [String: String] = [:]
        for file in order {
            let started = Date()
            runIDs[file] = try TrainingRun.start(recipePath: sandbox.appendingPathComponent("recipes/examples/\(file)").path,
                                                 layout: layout, registry: registry, display: display)
            print(String(format: "%@: %.1f s", file, Date().timeIntervalSince(started)))
        }
        let store = try KeelStore(path: layout.store)
        for (file, runID) in runIDs {
            XCTAssertEqual(try store.run(runID)?.status, .completed, file)
            XCTAssertTrue(FileManager.default.fileExists(atPath: layout.export(runID).appendingPathComponent("config.json").path), file)
            // A causal LM's export carries generation_config.json (its EOS: generation stops there); a reward model's does not.
            let generationConfig = layout.export(runID).appendingPathComponent("generation_config.json")
            if file == "reward-model.yaml" {
                XCTAssertFalse(FileManager.default.fileExists(atPath: generationConfig.path), file)
            } else {
                let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: generationConfig)) as? [String: Any], file)
                XCTAssertEqual(json["eos_token_id"] as? Int, try XCTUnwrap(ModelLoading.pretrained(at: layout.export(runID).path).tokenizer.eosTokenID), file)
            }
        }
        // The two requirements ran first, for the recipes that need them, and again as examples of their own.
        let required = lines.filter { $0.contains("does not exist yet: training it first") }
        XCTAssertEqual(required.count, 2, "\(required)")
        XCTAssertEqual(try store.runs(withStatus: .completed).count, files.count + 2)
        for folder in ["reward-model", "dpo-policy", "dpo-reference"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: sandbox.appendingPathComponent("var/examples/\(folder)/config.json").path), folder)
        }
    }
}
