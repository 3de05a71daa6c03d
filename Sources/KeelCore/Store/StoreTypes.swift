import Foundation

/// Lifecycle of a run. `interrupted`: the worker died without reporting (stale heartbeat); such a run
/// can be resumed from its latest complete checkpoint.
public enum RunStatus: String, CaseIterable, Sendable {
    case queued, running, completed, failed, cancelled, rejected, interrupted

    /// States that set `finished_at`.
    public var isFinished: Bool { self != .queued && self != .running }
}

/// Which metric series a value belongs to.
public enum MetricSplit: String, CaseIterable, Sendable {
    case train, eval
}

/// State of a recipe file in the daemon's queue.
public enum RecipeQueueState: String, CaseIterable, Sendable {
    case queued, rejected, running, done, cancelled
}

/// What `KeelStore.createRun` needs; the store adds status and timestamps.
public struct NewRun: Sendable {
    public var id: String
    public var recipePath: String
    public var recipeText: String
    /// Hash over recipe + data + model: two runs with the same fingerprint train the same thing.
    public var fingerprint: String
    /// The hashes the fingerprint was built from (e.g. "recipe", "data", "model"), to explain a mismatch.
    public var fingerprintParts: [String: String]
    public var totalSteps: Int?
    public var logPath: String?

    public init(id: String, recipePath: String, recipeText: String, fingerprint: String,
                fingerprintParts: [String: String], totalSteps: Int? = nil, logPath: String? = nil) {
        self.id = id
        self.recipePath = recipePath
        self.recipeText = recipeText
        self.fingerprint = fingerprint
        self.fingerprintParts = fingerprintParts
        self.totalSteps = totalSteps
        self.logPath = logPath
    }
}

public struct RunRecord: Equatable, Sendable {
    public var id: String
    public var recipePath: String
    public var recipeText: String
    public var fingerprint: String
    public var fingerprintParts: [String: String]
    public var status: RunStatus
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var error: String?
    public var totalSteps: Int?
    public var currentStep: Int
    public var pid: Int32?
    public var heartbeatAt: Date?
    public var logPath: String?
}

extension RunRecord {
    /// Whether the process recorded as the run's owner (`pid`, written with every heartbeat) still
    /// exists on this machine; true while none is recorded yet. A process of another user counts as
    /// alive (`kill` says EPERM, not ESRCH).
    public var ownerIsAlive: Bool {
        guard let pid else { return true }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    /// The status to show: a run still `running` in the store whose owner is gone was killed without a
    /// word (SIGKILL, OOM on a foreground `keel run`; the daemon marks its own workers' runs itself), so
    /// it is `interrupted` in fact, and `keel resume` takes it.
    public var observedStatus: RunStatus {
        status == .running && !ownerIsAlive ? .interrupted : status
    }
}

/// All metrics of one split recorded at one step.
public struct MetricsAtStep: Equatable, Sendable {
    public var step: Int
    public var values: [String: Double]
}

/// A run with its newest train and eval metrics: one line of `keel status`.
public struct RunSummary: Equatable, Sendable {
    public var run: RunRecord
    public var latestTrain: MetricsAtStep?
    public var latestEval: MetricsAtStep?

    /// Seconds left for a running run: the steps still to do × the latest logged step time.
    public var etaSeconds: Double? {
        guard run.observedStatus == .running, let total = run.totalSteps,
              let stepTime = latestTrain?.values[TrainMetric.stepTime] else { return nil }
        return Double(max(total - run.currentStep, 0)) * stepTime
    }
}

public struct CheckpointRecord: Equatable, Sendable {
    public var runID: String
    public var step: Int
    public var path: String
    /// SHA-256 of the checkpoint's manifest.json (nil until complete).
    public var manifestSHA256: String?
    public var bytes: Int64?
    public var isComplete: Bool
    public var createdAt: Date
}

public struct EventRecord: Equatable, Sendable {
    public var id: Int64
    public var runID: String?
    public var time: Date
    public var kind: String
    /// The event's JSON object, as stored.
    public var message: String
}

public struct QueuedRecipe: Equatable, Sendable {
    public var id: Int64
    public var recipePath: String
    public var contentSHA256: String
    public var seenAt: Date
    public var state: RecipeQueueState
    public var runID: String?
    public var error: String?
}

/// How commands name a run besides its id or a unique prefix of it.
public enum RunReference {
    public static let latest = "latest"
}

public enum StoreError: Error, CustomStringConvertible, Equatable {
    case schemaTooNew(path: String, found: Int, supported: Int)
    case unknownRun(String)
    case ambiguousRun(String, matches: [String])
    case unknownCheckpoint(runID: String, step: Int)
    case unknownQueueEntry(Int64)
    case notANumber(runID: String, step: Int, name: String)
    case corruptValue(table: String, column: String, value: String)

    public var description: String {
        switch self {
        case let .schemaTooNew(path, found, supported):
            "\(path) has schema version \(found), but this Keel knows versions up to \(supported); upgrade Keel"
        case let .unknownRun(id): "no run with id '\(id)'"
        case let .ambiguousRun(prefix, matches):
            "'\(prefix)' starts \(matches.count) run ids (\(matches.prefix(5).joined(separator: ", "))\(matches.count > 5 ? ", …" : "")); expected a longer prefix"
        case let .unknownCheckpoint(runID, step): "run '\(runID)' has no checkpoint at step \(step)"
        case let .unknownQueueEntry(id): "no recipe queue entry with id \(id)"
        case let .notANumber(runID, step, name):
            "metric '\(name)' of run '\(runID)' at step \(step) is NaN; SQLite cannot store NaN (it becomes NULL)"
        case let .corruptValue(table, column, value): "\(table).\(column) holds unexpected value '\(value)'"
        }
    }
}

/// Run identifiers: `<UTC yyyyMMdd-HHmmss>-<recipe name slug>-<4 hex>`, e.g. `20261122-083015-tiny-dpo-ab12`.
/// They sort by start time, say what ran, and the random suffix separates two runs started in the
/// same second.
public enum RunID {
    public static func make(recipeName: String, at date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        let suffix = String(format: "%04x", UInt16.random(in: .min ... .max))
        return "\(formatter.string(from: date))-\(slug(recipeName))-\(suffix)"
    }

    /// Lowercase letters, digits and single dashes, at most 40 characters; "run" if nothing is left.
    static func slug(_ name: String) -> String {
        var slug = ""
        for character in name.lowercased() {
            if character.isASCII && (character.isLetter || character.isNumber) {
                slug.append(character)
            } else if !slug.isEmpty && slug.last != "-" {
                slug.append("-")
            }
        }
        slug = String(slug.prefix(40))
        while slug.last == "-" { slug.removeLast() }
        return slug.isEmpty ? "run" : slug
    }
}
