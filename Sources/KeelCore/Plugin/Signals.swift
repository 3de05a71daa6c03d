import Foundation

/// The name of a quantity computed for each batch: a loss declares the keys it reads in its descriptor's
/// `needs`, a signal provider (kind `signal`) declares the keys it computes in `provides`, and the plugin
/// graph gives every needed key exactly one provider (docs/plugins.md, "Signals").
public struct SignalKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let name: String

    public init(_ name: String) { self.name = name }

    public var description: String { name }

    public static func < (lhs: SignalKey, rhs: SignalKey) -> Bool { lhs.name < rhs.name }
}

/// A signal key with the Swift type of its value, so that reading one is typed:
/// `try input[Signals.policyLogProbs]` is a `LossBatch`.
public struct Signal<Value>: Sendable {
    public let key: SignalKey

    public init(_ name: String) { key = SignalKey(name) }
}

/// Chosen and rejected halves of a per-pair quantity, rows aligned with the pairs of the batch: [B] (one
/// value per completion) or [B, …].
public struct PairedTensors {
    public var chosen: Tensor
    public var rejected: Tensor

    public init(chosen: Tensor, rejected: Tensor) {
        self.chosen = chosen
        self.rejected = rejected
    }
}

/// The signals Keel's own providers compute (`keel plugins` lists each provider with its keys).
public enum Signals {
    /// The policy's summed completion log-probs and completion token counts per sequence, differentiable.
    public static let policyLogProbs = Signal<LossBatch>("policy-logprobs")
    /// The same under the reference model, without gradients; computed once before training and reused
    /// when `reference.cache_logprobs` is set and no scheduler changes the reference.
    public static let referenceLogProbs = Signal<LossBatch>("reference-logprobs")
    /// The recipe's reward (one plugin or the weighted sum of its `reward:` list) of each completion.
    public static let rewards = Signal<RewardScores>("rewards")
    /// The policy's final hidden state (after the last norm) at each sequence's last token, [2B, C]: rows
    /// 0..<B the chosen completions, B..<2B the rejected ones; differentiable.
    public static let lastHiddenStates = Signal<Tensor>("last-hidden-states")
    /// A fixed vector q [V] over the vocabulary whose expectation under the policy `policy-expectations`
    /// computes; the same for every batch.
    public static let expectationVector = Signal<[Float]>("expectation-vector")
    /// Per completion, the mean over its tokens of the expectation of q (`expectation-vector`) under the
    /// policy's next-token distribution, (1/|y|)·Σ_t Σ_v πθ(v | x, y_<t)·q(v), [B] each; differentiable.
    public static let policyExpectations = Signal<PairedTensors>("policy-expectations")
}

/// The values computed for one batch, by key: what a loss reads (`LossInput`) and providers add to.
public struct SignalValues {
    private var values: [SignalKey: Any] = [:]

    public init() {}

    /// The keys that have a value, sorted.
    public var keys: [SignalKey] { values.keys.sorted() }

    public mutating func set<Value>(_ signal: Signal<Value>, _ value: Value) { values[signal.key] = value }

    /// The value of `signal`; a key without a value (no plugin of the recipe declared it in `needs`) or of
    /// another type is refused, naming the key.
    public subscript<Value>(_ signal: Signal<Value>) -> Value {
        get throws {
            guard let stored = values[signal.key] else {
                let present = keys.isEmpty ? "none" : keys.map(\.name).joined(separator: ", ")
                throw PluginInputError("the batch has no signal `\(signal.key)` (it has: \(present)); expected the plugin that reads it to declare it in `needs`")
            }
            guard let value = stored as? Value else {
                throw PluginInputError("signal `\(signal.key)` holds a \(type(of: stored)); expected a \(Value.self)")
            }
            return value
        }
    }
}

/// What a signal provider computes from besides the batch's token ids; the graph checks each need's
/// provider against the recipe.
public struct SignalRequirements: OptionSet, Hashable, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// A forward pass of the policy (differentiable).
    public static let policy = SignalRequirements(rawValue: 1 << 0)
    /// The reference model: Keel loads it for the run (or caches its log-probs, see `Signals.referenceLogProbs`).
    public static let reference = SignalRequirements(rawValue: 1 << 1)
    /// The recipe's reward plugins (`reward:`).
    public static let rewardScorer = SignalRequirements(rawValue: 1 << 2)
    /// The batch as separate rows (chosen 0..<B, rejected B..<2B) rather than one row per pair with its
    /// prompt computed once: for quantities read per sequence position.
    public static let separateRows = SignalRequirements(rawValue: 1 << 3)

    static let names: [(SignalRequirements, String)] = [
        (.policy, "policy"), (.reference, "reference"), (.rewardScorer, "reward-scorer"), (.separateRows, "separate-rows"),
    ]

    public var names: [String] { Self.names.filter { contains($0.0) }.map(\.1) }
}

/// One signal a provider computes, and what computing it takes.
public struct ProvidedSignal: Sendable {
    public let key: SignalKey
    /// Signals this one is computed from; their providers run first.
    public let needs: [SignalKey]
    public let requires: SignalRequirements
    /// One line, shown by `keel plugins`.
    public let summary: String

    public init(_ key: SignalKey, needs: [SignalKey] = [], requires: SignalRequirements = [], _ summary: String) {
        self.key = key
        self.needs = needs
        self.requires = requires
        self.summary = summary
    }
}

