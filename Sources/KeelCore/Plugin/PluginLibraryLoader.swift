import Foundation
import Glibc

/// Custom method plugins: shared libraries (`lib<Name>.so`, built from a `keel plugin new` package) in a
/// plugin directory, `var/plugins/` by default, loaded into this process at run time.
///
/// Each `registry(extending:)` rescans the directory, so a long-lived process (the daemon) sees files that
/// appeared after it started; a file it already loaded is not loaded again. A library is refused when the
/// directory or file is unsafe (world-writable directory; file not a regular file owned by this user, or
/// writable by group or others: never opened), when `dlopen` fails (e.g. a symbol this `keel` does not
/// have: built against another Keel), or when its compiled-in plugin API version differs from this
/// `keel`'s (its registration entry point is then never called). A library whose registration fails in
/// any way registers none of its plugins.
///
/// Loaded libraries are never unloaded (Swift type metadata cannot be unregistered): a file replaced after
/// this process loaded it keeps its old version here until restart; daemon workers, being new processes,
/// load the new one.
public final class PluginLibraryLoader {
    public struct Problem: CustomStringConvertible, Sendable {
        /// The library refused, nil when the directory itself is refused.
        public let file: URL?
        public let message: String
        public var description: String { "plugin \(file?.path ?? "directory"): \(message)" }
    }

    public let directory: URL
    /// Per file path: the version (identity) last looked at, and its plugin types if it was loaded.
    private var seen: [String: (identity: FileIdentity, types: [any KeelPlugin.Type]?)] = [:]
    /// Problems already returned, so that a rescan does not repeat them.
    private var reported: Set<String> = []

    /// Runs before a new library file is loaded into this process; throwing refuses the file. The daemon
    /// checks each file in a child process first, so that a library crashing as it registers does not
    /// take the daemon down with it.
    let probe: ((URL) throws -> Void)?

    public init(directory: URL, probe: ((URL) throws -> Void)? = nil) {
        self.directory = directory.standardizedFileURL
        self.probe = probe
    }

    /// `base` plus the plugins of every acceptable library in the directory, in file-name order. Problems
    /// are returned once (a rescan does not repeat them); their libraries are skipped.
    public func registry(extending base: PluginRegistry) -> (registry: PluginRegistry, problems: [Problem]) {
        var registry = base
        var problems: [Problem] = []
        func report(_ file: URL?, _ message: String) {
            let problem = Problem(file: file, message: message)
            if reported.insert(problem.description).inserted { problems.append(problem) }
        }
        let files: [URL]
        do { files = try libraryFiles() } catch {
            report(nil, "\(error)")
            return (registry, problems)
        }
        for file in files {
            do {
                let identity = try FileIdentity(checkedLibrary: file)
                let types: [any KeelPlugin.Type]
                switch seen[file.path] {
                case let (loadedIdentity, loaded?)?:
                    if loadedIdentity != identity {
                        report(file, "changed after this process loaded it; the loaded version stays in use here until "
                                   + "restart (new daemon workers load the new file)")
                    }
                    types = loaded
                case let (refusedIdentity, .none)? where refusedIdentity == identity:
                    continue   // refused before, and reported then
                default:
                    seen[file.path] = (identity, nil)   // refused unless it loads and registers
                    try probe?(file)
                    types = try Self.load(file)
                }
                try registry.register(types, library: file)   // all of the library's plugins, or none
                seen[file.path] = (identity, types)
            } catch {
                report(file, "\(error)")
            }
        }
        return (registry, problems)
    }

