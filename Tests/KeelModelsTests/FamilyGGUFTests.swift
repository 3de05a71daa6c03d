import Foundation
import XCTest
import KeelRuntime
@testable import KeelModels

/// GGUFs of the family fixtures written as llama.cpp's convert_hf_to_gguf.py writes them (its tensor
/// names; Q/K rows permuted for `llama` only; Gemma's norm weights stored as 1 + w; Phi-3's fused
/// attn_qkv and ffn_up; the hyper-parameters under `<arch>.`), loaded back to transformers' log-probs.
final class FamilyGGUFTests: XCTestCase {
    func testLlamaCppLayoutsOfEachFamilyMatchTransformers() throws {
        for name in ["qwen2", "qwen3", "gemma2", "gemma3", "phi3"] {
            let (directory, fixture) = try FamilyParityTests.load(name)
            let out = try ModelFixtures.temporaryDirectory("gguf-\(name)")
            defer { try? FileManager.default.removeItem(at: out) }
            let path = out.appendingPathComponent("\(name).gguf").path
            let source = try ModelWeights(huggingFaceDirectory: directory)
            try Self.writeLlamaCppGGUF(source, to: path)
            let model = try LlamaModel(weights: ModelWeights(ggufPath: path))
            XCTAssertEqual(model.config.family, source.config.family, name)
            let batch = FamilyParityTests.batch(fixture)
            let values = withNoGrad { model.targetLogProbs(batch).toArray() }
            for (b, expected) in fixture.token_logprobs.enumerated() {
                for (t, logp) in expected.enumerated() {
                    XCTAssertEqual(Double(values[b * batch.length + t]), logp, accuracy: 1e-4, "\(name): row \(b), position \(t)")
                }
            }
        }
    }

