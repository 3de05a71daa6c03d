/// Philox sub-streams of `training.seed`, one per purpose, so that adding a split does not change the
/// shuffle order and vice versa.
enum SeedStream {
    static let shuffle: UInt64 = 1
    static let split: UInt64 = 2
}

/// The generator a seeded data plugin starts from: its own `seed` option, else a named sub-stream of
/// `training.seed`.
func dataGenerator(seed: Int?, context: DataContext, stream: UInt64) -> Philox {
    if let seed { return Philox(seed: UInt64(seed)) }
    return Philox(seed: context.seed).split(stream)
}

extension Philox {
    /// Uniform integer in 0..<bound without modulo bias (Lemire, "Fast random integer generation in an
    /// interval", 2019): reject the few low products that would over-represent small values. Written out
    /// rather than using the standard library's `next(upperBound:)` so the stream is fixed by this code.
    mutating func uniform(below bound: Int) -> Int {
        precondition(bound > 0 && bound <= Int(UInt32.max), "uniform(below:) bound \(bound) out of range")
        let n = UInt64(bound)
        let threshold = (UInt64(1) << 32 - n) % n
        while true {
            let product = UInt64(nextUInt32()) * n
            if product & 0xFFFF_FFFF >= threshold { return Int(product >> 32) }
        }
    }

    /// Fisher–Yates (Durstenfeld): position i swaps with a uniform j ≤ i, from the end down.
    mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(i, uniform(below: i + 1))
        }
    }
}

/// Shuffles the training examples with a seeded Fisher–Yates. Each call draws a new permutation (the
/// trainer calls `shuffle` again each epoch); the generator is the checkpointed state, so a resumed run
/// draws the same permutations as an uninterrupted one.
public final class ShuffleTransform: DataPlugin, Checkpointable {
    public enum StateKey {
        public static let generator = "generator"
    }

    public static let descriptor = PluginDescriptor(
        name: "shuffle", kind: .data, summary: "seeded Fisher–Yates shuffle of the training examples (Philox)",
        options: [OptionSpec("seed", .int(.nonNegative), default: .absent(note: "from training.seed"),
                             help: "seed of this shuffle; unset: a sub-stream of training.seed")],
        dataRole: .transform, stateKeys: [StateKey.generator])

    let seed: Int?
    /// Created from the seed on first use (the training seed is only known then).
    public private(set) var generator: Philox?

    public required init(options: ResolvedOptions) { seed = options.int("seed") }

    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        shuffle(&data.train, context: context)
        report.produced = data.train.count
    }

    public func shuffle<T>(_ items: inout [T], context: DataContext) {
        var rng = generator ?? dataGenerator(seed: seed, context: context, stream: SeedStream.shuffle)
        rng.shuffle(&items)
        generator = rng
    }

    public func saveState() throws -> PluginState {
        var state = PluginState()
        try state.set(StateKey.generator, generator)
        return state
    }

    public func restoreState(_ state: PluginState) throws {
        generator = try state.get(Philox?.self, StateKey.generator)
    }
}

/// Moves a seeded random subset of the training examples to the evaluation set; both keep their order.
public final class SplitTransform: DataPlugin {
    public static let descriptor = PluginDescriptor(
        name: "split", kind: .data, summary: "seeded train/eval split by fraction or count",
        options: [
            OptionSpec("eval_fraction", .double(NumericRange(lower: 0, upper: 1, lowerOpen: true, upperOpen: true)),
                       default: .absent(note: "unset"), help: "fraction of examples for evaluation (or use eval_count)"),
            OptionSpec("eval_count", .int(.atLeast(1)), default: .absent(note: "unset"),
                       help: "number of examples for evaluation (or use eval_fraction)"),
            OptionSpec("seed", .int(.nonNegative), default: .absent(note: "from training.seed"),
                       help: "seed of the split; unset: a sub-stream of training.seed"),
        ],
        dataRole: .split)

    let fraction: Double?
    let count: Int?
    let seed: Int?

    public required init(options: ResolvedOptions) {
        fraction = options.double("eval_fraction")
        count = options.int("eval_count")
        seed = options.int("seed")
    }

    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] {
        switch (options["eval_fraction"], options["eval_count"]) {
        case (nil, nil): return [OptionProblem(option: nil, "no split size; expected eval_fraction or eval_count")]
        case (.some, .some): return [OptionProblem(option: "eval_count", "both eval_fraction and eval_count are set; expected one of them")]
        default: return []
        }
    }

    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        let n = data.train.count
        let k = count ?? Int((Double(n) * (fraction ?? 0)).rounded())
        guard k >= 1, k < n else {
            throw DataError(["\(context.node): an eval split of \(k) out of \(n) examples; expected at least 1 for evaluation and 1 for training"])
        }
        var rng = dataGenerator(seed: seed, context: context, stream: SeedStream.split)
        var indices = Array(0..<n)
        rng.shuffle(&indices)
        let evalSet = Set(indices.prefix(k))
        data.eval += data.train.indices.filter { evalSet.contains($0) }.map { data.train[$0] }
        data.train = data.train.indices.filter { !evalSet.contains($0) }.map { data.train[$0] }
        report.produced = data.train.count
    }
}

/// Drops preference pairs carrying a flag (e.g. empty replies, which length-normalised losses cannot use).
public final class DropFlaggedFilter: DataPlugin {
    public static let descriptor = PluginDescriptor(
        name: "drop-flagged", kind: .data, summary: "drop preference pairs with a given flag (empty or identical replies)",
        options: [OptionSpec.choice("flag", ["any"] + ExampleFlags.names.map(\.1), "any",
                                    "which flag drops a pair; any: every flag")],
        dataRole: .filter, consumes: [.paired])

    let flags: ExampleFlags

    public required init(options: ResolvedOptions) { flags = Self.flags(options) }

    static func flags(_ options: ResolvedOptions) -> ExampleFlags {
        let name = options.string("flag") ?? "any"
        return ExampleFlags.names.first { $0.1 == name }?.0 ?? ExampleFlags(ExampleFlags.names.map(\.0))
    }

    /// The flags a data node drops: its `flag` option if it is a `drop-flagged` node, none otherwise.
    static func droppedFlags(_ node: PluginNode) -> ExampleFlags {
        node.type == DropFlaggedFilter.self ? flags(node.options) : []
    }

    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        func keep(_ example: Example) -> Bool {
            guard case .pair(let pair) = example else { return true }
            let hit = pair.flags.intersection(flags)
            for name in hit.names { report.skipped[name, default: 0] += 1 }
            return hit.isEmpty
        }
        data.train = data.train.filter(keep)
        data.eval = data.eval.filter(keep)
        report.produced = data.train.count
    }
}
