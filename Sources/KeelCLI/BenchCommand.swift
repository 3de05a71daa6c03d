import ArgumentParser
import Foundation
import KeelCore

/// `keel bench …`: performance measurements.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Keel's performance.",
        subcommands: [BenchRuntimeCommand.self])
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
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(RuntimeBenchmark.format(report))
        }
    }
}
