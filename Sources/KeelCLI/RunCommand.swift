import ArgumentParser
import Foundation
import KeelCore

/// Options every run command shares: where the store and run directories live.
struct VarDirectoryOption: ParsableArguments {
    @Option(name: .customLong("var"), help: "Folder holding keel.db, runs/ and plugins/ (default: ./var).")
    var directory = "var"

    var layout: RunLayout { RunLayout(varDirectory: URL(fileURLWithPath: directory).standardizedFileURL) }
}

/// Runs a training command, printing its error (a recipe's errors all at once) instead of a stack of types.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let errors as RecipeErrors {
        printError(errors.description)
        throw ExitCode.failure
    } catch {
        printError("error: \(error)")
        throw ExitCode.failure
    }
}

/// `keel run FILE [--var DIR]`: trains a recipe in the foreground.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Train a recipe in the foreground; checkpoints and the final model go to var/runs/<run>/.")

    @Argument(help: "Recipe file (YAML).")
    var file: String

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        TrainingStop.installSignalHandlers()   // SIGTERM/SIGINT: checkpoint after this step, then stop
        try runReportingErrors {
            try TrainingRun.start(recipePath: file, layout: varDirectory.layout, registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout),
                                  display: ProgressDisplay())
        }
    }
}
