import ArgumentParser
import Foundation
import KeelCore
import KeelDaemon

/// `keel worker RUN --var DIR`: trains one run of the daemon's queue, from its latest complete checkpoint
/// (from the start if it has none). Started by `keel daemon` with its output in var/runs/RUN/worker.log;
/// not meant to be run by hand.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Train one queued run of the daemon (started by keel daemon; output to var/runs/<run>/worker.log).",
        shouldDisplay: false)

    @Argument(help: ArgumentHelp("Run id.", valueName: "run"))
    var runID: String

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        TrainingStop.installSignalHandlers()   // SIGTERM/SIGINT: checkpoint after this step, then stop
        WorkerSupervision.terminateWhenParentExits()
        try runReportingErrors {
            let store = try KeelStore(path: varDirectory.layout.store)
            guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
            guard [.queued, .running, .interrupted].contains(record.status) else {
                throw DaemonError("run \(runID) is \(record.status.rawValue); a worker only trains queued or interrupted runs")
            }
            WorkerFault.apply(runID: runID)
            // Each plugin library is checked in a child process first: one that crashes as it registers is
            // skipped rather than failing every run.
            let registry = keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout, checkingInChildProcess: true)
            try TrainingRun.resume(runID: runID, layout: varDirectory.layout, registry: registry, force: false,
                                   display: ProgressDisplay(isTerminal: false))
        }
    }
}

/// Test hook for the daemon's crash handling: `KEEL_WORKER_FAULT=trap-if-run-contains:TEXT` makes a worker
/// whose run id contains TEXT trap (as a plugin hitting a precondition would) before training. Unset
/// (always, outside tests), it does nothing.
enum WorkerFault {
    static let variable = "KEEL_WORKER_FAULT"
    static let trapPrefix = "trap-if-run-contains:"

    static func apply(runID: String) {
        guard let value = ProcessInfo.processInfo.environment[variable], value.hasPrefix(trapPrefix) else { return }
        let text = value.dropFirst(trapPrefix.count)
        if !text.isEmpty && runID.contains(text) { fatalError("\(variable): simulated plugin crash in run \(runID)") }
    }
}
