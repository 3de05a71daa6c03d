import ArgumentParser
import DPO
import Foundation
import KeelCore

/// `keel eval`: a trained policy against its reference on held-out preference pairs — implicit-reward
/// accuracy and margin, log-prob accuracy — and, for a run, the reward of its greedy answers to held-out
/// prompts, each with its standard error. The numbers come from the trainer's own code: a run is
/// evaluated by its trainer restored from its last checkpoint (`TrainingRun.restoredTrainer`), pairs by
/// `PreferenceEvaluation`, answers by `Trainer.evaluateGenerations`.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a policy against its reference: implicit-reward accuracy and margin, log-prob accuracy, generation reward, with standard errors.",
        discussion: """
        Give a run (its last checkpoint is the policy, its reference the reference; β and max_length from \
        its recipe; pairs: its own held-out split unless --data) or --policy, --reference and --data. Pairs: \
        HH lines {"chosen", "rejected"} or TRL lines {prompt, chosen, rejected}, tokenised as the trainer \
        does (EOS appended, cut to max_length). Standard errors are s/√n over the pairs (answers).
        """)

    @Argument(help: VarDirectoryOption.runHelp)
    var runReference: String?

    @Option(help: "The policy: a GGUF file or Hugging Face folder (instead of a run).")
    var policy: String?

    @Option(help: "The policy's reference, usually the model it started from (instead of a run).")
    var reference: String?

    @Option(help: "JSON-lines file of preference pairs, HH or TRL format (for a run: instead of its held-out split).")
    var data: String?

    @Option(help: "A run only: answer this many of its held-out prompts greedily and score them with its reward plugin.")
    var generations: Int?

    @Option(help: "β of the implicit reward β·(log π − log πref) (otherwise the run's loss β, else the dpo loss's).")
    var beta: Double?

    @Option(help: "Pairs scored per batch.")
    var batchSize = 8

    @Option(help: "Evaluate at most this many pairs of --data.")
    var limit: Int?

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var varDirectory: VarDirectoryOption

    func validate() throws {
        if runReference != nil, policy != nil || reference != nil { throw ValidationError("give a run or --policy and --reference, not both") }
        if runReference == nil, policy == nil || reference == nil || data == nil {
            throw ValidationError("give a run, or --policy, --reference and --data")
        }
        if runReference == nil, generations != nil { throw ValidationError("--generations needs a run (its prompts and reward plugin)") }
        if let generations, generations < 1 { throw ValidationError("--generations must be at least 1, got \(generations)") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    }

    func run() throws {
        try runReportingErrors {
            let subject = try runReference.map(evaluatedRun) ?? evaluatedPaths()
            let pairTokenizer = try PairTokenizer(tokenizer: subject.tokenizer)
            var notes: [String] = []
            var pairs = subject.heldOutPairs
            if let data {
                let (read, skipped) = try PreferenceFile.read(data, limit: limit)
                var report: DataNodeReport
                (pairs, report) = try pairTokenizer.tokenize(read.map(Example.pair), node: "eval")
                PairTokenizer.truncate(&pairs, maxLength: subject.maxLength, report: &report)
                notes = skipped.merging(report.skipped) { $0 + $1 }.map { "\($0.value) skipped (\($0.key))" }
                    + report.flagged.map { "\($0.value) \($0.key) to \(subject.maxLength) tokens" }
            }
            guard !pairs.isEmpty else { throw TrainerError("no pairs to evaluate: the run has no held-out split; give --data FILE") }
            var metrics = PreferenceEvaluation(policy: subject.policy, reference: subject.reference, pairs: pairs,
                                               beta: subject.beta, padID: pairTokenizer.padID, batchSize: batchSize).metrics
            if let answers = try subject.answers?() { metrics.merge(Self.generationMetrics(answers)) { $1 } }
            let source = data ?? "the run's held-out split"
            if json {
                print(try JSONOutput.line(EvalOutput(pairs: pairs.count, beta: subject.beta, maxLength: subject.maxLength, policy: subject.policyName,
                                                     reference: subject.referenceName, data: source, metrics: metrics, notes: notes.sorted())))
                return
            }
            print("\(pairs.count) pairs of \(source) (β \(subject.beta), max_length \(subject.maxLength))"
                  + (notes.isEmpty ? "" : "; " + notes.sorted().joined(separator: ", ")))
            print("policy \(subject.policyName)\nreference \(subject.referenceName)")
            let generationRows = metrics.keys.filter { $0.hasPrefix(GenerationMetric.rewardMean + "/") }.sorted().map { ("  reward term", $0) }
            for (label, name) in Self.rows + generationRows {
                guard let estimate = metrics[name] else { continue }
                print(label.padding(toLength: 28, withPad: " ", startingAt: 0)
                      + String(format: " %9.4f ± %.4f   (%@)", estimate.mean, estimate.standardError, name))
            }
        }
    }

    static let rows = [
        ("implicit-reward accuracy", PairwiseMetrics.rewardsAccuracies), ("implicit-reward margin", PairwiseMetrics.rewardsMargins),
        ("implicit reward, chosen", PairwiseMetrics.rewardsChosen), ("implicit reward, rejected", PairwiseMetrics.rewardsRejected),
        ("log-prob accuracy", PreferenceEvaluation.logpsAccuracies), ("reference log-prob accuracy", PreferenceEvaluation.referenceLogpsAccuracies),
        ("log-prob, chosen", PairwiseMetrics.logpsChosen), ("log-prob, rejected", PairwiseMetrics.logpsRejected),
        ("greedy answers' reward", GenerationMetric.rewardMean), ("greedy answers' length", GenerationMetric.lengthMean),
    ]

    /// The answers' reward (and each term's) and length, as the trainer's generation metrics, with standard errors.
    static func generationMetrics(_ answers: [GeneratedAnswer]) -> [String: PreferenceEvaluation.Estimate] {
        var metrics = [GenerationMetric.lengthMean: PreferenceEvaluation.Estimate(answers.map { Double($0.tokens) })]
        let rewards = answers.compactMap(\.reward)
        if !rewards.isEmpty { metrics[GenerationMetric.rewardMean] = PreferenceEvaluation.Estimate(rewards) }
        for name in answers.first?.rewardTerms?.keys.sorted() ?? [] {
            metrics[GenerationMetric.rewardMean + "/" + name] = PreferenceEvaluation.Estimate(answers.compactMap { $0.rewardTerms?[name] })
        }
        return metrics
    }

    struct EvalOutput: Encodable {
        let pairs: Int
        let beta: Double
        let maxLength: Int
        let policy: String, reference: String, data: String
        let metrics: [String: PreferenceEvaluation.Estimate]
        let notes: [String]

        enum CodingKeys: String, CodingKey {
            case pairs, beta, policy, reference, data, metrics, notes
            case maxLength = "max_length"
        }
    }

    /// What is evaluated: the two models, how pairs are read, and (a run) its held-out pairs and answers.
    struct Subject {
        let policy: LlamaModel, reference: LlamaModel
        let tokenizer: BPETokenizer
        let beta: Double
        let maxLength: Int
        let policyName: String, referenceName: String
        let heldOutPairs: [TokenizedPair]
        let answers: (() throws -> [GeneratedAnswer])?
    }

    /// The run's trainer at its last checkpoint: its policy, reference, held-out pairs and prompts.
    private func evaluatedRun(_ reference: String) throws -> Subject {
        let (_, runID) = try varDirectory.resolve(reference)
        let extra = try generations.map { [try RecipeOverride("training.eval_generations=\($0)")] } ?? []
        let trainer = try TrainingRun.restoredTrainer(runID: runID, layout: varDirectory.layout,
                                                      registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout),
                                                      extraOverrides: extra, log: printError)
        let referenceModel = try trainer.reference ?? ModelLoading.model(ModelLoading.referenceSource(trainer.recipe), maxLength: trainer.config.maxLength)
        let answers: (() throws -> [GeneratedAnswer])? = generations.map { _ in {
            let collector = AnswerCollector()
            try trainer.evaluateGenerations(observer: collector)
            return collector.answers
        } }
        return Subject(policy: trainer.policy, reference: referenceModel, tokenizer: trainer.tokenizer,
                       beta: try chosenBeta(trainer.recipe), maxLength: trainer.config.maxLength,
                       policyName: "run \(runID), step \(trainer.step)", referenceName: "its reference" + (trainer.reference == nil ? " (the starting model, reloaded)" : ""),
                       heldOutPairs: trainer.evalPairs, answers: answers)
    }

    /// --policy and --reference as given.
    private func evaluatedPaths() throws -> Subject {
        let (policyPath, referencePath) = (policy ?? "", reference ?? "")
        let loaded = try ModelLoading.pretrained(at: policyPath)
        return Subject(policy: loaded.model, reference: try ModelLoading.pretrained(at: referencePath).model, tokenizer: loaded.tokenizer,
                       beta: try chosenBeta(nil), maxLength: loaded.model.config.maxPositions, policyName: policyPath,
                       referenceName: referencePath, heldOutPairs: [], answers: nil)
    }

    /// --beta, else the β of the run's loss node that has one, else the dpo loss's declared default.
    private func chosenBeta(_ recipe: Recipe?) throws -> Double {
        if let beta { return beta }
        if let beta = recipe?.loss.lazy.compactMap({ $0.options.double(DPOLoss.Option.beta) }).first { return beta }
        guard let beta = ResolvedOptions(defaultsOf: DPOLoss.descriptor.options).double(DPOLoss.Option.beta) else {
            throw TrainerError("no β: pass --beta")
        }
        return beta
    }
}

/// Keeps the greedy answers `Trainer.evaluateGenerations` reports.
private final class AnswerCollector: TrainingObserver {
    var answers: [GeneratedAnswer] = []
    func record(step: Int, split: MetricSplit, metrics: [String: Double]) throws {}
    func checkpoint(_ trainer: Trainer) throws {}
    func generations(step: Int, _ answers: [GeneratedAnswer]) throws { self.answers = answers }
}
