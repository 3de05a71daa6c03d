import Foundation
import XCTest
@testable import KeelCore

/// The plugin folder's checks, on files that are not real plugins (a real one is built and loaded by
/// KeelDaemonTests.CustomPluginTests): each refused file is reported once, named, and registers nothing.
final class PluginLibraryLoaderTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("keel-plugins-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func write(_ name: String, mode: Int) throws {
        let url = folder.appendingPathComponent(name)
        try Data("not an ELF file".utf8).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
    }

    func testUnsafeOrBrokenFilesAreSkippedWithTheirReasonOnce() throws {
        try write("libGroupWritable.so", mode: 0o775)
        try write("libBroken.so", mode: 0o755)
        try write(".libHidden.so", mode: 0o777)
        try write("notes.txt", mode: 0o777)
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("libLink.so").path,
                                                   withDestinationPath: folder.appendingPathComponent("libBroken.so").path)
        let loader = PluginLibraryLoader(directory: folder)
        let base = PluginRegistry.builtin()
        let (registry, problems) = loader.registry(extending: base)
        XCTAssertEqual(registry.descriptors.map(\.name), base.descriptors.map(\.name))
        let byFile = Dictionary(uniqueKeysWithValues: problems.map { ($0.file?.lastPathComponent ?? "", $0.message) })
        XCTAssertEqual(Set(byFile.keys), ["libBroken.so", "libGroupWritable.so", "libLink.so"], "\(problems)")
        XCTAssertTrue(byFile["libBroken.so"]?.hasPrefix("cannot be loaded: ") ?? false, "\(problems)")
        XCTAssertTrue(byFile["libGroupWritable.so"]?.contains("writable by group or others") ?? false, "\(problems)")
        XCTAssertTrue(byFile["libLink.so"]?.contains("not a regular file") ?? false, "\(problems)")
        XCTAssertEqual(loader.registry(extending: base).problems.count, 0, "a rescan does not repeat problems")
    }

    func testWorldWritableFolderLoadsNothing() throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path)
        let problems = PluginLibraryLoader(directory: folder).registry(extending: PluginRegistry()).problems
        XCTAssertEqual(problems.map(\.description), ["plugin directory: \(folder.standardizedFileURL.path) is world-writable; "
                                                     + "no plugin is loaded from it (expected e.g. chmod o-w)"])
    }

    /// `keel plugin install` checks the source before it copies or loads it: a library others can write,
    /// or one in a world-writable folder, is refused with the reason and nothing is installed.
    func testInstallRefusesASourceOthersCouldHaveWritten() throws {
        try write("libOpen.so", mode: 0o666)
        XCTAssertThrowsError(try PluginLibraryLoader.checkSource(folder.appendingPathComponent("libOpen.so"))) {
            XCTAssertTrue("\($0)".contains("is writable by group or others"), "\($0)")
        }
        try write("libClosed.so", mode: 0o755)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path)
        XCTAssertThrowsError(try PluginLibraryLoader.checkSource(folder.appendingPathComponent("libClosed.so"))) {
            XCTAssertTrue("\($0)".contains("is world-writable"), "\($0)")
        }
        let varDirectory = folder.appendingPathComponent("var")
        let result = try KeelBinary.run(["plugin", "install", folder.appendingPathComponent("libClosed.so").path, "--var", varDirectory.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.error.contains("not installed: \(folder.path) is world-writable"), result.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: varDirectory.appendingPathComponent("plugins/libClosed.so").path))
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
    }

    func testMissingFolderHoldsNoPlugins() {
        let missing = PluginLibraryLoader(directory: folder.appendingPathComponent("absent")).registry(extending: PluginRegistry())
        XCTAssertEqual(missing.problems.count, 0)
        XCTAssertEqual(missing.registry.descriptors.count, 0)
    }
}
