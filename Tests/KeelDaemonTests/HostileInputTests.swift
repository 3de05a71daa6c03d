import Foundation
import Glibc
import XCTest
@testable import KeelDaemon

/// The hostile-input suite: a corpus of bad recipes and files (syntax, types, ranges, paths, special
/// files, encodings, sizes, compositions, and a few valid ones that must still pass), each put through
/// `keel validate`, `keel run` and the daemon. Every outcome is one of: rejected with position and
/// expectation (`file:line:column: … expected …`), rejected without them, crashed (killed by a signal),
/// hung (no exit within the time limit), accepted wrongly (exit 0 for a bad input), refused wrongly (a
/// valid one refused), data lost (a file outside Keel's own folders, or the store, damaged). The tally is
/// printed and the README quotes it; the goal is 0 of everything but the first (and the valid ones).
final class HostileInputTests: XCTestCase {
    struct Case {
        let name: String
        let category: String
        /// The recipe's bytes, or nil when `make` creates the file (special files).
        let bytes: [UInt8]?
        var make: ((URL) throws -> Void)? = nil
        var valid = false
    }

    enum Outcome: String, CaseIterable {
        case positioned = "rejected with position and expectation"
        case unpositioned = "rejected without position or expectation"
        case crashed, hung
        case acceptedWrongly = "accepted wrongly"
        case refusedWrongly = "refused wrongly (valid input)"
        case ran = "valid, ran"
    }

    // MARK: The corpus

    static func recipe(training: [(String, String)] = [], model: String = "{tiny: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 16, vocab: 259}}",
                       data: String = "  - {name: synthetic-preferences, count: 16, seed: 0}", loss: String = "{name: dpo, beta: 0.1}",
                       optimizer: String = "{lr: 0.001}", output: String = "{name: hostile}", extra: String = "") -> String {
        var lines = [("steps", "1"), ("batch_size", "2"), ("max_length", "32")]
        for (key, value) in training {
            if let index = lines.firstIndex(where: { $0.0 == key }) { lines[index].1 = value } else { lines.append((key, value)) }
        }
        return "model: \(model)\ndata:\n\(data)\nloss: \(loss)\noptimizer: \(optimizer)\ntraining:\n"
            + lines.map { "  \($0.0): \($0.1)\n" }.joined() + "output: \(output)\n" + extra
    }

    static func text(_ name: String, _ category: String, _ text: String, valid: Bool = false) -> Case {
        Case(name: name, category: category, bytes: Array(text.utf8), valid: valid)
    }

