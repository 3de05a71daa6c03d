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
            print(try store.cancelRun(runID, by: "keel cancel"))
        }
    }
}
