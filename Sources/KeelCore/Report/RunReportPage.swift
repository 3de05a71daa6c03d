import Foundation

/// `keel report RUN [RUN2 …]`: one self-contained HTML page (inline CSS and SVG, no script, nothing
/// fetched) drawn from the store. Every metric is one chart with each run in its own color, train solid,
/// eval dashed with its evaluated steps marked; then, per run, the data report, checkpoints, the
/// before/after answers to held-out prompts, the fingerprint and the recipe exactly as run.
public struct RunReportPage {
    public let runs: [RunHistory]
    /// Reload the page this often (the dashboard's page of a run that is still training); nil: never.
    public var refreshSeconds: Int?

    public init(runs: [RunHistory]) { self.runs = runs }

    /// Shown first, in this order; the other metrics follow by name, the speed ones last.
    static let leadingMetrics = [TrainMetric.loss, TrainMetric.learningRate, TrainMetric.gradNorm]
    static let trailingMetrics = [TrainMetric.stepTime, TrainMetric.tokensPerSecond]

    /// Every metric name of any run and split, in chart order.
    var metricNames: [String] {
        let names = Set(runs.flatMap { $0.metrics.values.flatMap(\.keys) })
        func rank(_ name: String) -> (Int, Int, String) {
            if let i = Self.leadingMetrics.firstIndex(of: name) { return (0, i, name) }
            if let i = Self.trailingMetrics.firstIndex(of: name) { return (2, i, name) }
            return (1, 0, name)
        }
        return names.sorted { rank($0) < rank($1) }
    }

    func chart(_ metric: String) -> SVGChart {
        var series: [SVGChart.Series] = []
        for (index, run) in runs.enumerated() {
            for split in MetricSplit.allCases {
                guard let points = run.metrics[split]?[metric], !points.isEmpty else { continue }
                series.append(SVGChart.Series(run: run.run.id, color: index, split: split, points: points))
            }
        }
        return SVGChart(metric: metric, series: series,
                        evalSteps: runs.enumerated().map { (color: $0.offset, steps: $0.element.evalSteps) })
    }

    public var html: String {
        let ids = runs.map(\.run.id)
        var out = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
                   refreshSeconds.map { "<meta http-equiv=\"refresh\" content=\"\($0)\">" } ?? "",
                   "<title>Keel report: \(HTML.escape(ids.joined(separator: ", ")))</title>",
                   "<style>\(Self.style)</style>", "</head>", "<body>",
                   "<h1>Keel report</h1>"]
        out.append("<section id=\"runs\"><h2>Runs</h2><table><thead><tr><th></th><th>run</th><th>status</th><th>step</th>"
                   + "<th>recipe</th><th>started (UTC)</th><th>finished (UTC)</th><th>error</th></tr></thead><tbody>")
        for (index, history) in runs.enumerated() {
            let run = history.run
            out.append("<tr class=\"run-row\" data-run=\"\(HTML.escape(run.id))\"><td><span class=\"swatch\" style=\"background:\(SVGChart.color(index))\"></span></td>"
                       + "<td><a href=\"#run-\(HTML.escape(run.id))\">\(HTML.escape(run.id))</a></td>"
                       + "<td class=\"status\">\(run.observedStatus.rawValue)</td>"
                       + "<td>\(run.currentStep)/\(run.totalSteps.map(String.init) ?? "?")</td>"
                       + "<td>\(HTML.escape(run.recipePath))</td><td>\(Self.time(run.startedAt))</td><td>\(Self.time(run.finishedAt))</td>"
                       + "<td>\(HTML.escape(run.error ?? ""))</td></tr>")
        }
        out.append("</tbody></table></section>")

        out.append("<section id=\"metrics\"><h2>Metrics</h2>")
        out.append("<p class=\"legend\">solid: train · dashed with dots: eval · faint vertical lines: evaluated steps</p>")
        let names = metricNames
        if names.isEmpty { out.append("<p>No metrics recorded yet.</p>") }
        out.append("<div class=\"charts\">")
        for name in names {
            out.append("<figure class=\"chart\" data-metric=\"\(HTML.escape(name))\"><figcaption>\(HTML.escape(name))</figcaption>")
            out.append(chart(name).svg)
            out.append("</figure>")
        }
        out.append("</div></section>")

