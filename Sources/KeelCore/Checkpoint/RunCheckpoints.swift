import Foundation

/// One run's checkpoints: the directories on disk and their rows in the store, kept in agreement.
/// The store is the source of truth: only rows marked complete are resumed from; a directory without
/// such a row is debris from a crash.
public final class RunCheckpoints {
    public let store: KeelStore
    public let runID: String
    public let writer: CheckpointWriter
    /// How many complete checkpoints to keep; older ones are deleted after a new one is complete.
    public let keepLast: Int

    public init(store: KeelStore, runID: String, checkpointsDirectory: URL, keepLast: Int) throws {
        guard keepLast >= 1 else { throw CheckpointError.invalidKeepLast(keepLast) }
        self.store = store
        self.runID = runID
        self.writer = CheckpointWriter(checkpointsDirectory: checkpointsDirectory)
        self.keepLast = keepLast
    }

    /// Call once when the run's worker starts, before resuming. Removes what a crash can leave:
    /// `*.tmp-*` directories, rows never marked complete, and `step-N/` directories renamed into place
    /// but never marked complete. Returns the removed directories.
    @discardableResult
    public func recoverAfterCrash() throws -> [URL] {
        var removed = try writer.removeLeftoverTemporaryDirectories()
        let rows = try store.checkpoints(runID)
        for row in rows where !row.isComplete {
            try store.deleteCheckpoint(runID, step: row.step)
        }
        let completeSteps = Set(rows.filter(\.isComplete).map(\.step))
        let fileManager = FileManager.default
        guard fileManager.fileExists(atPath: writer.checkpointsDirectory.path) else { return removed }
        for name in try fileManager.contentsOfDirectory(atPath: writer.checkpointsDirectory.path).sorted() {
            guard let step = CheckpointLayout.step(ofDirectoryName: name), !completeSteps.contains(step) else { continue }
            let orphan = writer.directory(step: step)
            try fileManager.removeItem(at: orphan)
            removed.append(orphan)
        }
        return removed
    }

    /// Writes the checkpoint for `step`, marks it complete, then deletes complete checkpoints beyond
    /// the newest `keepLast` (row first, then directory, so the store never points at a deleted directory).
    @discardableResult
    public func save(step: Int, files: [CheckpointFile]) throws -> CompletedCheckpoint {
        try store.recordCheckpoint(runID, step: step, path: writer.directory(step: step).path)
        let completed: CompletedCheckpoint
        do {
            completed = try writer.write(step: step, files: files)
        } catch {
            try? store.deleteCheckpoint(runID, step: step)
            throw error
        }
        try store.markCheckpointComplete(runID, completed)
        let complete = try store.checkpoints(runID).filter(\.isComplete).sorted { $0.step > $1.step }
        for old in complete.dropFirst(keepLast) {
            try store.deleteCheckpoint(runID, step: old.step)
            if FileManager.default.fileExists(atPath: old.path) {
                try FileManager.default.removeItem(atPath: old.path)
            }
        }
        return completed
    }

    /// `save` for small in-memory states: one file per entry, written in name order.
    @discardableResult
    public func save(step: Int, contents: [String: Data]) throws -> CompletedCheckpoint {
        try save(step: step, files: contents.sorted { $0.key < $1.key }.map { CheckpointFile.data($0.key, $0.value) })
    }

    /// The newest complete checkpoint, verified against its manifest and the hash the store recorded;
    /// nil if the run has none. A corrupt newest checkpoint is an error, not a silent fallback to an
    /// older one: resuming from further back than expected should be a decision, not an accident.
    public func latest() throws -> VerifiedCheckpoint? {
        guard let record = try store.latestCompleteCheckpoint(runID) else { return nil }
        return try CheckpointReader.verify(directory: URL(fileURLWithPath: record.path, isDirectory: true),
                                           expectedManifestSHA256: record.manifestSHA256)
    }
}
