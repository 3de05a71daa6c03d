import Foundation
import XCTest
@testable import KeelCore

/// The command-line conventions of `keel`, tried on the built executable as a user would: `--set`
/// overrides, run ids by prefix and `latest`, commands that only read, JSON paths, `keel logs` of a
/// foreground run, help text, `keel plan`'s step count, and the progress line in a narrow terminal.
final class CLIConventionTests: XCTestCase {
    var fixture: RunFixture!

    override func setUpWithError() throws {
        fixture = try RunFixture()
        try fixture.writeTinyDPO([("steps: 300", "steps: 6"), ("log_every: 10", "log_every: 2")])
    }

    override func tearDown() { fixture = nil }

    func testOverridesChangeTheRunAndAreCheckedLikeTheFile() throws {
        let run = try fixture.keel(["run", fixture.recipe.path, "--set", "training.steps=4", "--set", "output.name=changed"])
        XCTAssertEqual(run.status, 0, run.error)
        let record = try XCTUnwrap(try fixture.store().run(try fixture.onlyRunID()))
        XCTAssertEqual(record.totalSteps, 4)
        XCTAssertTrue(record.id.contains("-changed-"), record.id)
        XCTAssertNotNil(record.fingerprintParts["overrides"])

        let bad = try fixture.keel(["run", fixture.recipe.path, "--set", "training.steps=ten", "--set", "trainig.seed=1",
                                    "--set", "loss[0].beta=1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.error.split(separator: "\n").map(String.init), [
            "--set training.steps=ten: training.steps: ten is not an integer; expected an integer in [1, 100000000]",
            "--set trainig.seed=1: trainig: unknown section; did you mean 'training'?",
            "--set loss[0].beta=1: loss is a mapping, not a list; expected loss.KEY",
        ])
        let malformed = try fixture.keel(["run", fixture.recipe.path, "--set", "training.steps"])
        XCTAssertEqual(malformed.error, "error: --set training.steps: found no KEY=VALUE; expected e.g. --set training.steps=50\n")
        XCTAssertEqual(try fixture.store().runSummaries().count, 1, "a refused override starts no run")
    }

    func testRunsAreNamedByAUniquePrefixOrLatest() throws {
        for name in ["alpha", "beta"] {
            XCTAssertEqual(try fixture.keel(["run", fixture.recipe.path, "--set", "output.name=\(name)"]).status, 0)
        }
        let ids = try fixture.store().runSummaries().map(\.run.id)   // newest first
        let (beta, alpha) = (ids[0], ids[1])
        XCTAssertTrue(beta.contains("-beta-"), beta)
        let latest = try fixture.keel(["status", "latest"])
        XCTAssertTrue(latest.output.hasPrefix(beta), latest.output)
        let prefix = String(alpha.prefix(through: try XCTUnwrap(alpha.range(of: "alpha")).upperBound))
        XCTAssertTrue(try fixture.keel(["status", prefix]).output.hasPrefix(alpha))
        XCTAssertTrue(try fixture.keel(["logs", prefix]).output.contains("step 6/6"))
        let ambiguous = try fixture.keel(["status", "20"])
        XCTAssertNotEqual(ambiguous.status, 0)
        XCTAssertTrue(ambiguous.error.contains("'20' starts 2 run ids (\(beta), \(alpha)); expected a longer prefix"), ambiguous.error)
        XCTAssertTrue(try fixture.keel(["status", "nope"]).error.contains("no run with id 'nope'"))
    }

    /// `keel logs` prints a foreground run's output (steps and the end), as it does a daemon worker's.
    func testLogsOfAForegroundRun() throws {
        XCTAssertEqual(try fixture.keel(["run", fixture.recipe.path]).status, 0)
        let logs = try fixture.keel(["logs", "latest"])
        XCTAssertEqual(logs.status, 0, logs.error)
        XCTAssertTrue(logs.output.contains("step 2/6 loss"), logs.output)
        XCTAssertTrue(logs.output.contains("epoch 0.06"), logs.output)
        XCTAssertTrue(logs.output.contains("done: 6 steps"), logs.output)
        // TRL's `epoch`: steps / steps per epoch (576 training pairs / 16 = 36), recorded with each train step.
        let epochs = try fixture.store().metricSeries(try fixture.onlyRunID(), split: .train, name: TrainMetric.epoch)
        XCTAssertEqual(try XCTUnwrap(epochs.last?.value), 6.0 / 36, accuracy: 1e-12)
    }

