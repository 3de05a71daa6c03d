import Foundation
import XCTest
import KeelCore

/// `keel daemon --http`: the real binary serving its dashboard on loopback, driven with curl (what the
/// page's script sends) and read by headless Chromium.
final class DashboardTests: XCTestCase {
    struct Reply {
        let status: Int
        let body: String
    }

    /// One HTTP request with curl; `token` goes in `Authorization: Bearer`, `body` is posted as is.
    func request(_ port: Int, _ path: String, method: String = "GET", token: String? = nil, body: Data? = nil,
                 in sandbox: DaemonSandbox) throws -> Reply {
        var arguments = ["-s", "--path-as-is", "-X", method, "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"]
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let body {
            let file = sandbox.staging.appendingPathComponent("body-\(UUID().uuidString)")
            try body.write(to: file)
            arguments += ["--data-binary", "@\(file.path)", "-H", "Content-Type: application/yaml"]
        }
        // curl's own status is not checked: a refusal may close the connection before an upload is sent.
        let (_, output) = try DaemonSandbox.run("/usr/bin/curl", arguments)
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        return Reply(status: Int(lines.last ?? "") ?? -1, body: lines.dropLast().joined(separator: "\n"))
    }

    func startDashboard(_ sandbox: DaemonSandbox) throws -> (daemon: Process, port: Int, token: String) {
        let port = Int.random(in: 20_000 ..< 40_000)
        let daemon = try sandbox.startDaemon(["--http", "127.0.0.1:\(port)"])
        let tokenFile = sandbox.varDirectory.appendingPathComponent("dashboard-token")
        sandbox.wait("the dashboard to answer") {
            FileManager.default.fileExists(atPath: tokenFile.path) && ((try? request(port, "/", in: sandbox).status) == 200)
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: tokenFile.path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600, "the token file is private")
        return (daemon, port, try String(contentsOf: tokenFile, encoding: .utf8))
    }

