import Foundation

/// What the trainer reports to the run around it (store, checkpoints, progress display).
public protocol TrainingObserver: AnyObject {
    func record(step: Int, split: MetricSplit, metrics: [String: Double]) throws
    /// Called after step `trainer.step` when a checkpoint is due (every `checkpoint_every` and at the end).
    func checkpoint(_ trainer: Trainer) throws
    /// Called after every optimizer step, logged or not (a sign of life for the run's heartbeat).
    func stepCompleted(_ step: Int) throws
    /// Greedy answers to held-out prompts at step 0 and at the end (`training.eval_generations`).
    func generations(step: Int, _ answers: [GeneratedAnswer]) throws
}

extension TrainingObserver {
    public func stepCompleted(_ step: Int) throws {}
    public func generations(step: Int, _ answers: [GeneratedAnswer]) throws {}
}

/// One held-out prompt answered by the policy (generation-based evaluation).
public struct GeneratedAnswer: Codable, Equatable, Sendable {
    /// The eval pair's id (`file:line`).
    public var id: String
    /// The prompt's plain text (`Turns.plainText`), as the reward plugin saw it.
    public var prompt: String
    public var answer: String
    /// Answer tokens (the stop token not counted).
    public var tokens: Int
    /// The recipe's reward; nil without one.
    public var reward: Double?
    /// With a weighted sum of rewards: each term's own score, by plugin name.
    public var rewardTerms: [String: Double]?

    public init(id: String, prompt: String, answer: String, tokens: Int, reward: Double?, rewardTerms: [String: Double]? = nil) {
        (self.id, self.prompt, self.answer, self.tokens, self.reward, self.rewardTerms) = (id, prompt, answer, tokens, reward, rewardTerms)
    }
}

/// Metrics of generation-based evaluation (eval split; means over the answered prompts).
public enum GenerationMetric {
    /// With a weighted sum of rewards, each term's own mean follows as `generation/reward_mean/<name>`.
    public static let rewardMean = "generation/reward_mean"
    public static let lengthMean = "generation/length_mean"
}

/// Sub-streams of `training.seed` the trainer draws from (1 and 2 are the data plugins', `SeedStream`;
/// signal providers split off streams from 17 on, `SignalRun.seed`).
enum TrainerSeedStream {
    static let dataOrder: UInt64 = 16
}

/// Trains a policy on a recipe's plugin graph: preference pairs → micro-batches → the signals the losses
/// need (`SignalProvider`) → the recipe's weighted loss → backward → gradient accumulation → clipping →
/// AdamW → scheduler hooks. `train(observer:)` is the loop; everything else prepares it or is called from it.
public final class Trainer: TrainingContext {
    public let recipe: Recipe
    public let plugins: PluginInstances
    public let config: TrainingConfig
    public let optimizerConfig: OptimizerConfig
    public let tokenizer: BPETokenizer
    public let policy: LlamaModel
    /// What the optimizer updates and checkpoints store: the policy's parameters, then those signal
    /// providers added (`SignalRun.trainable`).
    public let trainable: Parameters
    /// The models, data and reward as signal providers see them.
    public let signalRun: SignalRun
    /// The graph's providers, each with the keys it computes, in computing order.
    let signalProviders: [(provider: any SignalProvider, keys: [SignalKey])]
    /// Loaded only when a signal provider requires it or a scheduler changes it; released after caching
    /// its log-probs (`cache_logprobs`).
    public var reference: LlamaModel? { signalRun.reference }
    let optimizer: AdamW
    public let trainPairs: [TokenizedPair]
    public let evalPairs: [TokenizedPair]
    /// What every data node (and tokenisation, token-level transforms, truncation) did.
    public let dataReports: [DataNodeReport]
    let pairTokenizer: PairTokenizer
    let sourcePairs: [String: PreferencePair]
    let padID: Int
    /// Whether batches share each pair's prompt: `training.share_prompt`, unless a provider needs separate rows.
    let sharesPrompt: Bool
    let mutatesReference: Bool, schedulesLearningRate: Bool
    /// The model as data plugins and evaluation see it (scoring, sampling, greedy answers).
    let policyAccess: PolicyAccess
    let checkpointablePlugins: [(keyPath: String, plugin: any Checkpointable)]
    private var currentOrder: (epoch: Int, order: [Int])?
    private var scheduledMetrics: [String: Double] = [:]

    // Progress: what a checkpoint saves.
    public internal(set) var step = 0
    public let totalSteps: Int
    public internal(set) var cursor = DataCursor(epoch: 0, position: 0)
    public var learningRate: Double
    public var hyperparameters: [String: Double] = [:]

