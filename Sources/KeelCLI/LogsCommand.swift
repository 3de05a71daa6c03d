import ArgumentParser
import Foundation
import KeelCore
import KeelDaemon

/// `keel logs RUN [-f]`: the run's worker log (var/runs/RUN/worker.log).
struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print a daemon run's worker log; -f keeps following it until the run ends.")

    @Argument(help: VarDirectoryOption.runHelp)
    var runID: String

    @Flag(name: [.short, .customLong("follow")], help: "Keep printing new output until the run completes, fails or is cancelled.")
    var follow = false

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        try runReportingErrors {
            let (store, runID) = try varDirectory.resolve(runID)
            guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
            let path = record.logPath ?? varDirectory.layout.run(runID).appendingPathComponent(Daemon.workerLogName).path
            var offset: UInt64 = 0
            while true {
                offset = try printNew(path, from: offset)
                guard follow, let status = try store.run(runID)?.status,
                      !(status.isFinished && status != .interrupted) else { break }
                Thread.sleep(forTimeInterval: 0.2)
            }
            if !follow && offset == 0 {
                if record.status == .rejected, let error = record.error { print("rejected:\n\(error)") }
                else if !FileManager.default.fileExists(atPath: path) { print("no log yet at \(path) (run is \(record.status.rawValue))") }
            }
            if follow { _ = try printNew(path, from: offset) }
        }
    }

    /// Prints what the file holds past `offset`; returns the new offset.
    private func printNew(_ path: String, from offset: UInt64) throws -> UInt64 {
        guard let handle = FileHandle(forReadingAtPath: path) else { return offset }
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        let data = try handle.readToEnd() ?? Data()
        FileHandle.standardOutput.write(data)
        return offset + UInt64(data.count)
    }
}
