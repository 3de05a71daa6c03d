import ArgumentParser
import Foundation
import KeelCore

/// `keel report RUN [RUN2 …] [--out FILE]`: a self-contained HTML page of the runs' charts and records.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an HTML page (inline SVG charts, nothing fetched) of one or more runs from the store.",
        discussion: "Several runs are drawn on the same charts, one color each. Default output for one run: var/runs/RUN/report.html; with several runs, --out is required.")

    @Argument(help: ArgumentHelp("Run ids.", valueName: "run"))
    var runIDs: [String]

    @Option(help: "The HTML file to write.")
    var out: String?

    @OptionGroup var varDirectory: VarDirectoryOption

    func validate() throws {
        guard !runIDs.isEmpty else { throw ValidationError("name at least one run") }
        guard out != nil || runIDs.count == 1 else { throw ValidationError("several runs need --out FILE") }
    }

    func run() throws {
        try runReportingErrors {
            let layout = varDirectory.layout
            let store = try KeelStore(path: layout.store)
            let page = RunReportPage(runs: try runIDs.map { try RunHistory(store: store, runID: $0) })
            let destination = out.map { URL(fileURLWithPath: $0) } ?? layout.htmlReport(runIDs[0])
            try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(page.html.utf8).write(to: destination, options: .atomic)
            print("report of \(runIDs.joined(separator: ", ")) written to \(destination.path)")
        }
    }
}