    static func corpus(outside: URL) -> [Case] {
        var cases: [Case] = []
        // Valid recipes: they must still pass everywhere.
        cases.append(text("valid-base", "valid", recipe(), valid: true))
        cases.append(text("valid-crlf", "valid", recipe().replacingOccurrences(of: "\n", with: "\r\n"), valid: true))
        cases.append(Case(name: "valid-bom", category: "valid", bytes: [0xEF, 0xBB, 0xBF] + Array(recipe().utf8), valid: true))
        cases.append(text("valid-anchors", "valid", recipe(loss: "&l {name: dpo, beta: 0.1}", extra: "# comment: ignored\n"), valid: true))

        // Types and ranges of every integer option of training, every number of optimizer, tiny's shape.
        let ints = ["steps", "batch_size", "grad_accum", "max_length", "seed", "eval_every", "checkpoint_every", "keep_checkpoints",
                    "log_every", "eval_generations", "eval_max_new_tokens"]
        for key in ints {
            for (label, value) in [("word", "abc"), ("list", "[1, 2]"), ("map", "{a: 1}"), ("quoted", "\"8\""), ("null", "~"),
                                   ("fraction", "1.5"), ("hex", "0x10")] {
                cases.append(text("type-\(key)-\(label)", "types", recipe(training: [(key, value)])))
            }
            for (label, value) in [("int64max", "9223372036854775807"), ("int64min", "-9223372036854775808"),
                                   ("huge", "99999999999999999999"), ("negative", "-1")] {
                // Any non-negative seed is a seed: Int64.max must validate and run.
                let valid = key == "seed" && label == "int64max"
                cases.append(text("range-\(key)-\(label)", valid ? "valid" : "ranges", recipe(training: [(key, value)]), valid: valid))
            }
        }
        for key in ["lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm", "min_lr_ratio"] {
            for (label, value) in [("nan", ".nan"), ("inf", ".inf"), ("minus-inf", "-.inf"), ("overflow", "1e999"), ("negative", "-1"),
                                   ("quoted", "\"0.1\"")] {
                cases.append(text("range-\(key)-\(label)", "ranges", recipe(optimizer: "{lr: 0.001, \(key): \(value)}".replacingOccurrences(of: "{lr: 0.001, lr:", with: "{lr:"))))
            }
        }
        for key in ["layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"] {
            for value in ["0", "9223372036854775807", "1099511627776"] {
                cases.append(text("range-tiny-\(key)-\(value)", "ranges", recipe(model: "{tiny: {\(key): \(value)}}")))
            }
        }
        cases.append(text("range-tiny-cannot-fit", "ranges",
                          recipe(model: "{tiny: {layers: 512, hidden: 65536, heads: 512, kv_heads: 512, intermediate: 262144}}")))
        for value in ["yes", "1", "\"true\"", "[true]"] { cases.append(text("type-share_prompt-\(value)", "types", recipe(training: [("share_prompt", value)]))) }
        for value in ["nonsense", "[cosine]", "\"\""] { cases.append(text("type-schedule-\(value)", "types", recipe(optimizer: "{lr: 0.001, schedule: \(value)}"))) }

        // Syntax.
        let syntax: [(String, String)] = [
            ("unclosed-flow", "model: {tiny: {layers: 1}\n"), ("tab-indent", recipe().replacingOccurrences(of: "  steps", with: "\tsteps")),
            ("bad-indent", recipe().replacingOccurrences(of: "  batch_size", with: "     batch_size")),
            ("duplicate-key", recipe(training: [("steps", "1\n  steps: 2")])), ("empty", ""), ("only-comment", "# nothing\n"),
            ("scalar-document", "hello\n"), ("list-document", "- a\n- b\n"), ("two-documents", recipe() + "---\n" + recipe()),
            ("unknown-alias", recipe(loss: "*nowhere")), ("complex-key", "? [a, b]\n: c\n" + recipe()),
            ("alias-bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + (1...9).map { "a\($0): &a\($0) [" + Array(repeating: "*a\($0 == 1 ? "" : String($0 - 1))", count: 10).joined(separator: ", ") + "]" }.joined(separator: "\n") + "\n"),
            ("deep-nesting", String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "\n"),
            ("colon-soup", ": : :\n"), ("unterminated-quote", "model: \"tiny\n"), ("merge-key", recipe(training: [("<<", "{batch_size: 4}")])),
            ("unknown-section", recipe(extra: "trainig: {steps: 1}\n")), ("missing-sections", "model: {tiny: {}}\n"),
        ]
        cases += syntax.map { text("syntax-\($0.0)", "syntax", $0.1) }

        // Paths.
        let paths: [(String, String)] = [
            ("data-missing", recipe(data: "  - {name: preference-jsonl, path: /nonexistent/pairs.jsonl}")),
            ("data-folder", recipe(data: "  - {name: preference-jsonl, path: \(outside.path)}")),
            ("data-dev-zero", recipe(data: "  - {name: preference-jsonl, path: /dev/zero}")),
            ("data-fifo", recipe(data: "  - {name: hh, path: \(outside.appendingPathComponent("pipe.jsonl").path)}")),
            ("data-empty-path", recipe(data: "  - {name: preference-jsonl, path: \"\"}")),
            ("model-missing", recipe(model: "/nonexistent/model.gguf")), ("model-not-gguf", recipe(model: "/etc/hostname")),
            ("model-folder-without-config", recipe(model: outside.path)), ("model-dev-zero", recipe(model: "/dev/zero")),
            ("reference-fifo", recipe(extra: "reference: {path: \(outside.appendingPathComponent("pipe.jsonl").path)}\n")),
            ("output-root", recipe(output: "{dir: /}")), ("output-dot", recipe(output: "{dir: .}")), ("output-dotdot", recipe(output: "{dir: ..}")),
            ("output-etc", recipe(output: "{dir: /etc}")), ("output-existing-folder", recipe(output: "{dir: \(outside.path)}")),
            ("output-file", recipe(output: "{dir: /etc/hostname}")), ("output-name-traversal", recipe(output: "{name: ../../etc}")),
            ("output-name-slash", recipe(output: "{name: a/b}")),
        ]
        cases += paths.map { text("path-\($0.0)", "paths", $0.1) }

        // Special files standing in for the recipe itself.
        let special: [(String, (URL) throws -> Void)] = [
            ("fifo", { XCTAssertEqual(mkfifo($0.path, 0o600), 0) }),
            ("folder", { try FileManager.default.createDirectory(at: $0, withIntermediateDirectories: false) }),
            ("link-dev-zero", { try FileManager.default.createSymbolicLink(atPath: $0.path, withDestinationPath: "/dev/zero") }),
            ("link-dangling", { try FileManager.default.createSymbolicLink(atPath: $0.path, withDestinationPath: "/nonexistent/x.yaml") }),
            ("link-loop", { try FileManager.default.createSymbolicLink(atPath: $0.path, withDestinationPath: $0.path) }),
            ("link-outside", { try FileManager.default.createSymbolicLink(atPath: $0.path, withDestinationPath: outside.appendingPathComponent("secret.txt").path) }),
        ]
        cases += special.map { Case(name: "special-\($0.0)", category: "special files", bytes: nil, make: $0.1) }

        // Encodings.
        let body = Array(recipe().utf8)
        let encodings: [(String, [UInt8])] = [
            ("utf16le", [0xFF, 0xFE] + recipe().utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }),
            ("utf16be", [0xFE, 0xFF] + recipe().utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }),
            ("utf16-no-bom", recipe().utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }),
            ("utf32", [0xFF, 0xFE, 0x00, 0x00] + recipe().unicodeScalars.flatMap { [UInt8($0.value & 0xFF), 0, 0, 0] }),
            ("latin1", Array(recipe(output: "{name: caf\u{E9}}").utf8).map { $0 == 0xC3 ? 0xE9 : $0 }.filter { $0 != 0xA9 }),
            ("bad-byte-middle", Array(body[..<40]) + [0xFF] + Array(body[40...])),
            ("overlong", Array(body[..<40]) + [0xC0, 0x80] + Array(body[40...])), ("surrogate", Array(body[..<40]) + [0xED, 0xA0, 0x80] + Array(body[40...])),
            ("nul", Array(body[..<40]) + [0] + Array(body[40...])), ("truncated-sequence", body + [0xE2, 0x82]),
        ]
        cases += encodings.map { Case(name: "encoding-\($0.0)", category: "encodings", bytes: $0.1) }

        // Sizes.
        let sizes: [(String, String)] = [
            ("2mb", recipe(extra: "# " + String(repeating: "x", count: 2 << 20) + "\n")),
            ("over-limit-by-one", recipe(extra: "#" + String(repeating: "x", count: (1 << 20) - recipe().utf8.count - 1) + "\n")),
            ("long-name", recipe(output: "{name: \(String(repeating: "n", count: 500_000))}")),
            ("many-unknown-keys", recipe(extra: "training2:\n" + (0..<20_000).map { "  k\($0): 1\n" }.joined())),
            ("many-training-keys", recipe(training: (0..<20_000).map { ("x\($0)", "1") })),
        ]
        cases += sizes.map { text("size-\($0.0)", "sizes", $0.1) }

        // Compositions of valid parts that do not fit together.
        let compositions: [(String, String)] = [
            ("steps-and-epochs", recipe(training: [("epochs", "1")])), ("no-length", recipe().replacingOccurrences(of: "  steps: 1\n", with: "")),
            ("unknown-plugin", recipe(loss: "{name: dpoo}")), ("wrong-kind", recipe(loss: "{name: shuffle}")),
            ("data-not-a-list", recipe(data: "  {name: shuffle}").replacingOccurrences(of: "data:\n  {", with: "data: {")),
            ("empty-data", recipe(data: "  []").replacingOccurrences(of: "data:\n  []", with: "data: []")),
            ("transform-first", recipe(data: "  - {name: shuffle}\n  - {name: synthetic-preferences, count: 16}")),
            ("two-splits", recipe(data: "  - {name: synthetic-preferences, count: 16}\n  - {name: split, eval_count: 2}\n  - {name: split, eval_count: 2}")),
            ("generate-without-reward", recipe(data: "  - {name: generate-pairs, prompts: /etc/hostname}")),
            ("negative-weight", recipe(loss: "[{name: dpo, weight: -1}, {name: sft}]")),
            ("loss-needs-reward", recipe(loss: "{name: var}")),
            ("heads-not-dividing", recipe(model: "{tiny: {hidden: 10, heads: 3}}")),
            ("eval-without-split", recipe(training: [("eval_every", "1")])),
            ("reserved-name-option", recipe(loss: "{name: dpo, name: sft}")),
        ]
        cases += compositions.map { text("composition-\($0.0)", "compositions", $0.1) }
        // A scheduler that leaves the learning rate alone (ref-sync) beside an optimizer schedule: valid.
        cases.append(text("valid-scheduler-beside-schedule", "valid",
                          recipe(optimizer: "{lr: 0.001, schedule: cosine}", extra: "schedulers: [{name: ref-sync}]\n"), valid: true))
        return cases
    }
}

