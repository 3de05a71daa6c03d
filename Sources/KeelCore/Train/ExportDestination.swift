import Foundation
import Glibc

/// `output.dir` (and `output.reference_dir`): a folder outside `var/runs/` that receives a copy of each completed run's export, at a
/// path that does not change between runs (e.g. a reward model that other recipes read).
///
/// Keel replaces that folder with every completed run, so it only ever replaces a folder it wrote
/// itself: every export carries the marker file `.keel-export` (the run's id), and a destination that
/// exists without it — `/`, `/etc`, the project, a user's folder — is refused at validate time and again
/// before the copy. The recipe's folder, `var/` and any folder containing one of them are refused even
/// with a marker. The copy is staged beside the destination in a folder named for the run and renamed
/// into place; the previous export is moved aside first and removed only after the new one is in place.
public enum ExportDestination {
    /// The marker file every export carries; its content is the id of the run that wrote it.
    public static let markerName = ".keel-export"

    /// Why `directory` cannot receive exports, as "found …; expected …", or nil if it can.
    /// `protected`: folders that must survive every run (the recipe's folder, `var/`).
    public static func problem(_ directory: URL, protected: [URL]) -> String? {
        let path = directory.standardizedFileURL.resolvingSymlinksInPath().path
        let expected = "expected a new folder, or one a previous run exported to (it holds \(markerName))"
        for folder in protected {
            let kept = folder.standardizedFileURL.resolvingSymlinksInPath().path
            if kept == path { return "found \(path), which Keel must keep (the recipe's folder or var/); \(expected)" }
            if kept.hasPrefix(path == "/" ? "/" : path + "/") {
                return "found \(path), which contains \(kept) that Keel must keep; \(expected)"
            }
        }
        var status = stat()
        guard lstat(directory.standardizedFileURL.path, &status) == 0 else { return nil }  // new: created at the end
        switch status.st_mode & S_IFMT {
        case S_IFDIR:
            var marker = stat()
            guard lstat(directory.standardizedFileURL.appendingPathComponent(markerName).path, &marker) == 0,
                  marker.st_mode & S_IFMT == S_IFREG else {
                return "found an existing folder \(path) that Keel did not export to (no \(markerName) in it); \(expected)"
            }
            return nil
        case S_IFLNK: return "found a symbolic link \(directory.standardizedFileURL.path); \(expected)"
        default: return "found \(path), which is not a folder; \(expected)"
        }
    }

    /// Writes the marker into a freshly written export folder.
    static func mark(_ export: URL, runID: String) throws {
        try Data((runID + "\n").utf8).write(to: export.appendingPathComponent(markerName), options: .atomic)
    }

    /// Puts a copy of `source` (an export with its marker) at `destination`, after checking it again:
    /// it may have appeared since the recipe was validated.
    /// `key`: the recipe option that named `destination` (`output.dir`, `output.reference_dir`), for messages.
    static func replace(_ destination: URL, with source: URL, runID: String, protected: [URL], key: String) throws {
        if let problem = problem(destination, protected: protected) {
            throw TrainerError("\(key): \(problem); the model stays in \(source.path)")
        }
        let files = FileManager.default
        let parent = destination.deletingLastPathComponent()
        try files.createDirectory(at: parent, withIntermediateDirectories: true)
        let staged = parent.appendingPathComponent(".\(destination.lastPathComponent).partial-\(runID)")
        let previous = parent.appendingPathComponent(".\(destination.lastPathComponent).replaced-\(runID)")
        // Leftovers of this run's own earlier attempt (named for the run: nobody else writes them).
        for leftover in [staged, previous] where files.fileExists(atPath: leftover.path) { try files.removeItem(at: leftover) }
        try files.copyItem(at: source, to: staged)
        if files.fileExists(atPath: destination.path) {
            try files.moveItem(at: destination, to: previous)
            try files.moveItem(at: staged, to: destination)
            try files.removeItem(at: previous)
        } else {
            try files.moveItem(at: staged, to: destination)
        }
    }
}
