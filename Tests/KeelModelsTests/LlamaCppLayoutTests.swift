import Foundation
import XCTest
@testable import KeelModels

final class LlamaCppLayoutTests: XCTestCase {
    /// The loader's row mapping undoes the converter's permutation (GGUF writing in the test).
    func testUnpermutingLoadInvertsTheConverterPermutation() throws {
        let directory = try ModelFixtures.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(at: directory) }
        for (heads, headDim, columns) in [(3, 8, 5), (1, 2, 1), (4, 6, 3)] {
            let rows = heads * headDim
            let hf = (0..<(rows * columns)).map { Float($0) }
            let gguf = llamaCppPermute(hf, rows: rows, columns: columns, heads: heads)
            if headDim > 2 { XCTAssertNotEqual(gguf, hf) }
            var writer = GGUFWriter()
            writer.addFloat32Tensor(name: "w", shape: [rows, columns], values: gguf)
            let path = directory.appendingPathComponent("w\(heads)-\(headDim).gguf").path
            try writer.write(to: path)
            let file = try GGUFFile(path: path)
            let restored = Tensor.zeros([rows, columns])
            try LlamaCppLayout.dequantizeUnpermuting(try XCTUnwrap(file.tensor(named: "w")), of: file, heads: heads, into: restored.pointer)
            XCTAssertEqual(restored.toArray(), hf, "heads \(heads), head dim \(headDim)")
        }
    }

    func testRowMappingByHand() {
        // One head of 4 rows: HF pairs (0, 2) and (1, 3) become adjacent, GGUF rows = HF rows [0, 2, 1, 3].
        XCTAssertEqual((0..<4).map { LlamaCppLayout.huggingFaceRow(ofGGUFRow: $0, rowsPerHead: 4) }, [0, 2, 1, 3])
        // Second head of 6 rows: GGUF rows 6..<12 = HF rows [6, 9, 7, 10, 8, 11].
        XCTAssertEqual((6..<12).map { LlamaCppLayout.huggingFaceRow(ofGGUFRow: $0, rowsPerHead: 6) }, [6, 9, 7, 10, 8, 11])
    }

    func testGGUFNamesMapToHuggingFaceNames() {
        let config = LlamaConfig.tiny
        XCTAssertEqual(LlamaCppLayout.huggingFaceName(ofGGUFTensor: "token_embd.weight", config: config)?.name, "model.embed_tokens.weight")
        let q = LlamaCppLayout.huggingFaceName(ofGGUFTensor: "blk.1.attn_q.weight", config: config)
        XCTAssertEqual(q?.name, "model.layers.1.self_attn.q_proj.weight")
        XCTAssertEqual(q?.permutedHeads, config.heads)
        XCTAssertEqual(LlamaCppLayout.huggingFaceName(ofGGUFTensor: "blk.0.attn_k.weight", config: config)?.permutedHeads, config.kvHeads)
        XCTAssertNil(LlamaCppLayout.huggingFaceName(ofGGUFTensor: "blk.0.attn_v.weight", config: config)?.permutedHeads)
        XCTAssertEqual(LlamaCppLayout.huggingFaceName(ofGGUFTensor: "blk.0.ffn_norm.weight", config: config)?.name,
                       "model.layers.0.post_attention_layernorm.weight")
        XCTAssertNil(LlamaCppLayout.huggingFaceName(ofGGUFTensor: "blk.2.attn_q.weight", config: config), "layer out of range")
        XCTAssertNil(LlamaCppLayout.huggingFaceName(ofGGUFTensor: "rope_freqs.weight", config: config))
    }
}
