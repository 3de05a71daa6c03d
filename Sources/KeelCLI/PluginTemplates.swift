import KeelCore

/// The package `keel plugin new` writes: a working example plugin of the chosen kind, its test, a README,
/// and a Package.swift that compiles against the Keel checkout whose `keel` ran the command.
struct PluginTemplate {
    /// The plugin's name in recipes (`margin-hinge`).
    let name: String
    let kind: PluginKind
    /// The Keel checkout (module maps of its C libraries) and its release build directory (Swift modules,
    /// libKeelPluginAPI.so).
    let keelCheckout: String
    let keelBuild: String

    /// `margin-hinge` → `MarginHinge`: the Swift module, target and library name.
    var module: String { name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined() }
    var library: String { "lib\(module).so" }

    /// Relative path → content.
    var files: [(String, String)] {
        [("Package.swift", packageManifest), ("Sources/\(module)/\(module).swift", example.source),
         ("Sources/\(module)/Registration.swift", registration), ("Tests/\(module)Tests/\(module)Tests.swift", example.test),
         ("README.md", readme), (".gitignore", ".build/\nPackage.resolved\n")]
    }

    var packageManifest: String {
        """
        // swift-tools-version:6.0
        // A Keel \(kind.rawValue) plugin, made by `keel plugin new` (Keel \(Keel.version), plugin API \(PluginLibraryABI.version)).
        import PackageDescription

        /// The Keel checkout this plugin compiles against, and its release build (`swift build -c release` there).
        /// The plugin library links no copy of Keel: `keel` provides Keel's code when it loads the library, so
        /// the plugin's types are the ones keel checks. Only the tests link Keel's shared plugin API library.
        let keel = \(keelCheckout.debugDescription)
        let keelBuild = \(keelBuild.debugDescription)

        /// Keel's Swift modules, and the folders of the module maps of the C libraries they import. Serialized
        /// into this package's modules, so that the test runner SwiftPM generates (which gets no settings of
        /// its own) finds them too.
        let keelModules: [SwiftSetting] = [
            .unsafeFlags(["-Xfrontend", "-serialize-debugging-options", "-I", keelBuild + "/Modules"]
                         + ["COpenBLAS", "CYaml", "CSQLite"].flatMap { ["-I", "\\(keel)/Sources/\\($0)"] }),
        ]

        let package = Package(
            name: "\(module)",
            products: [.library(name: "\(module)", type: .dynamic, targets: ["\(module)"])],
            targets: [
                .target(name: "\(module)", swiftSettings: keelModules),
                .testTarget(name: "\(module)Tests", dependencies: ["\(module)"], swiftSettings: keelModules,
                            linkerSettings: [.unsafeFlags(["-L", keelBuild, "-lKeelPluginAPI", "-Xlinker", "-rpath", "-Xlinker", keelBuild])]),
            ],
            swiftLanguageModes: [.v5]
        )

        """
    }

    var registration: String {
        """
        import KeelCore

        // The two symbols keel looks up when it loads lib\(module).so. The version is compiled in here
        // (PluginLibraryABI.version is inlined), so keel refuses this library if it was built against another
        // plugin API, before calling keel_plugin_register.

        @_cdecl("\(PluginLibraryABI.versionSymbol)")
        public func keelPluginABIVersion() -> Int { PluginLibraryABI.version }

        @_cdecl("\(PluginLibraryABI.registerSymbol)")
        public func keelPluginRegister() -> UnsafeMutableRawPointer {
            PluginLibraryExports([\(example.typeNames.map { $0 + ".self" }.joined(separator: ", "))]).retained()
        }

        """
    }

    var readme: String {
        """
        # \(name)

        A Keel \(kind.rawValue) plugin: \(example.summary).

        ```sh
        swift build -c release                         # .build/release/\(library)
        swift test                                     # the plugin's own test
        keel plugin install .build/release/\(library)  # into var/plugins/ (or copy it there)
        keel plugins \(name)                            # its declaration, as keel sees it
        ```

        Then use it in a recipe by name, like a built-in plugin:

        ```yaml
        \(example.recipeLine)
        ```

        It compiles against the Keel checkout at `\(keelCheckout)` (see `keel` in Package.swift): rebuild
        it after that Keel changes its plugin API (keel refuses a plugin built against another version).

        """
    }

