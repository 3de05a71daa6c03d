import Foundation

/// Names on disk. A run's checkpoints live in `runs/<run>/checkpoints/`, one directory per step:
///
///     step-1200/                  complete: renamed into place after every file was fsync'd
///         manifest.json           names, sizes and SHA-256 of the other files
///         <named files>           written by the trainer (weights, optimizer state, RNG, cursor, …)
///     step-1400.tmp-4242/         being written by pid 4242, or left behind by a crash
public enum CheckpointLayout {
    public static let manifestName = "manifest.json"
    static let directoryPrefix = "step-"
    static let temporaryMarker = ".tmp-"

    public static func directoryName(step: Int) -> String { "\(directoryPrefix)\(step)" }

    static func temporaryDirectoryName(step: Int, pid: Int32) -> String {
        "\(directoryName(step: step))\(temporaryMarker)\(pid)"
    }

    /// The step of a complete checkpoint directory's name (`step-N`), nil for anything else.
    static func step(ofDirectoryName name: String) -> Int? {
        guard name.hasPrefix(directoryPrefix), !name.contains(temporaryMarker) else { return nil }
        let digits = name.dropFirst(directoryPrefix.count)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int(digits)
    }

    static func isTemporaryDirectoryName(_ name: String) -> Bool {
        name.hasPrefix(directoryPrefix) && name.contains(temporaryMarker)
    }
}

/// One named file of a checkpoint. `write` streams the content into the sink, e.g.
/// `weights.withUnsafeBytes { try sink.write($0) }`, so multi-gigabyte tensors need no extra copy.
public struct CheckpointFile {
    public let name: String
    public let write: (HashingFileSink) throws -> Void

    public init(name: String, write: @escaping (HashingFileSink) throws -> Void) {
        self.name = name
        self.write = write
    }

    public static func data(_ name: String, _ data: Data) -> CheckpointFile {
        CheckpointFile(name: name) { try $0.write(data) }
    }
}

/// `manifest.json`: what a complete checkpoint must contain, byte for byte.
public struct CheckpointManifest: Codable, Equatable, Sendable {
    public static let currentFormat = 1

    public struct Entry: Codable, Equatable, Sendable {
        public var name: String
        public var bytes: Int64
        public var sha256: String
    }

    public var format: Int
    public var step: Int
    public var files: [Entry]
}

/// A checkpoint durably in place under its final name, not yet marked complete in the store. Pass it
/// to `KeelStore.markCheckpointComplete` (or let `RunCheckpoints.save` do so).
public struct CompletedCheckpoint: Equatable, Sendable {
    public var step: Int
    public var directory: URL
    /// SHA-256 of manifest.json; since the manifest hashes every file, this one hash pins the whole checkpoint.
    public var manifestSHA256: String
    /// Total size of all files including the manifest.
    public var bytes: Int64
    public var manifest: CheckpointManifest
}

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case invalidFileName(String)
    case duplicateFileName(String)
    case alreadyExists(path: String)
    case invalidKeepLast(Int)
    case notACheckpointDirectory(path: String)
    case incomplete(path: String, reason: String)
    case unreadableManifest(path: String, reason: String)
    case manifestHashMismatch(path: String, expected: String, found: String)
    case unsupportedFormat(path: String, format: Int)
    case stepMismatch(path: String, directoryStep: Int, manifestStep: Int)
    case missingFile(path: String, name: String)
    case unexpectedFile(path: String, name: String)
    case sizeMismatch(path: String, name: String, expected: Int64, found: Int64)
    case hashMismatch(path: String, name: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .invalidFileName(let name):
            "checkpoint file name '\(name)' is invalid: expected a plain file name (no '/', not '.', '..' or '\(CheckpointLayout.manifestName)')"
        case .duplicateFileName(let name): "checkpoint file '\(name)' is given twice"
        case .alreadyExists(let path): "checkpoint \(path) already exists"
        case .invalidKeepLast(let count): "keep-last count must be at least 1, got \(count)"
        case .notACheckpointDirectory(let path): "\(path) is not a checkpoint directory (expected a name like step-1200)"
        case let .incomplete(path, reason): "checkpoint \(path) is incomplete: \(reason)"
        case let .unreadableManifest(path, reason): "checkpoint \(path): cannot read \(CheckpointLayout.manifestName): \(reason)"
        case let .manifestHashMismatch(path, expected, found):
            "checkpoint \(path) is corrupt: \(CheckpointLayout.manifestName) has SHA-256 \(found), the store recorded \(expected)"
        case let .unsupportedFormat(path, format):
            "checkpoint \(path) has manifest format \(format); this Keel reads format \(CheckpointManifest.currentFormat)"
        case let .stepMismatch(path, directoryStep, manifestStep):
            "checkpoint \(path) is corrupt: directory is for step \(directoryStep), manifest says step \(manifestStep)"
        case let .missingFile(path, name): "checkpoint \(path) is corrupt: file '\(name)' listed in the manifest is missing"
        case let .unexpectedFile(path, name): "checkpoint \(path) is corrupt: file '\(name)' is not listed in the manifest"
        case let .sizeMismatch(path, name, expected, found):
            "checkpoint \(path) is corrupt: '\(name)' has \(found) bytes, the manifest says \(expected)"
        case let .hashMismatch(path, name, expected, found):
            "checkpoint \(path) is corrupt: '\(name)' has SHA-256 \(found), the manifest says \(expected)"
        }
    }
}

