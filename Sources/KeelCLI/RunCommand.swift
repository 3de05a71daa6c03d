import ArgumentParser
import Foundation
import KeelCore

/// Options every run command shares: where the store and run directories live.
struct VarDirectoryOption: ParsableArguments {
    @Option(name: .customLong("var"), help: "Folder holding keel.db, runs/ and plugins/.")
    var directory = "var"

    var layout: RunLayout { RunLayout(varDirectory: URL(fileURLWithPath: directory).standardizedFileURL) }

    /// The store of this folder, or nil when it has none: commands that only read must not create one.
    func existingStore() throws -> KeelStore? {
        FileManager.default.fileExists(atPath: layout.store.path) ? try KeelStore(path: layout.store) : nil
    }

    /// The store and the run id a command's argument names: an id, the start of exactly one, or `latest`.
    func resolve(_ reference: String) throws -> (store: KeelStore, runID: String) {
        guard let store = try existingStore() else { throw StoreError.unknownRun(reference) }
        return (store, try store.resolveRunID(reference))
    }

    /// The help of a RUN argument.
    static let runHelp = ArgumentHelp("Run id, the start of exactly one, or `latest` (keel status lists them).", valueName: "run")
}

/// `--set KEY=VALUE`, repeatable: changes to the recipe, validated like the file (`RecipeOverride`).
struct RecipeOverrideOptions: ParsableArguments {
    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Change one value of the recipe, checked like the file: a key path and YAML value, e.g. training.steps=50, "
        + "loss.beta=0.2, data[2].eval_count=64. Repeatable.", valueName: "key=value"))
    var values: [String] = []

    func parsed() throws -> [RecipeOverride] { try values.map(RecipeOverride.init) }
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

    @OptionGroup var overrides: RecipeOverrideOptions

    func run() throws {
        TrainingStop.installSignalHandlers()   // SIGTERM/SIGINT: checkpoint after this step, then stop
        try runReportingErrors {
            try TrainingRun.start(recipePath: file, overrides: try overrides.parsed(), layout: varDirectory.layout, registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout),
                                  display: ProgressDisplay())
        }
    }
}
