import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// Collects watcher events from the watcher thread; tests wait for a specific one.
private final class EventLog: @unchecked Sendable {
    struct Entry: Equatable {
        var name: String
        var kind: RecipeWatcher.EventKind
    }

    private let condition = NSCondition()
    private var entries: [Entry] = []
    private var arrivals: [Date] = []
    private(set) var failures: [Error] = []

    func record(_ url: URL, _ kind: RecipeWatcher.EventKind) {
        condition.lock()
        entries.append(Entry(name: url.lastPathComponent, kind: kind))
        arrivals.append(Date())
        condition.broadcast()
        condition.unlock()
    }

    func fail(_ error: Error) {
        condition.lock()
        failures.append(error)
        condition.broadcast()
        condition.unlock()
    }

    var all: [Entry] {
        condition.lock()
        defer { condition.unlock() }
        return entries
    }

    /// Waits until `entry` has been reported (`count` times); returns the time of its last arrival.
    @discardableResult
    func wait(for entry: Entry, count: Int = 1, timeout: TimeInterval = 5) -> Date? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while entries.filter({ $0 == entry }).count < count {
            guard condition.wait(until: deadline) else { return nil }
        }
        return arrivals[entries.lastIndex(of: entry)!]
    }

    func waitForFailure(timeout: TimeInterval = 5) -> Error? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while failures.isEmpty {
            guard condition.wait(until: deadline) else { return nil }
        }
        return failures.first
    }
}

final class RecipeWatcherTests: XCTestCase {
    private var directory: URL!
    private var outside: URL!
    private var log: EventLog!
    private var watcher: RecipeWatcher!

