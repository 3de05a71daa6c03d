import Foundation
import Glibc

/// What a foreground run prints. On a terminal: one progress line rewritten in place (step, bar, loss,
/// elapsed<ETA, lr, epoch, tokens/s), never wider than the terminal (the bar shrinks first, then the
/// least useful fields go), and evaluation results as lines above it. Otherwise (a log file, the daemon):
/// one plain line per recorded step (every `log_every` steps), and one per evaluation. `tee` also appends
/// every line (the plain form of steps) to a run's log, which `keel logs` prints.
public final class ProgressDisplay {
    let isTerminal: Bool
    private let write: (String) -> Void
    private let columns: () -> Int
    private var totalSteps = 0, firstStep = 0
    private var started = Date()
    private var barShown = false
    private var log: FileHandle?

    /// `isTerminal` nil: ask whether standard output is a TTY. `columns`: the terminal's width, asked at
    /// every step (a resized window takes effect at once).
    public init(isTerminal: Bool? = nil, columns: @escaping () -> Int = ProgressDisplay.terminalColumns,
                write: @escaping (String) -> Void = { FileHandle.standardOutput.write(Data($0.utf8)) }) {
        self.isTerminal = isTerminal ?? (isatty(STDOUT_FILENO) == 1)
        self.columns = columns
        self.write = write
    }

    deinit { try? log?.close() }

    /// The width of the terminal on standard output; $COLUMNS, or 80, when it has none.
    public static func terminalColumns() -> Int {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init) ?? 80
    }

    /// From now on, every line also goes to the end of `url` (created if needed).
    func tee(to url: URL) throws {
        try? log?.close()
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: url.path), !FileManager.default.createFile(atPath: url.path, contents: nil) {
            throw TrainerError("cannot create the run's log \(url.path)")
        }
        log = try FileHandle(forWritingTo: url)
        try log?.seekToEnd()
    }

    public func line(_ text: String) {
        clearBar()
        write(text + "\n")
        log?.write(Data((text + "\n").utf8))
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
        let elapsed = Date().timeIntervalSince(started), done = step - firstStep
        let eta = done > 0 ? elapsed / Double(done) * Double(totalSteps - step) : 0
        let tokens = metrics[TrainMetric.tokensPerSecond].map { $0 >= 1000 ? String(format: "%.1fk", $0 / 1000) : String(format: "%.0f", $0) } ?? "–"
        let epoch = metrics[TrainMetric.epoch].map { String(format: "%.2f", $0) } ?? "–"
        let plain = "step \(step)/\(totalSteps) loss \(value(TrainMetric.loss)) grad_norm \(value(TrainMetric.gradNorm)) "
            + "lr \(value(TrainMetric.learningRate)) epoch \(epoch) tok/s \(tokens) step_time \(value(TrainMetric.stepTime))s "
            + "elapsed \(Self.duration(elapsed)) ETA \(Self.duration(eta))"
        log?.write(Data((plain + "\n").utf8))
        guard isTerminal else { return write(plain + "\n") }
        let text = Self.bar(step: step, of: totalSteps, width: columns() - 1, fields: [
            "loss \(value(TrainMetric.loss))", "\(Self.duration(elapsed))<\(Self.duration(eta))",
            "lr \(value(TrainMetric.learningRate))", "ep \(epoch)", "\(tokens) tok/s",
        ])
        write("\r\u{1B}[K" + text)
        barShown = true
    }

    /// `step a/b ████░░ f1 f2 …` in at most `width` characters: the bar (up to 24) shrinks to 6, then the
    /// last fields go, then the bar; the text is cut only if the step count alone does not fit.
    static func bar(step: Int, of total: Int, width: Int, fields: [String]) -> String {
        let head = "step \(step)/\(total)"
        var kept = fields
        func length(bar: Int) -> Int { ([head] + kept).reduce(0) { $0 + $1.count } + kept.count + (bar > 0 ? bar + 1 : 0) }
        while !kept.isEmpty, length(bar: 6) > width { kept.removeLast() }
        let barWidth = length(bar: 6) <= width ? min(24, 6 + width - length(bar: 6)) : 0
        let filled = total > 0 ? barWidth * min(step, total) / total : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: barWidth - filled)
        return String(([head] + (barWidth > 0 ? [bar] : []) + kept).joined(separator: " ").prefix(max(width, 0)))
    }

    private func clearBar() {
        if barShown { write("\r\u{1B}[K"); barShown = false }
    }

    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
