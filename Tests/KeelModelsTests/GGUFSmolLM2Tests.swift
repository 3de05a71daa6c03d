import XCTest
@testable import KeelModels

/// The real SmolLM2-135M-Instruct Q4_1 file: header, metadata and tensor table.
final class GGUFSmolLM2Tests: XCTestCase {
    func testHeaderMetadataAndTensorTable() throws {
        let gguf = try GGUFFile(path: try ModelFixtures.requireSmolLM2())
        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf.metadataKeys.count, 33)
        XCTAssertEqual(gguf.tensors.count, 272)
        XCTAssertEqual(gguf.alignment, 32)
        XCTAssertEqual(gguf.metadata["general.architecture"]?.string, "llama")
        XCTAssertEqual(gguf.metadata["llama.block_count"]?.int, 30)
        XCTAssertEqual(gguf.metadata["llama.embedding_length"]?.int, 576)
        XCTAssertEqual(gguf.metadata["llama.feed_forward_length"]?.int, 1536)
        XCTAssertEqual(gguf.metadata["llama.attention.head_count"]?.int, 9)
        XCTAssertEqual(gguf.metadata["llama.attention.head_count_kv"]?.int, 3)
        XCTAssertEqual(gguf.metadata["llama.context_length"]?.int, 8192)
        XCTAssertEqual(gguf.metadata["llama.rope.freq_base"]?.float, 100_000)
        XCTAssertEqual(try gguf.requiredStringArray("tokenizer.ggml.tokens").count, 49152)
        XCTAssertNotNil(gguf.metadata["tokenizer.ggml.merges"]?.stringArray)

        let embedding = try XCTUnwrap(gguf.tensor(named: "token_embd.weight"))
        XCTAssertEqual(embedding.dimensions, [576, 49152])
        XCTAssertEqual(embedding.shape, [49152, 576])
        XCTAssertEqual(embedding.type, .q8_0)
        XCTAssertEqual(gguf.tensor(named: "blk.0.attn_q.weight")?.type, .q4_1)
        XCTAssertEqual(gguf.tensor(named: "blk.0.attn_k.weight")?.shape, [192, 576])
        XCTAssertEqual(gguf.tensor(named: "blk.0.attn_norm.weight")?.type, .f32)
        XCTAssertNil(gguf.tensor(named: "output.weight"), "SmolLM2 ties the LM head to the embedding")
        // The last tensor's data ends exactly at the end of the file.
        let last = try XCTUnwrap(gguf.tensors.max { $0.offset < $1.offset })
        XCTAssertEqual(gguf.dataOffset + last.offset + last.byteCount, gguf.fileSize)
    }
}
