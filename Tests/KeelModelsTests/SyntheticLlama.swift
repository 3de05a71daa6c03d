import Foundation
@testable import KeelModels

/// llama.cpp's `permute` (convert_hf_to_gguf.py), written out as its index arithmetic, independently of
/// `LlamaCppLayout`: W.reshape(heads, 2, D/2, C).swapaxes(1, 2) gives out[h][i][s] = W[h][s][i].
func llamaCppPermute(_ w: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
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

/// A small random LLaMA in GGUF form, with the HF-order Float32 values a correct loader must produce.
///
/// With `quantized`, the embedding is Q8_0 (d = 1/64), the MLP Q4_1 (d = 1/16, m = −1/2) and v_proj F16,
/// and every value is drawn on those grids, so the expected floats are exact: q/64, n/16 − 1/2, k/8.
/// Q and K are stored in llama.cpp's permuted row order; everything else F32.
struct SyntheticLlama {
    static let quantizable = LlamaConfig(layers: 1, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, intermediate: 64,
                                         vocab: 48, rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 128,
                                         tiedEmbeddings: true, bosTokenId: 1, eosTokenId: 2, padTokenId: 2)

    let config: LlamaConfig
    var weights: [String: [Float]] = [:]
    var writer = GGUFWriter()

    init(config: LlamaConfig, seed: UInt64, quantized: Bool) {
        self.config = config
        var rng = Philox(seed: seed)
        writer.set("general.architecture", .string("llama"))
        writer.set("general.name", .string("synthetic"))
        writer.set("llama.block_count", .uint32(UInt32(config.layers)))
        writer.set("llama.context_length", .uint32(UInt32(config.maxPositions)))
        writer.set("llama.embedding_length", .uint32(UInt32(config.hidden)))
        writer.set("llama.feed_forward_length", .uint32(UInt32(config.intermediate)))
        writer.set("llama.attention.head_count", .uint32(UInt32(config.heads)))
        writer.set("llama.attention.head_count_kv", .uint32(UInt32(config.kvHeads)))
        writer.set("llama.rope.freq_base", .float32(config.ropeTheta))
        writer.set("llama.attention.layer_norm_rms_epsilon", .float32(config.rmsEps))
        writer.set("tokenizer.ggml.model", .string("gpt2"))
        writer.set("tokenizer.ggml.tokens", .array((0..<config.vocab).map { .string("tok\($0)") }))
        writer.set("tokenizer.ggml.token_type", .array((0..<config.vocab).map { _ in .int32(1) }))
        if let bos = config.bosTokenId { writer.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(bos))) }
        if let eos = config.eosTokenId { writer.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(eos))) }
        if let pad = config.padTokenId { writer.set("tokenizer.ggml.padding_token_id", .uint32(UInt32(pad))) }

        for (name, shape) in config.tensorShapes() {
            let count = shape.reduce(1, *)
            let ggufName = Self.ggufName(of: name)
            let isMLP = name.contains(".mlp.")
            if quantized && name == LlamaTensorName.embedTokens {
                var bytes = Data()
                var values: [Float] = []
                for _ in 0..<(count / 32) {
                    bytes.append(contentsOf: [0x00, 0x24])  // f16 0x2400 = 1/64
                    for _ in 0..<32 {
                        let q = Int8(truncatingIfNeeded: rng.nextUInt32())
                        bytes.append(UInt8(bitPattern: q))
                        values.append(Float(q) / 64)
                    }
                }
                weights[name] = values
                writer.addTensor(name: ggufName, dimensions: shape.reversed(), type: .q8_0, bytes: bytes)
            } else if quantized && isMLP {
                var bytes = Data()
                var values: [Float] = []
                for _ in 0..<(count / 32) {
                    bytes.append(contentsOf: [0x00, 0x2C, 0x00, 0xB8])  // d = 1/16, m = −1/2
                    let nibbles = (0..<32).map { _ in UInt8(rng.nextUInt32() % 16) }
                    for j in 0..<16 { bytes.append(nibbles[j] | nibbles[j + 16] << 4) }
                    values += nibbles.map { Float($0) / 16 - 0.5 }
                }
                weights[name] = values
                writer.addTensor(name: ggufName, dimensions: shape.reversed(), type: .q4_1, bytes: bytes)
            } else if quantized && name.hasSuffix("v_proj.weight") {
                let values = (0..<count).map { _ in Float(Int(rng.nextUInt32() % 33) - 16) / 8 }
                var bytes = Data()
                for v in values { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
                weights[name] = values
                writer.addTensor(name: ggufName, dimensions: shape.reversed(), type: .f16, bytes: bytes)
            } else {
                let values = (0..<count).map { _ in rng.nextNormal() }
                weights[name] = values
                var stored = values
                if name.hasSuffix("q_proj.weight") {
                    stored = llamaCppPermute(values, rows: shape[0], columns: shape[1], heads: config.heads)
                } else if name.hasSuffix("k_proj.weight") {
                    stored = llamaCppPermute(values, rows: shape[0], columns: shape[1], heads: config.kvHeads)
                }
                writer.addFloat32Tensor(name: ggufName, shape: shape, values: stored)
            }
        }
    }

    /// llama.cpp's tensor names (llama-arch.cpp LLM_TENSOR_NAMES), written out here independently.
    static func ggufName(of hfName: String) -> String {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let name = fixed[hfName] { return name }
        let parts = hfName.split(separator: ".", maxSplits: 3)  // model, layers, i, rest
        let suffixes = ["input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                        "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                        "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                        "mlp.down_proj.weight": "ffn_down.weight"]
        return "blk.\(parts[2]).\(suffixes[String(parts[3])]!)"
    }
}
