import Foundation
import XCTest
@testable import KeelModels

/// Hugging Face directories: save, load, shards, and named errors.
final class ModelWeightsHFTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws { directory = try ModelFixtures.temporaryDirectory("weights-hf") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private func randomWeights(_ config: LlamaConfig, seed: UInt64) throws -> ModelWeights {
        var rng = Philox(seed: seed)
        var tensors: [String: Tensor] = [:]
        for (name, shape) in config.tensorShapes() {
            tensors[name] = Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in rng.nextNormal() })
        }
        return try ModelWeights(config: config, tensors: tensors)
    }

    private func assertBitwiseEqual(_ a: ModelWeights, _ b: ModelWeights, line: UInt = #line) {
        XCTAssertEqual(a.config, b.config, line: line)
        XCTAssertEqual(a.names, b.names, line: line)
        for name in a.names {
            XCTAssertEqual(a[name]?.toArray().map(\.bitPattern), b[name]?.toArray().map(\.bitPattern), name, line: line)
        }
    }

    func testSaveAndLoadRoundTripTiedAndUntied() throws {
        for config in [LlamaConfig.tiny, .tinyUntied] {
            let weights = try randomWeights(config, seed: 9)
            let out = directory.appendingPathComponent(config.tiedEmbeddings ? "tied" : "untied")
            try weights.saveHuggingFace(to: out, extraFiles: ["tokenizer.json": Data("{}".utf8)])
            assertBitwiseEqual(try ModelWeights(huggingFaceDirectory: out), weights)
            assertBitwiseEqual(try ModelWeights(path: out.path), weights)

            let file = try SafeTensorsFile(path: out.appendingPathComponent("model.safetensors").path)
            XCTAssertEqual(file.metadata["format"], "pt")
            XCTAssertEqual(file.tensor(named: "lm_head.weight") == nil, config.tiedEmbeddings)
            XCTAssertEqual(file.tensors.count, config.tensorCount)
            XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("tokenizer.json"), encoding: .utf8), "{}")
        }
        XCTAssertThrowsError(try randomWeights(.tiny, seed: 1).saveHuggingFace(to: directory, extraFiles: ["../x": Data()]))
        XCTAssertThrowsError(try ModelWeights(path: directory.appendingPathComponent("tied/config.json").path)) {
            XCTAssertTrue("\($0)".contains("expected a .gguf file or a Hugging Face model directory"))
        }
    }

    func testShardedDirectoryWithIndexLoads() throws {
        let weights = try randomWeights(.tiny, seed: 4)
        let named = weights.namedTensors
        let (first, second) = (Array(named.prefix(7)), Array(named.dropFirst(7)))
        try SafeTensors.write(path: directory.appendingPathComponent("model-00001-of-00002.safetensors").path, tensors: first)
        try SafeTensors.write(path: directory.appendingPathComponent("model-00002-of-00002.safetensors").path, tensors: second)
        var map: [String: String] = [:]
        for (name, _) in first { map[name] = "model-00001-of-00002.safetensors" }
        for (name, _) in second { map[name] = "model-00002-of-00002.safetensors" }
        try JSONSerialization.data(withJSONObject: ["metadata": [:] as [String: Any], "weight_map": map])
            .write(to: directory.appendingPathComponent("model.safetensors.index.json"))
        try LlamaConfig.tiny.huggingFaceJSON().write(to: directory.appendingPathComponent("config.json"))
        assertBitwiseEqual(try ModelWeights(huggingFaceDirectory: directory), weights)
    }

    func testHalfPrecisionShardIsConverted() throws {
        // A one-layer model saved in BF16 by hand: every value 1.5 (0x3FC0), read back as Float32.
        let config = LlamaConfig(layers: 1, hidden: 4, heads: 2, kvHeads: 1, headDim: 2, intermediate: 8, vocab: 6,
                                 rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 16, tiedEmbeddings: true)
        var header: [String: Any] = [:]
        var data: [UInt8] = []
        for (name, shape) in config.tensorShapes() {
            let count = shape.reduce(1, *)
            header[name] = ["dtype": "BF16", "shape": shape, "data_offsets": [data.count, data.count + 2 * count]]
            for _ in 0..<count { data += [0xC0, 0x3F] }
        }
        let json = try JSONSerialization.data(withJSONObject: header)
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(contentsOf: data)
        try file.write(to: directory.appendingPathComponent("model.safetensors"))
        try config.huggingFaceJSON().write(to: directory.appendingPathComponent("config.json"))
        let weights = try ModelWeights(huggingFaceDirectory: directory)
        for (_, tensor) in weights.namedTensors { XCTAssertTrue(tensor.toArray().allSatisfy { $0 == 1.5 }) }
    }

    func testMissingUnexpectedAndMisshapedTensorsAreNamed() throws {
        let weights = try randomWeights(.tiny, seed: 2)
        try LlamaConfig.tiny.huggingFaceJSON().write(to: directory.appendingPathComponent("config.json"))
        let weightsPath = directory.appendingPathComponent("model.safetensors").path
        func expectError(_ tensors: [(name: String, tensor: Tensor)], _ fragment: String, line: UInt = #line) throws {
            try SafeTensors.write(path: weightsPath, tensors: tensors)
            XCTAssertThrowsError(try ModelWeights(huggingFaceDirectory: directory), line: line) {
                XCTAssertTrue("\($0)".contains(fragment), "'\($0)' should mention '\(fragment)'", line: line)
            }
        }
        var tensors = weights.namedTensors
        try expectError(tensors.filter { $0.name != "model.norm.weight" }, "missing tensor 'model.norm.weight' (expected shape [16])")
        try expectError(tensors + [("model.layers.0.self_attn.q_proj.bias", Tensor.zeros([16]))],
                        "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'")
        tensors[1] = (tensors[1].name, Tensor.zeros([15]))
        try expectError(tensors, "tensor 'model.layers.0.input_layernorm.weight' has shape [15], expected [16]")

        XCTAssertThrowsError(try ModelWeights(config: .tiny, tensors: [:])) {
            XCTAssertTrue("\($0)".contains("missing tensor 'model.embed_tokens.weight'"))
        }
        var copy = weights
        XCTAssertThrowsError(try copy.replace("model.norm.weight", with: Tensor.zeros([3])))
        XCTAssertNoThrow(try copy.replace("model.norm.weight", with: Tensor.zeros([16])))
        XCTAssertEqual(copy["model.norm.weight"]?.toArray(), [Float](repeating: 0, count: 16))
    }
}
