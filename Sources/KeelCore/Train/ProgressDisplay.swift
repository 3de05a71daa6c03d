import Foundation

/// What a foreground run prints. On a terminal: one progress bar line rewritten in place (step, loss,
/// tokens/s, ETA) and evaluation results as lines above it. Otherwise (a log file, the daemon): one plain
/// line per recorded step (every `log_every` steps), and one per evaluation.
public final class ProgressDisplay {
    let isTerminal: Bool
    private let write: (String) -> Void
    private var totalSteps = 0, firstStep = 0
    private var started = Date()
    private var barShown = false

    /// `isTerminal` nil: ask whether standard output is a TTY.
    public init(isTerminal: Bool? = nil, write: @escaping (String) -> Void = { FileHandle.standardOutput.write(Data($0.utf8)) }) {
        self.isTerminal = isTerminal ?? (isatty(STDOUT_FILENO) == 1)
        self.write = write
    }

    public func line(_ text: String) {
        clearBar()
        write(text + "\n")
    }

    func begin(totalSteps: Int, fromStep: Int) {
        (self.totalSteps, firstStep, started) = (totalSteps, fromStep, Date())
    }

    func end() { if barShown { write("\n"); barShown = false } }

    func record(step: Int, split: MetricSplit, metrics: [String: Double]) {
        func value(_ name: String) -> String { metrics[name].map { String(format: "%.4g", $0) } ?? "–" }
        if split == .eval {
            let names = metrics.keys.sorted()
            line("eval step \(step): " + names.map { "eval/\($0) \(value($0))" }.joined(separator: " "))
            return
        }
        let done = step - firstStep
        let eta = done > 0 ? Date().timeIntervalSince(started) / Double(done) * Double(totalSteps - step) : 0
        let tokens = metrics[TrainMetric.tokensPerSecond].map { $0 >= 1000 ? String(format: "%.1fk", $0 / 1000) : String(format: "%.0f", $0) } ?? "–"
        if isTerminal {
            let width = 24, filled = totalSteps > 0 ? width * step / totalSteps : 0
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            write("\r\u{1B}[K step \(step)/\(totalSteps) \(bar) loss \(value(TrainMetric.loss)) · \(tokens) tok/s · ETA \(Self.duration(eta))")
            barShown = true
        } else {
            write("step \(step)/\(totalSteps) loss \(value(TrainMetric.loss)) grad_norm \(value(TrainMetric.gradNorm)) "
                  + "lr \(value(TrainMetric.learningRate)) tok/s \(tokens) step_time \(value(TrainMetric.stepTime))s ETA \(Self.duration(eta))\n")
        }
    }

    private func clearBar() {
        if barShown { write("\r\u{1B}[K"); barShown = false }
    }

    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
