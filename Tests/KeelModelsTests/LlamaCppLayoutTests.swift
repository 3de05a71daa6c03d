import XCTest
@testable import KeelModels

final class LlamaCppLayoutTests: XCTestCase {
    /// llama.cpp's `permute`, written out as its index arithmetic:
    /// W.reshape(heads, 2, D/2, C).swapaxes(1, 2) gives out[h][i][s] = W[h][s][i].
    private func llamaCppPermute(_ w: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
        let d = rows / heads
        var out = [Float](repeating: 0, count: w.count)
        for h in 0..<heads {
            for s in 0..<2 {
                for i in 0..<(d / 2) {
                    let source = h * d + s * (d / 2) + i   // index into (heads, 2, D/2)
                    let target = h * d + i * 2 + s         // index into (heads, D/2, 2)
                    for c in 0..<columns { out[target * columns + c] = w[source * columns + c] }
                }
            }
        }
        return out
    }

    func testUnpermuteInvertsTheConverterPermutation() {
        for (heads, headDim, columns) in [(3, 8, 5), (1, 2, 1), (4, 6, 3)] {
            let rows = heads * headDim
            let hf = (0..<(rows * columns)).map { Float($0) }
            let gguf = llamaCppPermute(hf, rows: rows, columns: columns, heads: heads)
            if headDim > 2 { XCTAssertNotEqual(gguf, hf) }
            var restored = [Float](repeating: -1, count: hf.count)
            gguf.withUnsafeBufferPointer { src in
                restored.withUnsafeMutableBufferPointer { dst in
                    LlamaCppLayout.unpermuteRows(src.baseAddress!, into: dst.baseAddress!, rows: rows, columns: columns, heads: heads)
                }
            }
            XCTAssertEqual(restored, hf, "heads \(heads), head dim \(headDim)")
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