    var example: PluginExample {
        switch kind {
        case .loss: return .loss(name: name, typeName: module + "Loss", module: module)
        case .reward: return .reward(name: name, typeName: module + "Reward", module: module)
        case .data: return .data(name: name, typeName: module + "Filter", module: module)
        case .scheduler: return .scheduler(name: name, typeName: module + "Scheduler", module: module)
        case .signal: return .signal(name: name, typeName: module + "Signal", lossTypeName: module + "Loss", module: module)
        }
    }
}

/// One example plugin per kind, with a test that checks it against its formula.
struct PluginExample {
    let typeName: String
    /// Every plugin type the library registers (the example's own first).
    var typeNames: [String] { [typeName] + companionTypeNames }
    var companionTypeNames: [String] = []
    let summary: String
    let recipeLine: String
    let source: String
    let test: String

    static func loss(name: String, typeName: String, module: String) -> PluginExample {
        PluginExample(
            typeName: typeName, summary: "a hinge loss on DPO's implicit reward margin",
            recipeLine: "loss: {name: \(name), beta: 0.1, margin: 1.0}",
            source: """
            import KeelCore

            /// A hinge loss on DPO's implicit reward margin (SLiC-style; Zhao et al. 2023, arXiv 2305.10425):
            ///
            ///     h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))
            ///     L = mean over pairs of max(0, margin − β·h)
            ///
            /// Metrics: `hinge/active`, the fraction of pairs still short of the margin (the ones that learn),
            /// and `rewards/margins`, the mean of β·h.
            public final class \(typeName): LossPlugin {
                public static let descriptor = PluginDescriptor(
                    name: "\(name)", kind: .loss,
                    summary: "max(0, margin − β·h) on DPO's implicit reward margin h",
                    options: [
                        .double("beta", 0.1, in: .positive, "β: scale of the implicit reward margin"),
                        .double("margin", 1.0, in: .positive, "the scaled margin beyond which a pair stops contributing"),
                    ],
                    capabilities: [.pairwiseLoss], needs: [Signals.policyLogProbs.key, Signals.referenceLogProbs.key],
                    consumes: [.paired], metrics: ["hinge/active", "rewards/margins"])

                let beta: Double
                let margin: Double

                public init(options: ResolvedOptions) throws {
                    beta = options.double("beta") ?? 0.1
                    margin = options.double("margin") ?? 1.0
                }

                public func loss(_ input: LossInput) throws -> LossOutput {
                    let name = Self.descriptor.name
                    let policy = try input[Signals.policyLogProbs].pairs("policy", for: name)
                    let reference = try input[Signals.referenceLogProbs].pairs("reference", for: name)
                    let h = (policy.chosen.logProbs - reference.chosen.logProbs)
                          - (policy.rejected.logProbs - reference.rejected.logProbs)     // [B]
                    let perPair = (Float(margin) - Float(beta) * h).relu()               // [B]
                    let (margins, losses) = (h.toArray(), perPair.toArray())
                    let pairs = Double(margins.count)
                    return LossOutput(loss: perPair.mean(), metrics: [
                        "hinge/active": Double(losses.filter { $0 > 0 }.count) / pairs,
                        "rewards/margins": margins.reduce(0) { $0 + beta * Double($1) } / pairs,
                    ])
                }
            }

            """,
            test: """
            import KeelCore
            import XCTest
            import \(module)

            final class \(module)Tests: XCTestCase {
                /// Two pairs, β = 0.1, margin 1: h = (−10 + 11) − (−12 + 11) = 2 gives 1 − 0.2 = 0.8; h = 0 gives 1.
                /// L = 0.9, and ∂L/∂log π(y_w) = −β/B = −0.05 for each pair (both are inside the margin).
                func testLossMetricsAndGradientFollowTheFormula() throws {
                    let plugin = try \(typeName)(options: ResolvedOptions(defaultsOf: \(typeName).descriptor.options))
                    let chosen = Tensor([-10, -20]), rejected = Tensor([-12, -15])
                    chosen.requiresGrad = true
                    func scores(_ t: Tensor) -> SequenceScores { SequenceScores(logProbs: t, tokenCounts: [3, 3]) }
                    let output = try plugin.loss(LossInput(
                        policy: .paired(chosen: scores(chosen), rejected: scores(rejected)),
                        reference: .paired(chosen: scores(Tensor([-11, -20])), rejected: scores(Tensor([-11, -15])))))
                    XCTAssertEqual(Double(output.loss.item()), 0.9, accuracy: 1e-6)
                    XCTAssertEqual(output.metrics["hinge/active"], 1)
                    XCTAssertEqual(try XCTUnwrap(output.metrics["rewards/margins"]), 0.1, accuracy: 1e-9)
                    output.loss.backward()
                    let gradient = try XCTUnwrap(chosen.grad).toArray()
                    for g in gradient { XCTAssertEqual(Double(g), -0.05, accuracy: 1e-7) }
                }
            }

            """)
    }