    /// Queueing needs the token; bad names, traversal, oversize bodies and invalid recipes are refused
    /// (the latter with `keel validate`'s messages); a recipe queued through it trains, and the run's page
    /// is the report of what the store holds. The daemon stays up throughout.
    func testQueueingNeedsTheTokenAndAValidRecipe() throws {
        let sandbox = try DaemonSandbox(self)
        let (daemon, port, token) = try startDashboard(sandbox)
        defer { sandbox.stop(daemon) }
        let recipe = Data(DaemonSandbox.tinyRecipe(name: "web", steps: 6).utf8)

        XCTAssertEqual(try request(port, "/api/queue?name=web.yaml", method: "POST", body: recipe, in: sandbox).status, 401)
        XCTAssertEqual(try request(port, "/api/queue?name=web.yaml", method: "POST", token: String(token.reversed()), body: recipe, in: sandbox).status, 401)
        for name in ["..%2Fweb.yaml", "sub%2Fweb.yaml", ".hidden.yaml", "web.txt", ""] {
            let reply = try request(port, "/api/queue?name=\(name)", method: "POST", token: token, body: recipe, in: sandbox)
            XCTAssertEqual(reply.status, 400, "name \(name): \(reply.body)")
        }
        let oversize = try request(port, "/api/queue?name=big.yaml", method: "POST", token: token,
                                   body: Data(repeating: UInt8(ascii: "#"), count: 300 * 1024), in: sandbox)
        XCTAssertEqual(oversize.status, 413)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: sandbox.recipes.path), [], "nothing refused reached recipes/")

        let bad = "model: {tiny: {layers: 2}}\ndata: [{name: synthetic-preferences, count: 8}]\nloss: {name: dpo, betta: 0.1}\ntraining: {steps: 1}\n"
        let refused = try request(port, "/api/queue?name=bad.yaml", method: "POST", token: token, body: Data(bad.utf8), in: sandbox)
        XCTAssertEqual(refused.status, 422)
        try sandbox.stage("bad.yaml", bad)
        let validate = try DaemonSandbox.run(sandbox.keel, ["validate", "bad.yaml"], in: sandbox.staging)
        XCTAssertTrue(refused.body.contains("bad.yaml:3:"), refused.body)
        XCTAssertTrue(validate.output.hasPrefix(refused.body.trimmingCharacters(in: .newlines)), "dashboard:\n\(refused.body)\nkeel validate:\n\(validate.output)")

        for path in ["/runs/..%2F..%2F..%2Fetc%2Fpasswd/log", "/runs/../../../etc/passwd", "/runs/%2Fetc%2Fpasswd/recipe"] {
            XCTAssertEqual(try request(port, path, in: sandbox).status, 404, path)
        }

        let queued = try request(port, "/api/queue?name=web.yaml", method: "POST", token: token, body: recipe, in: sandbox)
        XCTAssertEqual(queued.status, 202, queued.body)
        XCTAssertEqual(try request(port, "/api/queue?name=web.yaml", method: "POST", token: token, body: recipe, in: sandbox).status, 409,
                       "an existing recipe is not replaced")
        sandbox.wait("the queued recipe to train") { (try? sandbox.run(named: "web.yaml")?.status) == .completed }
        let run = try XCTUnwrap(try sandbox.run(named: "web.yaml"))
        let page = try request(port, "/runs/\(run.id)", in: sandbox)
        XCTAssertEqual(page.status, 200)
        XCTAssertEqual(page.body, RunReportPage(runs: [try RunHistory(store: try sandbox.store(), runID: run.id)]).html)
        XCTAssertEqual(try request(port, "/runs/\(run.id)/recipe", in: sandbox).body, String(decoding: recipe, as: UTF8.self))
        XCTAssertTrue(try request(port, "/runs/\(run.id)/log", in: sandbox).body.contains("done: 6 steps"))
        XCTAssertTrue(try request(port, "/", in: sandbox).body.contains("data-run=\"\(run.id)\""))
        XCTAssertEqual(try request(port, "/api/runs/\(run.id)/cancel", method: "POST", in: sandbox).status, 401)
        XCTAssertEqual(try request(port, "/api/runs/\(run.id)/cancel", method: "POST", token: token, in: sandbox).status, 409, "a completed run")
        XCTAssertTrue(daemon.isRunning, sandbox.daemonOutput)
    }

    /// During a run, headless Chromium loads the dashboard and the run's page: the page reloads itself,
    /// its charts hold the store's values at that moment; then the run is cancelled through the API.
    func testChromiumShowsARunWhileItTrains() throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw XCTSkip("no chromium (apt-get install chromium, or run scripts/test.sh): the dashboard was not loaded in a browser")
        }
        let sandbox = try DaemonSandbox(self)
        let (daemon, port, token) = try startDashboard(sandbox)
        defer { sandbox.stop(daemon) }
        try sandbox.stage("long.yaml", DaemonSandbox.tinyRecipe(name: "long", steps: 100_000))
        try sandbox.drop("long.yaml")
        sandbox.wait("the run to record a few steps") { ((try? sandbox.run(named: "long.yaml")?.currentStep) ?? 0) >= 3 }
        let run = try XCTUnwrap(try sandbox.run(named: "long.yaml"))

        func dom(_ path: String) throws -> String {
            let (status, output) = try DaemonSandbox.run(chromium, ["--headless", "--no-sandbox", "--disable-gpu",
                                                                    "--user-data-dir=" + sandbox.root.appendingPathComponent("chromium").path,
                                                                    "--dump-dom", "http://127.0.0.1:\(port)\(path)"])
            XCTAssertEqual(status, 0)
            return output
        }
        let index = try dom("/")
        XCTAssertTrue(index.contains("<td class=\"status\">running</td>"), index)
        XCTAssertTrue(index.contains("<button data-cancel=\"\(run.id)\">cancel</button>"))
        let page = try dom("/runs/\(run.id)")
        XCTAssertTrue(page.contains("<meta http-equiv=\"refresh\" content=\"3\">"))
        let losses = try sandbox.store().metricSeries(run.id, split: .train, name: TrainMetric.loss)
        let drawn = try XCTUnwrap(page.range(of: "data-metric=\"loss\" data-steps=\"")).upperBound
        let steps = page[drawn...].prefix { $0 != "\"" }.split(separator: " ").compactMap { Int($0) }
        XCTAssertFalse(steps.isEmpty)
        XCTAssertEqual(steps, Array(losses.map(\.step).prefix(steps.count)), "the drawn steps are the store's, up to when the page was drawn")

        let cancelled = try request(port, "/api/runs/\(run.id)/cancel", method: "POST", token: token, in: sandbox)
        XCTAssertEqual(cancelled.status, 200, cancelled.body)
        sandbox.wait("the run to be cancelled") { (try? sandbox.run(named: "long.yaml")?.status) == .cancelled }
        XCTAssertTrue(daemon.isRunning, sandbox.daemonOutput)
    }
}
