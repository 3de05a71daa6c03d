import ArgumentParser
import KeelCore

/// `keel resume RUN [--var DIR] [--force]`: continues a run from its last complete checkpoint.
struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue a run from its last complete checkpoint; refuses if its recipe, data or model changed.")

    @Argument(help: VarDirectoryOption.runHelp)
    var runID: String

    @OptionGroup var varDirectory: VarDirectoryOption

    @Flag(help: "Resume even if the recipe, data or model changed (recorded as an event).")
    var force = false

    func run() throws {
        TrainingStop.installSignalHandlers()   // SIGTERM/SIGINT: checkpoint after this step, then stop
        try runReportingErrors {
            try TrainingRun.resume(runID: try varDirectory.resolve(runID).runID, layout: varDirectory.layout, registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout), force: force,
                                   display: ProgressDisplay())
        }
    }
}
