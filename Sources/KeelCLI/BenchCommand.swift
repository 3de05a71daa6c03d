import ArgumentParser
import DPO
import Foundation
import KeelCore

/// `keel bench …`: performance measurements.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Keel's performance.",
        subcommands: [BenchRuntimeCommand.self, BenchModelCommand.self, BenchDPOCommand.self])
}

/// `keel bench runtime`: sgemm GFLOP/s, the fp32 FMA peak, and a synthetic SmolLM2-shaped training
/// step built from the runtime's kernels with each kernel's share. Heavy (~1 min): run on a quiet machine.
struct BenchRuntimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runtime",
        abstract: "Benchmark sgemm, the FMA peak and a synthetic SmolLM2-shaped step built from the kernels.")

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Option(help: "Timed repetitions per measurement (the best is reported).")
    var repetitions = 3

    @Option(help: "Layers of the synthetic step (SmolLM2-135M has 30).")
    var layers = 30

    @Flag(help: "Only sgemm and the FMA peak; skip the synthetic step.")
    var skipStep = false

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1, got \(repetitions)") }
        guard layers >= 1 else { throw ValidationError("--layers must be at least 1, got \(layers)") }
    }

    func run() throws {
        var options = RuntimeBenchmark.Options()
        options.repetitions = repetitions
        options.stepConfig.layers = layers
        options.includeStep = !skipStep
        let report = RuntimeBenchmark.run(options)
        if json {
            print(try JSONOutput.line(report))
        } else {
            print(RuntimeBenchmark.format(report))
        }
    }
}

/// Options shared by `keel bench model` and `keel bench dpo`.
struct ModelBenchOptions: ParsableArguments {
    @Option(help: "GGUF model file.")
    var model = "var/models/SmolLM2-135M-Instruct.Q4_1.gguf"

    @Option(help: "HH-format JSON lines ({\"chosen\", \"rejected\"}) supplying the text.")
    var data = "../shared/data/hh-harmless-1800.jsonl"

    @Option(help: "Sequences per step (dpo: chosen + rejected rows, so batch/2 pairs).")
    var batch = 4

    @Option(help: "Tokens per sequence.")
    var length = 256

    @Option(help: "Timed steps (the median is reported).")
    var iterations = 5

    @Option(help: "Untimed steps first.")
    var warmup = 1

    @Option(help: "Thread counts to measure, each in a fresh process with KEEL_THREADS set (e.g. 1,2).")
    var threads = "1,2"

    @Option(help: "Run only this mode, in this process, with the pool's thread count (what each child runs).")
    var mode: ModelBenchmark.Mode?

    @Flag(help: "Add per-kernel times (Profiler) to each report.")
    var profile = false

    @Flag(help: "dpo: score chosen and rejected as separate rows instead of sharing each pair's prompt (A/B).")
    var separatePrompts = false

    @Flag(help: "Print one JSON object per measurement instead of text.")
    var json = false

    func validate() throws {
        guard batch >= 1, length >= 2, iterations >= 1, warmup >= 0 else {
            throw ValidationError("--batch ≥ 1, --length ≥ 2, --iterations ≥ 1 and --warmup ≥ 0 are required")
        }
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--threads must be a comma-separated list of positive integers, got \(threads.debugDescription)")
        }
    }

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    /// Runs `mode` here, or every (mode, thread count) in a child process each (peak RSS per mode).
    func run(modes: [ModelBenchmark.Mode]) throws {
        if let mode {
            var options = ModelBenchmark.Options(mode: mode, modelPath: model, dataPath: data)
            options.batch = batch
            options.length = length
            options.iterations = iterations
            options.warmup = warmup
            options.profile = profile
            options.sharesPrompt = !separatePrompts
            let report = try ModelBenchmark.run(options, preferenceLoss: try DPOLoss(options: ResolvedOptions(defaultsOf: DPOLoss.descriptor.options)))
            if json {
                print(try JSONOutput.line(report))
            } else {
                print(ModelBenchmark.format(report))
            }
            return
        }
        for mode in modes {
            for count in threadCounts {
                var arguments = Array(CommandLine.arguments.dropFirst()) + ["--mode", mode.rawValue]
                if let index = arguments.firstIndex(of: "--threads") { arguments.removeSubrange(index...index + 1) }
                let child = Process()
                child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
                child.arguments = arguments
                child.environment = ProcessInfo.processInfo.environment.merging(["KEEL_THREADS": String(count)]) { $1 }
                try child.run()
                child.waitUntilExit()
                guard child.terminationStatus == 0 else {
                    throw ValidationError("bench \(mode.rawValue) with \(count) thread(s) failed (exit status \(child.terminationStatus))")
                }
            }
        }
    }
}

/// `keel bench model`: forward (full logits) and forward+backward tokens/s, peak RSS and GGUF load
/// time at batch × length of real HH text, per thread count; compare with ../shared/bench/README.md.
struct BenchModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Benchmark the real model's forward and forward+backward on HH text (one process per mode).")

    @OptionGroup var options: ModelBenchOptions

    func validate() throws {
        if options.mode == .dpo { throw ValidationError("--mode dpo belongs to `keel bench dpo`") }
    }

    func run() throws { try options.run(modes: [.fwd, .fwdbwd]) }
}

/// `keel bench dpo`: one DPO training step (policy forward+backward, frozen reference forward, AdamW).
struct BenchDPOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Benchmark one DPO step on the real model: 2 HH pairs × 256 tokens, reference forward, AdamW.")

    @OptionGroup var options: ModelBenchOptions

    func validate() throws {
        if let mode = options.mode, mode != .dpo { throw ValidationError("`keel bench dpo` runs --mode dpo only") }
    }

    func run() throws { try options.run(modes: [.dpo]) }
}

extension ModelBenchmark.Mode: ExpressibleByArgument {}