extension HostileInputTests {
    struct Result {
        let status: Int32
        let signalled: Bool
        let hung: Bool
        let output: String
    }

    /// Runs `keel arguments…` with output to a file (an error list can be long) and a time limit.
    static func keel(_ binary: String, _ arguments: [String], limit: TimeInterval, scratch: URL) throws -> Result {
        let log = scratch.appendingPathComponent("out-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(limit)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let hung = process.isRunning
        if hung { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try handle.close()
        let output = String(decoding: (try? FileHandle(forReadingFrom: log).read(upToCount: 1 << 16)) ?? Data(), as: UTF8.self)
        return Result(status: process.terminationStatus, signalled: !hung && process.terminationReason == .uncaughtSignal, hung: hung, output: output)
    }

    static func classify(_ c: Case, _ r: Result) -> Outcome {
        if r.hung { return .hung }
        if r.signalled { return .crashed }
        if r.status == 0 { return c.valid ? .ran : .acceptedWrongly }
        if c.valid { return .refusedWrongly }
        return isPositioned(r.output) ? .positioned : .unpositioned
    }

    /// `file:line:column: … expected …`.
    static func isPositioned(_ message: String) -> Bool {
        message.range(of: #":[0-9]+:[0-9]+: "#, options: .regularExpression) != nil
            && (message.contains("expected") || message.contains("did you mean"))
    }

    func testHostileCorpusThroughValidateRunAndTheDaemon() throws {
        let sandbox = try DaemonSandbox(self)
        let outside = sandbox.root.appendingPathComponent("outside", isDirectory: true)
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try Data("root:$6$secret-hash:19000:0:99999:7:::\n".utf8).write(to: outside.appendingPathComponent("secret.txt"))
        XCTAssertEqual(mkfifo(outside.appendingPathComponent("pipe.jsonl").path, 0o600), 0)
        let precious = sandbox.root.appendingPathComponent("precious.txt")
        try Data("keep".utf8).write(to: precious)
        let outsideBefore = try FileManager.default.contentsOfDirectory(atPath: outside.path).sorted()

        let cases = Self.corpus(outside: outside)
        XCTAssertGreaterThanOrEqual(cases.count, 150)
        let folder = sandbox.staging
        for c in cases {
            let url = folder.appendingPathComponent("\(c.name).yaml")
            if let bytes = c.bytes { try Data(bytes).write(to: url) } else { try c.make?(url) }
        }

        let cliVar = sandbox.root.appendingPathComponent("cli-var")  // the daemon's var/ holds only its own runs
        var tally: [String: [Outcome: Int]] = [:]
        var notable: [String] = []
        let started = Date()
        for command in ["validate", "run"] {
            for c in cases {
                let result = try Self.keel(sandbox.keel, [command, folder.appendingPathComponent("\(c.name).yaml").path, "--var", cliVar.path],
                                           limit: 60, scratch: sandbox.root)
                let outcome = Self.classify(c, result)
                tally[command, default: [:]][outcome, default: 0] += 1
                if outcome != .positioned && outcome != .ran { notable.append("\(command) \(c.name): \(outcome.rawValue): \(result.output.prefix(300))") }
            }
        }
        let processSeconds = Date().timeIntervalSince(started)

        // The daemon: every case dropped into the watched folder at once (special files made in place).
        for c in cases {
            let url = sandbox.recipes.appendingPathComponent("\(c.name).yaml")
            if let bytes = c.bytes { try Data(bytes).write(to: url) } else { try c.make?(url) }
        }
        let daemon = try sandbox.startDaemon(["--exit-when-idle"])
        defer { sandbox.stop(daemon) }
        let deadline = Date().addingTimeInterval(300)
        while daemon.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        let daemonHung = daemon.isRunning
        let runs = try sandbox.runs()
        for c in cases {
            let recorded = runs.filter { $0.recipePath.hasSuffix("/\(c.name).yaml") }
            let outcome: Outcome
            if daemonHung { outcome = .hung }
            else if daemon.terminationReason == .uncaughtSignal { outcome = .crashed }
            else if recorded.count != 1 { outcome = .unpositioned; notable.append("daemon \(c.name): \(recorded.count) runs recorded") }
            else if c.valid { outcome = recorded[0].status == .completed ? .ran : .refusedWrongly }
            else if recorded[0].status != .rejected { outcome = .acceptedWrongly }
            else { outcome = Self.isPositioned(recorded[0].error ?? "") ? .positioned : .unpositioned }
            tally["daemon", default: [:]][outcome, default: 0] += 1
            if outcome != .positioned && outcome != .ran { notable.append("daemon \(c.name): \(outcome.rawValue): \(recorded.first?.error?.prefix(300) ?? "")") }
        }

        // Nothing outside Keel's own folders was touched, and the store is sound.
        let outsideAfter = try FileManager.default.contentsOfDirectory(atPath: outside.path).sorted()
        let recipesAfter = try FileManager.default.contentsOfDirectory(atPath: sandbox.recipes.path)
        let lost = (try? String(contentsOf: precious, encoding: .utf8)) != "keep" || outsideAfter != outsideBefore
            || recipesAfter.count != cases.count
        let integrity = try sandbox.store().database.query("PRAGMA integrity_check").first?.string("integrity_check")

        print("hostile corpus: \(cases.count) cases (" + Dictionary(grouping: cases, by: \.category).map { "\($0.key) \($0.value.count)" }.sorted().joined(separator: ", ")
              + String(format: "); validate + run took %.0f s", processSeconds))
        for command in ["validate", "run", "daemon"] {
            print("  \(command): " + Outcome.allCases.map { "\($0.rawValue) \(tally[command]?[$0] ?? 0)" }.joined(separator: ", "))
        }
        print("  data lost: \(lost ? 1 : 0); store integrity_check: \(integrity ?? "?")")
        for line in notable { print("  - \(line)") }

        for command in ["validate", "run", "daemon"] {
            for outcome in [Outcome.unpositioned, .crashed, .hung, .acceptedWrongly, .refusedWrongly] {
                XCTAssertEqual(tally[command]?[outcome] ?? 0, 0, "\(command): \(outcome.rawValue)")
            }
        }
        XCTAssertFalse(lost, "a file outside Keel's own folders changed")
        XCTAssertEqual(integrity, "ok")
        XCTAssertEqual(daemon.terminationStatus, 0, sandbox.daemonOutput)
    }
}
