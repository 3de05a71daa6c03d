import ArgumentParser
import Foundation
import KeelCore

/// `keel plugin new|install`: write a custom method plugin's package, and put its built library where
/// keel loads plugins from. README "Writing a method plugin".
struct PluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin", abstract: "Create, check and install custom method plugins, which keel loads at run time.",
        subcommands: [PluginNewCommand.self, PluginInstallCommand.self, PluginCheckCommand.self])
}

struct PluginNewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new", abstract: "Write a Swift package with a working example plugin of KIND, its test and a README.",
        discussion: "The package compiles against this keel's Keel checkout and release build (recorded in its Package.swift); "
            + "`swift build -c release` in it yields .build/release/lib<Name>.so for `keel plugin install`.")

    @Argument(help: "The plugin's name in recipes: lowercase letters, digits and '-', starting with a letter (e.g. margin-hinge).")
    var name: String

    @Option(help: "loss, reward, data or scheduler.")
    var kind: String

    @Option(help: "Folder to create (default: ./NAME); must not exist or be empty.")
    var dir: String?

    @Option(help: "Keel's release build folder holding Modules/ and libKeelPluginAPI.so (default: the folder of this keel).")
    var keelBuild: String?

    func validate() throws {
        guard let first = name.first, first.isLetter, name.allSatisfy({ ($0.isLetter && $0.isLowercase) || $0.isNumber || $0 == "-" }),
              first.isASCII, name.allSatisfy(\.isASCII), !name.hasSuffix("-"), !name.contains("--")
        else { throw ValidationError("NAME '\(name)': expected lowercase ASCII letters, digits and single '-', starting with a letter") }
        guard PluginKind(rawValue: kind) != nil else {
            throw ValidationError("--kind '\(kind)': expected one of \(PluginKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        try runReportingErrors {
            let build = try keelBuild.map { URL(fileURLWithPath: $0).standardizedFileURL } ?? runningKeelBuildDirectory()
            for built in ["Modules/KeelCore.swiftmodule", "libKeelPluginAPI.so"]
            where !FileManager.default.fileExists(atPath: build.appendingPathComponent(built).path) {
                throw PluginLoadError("\(build.path) has no \(built); expected Keel's release build folder (`swift build -c release` "
                                    + "in the Keel checkout, then pass its .build/release as --keel-build)")
            }
            let template = PluginTemplate(name: name, kind: PluginKind(rawValue: kind)!, keelCheckout: try keelCheckout(above: build).path,
                                          keelBuild: build.path)
            let folder = URL(fileURLWithPath: dir ?? name).standardizedFileURL
            if let existing = try? FileManager.default.contentsOfDirectory(atPath: folder.path), !existing.isEmpty {
                throw PluginLoadError("\(folder.path) exists and is not empty; expected a new folder (--dir)")
            }
            for (path, content) in template.files {
                let url = folder.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(content.utf8).write(to: url)
            }
            print("""
                wrote \(folder.path): a \(kind) plugin '\(name)' (Swift module \(template.module))
                next: cd \(folder.path) && swift build -c release && keel plugin install .build/release/\(template.library)
                """)
        }
    }

    /// The release build folder of the running keel (where SwiftPM put it: .build/<triple>/release).
    func runningKeelBuildDirectory() throws -> URL {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        return URL(fileURLWithPath: executable).deletingLastPathComponent()
    }

    /// The Keel checkout a build folder belongs to: the nearest parent holding Keel's C module maps.
    func keelCheckout(above build: URL) throws -> URL {
        var folder = build
        while folder.path != "/" {
            folder = folder.deletingLastPathComponent()
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Sources/COpenBLAS/module.modulemap").path) { return folder }
        }
        throw PluginLoadError("\(build.path) is not inside a Keel checkout (no Sources/COpenBLAS/module.modulemap above it); "
                            + "a plugin compiles against a Keel checkout built with `swift build -c release`: pass --keel-build DIR")
    }
}

struct PluginInstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install", abstract: "Check a built plugin library and copy it into the plugin folder (var/plugins/).",
        discussion: "The library and its folder must pass the loader's ownership and mode checks; then it is loaded once, in a "
            + "child process (keel plugin check), to check its plugin API version and its registration; a refused library is "
            + "not installed. A running daemon picks it up for the next recipe it validates.")

    @Argument(help: "The plugin library (.build/release/lib<Name>.so of its package).")
    var path: String

    @OptionGroup var varDirectory: VarDirectoryOption

    func run() throws {
        try runReportingErrors {
            let source = URL(fileURLWithPath: path).standardizedFileURL
            guard source.pathExtension == "so", FileManager.default.fileExists(atPath: source.path) else {
                throw PluginLoadError("\(source.path): expected an existing shared library (lib<Name>.so)")
            }
            do { try PluginLibraryLoader.checkSource(source) } catch {
                throw PluginLoadError("\(source.path) not installed: \(error)")
            }
            let folder = customPluginDirectory(varDirectory.layout)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            // Checked under a hidden name (the loader ignores dotfiles), then renamed into place in one step.
            let staged = folder.appendingPathComponent(".\(source.lastPathComponent).\(getpid()).installing")
            let target = folder.appendingPathComponent(source.lastPathComponent)
            try? FileManager.default.removeItem(at: staged)
            try FileManager.default.copyItem(at: source, to: staged)
            do {
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: staged.path)
                // Loaded only in a child process (`keel plugin check`): its constructors never run in this one.
                let checked = try pluginCheckInChildProcess(staged)
                let plugins = checked.hasPrefix(staged.path + ": ") ? String(checked.dropFirst(staged.path.count + 2)) : checked
                guard rename(staged.path, target.path) == 0 else {
                    throw PluginLoadError("cannot move it to \(target.path): \(String(cString: strerror(errno)))")
                }
                print("installed \(target.path): \(plugins)")
            } catch {
                try? FileManager.default.removeItem(at: staged)
                throw PluginLoadError("\(source.path) not installed: \(error)")
            }
        }
    }
}

/// `keel plugin check LIB.so`: loads a plugin library as keel would (API version, registration beside the
/// plugins compiled into keel) without installing it. The daemon runs it on each new plugin file before
/// loading the file itself, so that a library crashing in its registration takes down only this process.
struct PluginCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Load a plugin library as keel would and list its plugins, without installing it.")

    @Argument(help: "The plugin library.")
    var path: String

    func run() throws {
        try runReportingErrors {
            let file = URL(fileURLWithPath: path).standardizedFileURL
            print("\(file.path): \(try checkedPlugins(file, registeredAs: file))")
        }
    }
}

/// Loads `file` and registers its plugins beside the ones compiled into keel; "name (kind), …", or why not.
func checkedPlugins(_ file: URL, registeredAs library: URL) throws -> String {
    var registry = keelPluginRegistry()
    let types = try PluginLibraryLoader.load(file)
    try registry.register(types, library: library)
    return types.map { "\($0.descriptor.name) (\($0.descriptor.kind.rawValue))" }.joined(separator: ", ")
}