/// A plugin of kind `signal`: computes, for each batch, the keys of its descriptor's `provides` that the
/// recipe's losses need. The graph chooses providers (a recipe does not list them); each is created with
/// its options' defaults. A provider may keep checkpointable state (`Checkpointable`, `stateKeys`) and
/// trainable parameters (`SignalRun.addTrainable`: optimised, checkpointed and exported with the policy).
public protocol SignalProvider: KeelPlugin {
    /// Once per run, before the first batch: run-wide statistics, caches, trainable parameters.
    func prepare(_ run: SignalRun) throws
    /// Adds the values of `keys` (those of its `provides` the run needs) for `batch` to `values`, which
    /// already holds every signal these keys need.
    func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws
    /// Writes the run's final model to `directory` when this provider's trainable parameters change what
    /// the model is (e.g. a reward model's head), and says so; false (the default) leaves the export to the
    /// trainer, a causal LM. `parameters`: the parameters providers added, by name, as trained.
    func exportModel(_ policy: LlamaModel, parameters: [String: Tensor], to directory: URL) throws -> Bool
}

extension SignalProvider {
    public func prepare(_ run: SignalRun) throws {}

    public func exportModel(_ policy: LlamaModel, parameters: [String: Tensor], to directory: URL) throws -> Bool { false }
}

/// One micro-batch as signal providers see it.
public struct SignalBatch {
    /// The split the pairs come from (`SignalRun.trainPairs` or `evalPairs`).
    public let split: MetricSplit
    /// Positions of the pairs in their split.
    public let indices: [Int]
    public let pairs: [TokenizedPair]
    /// The pairs as model input: one row per pair with a shared prompt, or separate rows when a provider
    /// of the run requires `.separateRows`.
    public let sequences: PairBatch

    public init(split: MetricSplit, indices: [Int], pairs: [TokenizedPair], sequences: PairBatch) {
        self.split = split
        self.indices = indices
        self.pairs = pairs
        self.sequences = sequences
    }
}

/// The run as signal providers see it: the models, the data, the recipe's reward and the trainable
/// parameters providers add.
public final class SignalRun {
    public let policy: LlamaModel
    /// The reference model while it is loaded (nil when no provider requires it, or after its log-probs
    /// were cached and `releaseReference` called).
    public private(set) var reference: LlamaModel?
    /// The recipe's reward (`reward:`), nil without one.
    public let rewards: (any RewardScorer)?
    /// `training.seed`. Sub-streams 1, 2 and 16 are the data plugins' and the trainer's; providers split
    /// off streams from 17 on.
    public let seed: UInt64
    /// `training.batch_size`: batches of that size give the same sums before training as during it.
    public let batchSize: Int
    public let padID: Int
    /// Whether pairs share their prompt's forward pass (`training.share_prompt`) when no provider asks
    /// for separate rows.
    public let sharesPrompt: Bool
    /// Whether reference log-probs may be computed once: the recipe asks (`reference.cache_logprobs`)
    /// and no scheduler changes the reference.
    public let cachesReference: Bool
    /// The training pairs as tokenised, before token-level transforms and truncation (run-wide statistics
    /// of the whole training set).
    public let tokenizedTrainingPairs: [TokenizedPair]
    public let trainPairs: [TokenizedPair]
    public let evalPairs: [TokenizedPair]
    /// Parameters providers added, in order; the optimizer updates them after the policy's.
    public private(set) var trainable: [(name: String, tensor: Tensor)] = []
    let log: (String) -> Void
    private let texts: (TokenizedPair) throws -> (prompt: String, chosen: String, rejected: String)

    init(policy: LlamaModel, reference: LlamaModel?, rewards: (any RewardScorer)?, seed: UInt64, batchSize: Int, padID: Int,
         sharesPrompt: Bool, cachesReference: Bool, tokenizedTrainingPairs: [TokenizedPair], trainPairs: [TokenizedPair],
         evalPairs: [TokenizedPair], log: @escaping (String) -> Void,
         texts: @escaping (TokenizedPair) throws -> (prompt: String, chosen: String, rejected: String)) {
        (self.policy, self.reference, self.rewards, self.seed, self.batchSize, self.padID) = (policy, reference, rewards, seed, batchSize, padID)
        (self.sharesPrompt, self.cachesReference, self.tokenizedTrainingPairs) = (sharesPrompt, cachesReference, tokenizedTrainingPairs)
        (self.trainPairs, self.evalPairs, self.log, self.texts) = (trainPairs, evalPairs, log, texts)
    }

    /// A run of `pairs` (its training split) with only a policy: no reference, no reward, seed 0, batches
    /// of every pair. For a provider's own tests.
    public convenience init(policy: LlamaModel, pairs: [TokenizedPair]) {
        self.init(policy: policy, reference: nil, rewards: nil, seed: 0, batchSize: max(1, pairs.count), padID: policy.config.padTokenId ?? 0,
                  sharesPrompt: false, cachesReference: false, tokenizedTrainingPairs: pairs, trainPairs: pairs, evalPairs: [],
                  log: { _ in }, texts: { pair in throw PluginInputError("pair \(pair.id): this run has no source texts") })
    }

    /// The pairs of a split.
    public func pairs(_ split: MetricSplit) -> [TokenizedPair] { split == .train ? trainPairs : evalPairs }

    /// The source texts of a pair (its prompt as the reward plugins see it, and both completions).
    public func texts(of pair: TokenizedPair) throws -> (prompt: String, chosen: String, rejected: String) { try texts(pair) }

    /// Adds a trainable parameter under a name no other parameter has (it goes into checkpoints under it).
    public func addTrainable(_ name: String, _ tensor: Tensor) throws {
        guard policy.parameters[name] == nil, !trainable.contains(where: { $0.name == name }) else {
            throw PluginInputError("a signal provider adds the trainable parameter '\(name)', which exists already; expected a new name")
        }
        trainable.append((name, tensor))
    }

    /// Frees the reference model once nothing reads it any more (its log-probs are cached).
    public func releaseReference() { reference = nil }

    /// A line for the run's log.
    public func note(_ line: String) { log(line) }
}
