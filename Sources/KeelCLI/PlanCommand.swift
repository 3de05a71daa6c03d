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

    @Flag(help: "Also run the data nodes and report what each produced, skipped and flagged.")
    var data = false

    func run() throws {
        let graph: PluginGraph
        do { graph = try RecipeLoader(registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout), protecting: [varDirectory.layout.varDirectory]).load(URL(fileURLWithPath: file), displayName: file) } catch let errors as RecipeErrors {
            printError(errors.description)
            throw ExitCode.failure
        }
        print(graph.planText())
        guard data else { return }
        if let node = graph.recipe.data.first(where: { $0.type is any PolicySampledSource.Type }) {
            print("data: not run: \(node.label) samples its examples from the model when a run starts, "
                  + "and planning does not load the model")
            return
        }
        do {
            let dataset = try graph.instantiate().loadData(seed: graph.recipe.trainingConfig.seed)
            print("data: \(dataset.train.count) training, \(dataset.eval.count) evaluation examples")
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