    /// Loads data, tokenizer and models for `graph`; `log` receives one line per preparation stage.
    public init(graph: PluginGraph, log: @escaping (String) -> Void = { _ in }) throws {
        recipe = graph.recipe
        config = recipe.trainingConfig
        optimizerConfig = recipe.optimizerConfig
        plugins = try graph.instantiate()
        mutatesReference = recipe.schedulers.contains { $0.descriptor.capabilities.contains(.mutatesReference) }
        schedulesLearningRate = recipe.schedulers.contains { $0.descriptor.controls.contains(ControlledValue.learningRate) }

        // The policy comes first: data plugins may sample from it (generate-pairs) or score with it (model-scored filters).
        tokenizer = try ModelLoading.tokenizer(recipe.model)
        pairTokenizer = try PairTokenizer(tokenizer: tokenizer)
        padID = pairTokenizer.padID
        policy = try ModelLoading.model(recipe.model, maxLength: config.maxLength)
        guard config.maxLength <= policy.config.maxPositions else {
            throw TrainerError("training.max_length \(config.maxLength) exceeds the model's \(policy.config.maxPositions) positions")
        }
        policyAccess = PolicyAccess(model: policy, pairTokenizer: pairTokenizer, maxLength: config.maxLength, log: log)

        let dataset = try plugins.loadData(seed: config.seed, sampler: policyAccess)
        var (train, trainReport) = try pairTokenizer.tokenize(dataset.train, node: "tokenize (train)")
        var (eval, evalReport) = try pairTokenizer.tokenize(dataset.eval, node: "tokenize (eval)")
        let tokenizedTrain = train
        let transformReports = try plugins.transformTokenized(&train, split: "train", scorer: policyAccess)
            + plugins.transformTokenized(&eval, split: "eval", scorer: policyAccess)
        PairTokenizer.truncate(&train, maxLength: config.maxLength, report: &trainReport)
        PairTokenizer.truncate(&eval, maxLength: config.maxLength, report: &evalReport)
        guard !train.isEmpty else { throw TrainerError("no training pairs are left after the data pipeline and tokenisation") }
        (trainPairs, evalPairs) = (train, eval)
        dataReports = dataset.report + [trainReport, evalReport] + transformReports
        sourcePairs = Dictionary((dataset.train + dataset.eval).compactMap { if case .pair(let p) = $0 { return (p.id, p) } else { return nil } },
                                 uniquingKeysWith: { first, _ in first })
        log("data: \(train.count) training pairs, \(eval.count) evaluation pairs")

        let largestID = (train + eval).lazy.flatMap { $0.prompt + $0.chosen + $0.rejected }.max() ?? 0
        guard largestID < policy.config.vocab else {
            throw TrainerError("token id \(largestID) is outside the model's vocabulary of \(policy.config.vocab); the tokenizer does not match the model")
        }
        let reference = graph.needsReference || mutatesReference
            ? try ModelLoading.model(ModelLoading.referenceSource(recipe), maxLength: config.maxLength) : nil
        sharesPrompt = config.sharesPrompt && !graph.signalProviders.contains { $0.requires.contains(.separateRows) }
        let sources = sourcePairs, textTokenizer = pairTokenizer
        signalRun = SignalRun(policy: policy, reference: reference, rewards: plugins.reward, seed: config.seed, batchSize: config.batchSize,
                              padID: padID, sharesPrompt: config.sharesPrompt, cachesReference: recipe.cachesReferenceLogProbs && !mutatesReference,
                              tokenizedTrainingPairs: tokenizedTrain, trainPairs: train, evalPairs: eval, log: log) { pair in
            guard let source = sources[pair.id] else { throw TrainerError("pair \(pair.id) has no source text for the reward plugin") }
            return try textTokenizer.texts(source)
        }
        signalProviders = try graph.signalProviders.map { (try $0.instantiate(), $0.keys) }
        var trainable = policy.parameters
        log("model: \(trainable.scalarCount) parameters\(reference == nil ? "" : ", with a frozen reference")")
        for (provider, _) in signalProviders { try provider.prepare(signalRun) }
        for (name, tensor) in signalRun.trainable { trainable.add(name, tensor) }
        if !signalRun.trainable.isEmpty { log("signal providers: \(signalRun.trainable.map(\.name).joined(separator: ", ")) trained with the model") }
        self.trainable = trainable

        // Decoupled weight decay skips vectors (norm weights, biases), as Hugging Face's Trainer does: by
        // rank, so a parameter a provider adds is decayed or not by what it is, not by its name.
        optimizer = AdamW(parameters: trainable, learningRate: Float(optimizerConfig.learningRate),
                          beta1: Float(optimizerConfig.beta1), beta2: Float(optimizerConfig.beta2),
                          epsilon: Float(optimizerConfig.epsilon), weightDecay: Float(optimizerConfig.weightDecay),
                          weightDecayExempt: Set(trainable.entries.filter { $0.tensor.shape.count < 2 }.map(\.name)))
        learningRate = optimizerConfig.learningRate
        totalSteps = config.totalSteps(trainExamples: train.count)

        var checkpointable: [(String, any Checkpointable)] = []
        for (node, plugin) in plugins.data { if let c = plugin as? any Checkpointable { checkpointable.append((node.keyPath, c)) } }
        for (node, plugin) in plugins.reward?.terms ?? [] { if let c = plugin as? any Checkpointable { checkpointable.append((node.keyPath, c)) } }
        for (node, plugin) in plugins.loss.terms { if let c = plugin as? any Checkpointable { checkpointable.append((node.keyPath, c)) } }
        for (node, plugin) in plugins.schedulers { if let c = plugin as? any Checkpointable { checkpointable.append((node.keyPath, c)) } }
        for (provider, _) in signalProviders {
            if let c = provider as? any Checkpointable { checkpointable.append(("signals.\(type(of: provider).descriptor.name)", c)) }
        }
        checkpointablePlugins = checkpointable
    }