    /// `keel score` says it scores without EOS unless --eos, which scores as the trainer does (one token more).
    func testScoreAppendsEOSOnlyWhenAskedAndSaysSo() throws {
        XCTAssertEqual(try fixture.keel(["run", fixture.recipe.path]).status, 0)
        let export = fixture.varDirectory.appendingPathComponent("runs/\(try fixture.onlyRunID())/export").path
        let pairs = fixture.directory.appendingPathComponent("pairs.jsonl")
        try Data(#"{"prompt": "Continue: 4, 5, 6,\nAnswer:", "chosen": " 7.", "rejected": " 9."}"#.utf8 + [0x0A]).write(to: pairs)
        func tokens(_ extra: [String]) throws -> (chosen: Int, stderr: String) {
            let result = try KeelBinary.run(["score", "--model", export, "--data", pairs.path, "--json"] + extra)
            XCTAssertEqual(result.status, 0, result.error)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            return (try XCTUnwrap(json["chosenTokens"] as? Int), result.error)
        }
        let (plain, eos) = (try tokens([]), try tokens(["--eos"]))
        XCTAssertEqual(eos.chosen, plain.chosen + 1)
        XCTAssertTrue(plain.stderr.contains("completions scored without EOS; the trainer appends one (--eos scores as it does)"), plain.stderr)
        XCTAssertEqual(eos.stderr, "")
    }

    func testStatusOfAnEmptyFolderCreatesNoDatabase() throws {
        let status = try fixture.keel(["status"])
        XCTAssertEqual(status.status, 0, status.error)
        XCTAssertEqual(status.output, "no runs: \(fixture.varDirectory.appendingPathComponent("keel.db").path) does not exist\n")
        XCTAssertEqual(try fixture.keel(["status", "--json"]).output, "[]\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: fixture.varDirectory.path))
    }

    func testJSONPathsKeepTheirSlashes() throws {
        XCTAssertEqual(try fixture.keel(["run", fixture.recipe.path]).status, 0)
        let json = try fixture.keel(["status", "--json"]).output
        XCTAssertTrue(json.contains("\"recipe\" : \"\(fixture.recipe.path)\""), json)
        XCTAssertFalse(json.contains("\\/"), json)
    }

    /// Every command's help names each default once (ArgumentParser prints it; the text must not repeat it).
    func testHelpShowsEachDefaultOnce() throws {
        for command in ["run", "resume", "status", "export", "daemon", "logs", "cancel", "validate", "plan", "plugins", "plugin new",
                        "generate", "score", "eval", "bench runtime", "bench model", "bench dpo"] {
            let help = try KeelBinary.run(command.split(separator: " ").map(String.init) + ["--help"]).output
            for line in help.split(separator: "\n") {
                XCTAssertLessThanOrEqual(line.components(separatedBy: "default").count - 1, 1, "keel \(command) --help: \(line)")
            }
        }
    }

    func testPlanShowsTheStepsARecipeResolvesTo() throws {
        XCTAssertTrue(try fixture.keel(["plan", fixture.recipe.path]).output.contains("steps: 6 optimizer steps of 16 × 1 examples"))
        try fixture.writeTinyDPO([("steps: 300", "epochs: 2")])
        XCTAssertTrue(try fixture.keel(["plan", fixture.recipe.path]).output.contains("steps: 2 epochs; how many steps that is depends on the data"))
        let plan = try fixture.keel(["plan", fixture.recipe.path, "--data"])
        // 640 generated pairs, 64 held out: 576 / 16 = 36 steps per epoch.
        XCTAssertTrue(plan.output.contains("steps: 72 optimizer steps: 2 epochs × 36 steps of 16 × 1 examples"), plan.output)
    }

    /// `keel eval RUN`: the run's trainer at its last checkpoint against its reference, β from its recipe,
    /// on a file or on its own held-out split, with the greedy answers' length (tiny-dpo has no reward).
    func testEvalOfARunPrintsEstimatesWithStandardErrors() throws {
        XCTAssertEqual(try fixture.keel(["run", fixture.recipe.path]).status, 0)
        let pairs = fixture.directory.appendingPathComponent("held-out.jsonl")
        try Data("""
            {"prompt": "Question: What is the capital of Peru?\\nAnswer:", "chosen": " Lima.", "rejected": " Oslo."}
            {"prompt": "Continue: 4, 5, 6,\\nAnswer:", "chosen": " 7.", "rejected": " 9."}
            {"prompt": "Question: What is the opposite of hot?\\nAnswer:", "chosen": " cold.", "rejected": " tall."}

            """.utf8).write(to: pairs)
        let result = try fixture.keel(["eval", "latest", "--data", pairs.path, "--json"])
        XCTAssertEqual(result.status, 0, result.error)
        XCTAssertFalse(result.output.contains("\\/"), result.output)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        XCTAssertEqual(json["pairs"] as? Int, 3)
        XCTAssertEqual(json["beta"] as? Double, 2.0)
        let metrics = try XCTUnwrap(json["metrics"] as? [String: [String: Double]])
        for name in ["rewards/accuracies", "rewards/margins", "logps/accuracies", "reference/logps/accuracies"] {
            XCTAssertNotNil(metrics[name]?["standard_error"], name)
        }
        let text = try fixture.keel(["eval", "latest", "--data", pairs.path])
        XCTAssertTrue(text.output.contains("implicit-reward accuracy"), text.output)
        XCTAssertNotEqual(try fixture.keel(["eval", "--data", pairs.path]).status, 0, "neither a run nor --policy/--reference")

        let own = try fixture.keel(["eval", "latest", "--generations", "4", "--json"])
        XCTAssertEqual(own.status, 0, own.error)
        let ownJSON = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(own.output.utf8)) as? [String: Any])
        XCTAssertEqual(ownJSON["pairs"] as? Int, 64, "tiny-dpo holds out 64 pairs")
        XCTAssertEqual(ownJSON["data"] as? String, "the run's held-out split")
        let ownMetrics = try XCTUnwrap(ownJSON["metrics"] as? [String: [String: Double]])
        XCTAssertNotNil(ownMetrics["generation/length_mean"]?["standard_error"], "\(ownMetrics.keys.sorted())")
    }