    func testUnknownArchitectureIsRefusedByName() throws {
        let out = try ModelFixtures.temporaryDirectory("gguf-refused")
        defer { try? FileManager.default.removeItem(at: out) }
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("falcon"))
        let path = out.appendingPathComponent("falcon.gguf").path
        try writer.write(to: path)
        XCTAssertThrowsError(try ModelWeights(ggufPath: path)) { error in
            XCTAssertTrue("\(error)".contains("general.architecture is 'falcon'; expected one of gemma2, gemma3, llama, phi3, qwen2, qwen3"), "\(error)")
        }
    }

    /// Llama 3.1+'s scaling travels in GGUFs as `rope_freqs.weight`, one divisor per frequency: Meta's
    /// settings (low 1, high 4, original 8192) are recognised and give the same model as the Hugging
    /// Face config; divisors no such setting gives are refused.
    func testLlama3FrequencyFactorsReadAsLlama3Scaling() throws {
        let out = try ModelFixtures.temporaryDirectory("gguf-llama3")
        defer { try? FileManager.default.removeItem(at: out) }
        let (directory, fixture) = try FamilyParityTests.load("llama3")
        let source = try ModelWeights(huggingFaceDirectory: directory)
        var config = source.config
        let base = RoPETable.inverseFrequencies(headDim: config.headDim, theta: config.ropeTheta)
        func factors(_ scaling: RoPEScaling) -> Tensor {
            Tensor(zip(base, scaling.inverseFrequencies(base)).map { $0 / $1 })
        }
        let fixtureFactors = factors(try XCTUnwrap(config.ropeScaling))
        config.ropeScaling = .llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8192)
        let meta = try ModelWeights(config: config, tensors: Dictionary(uniqueKeysWithValues: source.namedTensors.map { ($0.name, $0.tensor) }))
        let path = out.appendingPathComponent("llama3.gguf").path
        try Self.writeLlamaCppGGUF(meta, to: path, extraTensors: [(LlamaConfig.ggufRoPEFactorsTensor, factors(config.ropeScaling!))])
        let loaded = try ModelWeights(ggufPath: path)
        XCTAssertEqual(loaded.config.ropeScaling, config.ropeScaling)
        let batch = FamilyParityTests.batch(fixture)
        let expected = withNoGrad { try! LlamaModel(weights: meta).targetLogProbs(batch).toArray() }
        let actual = withNoGrad { try! LlamaModel(weights: loaded).targetLogProbs(batch).toArray() }
        for (a, b) in zip(actual, expected) { XCTAssertEqual(a, b, accuracy: 1e-4) }

        // The fixture's own scaling (original context 32) is not one of Meta's settings.
        try Self.writeLlamaCppGGUF(meta, to: path, extraTensors: [(LlamaConfig.ggufRoPEFactorsTensor, fixtureFactors)])
        XCTAssertThrowsError(try ModelWeights(ggufPath: path)) { error in
            XCTAssertTrue("\(error)".contains("other RoPE frequency factors are not supported"), "\(error)")
        }
    }

    /// llama.cpp's GGUF tensor name of each Hugging Face layer tensor, by family.
    static func ggufLayerName(_ tensor: LlamaTensorName.Layer, family: ModelFamily) -> String {
        switch tensor {
        case .inputNorm: return "attn_norm.weight"
        case .qProj: return "attn_q.weight"
        case .kProj: return "attn_k.weight"
        case .vProj: return "attn_v.weight"
        case .qBias: return "attn_q.bias"
        case .kBias: return "attn_k.bias"
        case .vBias: return "attn_v.bias"
        case .oProj: return "attn_output.weight"
        case .qNorm: return "attn_q_norm.weight"
        case .kNorm: return "attn_k_norm.weight"
        case .postAttentionNorm: return gemmaFamilies.contains(family) ? "post_attention_norm.weight" : "ffn_norm.weight"
        case .preFeedforwardNorm: return "ffn_norm.weight"
        case .postFeedforwardNorm: return "post_ffw_norm.weight"
        case .gateProj: return "ffn_gate.weight"
        case .upProj: return "ffn_up.weight"
        case .downProj: return "ffn_down.weight"
        }
    }

    static let gemmaFamilies: Set<ModelFamily> = [.gemma2, .gemma3]

    static func writeLlamaCppGGUF(_ weights: ModelWeights, to path: String,
                                  extraTensors: [(String, Tensor)] = []) throws {
        let c = weights.config
        let arch = c.family == .mistral ? "llama" : c.family == .gemma3 ? "gemma3" : c.family.rawValue
        var writer = GGUFWriter()
        writer.set("general.architecture", .string(arch))
        for (key, value) in [("embedding_length", c.hidden), ("block_count", c.layers), ("feed_forward_length", c.intermediate),
                             ("attention.head_count", c.heads), ("attention.head_count_kv", c.kvHeads),
                             ("attention.key_length", c.headDim), ("context_length", c.maxPositions), ("vocab_size", c.vocab)] {
            writer.set("\(arch).\(key)", .uint32(UInt32(value)))
        }
        writer.set("\(arch).attention.layer_norm_rms_epsilon", .float32(c.rmsEps))
        writer.set("\(arch).rope.freq_base", .float32(c.ropeTheta))
        if let window = c.slidingWindow { writer.set("\(arch).attention.sliding_window", .uint32(UInt32(window))) }
        if gemmaFamilies.contains(c.family) {
            writer.set("\(arch).attention.sliding_window_pattern", .array(c.layerTypes.map { .bool($0 == .sliding) }))
        }
        if let cap = c.attentionSoftcap { writer.set("\(arch).attn_logit_softcapping", .float32(cap)) }
        if let cap = c.finalLogitSoftcap { writer.set("\(arch).final_logit_softcapping", .float32(cap)) }
        let gemma = gemmaFamilies.contains(c.family)
        for (name, tensor) in weights.huggingFaceTensors {
            var values = tensor.toArray()
            let ggufName: String
            switch name {
            case LlamaTensorName.embedTokens: ggufName = "token_embd.weight"
            case LlamaTensorName.finalNorm: ggufName = "output_norm.weight"
            case LlamaTensorName.lmHead: ggufName = "output.weight"
            default:
                let parts = name.split(separator: ".", maxSplits: 3)
                let layer = Int(parts[2])!, suffix = String(parts[3])
                if suffix == "self_attn.qkv_proj.weight" { ggufName = "blk.\(layer).attn_qkv.weight" }
                else if suffix == "mlp.gate_up_proj.weight" { ggufName = "blk.\(layer).ffn_up.weight" }
                else {
                    let kind = LlamaTensorName.Layer(rawValue: suffix)!
                    ggufName = "blk.\(layer).\(ggufLayerName(kind, family: c.family))"
                    if arch == "llama" && (kind == .qProj || kind == .kProj) {
                        values = llamaCppPermute(values, rows: tensor.shape[0], columns: tensor.shape[1],
                                                 heads: kind == .qProj ? c.heads : c.kvHeads)
                    }
                }
            }
            if gemma && name.hasSuffix("norm.weight") { values = values.map { $0 + 1 } }
            writer.addFloat32Tensor(name: ggufName, shape: tensor.shape, values: values)
        }
        for (name, tensor) in extraTensors { writer.addFloat32Tensor(name: name, shape: tensor.shape, values: tensor.toArray()) }
        try writer.write(to: path)
    }
}
