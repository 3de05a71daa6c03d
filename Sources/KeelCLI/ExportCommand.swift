import ArgumentParser
import Foundation
import KeelCore

/// `keel export RUN --to DIR`: the run's latest checkpoint as a Hugging Face model folder;
/// `keel export RUN --tensorboard DIR`: its recorded metrics as TensorBoard event files in DIR/RUN/.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a run's latest checkpoint as a Hugging Face folder (--to), or its metrics as TensorBoard event files (--tensorboard).")

    @Argument(help: VarDirectoryOption.runHelp)
    var runID: String

    @Option(help: "Destination folder of the Hugging Face model (config.json, model.safetensors, tokenizer files).")
    var to: String?

    @Option(help: ArgumentHelp("Write every recorded metric as TensorBoard event files to DIR/<run>/ (replacing an earlier export there); open with `tensorboard --logdir DIR`.",
                               valueName: "dir"))
    var tensorboard: String?

    @OptionGroup var varDirectory: VarDirectoryOption

    func validate() throws {
        guard to != nil || tensorboard != nil else { throw ValidationError("nothing to export; expected --to DIR and/or --tensorboard DIR") }
    }

    func run() throws {
        try runReportingErrors {
            let runID = try varDirectory.resolve(runID).runID
            if let to {
                let destination = URL(fileURLWithPath: to)
                try TrainingRun.export(runID: runID, layout: varDirectory.layout, registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout), to: destination)
                print("exported \(runID) to \(destination.path)")
            }
            if let tensorboard {
                let history = try RunHistory(store: try KeelStore(path: varDirectory.layout.store), runID: runID)
                let file = try TensorBoardEventWriter.export(history, to: URL(fileURLWithPath: tensorboard, isDirectory: true))
                print("wrote \(history.metricsByStep.count) steps of \(runID)'s metrics to \(file.path)")
            }
        }
    }
}
