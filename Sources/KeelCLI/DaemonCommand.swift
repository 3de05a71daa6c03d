import ArgumentParser
import Foundation
import KeelCore
import KeelDaemon
import KeelDashboard

/// `keel daemon [--recipes DIR] [--var DIR] [--workers N] [--exit-when-idle]`: watches a recipes folder,
/// queues every new or changed recipe and trains the queue in worker processes. docs/daemon.md.
struct DaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Watch a recipes folder; queue each new or changed recipe (durably, in var/keel.db) and train it in a worker process.",
        discussion: "Drop a recipe (*.yaml, *.yml; dotfiles ignored) into the folder with cp or an atomic mv. "
            + "Invalid recipes are recorded as rejected with every error (keel status). SIGTERM/SIGINT stop the workers "
            + "and exit; interrupted runs resume from their latest checkpoint at the next start. See docs/daemon.md.")

    @Option(help: "Folder of recipes to watch (top level only).")
    var recipes = "recipes"

    @OptionGroup var varDirectory: VarDirectoryOption

    @Option(help: "Runs trained at the same time, each in its own process.")
    var workers = 1

    @Flag(help: "Exit once nothing is queued, running or waiting to resume (for CI and first runs).")
    var exitWhenIdle = false

    @Option(help: "Seconds workers get to stop after SIGTERM before they are killed.")
    var stopTimeout: Double = 20

    @Option(help: "Seconds between progress lines (step, loss, rate, ETA of each running run); 0 = none.")
    var progressEvery: Double = 30

    @Option(help: ArgumentHelp("Serve the live dashboard at HOST:PORT, or PORT on 127.0.0.1 (docs/daemon.md).", valueName: "address"))
    var http: String?

    /// `--http`'s host and port: `PORT` alone listens on loopback.
    var httpAddress: (host: String, port: Int)? {
        guard let http else { return nil }
        let parts = http.split(separator: ":", omittingEmptySubsequences: false)
        let (host, port) = parts.count == 1 ? ("127.0.0.1", parts[0]) : (parts.dropLast().joined(separator: ":"), parts[parts.count - 1])
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else { return nil }
        return (host, number)
    }

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1, got \(workers)") }
        guard stopTimeout >= 0 else { throw ValidationError("--stop-timeout must not be negative, got \(stopTimeout)") }
        guard progressEvery >= 0 else { throw ValidationError("--progress-every must not be negative, got \(progressEvery)") }
        guard http == nil || httpAddress != nil else { throw ValidationError("--http \(http ?? ""); expected HOST:PORT or PORT (1–65535), e.g. 127.0.0.1:8080") }
    }

    func run() throws {
        var configuration = DaemonConfiguration(recipesDirectory: URL(fileURLWithPath: recipes),
                                                varDirectory: varDirectory.layout.varDirectory)
        configuration.workers = workers
        configuration.exitWhenIdle = exitWhenIdle
        configuration.stopTimeout = stopTimeout
        configuration.progressInterval = progressEvery
        let log: (String) -> Void = { line in
            // Unbuffered: the daemon's output usually goes to a file or the journal.
            FileHandle.standardOutput.write(Data("\(daemonTimestamp()) \(line)\n".utf8))
        }
        // Rescanned before each recipe is validated: plugin files installed while the daemon runs are used
        // without a restart (workers, new processes, load the folder afresh).
        let plugins = PluginLibraryLoader(directory: customPluginDirectory(varDirectory.layout), probe: checkPluginInChildProcess)
        // Asked by the daemon's thread and by the dashboard's (which validates uploads): one at a time.
        let pluginsLock = NSLock()
        let registry: () -> PluginRegistry = {
            pluginsLock.lock()
            defer { pluginsLock.unlock() }
            let (registry, problems) = plugins.registry(extending: keelPluginRegistry())
            for problem in problems { log("\(problem); skipped") }
            return registry
        }
        let daemon = Daemon(configuration: configuration, registry: registry, log: log)
        try runReportingErrors {
            if let (host, port) = httpAddress {
                try DashboardServer(host: host, port: port, recipesDirectory: configuration.recipesDirectory,
                                    layout: varDirectory.layout, registry: registry, log: log).start()
            }
            try daemon.run()
        }
    }
}

private func daemonTimestamp() -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
    return formatter.string(from: Date())
}