        for history in runs { out.append(runSection(history)) }
        out += ["</body>", "</html>"]
        return out.joined(separator: "\n") + "\n"
    }

    private func runSection(_ history: RunHistory) -> String {
        let run = history.run
        var out = ["<section class=\"run\" id=\"run-\(HTML.escape(run.id))\" data-run=\"\(HTML.escape(run.id))\">",
                   "<h2>\(HTML.escape(run.id))</h2>"]

        out.append("<h3>Data</h3>")
        out.append(Self.table("data-report", ["node", "produced", "skipped", "flagged", "statistics"], history.dataReports.map { report in
            "<td>\(HTML.escape(report.node))</td><td class=\"num\">\(report.produced)</td>"
                + "<td>\(Self.counts(report.skipped))</td><td>\(Self.counts(report.flagged))</td>"
                + "<td>\(Self.counts(report.metrics.mapValues { String(format: "%.4g", $0) }))</td>"
        }, empty: "No data report recorded."))

        out.append("<h3>Checkpoints</h3>")
        out.append(Self.table("checkpoints", ["step", "complete", "bytes", "written (UTC)", "path", "manifest sha256"], history.checkpoints.map { checkpoint in
            "<td class=\"num\">\(checkpoint.step)</td><td>\(checkpoint.isComplete ? "yes" : "no")</td>"
                + "<td class=\"num\">\(checkpoint.bytes.map(String.init) ?? "")</td><td>\(Self.time(checkpoint.createdAt))</td>"
                + "<td>\(HTML.escape(checkpoint.path))</td><td class=\"hash\">\(HTML.escape(checkpoint.manifestSHA256 ?? ""))</td>"
        }, empty: "No checkpoint kept."))

        if let generations = history.generations, let first = generations.steps.first, let last = generations.steps.last {
            out.append("<h3>Answers to held-out prompts</h3>")
            out.append("<p>\(HTML.escape(generations.summary))</p>")
            let later = Dictionary(last.answers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            out.append("<table class=\"generations\"><thead><tr><th>prompt</th><th>step \(first.step)</th>"
                       + (last.step != first.step ? "<th>step \(last.step)</th>" : "") + "</tr></thead><tbody>")
            for answer in first.answers {
                var row = "<tr data-id=\"\(HTML.escape(answer.id))\"><td><pre>\(HTML.escape(answer.prompt))</pre></td>\(Self.answerCell(answer))"
                if last.step != first.step { row += later[answer.id].map(Self.answerCell) ?? "<td></td>" }
                out.append(row + "</tr>")
            }
            out.append("</tbody></table>")
        }

        out.append("<h3>Recipe</h3>")
        out.append("<p>fingerprint <code class=\"fingerprint\">\(HTML.escape(run.fingerprint))</code> over "
                   + run.fingerprintParts.sorted { $0.key < $1.key }.map { "\(HTML.escape($0.key)) <code>\(HTML.escape($0.value))</code>" }
                       .joined(separator: ", ") + "</p>")
        out.append("<p>\(HTML.escape(run.recipePath))</p>")
        out.append("<pre class=\"recipe\">\(HTML.escape(run.recipeText))</pre>")
        out.append("</section>")
        return out.joined(separator: "\n")
    }

    /// A table of `cells` rows (each the `<td>`s of one row) under `headers`; `empty` as a paragraph when there is no row.
    public static func table(_ cssClass: String, _ headers: [String], _ cells: [String], empty: String) -> String {
        guard !cells.isEmpty else { return "<p>\(empty)</p>" }
        return "<table class=\"\(cssClass)\"><thead><tr>" + headers.map { "<th>\(HTML.escape($0))</th>" }.joined() + "</tr></thead><tbody>\n"
            + cells.map { "<tr>\($0)</tr>" }.joined(separator: "\n") + "\n</tbody></table>"
    }

    private static func answerCell(_ answer: GeneratedAnswer) -> String {
        let reward = answer.reward.map { String(format: "reward %.3f, ", $0) } ?? ""
        return "<td><pre>\(HTML.escape(answer.answer))</pre><p class=\"note\">\(reward)\(answer.tokens) tokens</p></td>"
    }

    private static func counts<V>(_ values: [String: V]) -> String {
        values.sorted { $0.key < $1.key }.map { HTML.escape("\($0.key) \($0.value)") }.joined(separator: "<br>")
    }

    public static func time(_ date: Date?) -> String {
        guard let date else { return "" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: date)
    }

    public static let style = """
        body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
        h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
        table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
        td.num { text-align: right; } .hash, code { font-family: monospace; font-size: 12px; }
        .swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px; }
        figure.chart { margin: 0; border: 1px solid #eee; padding: 4px; }
        figcaption { font-weight: 600; font-family: monospace; }
        svg.chart .plot { fill: #fcfcfc; stroke: #ccc; }
        svg.chart .grid { stroke: #eee; } svg.chart text { font: 11px sans-serif; fill: #555; }
        svg.chart .series { fill: none; stroke-width: 1.6; } svg.chart .series.eval { stroke-dasharray: 5 3; }
        svg.chart .eval-mark { stroke-opacity: 0.25; stroke-dasharray: 2 3; }
        pre { white-space: pre-wrap; margin: 0; max-width: 560px; } pre.recipe { background: #f6f6f6; padding: 8px; max-width: none; }
        .note { color: #666; margin: 2px 0 0; font-size: 12px; } .legend { color: #555; }
        """
}