    // MARK: The loop

    public func train(observer: TrainingObserver) throws {
        if step == 0, config.evalEvery > 0, !evalPairs.isEmpty { try observer.record(step: 0, split: .eval, metrics: try evaluate()) }
        if step == 0 { try evaluateGenerations(observer: observer) }
        while step < totalSteps {
            let started = DispatchTime.now().uptimeNanoseconds
            optimizer.zeroGrad()
            var metrics = MetricMeans(), tokens = 0
            for _ in 0..<config.gradAccum {
                let batch = nextMicroBatch()
                let (loss, values) = try loss(batch, split: .train)
                (loss * (1 / Float(config.gradAccum))).backward()
                metrics.add(values, weight: 1)
                tokens += pairsTokenCount(batch)
            }
            let gradNorm = clipGradNorm(trainable, maxNorm: optimizerConfig.maxGradNorm > 0 ? Float(optimizerConfig.maxGradNorm) : .infinity)
            guard gradNorm.isFinite else { throw TrainerError("step \(step + 1): the gradient norm is \(gradNorm); stopping (lower optimizer.lr?)") }
            if !schedulesLearningRate { learningRate = optimizerConfig.learningRate(step: step, totalSteps: totalSteps) }
            optimizer.learningRate = Float(learningRate)
            optimizer.step()
            step += 1
            var values = metrics.means
            values[TrainMetric.learningRate] = learningRate
            for (_, scheduler) in plugins.schedulers { try scheduler.afterOptimizerStep(self) }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            values.merge(scheduledMetrics) { $1 }
            scheduledMetrics = [:]
            values[TrainMetric.gradNorm] = Double(gradNorm)
            values[TrainMetric.stepTime] = seconds
            values[TrainMetric.tokensPerSecond] = Double(tokens) / max(seconds, 1e-9)
            if step % config.logEvery == 0 || step == totalSteps { try observer.record(step: step, split: .train, metrics: values) }
            if config.evalEvery > 0, !evalPairs.isEmpty, step % config.evalEvery == 0 || step == totalSteps {
                try observer.record(step: step, split: .eval, metrics: try evaluate())
            }
            if step == totalSteps { try evaluateGenerations(observer: observer) }
            try observer.stepCompleted(step)
            let checkpointDue = (config.checkpointEvery > 0 && step % config.checkpointEvery == 0) || step == totalSteps
            if checkpointDue { try observer.checkpoint(self) }
            if TrainingStop.isRequested && step < totalSteps {
                if !checkpointDue { try observer.checkpoint(self) }
                throw TrainingStopped(step: step)
            }
        }
    }

    // MARK: Around the loop

    /// Indices (into `trainPairs`) of the next micro-batch; an epoch's last one may be smaller.
    func nextMicroBatch() -> [Int] {
        if cursor.position >= trainPairs.count { cursor = DataCursor(epoch: cursor.epoch + 1, position: 0) }
        let order = order(epoch: cursor.epoch)
        let end = min(cursor.position + config.batchSize, trainPairs.count)
        defer { cursor.position = end }
        return Array(order[cursor.position..<end])
    }

    /// Epoch `epoch`'s permutation of the training pairs: Fisher–Yates from a generator split off
    /// `training.seed` for that epoch, so any epoch's order follows from (seed, epoch) alone.
    func order(epoch: Int) -> [Int] {
        if let currentOrder, currentOrder.epoch == epoch { return currentOrder.order }
        var generator = Philox(seed: config.seed).split(TrainerSeedStream.dataOrder).split(UInt64(epoch))
        var order = Array(trainPairs.indices)
        generator.shuffle(&order)
        currentOrder = (epoch, order)
        return order
    }

