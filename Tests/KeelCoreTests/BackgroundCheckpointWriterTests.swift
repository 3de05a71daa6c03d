import Foundation
import XCTest
@testable import KeelCore

final class BackgroundCheckpointWriterTests: XCTestCase {
    private struct WriteFailed: Error, Equatable { let step: Int }

    /// One write at a time: `start` returns at once, but the next `start` runs only after the previous
    /// write finished; `wait` reports a failed write once, and `start` refuses to go on after one.
    func testWritesRunOneAtATimeAndAFailureIsReportedOnce() throws {
        let writer = BackgroundCheckpointWriter()
        let log = NSLock()
        var events: [String] = []
        func note(_ event: String) { log.withLock { events.append(event) } }

        // The first write cannot end before the test lets it, so `start` must have returned meanwhile.
        let release = DispatchSemaphore(value: 0)
        try writer.start { note("first begins"); release.wait(); note("first ends") }
        note("start returned")
        release.signal()
        try writer.start { note("second") }
        try writer.wait()
        XCTAssertEqual(log.withLock { events.filter { $0 != "start returned" } }, ["first begins", "first ends", "second"])
        XCTAssertLessThan(try XCTUnwrap(log.withLock { events.firstIndex(of: "start returned") }),
                          try XCTUnwrap(log.withLock { events.firstIndex(of: "first ends") }))
        XCTAssertGreaterThan(writer.busySeconds, 0)

        try writer.start { throw WriteFailed(step: 5) }
        writer.waitUntilIdle()
        XCTAssertThrowsError(try writer.start { note("after failure") }) { XCTAssertEqual($0 as? WriteFailed, WriteFailed(step: 5)) }
        XCTAssertNoThrow(try writer.wait(), "a failure is reported once")
        XCTAssertFalse(log.withLock { events.contains("after failure") })
    }

    /// A safetensors file streamed into a checkpoint has the same bytes as `SafeTensors.write` gives,
    /// and the staged copies keep the values of the moment they were staged.
    func testStreamedSafetensorsEqualSafeTensorsWriteAndStagingCopies() throws {
        let directory = try makeStoreTestDirectory()
        let a = Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, .leastNonzeroMagnitude, -0.0]), b = Tensor([7, 8])
        let staging = CheckpointStaging()
        let staged = [(name: "a", tensor: staging.copy(a, key: "a")), (name: "b", tensor: staging.copy(b, key: "b"))]
        XCTAssertEqual(staging.bytes, 8 * 4)
        let expected = directory.appendingPathComponent("expected.safetensors").path
        try SafeTensors.write(path: expected, tensors: [(name: "a", tensor: a), (name: "b", tensor: b)], metadata: ["step_count": "3"])
        a.pointer[0] = 100  // training goes on after staging

        let completed = try CheckpointWriter(checkpointsDirectory: directory.appendingPathComponent("checkpoints"))
            .write(step: 1, files: [try .safetensors("x.safetensors", staged, metadata: ["step_count": "3"])])
        let streamed = try Data(contentsOf: completed.directory.appendingPathComponent("x.safetensors"))
        XCTAssertEqual(streamed, try Data(contentsOf: URL(fileURLWithPath: expected)))
        XCTAssertIdentical(staging.copy(a, key: "a"), staged[0].tensor, "the buffer is reused")
        XCTAssertEqual(staged[0].tensor.pointer[0], 100)
    }
}
