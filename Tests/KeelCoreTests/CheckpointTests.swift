import Foundation
import XCTest
@testable import KeelCore

final class CheckpointTests: XCTestCase {
    private let runID = "20261122-083015-tiny-dpo-ab12"

    private func makeRun(keepLast: Int = 2) throws -> (RunCheckpoints, URL) {
        let root = try makeStoreTestDirectory()
        let store = try KeelStore(path: root.appendingPathComponent("keel.db"))
        try store.createRun(NewRun(id: runID, recipePath: "r.yaml", recipeText: "", fingerprint: "f", fingerprintParts: [:]))
        let directory = root.appendingPathComponent("runs/\(runID)/checkpoints", isDirectory: true)
        return (try RunCheckpoints(store: store, runID: runID, checkpointsDirectory: directory, keepLast: keepLast),
                directory)
    }

    /// Content a trainer would save: a weight buffer streamed from memory plus small state files.
    private func files(step: Int) -> [CheckpointFile] {
        let weights = (0..<10_000).map { Float($0) * 0.5 + Float(step) }
        return [
            CheckpointFile(name: "weights.f32") { sink in try weights.withUnsafeBytes { try sink.write($0) } },
            .data("rng.json", Data(#"{"key":1,"counter":\#(step)}"#.utf8)),
            .data("cursor.json", Data(#"{"epoch":0,"index":\#(step * 8)}"#.utf8)),
        ]
    }

    private func names(in directory: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    func testSaveWritesManifestMarksCompleteAndReadsBackVerified() throws {
        let (checkpoints, directory) = try makeRun()
        let completed = try checkpoints.save(step: 100, files: files(step: 100))
        XCTAssertEqual(completed.directory.lastPathComponent, "step-100")
        XCTAssertEqual(try names(in: directory), ["step-100"], "no temporary directory remains")
        XCTAssertEqual(try names(in: completed.directory), ["cursor.json", "manifest.json", "rng.json", "weights.f32"])
        XCTAssertEqual(completed.manifest.files.map(\.name), ["weights.f32", "rng.json", "cursor.json"])
        XCTAssertEqual(completed.manifest.files[0].bytes, 40_000)

        // Every hash and size in the manifest matches an independent hash of the file on disk.
        for entry in completed.manifest.files {
            let content = try Data(contentsOf: completed.directory.appendingPathComponent(entry.name))
            XCTAssertEqual(entry.sha256, SHA256.hex(of: content), entry.name)
            XCTAssertEqual(entry.bytes, Int64(content.count), entry.name)
        }
        let manifestData = try Data(contentsOf: completed.directory.appendingPathComponent("manifest.json"))
        XCTAssertEqual(completed.manifestSHA256, SHA256.hex(of: manifestData))
        XCTAssertEqual(completed.bytes, completed.manifest.files.map(\.bytes).reduce(Int64(manifestData.count), +))

        let record = try XCTUnwrap(try checkpoints.store.latestCompleteCheckpoint(runID))
        XCTAssertEqual(record.step, 100)
        XCTAssertEqual(record.manifestSHA256, completed.manifestSHA256)
        let latest = try XCTUnwrap(try checkpoints.latest())
        XCTAssertEqual(latest.step, 100)
        let weights = try latest.data(of: "weights.f32").withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(weights[3], 1.5 + 100)
        XCTAssertEqual(String(decoding: try latest.data(of: "cursor.json"), as: UTF8.self), #"{"epoch":0,"index":800}"#)
    }

    func testKeepsOnlyTheLastKCompleteCheckpoints() throws {
        let (checkpoints, directory) = try makeRun(keepLast: 2)
        for step in [10, 20, 30, 40] { try checkpoints.save(step: step, files: files(step: step)) }
        XCTAssertEqual(try names(in: directory), ["step-30", "step-40"])
        XCTAssertEqual(try checkpoints.store.checkpoints(runID).map(\.step), [30, 40])
        XCTAssertEqual(try checkpoints.latest()?.step, 40)
    }

    /// A crash while writing leaves `step-N.tmp-<pid>/`; a crash after the rename but before the store
    /// was updated leaves `step-N/` with an incomplete row. Neither is ever reported as latest, and
    /// recovery removes both.
    func testCrashLeftoversAreNeverLatestAndAreRemovedAtStart() throws {
        let (checkpoints, directory) = try makeRun()
        try checkpoints.save(step: 10, files: files(step: 10))

        // Crash mid-write at step 20: a partial temporary directory from another (dead) pid.
        let leftover = directory.appendingPathComponent("step-20.tmp-99999")
        try FileManager.default.createDirectory(at: leftover, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: leftover.appendingPathComponent("weights.f32"))
        try checkpoints.store.recordCheckpoint(runID, step: 20, path: directory.appendingPathComponent("step-20").path)

        // Crash after the rename at step 30, before markCheckpointComplete.
        try checkpoints.store.recordCheckpoint(runID, step: 30, path: checkpoints.writer.directory(step: 30).path)
        let published = try checkpoints.writer.write(step: 30, files: files(step: 30))

        XCTAssertEqual(try checkpoints.latest()?.step, 10)
        XCTAssertThrowsError(try CheckpointReader.verify(directory: leftover)) {
            XCTAssertEqual($0 as? CheckpointError, .incomplete(
                path: leftover.path, reason: "it is a temporary directory left by an interrupted write"))
        }

        let removed = try checkpoints.recoverAfterCrash().map(\.lastPathComponent)
        XCTAssertEqual(removed, ["step-20.tmp-99999", published.directory.lastPathComponent])
        XCTAssertEqual(try names(in: directory), ["step-10"])
        XCTAssertEqual(try checkpoints.store.checkpoints(runID).map(\.step), [10])
        // The same step can be saved again after recovery.
        XCTAssertEqual(try checkpoints.save(step: 30, files: files(step: 30)).step, 30)
        XCTAssertEqual(try checkpoints.latest()?.step, 30)
    }

    func testCorruptedFileIsRefusedNamingTheFile() throws {
        let (checkpoints, _) = try makeRun()
        let completed = try checkpoints.save(step: 5, files: files(step: 5))
        let rng = completed.directory.appendingPathComponent("rng.json")
        let original = try Data(contentsOf: rng)
        var flipped = original
        flipped[0] ^= 0x01
        try flipped.write(to: rng)
        XCTAssertThrowsError(try checkpoints.latest()) {
            XCTAssertEqual($0 as? CheckpointError, .hashMismatch(
                path: completed.directory.path, name: "rng.json",
                expected: SHA256.hex(of: original), found: SHA256.hex(of: flipped)))
            XCTAssertTrue("\($0)".contains("'rng.json' has SHA-256"), "\($0)")
        }
    }

    func testTruncatedMissingExtraFilesAndReplacedManifestAreRefused() throws {
        let (checkpoints, _) = try makeRun()
        let completed = try checkpoints.save(step: 5, files: files(step: 5))
        let directory = completed.directory
        let path = directory.path
        let weights = directory.appendingPathComponent("weights.f32")

        try Data(count: 12).write(to: weights)
        XCTAssertThrowsError(try CheckpointReader.verify(directory: directory)) {
            XCTAssertEqual($0 as? CheckpointError, .sizeMismatch(path: path, name: "weights.f32", expected: 40_000, found: 12))
        }
        try FileManager.default.removeItem(at: weights)
        XCTAssertThrowsError(try CheckpointReader.verify(directory: directory)) {
            XCTAssertEqual($0 as? CheckpointError, .missingFile(path: path, name: "weights.f32"))
        }
        try Data().write(to: directory.appendingPathComponent("weights.f32.bak"))
        XCTAssertThrowsError(try CheckpointReader.verify(directory: directory)) {
            XCTAssertEqual($0 as? CheckpointError, .unexpectedFile(path: path, name: "weights.f32.bak"))
        }

        // A manifest rewritten to match tampered files still fails against the hash in the store.
        let manifestURL = directory.appendingPathComponent("manifest.json")
        try Data(#"{"files":[],"format":1,"step":5}"#.utf8).write(to: manifestURL)
        XCTAssertThrowsError(try checkpoints.latest()) {
            guard case .manifestHashMismatch(path, completed.manifestSHA256, _)? = $0 as? CheckpointError else {
                return XCTFail("\($0)")
            }
        }
        try FileManager.default.removeItem(at: manifestURL)
        XCTAssertThrowsError(try CheckpointReader.verify(directory: directory)) {
            XCTAssertEqual($0 as? CheckpointError, .incomplete(path: path, reason: "manifest.json is missing"))
        }
    }

    func testManifestStepMustMatchDirectory() throws {
        let (checkpoints, directory) = try makeRun()
        let completed = try checkpoints.save(step: 7, contents: ["b": Data("y".utf8), "a": Data("x".utf8)])
        XCTAssertEqual(completed.manifest.files.map(\.name), ["a", "b"])
        let moved = directory.appendingPathComponent("step-8")
        try FileManager.default.moveItem(at: completed.directory, to: moved)
        XCTAssertThrowsError(try CheckpointReader.verify(directory: moved)) {
            XCTAssertEqual($0 as? CheckpointError, .stepMismatch(path: moved.path, directoryStep: 8, manifestStep: 7))
        }
    }

    func testFailedWriteLeavesNothingBehind() throws {
        let (checkpoints, directory) = try makeRun()
        struct DiskFull: Error {}
        XCTAssertThrowsError(try checkpoints.save(step: 1, files: [
            .data("ok", Data("fine".utf8)),
            CheckpointFile(name: "weights") { sink in
                try sink.write(Data(count: 100))
                throw DiskFull()
            },
        ])) { XCTAssertTrue($0 is DiskFull) }
        XCTAssertEqual(try names(in: directory), [])
        XCTAssertEqual(try checkpoints.store.checkpoints(runID), [])
        XCTAssertNil(try checkpoints.latest())
    }

    func testInvalidNamesAndDuplicateStepsAreRejected() throws {
        let (checkpoints, _) = try makeRun()
        for bad in ["", ".", "..", "a/b", "manifest.json"] {
            XCTAssertThrowsError(try checkpoints.writer.write(step: 1, files: [.data(bad, Data())])) {
                XCTAssertEqual($0 as? CheckpointError, .invalidFileName(bad))
            }
        }
        XCTAssertThrowsError(try checkpoints.writer.write(step: 1, files: [.data("a", Data()), .data("a", Data())])) {
            XCTAssertEqual($0 as? CheckpointError, .duplicateFileName("a"))
        }
        let first = try checkpoints.save(step: 1, files: [.data("a", Data())])
        XCTAssertThrowsError(try checkpoints.writer.write(step: 1, files: [.data("a", Data())])) {
            XCTAssertEqual($0 as? CheckpointError, .alreadyExists(path: first.directory.path))
        }
        XCTAssertThrowsError(try RunCheckpoints(store: checkpoints.store, runID: runID,
                                                checkpointsDirectory: first.directory, keepLast: 0)) {
            XCTAssertEqual($0 as? CheckpointError, .invalidKeepLast(0))
        }
    }
}
