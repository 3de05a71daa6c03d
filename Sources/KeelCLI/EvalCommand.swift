import ArgumentParser
import DPO
import Foundation
import KeelCore

/// `keel eval`: a trained policy against its reference on held-out preference pairs — implicit-reward
/// accuracy and margin, log-prob accuracy, each with its standard error (`PreferenceEvaluation`: the
/// trainer's tokenisation, batching and metric formulas, so a run's own evaluation pairs give the
/// numbers it logged).
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a policy against its reference on preference pairs: implicit-reward accuracy and margin, log-prob accuracy, with standard errors.",
        discussion: """
        Give a run (its export/ is the policy; the model it started from, its reference; β and max_length \
        from its recipe) or --policy and --reference. Pairs: HH lines {"chosen", "rejected"} or TRL lines \
        {prompt, chosen, rejected}, tokenised as the trainer does (EOS appended, cut to max_length). \
        Standard errors are s/√n over the pairs.
        """)

    @Argument(help: VarDirectoryOption.runHelp)
    var runReference: String?

    @Option(help: "The policy: a GGUF file or Hugging Face folder (instead of a run).")
    var policy: String?

    @Option(help: "The policy's reference, usually the model it started from (instead of a run).")
    var reference: String?

    @Option(help: "JSON-lines file of preference pairs (HH or TRL format).")
    var data: String

    @Option(help: "β of the implicit reward β·(log π − log πref) (default: the run's loss β, else the dpo loss's).")
    var beta: Double?

    @Option(help: "Longest prompt + completion in tokens (default: the run's training.max_length, else the model's positions).")
    var maxLength: Int?

    @Option(help: "Pairs scored per batch.")
    var batchSize = 8

    @Option(help: "Evaluate at most this many pairs.")
    var limit: Int?

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var varDirectory: VarDirectoryOption

    func validate() throws {
        if runReference != nil, policy != nil || reference != nil { throw ValidationError("give a run or --policy and --reference, not both") }
        if runReference == nil, policy == nil || reference == nil { throw ValidationError("give a run, or --policy and --reference") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    }

    func run() throws {
        try runReportingErrors {
            let models = try loadModels()
            let pairTokenizer = try PairTokenizer(tokenizer: models.tokenizer)
            let (pairs, skipped) = try PreferenceFile.read(data, limit: limit)
            var (tokenized, report) = try pairTokenizer.tokenize(pairs.map(Example.pair), node: "eval")
            let maxLength = min(maxLength ?? models.maxLength ?? models.policy.config.maxPositions, models.policy.config.maxPositions)
            PairTokenizer.truncate(&tokenized, maxLength: maxLength, report: &report)
            let evaluation = PreferenceEvaluation(policy: models.policy, reference: models.reference, pairs: tokenized,
                                                  beta: models.beta, padID: pairTokenizer.padID, batchSize: batchSize)
            let notes = (skipped.merging(report.skipped) { $0 + $1 }).map { "\($0.value) skipped (\($0.key))" }
                + report.flagged.map { "\($0.value) \($0.key) to \(maxLength) tokens" }
            if json {
                print(try JSONOutput.line(EvalOutput(pairs: evaluation.pairs, beta: models.beta, maxLength: maxLength,
                                                     policy: models.policyName, reference: models.referenceName, data: data,
                                                     metrics: evaluation.metrics, notes: notes.sorted())))
            } else {
                print("\(evaluation.pairs) pairs of \(data) (β \(models.beta), max_length \(maxLength))" + (notes.isEmpty ? "" : "; " + notes.sorted().joined(separator: ", ")))
                print("policy \(models.policyName)\nreference \(models.referenceName)")
                for (label, name) in Self.rows {
                    guard let estimate = evaluation.metrics[name] else { continue }
                    print(String(format: "%-28@ %9.4f ± %.4f   (%@)", label as NSString, estimate.mean, estimate.standardError, name))
                }
            }
        }
    }

    static let rows = [
        ("implicit-reward accuracy", PairwiseMetrics.rewardsAccuracies), ("implicit-reward margin", PairwiseMetrics.rewardsMargins),
        ("implicit reward, chosen", PairwiseMetrics.rewardsChosen), ("implicit reward, rejected", PairwiseMetrics.rewardsRejected),
        ("log-prob accuracy", PreferenceEvaluation.logpsAccuracies), ("reference log-prob accuracy", PreferenceEvaluation.referenceLogpsAccuracies),
        ("log-prob, chosen", PairwiseMetrics.logpsChosen), ("log-prob, rejected", PairwiseMetrics.logpsRejected),
    ]

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

    struct Models {
        let policy: LlamaModel, reference: LlamaModel
        let tokenizer: BPETokenizer
        let beta: Double
        let maxLength: Int?
        let policyName: String, referenceName: String
    }

    /// The run's export and starting model (β and max_length from its recipe), or the two paths.
    private func loadModels() throws -> Models {
        let defaultBeta = ResolvedOptions(defaultsOf: DPOLoss.descriptor.options).double(DPOLoss.Option.beta)
        guard let runReference else {
            let (policyPath, referencePath) = (policy ?? "", reference ?? "")
            let loaded = try ModelLoading.pretrained(at: policyPath)
            return Models(policy: loaded.model, reference: try ModelLoading.pretrained(at: referencePath).model, tokenizer: loaded.tokenizer,
                          beta: try chosenBeta(recipe: nil, default: defaultBeta), maxLength: nil, policyName: policyPath, referenceName: referencePath)
        }
        let (store, runID) = try varDirectory.resolve(runReference)
        guard let record = try store.run(runID) else { throw StoreError.unknownRun(runID) }
        let export = varDirectory.layout.export(runID)
        guard record.status == .completed, FileManager.default.fileExists(atPath: export.path) else {
            throw TrainerError("run \(runID) is \(record.status.rawValue) and has no export at \(export.path); expected a completed run")
        }
        let recipe = try TrainingRun.recipeLoader(of: runID, store: store, registry: keelPluginRegistry(loadingCustomPluginsOf: varDirectory.layout))
            .load(URL(fileURLWithPath: record.recipePath), displayName: record.recipePath).recipe
        let loaded = try ModelLoading.pretrained(at: export.path)
        let referenceSource = ModelLoading.referenceSource(recipe)
        let referenceName: String
        switch referenceSource {
        case .gguf(let path): referenceName = path
        case .huggingFace(let directory): referenceName = directory
        case .tiny: referenceName = "the run's starting tiny model (its recipe's seeded weights)"
        }
        return Models(policy: loaded.model, reference: try ModelLoading.model(referenceSource, maxLength: loaded.model.config.maxPositions),
                      tokenizer: loaded.tokenizer, beta: try chosenBeta(recipe: recipe, default: defaultBeta),
                      maxLength: recipe.trainingConfig.maxLength, policyName: export.path, referenceName: referenceName)
    }

    /// --beta, else the β of the run's loss node that has one, else `default`.
    private func chosenBeta(recipe: Recipe?, default fallback: Double?) throws -> Double {
        if let beta { return beta }
        if let beta = recipe?.loss.lazy.compactMap({ $0.options.double(DPOLoss.Option.beta) }).first { return beta }
        guard let fallback else { throw TrainerError("no β: pass --beta") }
        return fallback
    }
}
