import ArgumentParser
import Foundation
import Glibc
import KeelCore
import KeelDaemon

/// `keel cancel RUN`: a queued (or interrupted) run is cancelled at once; a running one gets its worker
/// stopped with SIGTERM and the daemon marks it cancelled when the worker has exited.
struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a daemon run: queued ones at once, running ones by stopping their worker.")

    @Argument(help: VarDirectoryOption.runHelp)
    var runID: String

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        try runReportingErrors {
            let (store, runID) = try varDirectory.resolve(runID)
            guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
            // Recorded first: whoever sees the worker exit (this daemon, or the next) then knows it was a cancel.
            if record.status == .running || record.status == .queued || record.status == .interrupted {
                try store.recordEvent(runID, kind: DaemonEvent.cancelRequested, ["by_pid": Int(getpid())])
            }
            if try store.cancelWaitingRun(runID, reason: "cancelled (keel cancel)") {
                // A worker may have been started for it a moment ago.
                if let pid = record.pid, isWorkerAlive(pid: pid, runID: runID) { kill(pid, SIGTERM) }
                print("\(runID): cancelled")
                return
            }
            let current = try store.run(runID) ?? record
            guard current.status == .running || current.status == .queued else {
                throw DaemonError("run \(runID) is \(current.status.rawValue); only queued, interrupted or running runs can be cancelled")
            }
            guard let pid = current.pid, isWorkerAlive(pid: pid, runID: runID) else {
                print("\(runID): cancel requested; it has no live worker, so the daemon cancels it at its next start")
                return
            }
            kill(pid, SIGTERM)
            print("\(runID): sent SIGTERM to worker \(pid); the daemon marks the run cancelled when it has exited")
        }
    }
}
