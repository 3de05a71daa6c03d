import Foundation
import KeelRuntime

/// The decoder families Keel reads, by Hugging Face `model_type`. Each is the LLaMA layout plus the
/// features its `LlamaConfig` switches on (see `LlamaConfig.init(huggingFaceJSON:)`):
///
/// | family | differs from LLaMA by |
/// |---|---|
/// | llama | (Llama 3.x: `rope_type: llama3` frequency scaling) |
/// | mistral | sliding-window attention on every layer |
/// | qwen2 | biases on the q/k/v projections |
/// | qwen3 | RMSNorm of each query and key head before RoPE |
/// | gemma2 | (1 + w) RMSNorm, norms after attention and MLP too, GeGLU, embeddings × √hidden, `query_pre_attn_scalar`, attention and final-logit soft-capping, sliding layers |
/// | gemma3_text | Gemma 2's layout with q/k norms, no soft-capping, a RoPE base per layer type |
/// | phi3 | fused `qkv_proj` and `gate_up_proj` (split on load, fused again on export) |
public enum ModelFamily: String, Codable, CaseIterable, Sendable {
    case llama
    case mistral
    case qwen2
    case qwen3
    case gemma2
    case gemma3 = "gemma3_text"
    case phi3

    /// transformers' causal-LM class, written to `architectures` on export.
    public var causalLMArchitecture: String {
        switch self {
        case .llama: return "LlamaForCausalLM"
        case .mistral: return "MistralForCausalLM"
        case .qwen2: return "Qwen2ForCausalLM"
        case .qwen3: return "Qwen3ForCausalLM"
        case .gemma2: return "Gemma2ForCausalLM"
        case .gemma3: return "Gemma3ForCausalLM"
        case .phi3: return "Phi3ForCausalLM"
        }
    }

    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// The kind of attention of one layer (transformers' `layer_types`).
public enum AttentionKind: String, Codable, Sendable {
    case full = "full_attention"
    case sliding = "sliding_attention"
}

/// The MLP gate's activation: SwiGLU (silu) or GeGLU (PyTorch's tanh-approximated gelu).
public enum MLPActivation: String, Codable, Sendable {
    case silu
    case geluTanh = "gelu_pytorch_tanh"
}

/// RoPE frequency scaling (transformers' `rope_type`), applied to the base frequencies θ^(−2i/D).
public enum RoPEScaling: Codable, Equatable, Sendable {
    /// Every frequency divided by `factor` (position interpolation, Chen et al. 2023).
    case linear(factor: Float)
    /// Llama 3.1's remapping: wavelengths longer than original/lowFrequencyFactor are stretched by
    /// `factor`, shorter than original/highFrequencyFactor kept, and those between interpolated.
    case llama3(factor: Float, lowFrequencyFactor: Float, highFrequencyFactor: Float, originalMaxPositions: Int)

    /// transformers' `rope_type` name.
    public var typeName: String {
        switch self {
        case .linear: return "linear"
        case .llama3: return "llama3"
        }
    }

    /// The scaled frequencies, computed in Float as transformers' `_compute_llama3_parameters` and
    /// `_compute_linear_scaling_rope_parameters` do on the fp32 `inv_freq`.
    public func inverseFrequencies(_ base: [Float]) -> [Float] {
        switch self {
        case .linear(let factor):
            return base.map { $0 / factor }
        case let .llama3(factor, low, high, original):
            let lowWavelength = Float(original) / low, highWavelength = Float(original) / high
            return base.map { frequency in
                let wavelength = 2 * Float.pi / frequency
                if wavelength < highWavelength { return frequency }
                if wavelength > lowWavelength { return frequency / factor }
                let smooth = (Float(original) / wavelength - low) / (high - low)
                return (1 - smooth) * frequency / factor + smooth * frequency
            }
        }
    }
}

extension LlamaConfig {
    /// The RoPE table of layers of the given kind: the sliding layers' own base when the config has
    /// one (Gemma 3), else the model's θ and scaling.
    public func ropeTable(for kind: AttentionKind) -> RoPETable {
        if kind == .sliding, let slidingRopeTheta {
            return RoPETable(headDim: headDim, maxPositions: maxPositions, theta: slidingRopeTheta)
        }
        let base = RoPETable.inverseFrequencies(headDim: headDim, theta: ropeTheta)
        return RoPETable(headDim: headDim, maxPositions: maxPositions,
                         inverseFrequencies: ropeScaling?.inverseFrequencies(base) ?? base)
    }

    /// Layer `index`'s attention kind (`layerTypes`, full when empty).
    public func attentionKind(ofLayer index: Int) -> AttentionKind {
        layerTypes.isEmpty ? .full : layerTypes[index]
    }

    /// The attention scores' scale: query_pre_attn_scalar^−½ when set (Gemma), else 1/√headDim.
    public var attentionScale: Float {
        1 / (queryPreAttentionScalar ?? Float(headDim)).squareRoot()
    }
}
