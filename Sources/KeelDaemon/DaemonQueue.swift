import Foundation
import Glibc

/// `events.kind` values the daemon writes (run events unless noted).
public enum DaemonEvent {
    /// Daemon-wide (run id NULL): start and stop, with pid and settings / shutdown duration.
    public static let daemonStarted = "daemon-started"
    public static let daemonStopped = "daemon-stopped"
    /// A valid recipe version was queued as a new run; `fingerprint_ms` is the time spent hashing its
    /// model and data files (`RunFingerprint.parts`).
    public static let queued = "queued"
    /// A recipe version failed validation; `error` holds every problem (file:line:col).
    public static let rejected = "rejected"
    /// A worker was started for the run; the first one carries `latency_ms`, from the recipe file's
    /// close (the inotify event) to the worker's spawn.
    public static let dispatched = "dispatched"
    /// A worker ended: its pid and how (`exited with status N` / `killed by SIGX`).
    public static let workerExited = "worker-exited"
    /// The run stopped before finishing and will resume from its latest complete checkpoint.
    public static let interrupted = "interrupted"
    /// `keel cancel` asked for the run to stop; the daemon marks it cancelled when its worker is gone.
    public static let cancelRequested = "cancel-requested"
    /// A queued run was cancelled (its recipe file was removed or replaced, or `keel cancel`).
    public static let cancelled = "cancelled"
}

/// The daemon's view of the queue, on top of `KeelStore`'s recipe queue. Every recipe version in the
/// queue gets its run row when it is queued (status `queued`), so `keel status` lists waiting runs and
/// `keel cancel` can name them; a rejected version gets a run row with status `rejected` and its errors.
extension KeelStore {
    /// The queue entry that made `runID`, if the daemon made it.
    public func queueEntry(runID: String) throws -> QueuedRecipe? {
        try queuedRecipes().last { $0.runID == runID }
    }

    /// Cancels the still-queued entries of `path` (all, or all but `keeping`), and their runs, in one
    /// transaction that cannot race with `claimNextRecipe`. Returns the cancelled run ids.
    @discardableResult
    public func cancelQueuedRecipes(path: String, keeping kept: Int64? = nil, reason: String) throws -> [String] {
        try database.transaction {
            let runIDs = try database.query("""
                UPDATE recipe_queue SET state = 'cancelled', error = ?1
                WHERE recipe_path = ?2 AND state = 'queued' AND id IS NOT ?3
                RETURNING run_id
                """, reason, path, kept).compactMap { try $0.optionalString("run_id") }
            for runID in runIDs {
                try setStatus(runID, .cancelled, error: reason)
                try recordEvent(runID, kind: DaemonEvent.cancelled, ["reason": reason])
            }
            return runIDs.sorted()
        }
    }

    /// `keel cancel RUN` (and the dashboard's cancel): a waiting run is cancelled at once; a running one
    /// gets its worker stopped with SIGTERM, and the daemon marks it cancelled when the worker has exited.
    /// Returns what was done, as one line; `requester` names who asked in the run's error.
    public func cancelRun(_ runID: String, by requester: String) throws -> String {
        guard let record = try run(runID) else { throw StoreError.unknownRun(runID) }
        // Recorded first: whoever sees the worker exit (this daemon, or the next) then knows it was a cancel.
        if record.status == .running || record.status == .queued || record.status == .interrupted {
            try recordEvent(runID, kind: DaemonEvent.cancelRequested, ["by_pid": Int(getpid())])
        }
        if try cancelWaitingRun(runID, reason: "cancelled (\(requester))") {
            // A worker may have been started for it a moment ago.
            if let pid = record.pid, isWorkerAlive(pid: pid, runID: runID) { kill(pid, SIGTERM) }
            return "\(runID): cancelled"
        }
        let current = try run(runID) ?? record
        guard current.status == .running || current.status == .queued else {
            throw DaemonError("run \(runID) is \(current.status.rawValue); only queued, interrupted or running runs can be cancelled")
        }
        guard let pid = current.pid, isWorkerAlive(pid: pid, runID: runID) else {
            return "\(runID): cancel requested; it has no live worker, so the daemon cancels it at its next start"
        }
        kill(pid, SIGTERM)
        return "\(runID): sent SIGTERM to worker \(pid); the daemon marks the run cancelled when it has exited"
    }

    /// Cancels `runID` if it is waiting (queued, or interrupted and not yet resumed), atomically with
    /// respect to the daemon claiming it. Returns false if it was not waiting.
    public func cancelWaitingRun(_ runID: String, reason: String) throws -> Bool {
        try database.transaction {
            let changed = try database.execute("""
                UPDATE runs SET status = 'cancelled', error = ?1, finished_at = ?2
                WHERE id = ?3 AND status IN ('queued', 'interrupted')
                """, reason, Date().timeIntervalSince1970, runID)
            guard changed == 1 else { return false }
            try database.execute("""
                UPDATE recipe_queue SET state = 'cancelled', error = ?1 WHERE run_id = ?2 AND state IN ('queued', 'running')
                """, reason, runID)
            try recordEvent(runID, kind: DaemonEvent.cancelled, ["reason": reason])
            return true
        }
    }

    /// Forgets queue entries left without a run by a daemon killed between queueing a recipe and
    /// creating its run: the start-up scan queues those files again.
    public func forgetHalfQueuedRecipes() throws {
        try database.execute("DELETE FROM recipe_queue WHERE run_id IS NULL AND state IN ('queued', 'running')")
    }

    /// Whether `keel cancel` has asked for `runID` to stop.
    public func isCancelRequested(_ runID: String) throws -> Bool {
        try database.query("SELECT 1 FROM events WHERE run_id = ? AND kind = ? LIMIT 1",
                           runID, DaemonEvent.cancelRequested).isEmpty == false
    }

    /// How many times `runID` was interrupted by a SIGKILL from outside (the out-of-memory killer, or a
    /// user): after a few, resuming again would only repeat it.
    public func externalKillCount(_ runID: String) throws -> Int {
        try events(runID).filter { $0.kind == DaemonEvent.interrupted && $0.message.contains("\"external_kill\":true") }.count
    }
}

/// Whether `pid` is a live `keel` process working on `runID` (its command line names the run), so that a
/// recycled pid is not mistaken for a worker. A zombie has an empty command line and counts as gone.
public func isWorkerAlive(pid: Int32, runID: String) -> Bool {
    guard pid > 0, let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
    return data.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == runID }
}
