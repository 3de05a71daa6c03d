import Foundation
import XCTest
@testable import KeelRuntime

/// Optimizers against trajectories computed here in Double from the update rules written out
/// independently (not by calling the optimizer).
final class OptimizerTests: XCTestCase {
    /// Three parameters of different shapes; the loss L = Σ ½·k·θ² + s·θ has gradient g = k·θ + s.
    private let initial: [(name: String, values: [Double])] = [
        ("layer.weight", [0.5, -1.25]), ("layer.bias", [0.1, 2.0, -0.3]), ("norm.weight", [1.5]),
    ]
    private let curvature = 0.8, shift = -0.2

    private func makeParameters() -> Parameters {
        var parameters = Parameters()
        for (name, values) in initial { parameters.add(name, Tensor(values.map(Float.init))) }
        return parameters
    }

    private func accumulateGradients(_ parameters: Parameters) {
        parameters.zeroGrad()
        var loss = Tensor.scalar(0)
        for entry in parameters {
            loss = loss + (entry.tensor.square() * Float(0.5 * curvature) + entry.tensor * Float(shift)).sum()
        }
        loss.backward()
    }

    func testAdamWMatchesHandComputedTrajectory() {
        let (lr, beta1, beta2, eps, wd) = (0.05, 0.9, 0.99, 1e-8, 0.1)
        let exempt = "norm.weight"
        let parameters = makeParameters()
        let optimizer = AdamW(parameters: parameters, learningRate: Float(lr), beta1: Float(beta1),
                              beta2: Float(beta2), epsilon: Float(eps), weightDecay: Float(wd),
                              weightDecayExempt: [exempt])
        var theta = initial.map(\.values)
        var m = theta.map { $0.map { _ in 0.0 } }, v = m
        for t in 1...5 {
            accumulateGradients(parameters)
            optimizer.step()
            for p in theta.indices {
                for i in theta[p].indices {
                    let g = curvature * theta[p][i] + shift
                    m[p][i] = beta1 * m[p][i] + (1 - beta1) * g
                    v[p][i] = beta2 * v[p][i] + (1 - beta2) * g * g
                    let mHat = m[p][i] / (1 - pow(beta1, Double(t))), vHat = v[p][i] / (1 - pow(beta2, Double(t)))
                    if initial[p].name != exempt { theta[p][i] -= lr * wd * theta[p][i] }
                    theta[p][i] -= lr * mHat / (vHat.squareRoot() + eps)
                }
            }
            for (p, entry) in parameters.entries.enumerated() {
                for (i, value) in entry.tensor.toArray().enumerated() {
                    XCTAssertEqual(Double(value), theta[p][i], accuracy: 1e-6, "step \(t) \(entry.name)[\(i)]")
                }
            }
        }
        XCTAssertEqual(optimizer.stepCount, 5)
    }

    func testSGDMomentumMatchesHandComputedTrajectory() {
        let (lr, mu, wd) = (0.1, 0.9, 0.01)
        let parameters = makeParameters()
        let optimizer = SGD(parameters: parameters, learningRate: Float(lr), momentum: Float(mu), weightDecay: Float(wd))
        var theta = initial.map(\.values)
        var buffer = theta.map { $0.map { _ in 0.0 } }
        for t in 1...5 {
            accumulateGradients(parameters)
            optimizer.step()
            for p in theta.indices {
                for i in theta[p].indices {
                    let g = curvature * theta[p][i] + shift + wd * theta[p][i]
                    buffer[p][i] = t == 1 ? g : mu * buffer[p][i] + g
                    theta[p][i] -= lr * buffer[p][i]
                }
            }
            for (p, entry) in parameters.entries.enumerated() {
                for (i, value) in entry.tensor.toArray().enumerated() {
                    XCTAssertEqual(Double(value), theta[p][i], accuracy: 1e-6, "step \(t) \(entry.name)[\(i)]")
                }
            }
        }
    }

    func testLearningRateIsSettableBetweenSteps() {
        let parameters = makeParameters()
        let optimizer = SGD(parameters: parameters, learningRate: 0.1, momentum: 0)
        accumulateGradients(parameters)
        optimizer.learningRate = 0
        optimizer.step()
        XCTAssertEqual(parameters["layer.weight"]?.toArray(), [0.5, -1.25])
        optimizer.learningRate = 1
        optimizer.step()   // same gradient: θ −= 1·(0.8θ − 0.2)
        XCTAssertEqual(parameters["layer.weight"]!.toArray()[0], 0.5 - (0.8 * 0.5 - 0.2), accuracy: 1e-7)
    }

