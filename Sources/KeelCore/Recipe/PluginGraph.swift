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

    public var needsReference: Bool { referenceNeededBy != nil }

    static func build(_ recipe: Recipe) throws -> PluginGraph {
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
            if d.capabilities.contains(.needsRewards), recipe.reward.isEmpty {
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

        // Losses: accept the data shape; rewards exist when needed; length-normalised losses get empty
        // completions dropped; pairwise-only transforms get pairwise losses.
        for (i, loss) in recipe.loss.enumerated() {
            let d = loss.descriptor
            if let shape, let setter = shapeSetter, !d.accepts(shape) {
                refuse(loss, "'\(loss.name)' needs \(shapes(d.consumes)) examples, but \(setter.label) produces \(shape.rawValue)")
            }
            if d.capabilities.contains(.needsRewards), recipe.reward.isEmpty {
                refuse(loss, "'\(loss.name)' needs rewards, but the recipe has no reward plugin; expected a `reward:` node")
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
        let referenceUser = (recipe.loss + recipe.schedulers + recipe.reward)
            .first { $0.descriptor.capabilities.contains(.needsReference) }
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
        if recipe.cachesReferenceLogProbs, let cacheMark {
            for loss in recipe.loss where loss.descriptor.capabilities.contains(.needsGeneration) {
                refuse(loss, "'\(loss.name)' samples new completions during training, but reference.cache_logprobs (line \(cacheMark.line)) precomputes reference log-probs of the dataset's completions only; expected cache_logprobs: false")
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
        return PluginGraph(recipe: recipe, dataShape: shape ?? .paired, referenceNeededBy: referenceUser, split: split)
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