    private func pairsTokenCount(_ batch: [Int]) -> Int {
        batch.reduce(0) { let p = trainPairs[$1]; return $0 + 2 * p.prompt.count + p.chosen.count + p.rejected.count }
    }

    /// The weighted loss Σ wₖ·Lₖ of the pairs `indices` of a split, and the loss plugins' metrics plus `loss`.
    func loss(_ indices: [Int], split: MetricSplit) throws -> (Tensor, [String: Double]) {
        let pairs = indices.map { split == .train ? trainPairs[$0] : evalPairs[$0] }
        let batch = SignalBatch(split: split, indices: indices, pairs: pairs, sequences: PairBatch(pairs, padID: padID, sharesPrompt: sharesPrompt))
        var input = LossInput(hyperparameters: hyperparameters)
        for (provider, keys) in signalProviders { try provider.compute(keys, for: batch, in: signalRun, into: &input.signals) }
        let (terms, metrics) = try plugins.loss.evaluate(input)
        var total = terms[0].loss * Float(terms[0].weight)
        for term in terms.dropFirst() { total = total + term.loss * Float(term.weight) }
        return (total, metrics.merging([TrainMetric.loss: Double(total.item())]) { $1 })
    }

    /// Mean loss and metrics over the evaluation pairs, without gradients (weighted by pairs per batch).
    public func evaluate() throws -> [String: Double] {
        try withNoGrad {
            var means = MetricMeans()
            for start in stride(from: 0, to: evalPairs.count, by: config.batchSize) {
                let indices = Array(start..<min(start + config.batchSize, evalPairs.count))
                means.add(try loss(indices, split: .eval).1, weight: Double(indices.count))
            }
            return means.means
        }
    }

    /// Greedy answers of the current policy to the first `training.eval_generations` evaluation prompts,
    /// scored by the reward plugin: their mean reward and length go to the eval metrics of this step, the
    /// answers themselves to the observer (events, the run's report).
    public func evaluateGenerations(observer: TrainingObserver) throws {
        let prompts = evalPairs.prefix(config.evalGenerations).compactMap { pair in sourcePairs[pair.id].map { (pair.id, $0.prompt) } }
        guard !prompts.isEmpty else { return }
        policyAccess.progress("eval generations at step \(step): \(prompts.count) held-out prompts")
        let replies = try policyAccess.answers(prompts.map(\.1), maxNewTokens: config.evalMaxNewTokens)
        let answers = try zip(prompts, replies).map { prompt, reply in
            let terms = try plugins.reward?.termScores(prompt: prompt.1.plainText, response: reply.text)
            return GeneratedAnswer(id: prompt.0, prompt: prompt.1.plainText, answer: reply.text, tokens: reply.tokens,
                                   reward: terms?.reduce(0) { $0 + $1.weighted },
                                   rewardTerms: plugins.reward?.isComposite == true
                                       ? terms.map { Dictionary($0.map { ($0.name, $0.score) }, uniquingKeysWith: { a, _ in a }) } : nil)
        }
        func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }
        var metrics = [GenerationMetric.lengthMean: mean(answers.map { Double($0.tokens) })]
        let rewards = answers.compactMap(\.reward)
        if !rewards.isEmpty { metrics[GenerationMetric.rewardMean] = mean(rewards) }
        for name in answers.first?.rewardTerms?.keys.sorted() ?? [] {
            metrics[GenerationMetric.rewardMean + "/" + name] = mean(answers.compactMap { $0.rewardTerms?[name] })
        }
        try observer.record(step: step, split: .eval, metrics: metrics)
        try observer.generations(step: step, answers)
    }

    // MARK: TrainingContext

    public func parameterNames(_ role: ModelRole) -> [String] { (role == .policy ? policy : reference)?.parameters.names ?? [] }

    public func parameter(_ name: String, of role: ModelRole) -> Tensor? { (role == .policy ? policy : reference)?.parameters[name] }

    public func record(metric: String, value: Double) { scheduledMetrics[metric] = value }
}

/// The trainer's own metric names (TRL's).
public enum TrainMetric {
    public static let loss = "loss"
    public static let gradNorm = "grad_norm"
    public static let learningRate = "learning_rate"
    public static let tokensPerSecond = "tokens_per_second"
    public static let stepTime = "step_time"
}

/// Weighted means of named values (metrics over micro-batches or evaluation batches).
struct MetricMeans {
    private var sums: [String: Double] = [:], weights: [String: Double] = [:]

    mutating func add(_ values: [String: Double], weight: Double) {
        for (name, value) in values {
            sums[name, default: 0] += value * weight
            weights[name, default: 0] += weight
        }
    }

    var means: [String: Double] { sums.reduce(into: [:]) { $0[$1.key] = $1.value / max(weights[$1.key] ?? 1, 1e-300) } }
}
