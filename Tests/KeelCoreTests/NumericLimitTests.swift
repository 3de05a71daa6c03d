import Foundation
import XCTest
@testable import KeelCore

/// Every numeric option has a range the machine can honour, and a run's memory is estimated before
/// anything is allocated: values at Int64.max, a 2^40-wide model, a billion layers are refused with
/// their range; a model whose shape passes but cannot fit is refused with the estimate.
final class NumericLimitTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    static let int64Max = "9223372036854775807"

    func testTrainingValuesAtInt64MaxAreOutOfRange() {
        let cases = [("steps", "[1, 100000000]"), ("batch_size", "[1, 1048576]"), ("grad_accum", "[1, 1048576]"),
                     ("max_length", "[1, 1048576]")]
        for (key, range) in cases {
            let lines = key == "steps" ? "  steps: \(Self.int64Max)\n" : "  steps: 10\n  \(key): \(Self.int64Max)\n"
            let line = key == "steps" ? 9 : 10
            XCTAssertEqual(fixture.errors(RecipeErrorTests.head + "training:\n" + lines), [
                "r.yaml:\(line):\(key.count + 5): training.\(key): \(Self.int64Max) is out of range; expected an integer in \(range)",
            ], key)
        }
        XCTAssertEqual(fixture.errors(RecipeErrorTests.head + "training:\n  epochs: \(Self.int64Max)\n"), [
            "r.yaml:9:11: training.epochs: \(Self.int64Max) is out of range; expected an integer in [1, 1000000]",
        ])
    }

    func testTinyModelShapesOutOfRangeAndTooLargeToFit() {
        let training = "data: [{name: preference-jsonl, path: pairs.jsonl}]\nloss: {name: test-pairwise}\ntraining: {steps: 1, batch_size: 1, max_length: 8}\n"
        XCTAssertEqual(fixture.errors("model: {tiny: {hidden: 1099511627776, heads: 1, kv_heads: 1}}\n" + training), [
            "r.yaml:1:24: model.tiny.hidden: 1099511627776 is out of range; expected an integer in [2, 65536]",
        ])
        XCTAssertEqual(fixture.errors("model: {tiny: {layers: 1000000000}}\n" + training), [
            "r.yaml:1:24: model.tiny.layers: 1000000000 is out of range; expected an integer in [1, 512]",
        ])
        let huge = fixture.errors("model: {tiny: {layers: 512, hidden: 65536, heads: 512, kv_heads: 512, intermediate: 262144}}\n" + training)
        XCTAssertEqual(huge.count, 1)
        XCTAssertTrue(huge.first?.hasPrefix("r.yaml:1:8: model.tiny: found a run that needs about ") ?? false, "\(huge)")
        XCTAssertTrue(huge.first?.contains("expected at most this machine's") ?? false, "\(huge)")
    }

    /// SmolLM2-135M at the shape `keel bench dpo` measures (2 pairs × 256 tokens, peak RSS 3.6 GB): the
    /// estimate is above the measurement and within twice it.
    func testEstimateOfSmolLM2IsAboveItsMeasuredPeak() throws {
        let gguf = RepoPaths.root.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: gguf.path), "scripts/setup.sh puts SmolLM2 there")
        let yaml = "model: \(gguf.path)\n" + "data: [{name: preference-jsonl, path: pairs.jsonl}]\nloss: {name: test-pairwise}\n"
            + "training: {steps: 1, batch_size: 2, max_length: 256}\n"
        let estimate = try MemoryEstimate.of(fixture.load(yaml).recipe)
        print("SmolLM2-135M, 2 pairs × 256 tokens: estimate \(estimate)")
        XCTAssertEqual(estimate.parameters, 134_515_008, accuracy: 1)
        XCTAssertGreaterThan(estimate.bytes, 3.6e9)
        XCTAssertLessThan(estimate.bytes, 7.2e9)
        XCTAssertNil(estimate.problem(physicalMemory: 8e9))
        XCTAssertNotNil(estimate.problem(physicalMemory: 4e9))
    }

    /// A pretrained model's shape is read from its configuration when the run starts: one too large is
    /// refused, recorded as the run's failure, before a byte of weights is read.
    func testRunOfAModelThatCannotFitFailsWithTheEstimate() throws {
        let project = try RunFixture()
        let model = project.directory.appendingPathComponent("huge")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        try Data("""
            {"model_type": "llama", "hidden_size": 65536, "num_hidden_layers": 512, "num_attention_heads": 512,
             "intermediate_size": 262144, "vocab_size": 1000000, "max_position_embeddings": 4096}
            """.utf8).write(to: model.appendingPathComponent("config.json"))
        try project.writeTinyDPO([("model: {tiny: {layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 259, seed: 0}}", "model: huge")])
        let result = try project.keel(["run", project.recipe.path])
        XCTAssertEqual(result.status, 1, result.output)
        XCTAssertTrue(result.error.contains("found a run that needs about "), result.error)
        let run = try XCTUnwrap(try project.store().run(try project.onlyRunID()))
        XCTAssertEqual(run.status, .failed)
        XCTAssertTrue(run.error?.contains("expected at most this machine's") ?? false, run.error ?? "no error")
    }
}
