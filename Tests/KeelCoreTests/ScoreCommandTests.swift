import Foundation
import XCTest
@testable import KeelCore

/// `keel score` on a model whose weights are not finite fails, naming it, instead of printing -nan.
final class ScoreCommandTests: XCTestCase {
    func testNonFiniteWeightsAreAnErrorNotNumbers() throws {
        let fixture = try RunFixture()
        try fixture.writeTinyDPO([("steps: 300", "steps: 1"), ("eval_every: 100", "eval_every: 0")])
        XCTAssertEqual(try fixture.keel(["run", fixture.recipe.path]).status, 0)
        let export = fixture.varDirectory.appendingPathComponent("runs/\(try fixture.onlyRunID())/export")
        let weights = export.appendingPathComponent("model.safetensors")
        var bytes = [UInt8](try Data(contentsOf: weights))
        let headerSize = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        for offset in stride(from: 8 + headerSize, to: bytes.count - 3, by: 4) {
            bytes.replaceSubrange(offset..<offset + 4, with: [0x00, 0x00, 0xC0, 0x7F])  // NaN
        }
        try Data(bytes).write(to: weights)
        let pairs = fixture.directory.appendingPathComponent("pairs.jsonl")
        try Data("{\"prompt\": \"2+2?\", \"chosen\": \" 4\", \"rejected\": \" 5\"}\n".utf8).write(to: pairs)

        let result = try KeelBinary.run(["score", "--model", export.path, "--data", pairs.path])
        XCTAssertEqual(result.status, 1, result.output)
        XCTAssertFalse(result.output.contains("nan"), result.output)
        XCTAssertTrue(result.error.contains("1 of 1 pairs have non-finite log-probs"), result.error)
    }
}
