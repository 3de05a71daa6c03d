/// A recipe whose nodes fit together, with the facts the trainer needs (data shape, whether a reference
/// model must be loaded). `build` refuses, before any work starts, every combination of nodes that
/// cannot run; each refusal names the two nodes that conflict and why.
public struct PluginGraph {
    public let recipe: Recipe
    /// Shape of the examples that reach the loss.
    public let dataShape: DataShape
    /// The node that makes Keel load a reference model; nil: the reference is never loaded.
    public let referenceNeededBy: PluginNode?
    /// The `split` node, if the recipe evaluates.
    public let split: PluginNode?
    /// The providers of the signals the losses need, in the order they compute (a provider after those of
    /// the signals its keys need).
    public let signalProviders: [SignalProviderNode]

    public var needsReference: Bool { referenceNeededBy != nil }

    static func build(_ recipe: Recipe, registry: PluginRegistry) throws -> PluginGraph {
        var refusals: [RecipeDiagnostic] = []
        func refuse(_ mark: Mark, _ keyPath: String, _ message: String) {
            refusals.append(RecipeDiagnostic(file: recipe.file, mark: mark, keyPath: keyPath, message: message))
        }
        func refuse(_ node: PluginNode, _ message: String) { refuse(node.mark, node.keyPath, message) }
        func line(_ options: ResolvedOptions, _ name: String) -> Mark? {
            if case .recipe(let mark)? = options.origin(of: name) { return mark }
            return nil
        }

        // Data: sources first, all of one shape; each later node accepts what reaches it; one split at most.
        var shape: DataShape?, shapeSetter: PluginNode?, firstNonSource: PluginNode?, split: PluginNode?
        for node in recipe.data {
            let d = node.descriptor
            if d.capabilities.contains(.scoresWithReward), recipe.reward.isEmpty {
                refuse(node, "'\(node.name)' scores examples with the reward plugin, but the recipe has none; expected a `reward:` node")
            }
            if d.dataRole == .source {
                if let earlier = firstNonSource {
                    refuse(node, "source '\(node.name)' comes after the \(earlier.descriptor.dataRole?.rawValue ?? "") \(earlier.label); expected all sources first")
                }
                if let shape, let setter = shapeSetter, let produced = d.produces, produced != shape {
                    refuse(node, "'\(node.name)' produces \(produced.rawValue) examples, but \(setter.label) produces \(shape.rawValue); expected one shape from all sources")
                } else if shape == nil {
                    (shape, shapeSetter) = (d.produces, node)
                }
                continue
            }
            if firstNonSource == nil { firstNonSource = node }
            guard let current = shape, let setter = shapeSetter else {
                refuse(node, "'\(node.name)' is a \(d.dataRole?.rawValue ?? "data node") with no source before it; expected the data list to start with a source")
                continue
            }
            if !d.accepts(current) {
                refuse(node, "'\(node.name)' accepts \(shapes(d.consumes)) examples, but \(setter.label) produces \(current.rawValue)")
            }
            if let produced = d.produces { (shape, shapeSetter) = (produced, node) }
            if d.dataRole == .split {
                if let earlier = split { refuse(node, "'\(node.name)' splits again after \(earlier.label); expected at most one split") }
                split = split ?? node
            }
        }

        // Signals: every need of a loss has exactly one provider whose own requirements are met.
        let signals = SignalResolution(recipe: recipe, registry: registry)
        for loss in recipe.loss {
            for key in loss.descriptor.needs {
                for problem in signals.resolve(key, for: loss) { refuse(loss, problem) }
            }
        }

        // Losses: accept the data shape; length-normalised losses get empty
        // completions dropped; pairwise-only transforms get pairwise losses.
        for (i, loss) in recipe.loss.enumerated() {
            let d = loss.descriptor
            if let shape, let setter = shapeSetter, !d.accepts(shape) {
                refuse(loss, "'\(loss.name)' needs \(shapes(d.consumes)) examples, but \(setter.label) produces \(shape.rawValue)")
            }
            if let earlier = recipe.loss[..<i].first(where: { $0.name == loss.name }) {
                refuse(loss, "'\(loss.name)' repeats \(earlier.label); expected each loss once in a weighted sum (their metrics would collide)")
            }
            if d.capabilities.contains(.requiresNonEmptyCompletions) {
                let dropped = recipe.data.reduce(into: ExampleFlags()) { $0.formUnion(DropFlaggedFilter.droppedFlags($1)) }
                let missing = ExampleFlags([.emptyChosen, .emptyRejected]).subtracting(dropped)
                if !missing.isEmpty {
                    refuse(loss, "'\(loss.name)' divides by completion length, but no data node drops pairs flagged \(missing.names.joined(separator: " or ")); expected `- {name: drop-flagged}` in data")
                }
            }
            for node in recipe.data where node.descriptor.capabilities.contains(.requiresPairwiseLoss)
                && !d.capabilities.contains(.pairwiseLoss) {
                refuse(node, "'\(node.name)' only works with a pairwise loss, but \(loss.label) is not pairwise")
            }
        }
        for (i, reward) in recipe.reward.enumerated() {
            if reward.descriptor.capabilities.contains(.pairwiseReward), let shape, shape != .paired, let setter = shapeSetter {
                refuse(reward, "'\(reward.name)' only compares pairs, but \(setter.label) produces \(shape.rawValue) examples")
            }
            if let earlier = recipe.reward[..<i].first(where: { $0.name == reward.name }) {
                refuse(reward, "'\(reward.name)' repeats \(earlier.label); expected each reward once in a weighted sum (their metrics would collide)")
            }
        }

        // Reference: loaded only for a plugin that needs it; a cache cannot follow a reference that changes.
        let referenceUser = signals.referenceUser
        let losses = recipe.loss.map(\.label).joined(separator: ", ")
        let cacheMark = line(recipe.reference, "cache_logprobs")
        for scheduler in recipe.schedulers where scheduler.descriptor.capabilities.contains(.mutatesReference) {
            if recipe.cachesReferenceLogProbs, let cacheMark {
                refuse(scheduler, "'\(scheduler.name)' changes the reference model during training, but reference.cache_logprobs (line \(cacheMark.line)) computes reference log-probs once; expected cache_logprobs: false")
            }
            if referenceUser == nil {
                refuse(scheduler, "'\(scheduler.name)' updates the reference model, but no plugin uses one (\(losses)); expected a loss that needs a reference")
            }
        }
        if referenceUser == nil, !recipe.loss.isEmpty {
            for option in ["cache_logprobs", "path"] {
                guard let mark = line(recipe.reference, option), recipe.reference[option] != .bool(false) else { continue }
                refuse(mark, "reference.\(option)", "configures a reference model, but no plugin needs one (\(losses)); expected no reference section")
            }
        }

        if let mark = line(recipe.output, "reference_dir"), referenceUser == nil || recipe.cachesReferenceLogProbs {
            refuse(mark, "output.reference_dir", referenceUser == nil
                   ? "exports the reference model, but no plugin uses one (\(losses)); expected a loss that needs a reference"
                   : "exports the reference model, but reference.cache_logprobs keeps only its log-probs; expected cache_logprobs: false")
        }

        // Schedulers: one owner per hyper-parameter; a learning-rate scheduler replaces optimizer.schedule.
        let optimizer = recipe.optimizerConfig
        for (i, scheduler) in recipe.schedulers.enumerated() {
            for target in scheduler.descriptor.controls {
                if let earlier = recipe.schedulers[..<i].first(where: { $0.descriptor.controls.contains(target) }) {
                    refuse(scheduler, "'\(scheduler.name)' sets \(target), which \(earlier.label) already sets; expected one scheduler per hyper-parameter")
                }
            }
            if scheduler.descriptor.controls.contains(ControlledValue.learningRate),
               optimizer.schedule != .constant || optimizer.warmupSteps > 0 {
                let key = optimizer.schedule != .constant ? "schedule" : "warmup_steps"
                let at = line(recipe.optimizer, key).map { " (line \($0.line))" } ?? ""
                refuse(scheduler, "'\(scheduler.name)' sets the learning rate, but optimizer.\(key)\(at) already schedules it; expected schedule: constant and warmup_steps: 0")
            }
        }

        // Training: evaluation needs held-out data.
        let training = recipe.trainingConfig
        if training.evalEvery > 0, split == nil, let mark = line(recipe.training, "eval_every") {
            refuse(mark, "training.eval_every", "evaluates every \(training.evalEvery) steps, but the data list has no split node; expected a `- name: split` node in data, or eval_every: 0")
        }
        if training.evalGenerations > 0, split == nil, let mark = line(recipe.training, "eval_generations") {
            refuse(mark, "training.eval_generations", "answers \(training.evalGenerations) held-out prompts, but the data list has no split node; expected a `- name: split` node in data, or eval_generations: 0")
        }

        if !refusals.isEmpty { throw RecipeErrors(diagnostics: refusals.sorted { $0.mark < $1.mark }) }
        return PluginGraph(recipe: recipe, dataShape: shape ?? .paired, referenceNeededBy: referenceUser, split: split,
                           signalProviders: try signals.ordered())
    }
}

