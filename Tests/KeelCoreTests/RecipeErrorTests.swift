import XCTest
@testable import KeelCore

/// Bad recipes, each with its exact message and position. The base recipe all of them vary:
///
///     1 model: model.gguf
///     2 data:
///     3   - name: preference-jsonl
///     4     path: pairs.jsonl
///     5 loss:
///     6   name: test-pairwise
///     7   beta: 0.1
///     8 training:
///     9   steps: 10
final class RecipeErrorTests: XCTestCase {
    var fixture: RecipeFixture!

    override func setUpWithError() throws { fixture = try RecipeFixture() }
    override func tearDown() { fixture = nil }

    static let head = """
        model: model.gguf
        data:
          - name: preference-jsonl
            path: pairs.jsonl
        loss:
          name: test-pairwise
          beta: 0.1

        """

    /// `head` + a training section with the given lines (line 8 is `training:`, its keys from line 9).
    func withTraining(_ lines: String) -> String { Self.head + "training:\n" + lines }

    // MARK: sections

    func testUnknownSectionSuggestsTheClosestAndTheMissingOneIsReported() {
        XCTAssertEqual(fixture.errors(Self.head + "trainig:\n  steps: 10\n"), [
            "r.yaml:1:1: training: missing section; expected `training:`",
            "r.yaml:8:1: trainig: unknown section; did you mean 'training'?",
        ])
    }

    /// 99,000 unknown keys (just under the 1 MiB limit): validated in linear time (it took 22 s when
    /// duplicate checks were quadratic), and the message lists 100 errors and counts the rest instead of
    /// printing 14.7 MB.
    func testManyKeysValidateQuicklyWithABoundedMessage() throws {
        let yaml = withTraining("  steps: 10\n") + "optimizer: {" + (0..<99_000).map { "k\($0): 1" }.joined(separator: ",") + "}\n"
        let started = Date()
        XCTAssertThrowsError(try fixture.load(yaml)) { error in
            let message = "\(error)"
            XCTAssertLessThan(message.utf8.count, 20_000)
            XCTAssertTrue(message.hasPrefix("r.yaml:10:13: optimizer.k0: unknown key"), String(message.prefix(200)))
            XCTAssertTrue(message.hasSuffix("… and 98900 more errors (the first 100 are shown)"), String(message.suffix(200)))
        }
        let seconds = Date().timeIntervalSince(started)
        print(String(format: "99,000 keys validated in %.2f s", seconds))
        XCTAssertLessThan(seconds, 15, "linear: 4.3 s measured on the shared machine under load 11; the quadratic parser took 22 s on a quiet one")
        let duplicates = withTraining("  steps: 10\n") + "output:\n" + (0..<50_000).map { _ in "  name: x\n" }.joined()
        XCTAssertThrowsError(try fixture.load(duplicates)) { error in
            XCTAssertTrue("\(error)".hasSuffix("… and 49899 more errors (the first 100 are shown)"), String("\(error)".suffix(200)))
        }
    }

    func testMergeKeysAreRefusedAsUnsupported() {
        let message = "found a YAML merge key (<<), which Keel does not support; expected the keys written out (an alias can stand for a whole value)"
        XCTAssertEqual(fixture.errors(withTraining("  <<: {batch_size: 4}\n  steps: 10\n")), ["r.yaml:9:3: training.<<: \(message)"])
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n<<: {optimizer: {lr: 0.1}}\n")), ["r.yaml:10:1: <<: \(message)"])
    }

