import Foundation
import XCTest
@testable import KeelCore

/// The series a report page draws, read back from its SVG (`data-*` attributes of each polyline) and
/// the number of eval dots drawn with it.
struct DrawnSeries: Equatable {
    let run: String
    let split: String
    let metric: String
    let steps: [Int]
    let values: [Double]

    static func all(in html: String) throws -> [DrawnSeries] {
        let pattern = try NSRegularExpression(pattern:
            #"<polyline [^>]*data-run="([^"]*)" data-split="([^"]*)" data-metric="([^"]*)" data-steps="([^"]*)" data-values="([^"]*)""#)
        return pattern.matches(in: html, range: NSRange(html.startIndex..., in: html)).map { match in
            let field = { (i: Int) in String(html[Range(match.range(at: i), in: html)!]) }
            return DrawnSeries(run: field(1), split: field(2), metric: field(3),
                               steps: field(4).split(separator: " ").compactMap { Int($0) },
                               values: field(5).split(separator: " ").compactMap { Double($0) })
        }
    }

    /// What the store holds for every (run, split, metric), as the page must draw it.
    static func expected(_ store: KeelStore, runs: [String]) throws -> [DrawnSeries] {
        try runs.flatMap { run in
            try store.metricSeries(run).flatMap { split, series in
                series.map { DrawnSeries(run: run, split: split.rawValue, metric: $0.key, steps: $0.value.map(\.step), values: $0.value.map(\.value)) }
            }
        }
    }

    static func sorted(_ series: [DrawnSeries]) -> [DrawnSeries] { series.sorted { ($0.metric, $0.run, $0.split) < ($1.metric, $1.run, $1.split) } }
}

final class RunReportTests: XCTestCase {
    /// Two hand-made runs in a store: the page must draw exactly the stored values, mark the eval points,
    /// and carry the data report, checkpoints, answers, fingerprint and recipe (escaped), with nothing
    /// fetched from anywhere.
    func testPageDrawsTheStoredValuesOfTwoRuns() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keel-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try KeelStore(path: directory.appendingPathComponent("keel.db"))
        let runs = ["20261208-010000-a-0001", "20261208-010500-b-0002"]
        for (index, id) in runs.enumerated() {
            try store.createRun(NewRun(id: id, recipePath: "/recipes/\(id).yaml", recipeText: "loss: {name: dpo}  # <b>β & \"x\"</b>\n",
                                       fingerprint: "fp\(index)", fingerprintParts: ["recipe": "r\(index)", "model": "m\(index)"], totalSteps: 4))
            try store.setStatus(id, .running)
            for step in 1...4 {
                try store.recordMetrics(id, step: step, split: .train, [
                    TrainMetric.loss: 0.69 - 0.1 * Double(step * (index + 1)), TrainMetric.learningRate: 1e-3 * Double(step),
                    TrainMetric.gradNorm: 1.0 / Double(step), "rewards/margins": 0.05 * Double(step)])
            }
            for step in [0, 2, 4] {
                try store.recordMetrics(id, step: step, split: .eval, [TrainMetric.loss: 0.7 - 0.01 * Double(step), "rewards/accuracies": 0.25 * Double(step)])
            }
            var report = DataNodeReport(node: "data[0] 'hh'")
            (report.produced, report.skipped, report.metrics) = (90, ["too-long": 7], ["mean_words": 12.5])
            try store.recordEvent(id, kind: RunEvent.data, [DataReportEvent(report)])
            try store.recordCheckpoint(id, step: 4, path: "/var/runs/\(id)/checkpoints/step-4")
            try store.recordEvent(id, kind: RunEvent.generations, GenerationsEvent(step: 0, answers: [
                GeneratedAnswer(id: "eval.jsonl:3", prompt: "Capital of <France>?", answer: "Berlin", tokens: 2, reward: 0.1)]))
            try store.recordEvent(id, kind: RunEvent.generations, GenerationsEvent(step: 4, answers: [
                GeneratedAnswer(id: "eval.jsonl:3", prompt: "Capital of <France>?", answer: "Paris & more", tokens: 3, reward: 0.9)]))
            try store.setStatus(id, .completed)
        }
        let html = RunReportPage(runs: try runs.map { try RunHistory(store: store, runID: $0) }).html

