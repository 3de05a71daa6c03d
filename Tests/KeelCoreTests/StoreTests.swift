import Foundation
import XCTest
@testable import KeelCore

final class StoreTests: XCTestCase {
    private func makeStore() throws -> (KeelStore, URL) {
        let url = try makeStoreTestDirectory().appendingPathComponent("keel.db")
        return (try KeelStore(path: url), url)
    }

    private func newRun(_ id: String, fingerprint: String = "fp-1") -> NewRun {
        NewRun(id: id, recipePath: "recipes/\(id).yaml", recipeText: "method: dpo\nsteps: 10\n",
               fingerprint: fingerprint, fingerprintParts: ["recipe": "r1", "data": "d1", "model": "m1"],
               totalSteps: 10, logPath: "var/runs/\(id)/worker.log")
    }

    // MARK: Runs

    func testCreateRunAndReadItBack() throws {
        let (store, _) = try makeStore()
        let created = Date(timeIntervalSince1970: 1_790_000_000.5)
        try store.createRun(newRun("run-a"), at: created)
        let run = try XCTUnwrap(try store.run("run-a"))
        XCTAssertEqual(run.id, "run-a")
        XCTAssertEqual(run.recipePath, "recipes/run-a.yaml")
        XCTAssertEqual(run.recipeText, "method: dpo\nsteps: 10\n")
        XCTAssertEqual(run.fingerprintParts, ["recipe": "r1", "data": "d1", "model": "m1"])
        XCTAssertEqual(run.status, .queued)
        XCTAssertEqual(run.createdAt, created)
        XCTAssertNil(run.startedAt)
        XCTAssertEqual(run.totalSteps, 10)
        XCTAssertEqual(run.currentStep, 0)
        XCTAssertEqual(run.logPath, "var/runs/run-a/worker.log")
        XCTAssertNil(try store.run("no-such-run"))
        XCTAssertEqual(try store.runs(withFingerprint: "fp-1").map(\.id), ["run-a"])
        XCTAssertEqual(try store.runs(withStatus: .queued).map(\.id), ["run-a"])
    }

