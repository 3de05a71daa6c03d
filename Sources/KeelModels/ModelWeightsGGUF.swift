import Foundation

/// Loading a llama.cpp GGUF into HF-named, HF-ordered Float32 weights.
extension ModelWeights {
    public init(ggufPath path: String) throws {
        try self.init(gguf: try GGUFFile(path: path))
    }

    /// Dequantises every tensor, renames it (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`)
    /// and undoes llama.cpp's row permutation of the Q and K projections (see `LlamaCppLayout`).
    public init(gguf: GGUFFile) throws {
        let config = try LlamaConfig(gguf: gguf)
        let expected = Dictionary(uniqueKeysWithValues: config.tensorShapes().map { ($0.name, $0.shape) })
        var tensors: [String: Tensor] = [:]
        for info in gguf.tensors {
            guard let (name, permutedHeads) = LlamaCppLayout.huggingFaceName(ofGGUFTensor: info.name, config: config) else {
                throw ModelFormatError(source: gguf.path, message: "unexpected tensor '\(info.name)' for a llama model")
            }
            guard let shape = expected[name], info.shape == shape else {
                throw ModelFormatError(source: gguf.path, message: "tensor '\(info.name)' (\(name)) has shape \(info.shape), expected \(expected[name] ?? [])")
            }
            let tensor = Tensor.zeros(shape)
            if let heads = permutedHeads {
                let ggufOrder = try gguf.dequantize(info)
                LlamaCppLayout.unpermuteRows(ggufOrder.pointer, into: tensor.pointer,
                                             rows: shape[0], columns: shape[1], heads: heads)
            } else {
                try gguf.dequantize(info, into: tensor.pointer)
            }
            tensors[name] = tensor
        }
        try self.init(config: config, tensors: tensors, source: gguf.path)
    }
}

/// llama.cpp's conventions that differ from Hugging Face's.
///
/// RoPE: HF rotates the pairs (i, i + D/2) of a head (`rotate_half`), llama.cpp the adjacent pairs
/// (2i, 2i + 1). So `convert_hf_to_gguf.py` reorders the rows of W_q (over `heads`) and W_k (over
/// `kvHeads`) with
///
///     permute(W) = W.reshape(heads, 2, D/2, C).swapaxes(1, 2).reshape(heads·D, C)
///
/// i.e. GGUF row h·D + 2i + s holds HF row h·D + s·D/2 + i (s ∈ {0, 1}, i < D/2). We invert it on load
/// so the weights match transformers' and the forward pass uses the HF pairing.
public enum LlamaCppLayout {
    /// The HF name of a GGUF tensor, and the head count when its rows must be un-permuted.
    public static func huggingFaceName(ofGGUFTensor name: String, config: LlamaConfig) -> (name: String, permutedHeads: Int?)? {
        switch name {
        case "token_embd.weight": return (LlamaTensorName.embedTokens, nil)
        case "output_norm.weight": return (LlamaTensorName.finalNorm, nil)
        case "output.weight": return (LlamaTensorName.lmHead, nil)
        default: break
        }
        let parts = name.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), (0..<config.layers).contains(layer) else {
            return nil
        }
        let tensor: LlamaTensorName.Layer
        var heads: Int?
        switch parts[2] {
        case "attn_norm.weight": tensor = .inputNorm
        case "attn_q.weight": tensor = .qProj; heads = config.heads
        case "attn_k.weight": tensor = .kProj; heads = config.kvHeads
        case "attn_v.weight": tensor = .vProj
        case "attn_output.weight": tensor = .oProj
        case "ffn_norm.weight": tensor = .postAttentionNorm
        case "ffn_gate.weight": tensor = .gateProj
        case "ffn_up.weight": tensor = .upProj
        case "ffn_down.weight": tensor = .downProj
        default: return nil
        }
        return (LlamaTensorName.layer(layer, tensor), heads)
    }

    /// The HF row that GGUF row `row` holds, for heads of `rowsPerHead` (= D) rows.
    @inline(__always)
    public static func huggingFaceRow(ofGGUFRow row: Int, rowsPerHead: Int) -> Int {
        let head = row / rowsPerHead, within = row % rowsPerHead
        let pair = within / 2, half = within % 2
        return head * rowsPerHead + half * (rowsPerHead / 2) + pair
    }

    /// Copies the [rows, columns] matrix `source` (GGUF row order) to `destination` in HF row order.
    public static func unpermuteRows(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                                     rows: Int, columns: Int, heads: Int) {
        let rowsPerHead = rows / heads
        for row in 0..<rows {
            (destination + huggingFaceRow(ofGGUFRow: row, rowsPerHead: rowsPerHead) * columns)
                .update(from: source + row * columns, count: columns)
        }
    }
}