    func testUnknownSectionWithNothingCloseListsTheSections() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\nwandb: true\n")), [
            "r.yaml:10:1: wandb: unknown section; expected one of data, logging, loss, model, optimizer, output, reference, requires, reward, schedulers, training",
        ])
    }

    func testRootMustBeAMapping() {
        XCTAssertEqual(fixture.errors("- model.gguf\n"), [
            "r.yaml:1:1: the recipe is a list; expected a mapping of sections (model, reference, data, reward, loss, schedulers, optimizer, training, output, logging, requires)",
        ])
    }

    func testEmptyFile() {
        XCTAssertEqual(fixture.errors(""), ["r.yaml:1:1: the recipe is empty; expected a mapping"])
    }

    func testSectionOfTheWrongKind() {
        XCTAssertEqual(fixture.errors(Self.head + "training: 5\n"), [
            "r.yaml:8:11: training: found a scalar; expected a mapping with keys steps, epochs, batch_size, grad_accum, max_length, seed, eval_every, checkpoint_every, keep_checkpoints, log_every, share_prompt, eval_generations, eval_max_new_tokens",
        ])
    }

    // MARK: options: names, types, ranges

    func testUnknownOptionSuggestsTheClosest() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  batch_sise: 4\n")), [
            "r.yaml:10:3: training.batch_sise: unknown key; did you mean 'batch_size'?",
        ])
    }

    func testIntegerThatIsAWord() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  batch_size: eight\n")), [
            "r.yaml:10:15: training.batch_size: eight is not an integer; expected an integer in [1, 1048576]",
        ])
    }

    func testIntegerOutOfRange() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  batch_size: 0\n")), [
            "r.yaml:10:15: training.batch_size: 0 is out of range; expected an integer in [1, 1048576]",
        ])
    }

    func testQuotedNumberIsAString() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: \"10\"\n")), [
            "r.yaml:9:10: training.steps: \"10\" is not an integer; expected an integer in [1, 100000000]",
        ])
    }

    func testFractionForAnInteger() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  grad_accum: 1.5\n")), [
            "r.yaml:10:15: training.grad_accum: 1.5 is not an integer; expected an integer in [1, 1048576]",
        ])
    }

    func testListWhereAScalarBelongs() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: [1, 2]\n")), [
            "r.yaml:9:10: training.steps: found a list; expected an integer in [1, 100000000]",
        ])
    }

    func testNullValue() {
        XCTAssertEqual(fixture.errors(withTraining("  steps:\n")), [
            "r.yaml:9:9: training.steps: found null; expected an integer in [1, 100000000]",
        ])
    }

    func testNegativeLearningRate() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\noptimizer:\n  lr: -1e-5\n")), [
            "r.yaml:11:7: optimizer.lr: -1e-5 is out of range; expected a number in (0, ∞)",
        ])
    }

    func testInfinityIsNotANumber() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\noptimizer:\n  lr: inf\n")), [
            "r.yaml:11:7: optimizer.lr: inf is not a number; expected a number in (0, ∞)",
        ])
    }

    func testBetaAtTheOpenUpperBound() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\noptimizer:\n  beta2: 1.0\n")), [
            "r.yaml:11:10: optimizer.beta2: 1.0 is out of range; expected a number in [0, 1)",
        ])
    }

    func testMisspelledEnumValue() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\noptimizer:\n  schedule: cosin\n")), [
            "r.yaml:11:13: optimizer.schedule: unknown value 'cosin'; did you mean 'cosine'?",
        ])
    }

    func testYesIsNotABoolean() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\nreference:\n  cache_logprobs: yes\n")), [
            "r.yaml:11:19: reference.cache_logprobs: yes is not a boolean; expected true or false",
        ])
    }

    func testStepsAndEpochsTogether() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  epochs: 1\n")), [
            "r.yaml:10:11: training.epochs: both steps and epochs are set; expected one of them",
        ])
    }

    func testNeitherStepsNorEpochs() {
        XCTAssertEqual(fixture.errors(withTraining("  batch_size: 4\n")), [
            "r.yaml:9:3: training: no length; expected steps or epochs",
        ])
    }

    func testInvalidRunName() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\noutput:\n  name: my run\n")), [
            "r.yaml:11:9: output.name: 'my run' is not a valid run name; expected letters, digits, '.', '_', '-'",
        ])
    }

    // MARK: plugin nodes

    func testMisspelledPluginName() {
        let yaml = Self.head.replacingOccurrences(of: "name: test-pairwise", with: "name: test-pairwse") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), ["r.yaml:6:9: loss.name: unknown loss plugin 'test-pairwse'; did you mean 'test-pairwise'?"])
    }

    func testPluginOfTheWrongKind() {
        let yaml = Self.head.replacingOccurrences(of: "name: test-pairwise\n  beta: 0.1", with: "name: hh") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:6:9: loss.name: 'hh' is a data plugin, not a loss plugin; expected one of test-pairwise, test-reward-loss, test-signal-loss, test-single, test-unprovided",
        ])
    }

    func testMisspelledPluginOption() {
        let yaml = Self.head.replacingOccurrences(of: "beta: 0.1", with: "bta: 0.1") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), ["r.yaml:7:3: loss.bta: unknown key; did you mean 'beta'?"])
    }

    func testPluginNodeWithoutName() {
        let yaml = Self.head.replacingOccurrences(of: "- name: preference-jsonl\n    path", with: "- path") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:3:5: data[0].name: missing; expected one of drop-flagged, hh, preference-jsonl, shuffle, split, synthetic-preferences, test-pair-only, test-unpaired",
        ])
    }

    func testPluginNodeAsABareWord() {
        XCTAssertEqual(fixture.errors("model: model.gguf\ndata: [hh]\nloss: {name: test-single}\ntraining: {steps: 1}\n"), [
            "r.yaml:2:8: data[0]: found a scalar; expected a data plugin node {name: …, <options>}",
        ])
    }

    func testMissingRequiredOption() {
        let yaml = Self.head.replacingOccurrences(of: "- name: preference-jsonl\n    path: pairs.jsonl", with: "- name: hh") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:3:5: data[0].path: missing; expected a path to an existing file (JSON-lines file, relative to the recipe's folder)",
        ])
    }

    func testMissingDataFile() {
        let yaml = Self.head.replacingOccurrences(of: "pairs.jsonl", with: "nope.jsonl") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:4:11: data[0].path: no such file: \(fixture.path("nope.jsonl")); expected a path to an existing file, relative to the recipe's folder",
        ])
    }

    func testEmptyDataList() {
        XCTAssertEqual(fixture.errors("model: model.gguf\ndata: []\nloss: {name: test-single}\ntraining: {steps: 1}\n"), [
            "r.yaml:2:7: data: found an empty list; expected a list of data plugin nodes (- name: …)",
        ])
    }

    func testDataAsAMapping() {
        XCTAssertEqual(fixture.errors("model: model.gguf\ndata:\n  name: hh\nloss: {name: test-single}\ntraining: {steps: 1}\n"), [
            "r.yaml:3:3: data: found a mapping; expected a list of data plugin nodes (- name: …)",
        ])
    }

    func testWeightOnADataNode() {
        let yaml = Self.head.replacingOccurrences(of: "    path: pairs.jsonl", with: "    path: pairs.jsonl\n    weight: 2") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), ["r.yaml:5:5: data[0].weight: unknown key; expected one of limit, name, path"])
    }

    func testNonPositiveLossWeight() {
        let yaml = """
            model: model.gguf
            data: [{name: preference-jsonl, path: pairs.jsonl}]
            loss:
              - {name: test-pairwise}
              - {name: test-single, weight: -1}
            training: {steps: 1}

            """
        XCTAssertEqual(fixture.errors(yaml), ["r.yaml:5:33: loss[1].weight: -1 is out of range; expected a number in (0, ∞)"])
    }

    func testSplitWithBothSizes() {
        let yaml = Self.head.replacingOccurrences(of: "    path: pairs.jsonl", with: "    path: pairs.jsonl\n  - {name: split, eval_fraction: 0.1, eval_count: 5}")
            + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:5:51: data[1].eval_count: both eval_fraction and eval_count are set; expected one of them",
        ])
    }

    func testSplitWithoutSize() {
        let yaml = Self.head.replacingOccurrences(of: "    path: pairs.jsonl", with: "    path: pairs.jsonl\n  - name: split") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), ["r.yaml:5:5: data[1]: no split size; expected eval_fraction or eval_count"])
    }

    // MARK: model

    func testMissingModelFile() {
        let yaml = Self.head.replacingOccurrences(of: "model.gguf", with: "missing.gguf") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:1:8: model: no such file or folder: \(fixture.path("missing.gguf")); expected a GGUF file or a Hugging Face folder, relative to the recipe's folder",
        ])
    }

    func testModelThatIsNotGGUF() {
        let yaml = Self.head.replacingOccurrences(of: "model.gguf", with: "notgguf.bin") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:1:8: model: \(fixture.path("notgguf.bin")) is not a GGUF file (no GGUF magic); expected a GGUF file or a Hugging Face folder",
        ])
    }

    func testModelFolderWithoutConfig() {
        let yaml = Self.head.replacingOccurrences(of: "model.gguf", with: "empty-folder") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:1:8: model: folder \(fixture.path("empty-folder")) has no config.json; expected a Hugging Face model folder",
        ])
    }

    func testMisspelledTiny() {
        let yaml = Self.head.replacingOccurrences(of: "model: model.gguf", with: "model:\n  tiyn: {layers: 2}") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:2:3: model.tiyn: unknown key; did you mean 'tiny'? expected a path to a GGUF file or Hugging Face folder, or tiny: {…}",
        ])
    }

    func testTinyHeadsMustDivideHidden() {
        let yaml = Self.head.replacingOccurrences(of: "model: model.gguf", with: "model:\n  tiny: {hidden: 64, heads: 5, kv_heads: 5}")
            + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:2:29: model.tiny.heads: hidden 64 / heads 5 is not an even integer; expected heads to divide hidden into an even head size (RoPE rotates pairs)",
        ])
    }

    func testTinyKVHeadsMustDivideHeads() {
        let yaml = Self.head.replacingOccurrences(of: "model: model.gguf", with: "model:\n  tiny: {heads: 4, kv_heads: 3}")
            + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:2:30: model.tiny.kv_heads: heads 4 is not a multiple of kv_heads 3; expected kv_heads to divide heads",
        ])
    }

    // MARK: accumulation and YAML

    func testAllErrorsOfARecipeAtOnceInFileOrder() {
        let yaml = """
            model: missing.gguf
            data:
              - name: preference-jsonl
                path: pairs.jsonl
                limt: 5
            loss: {name: test-pairwise, beta: 0}
            optimizer: {lr: fast}
            training: {steps: 10, batch_size: -2}

            """
        XCTAssertEqual(fixture.errors(yaml), [
            "r.yaml:1:8: model: no such file or folder: \(fixture.path("missing.gguf")); expected a GGUF file or a Hugging Face folder, relative to the recipe's folder",
            "r.yaml:5:5: data[0].limt: unknown key; did you mean 'limit'?",
            "r.yaml:6:35: loss.beta: 0 is out of range; expected a number in (0, ∞)",
            "r.yaml:7:17: optimizer.lr: fast is not a number; expected a number in (0, ∞)",
            "r.yaml:8:35: training.batch_size: -2 is out of range; expected an integer in [1, 1048576]",
        ])
    }

    func testDuplicateKeyIsReportedWithTheOtherErrors() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  steps: 20\n  batch_size: 0\n")), [
            "r.yaml:10:3: duplicate key 'steps' (first at 9:3); expected each key once",
            "r.yaml:11:15: training.batch_size: 0 is out of range; expected an integer in [1, 1048576]",
        ])
    }

    func testYAMLSyntaxErrorCarriesLibYAMLsPositionAndText() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: [10\n  batch_size: 2\n")), [
            "r.yaml:10:13: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at 9:10); expected YAML: key: value pairs, nested by indenting with spaces",
        ])
    }

    func testTabIndentationIsASyntaxError() {
        XCTAssertEqual(fixture.errors(withTraining("\tsteps: 10\n")), [
            "r.yaml:9:1: YAML syntax error: found character that cannot start any token (while scanning for the next token at 9:1); expected YAML: key: value pairs, nested by indenting with spaces",
        ])
    }

    // MARK: TRL's names

    func testTRLNameInTheRightSectionSuggestsKeelsKey() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  per_device_train_batch_size: 4\n  gradient_accumulation_steps: 2\n")), [
            "r.yaml:10:3: training.per_device_train_batch_size: unknown key; did you mean 'batch_size'? ('per_device_train_batch_size' is TRL's name)",
            "r.yaml:11:3: training.gradient_accumulation_steps: unknown key; did you mean 'grad_accum'? ('gradient_accumulation_steps' is TRL's name)",
        ])
    }

    func testTRLNameElsewhereSuggestsTheFullKeyPath() {
        XCTAssertEqual(fixture.errors(withTraining("  steps: 10\n  beta: 0.1\n  warmup_ratio: 0.1\nlearning_rate: 1.0e-6\nnum_train_epochs: 2\n")), [
            "r.yaml:10:3: training.beta: unknown key; did you mean 'loss.beta'? ('beta' is TRL's name)",
            "r.yaml:11:3: training.warmup_ratio: unknown key; did you mean 'optimizer.warmup_steps'? ('warmup_ratio' is TRL's name) (in steps: TRL's ratio × the run's steps)",
            "r.yaml:12:1: learning_rate: unknown section; did you mean 'optimizer.lr'? ('learning_rate' is TRL's name)",
            "r.yaml:13:1: num_train_epochs: unknown section; did you mean 'training.epochs'? ('num_train_epochs' is TRL's name)",
        ])
    }

    /// A key a loss node does not have is not re-suggested as itself because TRL spells it that way too.
    func testKeelsOwnNameMissingFromAPluginIsNotSuggestedAsItself() {
        let yaml = Self.head.replacingOccurrences(of: "  beta: 0.1\n", with: "  beta: 0.1\n  loss_type: ipo\n") + "training:\n  steps: 10\n"
        XCTAssertEqual(fixture.errors(yaml), ["r.yaml:8:3: loss.loss_type: unknown key; expected one of beta, name, weight"])
    }
}
