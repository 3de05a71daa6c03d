/// The roles a plugin can play in a training run (signal providers are chosen by the graph, not the recipe).
public enum PluginKind: String, CaseIterable, Codable, Sendable {
    /// Loads, transforms or filters examples (`data:` list).
    case data
    /// Scores a response to a prompt, or a pair of responses (`reward:`).
    case reward
    /// Turns policy (and reference, reward) scores of a batch into a scalar loss (`loss:`).
    case loss
    /// Acts between optimizer steps: learning rate, reference sync, β schedules (`schedulers:`).
    case scheduler
    /// Computes signals (per-batch quantities such as log-probs or rewards) that losses need; chosen by
    /// the plugin graph, not listed in recipes.
    case signal
}

/// The shape of the examples flowing through the data pipeline into the loss.
public enum DataShape: String, CaseIterable, Codable, Sendable {
    /// prompt + chosen + rejected (DPO-style preference pairs).
    case paired
    /// prompt + one completion + a label or score (unpaired feedback).
    case unpaired
    /// prompt + one target completion (supervised fine-tuning).
    case sft
}

/// Role of a data plugin within the pipeline.
public enum DataRole: String, Codable, Sendable {
    /// Produces examples from somewhere (a file); sources come first in `data:`.
    case source
    /// Rewrites, reorders or splits examples.
    case transform
    /// Drops examples.
    case filter
    /// Moves part of the training examples to the evaluation set (at most one per recipe).
    case split
}

/// Static facts a plugin declares about itself, checked by the graph builder before any work starts.
public struct Capabilities: OptionSet, Hashable, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Explicitly uses no reference model (a reference-free loss); the reference is then never loaded.
    public static let referenceFree = Capabilities(rawValue: 1 << 1)
    /// A data node that scores examples with the recipe's `reward:` plugin (e.g. generate-pairs).
    public static let scoresWithReward = Capabilities(rawValue: 1 << 2)
    /// Changes the reference model's weights during training (e.g. TR-DPO's periodic sync).
    public static let mutatesReference = Capabilities(rawValue: 1 << 3)
    /// A loss that compares chosen against rejected within each pair (DPO, IPO, …).
    public static let pairwiseLoss = Capabilities(rawValue: 1 << 5)
    /// A data transform whose output only makes sense to a pairwise loss (e.g. pair-level truncation).
    public static let requiresPairwiseLoss = Capabilities(rawValue: 1 << 6)
    /// A reward plugin that can only compare two responses, not score one.
    public static let pairwiseReward = Capabilities(rawValue: 1 << 7)
    /// A loss that divides by completion length (e.g. 1/|y|): the graph requires a data node
    /// that drops pairs flagged with an empty completion (`drop-flagged`), so they are counted before
    /// training instead of turning into NaN during it.
    public static let requiresNonEmptyCompletions = Capabilities(rawValue: 1 << 8)

    static let names: [(Capabilities, String)] = [
        (.referenceFree, "reference-free"), (.scoresWithReward, "scores-with-reward"), (.mutatesReference, "mutates-reference"),
        (.pairwiseLoss, "pairwise-loss"), (.requiresPairwiseLoss, "requires-pairwise-loss"),
        (.pairwiseReward, "pairwise-reward"), (.requiresNonEmptyCompletions, "requires-non-empty-completions"),
    ]

    public var names: [String] { Self.names.filter { contains($0.0) }.map(\.1) }
}

/// Everything Keel knows about a plugin without running it: what `keel plugins` prints, what the recipe
/// decoder checks options against, and what the graph builder reasons about. Declared once, as a static
/// property of the plugin type (torchtune-style), and never written twice.
public struct PluginDescriptor: Sendable {
    public let name: String
    public let kind: PluginKind
    /// One line, shown in listings.
    public let summary: String
    public let options: [OptionSpec]
    public let capabilities: Capabilities
    /// Signals a loss reads from `LossInput` (e.g. `Signals.policyLogProbs`); each gets one provider.
    public let needs: [SignalKey]
    /// Signal providers: the keys they compute, each with what it needs and requires.
    public let provides: [ProvidedSignal]
    /// Data plugins: source, transform or filter. nil for other kinds.
    public let dataRole: DataRole?
    /// Shapes this plugin accepts as input (data transforms and filters, losses, rewards); empty = any.
    public let consumes: Set<DataShape>
    /// Shape a data source produces, or a transform converts to; nil = passes its input shape through.
    public let produces: DataShape?
    /// Named hyper-parameters a scheduler sets (e.g. `learning_rate`, `beta`); two schedulers may not
    /// set the same one.
    public let controls: [String]
    /// Metric names this plugin emits (losses and schedulers; data transforms in `DataNodeReport.metrics`),
    /// e.g. `rewards/margins`.
    public let metrics: [String]
    /// Keys of the plugin's checkpointable state (see `Checkpointable`).
    public let stateKeys: [String]

    public init(name: String, kind: PluginKind, summary: String, options: [OptionSpec] = [],
                capabilities: Capabilities = [], needs: [SignalKey] = [], provides: [ProvidedSignal] = [],
                dataRole: DataRole? = nil, consumes: Set<DataShape> = [], produces: DataShape? = nil, controls: [String] = [], metrics: [String] = [], stateKeys: [String] = []) {
        self.name = name
        self.kind = kind
        self.summary = summary
        self.options = options
        self.capabilities = capabilities
        self.needs = needs
        self.provides = provides
        self.dataRole = dataRole
        self.consumes = consumes
        self.produces = produces
        self.controls = controls
        self.metrics = metrics
        self.stateKeys = stateKeys
    }

    public func accepts(_ shape: DataShape) -> Bool { consumes.isEmpty || consumes.contains(shape) }
}
