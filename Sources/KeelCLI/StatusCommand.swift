import ArgumentParser
import Foundation
import KeelCore

/// `keel status [RUN] [--json] [--limit N | --all]`: runs with their status, progress and latest metrics.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show runs: status, step/total, latest train and eval metrics.")

    @Argument(help: ArgumentHelp("Show only this run: its id, the start of exactly one, or `latest`.", valueName: "run"))
    var runID: String?

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: "Show the newest N runs; when there are more, a line on standard error says so.")
    var limit = 50

    @Flag(help: "Show every run.")
    var all = false

    @OptionGroup var varDirectory: VarDirectoryOption

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1, got \(limit)") }
    }

    func run() throws {
        try runReportingErrors {
            guard let store = try varDirectory.existingStore() else {
                guard runID == nil else { throw StoreError.unknownRun(runID ?? "") }
                return print(json ? "[]" : "no runs: \(varDirectory.layout.store.path) does not exist")
            }
            let shown = all || runID != nil ? nil : limit
            var summaries = try store.runSummaries(limit: shown)
            if let runID {
                let id = try store.resolveRunID(runID)
                summaries = summaries.filter { $0.run.id == id }
                guard !summaries.isEmpty else { throw StoreError.unknownRun(runID) }
            } else if let shown, case let total = try store.runCount(), total > shown {
                printError("showing the newest \(shown) of \(total) runs; --all shows every one, --limit N the newest N")
            }
            if json {
                let data = try JSONSerialization.data(withJSONObject: summaries.map(Self.jsonObject),
                                                      options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else if summaries.isEmpty {
                print("no runs in \(varDirectory.layout.store.path)")
            } else {
                for summary in summaries { print(Self.text(summary, detailed: runID != nil)) }
            }
        }
    }

    static func jsonObject(_ s: RunSummary) -> [String: Any] {
        var object: [String: Any] = [
            "id": s.run.id, "status": s.run.observedStatus.rawValue, "recipe": s.run.recipePath, "step": s.run.currentStep,
            "created_at": s.run.createdAt.timeIntervalSince1970,
        ]
        object["total_steps"] = s.run.totalSteps
        object["error"] = s.run.error
        object["pid"] = s.run.pid.map { Int($0) }
        if s.run.observedStatus != s.run.status { object["recorded_status"] = s.run.status.rawValue }
        object["heartbeat_at"] = s.run.heartbeatAt?.timeIntervalSince1970
        object["eta_seconds"] = s.etaSeconds
        if let train = s.latestTrain { object["train"] = ["step": train.step, "metrics": train.values] }
        if let eval = s.latestEval { object["eval"] = ["step": eval.step, "metrics": eval.values] }
        return object
    }

    static func text(_ s: RunSummary, detailed: Bool) -> String {
        func format(_ v: Double) -> String { String(format: "%.4g", v) }
        let total = s.run.totalSteps.map(String.init) ?? "?"
        var line = "\(s.run.id)  \(s.run.observedStatus.rawValue)  step \(s.run.currentStep)/\(total)"
        if let loss = s.latestTrain?.values[TrainMetric.loss] { line += "  loss \(format(loss))" }
        if let accuracy = s.latestEval?.values["rewards/accuracies"] { line += "  eval/rewards/accuracies \(format(accuracy))" }
        if let eta = s.etaSeconds { line += "  ETA \(ProgressDisplay.duration(eta))" }
        if let error = s.run.error { line += "\n    error: \(error)" }
        if s.run.observedStatus != s.run.status, let pid = s.run.pid {
            line += "\n    recorded as \(s.run.status.rawValue), but its process \(pid) is gone; continue with `keel resume \(s.run.id)`"
        }
        guard detailed else { return line }
        line += "\n    recipe: \(s.run.recipePath)"
        for (label, metrics) in [("train", s.latestTrain), ("eval", s.latestEval)] {
            guard let metrics else { continue }
            let prefix = label == "eval" ? "eval/" : ""
            line += "\n    \(label) @ step \(metrics.step): "
                + metrics.values.sorted { $0.key < $1.key }.map { "\(prefix)\($0.key) \(format($0.value))" }.joined(separator: "  ")
        }
        return line
    }
}