        XCTAssertEqual(DrawnSeries.sorted(try DrawnSeries.all(in: html)), DrawnSeries.sorted(try DrawnSeries.expected(store, runs: runs)))
        let figures = try NSRegularExpression(pattern: #"<figure class="chart" data-metric="([^"]*)""#)
            .matches(in: html, range: NSRange(html.startIndex..., in: html)).map { String(html[Range($0.range(at: 1), in: html)!]) }
        XCTAssertEqual(figures, ["loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins"])
        // A dot per eval point (2 runs × 2 eval metrics × 3 steps) and a mark per run's evaluated step.
        XCTAssertEqual(html.components(separatedBy: "<circle class=\"point eval\"").count - 1, 12)
        XCTAssertEqual(html.components(separatedBy: "<line class=\"eval-mark\"").count - 1, 5 * 2 * 3)

        // Self-contained: no script, stylesheet, image or frame from anywhere; the only URL is SVG's namespace.
        for forbidden in ["<script", "<link", "<img", "<iframe", "src=", "@import", "url("] { XCTAssertFalse(html.contains(forbidden), forbidden) }
        XCTAssertEqual(Set(html.components(separatedBy: "http").dropFirst().map { String($0.prefix(24)) }), ["://www.w3.org/2000/svg\" "])

        for run in runs {
            XCTAssertTrue(html.contains("<section class=\"run\" id=\"run-\(run)\""), run)
            XCTAssertTrue(html.contains("<td class=\"status\">completed</td>"))
        }
        XCTAssertTrue(html.contains("<td>data[0] &#39;hh&#39;</td><td class=\"num\">90</td><td>too-long 7</td><td></td><td>mean_words 12.5</td>"))
        XCTAssertTrue(html.contains("<td class=\"num\">4</td><td>no</td>"), "the checkpoint at step 4, not yet complete")
        XCTAssertTrue(html.contains("<th>step 0</th><th>step 4</th>"))
        XCTAssertTrue(html.contains("<pre>Capital of &lt;France&gt;?</pre></td><td><pre>Berlin</pre><p class=\"note\">reward 0.100, 2 tokens</p></td>"
                                    + "<td><pre>Paris &amp; more</pre><p class=\"note\">reward 0.900, 3 tokens</p></td>"))
        XCTAssertTrue(html.contains("fingerprint <code class=\"fingerprint\">fp1</code> over model <code>m1</code>, recipe <code>r1</code>"))
        XCTAssertTrue(html.contains("<pre class=\"recipe\">loss: {name: dpo}  # &lt;b&gt;β &amp; &quot;x&quot;&lt;/b&gt;\n</pre>"))
        XCTAssertFalse(html.contains("<b>β"))
    }

    func testTicksAreRoundAndInsideTheRange() {
        let unit = SVGChart.ticks(0 ... 1)
        XCTAssertEqual(unit.count, 6)
        for (tick, expected) in zip(unit, [0, 0.2, 0.4, 0.6, 0.8, 1]) { XCTAssertEqual(tick, expected, accuracy: 1e-12) }
        XCTAssertEqual(SVGChart.ticks(-3 ... 17), [0, 5, 10, 15])
        let padded = SVGChart.paddedRange([0.5])
        XCTAssertLessThan(padded.lowerBound, 0.5)
        XCTAssertGreaterThan(padded.upperBound, 0.5)
    }
}

/// `keel run` of a tiny recipe with `logging: {tensorboard: tb}`, then `keel report` and `keel export
/// --tensorboard` on it: the page and the event files hold what the store holds.
final class RunReportEndToEndTests: XCTestCase {
    static func trainTinyRun(_ fixture: RunFixture, steps: Int = 20) throws -> String {
        try fixture.writeTinyDPO([("steps: 300", "steps: \(steps)"), ("eval_every: 100", "eval_every: 10"),
                                  ("checkpoint_every: 100", "checkpoint_every: 10"), ("log_every: 10", "log_every: 2\n  eval_generations: 2\n  eval_max_new_tokens: 6"),
                                  ("output: {name: tiny-dpo}", "output: {name: tiny-dpo}\nlogging: {tensorboard: tb}")])
        let run = try fixture.keel(["run", fixture.recipe.path])
        XCTAssertEqual(run.status, 0, run.error)
        return try fixture.store().runSummaries().map(\.run.id).first ?? ""
    }

