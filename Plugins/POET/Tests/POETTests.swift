import KeelCore
import XCTest
@testable import POET

final class POETTests: XCTestCase {
    let eos = 2

    /// Each pair's completions are cut to the shorter one's length; prompts and the shorter completion
    /// (with its EOS) are untouched; pairs with an empty completion are dropped and counted.
    func testTruncatesToTheShorterCompletionAndDropsEmptyOnes() throws {
        var pairs = [
            TokenizedPair(id: "a:1", prompt: [7, 8, 9], chosen: [10, 11, 12, 13, eos], rejected: [20, 21, eos]),
            TokenizedPair(id: "a:2", prompt: [7], chosen: [30, eos], rejected: [40, 41, 42, 43, 44, 45, eos]),
            TokenizedPair(id: "a:3", prompt: [5, 6], chosen: [50, 51, eos], rejected: [60, 61, eos]),
            TokenizedPair(id: "a:4", prompt: [1], chosen: [], rejected: [70, eos]),
        ]
        var report = DataNodeReport(node: "data[1] poet")
        try POETTransform(options: ResolvedOptions(defaultsOf: [])).transform(&pairs, report: &report)

        XCTAssertEqual(pairs, [
            TokenizedPair(id: "a:1", prompt: [7, 8, 9], chosen: [10, 11, 12], rejected: [20, 21, eos]),
            TokenizedPair(id: "a:2", prompt: [7], chosen: [30, eos], rejected: [40, 41]),
            TokenizedPair(id: "a:3", prompt: [5, 6], chosen: [50, 51, eos], rejected: [60, 61, eos]),
        ])
        XCTAssertEqual(report.produced, 3)
        XCTAssertEqual(report.skipped, ["zero-shared-length": 1])
        // Shared lengths 3, 2, 3; kept fractions 6/8, 4/9, 6/6.
        XCTAssertEqual(try XCTUnwrap(report.metrics["poet/mean_shared_len"]), 8.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(report.metrics["poet/mean_kept_fraction"]), (6.0 / 8 + 4.0 / 9 + 1) / 3, accuracy: 1e-12)
        XCTAssertEqual(Set(report.metrics.keys), Set(POETTransform.descriptor.metrics))
    }

    /// Before tokenisation POET passes examples through (it acts on token ids only).
    func testTextStagePassesExamplesThrough() throws {
        let pair = PreferencePair(id: "x:1", prompt: .text("q"), chosen: .text(" long answer"), rejected: .text(" no"))
        var data = Dataset(train: [.pair(pair)])
        var report = DataNodeReport(node: "data[1] poet")
        try POETTransform(options: ResolvedOptions(defaultsOf: [])).process(&data, report: &report, context: DataContext(seed: 0, node: "data[1]"))
        XCTAssertEqual(data.train, [.pair(pair)])
        XCTAssertEqual(report.produced, 1)
        XCTAssertTrue(POETTransform.descriptor.capabilities.contains(.requiresPairwiseLoss))
    }
}
