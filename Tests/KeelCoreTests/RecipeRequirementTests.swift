import XCTest
@testable import KeelCore

/// `requires:` and `output.reference_dir`: a recipe may name, before they exist, the folders a recipe it
/// requires exports to; everything else about its paths is checked as before.
final class RecipeRequirementTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    /// RecipeErrorTests' base recipe reading its pairs from `path`, with `extra` lines first.
    func recipe(_ extra: String, path: String = "pairs.jsonl", loss: String = "test-pairwise") -> String {
        extra + RecipeErrorTests.head.replacingOccurrences(of: "pairs.jsonl", with: path)
            .replacingOccurrences(of: "test-pairwise", with: loss) + "training:\n  steps: 10\n"
    }

    func testPathsInARequiredRecipesOutputAreAcceptedBeforeItExists() throws {
        try fixture.write(recipe("output: {dir: made, reference_dir: made-reference}\n"), to: "first.yaml")
        let graph = try fixture.load(recipe("requires: [first.yaml]\n", path: "made-reference/pairs.jsonl"))
        let requirement = try XCTUnwrap(graph.recipe.requirements.first)
        XCTAssertEqual(requirement.displayName, "first.yaml")
        XCTAssertEqual(requirement.file.path, fixture.path("first.yaml"))
        XCTAssertEqual(requirement.outputs.map(\.path), [fixture.path("made"), fixture.path("made-reference")])
        XCTAssertEqual(requirement.missingOutput?.path, fixture.path("made"))
        try FileManager.default.createDirectory(atPath: fixture.path("made"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: fixture.path("made-reference"), withIntermediateDirectories: true)
        XCTAssertNil(requirement.missingOutput)
    }

    func testPathsOutsideTheRequiredOutputMustStillExist() throws {
        try fixture.write(recipe("output: {dir: made}\n"), to: "first.yaml")
        XCTAssertEqual(fixture.errors(recipe("requires: [first.yaml]\n", path: "made-not/pairs.jsonl")), [
            "r.yaml:5:11: data[0].path: no such file: \(fixture.path("made-not/pairs.jsonl")); expected a path to an existing file, relative to the recipe's folder",
        ])
    }

    func testMissingRequiredRecipe() {
        XCTAssertEqual(fixture.errors(recipe("requires: [nope.yaml]\n")), [
            "r.yaml:1:12: requires[0]: no such file: \(fixture.path("nope.yaml")); expected a recipe file, relative to this recipe's folder, whose output.dir this recipe reads",
        ])
    }

    func testRequiresMustBeAList() {
        XCTAssertEqual(fixture.errors(recipe("requires: first.yaml\n")), [
            "r.yaml:1:11: requires: found a scalar; expected a list of recipe files (requires: [FILE, …])",
        ])
    }

    func testRequiredRecipeWithoutAFixedOutputFolder() throws {
        try fixture.write(recipe(""), to: "first.yaml")
        XCTAssertEqual(fixture.errors(recipe("requires: [first.yaml]\n")), [
            "r.yaml:1:12: requires[0]: first.yaml sets no output.dir; expected a recipe that exports its model to a fixed folder (output: {dir: …}) for this one to read",
        ])
    }

    func testInvalidRequiredRecipeIsNamedWithItsFirstProblem() throws {
        try fixture.write(recipe("output: {dir: made}\n").replacingOccurrences(of: "steps: 10", with: "steps: ten"), to: "first.yaml")
        XCTAssertEqual(fixture.errors(recipe("requires: [first.yaml]\n")), [
            "r.yaml:1:12: requires[0]: first.yaml is not a valid recipe (1 problem, the first: first.yaml:10:10: training.steps: ten is not an integer; "
                + "expected an integer in [1, 100000000]); expected a recipe that keel validate accepts",
        ])
    }

    func testRequirementCycleIsRefused() throws {
        try fixture.write(recipe("requires: [r.yaml]\noutput: {dir: made}\n"), to: "first.yaml")
        let errors = fixture.errors(recipe("requires: [first.yaml]\noutput: {dir: other}\n"))
        XCTAssertEqual(errors.count, 1)
        XCTAssertTrue(errors[0].contains("r.yaml requires this recipe in turn (r.yaml → first.yaml → r.yaml); expected requirements without a cycle"), errors[0])
    }

    func testReferenceExportNeedsAReference() {
        let yaml = recipe("output: {reference_dir: ref}\n", loss: "test-single").replacingOccurrences(of: "  beta: 0.1\n", with: "")
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:1:25: output.reference_dir: exports the reference model, but no plugin uses one (loss 'test-single' (line 7)); expected a loss that needs a reference",
        ])
    }
}