/// A signal provider the graph chose, and the keys of its `provides` the run needs.
public struct SignalProviderNode {
    public let type: any SignalProvider.Type
    public var keys: [SignalKey]
    public var requires: SignalRequirements
    /// Keys of other providers that these keys need.
    var needs: [SignalKey]

    /// The provider, with its options' defaults (recipes do not configure providers).
    public func instantiate() throws -> any SignalProvider {
        try type.init(options: ResolvedOptions(defaultsOf: type.descriptor.options))
    }
}

/// The graph's one rule for signals: a needed key has exactly one registered provider, that provider's
/// requirements are met by the recipe, and the same holds for the keys it needs in turn. A refusal names
/// the node that needs the key, the key, the provider(s) and what is missing; the caller adds the line.
final class SignalResolution {
    let recipe: Recipe
    let registry: PluginRegistry
    private(set) var nodes: [SignalProviderNode] = []
    private var providerOf: [SignalKey: Int] = [:]
    private var resolving: Set<SignalKey> = []
    /// The first loss whose needs bring in a provider that requires the reference model.
    private(set) var referenceUser: PluginNode?

    init(recipe: Recipe, registry: PluginRegistry) {
        self.recipe = recipe
        self.registry = registry
    }

    /// Problems found resolving `key` for `node` (empty: resolved).
    func resolve(_ key: SignalKey, for node: PluginNode, through: String = "") -> [String] {
        if let index = providerOf[key] {
            if nodes[index].requires.contains(.reference), referenceUser == nil { referenceUser = node }
            return []
        }
        let asked = "'\(node.name)' needs signal `\(key)`\(through)"
        guard !resolving.contains(key) else { return ["\(asked), which needs itself through its providers; expected providers without a cycle"] }
        let candidates = registry.providers(of: key)
        guard let first = candidates.first else {
            return ["\(asked), but no signal provider computes it; expected a built-in or installed plugin whose descriptor provides `\(key)`"]
        }
        let (type, signal) = first
        guard candidates.count == 1 else {
            let names = candidates.map { "'\($0.type.descriptor.name)'" }.joined(separator: " and ")
            return ["\(asked), which \(candidates.count) providers compute (\(names)); expected exactly one (remove the others from var/plugins/)"]
        }
        let provider = type.descriptor.name
        if signal.requires.contains(.rewardScorer), recipe.reward.isEmpty {
            return ["\(asked); its provider '\(provider)' requires the recipe's reward, but the recipe has no reward plugin; expected a `reward:` node"]
        }
        resolving.insert(key)
        defer { resolving.remove(key) }
        let problems = signal.needs.flatMap { resolve($0, for: node, through: " (through '\(provider)', which computes `\(key)` from it)") }
        guard problems.isEmpty else { return problems }
        if let index = nodes.firstIndex(where: { $0.type.descriptor.name == provider }) {
            nodes[index].keys.append(key)
            nodes[index].requires.formUnion(signal.requires)
            nodes[index].needs += signal.needs
            providerOf[key] = index
        } else {
            providerOf[key] = nodes.count
            nodes.append(SignalProviderNode(type: type, keys: [key], requires: signal.requires, needs: signal.needs))
        }
        if signal.requires.contains(.reference), referenceUser == nil { referenceUser = node }
        return []
    }

    /// The providers in computing order: each after the providers of the keys it needs.
    func ordered() throws -> [SignalProviderNode] {
        var order: [Int] = [], placed = Set<Int>()
        while order.count < nodes.count {
            func ready(_ index: Int) -> Bool {
                nodes[index].needs.allSatisfy { key in providerOf[key].map { provider in provider == index || placed.contains(provider) } ?? true }
            }
            guard let next = nodes.indices.first(where: { !placed.contains($0) && ready($0) }) else {
                let names = nodes.indices.filter { !placed.contains($0) }.map { "'\(nodes[$0].type.descriptor.name)'" }.joined(separator: ", ")
                throw RegistryError(message: "signal providers \(names) need each other's signals; expected providers without a cycle")
            }
            order.append(next)
            placed.insert(next)
        }
        return order.map { nodes[$0] }
    }
}

/// Names of hyper-parameters schedulers declare in `controls`.
public enum ControlledValue {
    public static let learningRate = "learning_rate"
    public static let beta = "beta"
    public static let reference = "reference"
}

private func shapes(_ set: Set<DataShape>) -> String {
    set.isEmpty ? "any" : set.map(\.rawValue).sorted().joined(separator: " or ")
}