    /// In a 70-column pseudo-terminal every progress line fits: no line of the output is wider than the
    /// terminal, so none wraps; the line shows elapsed<ETA and lr.
    func testProgressLineFitsA70ColumnTerminal() throws {
        try fixture.writeTinyDPO([("steps: 300", "steps: 12"), ("log_every: 10", "log_every: 1")])
        let output = try KeelBinary.runInTerminal(["run", fixture.recipe.path, "--var", fixture.varDirectory.path], columns: 70)
        XCTAssertTrue(output.contains("done: 12 steps"), output)
        let lines = output.replacingOccurrences(of: "\u{1B}[K", with: "").components(separatedBy: CharacterSet(charactersIn: "\r\n"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("step 12/12 █") && $0.contains("<") && $0.contains(" lr ") }, output)
        for line in lines where line.hasPrefix("step ") { XCTAssertLessThanOrEqual(line.count, 69, line) }
    }

    func testProgressBarGivesWayToTheWidth() {
        let fields = ["loss 0.6931", "0:12<3:45", "lr 0.003", "ep 1.25", "12.3k tok/s"]
        for width in [0, 10, 20, 40, 69, 79, 200] {
            let bar = ProgressDisplay.bar(step: 150, of: 300, width: width, fields: fields)
            XCTAssertLessThanOrEqual(bar.count, width, "\(width): \(bar)")
        }
        XCTAssertEqual(ProgressDisplay.bar(step: 150, of: 300, width: 200, fields: fields),
                       "step 150/300 ████████████░░░░░░░░░░░░ loss 0.6931 0:12<3:45 lr 0.003 ep 1.25 12.3k tok/s")
        XCTAssertEqual(ProgressDisplay.bar(step: 150, of: 300, width: 40, fields: fields), "step 150/300 ███████░░░░░░░░ loss 0.6931")
        XCTAssertEqual(ProgressDisplay.bar(step: 150, of: 300, width: 10, fields: fields), "step 150/3")
    }
}

extension KeelBinary {
    /// Runs `keel arguments…` with a pseudo-terminal of `columns` columns as its standard output (so it
    /// draws its progress line as in a terminal), through util-linux's `script`, and returns everything
    /// written to that terminal.
    static func runInTerminal(_ arguments: [String], columns: Int) throws -> String {
        func quoted(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let command = "stty cols \(columns) rows 24; exec " + ([url.path] + arguments).map(quoted).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["--quiet", "--return", "--command", command, "/dev/null"]
        process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "COLUMNS" }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw PluginInputError("script: keel exited with \(process.terminationStatus):\n\(String(decoding: output, as: UTF8.self))") }
        return String(decoding: output, as: UTF8.self)
    }
}
