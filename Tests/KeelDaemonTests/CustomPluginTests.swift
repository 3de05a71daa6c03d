import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// Custom method plugins end to end: `keel plugin new`, `swift build -c release` of the package, `keel plugin
/// install`, and recipes using the plugin in a running daemon; a plugin refused for its API version. The
/// folder's permission checks are in KeelCoreTests.PluginLibraryLoaderTests.
final class CustomPluginTests: XCTestCase {
    /// One plugin package (built once: the build is most of this test's time) exercises the whole path.
    /// The scaffold gets a second loss that traps, so that a plugin crashing during a run is tested too.
    func testScaffoldedLossPluginIsHotLoadedByTheDaemonAndTrainsWithItsMetricRecorded() throws {
        let sandbox = try DaemonSandbox(self)
        let package = sandbox.root.appendingPathComponent("margin-hinge")
        let scaffold = try sandbox.keel(["plugin", "new", "margin-hinge", "--kind", "loss", "--dir", package.path])
        XCTAssertEqual(scaffold.status, 0, scaffold.output)
        for file in ["Package.swift", "README.md", "Sources/MarginHinge/MarginHinge.swift", "Tests/MarginHingeTests/MarginHingeTests.swift"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: package.appendingPathComponent(file).path), file)
        }
        try addCrashingLoss(to: package)
        let build = try DaemonSandbox.run("/usr/bin/env", ["swift", "build", "-c", "release"], in: package)
        XCTAssertEqual(build.status, 0, build.output)
        let library = package.appendingPathComponent(".build/release/libMarginHinge.so")

        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        let hinge = DaemonSandbox.tinyRecipe(name: "hinge", steps: 3)
            .replacingOccurrences(of: "loss: {name: dpo, beta: 0.1}", with: "loss: {name: margin-hinge, beta: 0.1, margin: 1.0}")
        XCTAssertTrue(hinge.contains("margin-hinge"))
        try sandbox.stage("early.yaml", hinge)
        try sandbox.stage("hinge.yaml", hinge)
        try sandbox.stage("crash.yaml", hinge.replacingOccurrences(of: "margin-hinge", with: "crashing-hinge"))
        Thread.sleep(forTimeInterval: 0.3)  // the daemon is watching
        try sandbox.drop("early.yaml")
        try sandbox.wait("the recipe using a plugin not yet installed to be rejected") { try sandbox.run(named: "early.yaml")?.status == .rejected }
        XCTAssertTrue(try XCTUnwrap(try sandbox.run(named: "early.yaml")?.error).contains("margin-hinge"))

        let install = try sandbox.keel(["plugin", "install", library.path, "--var", sandbox.varDirectory.path])
        XCTAssertEqual(install.status, 0, install.output)
        XCTAssertTrue(install.output.contains("margin-hinge (loss), crashing-hinge (loss)"), install.output)
        let listing = try sandbox.keel(["plugins", "margin-hinge", "--var", sandbox.varDirectory.path])
        XCTAssertEqual(listing.status, 0, listing.output)
        XCTAssertTrue(listing.output.contains("beta") && listing.output.contains("margin"), listing.output)
        XCTAssertTrue(listing.output.contains("custom plugin: \(sandbox.varDirectory.path)/plugins/libMarginHinge.so"), listing.output)

        // Installed while the daemon runs: used without a restart.
        try sandbox.drop("hinge.yaml")
        try sandbox.drop("crash.yaml")
        try sandbox.wait("the plugin's run to complete and the crashing plugin's run to fail", timeout: 90) {
            try sandbox.run(named: "hinge.yaml")?.status == .completed && sandbox.run(named: "crash.yaml")?.status == .failed
        }
        XCTAssertTrue(daemon.isRunning, "a plugin crashing in a worker fails only its run")
        let run = try XCTUnwrap(try sandbox.run(named: "hinge.yaml"))
        let active = try sandbox.store().metricSeries(run.id, split: .train, name: "hinge/active")
        XCTAssertEqual(active.count, 3, "one value of the plugin's own metric per step")
        XCTAssertTrue(active.allSatisfy { (0.0...1.0).contains($0.value) }, "\(active)")
        let crashError = try XCTUnwrap(try sandbox.run(named: "crash.yaml")?.error)
        XCTAssertTrue(crashError.contains("crashing-hinge: deliberate crash"), crashError)
    }

    /// The scheduler scaffold keeps checkpointed state (its decay count): a run killed after a checkpoint
    /// and resumed ends with the same state and bitwise the same model as one never interrupted.
    func testScaffoldedSchedulerStateIsCheckpointedAndResumesBitwise() throws {
        let sandbox = try DaemonSandbox(self)
        let package = sandbox.root.appendingPathComponent("lr-decay")
        let scaffold = try sandbox.keel(["plugin", "new", "lr-decay", "--kind", "scheduler", "--dir", package.path])
        XCTAssertEqual(scaffold.status, 0, scaffold.output)
        let build = try DaemonSandbox.run("/usr/bin/env", ["swift", "build", "-c", "release"], in: package)
        XCTAssertEqual(build.status, 0, build.output)
        let (interrupted, uninterrupted) = (sandbox.root.appendingPathComponent("var-a"), sandbox.root.appendingPathComponent("var-b"))
        for folder in [interrupted, uninterrupted] {
            let install = try sandbox.keel(["plugin", "install", package.appendingPathComponent(".build/release/libLrDecay.so").path,
                                            "--var", folder.path])
            XCTAssertEqual(install.status, 0, install.output)
        }
        let recipe = try sandbox.stage("decay.yaml", DaemonSandbox.tinyRecipe(name: "decay", steps: 12, checkpointEvery: 4)
            .replacingOccurrences(of: "optimizer: {lr: 1.0e-3, weight_decay: 0.0}",
                                  with: "optimizer: {lr: 1.0e-3, weight_decay: 0.0}\nschedulers: [{name: lr-decay, factor: 0.5, every: 3}]"))
        XCTAssertTrue(try String(contentsOf: recipe, encoding: .utf8).contains("lr-decay"))

        let (store, runID) = try assertKilledAndResumedRunEndsLikeAStraightOne(sandbox, recipe, killedAfter: 6,
                                                                                 interrupted: interrupted, uninterrupted: uninterrupted)
        let decays = try store.metricSeries(runID, split: .train, name: "lr-decay/decays")
        XCTAssertEqual(decays.last?.value, 4, "decays at steps 3, 6, 9 and 12, counted across the resume")
    }

    /// Runs `recipe` in `interrupted` killed after step `step` and resumed, and in `uninterrupted` straight
    /// through; their exported models must be equal bit for bit. Returns the interrupted run's store and id.
    @discardableResult
    func assertKilledAndResumedRunEndsLikeAStraightOne(_ sandbox: DaemonSandbox, _ recipe: URL, killedAfter step: Int,
                                                       interrupted: URL, uninterrupted: URL) throws -> (KeelStore, String) {
        let killed = try sandbox.keel(["run", recipe.path, "--var", interrupted.path], environment: ["KEEL_FAULT": "kill-after-step:\(step)"])
        XCTAssertNotEqual(killed.status, 0, "killed after step \(step)")
        let store = try KeelStore(path: interrupted.appendingPathComponent("keel.db"))
        let runID = try XCTUnwrap(try store.runSummaries().first?.run.id)
        let resumed = try sandbox.keel(["resume", runID, "--var", interrupted.path])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        let straight = try sandbox.keel(["run", recipe.path, "--var", uninterrupted.path])
        XCTAssertEqual(straight.status, 0, straight.output)
        let straightID = try XCTUnwrap(try KeelStore(path: uninterrupted.appendingPathComponent("keel.db")).runSummaries().first?.run.id)
        XCTAssertEqual(try sandbox.exportedModel(runID, in: interrupted), try sandbox.exportedModel(straightID, in: uninterrupted))
        return (store, runID)
    }

    /// A new method in one package, Keel not rebuilt: the signal scaffold (a differentiable per-token
    /// entropy of the policy) and the loss that needs it pass their own test, train beside dpo in the
    /// daemon with the loss's metric recorded, and a run killed after a checkpoint and resumed ends
    /// bitwise equal to an uninterrupted one.
    func testScaffoldedSignalAndItsLossTrainInTheDaemonAndResumeBitwise() throws {
        let sandbox = try DaemonSandbox(self)
        let package = sandbox.root.appendingPathComponent("token-entropy")
        let scaffold = try sandbox.keel(["plugin", "new", "token-entropy", "--kind", "signal", "--dir", package.path])
        XCTAssertEqual(scaffold.status, 0, scaffold.output)
        let test = try DaemonSandbox.run("/usr/bin/env", ["swift", "test"], in: package)
        XCTAssertEqual(test.status, 0, test.output)
        let build = try DaemonSandbox.run("/usr/bin/env", ["swift", "build", "-c", "release"], in: package)
        XCTAssertEqual(build.status, 0, build.output)
        let library = package.appendingPathComponent(".build/release/libTokenEntropy.so")
        let (interrupted, uninterrupted) = (sandbox.root.appendingPathComponent("var-a"), sandbox.root.appendingPathComponent("var-b"))
        for folder in [sandbox.varDirectory, interrupted, uninterrupted] {
            let install = try sandbox.keel(["plugin", "install", library.path, "--var", folder.path])
            XCTAssertEqual(install.status, 0, install.output)
            XCTAssertTrue(install.output.contains("token-entropy (signal), token-entropy-bonus (loss)"), install.output)
        }
        let text = DaemonSandbox.tinyRecipe(name: "entropy", steps: 8, checkpointEvery: 4)
            .replacingOccurrences(of: "loss: {name: dpo, beta: 0.1}",
                                  with: "loss:\n  - {name: dpo, beta: 0.1}\n  - {name: token-entropy-bonus, weight: 0.01}")
        XCTAssertTrue(text.contains("token-entropy-bonus"))
        let plan = try sandbox.keel(["plan", try sandbox.stage("plan.yaml", text).path, "--var", sandbox.varDirectory.path])
        XCTAssertTrue(plan.output.contains("token-entropy: token-entropy  [requires policy, separate-rows]"), plan.output)

        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        try sandbox.stage("entropy.yaml", text)
        try sandbox.drop("entropy.yaml")
        try sandbox.wait("the run with the custom signal to complete", timeout: 120) { try sandbox.run(named: "entropy.yaml")?.status == .completed }
        let run = try XCTUnwrap(try sandbox.run(named: "entropy.yaml"))
        let entropy = try sandbox.store().metricSeries(run.id, split: .train, name: "token-entropy-bonus/entropy/chosen")
        XCTAssertEqual(entropy.count, 8, "one value of the loss's metric per step")
        XCTAssertTrue(entropy.allSatisfy { $0.value > 0 && $0.value <= log(259) }, "\(entropy)")

        try assertKilledAndResumedRunEndsLikeAStraightOne(sandbox, try sandbox.stage("entropy-killed.yaml", text), killedAfter: 5,
                                                          interrupted: interrupted, uninterrupted: uninterrupted)
    }

    /// A library whose compiled-in plugin API version is not keel's is refused by `keel plugin install`
    /// and, dropped into the folder by hand, skipped with the same message; its registration entry point
    /// (which would crash keel) is never called.
    func testPluginBuiltAgainstAnotherAPIVersionIsRefusedBeforeItsRegistrationRuns() throws {
        let sandbox = try DaemonSandbox(self)
        let library = try Self.crashingLibrary(apiVersion: 999, in: sandbox.root)

        let install = try sandbox.keel(["plugin", "install", library.path, "--var", sandbox.varDirectory.path])
        XCTAssertNotEqual(install.status, 0)
        XCTAssertTrue(install.output.contains("built against Keel plugin API version 999"), install.output)
        XCTAssertFalse(install.output.contains("registration ran"), install.output)
        let plugins = sandbox.varDirectory.appendingPathComponent("plugins")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: plugins.path), [], "nothing installed")

        _ = try DaemonSandbox.run("/bin/cp", [library.path, plugins.path], in: sandbox.root)
        let listing = try sandbox.keel(["plugins", "--var", sandbox.varDirectory.path])
        XCTAssertEqual(listing.status, 0, listing.output)
        XCTAssertTrue(listing.output.contains("libForeign.so: built against Keel plugin API version 999"), listing.output)
        XCTAssertTrue(listing.output.contains("skipped") && listing.output.contains("dpo  (loss)"), listing.output)
    }

    /// A library that crashes in its registration, dropped into the folder while the daemon runs, is
    /// refused (the daemon checks it in a child process first) and the daemon goes on training.
    func testPluginCrashingAsItRegistersDoesNotTakeTheDaemonDown() throws {
        let sandbox = try DaemonSandbox(self)
        let library = try Self.crashingLibrary(apiVersion: PluginLibraryABI.hostVersion, in: sandbox.root)
        let daemon = try sandbox.startDaemon()
        defer { sandbox.stop(daemon) }
        let plugins = sandbox.varDirectory.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: plugins, withIntermediateDirectories: true)
        XCTAssertEqual(try DaemonSandbox.run("/bin/cp", [library.path, plugins.path]).status, 0)
        try sandbox.stage("after.yaml", DaemonSandbox.tinyRecipe(name: "after", steps: 2))
        Thread.sleep(forTimeInterval: 0.3)
        try sandbox.drop("after.yaml")
        try sandbox.wait("the recipe to complete") { try sandbox.run(named: "after.yaml")?.status == .completed }
        XCTAssertTrue(daemon.isRunning)
        XCTAssertTrue(sandbox.daemonOutput.contains("libForeign.so: loading it in a child process (keel plugin check) crashed"),
                      sandbox.daemonOutput)
    }

    /// libForeign.so: a library answering `apiVersion` whose registration traps (Swift only, no Keel import).
    static func crashingLibrary(apiVersion: Int, in folder: URL) throws -> URL {
        let source = folder.appendingPathComponent("Foreign.swift")
        try Data("""
            @_cdecl("keel_plugin_abi_version") public func version() -> Int { \(apiVersion) }
            @_cdecl("keel_plugin_register") public func register() -> UnsafeMutableRawPointer { fatalError("registration ran") }

            """.utf8).write(to: source)
        let library = folder.appendingPathComponent("libForeign.so")
        let compile = try DaemonSandbox.run("/usr/bin/env", ["swiftc", "-parse-as-library", "-emit-library", "-module-name", "Foreign",
                                                             source.path, "-o", library.path], in: folder)
        XCTAssertEqual(compile.status, 0, compile.output)
        return library
    }

    /// A second loss in the scaffolded library that traps, as a buggy plugin would.
    func addCrashingLoss(to package: URL) throws {
        let source = package.appendingPathComponent("Sources/MarginHinge/MarginHinge.swift")
        var text = try String(contentsOf: source, encoding: .utf8)
        text += """

            public final class CrashingHingeLoss: LossPlugin {
                public static let descriptor = PluginDescriptor(name: "crashing-hinge", kind: .loss, summary: "traps in its first step",
                                                                options: MarginHingeLoss.descriptor.options,
                                                                capabilities: [.pairwiseLoss],
                                                                needs: [Signals.policyLogProbs.key, Signals.referenceLogProbs.key], consumes: [.paired])
                public init(options: ResolvedOptions) throws {}
                public func loss(_ input: LossInput) throws -> LossOutput { fatalError("crashing-hinge: deliberate crash") }
            }

            """
        try Data(text.utf8).write(to: source)
        let registration = package.appendingPathComponent("Sources/MarginHinge/Registration.swift")
        let original = try String(contentsOf: registration, encoding: .utf8)
        let edited = original.replacingOccurrences(of: "[MarginHingeLoss.self]", with: "[MarginHingeLoss.self, CrashingHingeLoss.self]")
        XCTAssertNotEqual(edited, original)
        try Data(edited.utf8).write(to: registration)
    }
}
