import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// A sandbox for end-to-end daemon tests: recipes/ and var/ in a temporary folder, the real `keel`
/// binary of this build started as a child process, and the store read directly.
final class DaemonSandbox {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `keel` built beside the tests (`swift test -c release` builds it at .build/release/keel).
    static func keelBinary(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        for configuration in ["release", "debug"] {
            let path = repository.appendingPathComponent(".build/\(configuration)/keel").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        XCTFail("no keel binary at \(repository.path)/.build/release/keel; run `swift build -c release` first", file: file, line: line)
        throw XCTSkip("keel binary missing")
    }

    let root: URL
    let recipes: URL
    let varDirectory: URL
    /// Recipes are written here first, then copied or moved into recipes/.
    let staging: URL
    let keel: String

    init(_ test: XCTestCase) throws {
        keel = try Self.keelBinary()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("keel-daemon-\(UUID().uuidString)")
        recipes = root.appendingPathComponent("recipes", isDirectory: true)
        varDirectory = root.appendingPathComponent("var", isDirectory: true)
        staging = root.appendingPathComponent("staging", isDirectory: true)
        for url in [recipes, varDirectory, staging] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        let root = self.root
        test.addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    }

    /// A DPO recipe on a tiny random model over generated pairs: `steps` optimizer steps of 4 pairs.
    static func tinyRecipe(name: String, steps: Int, checkpointEvery: Int = 0, hidden: Int = 32, seed: Int = 0) -> String {
        """
        model: {tiny: {layers: 2, hidden: \(hidden), heads: 4, kv_heads: 2, intermediate: \(2 * hidden), vocab: 259, seed: \(seed)}}
        data:
          - {name: synthetic-preferences, count: 96, seed: \(seed)}
          - {name: split, eval_count: 16}
        loss: {name: dpo, beta: 0.1}
        optimizer: {lr: 1.0e-3, weight_decay: 0.0}
        training:
          steps: \(steps)
          batch_size: 4
          max_length: 48
          seed: \(seed)
          eval_every: 0
          checkpoint_every: \(checkpointEvery)
          keep_checkpoints: 2
          log_every: 1
        output: {name: \(name)}

        """
    }

    /// Writes `text` to staging/<name> and returns its URL.
    @discardableResult
    func stage(_ name: String, _ text: String) throws -> URL {
        let url = staging.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url
    }

    /// `cp` (the file is written in place: close-after-write) or `mv` (an atomic rename) into recipes/.
    func drop(_ name: String, by tool: String = "cp") throws {
        let status = try Self.runTool("/bin/\(tool)", [staging.appendingPathComponent(name).path, recipes.appendingPathComponent(name).path])
        XCTAssertEqual(status, 0, "\(tool) \(name)")
    }

    static func runTool(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Starts `keel daemon` on the sandbox (output to daemon-N.log) with extra arguments and environment.
    func startDaemon(_ arguments: [String] = [], environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: keel)
        process.arguments = ["daemon", "--recipes", recipes.path, "--var", varDirectory.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let logURL = root.appendingPathComponent("daemon-\(UUID().uuidString.prefix(8)).log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        daemonLogs.append(logURL)
        return process
    }

    private(set) var daemonLogs: [URL] = []

    /// Everything the daemons of this sandbox printed (for failure messages).
    var daemonOutput: String {
        daemonLogs.map { (try? String(contentsOf: $0, encoding: .utf8)) ?? "" }.joined(separator: "\n---\n")
    }

    func store() throws -> KeelStore { try KeelStore(path: varDirectory.appendingPathComponent("keel.db")) }

    func runs() throws -> [RunRecord] {
        guard FileManager.default.fileExists(atPath: varDirectory.appendingPathComponent("keel.db").path) else { return [] }
        return try store().runSummaries(limit: 1000).map(\.run)
    }

    func run(named name: String) throws -> RunRecord? {
        try runs().first { $0.recipePath.hasSuffix("/\(name)") }
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes; fails the test (with the
    /// daemon's output) on timeout.
    @discardableResult
    func wait(_ what: String, timeout: TimeInterval = 45, file: StaticString = #filePath, line: UInt = #line,
              until condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("timed out after \(timeout) s waiting for \(what)\ndaemon output:\n\(daemonOutput)", file: file, line: line)
        return false
    }

    /// Sends `signal` to `process` and waits for it to exit; returns the seconds it took.
    @discardableResult
    func stop(_ process: Process, signal: Int32 = SIGTERM, timeout: TimeInterval = 30) -> TimeInterval {
        let started = Date()
        kill(process.processIdentifier, signal)
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return Date().timeIntervalSince(started)
    }

    /// Runs `keel ARGS` to completion; returns (status, stdout + stderr).
    func keel(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: keel)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    func events(_ runID: String, kind: String) throws -> [EventRecord] {
        try store().events(runID).filter { $0.kind == kind }
    }

    func exportedModel(_ runID: String, in varDirectory: URL? = nil) throws -> Data {
        try Data(contentsOf: RunLayout(varDirectory: varDirectory ?? self.varDirectory).export(runID).appendingPathComponent("model.safetensors"))
    }
}
