import Foundation
import XCTest
@testable import KeelCore

final class TensorBoardEventTests: XCTestCase {
    /// The CRC-32C check value of "123456789" (RFC 3720, appendix B.4) and TFRecord's masking.
    func testCRC32CCheckValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        let crc = CRC32C.checksum([1, 2, 3])
        XCTAssertEqual(CRC32C.masked([1, 2, 3]), ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }

    /// The records of a TFRecord file, each frame's two checksums verified.
    static func records(_ file: URL) throws -> [[UInt8]] {
        let bytes = [UInt8](try Data(contentsOf: file))
        func uint(_ at: Int, _ count: Int) -> UInt64 { (0..<count).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        var records: [[UInt8]] = [], offset = 0
        while offset < bytes.count {
            let length = Int(uint(offset, 8))
            XCTAssertEqual(UInt64(CRC32C.masked(Array(bytes[offset ..< offset + 8]))), uint(offset + 8, 4), "length checksum at \(offset)")
            let record = Array(bytes[offset + 12 ..< offset + 12 + length])
            XCTAssertEqual(UInt64(CRC32C.masked(record)), uint(offset + 12 + length, 4), "record checksum at \(offset)")
            records.append(record)
            offset += 16 + length
        }
        return records
    }

    /// The Python that has the `tensorboard` package: $KEEL_TENSORBOARD_PYTHON, var/venv's (what
    /// scripts/test.sh installs), or python3; nil when none imports it.
    static func tensorBoardPython() -> String? {
        let candidates = [ProcessInfo.processInfo.environment["KEEL_TENSORBOARD_PYTHON"],
                          RepoPaths.root.appendingPathComponent("var/venv/bin/python3").path, "/usr/bin/env"].compactMap { $0 }
        for python in candidates where FileManager.default.isExecutableFile(atPath: python) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = (python == "/usr/bin/env" ? ["python3"] : []) + ["-c", "import tensorboard"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { continue }
            process.waitUntilExit()
            if process.terminationStatus == 0 { return python }
        }
        return nil
    }

    /// What TensorBoard's own reader (scripts/read-tensorboard.py) finds in `directory`: tag → (step, value).
    static func readWithTensorBoard(_ python: String, _ directory: URL) throws -> [String: [(step: Int, value: Double)]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = (python == "/usr/bin/env" ? ["python3"] : [])
            + [RepoPaths.root.appendingPathComponent("scripts/read-tensorboard.py").path, directory.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: output) as? [String: [[Double]]])
        return json.mapValues { $0.map { (step: Int($0[0]), value: $0[1]) } }
    }

    /// Every metric in the store under its TRL tag.
    static func storedScalars(_ store: KeelStore, _ runID: String) throws -> [String: [(step: Int, value: Double)]] {
        var scalars: [String: [(step: Int, value: Double)]] = [:]
        for (split, series) in try store.metricSeries(runID) {
            for (name, points) in series { scalars[TensorBoardEventWriter.tag(split: split, name: name)] = points }
        }
        return scalars
    }

    /// Same tags, steps and values, the values as float32 (TensorBoard's `simple_value`).
    static func assertSame(_ read: [String: [(step: Int, value: Double)]], _ stored: [String: [(step: Int, value: Double)]],
                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(read.keys), Set(stored.keys), file: file, line: line)
        for (tag, points) in stored {
            XCTAssertEqual(read[tag]?.map(\.step), points.map(\.step), tag, file: file, line: line)
            XCTAssertEqual(read[tag]?.map { Float($0.value) }, points.map { Float($0.value) }, tag, file: file, line: line)
        }
    }

    /// `logging: {tensorboard: tb}` writes tb/<run>/ while the run trains; `keel export --tensorboard`
    /// writes the same scalars from the store. Both are read back with TensorBoard's own reader (skipped,
    /// saying so, when no Python has the `tensorboard` package; scripts/test.sh installs it).
    func testLiveAndExportedEventFilesReadByTensorBoard() throws {
        let fixture = try RunFixture()
        let runID = try RunReportEndToEndTests.trainTinyRun(fixture)
        let store = try fixture.store()
        let history = try RunHistory(store: store, runID: runID)
        let live = fixture.directory.appendingPathComponent("tb/\(runID)")
        let liveFiles = try FileManager.default.contentsOfDirectory(atPath: live.path)
        XCTAssertEqual(liveFiles.count, 1)
        XCTAssertTrue(liveFiles[0].hasPrefix("events.out.tfevents."), liveFiles[0])
        let records = try Self.records(live.appendingPathComponent(liveFiles[0]))
        // file_version, then an event per metrics record: one per (split, step), and one more at each step
        // with generations (their metrics are recorded apart from the eval loss's).
        XCTAssertEqual(records.count, 1 + history.metricsByStep.count + 2)
        XCTAssertTrue(records.first.map { String(decoding: $0, as: UTF8.self).contains("brain.Event:2") } ?? false)

        let exported = fixture.directory.appendingPathComponent("exported")
        for _ in 0..<2 {
            let export = try fixture.keel(["export", runID, "--tensorboard", exported.path])
            XCTAssertEqual(export.status, 0, export.error)
        }
        let exportFiles = try FileManager.default.contentsOfDirectory(atPath: exported.appendingPathComponent(runID).path)
        XCTAssertEqual(exportFiles.count, 1, "a second export replaces the first: \(exportFiles)")
        XCTAssertEqual(try Self.records(exported.appendingPathComponent(runID).appendingPathComponent(exportFiles[0])).count,
                       1 + history.metricsByStep.count, "file_version, then one event per (split, step)")

        let nothing = try fixture.keel(["export", runID])
        XCTAssertNotEqual(nothing.status, 0)
        XCTAssertTrue(nothing.error.contains("nothing to export; expected --to DIR and/or --tensorboard DIR"), nothing.error)

        guard let python = Self.tensorBoardPython() else {
            throw XCTSkip("no Python with the tensorboard package (pip install tensorboard, or run scripts/test.sh): event files not read back with TensorBoard")
        }
        let stored = try Self.storedScalars(store, runID)
        XCTAssertTrue(stored.keys.contains("train/loss") && stored.keys.contains("eval/rewards/margins") && stored.keys.contains("train/learning_rate"),
                      "\(stored.keys.sorted())")
        Self.assertSame(try Self.readWithTensorBoard(python, live), stored)
        Self.assertSame(try Self.readWithTensorBoard(python, exported.appendingPathComponent(runID)), stored)
    }
}