    func testDuplicateRunIDFailsWithSQLAndMessage() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        XCTAssertThrowsError(try store.createRun(newRun("run-a"))) { error in
            let sqliteError = error as? SQLiteError
            XCTAssertEqual(sqliteError.map { $0.code & 0xff }, 19 /* SQLITE_CONSTRAINT */)
            XCTAssertTrue(sqliteError?.message.contains("UNIQUE constraint failed: runs.id") == true, "\(error)")
            XCTAssertTrue(sqliteError?.sql?.contains("INSERT INTO runs") == true)
        }
    }

    func testStatusTransitionsSetTimestampsAndError() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        let start = Date(timeIntervalSince1970: 1000), end = Date(timeIntervalSince1970: 2000)
        try store.setStatus("run-a", .running, at: start)
        var run = try XCTUnwrap(try store.run("run-a"))
        XCTAssertEqual(run.status, .running)
        XCTAssertEqual(run.startedAt, start)
        XCTAssertNil(run.finishedAt)

        try store.setStatus("run-a", .failed, error: "loss is NaN at step 7", at: end)
        run = try XCTUnwrap(try store.run("run-a"))
        XCTAssertEqual(run.status, .failed)
        XCTAssertEqual(run.startedAt, start, "started_at keeps the first start")
        XCTAssertEqual(run.finishedAt, end)
        XCTAssertEqual(run.error, "loss is NaN at step 7")

        XCTAssertThrowsError(try store.setStatus("nope", .running)) {
            XCTAssertEqual($0 as? StoreError, .unknownRun("nope"))
        }
    }

    func testHeartbeatRecordsPidTimeAndStep() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        try store.heartbeat("run-a", pid: 4242, step: 17, at: Date(timeIntervalSince1970: 3000))
        try store.heartbeat("run-a", pid: 4242, at: Date(timeIntervalSince1970: 3005))
        let run = try XCTUnwrap(try store.run("run-a"))
        XCTAssertEqual(run.pid, 4242)
        XCTAssertEqual(run.heartbeatAt, Date(timeIntervalSince1970: 3005))
        XCTAssertEqual(run.currentStep, 17, "a heartbeat without a step keeps the last one")
    }

    func testRunsWithStaleHeartbeatAreInterrupted() throws {
        let (store, _) = try makeStore()
        for id in ["fresh", "stale", "never-beat", "done"] { try store.createRun(newRun(id)) }
        for id in ["fresh", "stale", "never-beat"] { try store.setStatus(id, .running, at: Date(timeIntervalSince1970: 100)) }
        try store.heartbeat("fresh", pid: 1, at: Date(timeIntervalSince1970: 500))
        try store.heartbeat("stale", pid: 2, at: Date(timeIntervalSince1970: 200))
        try store.setStatus("done", .completed, at: Date(timeIntervalSince1970: 150))

        let interrupted = try store.interruptStaleRuns(heartbeatBefore: Date(timeIntervalSince1970: 400),
                                                       at: Date(timeIntervalSince1970: 520))
        XCTAssertEqual(interrupted, ["never-beat", "stale"])
        XCTAssertEqual(try store.run("stale")?.status, .interrupted)
        XCTAssertEqual(try store.run("stale")?.finishedAt, Date(timeIntervalSince1970: 520))
        XCTAssertEqual(try store.run("stale")?.error, "worker stopped sending heartbeats")
        XCTAssertEqual(try store.run("fresh")?.status, .running)
        XCTAssertEqual(try store.run("done")?.status, .completed)
    }

    func testRunIDFormat() throws {
        var components = DateComponents()
        (components.year, components.month, components.day) = (2026, 11, 22)
        (components.hour, components.minute, components.second) = (8, 30, 15)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try XCTUnwrap(TimeZone(identifier: "UTC"))
        let date = try XCTUnwrap(calendar.date(from: components))
        let id = RunID.make(recipeName: "Tiny DPO", at: date)
        XCTAssertNotNil(id.range(of: #"^20261122-083015-tiny-dpo-[0-9a-f]{4}$"#, options: .regularExpression), id)
        XCTAssertEqual(RunID.slug("  ../weird__name!! "), "weird-name")
        XCTAssertEqual(RunID.slug("???"), "run")
    }

    // MARK: Metrics

    func testResumedRunOverwritesMetricsInsteadOfDuplicating() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        for step in 1...3 {
            try store.recordMetrics("run-a", step: step, split: .train, ["loss": 1.0 / Double(step), "lr": 1e-5])
        }
        // Resume from a checkpoint at step 1: steps 2 and 3 are trained and recorded again.
        for step in 2...3 {
            try store.recordMetrics("run-a", step: step, split: .train, ["loss": 2.0 / Double(step), "lr": 1e-5])
        }
        try store.recordMetrics("run-a", step: 3, split: .eval, ["loss": 0.9])
        let rowCount = try store.database.query("SELECT COUNT(*) AS n FROM metrics").first?.int("n")
        XCTAssertEqual(rowCount, 7, "3 steps x 2 train metrics + 1 eval metric")
        let loss = try store.metricSeries("run-a", split: .train, name: "loss")
        XCTAssertEqual(loss.map(\.step), [1, 2, 3])
        XCTAssertEqual(loss.map(\.value), [1.0, 1.0, 2.0 / 3.0])
        XCTAssertEqual(try store.metricSeries("run-a", split: .eval, name: "loss").map(\.value), [0.9])
    }

    func testNaNMetricIsRefusedAndNothingOfTheBatchIsStored() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        XCTAssertThrowsError(try store.recordMetrics("run-a", step: 5, split: .train, ["a": 1, "loss": .nan])) {
            XCTAssertEqual($0 as? StoreError, .notANumber(runID: "run-a", step: 5, name: "loss"))
        }
        XCTAssertTrue(try store.metricSeries("run-a", split: .train, name: "a").isEmpty)
    }

    func testMetricsForUnknownRunViolateForeignKeyAndRollBack() throws {
        let (store, _) = try makeStore()
        XCTAssertThrowsError(try store.recordMetrics("ghost", step: 1, split: .train, ["loss": 1, "zz": 2])) {
            XCTAssertTrue("\($0)".contains("FOREIGN KEY constraint failed"), "\($0)")
        }
        XCTAssertEqual(try store.database.query("SELECT COUNT(*) AS n FROM metrics").first?.int("n"), 0)
    }

    func testRunSummariesCarryLatestTrainAndEvalMetrics() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("older"), at: Date(timeIntervalSince1970: 100))
        try store.createRun(newRun("newer"), at: Date(timeIntervalSince1970: 200))
        try store.recordMetrics("older", step: 1, split: .train, ["loss": 0.7, "acc": 0.5])
        try store.recordMetrics("older", step: 2, split: .train, ["loss": 0.6, "acc": 0.6])
        try store.recordMetrics("older", step: 1, split: .eval, ["loss": 0.65])
        try store.recordMetrics("newer", step: 1, split: .train, ["loss": 0.69])

        let summaries = try store.runSummaries()
        XCTAssertEqual(summaries.map(\.run.id), ["newer", "older"])
        XCTAssertEqual(summaries[0].latestTrain, MetricsAtStep(step: 1, values: ["loss": 0.69]))
        XCTAssertNil(summaries[0].latestEval)
        XCTAssertEqual(summaries[1].latestTrain, MetricsAtStep(step: 2, values: ["loss": 0.6, "acc": 0.6]))
        XCTAssertEqual(summaries[1].latestEval, MetricsAtStep(step: 1, values: ["loss": 0.65]))
        XCTAssertEqual(try store.runSummaries(limit: 1).map(\.run.id), ["newer"])
    }

    // MARK: Transactions and concurrency

    func testTransactionRollsBackOnThrowAndSavepointUndoesOnlyInnerPart() throws {
        let (store, _) = try makeStore()
        let database = store.database
        struct Abort: Error {}
        XCTAssertThrowsError(try database.transaction {
            try store.createRun(newRun("a"))
            try store.createRun(newRun("b"))
            throw Abort()
        })
        XCTAssertNil(try store.run("a"))
        XCTAssertNil(try store.run("b"))

        try database.transaction {
            try store.createRun(newRun("outer"))
            do {
                try database.transaction {
                    try store.createRun(newRun("inner"))
                    throw Abort()
                }
            } catch is Abort {}
        }
        XCTAssertNotNil(try store.run("outer"))
        XCTAssertNil(try store.run("inner"))
    }

    /// A second connection's write waits (busy timeout) for the first connection's transaction, then
    /// succeeds; with no busy timeout it fails with SQLITE_BUSY and a message naming the statement.
    func testSecondConnectionWaitsForWriterWithinBusyTimeout() throws {
        let (store, url) = try makeStore()
        try store.createRun(newRun("run-a"))
        let patient = try SQLiteDatabase(path: url.path, busyTimeout: 5)
        let impatient = try SQLiteDatabase(path: url.path, busyTimeout: 0)

        let holding = DispatchSemaphore(value: 0), released = DispatchSemaphore(value: 0)
        let holdSeconds = 0.3
        Thread.detachNewThread {
            try? store.database.transaction {
                try store.database.execute("UPDATE runs SET current_step = 1 WHERE id = 'run-a'")
                holding.signal()
                Thread.sleep(forTimeInterval: holdSeconds)
            }
            released.signal()
        }
        holding.wait()
        XCTAssertThrowsError(try impatient.execute("UPDATE runs SET current_step = 3 WHERE id = 'run-a'")) { error in
            XCTAssertTrue((error as? SQLiteError)?.isBusy == true, "\(error)")
            XCTAssertTrue("\(error)".contains("UPDATE runs SET current_step = 3"), "\(error)")
        }
        let start = Date()
        try patient.execute("UPDATE runs SET current_step = 2 WHERE id = 'run-a'")
        let waited = Date().timeIntervalSince(start)
        released.wait()
        XCTAssertGreaterThan(waited, holdSeconds / 3, "the write should have waited for the other transaction")
        XCTAssertEqual(try store.run("run-a")?.currentStep, 2, "the waiting write lands after the first commit")
    }

    // MARK: Checkpoint rows

    func testCheckpointRowIsOnlyLatestOnceComplete() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        try store.recordCheckpoint("run-a", step: 100, path: "/ckpt/step-100")
        XCTAssertNil(try store.latestCompleteCheckpoint("run-a"))
        let manifest = CheckpointManifest(format: 1, step: 100, files: [])
        try store.markCheckpointComplete("run-a", CompletedCheckpoint(
            step: 100, directory: URL(fileURLWithPath: "/ckpt/step-100"), manifestSHA256: "abc", bytes: 42,
            manifest: manifest))
        try store.recordCheckpoint("run-a", step: 200, path: "/ckpt/step-200")
        let latest = try XCTUnwrap(try store.latestCompleteCheckpoint("run-a"))
        XCTAssertEqual(latest.step, 100)
        XCTAssertEqual(latest.manifestSHA256, "abc")
        XCTAssertEqual(latest.bytes, 42)
        XCTAssertEqual(try store.checkpoints("run-a").map(\.isComplete), [true, false])
        XCTAssertThrowsError(try store.markCheckpointComplete("run-a", CompletedCheckpoint(
            step: 300, directory: URL(fileURLWithPath: "/ckpt/step-300"), manifestSHA256: "x", bytes: 1,
            manifest: manifest))) {
            XCTAssertEqual($0 as? StoreError, .unknownCheckpoint(runID: "run-a", step: 300))
        }
    }

    // MARK: Events

    func testEventsStoreSortedJSONPerRunAndDaemonWide() throws {
        let (store, _) = try makeStore()
        try store.createRun(newRun("run-a"))
        try store.recordEvent("run-a", kind: "started", ["pid": "42", "host": "box"])
        try store.recordEvent(nil, kind: "daemon.started", ["version": Keel.version])
        let runEvents = try store.events("run-a")
        XCTAssertEqual(runEvents.map(\.kind), ["started"])
        XCTAssertEqual(runEvents.first?.message, #"{"host":"box","pid":"42"}"#)
        XCTAssertEqual(try store.events(nil).map(\.kind), ["daemon.started"])
    }

    // MARK: Recipe queue

    func testRecipeQueueIsIdempotentPerContentAndClaimsInOrder() throws {
        let (store, _) = try makeStore()
        let first = try store.enqueueRecipe(path: "recipes/a.yaml", contentSHA256: "h1")
        XCTAssertTrue(first.inserted)
        let again = try store.enqueueRecipe(path: "recipes/a.yaml", contentSHA256: "h1")
        XCTAssertFalse(again.inserted)
        XCTAssertEqual(again.entry.id, first.entry.id)
        try store.enqueueRecipe(path: "recipes/a.yaml", contentSHA256: "h2")  // edited: a new version
        try store.enqueueRecipe(path: "recipes/b.yaml", contentSHA256: "h3")

        let claimed = try XCTUnwrap(try store.claimNextRecipe())
        XCTAssertEqual(claimed.recipePath, "recipes/a.yaml")
        XCTAssertEqual(claimed.contentSHA256, "h1")
        XCTAssertEqual(claimed.state, .running)
        try store.createRun(newRun("run-a"))
        try store.setRecipeState(claimed.id, .done, runID: "run-a")
        let rejected = try XCTUnwrap(try store.claimNextRecipe())
        try store.setRecipeState(rejected.id, .rejected, error: "recipes/a.yaml: unknown method 'dpoo'")
        XCTAssertEqual(try store.claimNextRecipe()?.contentSHA256, "h3")
        XCTAssertNil(try store.claimNextRecipe())

        XCTAssertEqual(try store.queuedRecipes().map(\.state), [.done, .rejected, .running])
        XCTAssertEqual(try store.queuedRecipes(state: .done).first?.runID, "run-a")
        XCTAssertEqual(try store.queuedRecipes(state: .rejected).first?.error, "recipes/a.yaml: unknown method 'dpoo'")
        XCTAssertThrowsError(try store.setRecipeState(999, .done)) {
            XCTAssertEqual($0 as? StoreError, .unknownQueueEntry(999))
        }
    }

    /// Two connections (as two daemons would have) claim concurrently: every entry is claimed exactly once.
    func testConcurrentClaimsFromTwoConnectionsNeverShareAnEntry() throws {
        let (store, url) = try makeStore()
        let entryCount = 40
        for index in 0..<entryCount { try store.enqueueRecipe(path: "recipes/r\(index).yaml", contentSHA256: "h") }
        let other = try KeelStore(path: url)
        let lock = NSLock()
        var claimed: [Int64] = []
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            let mine = worker == 0 ? store : other
            while let entry = try? mine.claimNextRecipe() {
                lock.lock(); claimed.append(entry.id); lock.unlock()
            }
        }
        XCTAssertEqual(claimed.count, entryCount)
        XCTAssertEqual(Set(claimed).count, entryCount)
    }

    // MARK: Schema migrations

    func testFreshDatabaseMigratesFromVersionZero() throws {
        let url = try makeStoreTestDirectory().appendingPathComponent("keel.db")
        XCTAssertEqual(try SQLiteDatabase(path: url.path).userVersion(), 0)
        let store = try KeelStore(path: url)
        XCTAssertEqual(try store.database.userVersion(), StoreSchema.latestVersion)
        let tables = try store.database.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .map { try $0.string("name") }
        XCTAssertEqual(tables, ["checkpoints", "events", "metrics", "recipe_queue", "runs"])
        XCTAssertEqual(try store.database.query("PRAGMA journal_mode").first?["journal_mode"].text, "wal")
        XCTAssertEqual(try store.database.query("PRAGMA foreign_keys").first?["foreign_keys"].integer, 1)
    }

    /// A database left at version 1 (before the daemon queue) keeps its runs and gains the queue.
    func testVersionOneDatabaseMigratesAndKeepsItsRows() throws {
        let url = try makeStoreTestDirectory().appendingPathComponent("keel.db")
        do {
            let old = try SQLiteDatabase(path: url.path)
            try StoreSchema.migrate(old, to: 1)
            try old.execute("""
                INSERT INTO runs (id, recipe_path, recipe_text, fingerprint, fingerprint_parts, status, created_at)
                VALUES ('old-run', 'r.yaml', 'method: dpo', 'fp', '{}', 'completed', 5)
                """)
            XCTAssertEqual(try old.userVersion(), 1)
            XCTAssertThrowsError(try old.execute("SELECT * FROM recipe_queue"))
        }
        let store = try KeelStore(path: url)
        XCTAssertEqual(try store.database.userVersion(), 2)
        XCTAssertEqual(try store.run("old-run")?.status, .completed)
        XCTAssertTrue(try store.enqueueRecipe(path: "r.yaml", contentSHA256: "h").inserted)
    }

    func testDatabaseFromNewerKeelIsRefused() throws {
        let url = try makeStoreTestDirectory().appendingPathComponent("keel.db")
        try SQLiteDatabase(path: url.path).executeScript("PRAGMA user_version = 99")
        XCTAssertThrowsError(try KeelStore(path: url)) {
            XCTAssertEqual($0 as? StoreError, .schemaTooNew(path: url.path, found: 99, supported: StoreSchema.latestVersion))
        }
    }

    // MARK: Typed values

    func testTypedValuesRoundTripAndMismatchesAreErrors() throws {
        let database = try SQLiteDatabase(path: ":memory:")
        try database.execute("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)")
        let blob = Data([0, 1, 2, 255])
        let nothing: String? = nil
        try database.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", Int64.max, 0.25, "héllo", blob, nothing)
        let row = try XCTUnwrap(try database.query("SELECT * FROM t").first)
        XCTAssertEqual(try row.int64("i"), Int64.max)
        XCTAssertEqual(try row.double("r"), 0.25)
        XCTAssertEqual(try row.string("s"), "héllo")
        XCTAssertEqual(try row.data("b"), blob)
        XCTAssertNil(try row.optionalString("n"))
        XCTAssertThrowsError(try row.string("n")) { XCTAssertTrue("\($0)".contains("column 'n' is NULL"), "\($0)") }
        XCTAssertThrowsError(try row.int64("s")) { XCTAssertTrue("\($0)".contains("expected INTEGER"), "\($0)") }
        XCTAssertThrowsError(try row.int64("missing")) { XCTAssertTrue("\($0)".contains("no column named"), "\($0)") }
        XCTAssertThrowsError(try database.execute("SELECT ?", 1, 2)) {
            XCTAssertTrue("\($0)".contains("1 parameters, got 2 arguments"), "\($0)")
        }
        XCTAssertThrowsError(try database.execute("SELEC 1")) {
            XCTAssertTrue("\($0)".contains("syntax error") && "\($0)".contains("SELEC 1"), "\($0)")
        }
    }
}

extension XCTestCase {
    /// A fresh directory under the system temporary directory, removed after the test.
    func makeStoreTestDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("keel-\(type(of: self))-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