    override func setUpWithError() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("keel-watch-\(UUID().uuidString)")
        directory = root.appendingPathComponent("recipes", isDirectory: true)
        outside = root.appendingPathComponent("elsewhere", isDirectory: true)
        for url in [directory!, outside!] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        log = EventLog()
        let log = self.log!
        watcher = RecipeWatcher(directory: directory, onEvent: { log.record($0, $1) }, onFailure: { log.fail($0) })
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    }

    override func tearDown() {
        watcher.stop()
    }

    private func entry(_ name: String, _ kind: RecipeWatcher.EventKind) -> EventLog.Entry { .init(name: name, kind: kind) }

    private func write(_ name: String, in folder: URL? = nil, _ text: String = "method: dpo\n") throws {
        try Data(text.utf8).write(to: (folder ?? directory).appendingPathComponent(name))
    }

    private func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(executable) \(arguments)")
    }

    /// Writes a file that must be reported and waits for it, so that every event caused before it
    /// has been delivered (inotify keeps order).
    private func sync(_ name: String = "zz-sentinel.yaml") throws {
        try write(name)
        XCTAssertNotNil(log.wait(for: entry(name, .written)), "sentinel \(name) never reported")
    }

    func testInitialScanReportsExistingRecipesOnly() throws {
        try write("b.yaml"); try write("a.yml"); try write(".hidden.yaml"); try write("notes.txt")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("dir.yaml"), withIntermediateDirectories: false)
        try watcher.start()
        try sync()
        XCTAssertEqual(log.all, [entry("a.yml", .existing), entry("b.yaml", .existing), entry("dir.yaml", .existing),
                                 entry("zz-sentinel.yaml", .written)], "a folder with a recipe's name is reported, for the daemon to record")
    }

    func testCopyIsReportedOnceAfterClose() throws {
        try watcher.start()
        try write("source.yaml", in: outside, String(repeating: "# padding\n", count: 10_000))
        try run("/usr/bin/cp", [outside.appendingPathComponent("source.yaml").path, directory.appendingPathComponent("copied.yaml").path])
        try sync()
        XCTAssertEqual(log.all, [entry("copied.yaml", .written), entry("zz-sentinel.yaml", .written)])
    }

    /// The atomic-save pattern: write a hidden temporary, rename it into place. Also `mv` from elsewhere.
    func testAtomicRenameAndMoveInAreReportedAndTheTemporaryIsNot() throws {
        try watcher.start()
        try write(".recipe.yaml.tmp-123")
        try FileManager.default.moveItem(at: directory.appendingPathComponent(".recipe.yaml.tmp-123"),
                                         to: directory.appendingPathComponent("recipe.yaml"))
        try write("moved.yaml", in: outside)
        try run("/usr/bin/mv", [outside.appendingPathComponent("moved.yaml").path, directory.path])
        try sync()
        XCTAssertEqual(log.all, [entry("recipe.yaml", .written), entry("moved.yaml", .written),
                                 entry("zz-sentinel.yaml", .written)])
    }

    func testEditorAndHiddenFilesAreIgnored() throws {
        try watcher.start()
        for name in [".hidden.yaml", ".#recipe.yaml", "recipe.yaml~", ".recipe.yaml.swp", "4913", "README.md"] {
            try write(name)
        }
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("sub.yaml"), withIntermediateDirectories: false)
        try write("nested.yaml", in: directory.appendingPathComponent("sub.yaml"))
        try sync()
        XCTAssertEqual(log.all, [entry("sub.yaml", .written), entry("zz-sentinel.yaml", .written)],
                       "only the folder with a recipe's name (for the daemon to record), nothing inside it")
    }

    func testDeleteAndMoveOutAreReportedAsRemoved() throws {
        try write("gone.yaml"); try write("away.yaml")
        try watcher.start()
        try sync("first-sentinel.yaml")
        try FileManager.default.removeItem(at: directory.appendingPathComponent("gone.yaml"))
        try FileManager.default.moveItem(at: directory.appendingPathComponent("away.yaml"),
                                         to: outside.appendingPathComponent("away.yaml"))
        try sync()
        XCTAssertEqual(Array(log.all.suffix(3)), [entry("gone.yaml", .removed), entry("away.yaml", .removed),
                                                  entry("zz-sentinel.yaml", .written)])
    }

    /// A file being written is not reported until it is closed; then its whole content is there.
    func testFileStillBeingWrittenIsNotReportedEarly() throws {
        try watcher.start()
        let url = directory.appendingPathComponent("slow.yaml")
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        XCTAssertEqual(Glibc.write(descriptor, "method: ", 8), 8)
        try sync("during-write.yaml")
        XCTAssertFalse(log.all.contains { $0.name == "slow.yaml" }, "reported before the writer closed it")
        XCTAssertEqual(Glibc.write(descriptor, "dpo\n", 4), 4)
        close(descriptor)
        XCTAssertNotNil(log.wait(for: entry("slow.yaml", .written)))
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "method: dpo\n")
        XCTAssertEqual(log.all.filter { $0.name == "slow.yaml" }.count, 1)
    }

    func testTwentyFilesAtOnceAreEachReportedExactlyOnce() throws {
        try watcher.start()
        let names = (0..<20).map { String(format: "batch-%02d.yaml", $0) }
        for name in names { try write(name) }
        try sync()
        let reported = log.all.filter { $0.name.hasPrefix("batch-") }
        XCTAssertEqual(reported.map(\.name).sorted(), names)
        XCTAssertTrue(reported.allSatisfy { $0.kind == .written })
    }

    /// After an inotify queue overflow the watcher rescans: files that vanished unseen are reported
    /// removed, and everything present is reported again. Fed a synthetic IN_Q_OVERFLOW record, since
    /// overflowing the real queue takes 16384 unread events.
    func testQueueOverflowTriggersFullRescan() throws {
        try write("kept.yaml"); try write("vanished.yaml")
        try watcher.rescan()
        try FileManager.default.removeItem(at: directory.appendingPathComponent("vanished.yaml"))
        try write("new.yaml")

        var record = inotify_event()
        record.wd = -1
        record.mask = UInt32(IN_Q_OVERFLOW)
        try withUnsafeBytes(of: &record) { try watcher.handleEvents($0) }
        XCTAssertEqual(log.all, [
            entry("kept.yaml", .existing), entry("vanished.yaml", .existing),
            entry("vanished.yaml", .removed), entry("kept.yaml", .existing), entry("new.yaml", .existing),
        ])
    }

    func testRemovingTheDirectoryEndsWatchingWithAnError() throws {
        try watcher.start()
        try FileManager.default.removeItem(at: directory)
        XCTAssertEqual(log.waitForFailure() as? WatcherError, .directoryGone(directory.path))
    }

    func testMissingDirectoryIsAClearError() {
        let missing = RecipeWatcher(directory: outside.appendingPathComponent("nope"), onEvent: { _, _ in })
        XCTAssertThrowsError(try missing.start()) {
            XCTAssertEqual("\($0)", "cannot watch \(outside.appendingPathComponent("nope").path): no such directory")
        }
    }

    /// Latency from starting to write a file (open, write, close) to the callback; printed in the test log.
    func testEventLatencyIsFarBelow100Milliseconds() throws {
        try watcher.start()
        try sync("warm-up.yaml")
        var latencies: [Double] = []
        for index in 0..<20 {
            let name = "latency-\(index).yaml"
            let writeStarted = Date()
            try write(name)
            let arrived = try XCTUnwrap(log.wait(for: entry(name, .written)))
            latencies.append(arrived.timeIntervalSince(writeStarted) * 1000)
        }
        latencies.sort()
        let median = latencies[latencies.count / 2], worst = latencies[latencies.count - 1]
        print(String(format: "RecipeWatcher latency write+close -> callback: median %.3f ms, max %.3f ms (20 files)",
                     median, worst))
        XCTAssertLessThan(median, 20)
        XCTAssertLessThan(worst, 100)
    }

    func testStopFromOtherThreadAndFromCallbackEndsDelivery() throws {
        try watcher.start()
        try sync("before-stop.yaml")
        watcher.stop()
        try write("after-stop.yaml")
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertFalse(log.all.contains { $0.name == "after-stop.yaml" })

        let stoppedInCallback = DispatchSemaphore(value: 0)
        var selfStopping: RecipeWatcher?
        selfStopping = RecipeWatcher(directory: directory, onEvent: { url, _ in
            if url.lastPathComponent == "stop.yaml" {
                selfStopping?.stop()
                stoppedInCallback.signal()
            }
        })
        try selfStopping?.start()
        try write("stop.yaml")
        XCTAssertEqual(stoppedInCallback.wait(timeout: .now() + 5), .success)
        selfStopping?.stop()  // already stopped: returns at once
    }
}
