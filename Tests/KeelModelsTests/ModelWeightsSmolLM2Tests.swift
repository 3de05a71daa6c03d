import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
@testable import KeelModels

/// The real SmolLM2-135M-Instruct weights, loaded from the Q4_1 GGUF, against published facts and the
/// PyTorch fixture.
final class ModelWeightsSmolLM2Tests: XCTestCase {
    /// Loaded once for the class: a load is ~0.5 GB of Float32.
    private static var cached: ModelWeights?

    private func weights() throws -> ModelWeights {
        if let cached = Self.cached { return cached }
        let path = try ModelFixtures.requireSmolLM2()
        func processCPUSeconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let (startWall, startCPU) = (DispatchTime.now(), processCPUSeconds())
        let weights = try ModelWeights(ggufPath: path)
        let wall = Double(DispatchTime.now().uptimeNanoseconds - startWall.uptimeNanoseconds) / 1e9
        // Wall time depends on what else runs on the machine; CPU time (all threads) does not.
        print(String(format: "SmolLM2-135M Q4_1 GGUF → Float32 ModelWeights: %.3f s wall, %.3f s CPU", wall, processCPUSeconds() - startCPU))
        Self.cached = weights
        return weights
    }

    func testConfigTensorsAndParameterCount() throws {
        let weights = try weights()
        XCTAssertEqual(weights.config, .smolLM2_135M)
        XCTAssertEqual(weights.names.count, 272)
        // 134,515,008: the parameter count of HuggingFaceTB/SmolLM2-135M (tied head counted once).
        XCTAssertEqual(weights.parameterCount, 134_515_008)
        XCTAssertEqual(try weights.tensor("model.embed_tokens.weight").shape, [49152, 576])
        XCTAssertEqual(try weights.layer(29, .kProj).shape, [192, 576])
        XCTAssertEqual(try weights.layer(0, .downProj).shape, [576, 1536])
        XCTAssertNil(weights["lm_head.weight"])
        XCTAssertTrue(weights.lmHead === weights["model.embed_tokens.weight"])
        for (name, tensor) in weights.namedTensors {
            let values = UnsafeBufferPointer(start: tensor.pointer, count: tensor.count)
            XCTAssertTrue(values.allSatisfy(\.isFinite), "\(name) has non-finite values")
        }
    }

    /// The first logits of pair 0's chosen sequence, recomputed here in Double from the loaded weights.
    /// At position 0 a token attends only to itself (softmax over one score is 1) and RoPE rotates by 0,
    /// so each layer's attention output is o_proj(v_proj(h)) with v shared across each GQA group: Q and K
    /// drop out and every other tensor's dequantisation is checked against transformers' (fp32 fixture).
    func testPositionZeroLogitsMatchPyTorch() throws {
        let weights = try weights()
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ModelFixtures.dpoFixturePath))) as? [String: Any]
        let pair = try XCTUnwrap((fixture?["pairs"] as? [[String: Any]])?.first)
        let debug = try XCTUnwrap(fixture?["debug"] as? [String: Any])
        let token = try XCTUnwrap((pair["ids_chosen"] as? [Int])?.first)
        let expectedLogits = try XCTUnwrap(debug["pair0_chosen_logits_pos0_first8_fp32"] as? [Double])
        let expectedArgmax = try XCTUnwrap(debug["pair0_chosen_argmax_pos0"] as? Int)

        let c = weights.config
        func row(_ t: Tensor, _ r: Int) -> UnsafeBufferPointer<Float> {
            UnsafeBufferPointer(start: t.pointer + r * t.shape[1], count: t.shape[1])
        }
        func matvec(_ w: Tensor, _ x: [Double]) -> [Double] {
            (0..<w.shape[0]).map { r in zip(row(w, r), x).reduce(0.0) { $0 + Double($1.0) * $1.1 } }
        }
        func rmsNorm(_ x: [Double], _ w: Tensor) -> [Double] {
            let scale = 1 / (x.reduce(0.0) { $0 + $1 * $1 } / Double(x.count) + Double(c.rmsEps)).squareRoot()
            return x.indices.map { x[$0] * scale * Double(w.pointer[$0]) }
        }
        let embedding = try weights.tensor(LlamaTensorName.embedTokens)
        var x = row(embedding, token).map(Double.init)
        for layer in 0..<c.layers {
            let h = rmsNorm(x, try weights.layer(layer, .inputNorm))
            let v = matvec(try weights.layer(layer, .vProj), h)
            let groupSize = c.heads / c.kvHeads
            let attention = (0..<c.queryDim).map { i in v[(i / c.headDim / groupSize) * c.headDim + i % c.headDim] }
            x = zip(x, matvec(try weights.layer(layer, .oProj), attention)).map(+)
            let h2 = rmsNorm(x, try weights.layer(layer, .postAttentionNorm))
            let gate = matvec(try weights.layer(layer, .gateProj), h2), up = matvec(try weights.layer(layer, .upProj), h2)
            let swiglu = zip(gate, up).map { g, u in g / (1 + exp(-g)) * u }
            x = zip(x, matvec(try weights.layer(layer, .downProj), swiglu)).map(+)
        }
        let logits = matvec(try XCTUnwrap(weights.lmHead), rmsNorm(x, try weights.tensor(LlamaTensorName.finalNorm)))
        for (i, expected) in expectedLogits.enumerated() {
            XCTAssertEqual(logits[i], expected, accuracy: 2e-3, "logit \(i)")
        }
        XCTAssertEqual(logits.indices.max { logits[$0] < logits[$1] }, expectedArgmax)
    }

    /// RoPE rotates rows i and i + D/2 of a head by the same frequency θ^(−2i/D), and training shapes
    /// the Q/K row norms by frequency. So with the HF row order restored, the row-norm profile over a
    /// head (summed over heads and layers) repeats in its two halves; in llama.cpp's order the first half
    /// holds frequencies 0..<D/4 twice and the second half D/4..<D/2, which differ by tens of percent.
    func testQKRowNormProfileRepeatsAcrossHeadHalves() throws {
        let weights = try weights()
        let d = weights.config.headDim
        func halfMismatch(_ profile: [Double]) -> Double {
            (0..<(d / 2)).reduce(0.0) { $0 + abs(profile[$1] - profile[$1 + d / 2]) / profile[$1] } / Double(d / 2)
        }
        for kind in [LlamaTensorName.Layer.qProj, .kProj] {
            var profile = [Double](repeating: 0, count: d)
            for layer in 0..<weights.config.layers {
                let w = try weights.layer(layer, kind)
                for r in 0..<w.shape[0] {
                    let values = UnsafeBufferPointer(start: w.pointer + r * w.shape[1], count: w.shape[1])
                    profile[r % d] += values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                }
            }
            let ggufOrder = (0..<d).map { profile[LlamaCppLayout.huggingFaceRow(ofGGUFRow: $0, rowsPerHead: d)] }
            XCTAssertLessThan(halfMismatch(profile), 0.05, "\(kind): halves of the HF-ordered head differ")
            XCTAssertGreaterThan(halfMismatch(ggufOrder), 0.15, "\(kind): the statistic does not tell the orders apart")
        }
    }
}