/// Writes checkpoint directories atomically: a reader sees either no `step-N/` or a complete one.
///
/// Order, so that a crash at any point leaves either the previous state or the new complete one:
/// 1. each file is written into `step-N.tmp-<pid>/` and fsync'd (its SHA-256 computed while writing);
/// 2. `manifest.json` is written and fsync'd, then the temporary directory itself;
/// 3. the directory is renamed to `step-N/` and the parent directory fsync'd (makes the rename durable);
/// 4. the caller marks it complete in the store (`KeelStore.markCheckpointComplete`).
/// Resume trusts only checkpoints marked complete, so a crash before step 4 loses nothing but the
/// checkpoint being written.
public struct CheckpointWriter {
    /// `runs/<run>/checkpoints`.
    public let checkpointsDirectory: URL

    public init(checkpointsDirectory: URL) {
        self.checkpointsDirectory = checkpointsDirectory
    }

    public func directory(step: Int) -> URL {
        checkpointsDirectory.appendingPathComponent(CheckpointLayout.directoryName(step: step), isDirectory: true)
    }

    /// Steps 1–3 above. On failure the temporary directory is removed and nothing else changed.
    public func write(step: Int, files: [CheckpointFile]) throws -> CompletedCheckpoint {
        try validateNames(files.map(\.name))
        let fileManager = FileManager.default
        let destination = directory(step: step)
        guard !fileManager.fileExists(atPath: destination.path) else {
            throw CheckpointError.alreadyExists(path: destination.path)
        }
        let temporary = checkpointsDirectory.appendingPathComponent(
            CheckpointLayout.temporaryDirectoryName(step: step, pid: ProcessInfo.processInfo.processIdentifier))
        try fileManager.createDirectory(at: checkpointsDirectory, withIntermediateDirectories: true)
        if fileManager.fileExists(atPath: temporary.path) { try fileManager.removeItem(at: temporary) }
        try fileManager.createDirectory(at: temporary, withIntermediateDirectories: false)
        do {
            var entries: [CheckpointManifest.Entry] = []
            for file in files {
                let (bytes, sha256) = try writeFile(temporary.appendingPathComponent(file.name), file.write)
                entries.append(.init(name: file.name, bytes: bytes, sha256: sha256))
            }
            let manifest = CheckpointManifest(format: CheckpointManifest.currentFormat, step: step, files: entries)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let manifestData = try encoder.encode(manifest)
            let (manifestBytes, manifestSHA256) = try writeFile(
                temporary.appendingPathComponent(CheckpointLayout.manifestName)) { try $0.write(manifestData) }
            try DurableFiles.syncDirectory(temporary.path)
            try DurableFiles.rename(temporary.path, to: destination.path)
            try DurableFiles.syncDirectory(checkpointsDirectory.path)
            return CompletedCheckpoint(step: step, directory: destination, manifestSHA256: manifestSHA256,
                                       bytes: entries.reduce(manifestBytes) { $0 + $1.bytes }, manifest: manifest)
        } catch {
            try? fileManager.removeItem(at: temporary)
            throw error
        }
    }

    /// Removes `step-*.tmp-*` directories. Call when a run's worker starts: any such directory was
    /// left by a worker that crashed mid-write (one worker per run is the daemon's invariant).
    @discardableResult
    public func removeLeftoverTemporaryDirectories() throws -> [URL] {
        let fileManager = FileManager.default
        guard fileManager.fileExists(atPath: checkpointsDirectory.path) else { return [] }
        let leftovers = try fileManager.contentsOfDirectory(atPath: checkpointsDirectory.path)
            .filter(CheckpointLayout.isTemporaryDirectoryName)
            .sorted()
            .map { checkpointsDirectory.appendingPathComponent($0, isDirectory: true) }
        for leftover in leftovers { try fileManager.removeItem(at: leftover) }
        return leftovers
    }

    private func writeFile(_ url: URL, _ write: (HashingFileSink) throws -> Void) throws -> (Int64, String) {
        let sink = try HashingFileSink(creating: url.path)
        try write(sink)
        let sha256 = try sink.finish()
        return (sink.bytesWritten, sha256)
    }

    private func validateNames(_ names: [String]) throws {
        var seen = Set<String>()
        for name in names {
            guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.contains("\0"),
                  name != CheckpointLayout.manifestName else { throw CheckpointError.invalidFileName(name) }
            guard seen.insert(name).inserted else { throw CheckpointError.duplicateFileName(name) }
        }
    }
}
