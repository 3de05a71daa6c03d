import Foundation

/// What every plugin type provides: its static descriptor and an initialiser from decoded options.
/// Plugins are classes: a plugin instance lives for the whole run and may carry checkpointable state.
public protocol KeelPlugin: AnyObject {
    static var descriptor: PluginDescriptor { get }
    init(options: ResolvedOptions) throws
    /// Checks that involve several options at once (e.g. "set eval_fraction or eval_count, not both");
    /// each problem names the option it is about (nil: the node as a whole). Runs before any work.
    static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem]
}

extension KeelPlugin {
    public static func checkOptions(_ options: ResolvedOptions) -> [OptionProblem] { [] }
}

public struct OptionProblem: Equatable, Sendable {
    public let option: String?
    public let message: String

    public init(option: String?, _ message: String) {
        self.option = option
        self.message = message
    }
}

/// State a plugin saves in checkpoints and restores on resume, under the keys its descriptor declares.
public protocol Checkpointable: AnyObject {
    func saveState() throws -> PluginState
    func restoreState(_ state: PluginState) throws
}

/// A plugin's checkpointable state: named float arrays (tensors, running statistics) and named Codable
/// values (stored as JSON), so the store can write it without knowing the plugin.
public struct PluginState: Codable, Equatable, Sendable {
    public var floats: [String: [Float]] = [:]
    public var values: [String: Data] = [:]

    public init() {}

    /// Keys sorted, so the same state gives the same bytes in every process (checkpoints of an
    /// interrupted and an uninterrupted run compare equal file by file).
    public mutating func set<T: Encodable>(_ key: String, _ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        values[key] = try encoder.encode(value)
    }

    public func get<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
        guard let data = values[key] else { throw PluginStateError(message: "checkpoint state has no key '\(key)'") }
        return try JSONDecoder().decode(T.self, from: data)
    }
}

public struct PluginStateError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Input a plugin cannot use (a batch, a model's parameters), named by role, row or parameter.
public struct PluginInputError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: Data

/// Examples in flight through the pipeline, and what each node did to them.
public struct Dataset {
    public var train: [Example] = []
    public var eval: [Example] = []
    public var report: [DataNodeReport] = []

    public init(train: [Example] = [], eval: [Example] = []) {
        self.train = train
        self.eval = eval
    }
}

/// What one data node did: how many examples it produced, skipped (by cause), flagged (by flag).
public struct DataNodeReport: Equatable, Sendable {
    public var node: String
    public var produced = 0
    public var skipped: [String: Int] = [:]
    public var flagged: [String: Int] = [:]
    /// Summary statistics of what the node did (names from its descriptor's `metrics`).
    public var metrics: [String: Double] = [:]
    /// Per-example scores of a filter that ranks examples (a model-scored filter), in input order; empty otherwise.
    public var exampleScores: [ExampleScore] = []

    public init(node: String) { self.node = node }
}

/// Run-wide inputs of the data pipeline.
public struct DataContext: Sendable {
    /// `training.seed`; data plugins without their own seed derive theirs from it.
    public var seed: UInt64
    /// The node's key path in the recipe (`data[2]`), for reports.
    public var node: String

    public init(seed: UInt64, node: String) {
        self.seed = seed
        self.node = node
    }
}

/// Loads (source), rewrites (transform) or drops (filter) examples, in recipe order.
public protocol DataPlugin: KeelPlugin {
    /// Sources append to `data.train`; transforms and filters rewrite `train` and `eval`.
    /// Reports go to `report` (the pipeline appends it to `data.report`).
    func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws
}

/// A preference pair after tokenisation: token ids of the prompt and of each completion. The completions
/// include the EOS token the trainer appends, so the policy and the reference score exactly these ids.
public struct TokenizedPair: Equatable, Sendable {
    /// The example's id (`file:line`), for reports.
    public var id: String
    public var prompt: [Int]
    public var chosen: [Int]
    public var rejected: [Int]

    public init(id: String, prompt: [Int], chosen: [Int], rejected: [Int]) {
        self.id = id
        self.prompt = prompt
        self.chosen = chosen
        self.rejected = rejected
    }
}

/// A data transform that works on token ids rather than text (e.g. equal-length truncation of a pair, which
/// counts completion tokens). Text-level `process` passes the examples through unchanged, so `keel plan
/// --data` shows the node with its input count.
///
/// Trainer contract: after tokenising the paired examples (prompt, completions + EOS), call
/// `PluginInstances.transformTokenized` once on the training pairs and once on the evaluation pairs, before
/// any log-prob (policy or reference, cached or not) is computed, and keep its reports beside the data
/// reports. It calls `transform` of each such node in recipe order; pairs a transform removes are counted
/// in `report.skipped` by cause.
public protocol TokenizedPairTransform: DataPlugin {
    func transform(_ pairs: inout [TokenizedPair], report: inout DataNodeReport) throws
}

extension TokenizedPairTransform {
    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        report.produced = data.train.count
    }
}

// MARK: Reward

/// Scores responses: one reward plugin, or the recipe's weighted sum of several (`RewardSum`), which is
/// what data plugins and the trainer are handed.
public protocol RewardScorer: AnyObject {
    func score(prompt: String, response: String) throws -> Double
    func scorePair(prompt: String, chosen: String, rejected: String) throws -> (chosen: Double, rejected: Double)
}

