import Foundation
import Hummingbird
import KeelCore
import KeelDaemon

/// `keel daemon --http HOST:PORT`: the daemon's live dashboard, served by Hummingbird inside the daemon
/// process. Reads come from the store; the two state changes go through the same paths as the command
/// line: queueing writes a validated recipe into the watched recipes folder (where the daemon's watcher
/// queues it exactly as a dropped file), cancelling is `keel cancel`'s `cancelRun`.
///
/// Routes (every page is self-contained: inline CSS, SVG and script, nothing fetched from elsewhere):
/// - `GET /` the queue and every run (status, step, latest loss), a drop zone and file form to queue a
///   recipe, cancel buttons; reloads itself every 5 s;
/// - `GET /runs/RUN` the run's report (`keel report`), reloading every 3 s while the run is not finished;
/// - `GET /runs/RUN/log`, `GET /runs/RUN/recipe` the worker log's end and the recipe as run, plain text;
/// - `POST /api/queue?name=FILE.yaml` (body: the recipe) and `POST /api/runs/RUN/cancel`: state changes,
///   refused with 401 unless the request carries the token (`Authorization: Bearer …`)
///   that the daemon wrote to `var/dashboard-token` (mode 0600) when it started.
///
/// A run id from a request is only ever looked up in the store (unknown: 404), never joined to a path;
/// an upload's name must be a plain `*.yaml` / `*.yml` file name (no folder, no leading dot: 400), its
/// body at most `maxRecipeBytes` (413), it must validate as `keel validate` does (422 with the same
/// `file:line:column` messages) and may not replace an existing recipe file (409).
public final class DashboardServer: @unchecked Sendable {
    public static let maxRecipeBytes = 256 * 1024
    public static let tokenFileName = "dashboard-token"

    let host: String
    let port: Int
    let recipesDirectory: URL
    let layout: RunLayout
    let registry: () -> PluginRegistry
    let log: (String) -> Void
    let token: String

    /// Writes a new token to `var/dashboard-token` (mode 0600); `start` then serves.
    public init(host: String, port: Int, recipesDirectory: URL, layout: RunLayout,
                registry: @escaping () -> PluginRegistry, log: @escaping (String) -> Void) throws {
        (self.host, self.port, self.recipesDirectory, self.layout, self.registry, self.log) =
            (host, port, recipesDirectory.standardizedFileURL, layout, registry, log)
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in bytes.indices { bytes[i] = UInt8.random(in: .min ... .max) }
        token = bytes.map { String(format: "%02x", $0) }.joined()
        try Self.writePrivately(Data(token.utf8), to: tokenFile)
    }

    public var tokenFile: URL { layout.varDirectory.appendingPathComponent(Self.tokenFileName) }

    /// Creates or truncates `url` with mode 0600 (also when it existed with wider permissions).
    static func writePrivately(_ data: Data, to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DaemonError("cannot write \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0, data.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == data.count else {
            throw DaemonError("cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    /// Starts serving in the background; returns once the socket listens, or throws why it cannot.
    public func start() throws {
        let started = DispatchSemaphore(value: 0)
        let failure = LockedError()
        let app = Application(router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "keel"),
                              onServerRunning: { _ in started.signal() })
        Task.detached { [log, host, port] in
            do {
                try await app.runService(gracefulShutdownSignals: [])
            } catch {
                failure.set(error)
                log("dashboard on \(host):\(port) stopped: \(error)")
                started.signal()
            }
        }
        guard started.wait(timeout: .now() + 30) == .success else { throw DaemonError("the dashboard did not start within 30 s") }
        if let error = failure.get() { throw DaemonError("cannot serve the dashboard on \(host):\(port): \(error)") }
        log("dashboard on http://\(host):\(port)/ (token for queueing and cancelling in \(tokenFile.path))")
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/") { [self] _, _ in html(try DashboardPage(store: store()).html) }
        router.get("/runs/:run") { [self] _, context in
            let history = try RunHistory(store: store(), runID: try knownRun(context).id)
            var page = RunReportPage(runs: [history])
            page.refreshSeconds = history.run.observedStatus.isFinished ? nil : 3
            return html(page.html)
        }
        router.get("/runs/:run/log") { [self] _, context in
            let run = try knownRun(context)
            let url = URL(fileURLWithPath: run.logPath ?? layout.run(run.id).appendingPathComponent(Daemon.workerLogName).path)
            guard let handle = try? FileHandle(forReadingFrom: url) else { return text("no log yet\n") }
            defer { try? handle.close() }
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: size > 262_144 ? size - 262_144 : 0)
            return text(String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self))
        }
        router.get("/runs/:run/recipe") { [self] _, context in text(try knownRun(context).recipeText) }
        router.post("/api/queue") { [self] request, _ in try await queue(request) }
        router.post("/api/runs/:run/cancel") { [self] request, context in
            try authorize(request)
            let run = try knownRun(context)
            do {
                return text(try store().cancelRun(run.id, by: "dashboard") + "\n")
            } catch let error as DaemonError {
                return text("\(error)\n", .conflict)
            }
        }
        return router
    }