    /// Save after 3 steps, encode/decode, restore into a fresh optimizer over copied parameters: both
    /// continue bit-identically, and the state round-trips bitwise through JSON and named arrays.
    func testAdamWStateRestoresExactly() throws {
        let parameters = makeParameters()
        let optimizer = AdamW(parameters: parameters, learningRate: 0.03)
        for _ in 0..<3 { accumulateGradients(parameters); optimizer.step() }

        let saved = optimizer.state
        let decoded = try JSONDecoder().decode(OptimizerState.self, from: JSONEncoder().encode(saved))
        XCTAssertEqual(decoded, saved)
        let fromArrays = try OptimizerState(stepCount: saved.stepCount, namedArrays: saved.namedArrays())
        XCTAssertEqual(fromArrays, saved)
        XCTAssertNotNil(saved.namedArrays()["exp_avg_sq.layer.bias"])

        var copies = Parameters()
        for entry in parameters { copies.add(entry.name, entry.tensor.copy()) }
        let restored = AdamW(parameters: copies, learningRate: 0.03)
        try restored.loadState(decoded)
        XCTAssertEqual(restored.state, saved)
        for _ in 0..<2 {
            accumulateGradients(parameters); optimizer.step()
            accumulateGradients(copies); restored.step()
        }
        for (a, b) in zip(parameters, copies) {
            XCTAssertEqual(a.tensor.toArray().map(\.bitPattern), b.tensor.toArray().map(\.bitPattern), a.name)
        }
    }

    func testLoadStateRejectsMismatchedState() {
        let parameters = makeParameters()
        let optimizer = SGD(parameters: parameters, learningRate: 0.1)
        var state = optimizer.state
        state.slots["momentum_buffer"]?["layer.bias"] = [1, 2]
        XCTAssertThrowsError(try optimizer.loadState(state)) { error in
            XCTAssertTrue("\(error)".contains("layer.bias"), "\(error)")
        }
        XCTAssertThrowsError(try OptimizerState(stepCount: 0, namedArrays: ["noslot": [1]]))
        XCTAssertThrowsError(try optimizer.loadState(OptimizerState(stepCount: 1, slots: [:])))
    }

    func testClipGradNormScalesToMaxAndReturnsPreClipNorm() {
        var parameters = Parameters()
        let a = Tensor([0, 0]), b = Tensor([0])
        parameters.add("a", a)
        parameters.add("b", b)
        // b's term [12·b] is broadcast over 2 elements, so a.grad = [3, 4], b.grad = [24], ‖g‖ = √601.
        (a * Tensor([3, 4]) + b * Tensor([12])).sum().backward()
        let norm = clipGradNorm(parameters, maxNorm: 2)
        XCTAssertEqual(Double(norm), 601.0.squareRoot(), accuracy: 1e-4)
        let scale = 2 / (601.0.squareRoot() + 1e-6)
        XCTAssertEqual(Double(a.grad!.toArray()[1]), 4 * scale, accuracy: 1e-6)
        XCTAssertEqual(Double(b.grad!.toArray()[0]), 24 * scale, accuracy: 1e-6)
        let unchanged = clipGradNorm(parameters, maxNorm: 10)
        XCTAssertEqual(Double(unchanged), 2, accuracy: 1e-5)
        XCTAssertEqual(Double(b.grad!.toArray()[0]), 24 * scale, accuracy: 1e-6)
    }

    /// Two leaves adopting one gradient buffer (from `add`) must each be scaled once, not twice.
    func testClipGradNormWithSharedGradientBuffers() {
        var parameters = Parameters()
        let a = Tensor([1, 1]), b = Tensor([1, 1])
        parameters.add("a", a)
        parameters.add("b", b)
        ((a + b) * Tensor([3, 4])).sum().backward()   // a.grad and b.grad: both [3, 4], one buffer
        let norm = clipGradNorm(parameters, maxNorm: 1)
        XCTAssertEqual(Double(norm), 50.0.squareRoot(), accuracy: 1e-5)
        let scale = 1 / (50.0.squareRoot() + 1e-6)
        XCTAssertEqual(Double(a.grad!.toArray()[0]), 3 * scale, accuracy: 1e-6)
        XCTAssertEqual(Double(b.grad!.toArray()[0]), 3 * scale, accuracy: 1e-6)
    }
}
