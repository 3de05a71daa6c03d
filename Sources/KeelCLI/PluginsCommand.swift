import ArgumentParser
import DEFT
import DPO
import ImplicitReward
import KeelCore
import POET
import RefSync
import RewardModel
import RuleRewards
import SFT
import SimPO
import VAR

/// Method plugins (Plugins/<Method>/), registered beside Keel's built-ins. This is the one list: KeelCore
/// cannot import plugin targets, so the executable that links them registers them.
let methodPluginTypes: [any KeelPlugin.Type] = [
    DPOLoss.self, SimPOLoss.self, SFTLoss.self, ReferenceSyncScheduler.self, POETTransform.self,
    LengthReward.self, KeywordReward.self, ExactAnswerReward.self, VARLoss.self, DEFTFilter.self,
    RewardModelLoss.self, ModelReward.self, ImplicitReward.self,
]

/// The plugins this `keel` knows: Keel's built-ins, then the method plugins.
func keelPluginRegistry() -> PluginRegistry {
    var registry = PluginRegistry.builtin()
    for type in methodPluginTypes {
        do { try registry.register(type) } catch { preconditionFailure("method plugin: \(error)") }
    }
    return registry
}

/// `keel plugins [NAME] [--markdown]`: registered plugins, their options and help, from their declarations.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins", abstract: "List registered plugins with their options (docs/plugins.md is `--markdown`).")

    @Argument(help: "Show only this plugin.")
    var name: String?

    @Flag(help: "Print Markdown (what docs/plugins.md holds).")
    var markdown = false

    func run() throws {
        let registry = keelPluginRegistry()
        guard let name else {
            print(markdown ? registry.markdown() : registry.descriptors.map { $0.helpText() }.joined(separator: "\n\n"))
            return
        }
        guard let descriptor = registry.descriptor(named: name) else {
            let names = registry.descriptors.map(\.name)
            printError("unknown plugin '\(name)'; expected one of \(names.joined(separator: ", "))")
            throw ExitCode.failure
        }
        print(markdown ? descriptor.markdown() : descriptor.helpText())
    }
}
