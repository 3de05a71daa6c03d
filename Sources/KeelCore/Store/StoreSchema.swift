import Foundation

/// The database schema as numbered migrations. The version lives in `PRAGMA user_version`
/// (0 for a fresh file); each migration runs in its own transaction together with the version bump,
/// so a crash mid-migration leaves the previous version intact. Never edit a shipped migration:
/// append a new one.
///
/// Times are Unix seconds (REAL), so heartbeat staleness is a plain subtraction in SQL.
public enum StoreSchema {
    public struct Migration: Sendable {
        public let version: Int
        public let sql: String
    }

    public static let migrations: [Migration] = [
        // 1: training runs and what they produce (issue 6).
        Migration(version: 1, sql: """
            CREATE TABLE runs (
                id                TEXT PRIMARY KEY,            -- e.g. 20261122-083015-tiny-dpo-ab12
                recipe_path       TEXT NOT NULL,
                recipe_text       TEXT NOT NULL,               -- the recipe exactly as run
                fingerprint       TEXT NOT NULL,               -- hash over recipe + data + model
                fingerprint_parts TEXT NOT NULL,               -- JSON object: part name -> hash
                status            TEXT NOT NULL CHECK (status IN
                    ('queued', 'running', 'completed', 'failed', 'cancelled', 'rejected', 'interrupted')),
                created_at        REAL NOT NULL,
                started_at        REAL,
                finished_at       REAL,
                error             TEXT,
                total_steps       INTEGER,
                current_step      INTEGER NOT NULL DEFAULT 0,
                pid               INTEGER,
                heartbeat_at      REAL,
                log_path          TEXT
            );
            CREATE INDEX runs_by_fingerprint ON runs (fingerprint);
            CREATE INDEX runs_by_created ON runs (created_at);

            -- One row per (run, split, step, metric): a resumed run re-recording a step overwrites it.
            CREATE TABLE metrics (
                run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                split  TEXT NOT NULL CHECK (split IN ('train', 'eval')),
                step   INTEGER NOT NULL,
                name   TEXT NOT NULL,
                value  REAL NOT NULL,
                PRIMARY KEY (run_id, split, step, name)
            ) WITHOUT ROWID;

            -- complete = 0 while the directory is being written; only complete rows may be resumed from.
            CREATE TABLE checkpoints (
                run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                step       INTEGER NOT NULL,
                path       TEXT NOT NULL,
                sha256     TEXT,                               -- of manifest.json, which hashes every file
                bytes      INTEGER,
                complete   INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
                created_at REAL NOT NULL,
                PRIMARY KEY (run_id, step)
            );

            CREATE TABLE events (
                id      INTEGER PRIMARY KEY,
                run_id  TEXT REFERENCES runs (id) ON DELETE CASCADE,   -- NULL: a daemon-wide event
                time    REAL NOT NULL,
                kind    TEXT NOT NULL,
                message TEXT NOT NULL                                  -- JSON
            );
            CREATE INDEX events_by_run ON events (run_id, id);
            """),
        // 2: the daemon's durable queue of recipe files (issue 9).
        Migration(version: 2, sql: """
            -- One row per (file, content): a rescan of recipes/ after a restart or an inotify overflow
            -- finds the same rows instead of queueing the same recipe twice.
            CREATE TABLE recipe_queue (
                id             INTEGER PRIMARY KEY,            -- claim order
                recipe_path    TEXT NOT NULL,
                content_sha256 TEXT NOT NULL,
                seen_at        REAL NOT NULL,
                state          TEXT NOT NULL CHECK (state IN ('queued', 'rejected', 'running', 'done', 'cancelled')),
                run_id         TEXT REFERENCES runs (id),
                error          TEXT,
                UNIQUE (recipe_path, content_sha256)
            );
            CREATE INDEX recipe_queue_by_state ON recipe_queue (state, id);
            """),
    ]

    public static var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Brings `database` up to `targetVersion` (default: latest). A database written by a newer Keel
    /// is refused rather than silently used with a schema this build does not know.
    public static func migrate(_ database: SQLiteDatabase, to targetVersion: Int = latestVersion) throws {
        let found = try database.userVersion()
        guard found <= latestVersion else {
            throw StoreError.schemaTooNew(path: database.path, found: found, supported: latestVersion)
        }
        for migration in migrations where migration.version <= targetVersion {
            try database.transaction {
                // Re-read inside the write lock: another process may have migrated meanwhile.
                guard try database.userVersion() < migration.version else { return }
                try database.executeScript(migration.sql)
                try database.executeScript("PRAGMA user_version = \(migration.version)")
            }
        }
    }
}