    static func reward(name: String, typeName: String, module: String) -> PluginExample {
        PluginExample(
            typeName: typeName, summary: "a reward of 1 that loses `penalty` per word beyond `limit`",
            recipeLine: "reward: {name: \(name), limit: 50, penalty: 0.02}",
            source: """
            import KeelCore

            /// A length-penalised reward: with W the response's number of whitespace-separated words,
            ///
            ///     r = 1 − penalty · max(0, W − limit)
            public final class \(typeName): RewardPlugin {
                public static let descriptor = PluginDescriptor(
                    name: "\(name)", kind: .reward,
                    summary: "1 − penalty · (words beyond limit)",
                    options: [
                        .int("limit", 50, in: .atLeast(0), "words a response may have before it is penalised"),
                        .double("penalty", 0.02, in: .nonNegative, "reward lost per word beyond the limit"),
                    ])

                let limit: Int
                let penalty: Double

                public init(options: ResolvedOptions) throws {
                    limit = options.int("limit") ?? 50
                    penalty = options.double("penalty") ?? 0.02
                }

                public func score(prompt: String, response: String) throws -> Double {
                    let words = response.split(whereSeparator: \\.isWhitespace).count
                    return 1 - penalty * Double(max(0, words - limit))
                }
            }

            """,
            test: """
            import KeelCore
            import XCTest
            import \(module)

            final class \(module)Tests: XCTestCase {
                func testRewardLosesPenaltyPerWordBeyondTheLimit() throws {
                    var specs = \(typeName).descriptor.options
                    specs = specs.map { $0.name == "limit" ? OptionSpec("limit", $0.type, default: .value(.int(3)), help: $0.help) : $0 }
                    let plugin = try \(typeName)(options: ResolvedOptions(defaultsOf: specs))
                    XCTAssertEqual(try plugin.score(prompt: "p", response: "one two three"), 1)
                    XCTAssertEqual(try plugin.score(prompt: "p", response: "one two three four five"), 1 - 2 * 0.02, accuracy: 1e-12)
                }
            }

            """)
    }

