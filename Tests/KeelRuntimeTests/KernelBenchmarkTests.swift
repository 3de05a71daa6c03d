import XCTest
@testable import KeelRuntime

/// The synthetic step that `keel bench runtime` times must compute a real gradient: its backward is
/// compared with central finite differences of its own forward loss (Σ target log-probs) on a tiny
/// configuration, for entries of every kind of weight. Float32 forward, h = 1e-2 on O(1) weights:
/// tolerance 2e-3 + 2e-2·|g|.
final class KernelBenchmarkTests: XCTestCase {
    private let tiny = SyntheticStepConfig(vocab: 11, channels: 8, layers: 2, heads: 4, kvHeads: 2, headDim: 2,
                                           ffnHidden: 12, batch: 2, sequence: 5)

    func testSyntheticStepBackwardMatchesFiniteDifferences() {
        let step = SyntheticLLaMAStep(tiny)
        // Larger random weights than the benchmark's 0.02 so every path contributes measurably.
        var rng = Philox(seed: 5)
        let layer = step.layers[0], last = step.layers[1]
        for storage in [step.embedding, layer.wq, layer.wk, layer.wv, layer.wo, layer.wGate, layer.wUp, layer.wDown,
                        last.wq, last.wDown] {
            for i in 0..<storage.count { storage.pointer[i] = rng.nextNormal() * 0.5 }
        }
        func loss() -> Double {
            step.forward()
            return (0..<step.logp.count).reduce(0.0) { $0 + Double(step.logp.pointer[$1]) }
        }
        _ = loss()
        step.backward()
        let checks: [(String, TensorStorage, TensorStorage)] = [
            ("embedding", step.embedding, step.dEmbedding), ("finalNorm", step.finalNorm, step.dFinalNorm),
            ("wq0", layer.wq, layer.dwq), ("wk0", layer.wk, layer.dwk), ("wv0", layer.wv, layer.dwv),
            ("wo0", layer.wo, layer.dwo), ("attnNorm0", layer.attnNorm, layer.dAttnNorm),
            ("ffnNorm0", layer.ffnNorm, layer.dFfnNorm), ("wGate0", layer.wGate, layer.dwGate),
            ("wUp0", layer.wUp, layer.dwUp), ("wDown1", last.wDown, last.dwDown),
        ]
        let h: Float = 1e-2
        for (name, weight, grad) in checks {
            for i in stride(from: 0, to: weight.count, by: max(1, weight.count / 5)) {
                let original = weight.pointer[i]
                weight.pointer[i] = original + h
                let up = loss()
                weight.pointer[i] = original - h
                let down = loss()
                weight.pointer[i] = original
                let numeric = (up - down) / Double(2 * h), analytic = Double(grad.pointer[i])
                XCTAssert(abs(numeric - analytic) <= 2e-3 + 2e-2 * abs(analytic),
                          "\(name)[\(i)]: analytic \(analytic) vs numeric \(numeric)")
            }
        }
    }

    func testStepMeasurementProfilesTheFusedKernels() {
        let result = RuntimeBenchmark.measureStep(tiny, repetitions: 1)
        let names = Set(result.kernels.map(\.name))
        for kernel in ["attention.forward", "attention.backward", "lmhead.forward", "lmhead.backward",
                       "matmul.forward", "rmsnorm.backward", "swiglu.forward", "rope.backward"] {
            XCTAssert(names.contains(kernel), "profile lacks \(kernel): \(names.sorted())")
        }
        XCTAssertGreaterThan(result.stepTokensPerSecond, 0)
        XCTAssertFalse(Profiler.isEnabled, "measureStep must restore the profiler switch")
    }

    func testProfilerRecordsOnlyWhenEnabled() {
        Profiler.reset()
        var out = [Float](repeating: 0, count: 4)
        swigluForward(&out, [1, 2, 3, 4], [1, 1, 1, 1], count: 4)
        XCTAssertNil(Profiler.snapshot()["swiglu.forward"], "profiler is off by default and must record nothing")
        Profiler.isEnabled = true
        defer { Profiler.isEnabled = false; Profiler.reset() }
        for _ in 0..<3 { swigluForward(&out, [1, 2, 3, 4], [1, 1, 1, 1], count: 4) }
        let entry = Profiler.snapshot()["swiglu.forward"]
        XCTAssertEqual(entry?.calls, 3)
        XCTAssertGreaterThan(entry?.seconds ?? 0, 0)
    }
}
