import ArgumentParser
import Foundation
import KeelCore

/// `keel export RUN --to DIR`: the run's latest checkpoint as a Hugging Face model folder.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a run's latest checkpoint as a Hugging Face folder (config.json, model.safetensors, tokenizer files).")

    @Argument(help: VarDirectoryOption.runHelp)
    var runID: String

    @Option(help: "Destination folder.")
    var to: String

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        try runReportingErrors {
            let destination = URL(fileURLWithPath: to)
            let runID = try varDirectory.resolve(runID).runID
            try TrainingRun.export(runID: runID, layout: varDirectory.layout, registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout), to: destination)
            print("exported \(runID) to \(destination.path)")
        }
    }
}