    static func data(name: String, typeName: String, module: String) -> PluginExample {
        PluginExample(
            typeName: typeName, summary: "a filter that drops preference pairs whose prompt has fewer than `min_words` words",
            recipeLine: "data: [{name: hh, path: ../shared/data/hh-harmless-1800.jsonl}, {name: \(name), min_words: 3}]",
            source: """
            import KeelCore

            /// Drops preference pairs whose prompt has fewer than `min_words` whitespace-separated words (all
            /// turns' text counted), from both the training and the evaluation examples; counted as `short-prompt`.
            public final class \(typeName): DataPlugin {
                public static let descriptor = PluginDescriptor(
                    name: "\(name)", kind: .data,
                    summary: "drop preference pairs whose prompt has fewer than min_words words",
                    options: [.int("min_words", 3, in: .atLeast(0), "the fewest prompt words a kept pair has")],
                    dataRole: .filter, consumes: [.paired])

                let minWords: Int

                public init(options: ResolvedOptions) throws { minWords = options.int("min_words") ?? 3 }

                public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
                    func keep(_ example: Example) -> Bool {
                        guard case .pair(let pair) = example, Self.words(pair.prompt) < minWords else { return true }
                        report.skipped["short-prompt", default: 0] += 1
                        return false
                    }
                    data.train = data.train.filter(keep)
                    data.eval = data.eval.filter(keep)
                    report.produced = data.train.count
                }

                static func words(_ turns: Turns) -> Int {
                    switch turns {
                    case .text(let text): return text.split(whereSeparator: \\.isWhitespace).count
                    case .messages(let messages): return messages.reduce(0) { $0 + $1.content.split(whereSeparator: \\.isWhitespace).count }
                    }
                }
            }

            """,
            test: """
            import KeelCore
            import XCTest
            import \(module)

            final class \(module)Tests: XCTestCase {
                func testShortPromptsAreDroppedAndCounted() throws {
                    let plugin = try \(typeName)(options: ResolvedOptions(defaultsOf: \(typeName).descriptor.options))
                    func pair(_ id: String, _ prompt: String) -> Example {
                        .pair(PreferencePair(id: id, prompt: .text(prompt), chosen: .text("yes"), rejected: .text("no")))
                    }
                    var data = Dataset(train: [pair("a", "hi"), pair("b", "how are you today")], eval: [pair("c", "ok then")])
                    var report = DataNodeReport(node: "data[1]")
                    try plugin.process(&data, report: &report, context: DataContext(seed: 0, node: "data[1]"))
                    XCTAssertEqual(data.train.map(\\.id), ["b"])
                    XCTAssertEqual(data.eval.map(\\.id), [])
                    XCTAssertEqual(report.skipped, ["short-prompt": 2])
                    XCTAssertEqual(report.produced, 1)
                }
            }

            """)
    }

    static func scheduler(name: String, typeName: String, module: String) -> PluginExample {
        PluginExample(
            typeName: typeName, summary: "a scheduler that multiplies the learning rate by `factor` every `every` steps",
            recipeLine: "schedulers: [{name: \(name), factor: 0.5, every: 100}]   # with optimizer: {schedule: constant}",
            source: """
            import KeelCore

            /// Step decay of the learning rate: after every `every` optimizer steps, lr ← factor · lr.
            /// The number of decays so far is checkpointed state (the trainer checkpoints the learning rate
            /// itself), recorded with the learning rate after each step.
            public final class \(typeName): SchedulerPlugin, Checkpointable {
                public static let descriptor = PluginDescriptor(
                    name: "\(name)", kind: .scheduler,
                    summary: "multiply the learning rate by factor every `every` steps",
                    options: [
                        .double("factor", 0.5, in: .positive, "what the learning rate is multiplied by"),
                        .int("every", 100, in: .atLeast(1), "optimizer steps between two decays"),
                    ],
                    controls: [ControlledValue.learningRate], metrics: ["lr-decay/learning_rate", "lr-decay/decays"],
                    stateKeys: ["decays"])

                let factor: Double
                let every: Int
                public private(set) var decays = 0

                public init(options: ResolvedOptions) throws {
                    factor = options.double("factor") ?? 0.5
                    every = options.int("every") ?? 100
                }

                public func afterOptimizerStep(_ context: TrainingContext) throws {
                    if context.step > 0, context.step % every == 0 {
                        context.learningRate *= factor
                        decays += 1
                    }
                    context.record(metric: "lr-decay/learning_rate", value: context.learningRate)
                    context.record(metric: "lr-decay/decays", value: Double(decays))
                }

                public func saveState() throws -> PluginState {
                    var state = PluginState()
                    try state.set("decays", decays)
                    return state
                }

                public func restoreState(_ state: PluginState) throws { decays = try state.get(Int.self, "decays") }
            }

            """,
            test: """
            import KeelCore
            import XCTest
            import \(module)

            final class \(module)Tests: XCTestCase {
                final class Context: TrainingContext {
                    var step = 0
                    var totalSteps = 10
                    var learningRate = 1.0
                    var hyperparameters: [String: Double] = [:]
                    var recorded: [String: [Double]] = [:]
                    func parameterNames(_ role: ModelRole) -> [String] { [] }
                    func parameter(_ name: String, of role: ModelRole) -> Tensor? { nil }
                    func record(metric: String, value: Double) { recorded[metric, default: []].append(value) }
                }

                /// factor 0.5 every 100 steps: steps 1…250 end at 0.25, having halved at 100 and 200; the decay
                /// count survives a save and restore (what a checkpoint and resume do).
                func testLearningRateHalvesEveryHundredStepsAndTheCountIsCheckpointed() throws {
                    let options = ResolvedOptions(defaultsOf: \(typeName).descriptor.options)
                    let plugin = try \(typeName)(options: options)
                    let context = Context()
                    for step in 1...250 {
                        context.step = step
                        try plugin.afterOptimizerStep(context)
                    }
                    XCTAssertEqual(context.learningRate, 0.25)
                    XCTAssertEqual(context.recorded["lr-decay/learning_rate"]?[98], 1.0)
                    XCTAssertEqual(context.recorded["lr-decay/learning_rate"]?[99], 0.5)
                    XCTAssertEqual(context.recorded["lr-decay/decays"]?.last, 2)
                    let resumed = try \(typeName)(options: options)
                    try resumed.restoreState(plugin.saveState())
                    XCTAssertEqual(resumed.decays, 2)
                }
            }

            """)
    }