/// A reward plugin. A pairwise-only reward (capability `.pairwiseReward`) implements `scorePair` and may
/// refuse `score`; others get `scorePair` for free.
public protocol RewardPlugin: KeelPlugin, RewardScorer {}

extension RewardScorer {
    public func scorePair(prompt: String, chosen: String, rejected: String) throws -> (chosen: Double, rejected: Double) {
        (try score(prompt: prompt, response: chosen), try score(prompt: prompt, response: rejected))
    }
}

/// A reward that scores many responses in one go (e.g. one forward pass of a model); `score` and
/// `scorePair` are that call on one or two responses.
public protocol BatchedRewardPlugin: RewardPlugin {
    /// One reward per item, in order.
    func scores(_ items: [(prompt: String, response: String)]) throws -> [Double]
}

extension BatchedRewardPlugin {
    public func score(prompt: String, response: String) throws -> Double {
        try scores([(prompt, response)])[0]
    }

    public func scorePair(prompt: String, chosen: String, rejected: String) throws -> (chosen: Double, rejected: Double) {
        let values = try scores([(prompt, chosen), (prompt, rejected)])
        return (values[0], values[1])
    }
}

// MARK: Loss

/// Per-sequence scores of a batch of B sequences under one model.
public struct SequenceScores {
    /// [B]: Σ over completion tokens of log π(token | prefix). Part of the autodiff graph for the policy.
    public var logProbs: Tensor
    /// [B]: completion tokens per sequence (length normalisation, e.g. 1/|y|).
    public var tokenCounts: [Int]

    public init(logProbs: Tensor, tokenCounts: [Int]) {
        self.logProbs = logProbs
        self.tokenCounts = tokenCounts
    }
}

/// A model's sequence scores of a batch of preference pairs: row i of `chosen` and of `rejected` belong
/// to pair i (the batches the data pipeline produces today; other shapes come as signals of their own).
public struct LossBatch {
    public var chosen: SequenceScores
    public var rejected: SequenceScores

    public static func paired(chosen: SequenceScores, rejected: SequenceScores) -> LossBatch {
        LossBatch(chosen: chosen, rejected: rejected)
    }
}

/// The recipe's reward of each pair's completions, rows aligned with `LossBatch` rows.
public struct RewardScores {
    public var chosen: [Double]
    public var rejected: [Double]

    public static func paired(chosen: [Double], rejected: [Double]) -> RewardScores {
        RewardScores(chosen: chosen, rejected: rejected)
    }
}

/// What a loss reads: the signals its descriptor `needs` (one keyed store, filled by their providers for
/// each batch) and the current values of scheduled hyper-parameters.
public struct LossInput {
    public var signals: SignalValues
    /// Current values of scheduled hyper-parameters (e.g. `beta`), set by schedulers.
    public var hyperparameters: [String: Double]

    public init(_ signals: SignalValues = SignalValues(), hyperparameters: [String: Double] = [:]) {
        self.signals = signals
        self.hyperparameters = hyperparameters
    }

    /// A DPO-shaped input: the policy's (and the reference's) sequence log-probs.
    public init(policy: LossBatch, reference: LossBatch? = nil, hyperparameters: [String: Double] = [:]) {
        self.init(hyperparameters: hyperparameters)
        signals.set(Signals.policyLogProbs, policy)
        if let reference { signals.set(Signals.referenceLogProbs, reference) }
    }

    /// The value of a signal; refused, naming the key, when the batch does not have it.
    public subscript<Value>(_ signal: Signal<Value>) -> Value {
        get throws { try signals[signal] }
    }

    /// This input with one more signal.
    public func with<Value>(_ signal: Signal<Value>, _ value: Value) -> LossInput {
        var copy = self
        copy.signals.set(signal, value)
        return copy
    }
}

public struct LossOutput {
    /// A scalar (shape []), differentiable with respect to the policy.
    public var loss: Tensor
    /// Named metrics, keys from the descriptor's `metrics`.
    public var metrics: [String: Double]

    public init(loss: Tensor, metrics: [String: Double]) {
        self.loss = loss
        self.metrics = metrics
    }
}

public protocol LossPlugin: KeelPlugin {
    func loss(_ input: LossInput) throws -> LossOutput
}

// MARK: Scheduler

/// Which copy of the model a parameter belongs to.
public enum ModelRole: String, Sendable {
    case policy
    case reference
}

/// The trainer as schedulers see it between optimizer steps (`Trainer` implements it).
public protocol TrainingContext: AnyObject {
    /// Optimizer steps completed so far.
    var step: Int { get }
    /// Total optimizer steps of the run (known once the data is loaded).
    var totalSteps: Int { get }
    var learningRate: Double { get set }
    /// Scheduled hyper-parameters that losses read from `LossInput.hyperparameters` (e.g. `beta`).
    var hyperparameters: [String: Double] { get set }
    /// Names of the parameters of a model, in a stable order (GGUF tensor names).
    func parameterNames(_ role: ModelRole) -> [String]
    /// A named parameter; its storage may be written in place (e.g. reference ← α·policy + (1-α)·reference).
    /// nil when the model (typically the reference) is not loaded.
    func parameter(_ name: String, of role: ModelRole) -> Tensor?
    /// Records a metric for the current step (names from the descriptor's `metrics`).
    func record(metric: String, value: Double)
}

public protocol SchedulerPlugin: KeelPlugin {
    /// Called after each optimizer step, before the next batch.
    func afterOptimizerStep(_ context: TrainingContext) throws
}
