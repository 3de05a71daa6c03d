import ArgumentParser
import Foundation
import KeelCore

/// `keel plan FILE`: the resolved plugin graph with each option's final value and origin.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Show the plugin graph a recipe resolves to, with every option's value and origin.")

    @Argument(help: "A recipe file (YAML).")
    var file: String

    @OptionGroup var varDirectory: VarDirectoryOption

    @Flag(help: "Also run the data nodes and report what each produced, skipped and flagged, and the steps that makes.")
    var data = false

    @OptionGroup var overrides: RecipeOverrideOptions

    func run() throws {
        let graph: PluginGraph
        do {
            var loader = RecipeLoader(registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout), protecting: [varDirectory.layout.varDirectory])
            loader.overrides = try overrides.parsed()
            graph = try loader.load(URL(fileURLWithPath: file), displayName: file)
        } catch let errors as RecipeErrors {
            printError(errors.description)
            throw ExitCode.failure
        } catch let error as RecipeOverrideError {
            printError("error: \(error)")
            throw ExitCode.failure
        }
        print(graph.planText())
        let training = graph.recipe.trainingConfig
        if let steps = training.steps {
            print("steps: \(steps) optimizer steps of \(training.batchSize) × \(training.gradAccum) examples")
        } else if !data {
            print("steps: \(training.epochs ?? 1) epochs; how many steps that is depends on the data (keel plan --data counts them)")
        }
        guard data else { return }
        if let node = graph.recipe.data.first(where: { $0.type is any PolicySampledSource.Type }) {
            print("data: not run: \(node.label) samples its examples from the model when a run starts, "
                  + "and planning does not load the model")
            return
        }
        do {
            let dataset = try graph.instantiate().loadData(seed: graph.recipe.trainingConfig.seed)
            print("data: \(dataset.train.count) training, \(dataset.eval.count) evaluation examples")
            if training.steps == nil {
                print("steps: \(training.totalSteps(trainExamples: dataset.train.count)) optimizer steps: \(training.epochs ?? 1) epochs × "
                      + "\(training.stepsPerEpoch(trainExamples: dataset.train.count)) steps of \(training.batchSize) × \(training.gradAccum) examples "
                      + "(before tokenisation, which may drop pairs longer than max_length)")
            }
            for report in dataset.report {
                var line = "  \(report.node): \(report.produced) out"
                if !report.skipped.isEmpty { line += ", skipped " + counts(report.skipped) }
                if !report.flagged.isEmpty { line += ", flagged " + counts(report.flagged) }
                print(line)
            }
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }

    private func counts(_ counts: [String: Int]) -> String {
        counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    }
}