    func store() throws -> KeelStore { try KeelStore(path: layout.store) }

    /// The run a request names, if the store has it: a request's id never becomes a path.
    func knownRun(_ context: BasicRequestContext) throws -> RunRecord {
        let id = context.parameters.get("run") ?? ""
        guard let run = try store().run(id) else { throw HTTPError(.notFound, message: "no run with id '\(id)'") }
        return run
    }

    func authorize(_ request: Request) throws {
        let given = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        guard let given, Self.constantTimeEqual(given, token) else {
            throw HTTPError(.unauthorized, message: "this request changes state; send the token from \(tokenFile.path) as `Authorization: Bearer TOKEN`")
        }
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// A plain recipe file name: letters, digits, '.', '_', '-', ending in .yaml or .yml, no leading dot.
    static func isRecipeFileName(_ name: String) -> Bool {
        !name.hasPrefix(".") && (name.hasSuffix(".yaml") || name.hasSuffix(".yml")) && name.count <= 128
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    func queue(_ request: Request) async throws -> Response {
        try authorize(request)
        let name = request.uri.queryParameters.get("name") ?? ""
        guard Self.isRecipeFileName(name) else {
            throw HTTPError(.badRequest, message: "name '\(name)'; expected a recipe file name (letters, digits, '.', '_', '-', ending in .yaml or .yml)")
        }
        let body = try await request.body.collect(upTo: Self.maxRecipeBytes)
        let destination = recipesDirectory.appendingPathComponent(name)
        guard !FileManager.default.fileExists(atPath: destination.path) else {
            throw HTTPError(.conflict, message: "\(name) already exists in \(recipesDirectory.path); choose another name")
        }
        // Validated as the daemon validates it (relative paths resolve against the recipes folder, whose
        // export destinations are checked against it and var/) under a dotfile
        // name the watcher ignores, then renamed into place: the watcher sees a complete file.
        let staged = recipesDirectory.appendingPathComponent(".upload-\(UUID().uuidString).yaml")
        try Data(body.readableBytesView).write(to: staged)
        defer { try? FileManager.default.removeItem(at: staged) }
        do {
            _ = try RecipeLoader(registry: registry(), protecting: [recipesDirectory, layout.varDirectory]).load(staged, displayName: name)
        } catch let errors as RecipeErrors {
            return text(errors.description + "\n", .unprocessableContent)
        }
        guard rename(staged.path, destination.path) == 0 else {
            throw HTTPError(.internalServerError, message: "cannot move the recipe into \(recipesDirectory.path): \(String(cString: strerror(errno)))")
        }
        log("dashboard: queued \(name) (\(body.readableBytes) bytes)")
        return text("\(name) written to \(recipesDirectory.path); the daemon queues it\n", .accepted)
    }

    func html(_ body: String) -> Response {
        text(body, type: "text/html; charset=utf-8")
    }

    func text(_ body: String, _ status: HTTPResponse.Status = .ok, type: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: type, .cacheControl: "no-store"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// An error handed from the server task to the thread waiting for it to start.
final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    func set(_ error: Error) { lock.lock(); self.error = error; lock.unlock() }
    func get() -> Error? { lock.lock(); defer { lock.unlock() }; return error }
}
