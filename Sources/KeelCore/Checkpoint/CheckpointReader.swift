import Foundation

/// A checkpoint whose every file matched its manifest when it was opened.
public struct VerifiedCheckpoint: Equatable, Sendable {
    public var step: Int
    public var directory: URL
    public var manifest: CheckpointManifest
    public var manifestSHA256: String

    /// The file named `name` (for streaming or mapping large weights).
    public func url(of name: String) throws -> URL {
        guard manifest.files.contains(where: { $0.name == name }) else {
            throw CheckpointError.missingFile(path: directory.path, name: name)
        }
        return directory.appendingPathComponent(name)
    }

    public func data(of name: String) throws -> Data {
        try Data(contentsOf: url(of: name))
    }
}

/// Opens checkpoint directories, refusing any that is incomplete or does not match its manifest.
public enum CheckpointReader {
    /// Verifies `directory` (a `step-N/` directory): the manifest exists, parses, names step N, lists
    /// exactly the files present, and each file has the listed size and SHA-256. If the store recorded
    /// the manifest's hash, pass it as `expectedManifestSHA256` to also catch a replaced manifest.
    /// Reads every byte once, so it costs about one read of the checkpoint.
    public static func verify(directory: URL, expectedManifestSHA256: String? = nil) throws -> VerifiedCheckpoint {
        let path = directory.path
        let name = directory.lastPathComponent
        if CheckpointLayout.isTemporaryDirectoryName(name) {
            throw CheckpointError.incomplete(path: path, reason: "it is a temporary directory left by an interrupted write")
        }
        guard let step = CheckpointLayout.step(ofDirectoryName: name) else {
            throw CheckpointError.notACheckpointDirectory(path: path)
        }
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CheckpointError.incomplete(path: path, reason: "the directory does not exist")
        }
        let manifestURL = directory.appendingPathComponent(CheckpointLayout.manifestName)
        guard let manifestData = fileManager.contents(atPath: manifestURL.path) else {
            throw CheckpointError.incomplete(path: path, reason: "\(CheckpointLayout.manifestName) is missing")
        }
        let manifestSHA256 = SHA256.hex(of: manifestData)
        if let expectedManifestSHA256, expectedManifestSHA256 != manifestSHA256 {
            throw CheckpointError.manifestHashMismatch(path: path, expected: expectedManifestSHA256, found: manifestSHA256)
        }
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: manifestData)
        } catch {
            throw CheckpointError.unreadableManifest(path: path, reason: "\(error)")
        }
        guard manifest.format == CheckpointManifest.currentFormat else {
            throw CheckpointError.unsupportedFormat(path: path, format: manifest.format)
        }
        guard manifest.step == step else {
            throw CheckpointError.stepMismatch(path: path, directoryStep: step, manifestStep: manifest.step)
        }
        let listed = Set(manifest.files.map(\.name))
        let present = try fileManager.contentsOfDirectory(atPath: path).filter { $0 != CheckpointLayout.manifestName }
        if let extra = present.sorted().first(where: { !listed.contains($0) }) {
            throw CheckpointError.unexpectedFile(path: path, name: extra)
        }
        for entry in manifest.files {
            let fileURL = directory.appendingPathComponent(entry.name)
            guard let attributes = try? fileManager.attributesOfItem(atPath: fileURL.path),
                  let size = (attributes[.size] as? NSNumber)?.int64Value else {
                throw CheckpointError.missingFile(path: path, name: entry.name)
            }
            guard size == entry.bytes else {
                throw CheckpointError.sizeMismatch(path: path, name: entry.name, expected: entry.bytes, found: size)
            }
            let sha256 = try SHA256.hex(ofFileAt: fileURL)
            guard sha256 == entry.sha256 else {
                throw CheckpointError.hashMismatch(path: path, name: entry.name, expected: entry.sha256, found: sha256)
            }
        }
        return VerifiedCheckpoint(step: step, directory: directory, manifest: manifest, manifestSHA256: manifestSHA256)
    }
}
