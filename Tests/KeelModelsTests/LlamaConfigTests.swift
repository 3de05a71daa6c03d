import Foundation
import XCTest
@testable import KeelModels

final class LlamaConfigTests: XCTestCase {
    /// HuggingFaceTB/SmolLM2-135M-Instruct's config.json as published.
    private let smolLM2ConfigJSON = """
    {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
     "eos_token_id": 2, "head_dim": 64, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.041666666666666664,
     "intermediate_size": 1536, "is_llama_config": true, "max_position_embeddings": 8192, "mlp_bias": false,
     "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
     "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null,
     "rope_theta": 100000, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
     "use_cache": true, "vocab_size": 49152}
    """

    private func parse(_ json: String) throws -> LlamaConfig {
        try LlamaConfig(huggingFaceJSON: Data(json.utf8))
    }

    func testPublishedSmolLM2ConfigParses() throws {
        XCTAssertEqual(try parse(smolLM2ConfigJSON), .smolLM2_135M)
    }

    func testTransformersDefaultsAndVariants() throws {
        let minimal = try parse(#"{"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 64, "eos_token_id": [7, 8]}"#)
        XCTAssertEqual(minimal.kvHeads, 4)
        XCTAssertEqual(minimal.headDim, 4)
        XCTAssertEqual(minimal.rmsEps, 1e-6)
        XCTAssertEqual(minimal.ropeTheta, 10_000)
        XCTAssertEqual(minimal.maxPositions, 2048)
        XCTAssertFalse(minimal.tiedEmbeddings)
        XCTAssertEqual(minimal.eosTokenId, 7)
        XCTAssertNil(minimal.padTokenId)
        // transformers 5 nests θ in rope_parameters.
        let v5 = try parse(#"{"num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 64, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}"#)
        XCTAssertEqual(v5.ropeTheta, 500_000)
    }

    func testUnsupportedOrBrokenConfigsNameTheField() {
        let base = #""num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 64"#
        let cases: [(String, String)] = [
            (#"{\#(base), "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}"#, "rope_scaling of type 'llama3'"),
            (#"{\#(base), "model_type": "mistral"}"#, "model_type is 'mistral'"),
            (#"{\#(base), "attention_bias": true}"#, "'attention_bias' is true"),
            (#"{"hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 64}"#, "missing 'num_hidden_layers'"),
            (#"{\#(base), "num_key_value_heads": "3"}"#, "'num_key_value_heads' is 3, expected an integer"),
            (#"{\#(base), "num_key_value_heads": 3}"#, "heads 4 is not a multiple of kvHeads 3"),
            (#"{\#(base), "bos_token_id": 64}"#, "bosTokenId 64 is outside the vocabulary"),
            (#"{\#(base), "head_dim": 5}"#, "headDim 5 is odd"),
            ("not json", "not a JSON object"),
        ]
        for (json, fragment) in cases {
            XCTAssertThrowsError(try parse(json), fragment) { error in
                XCTAssertTrue("\(error)".contains(fragment), "'\(error)' should mention '\(fragment)'")
            }
        }
    }

    func testHuggingFaceJSONAndCodableRoundTrip() throws {
        for config in [LlamaConfig.tiny, .tinyUntied, .smolLM2_135M] {
            let json = try config.huggingFaceJSON()
            XCTAssertEqual(try LlamaConfig(huggingFaceJSON: json), config)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any])
            XCTAssertEqual(object["architectures"] as? [String], ["LlamaForCausalLM"])
            XCTAssertEqual(object["model_type"] as? String, "llama")
            XCTAssertEqual(object["rms_norm_eps"] as? Double, 1e-5, "written as the decimal 1e-05, not Float(1e-5) widened")
            XCTAssertEqual(object["tie_word_embeddings"] as? Bool, config.tiedEmbeddings)
            XCTAssertEqual(try JSONDecoder().decode(LlamaConfig.self, from: JSONEncoder().encode(config)), config)
        }
    }
}
