import Foundation
import XCTest
@testable import KeelCore

/// A reward model through the `keel` executable: `keel run` exports a reward-model folder, and
/// `keel score` on that folder prints each completion's reward (EOS appended, as in training) and the
/// accuracy over the pairs.
final class RewardModelRunTests: XCTestCase {
    func testKeelScorePrintsTheExportedRewardModelsRewards() throws {
        let fixture = try RunFixture()
        try fixture.writeTinyDPO([("steps: 300", "steps: 10"), ("checkpoint_every: 100", "checkpoint_every: 10"),
                                  ("loss: {name: dpo, beta: 2.0}", "loss: {name: reward-model}")])
        let run = try fixture.keel(["run", fixture.recipe.path])
        XCTAssertEqual(run.status, 0, run.error)
        let export = fixture.varDirectory.appendingPathComponent("runs/\(try fixture.onlyRunID())/export")

        let pairs = [("Capital of France?", " Paris", " Lyon"), ("2+2=", " 4", " 5"), ("Opposite of hot:", " cold", "")]
        let data = fixture.directory.appendingPathComponent("pairs.jsonl")
        let lines = try pairs.map { String(decoding: try JSONSerialization.data(withJSONObject: ["prompt": $0.0, "chosen": $0.1, "rejected": $0.2]), as: UTF8.self) }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: data)
        let score = try KeelBinary.run(["score", "--model", export.path, "--data", data.path, "--json"])
        XCTAssertEqual(score.status, 0, score.error)

        // Byte-level tokens: prompt bytes, completion bytes, EOS (256).
        let model = try LlamaRewardModel(huggingFaceDirectory: export)
        let sequences = pairs.flatMap { pair in
            [pair.1, pair.2].map { PromptCompletionTokens(prompt: Array(pair.0.utf8).map(Int.init), completion: Array($0.utf8).map(Int.init) + [256]) }
        }
        let want = withNoGrad { model.rewards(SequenceBatch(sequences, padID: 256)) }.toArray()
        let printed = try score.output.split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(printed.count, 3)
        var right = 0
        for (index, line) in printed.enumerated() {
            let chosen = try XCTUnwrap(line["chosenReward"] as? Double), rejected = try XCTUnwrap(line["rejectedReward"] as? Double)
            XCTAssertEqual(chosen, Double(want[2 * index]), accuracy: 1e-5, "pair \(index) chosen")
            XCTAssertEqual(rejected, Double(want[2 * index + 1]), accuracy: 1e-5, "pair \(index) rejected")
            if chosen > rejected { right += 1 }
        }
        XCTAssertTrue(score.error.contains("(\(right) of 3 pairs"), score.error)
    }
}