    static func signal(name: String, typeName: String, lossTypeName: String, module: String) -> PluginExample {
        PluginExample(
            typeName: typeName, companionTypeNames: [lossTypeName],
            summary: "a signal, the policy's mean per-token entropy of each completion (differentiable), and a loss `\(name)-bonus` that needs it",
            recipeLine: "loss:\n  - {name: dpo, beta: 0.1}\n  - {name: \(name)-bonus, weight: 0.01}",
            source: """
            import KeelCore

            /// A signal: the policy's mean per-token entropy over each completion,
            ///
            ///     H(x, y) = −(1/|y|) · Σ_t Σ_v πθ(v | x, y_<t) · log πθ(v | x, y_<t)
            ///
            /// [B] for the chosen and for the rejected completions, differentiable through the policy (its own
            /// forward pass: the final hidden states at the completion positions, the LM head, a log-softmax).
            public final class \(typeName): SignalProvider {
                public static let entropy = Signal<PairedTensors>("\(name)")

                public static let descriptor = PluginDescriptor(
                    name: "\(name)", kind: .signal, summary: "the policy's mean per-token entropy of each completion",
                    provides: [ProvidedSignal(entropy.key, requires: [.policy, .separateRows], "H(x, y) of the chosen and the rejected completion, [B] each")])

                public init(options: ResolvedOptions) throws {}

                public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
                    let sequences = batch.sequences.separateRows
                    guard let head = run.policy.parameters[LlamaTensorName.lmHead] ?? run.policy.parameters[LlamaTensorName.embedTokens] else {
                        throw PluginInputError("\\(Self.descriptor.name): the policy has no LM head")
                    }
                    // The positions that predict a completion token, and the row each belongs to.
                    let positions = sequences.targets.indices.filter { sequences.targets[$0] != ignoreIndex }
                    let logp = run.policy.hiddenStates(sequences, rows: positions).matmul(head, transposeB: true).logSoftmax()   // [M, V]
                    let perToken = -(logp.exp() * logp).sum(axes: [1])                                                          // [M]
                    // Row means as one product: A[r, m] = 1/|y_r| where position m belongs to row r.
                    var average = [Float](repeating: 0, count: sequences.rows * positions.count)
                    for (m, position) in positions.enumerated() {
                        let row = position / sequences.length
                        average[row * positions.count + m] = 1 / Float(max(sequences.completionCounts[row], 1))
                    }
                    let means = Tensor(shape: [sequences.rows, positions.count], data: average)
                        .matmul(perToken.reshaped([positions.count, 1])).reshaped([sequences.rows])
                    let pairs = batch.pairs.count
                    values.set(Self.entropy, PairedTensors(chosen: means.rows(0..<pairs), rejected: means.rows(pairs..<2 * pairs)))
                }
            }

            /// A loss that needs the signal: −mean H(x, y_w), an entropy bonus on the chosen completions (add it to
            /// a preference loss with a small weight). Metrics: the mean entropies of both completions.
            public final class \(lossTypeName): LossPlugin {
                public static let descriptor = PluginDescriptor(
                    name: "\(name)-bonus", kind: .loss, summary: "−mean entropy of the chosen completions under the policy",
                    needs: [\(typeName).entropy.key], consumes: [.paired],
                    metrics: ["entropy/chosen", "entropy/rejected"])

                public init(options: ResolvedOptions) throws {}

                public func loss(_ input: LossInput) throws -> LossOutput {
                    let entropy = try input[\(typeName).entropy]
                    return LossOutput(loss: -entropy.chosen.mean(), metrics: [
                        "entropy/chosen": Double(entropy.chosen.mean().item()),
                        "entropy/rejected": Double(entropy.rejected.mean().item()),
                    ])
                }
            }

            """,
            test: """
            import Foundation
            import KeelCore
            import XCTest
            import \(module)

            final class \(module)Tests: XCTestCase {
                /// On a tiny random model: the signal equals the entropy computed from the model's logits in Double,
                /// and the bonus loss's gradient reaches the policy's parameters.
                func testEntropyMatchesTheLogitsAndIsDifferentiable() throws {
                    let config = LlamaConfig(layers: 1, hidden: 16, heads: 2, kvHeads: 1, headDim: 8, intermediate: 32, vocab: 32,
                                             rmsEps: 1e-5, ropeTheta: 10_000, maxPositions: 16, tiedEmbeddings: true)
                    let policy = try LlamaModel(randomWithConfig: config, seed: 3)
                    let pairs = [TokenizedPair(id: "a", prompt: [1, 2], chosen: [3, 4, 5], rejected: [6]),
                                 TokenizedPair(id: "b", prompt: [7], chosen: [8], rejected: [9, 10])]
                    let run = SignalRun(policy: policy, pairs: pairs)
                    let batch = SignalBatch(split: .train, indices: [0, 1], pairs: pairs, sequences: PairBatch(pairs, padID: 0, sharesPrompt: false))
                    var values = SignalValues()
                    let signal = try \(typeName)(options: ResolvedOptions(defaultsOf: []))
                    try signal.compute([\(typeName).entropy.key], for: batch, in: run, into: &values)
                    let entropy = try values[\(typeName).entropy]

                    let sequences = batch.sequences.separateRows
                    let logits = policy.logits(sequences).toArray()
                    var expected = [Double](repeating: 0, count: sequences.rows)
                    for position in 0..<sequences.rows * sequences.length where sequences.targets[position] != ignoreIndex {
                        let row = logits[position * config.vocab..<(position + 1) * config.vocab].map(Double.init)
                        let top = row.max()!, z = row.map { exp($0 - top) }.reduce(0, +)
                        let h = -row.map { ($0 - top) - log(z) }.map { exp($0) * $0 }.reduce(0, +)
                        expected[position / sequences.length] += h / Double(sequences.completionCounts[position / sequences.length])
                    }
                    let got = (entropy.chosen.toArray() + entropy.rejected.toArray()).map(Double.init)
                    for (g, e) in zip(got, expected) { XCTAssertEqual(g, e, accuracy: 1e-4) }

                    let output = try \(lossTypeName)(options: ResolvedOptions(defaultsOf: [])).loss(LossInput(values))
                    output.loss.backward()
                    let gradient = try XCTUnwrap(policy.parameters[LlamaTensorName.embedTokens]?.grad).toArray()
                    XCTAssertGreaterThan(gradient.map { abs($0) }.max() ?? 0, 0)
                }
            }

            """)
    }
}