    /// The `*.so` files of the directory, after checking that the directory cannot be written by others.
    /// A missing directory holds no plugins.
    func libraryFiles() throws -> [URL] {
        guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
        try Self.checkFolder(directory)
        return try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".so") && !$0.hasPrefix(".") }.sorted()
            .map { directory.appendingPathComponent($0) }
    }

    /// What `keel plugin install` checks before it copies (or loads) anything: the source library and its
    /// folder pass the same checks as an installed library and the plugin folder, so that a file others
    /// could have written is never installed under this user's name.
    public static func checkSource(_ file: URL) throws {
        _ = try FileIdentity(checkedLibrary: file)
        try checkFolder(file.deletingLastPathComponent())
    }

    /// A folder libraries load from: a folder, not world-writable, owned by this user or root.
    static func checkFolder(_ directory: URL) throws {
        var info = stat()
        guard stat(directory.path, &info) == 0 else {
            throw PluginLoadError("\(directory.path): cannot read (\(String(cString: strerror(errno))))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw PluginLoadError("\(directory.path) is not a directory") }
        guard info.st_mode & S_IWOTH == 0 else {
            throw PluginLoadError("\(directory.path) is world-writable; no plugin is loaded from it (expected e.g. chmod o-w)")
        }
        guard info.st_uid == geteuid() || info.st_uid == 0 else {
            throw PluginLoadError("\(directory.path) belongs to uid \(info.st_uid), not to this user (uid \(geteuid())) or root; "
                                + "no plugin is loaded from it")
        }
    }

    /// dlopen, ABI check, registration call: the library's plugin types, or why it is refused.
    public static func load(_ file: URL) throws -> [any KeelPlugin.Type] {
        guard let handle = dlopen(file.path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            let hint = reason.contains("undefined symbol")
                ? "; it was built against another Keel build: rebuild it (swift build -c release in its package) against this keel" : ""
            throw PluginLoadError("cannot be loaded: \(reason)\(hint)")
        }
        // Never dlclose'd: the Swift runtime registered the library's metadata sections when it was mapped.
        guard let versionSymbol = dlsym(handle, PluginLibraryABI.versionSymbol) else {
            throw PluginLoadError("not a Keel plugin library: it exports no \(PluginLibraryABI.versionSymbol); "
                                + "expected a package made by `keel plugin new`")
        }
        typealias VersionFunction = @convention(c) () -> Int
        let version = unsafeBitCast(versionSymbol, to: VersionFunction.self)()
        guard version == PluginLibraryABI.hostVersion else {
            throw PluginLoadError("built against Keel plugin API version \(version), but this keel (\(Keel.version)) speaks version "
                                + "\(PluginLibraryABI.hostVersion); rebuild the plugin against this Keel; it was not registered")
        }
        guard let registerSymbol = dlsym(handle, PluginLibraryABI.registerSymbol) else {
            throw PluginLoadError("exports no \(PluginLibraryABI.registerSymbol); expected `@_cdecl(\"\(PluginLibraryABI.registerSymbol)\")` "
                                + "returning PluginLibraryExports(...).retained()")
        }
        typealias RegisterFunction = @convention(c) () -> UnsafeMutableRawPointer
        let object = Unmanaged<AnyObject>.fromOpaque(unsafeBitCast(registerSymbol, to: RegisterFunction.self)()).takeRetainedValue()
        guard let exports = object as? PluginLibraryExports else {
            throw PluginLoadError("\(PluginLibraryABI.registerSymbol) returned a \(type(of: object)), not this keel's PluginLibraryExports: "
                                + "the library carries its own copy of KeelCore instead of using keel's")
        }
        guard !exports.types.isEmpty else { throw PluginLoadError("registers no plugins") }
        return exports.types
    }
}

public struct PluginLoadError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A version of a file: same path, inode and size and modification time means not rebuilt or replaced.
struct FileIdentity: Equatable {
    let device: UInt64, inode: UInt64, size: Int64, modifiedSeconds: Int, modifiedNanoseconds: Int

    /// The identity of a plugin library that passes the ownership checks.
    init(checkedLibrary file: URL) throws {
        var info = stat()
        guard lstat(file.path, &info) == 0 else { throw PluginLoadError("cannot read (\(String(cString: strerror(errno))))") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw PluginLoadError("not a regular file (symbolic links are not followed)") }
        guard info.st_uid == geteuid() else {
            throw PluginLoadError("belongs to uid \(info.st_uid), not to the user running keel (uid \(geteuid())); not loaded")
        }
        guard info.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw PluginLoadError("is writable by group or others; not loaded (expected e.g. chmod go-w, or `keel plugin install`)")
        }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = info.st_mtim.tv_sec
        modifiedNanoseconds = info.st_mtim.tv_nsec
    }
}
