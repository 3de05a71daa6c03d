import Foundation
import XCTest
@testable import KeelCore

/// `output.dir` never names a folder Keel did not write (`ExportDestination`): refused when the recipe
/// loads, and again just before the copy replaces it.
final class OutputDirTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    /// The base recipe of `RecipeErrorTests` with `output: {dir: …}` on line 10 (the value at column 15).
    func recipe(dir: String) -> String { RecipeErrorTests.head + "training:\n  steps: 10\noutput: {dir: \(dir)}\n" }

    static let expectation = "expected a new folder, or one a previous run exported to (it holds .keel-export)"

    func testTheRecipesFolderItsParentsAndFoldersKeelDidNotWriteAreRefused() throws {
        let folder = fixture.directory.standardizedFileURL.resolvingSymlinksInPath().path
        try FileManager.default.createSymbolicLink(atPath: fixture.path("link"), withDestinationPath: fixture.path("hf"))
        let cases: [(dir: String, found: String)] = [
            (".", "found \(folder), which Keel must keep (the recipe's folder or var/)"),
            ("..", "found \((folder as NSString).deletingLastPathComponent), which contains \(folder) that Keel must keep"),
            ("/", "found /, which contains \(folder) that Keel must keep"),
            ("/etc", "found an existing folder /etc that Keel did not export to (no .keel-export in it)"),
            ("hf", "found an existing folder \(folder)/hf that Keel did not export to (no .keel-export in it)"),
            ("pairs.jsonl", "found \(folder)/pairs.jsonl, which is not a folder"),
            ("link", "found a symbolic link \(fixture.path("link"))"),
        ]
        for (dir, found) in cases {
            XCTAssertEqual(fixture.errors(recipe(dir: dir)), ["r.yaml:10:15: output.dir: \(found); \(Self.expectation)"], dir)
        }
    }

    func testVarAndFoldersHoldingItAreRefusedEvenWithAMarker() throws {
        let varDirectory = fixture.directory.appendingPathComponent("project/var")
        try FileManager.default.createDirectory(at: varDirectory, withIntermediateDirectories: true)
        try ExportDestination.mark(varDirectory.deletingLastPathComponent(), runID: "planted")
        let loader = RecipeLoader(registry: testRegistry(), protecting: [varDirectory])
        for dir in ["project/var", "project"] {
            XCTAssertThrowsError(try loader.load(fixture.write(recipe(dir: dir), to: "r.yaml")), dir) { error in
                XCTAssertTrue("\(error)".contains("output.dir: found"), "\(error)")
            }
        }
        XCTAssertNoThrow(try loader.load(fixture.write(recipe(dir: "project/var/reward-models/latest"), to: "r.yaml")))
    }

    func testANewFolderOrAPreviousExportIsAccepted() throws {
        let previous = fixture.directory.appendingPathComponent("models/latest")
        try FileManager.default.createDirectory(at: previous, withIntermediateDirectories: true)
        try ExportDestination.mark(previous, runID: "earlier-run")
        for dir in ["models/latest", "models/new", "fresh/nested/folder"] {
            XCTAssertEqual(try fixture.load(recipe(dir: dir)).recipe.exportCopyDirectory?.path, fixture.path(dir), dir)
        }
    }

    /// A folder that appeared at the destination after validation is not replaced; a previous export is,
    /// with nothing of it left beside the new one.
    func testReplaceChecksTheDestinationAgain() throws {
        let source = fixture.directory.appendingPathComponent("export")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try Data("weights".utf8).write(to: source.appendingPathComponent("model.safetensors"))
        try ExportDestination.mark(source, runID: "run-2")
        let destination = fixture.directory.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: destination.appendingPathComponent("notes.txt"))

        XCTAssertThrowsError(try ExportDestination.replace(destination, with: source, runID: "run-2", protected: [], key: "output.dir")) { error in
            XCTAssertTrue("\(error)".hasPrefix("output.dir: found an existing folder"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOf: destination.appendingPathComponent("notes.txt"), encoding: .utf8), "mine")

        try FileManager.default.removeItem(at: destination.appendingPathComponent("notes.txt"))
        try ExportDestination.mark(destination, runID: "run-1")
        try ExportDestination.replace(destination, with: source, runID: "run-2", protected: [], key: "output.dir")
        XCTAssertEqual(try String(contentsOf: destination.appendingPathComponent(ExportDestination.markerName), encoding: .utf8), "run-2\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: fixture.directory.path).filter { $0.hasPrefix(".") }, [],
                       "no staged or replaced folder left behind")
    }

    /// `keel validate` and `keel run` on a recipe in project/recipes/ whose `output.dir: ..` names the
    /// project holding var/: both refuse it, and nothing is deleted.
    func testRunWithTheProjectAsOutputDirDeletesNothing() throws {
        let project = try RunFixture()
        let recipe = project.directory.appendingPathComponent("recipes/tiny.yaml")
        try FileManager.default.createDirectory(at: recipe.deletingLastPathComponent(), withIntermediateDirectories: true)
        try project.writeTinyDPO([("steps: 300", "steps: 2"), ("output: {name: tiny-dpo}", "output: {name: tiny-dpo, dir: ..}")], to: recipe)
        let precious = project.directory.appendingPathComponent("precious.txt")
        try Data("keep me".utf8).write(to: precious)

        for command in ["validate", "run"] {
            let result = try project.keel([command, recipe.path])
            XCTAssertEqual(result.status, 1, command + result.output + result.error)
            XCTAssertTrue(result.error.contains("output.dir: found \(project.directory.resolvingSymlinksInPath().path), which contains"), result.error)
        }
        XCTAssertEqual(try String(contentsOf: precious, encoding: .utf8), "keep me")
        XCTAssertTrue(FileManager.default.fileExists(atPath: recipe.path))
    }
}
