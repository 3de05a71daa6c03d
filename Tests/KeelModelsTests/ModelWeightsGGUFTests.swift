import Foundation
import XCTest
@testable import KeelModels

/// GGUF → HF-named weights on synthetic models whose expected values are known exactly.
final class ModelWeightsGGUFTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws { directory = try ModelFixtures.temporaryDirectory("weights-gguf") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private func load(_ writer: GGUFWriter) throws -> ModelWeights {
        let path = directory.appendingPathComponent("m.gguf").path
        try writer.write(to: path)
        return try ModelWeights(ggufPath: path)
    }

    private func assertMatches(_ weights: ModelWeights, _ model: SyntheticLlama, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(weights.config, model.config, file: file, line: line)
        XCTAssertEqual(weights.names, model.config.tensorShapes().map(\.name), file: file, line: line)
        for (name, expected) in model.weights {
            XCTAssertEqual(weights[name]?.toArray(), expected, name, file: file, line: line)
        }
    }

    func testQuantizedModelLoadsExactlyWithHFNamesAndRowOrder() throws {
        let model = SyntheticLlama(config: SyntheticLlama.quantizable, seed: 7, quantized: true)
        assertMatches(try load(model.writer), model)
    }

    func testTiedAndUntiedFloatModels() throws {
        for config in [LlamaConfig.tiny, .tinyUntied] {
            let model = SyntheticLlama(config: config, seed: 3, quantized: false)
            let weights = try load(model.writer)
            assertMatches(weights, model)
            XCTAssertEqual(weights[LlamaTensorName.lmHead] == nil, config.tiedEmbeddings)
            XCTAssertEqual(weights.lmHead?.toArray(),
                           model.weights[config.tiedEmbeddings ? LlamaTensorName.embedTokens : LlamaTensorName.lmHead])
        }
    }

    func testMissingUnexpectedAndMisshapedTensorsAreNamed() throws {
        let model = SyntheticLlama(config: .tiny, seed: 1, quantized: false)
        func expectError(_ writer: GGUFWriter, _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try load(writer), line: line) { error in
                XCTAssertTrue("\(error)".contains(fragment), "'\(error)' should mention '\(fragment)'", line: line)
            }
        }
        var missing = model.writer
        missing.tensors.removeAll { $0.name == "blk.1.ffn_up.weight" }
        expectError(missing, "missing tensor 'model.layers.1.mlp.up_proj.weight'")

        var extra = model.writer
        extra.addFloat32Tensor(name: "rope_factors_long.weight", shape: [2], values: [1, 1])
        expectError(extra, "unexpected tensor 'rope_factors_long.weight'")

        var misshaped = model.writer
        let index = misshaped.tensors.firstIndex { $0.name == "blk.0.attn_k.weight" }!
        misshaped.tensors[index].dimensions = [8, 16]
        misshaped.tensors[index].bytes = Data(count: 8 * 16 * 4)
        expectError(misshaped, "tensor 'blk.0.attn_k.weight' (model.layers.0.self_attn.k_proj.weight) has shape [16, 8], expected [8, 16]")

        var wrongArchitecture = model.writer
        wrongArchitecture.set("general.architecture", .string("gpt2"))
        expectError(wrongArchitecture, "general.architecture is 'gpt2'; expected one of gemma2, gemma3, llama")

        var absurdLayers = model.writer
        absurdLayers.set("llama.block_count", .uint64(1 << 40))
        expectError(absurdLayers, "layers but only")
    }
}
