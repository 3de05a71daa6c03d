import ArgumentParser
import DEFT
import Foundation
import DPO
import GeneratePairs
import ImplicitReward
import KeelCore
import ORPO
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
    LengthReward.self, KeywordReward.self, TopicReward.self, ExactAnswerReward.self, VARLoss.self, DEFTFilter.self, DEFTGuidanceLoss.self,
    GeneratePairsSource.self, RewardModelLoss.self, ModelReward.self, ImplicitReward.self, DifferentialDistributionSignal.self,
    RewardHeadSignal.self, ORPOLoss.self,
]

/// The plugins this `keel` knows: Keel's built-ins, then the method plugins.
func keelPluginRegistry() -> PluginRegistry {
    var registry = PluginRegistry.builtin()
    for type in methodPluginTypes {
        do { try registry.register(type) } catch { preconditionFailure("method plugin: \(error)") }
    }
    return registry
}

/// The folder custom plugin libraries are loaded from: $KEEL_PLUGIN_DIR when set, else `plugins/` in the
/// var folder. An environment variable, so that daemon workers inherit the daemon's choice.
func customPluginDirectory(_ layout: RunLayout) -> URL {
    if let configured = ProcessInfo.processInfo.environment["KEEL_PLUGIN_DIR"], !configured.isEmpty {
        return URL(fileURLWithPath: configured)
    }
    return layout.varDirectory.appendingPathComponent("plugins", isDirectory: true)
}

/// `keelPluginRegistry()` plus the custom plugins of the plugin folder; a library that is refused is
/// reported on stderr and skipped. `checkingInChildProcess` loads each library in `keel plugin check` first.
func keelPluginRegistry(loadingCustomPluginsOf layout: RunLayout, checkingInChildProcess: Bool = false) -> PluginRegistry {
    let loader = PluginLibraryLoader(directory: customPluginDirectory(layout), probe: checkingInChildProcess ? checkPluginInChildProcess : nil)
    let (registry, problems) = loader.registry(extending: keelPluginRegistry())
    for problem in problems { printError("keel: \(problem); skipped") }
    return registry
}

/// `keel plugin check FILE` in a child process: a library that crashes while registering is refused
/// instead of crashing the long-lived daemon, or every worker it starts.
func checkPluginInChildProcess(_ library: URL) throws {
    _ = try pluginCheckInChildProcess(library)
}

/// What `keel plugin check FILE` printed in a child process ("FILE: name (kind), …"), or why it failed.
func pluginCheckInChildProcess(_ library: URL) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    process.arguments = ["plugin", "check", library.path]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationReason == .exit, process.terminationStatus == 0 else {
        let how = process.terminationReason == .uncaughtSignal ? "crashed (signal \(process.terminationStatus))" : "failed"
        let said = output.split(separator: "\n").suffix(3).joined(separator: " | ")
        throw PluginLoadError("loading it in a child process (keel plugin check) \(how): \(said)")
    }
    return output.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// `keel plugins [NAME] [--markdown]`: registered plugins, their options and help, from their declarations.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins", abstract: "List registered plugins with their options (docs/plugins.md is `--markdown`).")

    @Argument(help: "Show only this plugin.")
    var name: String?

    @Flag(help: "Print Markdown (what docs/plugins.md holds).")
    var markdown = false

    @Flag(help: "Only the plugins compiled into keel (docs/plugins.md), not the custom ones of the plugin folder.")
    var builtinOnly = false

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        let registry = builtinOnly ? keelPluginRegistry() : keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout)
        guard let name else {
            print(markdown ? registry.markdown() : registry.descriptors.map { text(of: $0, in: registry) }.joined(separator: "\n\n"))
            return
        }
        guard let descriptor = registry.descriptor(named: name) else {
            let names = registry.descriptors.map(\.name)
            printError("unknown plugin '\(name)'; expected one of \(names.joined(separator: ", "))")
            throw ExitCode.failure
        }
        print(markdown ? descriptor.markdown() : text(of: descriptor, in: registry))
    }

    /// A plugin's help, with the library it was loaded from when it is a custom plugin.
    func text(of descriptor: PluginDescriptor, in registry: PluginRegistry) -> String {
        guard let library = registry.library(of: descriptor.name) else { return descriptor.helpText() }
        return descriptor.helpText() + "\n  custom plugin: \(library.path)"
    }
}
