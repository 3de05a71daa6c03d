import Foundation
import Glibc

/// Keel's record of everything: runs, their metrics, checkpoints and events, and the daemon's recipe
/// queue, in one SQLite file (normally `var/keel.db`). Every method is one transaction, so a crash
/// between two calls never leaves half of a call behind.
public final class KeelStore: @unchecked Sendable {
    public let database: SQLiteDatabase

    /// Opens (creating and migrating as needed) the store at `path`.
    /// Opens (creating if needed) the store at `path`; its folder (`var/`) and the database files are
    /// made owner-only (0700 / 0600), also when an older keel created them readable by everyone.
    public init(path: URL, busyTimeout: TimeInterval = 5) throws {
        let folder = path.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        database = try SQLiteDatabase(path: path.path, busyTimeout: busyTimeout)
        try StoreSchema.migrate(database)
        chmod(folder.path, 0o700)
        for suffix in ["", "-wal", "-shm"] { chmod(path.path + suffix, 0o600) }
    }

    // MARK: Runs

    public func createRun(_ run: NewRun, status: RunStatus = .queued, at time: Date = Date()) throws {
        try database.execute("""
            INSERT INTO runs (id, recipe_path, recipe_text, fingerprint, fingerprint_parts, status, created_at,
                              total_steps, log_path)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, run.id, run.recipePath, run.recipeText, run.fingerprint, try Self.json(run.fingerprintParts),
            status.rawValue, time.timeIntervalSince1970, run.totalSteps, run.logPath)
    }

    /// Moves a run to `status`. The first move to `running` sets `started_at`; a finished status sets
    /// `finished_at`. `error` replaces the stored error only when given; a run that starts `running`
    /// again (resumed) drops the error of its previous attempt.
    public func setStatus(_ runID: String, _ status: RunStatus, error: String? = nil, at time: Date = Date()) throws {
        let changed = try database.execute("""
            UPDATE runs SET status = ?1,
                error = CASE WHEN ?1 = 'running' THEN ?2 ELSE COALESCE(?2, error) END,
                started_at = CASE WHEN ?1 = 'running' AND started_at IS NULL THEN ?3 ELSE started_at END,
                finished_at = CASE WHEN ?4 THEN ?3 ELSE NULL END
            WHERE id = ?5
            """, status.rawValue, error, time.timeIntervalSince1970, status.isFinished, runID)
        guard changed == 1 else { throw StoreError.unknownRun(runID) }
    }

    /// The worker's sign of life, written every few seconds; `step` (if given) becomes `current_step`.
    public func heartbeat(_ runID: String, pid: Int32, step: Int? = nil, at time: Date = Date()) throws {
        let changed = try database.execute("""
            UPDATE runs SET pid = ?, heartbeat_at = ?, current_step = COALESCE(?, current_step) WHERE id = ?
            """, pid, time.timeIntervalSince1970, step, runID)
        guard changed == 1 else { throw StoreError.unknownRun(runID) }
    }

    /// Sets `total_steps` once the trainer knows it (after loading the data).
    public func setTotalSteps(_ runID: String, _ totalSteps: Int) throws {
        let changed = try database.execute("UPDATE runs SET total_steps = ? WHERE id = ?", totalSteps, runID)
        guard changed == 1 else { throw StoreError.unknownRun(runID) }
    }

    /// Marks `running` runs whose last heartbeat (or start, if none) is older than `cutoff` as
    /// `interrupted`, and returns their ids: the daemon calls this at start and periodically, so a
    /// worker killed without a word (OOM, power loss) ends up resumable instead of "running" forever.
    @discardableResult
    public func interruptStaleRuns(heartbeatBefore cutoff: Date, at time: Date = Date()) throws -> [String] {
        try database.transaction {
            try database.query("""
                UPDATE runs SET status = 'interrupted', finished_at = ?,
                    error = COALESCE(error, 'worker stopped sending heartbeats')
                WHERE status = 'running' AND COALESCE(heartbeat_at, started_at, created_at) < ?
                RETURNING id
                """, time.timeIntervalSince1970, cutoff.timeIntervalSince1970).map { try $0.string("id") }.sorted()
        }
    }

    public func run(_ runID: String) throws -> RunRecord? {
        try database.query("SELECT * FROM runs WHERE id = ?", runID).first.map(Self.runRecord)
    }

    /// The id `reference` names: a run's id, the start of exactly one id, or `latest` (the run created last).
    public func resolveRunID(_ reference: String) throws -> String {
        if reference == RunReference.latest {
            guard let id = try database.query("SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT 1").first else {
                throw StoreError.unknownRun(reference)
            }
            return try id.string("id")
        }
        if try run(reference) != nil { return reference }
        let matches = try database.query("SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 ORDER BY created_at DESC, id DESC", reference)
            .map { try $0.string("id") }
        guard matches.count <= 1 else { throw StoreError.ambiguousRun(reference, matches: matches) }
        guard let id = matches.first else { throw StoreError.unknownRun(reference) }
        return id
    }

    /// Runs that trained exactly this recipe + data + model, oldest first.
    public func runs(withFingerprint fingerprint: String) throws -> [RunRecord] {
        try database.query("SELECT * FROM runs WHERE fingerprint = ? ORDER BY created_at, id", fingerprint)
            .map(Self.runRecord)
    }

    public func runs(withStatus status: RunStatus) throws -> [RunRecord] {
        try database.query("SELECT * FROM runs WHERE status = ? ORDER BY created_at, id", status.rawValue)
            .map(Self.runRecord)
    }

    /// How many runs the store holds (`keel status` says when it shows fewer).
    public func runCount() throws -> Int {
        try database.query("SELECT COUNT(*) AS n FROM runs")[0].int("n")
    }

    /// The newest `limit` runs (all if nil; newest first), each with the metrics of its last train and
    /// eval step. Two reads without a transaction: a metric row newer than its run row is harmless here,
    /// and a status reader must not take the write lock the training worker needs.
    public func runSummaries(limit: Int? = nil) throws -> [RunSummary] {
        let limit = limit ?? -1  // SQLite: a negative LIMIT is no limit
        let runs = try database.query("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT ?", limit)
            .map(Self.runRecord)
        return try summaries(runs, latestMetrics: database.query("""
            WITH recent AS (SELECT id FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1),
                 last AS (SELECT run_id, split, MAX(step) AS step FROM metrics
                          WHERE run_id IN (SELECT id FROM recent) GROUP BY run_id, split)
            SELECT m.run_id, m.split, m.step, m.name, m.value
            FROM metrics m JOIN last USING (run_id, split, step)
            """, limit))
    }

    /// One run with the metrics of its last train and eval step (nil: no such run).
    public func runSummary(_ runID: String) throws -> RunSummary? {
        guard let run = try run(runID) else { return nil }
        return try summaries([run], latestMetrics: database.query("""
            WITH last AS (SELECT run_id, split, MAX(step) AS step FROM metrics WHERE run_id = ?1 GROUP BY run_id, split)
            SELECT m.run_id, m.split, m.step, m.name, m.value
            FROM metrics m JOIN last USING (run_id, split, step)
            """, runID)).first
    }

    /// `runs` with their latest metrics, from rows (run_id, split, step, name, value) of each run's last steps.
    private func summaries(_ runs: [RunRecord], latestMetrics rows: [SQLiteRow]) throws -> [RunSummary] {
        var latest: [String: [MetricSplit: MetricsAtStep]] = [:]
        for row in rows {
            let split = try Self.enumValue(MetricSplit.self, row, "metrics", "split")
            let step = try row.int("step")
            latest[try row.string("run_id"), default: [:]][split, default: MetricsAtStep(step: step, values: [:])]
                .values[try row.string("name")] = try row.double("value")
        }
        return runs.map { run in
            RunSummary(run: run, latestTrain: latest[run.id]?[.train], latestEval: latest[run.id]?[.eval])
        }
    }

    // MARK: Metrics

    /// Records all `values` of one step in one transaction. Re-recording a (split, step, name) — as a
    /// run resumed from a checkpoint before that step does — overwrites the value instead of adding a row.
    public func recordMetrics(_ runID: String, step: Int, split: MetricSplit, _ values: [String: Double]) throws {
        if let name = values.first(where: { $0.value.isNaN })?.key {
            throw StoreError.notANumber(runID: runID, step: step, name: name)
        }
        try database.transaction {
            for (name, value) in values.sorted(by: { $0.key < $1.key }) {
                try database.execute("""
                    INSERT INTO metrics (run_id, split, step, name, value) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (run_id, split, step, name) DO UPDATE SET value = excluded.value
                    """, runID, split.rawValue, step, name, value)
            }
        }
    }

    /// One metric's values by step, ascending.
    public func metricSeries(_ runID: String, split: MetricSplit, name: String) throws -> [(step: Int, value: Double)] {
        try database.query("""
            SELECT step, value FROM metrics WHERE run_id = ? AND split = ? AND name = ? ORDER BY step
            """, runID, split.rawValue, name).map { (step: try $0.int("step"), value: try $0.double("value")) }
    }

    /// Every metric of a run: split → name → values by step, ascending.
    public func metricSeries(_ runID: String) throws -> [MetricSplit: [String: [(step: Int, value: Double)]]] {
        var series: [MetricSplit: [String: [(step: Int, value: Double)]]] = [:]
        for row in try database.query("SELECT split, step, name, value FROM metrics WHERE run_id = ? ORDER BY split, name, step", runID) {
            let split = try Self.enumValue(MetricSplit.self, row, "metrics", "split")
            series[split, default: [:]][try row.string("name"), default: []].append((step: try row.int("step"), value: try row.double("value")))
        }
        return series
    }

    // MARK: Checkpoints

    /// Notes that a checkpoint for `step` is being written to `path` (not yet complete). A leftover
    /// row from a crashed attempt at the same step is reset.
    public func recordCheckpoint(_ runID: String, step: Int, path: String, at time: Date = Date()) throws {
        try database.execute("""
            INSERT INTO checkpoints (run_id, step, path, complete, created_at) VALUES (?1, ?2, ?3, 0, ?4)
            ON CONFLICT (run_id, step) DO UPDATE
                SET path = ?3, complete = 0, sha256 = NULL, bytes = NULL, created_at = ?4
            """, runID, step, path, time.timeIntervalSince1970)
    }

    /// Marks the checkpoint complete — only after its directory is durably in place under its final name.
    /// The commit is durable against power loss (`SQLiteDatabase.durably`): older checkpoints are deleted
    /// right after it, so the mark must not be lost while they are gone.
    public func markCheckpointComplete(_ runID: String, _ checkpoint: CompletedCheckpoint) throws {
        let changed = try database.durably { try database.execute("""
            UPDATE checkpoints SET complete = 1, path = ?, sha256 = ?, bytes = ? WHERE run_id = ? AND step = ?
            """, checkpoint.directory.path, checkpoint.manifestSHA256, checkpoint.bytes, runID, checkpoint.step) }
        guard changed == 1 else { throw StoreError.unknownCheckpoint(runID: runID, step: checkpoint.step) }
    }

    public func latestCompleteCheckpoint(_ runID: String) throws -> CheckpointRecord? {
        try database.query("""
            SELECT * FROM checkpoints WHERE run_id = ? AND complete = 1 ORDER BY step DESC LIMIT 1
            """, runID).first.map(Self.checkpointRecord)
    }

    /// All checkpoint rows of a run, complete or not, by step ascending.
    public func checkpoints(_ runID: String) throws -> [CheckpointRecord] {
        try database.query("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", runID)
            .map(Self.checkpointRecord)
    }

    public func deleteCheckpoint(_ runID: String, step: Int) throws {
        try database.execute("DELETE FROM checkpoints WHERE run_id = ? AND step = ?", runID, step)
    }

    // MARK: Events

    /// Appends an event; `message` is stored as JSON (keys sorted). `runID` nil: a daemon-wide event.
    @discardableResult
    public func recordEvent<Message: Encodable>(_ runID: String?, kind: String, _ message: Message,
                                                at time: Date = Date()) throws -> Int64 {
        let rows = try database.query("""
            INSERT INTO events (run_id, time, kind, message) VALUES (?, ?, ?, ?) RETURNING id
            """, runID, time.timeIntervalSince1970, kind, try Self.json(message))
        return try rows[0].int64("id")
    }

    /// Events of one run (or the daemon-wide ones for nil), oldest first.
    public func events(_ runID: String?) throws -> [EventRecord] {
        try database.query("SELECT * FROM events WHERE run_id IS ? ORDER BY id", runID).map { row in
            EventRecord(id: try row.int64("id"), runID: try row.optionalString("run_id"),
                        time: Date(timeIntervalSince1970: try row.double("time")),
                        kind: try row.string("kind"), message: try row.string("message"))
        }
    }

    // MARK: Recipe queue (daemon)

    /// Adds a recipe file version to the queue, unless this exact (path, content) is already known.
    /// Returns the entry and whether it was new.
    @discardableResult
    public func enqueueRecipe(path: String, contentSHA256: String,
                              at time: Date = Date()) throws -> (entry: QueuedRecipe, inserted: Bool) {
        try database.transaction {
            let inserted = try database.execute("""
                INSERT INTO recipe_queue (recipe_path, content_sha256, seen_at, state) VALUES (?, ?, ?, 'queued')
                ON CONFLICT (recipe_path, content_sha256) DO NOTHING
                """, path, contentSHA256, time.timeIntervalSince1970) == 1
            let row = try database.query("""
                SELECT * FROM recipe_queue WHERE recipe_path = ? AND content_sha256 = ?
                """, path, contentSHA256)[0]
            return (try Self.queuedRecipe(row), inserted)
        }
    }

    /// Atomically takes the oldest queued recipe and marks it `running`; nil if none is queued. Two
    /// daemons (or threads) can never claim the same entry: the UPDATE runs under the write lock.
    public func claimNextRecipe() throws -> QueuedRecipe? {
        try database.transaction {
            try database.query("""
                UPDATE recipe_queue SET state = 'running'
                WHERE id = (SELECT id FROM recipe_queue WHERE state = 'queued' ORDER BY id LIMIT 1)
                RETURNING *
                """).first.map(Self.queuedRecipe)
        }
    }

    /// Moves a queue entry to `state`; `runID` and `error` replace the stored ones only when given.
    public func setRecipeState(_ id: Int64, _ state: RecipeQueueState, runID: String? = nil,
                               error: String? = nil) throws {
        let changed = try database.execute("""
            UPDATE recipe_queue SET state = ?, run_id = COALESCE(?, run_id), error = COALESCE(?, error) WHERE id = ?
            """, state.rawValue, runID, error, id)
        guard changed == 1 else { throw StoreError.unknownQueueEntry(id) }
    }

    /// Queue entries in claim order, optionally only those in `state`.
    public func queuedRecipes(state: RecipeQueueState? = nil) throws -> [QueuedRecipe] {
        try database.query("SELECT * FROM recipe_queue WHERE ?1 IS NULL OR state = ?1 ORDER BY id", state?.rawValue)
            .map(Self.queuedRecipe)
    }

    // MARK: Row decoding

    private static func runRecord(_ row: SQLiteRow) throws -> RunRecord {
        let pid = try row.optionalInt64("pid")
        guard pid.map({ Int32(exactly: $0) != nil }) ?? true else {
            throw StoreError.corruptValue(table: "runs", column: "pid", value: "\(pid ?? 0)")
        }
        let partsText = try row.string("fingerprint_parts")
        guard let parts = try? JSONDecoder().decode([String: String].self, from: Data(partsText.utf8)) else {
            throw StoreError.corruptValue(table: "runs", column: "fingerprint_parts", value: partsText)
        }
        return RunRecord(
            id: try row.string("id"), recipePath: try row.string("recipe_path"),
            recipeText: try row.string("recipe_text"), fingerprint: try row.string("fingerprint"),
            fingerprintParts: parts, status: try enumValue(RunStatus.self, row, "runs", "status"),
            createdAt: Date(timeIntervalSince1970: try row.double("created_at")),
            startedAt: try row.optionalDouble("started_at").map(Date.init(timeIntervalSince1970:)),
            finishedAt: try row.optionalDouble("finished_at").map(Date.init(timeIntervalSince1970:)),
            error: try row.optionalString("error"), totalSteps: try row.optionalInt("total_steps"),
            currentStep: try row.int("current_step"), pid: pid.map { Int32($0) },
            heartbeatAt: try row.optionalDouble("heartbeat_at").map(Date.init(timeIntervalSince1970:)),
            logPath: try row.optionalString("log_path"))
    }

    private static func checkpointRecord(_ row: SQLiteRow) throws -> CheckpointRecord {
        CheckpointRecord(
            runID: try row.string("run_id"), step: try row.int("step"), path: try row.string("path"),
            manifestSHA256: try row.optionalString("sha256"), bytes: try row.optionalInt64("bytes"),
            isComplete: try row.int64("complete") == 1,
            createdAt: Date(timeIntervalSince1970: try row.double("created_at")))
    }

    private static func queuedRecipe(_ row: SQLiteRow) throws -> QueuedRecipe {
        QueuedRecipe(
            id: try row.int64("id"), recipePath: try row.string("recipe_path"),
            contentSHA256: try row.string("content_sha256"),
            seenAt: Date(timeIntervalSince1970: try row.double("seen_at")),
            state: try enumValue(RecipeQueueState.self, row, "recipe_queue", "state"),
            runID: try row.optionalString("run_id"), error: try row.optionalString("error"))
    }

    private static func enumValue<E: RawRepresentable>(_ type: E.Type, _ row: SQLiteRow, _ table: String,
                                                       _ column: String) throws -> E where E.RawValue == String {
        let text = try row.string(column)
        guard let value = E(rawValue: text) else {
            throw StoreError.corruptValue(table: table, column: column, value: text)
        }
        return value
    }

    private static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