    func testReportOfOneAndOfTwoRuns() throws {
        let fixture = try RunFixture()
        let first = try Self.trainTinyRun(fixture)
        let one = try fixture.keel(["report", first])
        XCTAssertEqual(one.status, 0, one.error)
        let page = fixture.varDirectory.appendingPathComponent("runs/\(first)/report.html")
        let html = try String(contentsOf: page, encoding: .utf8)
        let store = try fixture.store()
        XCTAssertEqual(DrawnSeries.sorted(try DrawnSeries.all(in: html)), DrawnSeries.sorted(try DrawnSeries.expected(store, runs: [first])))
        XCTAssertEqual(try store.metricSeries(first, split: .train, name: TrainMetric.loss).map(\.step), [2, 4, 6, 8, 10, 12, 14, 16, 18, 20])
        XCTAssertTrue(html.contains("<th>step 0</th><th>step 20</th>"), "the before/after answers")
        XCTAssertTrue(html.contains("<td>data[0] synthetic-preferences</td><td class=\"num\">640</td>"), "the data report")

        let second = try Self.trainTinyRun(fixture, steps: 10)
        let out = fixture.directory.appendingPathComponent("compare.html")
        let two = try fixture.keel(["report", first, second, "--out", out.path])
        XCTAssertEqual(two.status, 0, two.error)
        let compared = try String(contentsOf: out, encoding: .utf8)
        XCTAssertEqual(DrawnSeries.sorted(try DrawnSeries.all(in: compared)), DrawnSeries.sorted(try DrawnSeries.expected(store, runs: [first, second])))
        XCTAssertEqual(Set(try DrawnSeries.all(in: compared).filter { $0.metric == TrainMetric.loss }.map(\.run)), [first, second])

        let unknown = try fixture.keel(["report", "no-such-run"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.error.contains("no run with id 'no-such-run'"), unknown.error)
        let noOut = try fixture.keel(["report", first, second])
        XCTAssertNotEqual(noOut.status, 0)
        XCTAssertTrue(noOut.error.contains("several runs need --out FILE"), noOut.error)
        try assertChromiumDrawsThePage(out, expected: try DrawnSeries.expected(store, runs: [first, second]))
    }

    /// The page as headless Chromium (Debian's `chromium`) parses and draws it: the DOM it builds holds
    /// the stored values in its charts, and a screenshot is drawn (kept as report-screenshot.png beside
    /// the page while the test runs). Skipped, saying so, without Chromium; scripts/test.sh installs it.
    func assertChromiumDrawsThePage(_ page: URL, expected: [DrawnSeries]) throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw XCTSkip("no chromium (apt-get install chromium, or run scripts/test.sh): the report was not drawn by a browser")
        }
        func run(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: chromium)
            process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                 "--user-data-dir=" + page.deletingLastPathComponent().appendingPathComponent("chromium").path] + arguments + [page.absoluteString]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, "chromium \(arguments)")
            return String(decoding: output, as: UTF8.self)
        }
        let dom = try run(["--dump-dom"])
        XCTAssertEqual(DrawnSeries.sorted(try DrawnSeries.all(in: dom)), DrawnSeries.sorted(expected))
        let screenshot = page.deletingLastPathComponent().appendingPathComponent("report-screenshot.png")
        _ = try run(["--window-size=1280,2000", "--screenshot=" + screenshot.path])
        let png = try Data(contentsOf: screenshot)
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG")
        let size = png.subdata(in: 16 ..< 24).map { $0 }
        XCTAssertEqual(size.prefix(4).reduce(0) { $0 << 8 | Int($1) }, 1280, "width")
        XCTAssertEqual(size.suffix(4).reduce(0) { $0 << 8 | Int($1) }, 2000, "height")
    }
}
