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
            (#"{\#(base), "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}"#, "missing 'rope_scaling.low_freq_factor'"),
            (#"{\#(base), "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}"#, "'rope_scaling.rope_type' is 'yarn', which is not supported"),
            (#"{\#(base), "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0}}"#, "'rope_parameters.rope_type' is 'longrope'"),
            (#"{\#(base), "model_type": "gemma3_text", "rope_parameters": {"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_type": "linear", "factor": 2.0}}}"#,
             "rope_parameters.sliding_attention.rope_type 'linear' is not supported"),
            (#"{\#(base), "partial_rotary_factor": 0.5}"#, "'partial_rotary_factor' is 0.5: partial rotary embeddings are not supported"),
            (#"{\#(base), "model_type": "falcon"}"#, "model_type 'falcon' is not supported; expected one of llama, mistral"),
            (#"{\#(base), "architectures": ["LlamaForTokenClassification"]}"#, "architectures[0] 'LlamaForTokenClassification' is not supported"),
            (#"{\#(base), "attention_bias": true}"#, "'attention_bias' is true"),
            (#"{\#(base), "mlp_bias": true}"#, "'mlp_bias' is true"),
            (#"{\#(base), "hidden_act": "gelu"}"#, "'hidden_act' is 'gelu'; expected 'silu' for llama"),
            (#"{\#(base), "model_type": "gemma2", "hidden_activation": "gelu"}"#, "'hidden_activation' is 'gelu'; expected 'gelu_pytorch_tanh'"),
            (#"{\#(base), "model_type": "gemma3_text", "use_bidirectional_attention": true}"#, "'use_bidirectional_attention' is true"),
            (#"{\#(base), "attn_logit_softcapping": 50.0}"#, "'attn_logit_softcapping' is set, which llama does not use"),
            (#"{\#(base), "quantization_config": {"quant_method": "gptq"}}"#, "'quantization_config' is set"),
            (#"{\#(base), "model_type": "qwen2", "layer_types": ["full_attention"]}"#, "'layer_types' lists 1 layers; expected 2"),
            (#"{"hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 64}"#, "missing 'num_hidden_layers'"),
            (#"{\#(base), "num_key_value_heads": "3"}"#, "'num_key_value_heads' is 3; expected an integer"),
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

    /// The same settings in transformers 5's `rope_parameters` and in the older top-level keys parse to
    /// the same config (Llama 3's scaling, Gemma 3's per-layer-type bases).
    func testBothRoPELayoutsAgree() throws {
        let base = #""num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 4, "intermediate_size": 32, "vocab_size": 64"#
        let llama3 = #""rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32"#
        let v5 = try parse(#"{\#(base), "rope_parameters": {"rope_theta": 500000.0, \#(llama3)}}"#)
        let v4 = try parse(#"{\#(base), "rope_theta": 500000.0, "rope_scaling": {\#(llama3)}}"#)
        XCTAssertEqual(v5, v4)
        XCTAssertEqual(v5.ropeScaling, .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 32))
        let gemma5 = try parse(#"{\#(base), "model_type": "gemma3_text", "rope_parameters": {"full_attention": {"rope_theta": 1000000.0, "rope_type": "linear", "factor": 8.0}, "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}}"#)
        let gemma4 = try parse(#"{\#(base), "model_type": "gemma3_text", "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}"#)
        XCTAssertEqual(gemma5, gemma4)
        XCTAssertEqual(gemma5.slidingRopeTheta, 10_000)
        XCTAssertEqual(gemma5.ropeScaling, .linear(factor: 8))
        // Gemma 3's default layout: every sixth layer full, the rest sliding (here: 2 layers, both sliding).
        XCTAssertEqual(gemma5.layerTypes, [.sliding, .sliding])
    }

    /// Each fixture family's config.json survives huggingFaceJSON → parse unchanged, and names its class.
    func testFamilyConfigsRoundTripThroughHuggingFaceJSON() throws {
        for name in ["llama3", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "phi3"] {
            let url = ModelFixtures.familiesDirectory.appendingPathComponent(name).appendingPathComponent("config.json")
            let config = try LlamaConfig(huggingFaceConfigAt: url)
            let written = try config.huggingFaceJSON()
            XCTAssertEqual(try LlamaConfig(huggingFaceJSON: written), config, name)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: written) as? [String: Any])
            XCTAssertEqual(object["architectures"] as? [String], [config.family.causalLMArchitecture], name)
        }
    }
}
