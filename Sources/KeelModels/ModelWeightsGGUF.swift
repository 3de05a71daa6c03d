import Foundation

/// Loading a llama.cpp GGUF into HF-named, HF-ordered Float32 weights.
extension ModelWeights {
    public init(ggufPath path: String) throws {
        try self.init(gguf: try GGUFFile(path: path))
    }

    /// Dequantises every tensor, renames it (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`),
    /// undoes llama.cpp's row permutation of LLaMA's Q and K projections (see `LlamaCppLayout`), the +1
    /// its converter adds to Gemma's norm weights, and splits Phi-3's fused projections.
    public init(gguf: GGUFFile) throws {
        let config = try LlamaConfig(gguf: gguf)
        try config.checkTensorCount(gguf.tensors.count, source: gguf.path)
        var expected = Dictionary(uniqueKeysWithValues: config.tensorShapes().map { ($0.name, $0.shape) })
        let fused = Dictionary(uniqueKeysWithValues: config.fusedTensors.map { ($0.name, $0.parts) })
        for (name, parts) in fused { expected[name] = [parts.reduce(0) { $0 + (expected[$1]?[0] ?? 0) }, config.hidden] }
        // Resolve every name and shape before converting anything, so a bad file fails fast.
        var plans: [(info: GGUFTensorInfo, name: String, permutedHeads: Int?)] = []
        for info in gguf.tensors {
            // Read into `config.ropeScaling` already.
            if info.name == LlamaConfig.ggufRoPEFactorsTensor { continue }
            guard let (name, permutedHeads) = LlamaCppLayout.huggingFaceName(ofGGUFTensor: info.name, config: config) else {
                throw ModelFormatError(source: gguf.path, message: "unexpected tensor '\(info.name)' for a \(config.family.rawValue) model")
            }
            guard let shape = expected[name], info.shape == shape else {
                throw ModelFormatError(source: gguf.path, message: "tensor '\(info.name)' (\(name)) has shape \(info.shape), expected \(expected[name] ?? [])")
            }
            plans.append((info, name, permutedHeads))
        }
        // One tensor per worker, largest first: allocation (zero-fill, page faults) and conversion then
        // both run on all cores, and the dynamic scheduling keeps the big embedding from finishing last.
        let order = plans.indices.sorted { plans[$0].info.elementCount > plans[$1].info.elementCount }
        var loaded = [Tensor?](repeating: nil, count: plans.count)
        let failure = FirstError()
        loaded.withUnsafeMutableBufferPointer { results in
            DispatchQueue.concurrentPerform(iterations: order.count) { k in
                let plan = plans[order[k]]
                do {
                    let tensor = Tensor.zeros(plan.info.shape)
                    if let heads = plan.permutedHeads {
                        try LlamaCppLayout.dequantizeUnpermuting(plan.info, of: gguf, heads: heads, into: tensor.pointer)
                    } else {
                        try gguf.dequantize(plan.info, into: tensor.pointer, concurrently: false)
                    }
                    results[order[k]] = tensor
                } catch {
                    failure.record(error)
                }
            }
        }
        if let error = failure.error { throw error }
        var tensors: [String: Tensor] = [:]
        for (plan, tensor) in zip(plans, loaded) {
            guard let tensor else { continue }
            if let parts = fused[plan.name] {
                try Self.split(tensor, into: parts, config: config, tensors: &tensors)
                continue
            }
            // llama.cpp's converter stores Gemma's norm weights as 1 + w.
            if config.normWeightOffset != 0 && tensor.shape.count == 1 && plan.name.hasSuffix("norm.weight") {
                for i in 0..<tensor.count { tensor.pointer[i] -= config.normWeightOffset }
            }
            tensors[plan.name] = tensor
        }
        try self.init(config: config, tensors: tensors, source: gguf.path)
    }
}

/// The first error thrown by concurrent workers.
final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?

    var error: Error? { lock.withLock { first } }

    func record(_ error: Error) {
        lock.withLock { if first == nil { first = error } }
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
        // Only the `llama` converter permutes Q and K; the others keep HF's rotate-half rows (NeoX RoPE).
        let permutes = config.family == .llama
        // Phi-3's fused tensors: attn_qkv = qkv_proj, ffn_up = gate_up_proj (`fusedTensors` lists both per layer).
        if config.family == .phi3, parts[2] == "attn_qkv.weight" || parts[2] == "ffn_up.weight" {
            return (config.fusedTensors[2 * layer + (parts[2] == "attn_qkv.weight" ? 0 : 1)].name, nil)
        }
        let tensor: LlamaTensorName.Layer
        var heads: Int?
        switch parts[2] {
        case "attn_norm.weight": tensor = .inputNorm
        case "attn_q.weight": tensor = .qProj; heads = permutes ? config.heads : nil
        case "attn_k.weight": tensor = .kProj; heads = permutes ? config.kvHeads : nil
        case "attn_v.weight": tensor = .vProj
        case "attn_q.bias": tensor = .qBias
        case "attn_k.bias": tensor = .kBias
        case "attn_v.bias": tensor = .vBias
        case "attn_output.weight": tensor = .oProj
        case "attn_q_norm.weight": tensor = .qNorm
        case "attn_k_norm.weight": tensor = .kNorm
        case "post_attention_norm.weight": tensor = .postAttentionNorm
        case "ffn_norm.weight": tensor = config.sandwichNorms ? .preFeedforwardNorm : .postAttentionNorm
        case "post_ffw_norm.weight": tensor = .postFeedforwardNorm
        case "ffn_gate.weight": tensor = .gateProj
        case "ffn_up.weight": tensor = .upProj
        case "ffn_down.weight": tensor = .downProj
        default: return nil
        }
        guard config.layerTensors.contains(tensor) else { return nil }
        return (LlamaTensorName.layer(layer, tensor), heads)
    }

    /// The HF row that GGUF row `row` holds, for heads of `rowsPerHead` (= D) rows.
    @inline(__always)
    public static func huggingFaceRow(ofGGUFRow row: Int, rowsPerHead: Int) -> Int {
        let head = row / rowsPerHead, within = row % rowsPerHead
        let pair = within / 2, half = within % 2
        return head * rowsPerHead + half * (rowsPerHead / 2) + pair
    }

    /// Dequantises a [rows, columns] Q or K projection row by row, writing each GGUF row where HF
    /// expects it (a row is a whole number of blocks, so rows convert independently).
    public static func dequantizeUnpermuting(_ tensor: GGUFTensorInfo, of gguf: GGUFFile, heads: Int,
                                             into destination: UnsafeMutablePointer<Float>) throws {
        let shape = tensor.shape
        guard shape.count == 2, heads > 0, shape[0] % (2 * heads) == 0, let source = gguf.data(of: tensor).baseAddress else {
            throw GGUFError(path: gguf.path, offset: nil, message: "tensor '\(tensor.name)' of shape \(shape) cannot hold \(heads) heads of row pairs")
        }
        let (rows, columns) = (shape[0], shape[1])
        let rowBytes = tensor.byteCount / rows
        for row in 0..<rows {
            try Dequantize.run(type: tensor.type, from: source + row * rowBytes, count: columns,
                               to: destination + huggingFaceRow(ofGGUFRow: row, rowsPerHead: rows / heads) * columns)
        }
    }
}
