import Foundation

/// A decoded, checked recipe. Every option of every section and node carries its final value and origin.
public struct Recipe {
    /// The recipe file as the user named it (messages) and the folder relative paths resolve against.
    public let file: String
    public let directory: URL
    /// The file's text as read and decoded once (`RecipeSource`): hashed for the run's fingerprint and
    /// stored with the run.
    public let text: String
    public let model: ModelSource
    public let reference: ResolvedOptions
    public let data: [PluginNode]
    /// No node, one, or the terms of a weighted sum (each node's `weight`), like `loss`.
    public let reward: [PluginNode]
    /// One node, or the terms of a weighted sum (each node's `weight`).
    public let loss: [PluginNode]
    public let schedulers: [PluginNode]
    public let optimizer: ResolvedOptions
    public let training: ResolvedOptions
    public let output: ResolvedOptions
    public let logging: ResolvedOptions
    /// Where each top-level section starts, for messages about a whole section.
    public let sectionMarks: [String: Mark]
    /// `requires:`: recipes whose `output.dir` this one reads, trained first when that folder is missing.
    public let requirements: [RecipeRequirement]

    public var trainingConfig: TrainingConfig { TrainingConfig(training) }
    public var optimizerConfig: OptimizerConfig { OptimizerConfig(optimizer) }
    /// `output.name`, defaulting to the recipe's file name without extension.
    public var outputName: String {
        output.string("name") ?? ((file as NSString).lastPathComponent as NSString).deletingPathExtension
    }
    public var cachesReferenceLogProbs: Bool { reference.bool("cache_logprobs") ?? false }
    /// `output.dir`: where the final model is exported too, at a path that does not change between runs.
    public var exportCopyDirectory: URL? { output.string("dir").map { URL(fileURLWithPath: $0, isDirectory: true) } }
    /// `logging.tensorboard`: the folder whose `<run id>/` subfolder receives the run's TensorBoard event files, live.
    public var tensorBoardDirectory: URL? { logging.string("tensorboard").map { URL(fileURLWithPath: $0, isDirectory: true) } }
    /// `output.reference_dir`: where the reference model is exported at the end (e.g. for the `implicit` reward).
    public var referenceExportDirectory: URL? { output.string("reference_dir").map { URL(fileURLWithPath: $0, isDirectory: true) } }
}

/// One entry of `requires:`: a recipe that makes a model this recipe reads, at that recipe's `output.dir`
/// (and `output.reference_dir`). Validation accepts paths inside those folders before they exist; a run
/// trains the required recipe first when one of them is missing (`TrainingRun.trainRequirements`).
public struct RecipeRequirement: Equatable {
    /// The required recipe file, and how messages name it (as written in `requires:`).
    public let file: URL
    public let displayName: String
    /// The folders its run exports to: what this recipe may read before they exist.
    public let outputs: [URL]

    /// The first of `outputs` that does not exist yet; nil when the required recipe need not run.
    public var missingOutput: URL? { outputs.first { !FileManager.default.fileExists(atPath: $0.path) } }
}

/// One plugin in the recipe: which plugin, where it was written, its options and (losses) its weight.
public struct PluginNode {
    /// `data[2]`, `loss[0]`, `reward`, for messages and plans.
    public let keyPath: String
    public let mark: Mark
    public let type: any KeelPlugin.Type
    public let options: ResolvedOptions
    public let weight: Double
    public let weightOrigin: OptionOrigin

    public var descriptor: PluginDescriptor { type.descriptor }
    public var name: String { descriptor.name }
    /// How messages name a node: `loss[0] 'dpo' (line 12)`.
    public var label: String { "\(keyPath) '\(name)' (line \(mark.line))" }
}

/// What to train: a GGUF file, a Hugging Face folder, or a random tiny model for tests.
public enum ModelSource: Equatable {
    case gguf(path: String)
    case huggingFace(directory: String)
    case tiny(ResolvedOptions)
}

/// `training:` as typed values.
public struct TrainingConfig: Equatable {
    public let steps: Int?
    public let epochs: Int?
    public let batchSize: Int
    public let gradAccum: Int
    public let maxLength: Int
    public let seed: UInt64
    /// 0 = never.
    public let evalEvery: Int
    public let checkpointEvery: Int
    public let keepCheckpoints: Int
    public let logEvery: Int
    /// Compute each pair's prompt once for chosen and rejected (`SharedPromptPairBatch`).
    public let sharesPrompt: Bool
    /// Held-out prompts answered greedily at step 0 and at the end (0 = none).
    public let evalGenerations: Int
    public let evalMaxNewTokens: Int

    public init(_ o: ResolvedOptions) {
        steps = o.int("steps")
        epochs = o.int("epochs")
        batchSize = o.int("batch_size") ?? 1
        gradAccum = o.int("grad_accum") ?? 1
        maxLength = o.int("max_length") ?? 1
        seed = UInt64(o.int("seed") ?? 0)
        evalEvery = o.int("eval_every") ?? 0
        checkpointEvery = o.int("checkpoint_every") ?? 0
        keepCheckpoints = o.int("keep_checkpoints") ?? 1
        logEvery = o.int("log_every") ?? 1
        sharesPrompt = o.bool("share_prompt") ?? true
        evalGenerations = o.int("eval_generations") ?? 0
        evalMaxNewTokens = o.int("eval_max_new_tokens") ?? 64
    }

    /// Optimizer steps in one pass over `trainExamples` (at least 1; a last partial step is dropped).
    public func stepsPerEpoch(trainExamples: Int) -> Int {
        max(1, (trainExamples + batchSize - 1) / batchSize / gradAccum)
    }

    /// `steps`, or `epochs` passes over `trainExamples`.
    public func totalSteps(trainExamples: Int) -> Int { steps ?? (epochs ?? 1) * stepsPerEpoch(trainExamples: trainExamples) }
}

/// `optimizer:` as typed values: AdamW with an optional warmup + decay learning-rate schedule.
public struct OptimizerConfig: Equatable {
    public enum Schedule: String { case constant, linear, cosine }

    public let learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    /// 0 = no clipping.
    public let maxGradNorm: Double
    public let schedule: Schedule
    public let warmupSteps: Int
    public let minLRRatio: Double

    public init(_ o: ResolvedOptions) {
        learningRate = o.double("lr") ?? 0
        beta1 = o.double("beta1") ?? 0
        beta2 = o.double("beta2") ?? 0
        epsilon = o.double("eps") ?? 0
        weightDecay = o.double("weight_decay") ?? 0
        maxGradNorm = o.double("max_grad_norm") ?? 0
        schedule = Schedule(rawValue: o.string("schedule") ?? "") ?? .constant
        warmupSteps = o.int("warmup_steps") ?? 0
        minLRRatio = o.double("min_lr_ratio") ?? 0
    }

    /// Learning rate for optimizer step `step` (0-based) of `totalSteps`, as Hugging Face's
    /// `get_{constant,linear,cosine}_schedule_with_warmup`: linear warmup from 0 over `warmupSteps`, then
    /// a factor f decaying from 1 to 0 — linear: (T − s)/(T − W); cosine: ½(1 + cos(π·(s − W)/(T − W))) —
    /// floored at `minLRRatio`: lr · (r + (1 − r)·f).
    public func learningRate(step: Int, totalSteps: Int) -> Double {
        if step < warmupSteps { return learningRate * Double(step) / Double(max(1, warmupSteps)) }
        let decaySteps = Double(max(1, totalSteps - warmupSteps))
        let progress = min(1, Double(step - warmupSteps) / decaySteps)
        let factor: Double
        switch schedule {
        case .constant: return learningRate
        case .linear: factor = 1 - progress
        case .cosine: factor = 0.5 * (1 + cos(Double.pi * progress))
        }
        return learningRate * (minLRRatio + (1 - minLRRatio) * factor)
    }
}

/// The declared options of the recipe's own sections: decoded, planned and documented with the same
/// machinery as plugin options.
public enum RecipeSchema {
    public static let sections = ["model", "reference", "data", "reward", "loss", "schedulers", "optimizer", "training", "output", "logging", "requires"]
    public static let requiredSections = ["model", "data", "loss", "training"]
    /// The most optimizer steps a run may take (a step count the machine could finish, and whose
    /// products with batch sizes and lengths stay far from overflow). Memory is bounded separately,
    /// by `MemoryEstimate`.
    public static let maxSteps: Double = 100_000_000
    /// The longest `output.name`.
    public static let maxNameLength = 100

    public static let tinyModel: [OptionSpec] = [
        .int("layers", 2, in: .closed(1, 512), "transformer blocks"),
        .int("hidden", 64, in: .closed(2, 65_536), "model width; a multiple of heads"),
        .int("heads", 4, in: .closed(1, 1024), "attention heads; a multiple of kv_heads"),
        .int("kv_heads", 2, in: .closed(1, 1024), "key/value heads (grouped-query attention)"),
        .int("intermediate", 128, in: .closed(1, 262_144), "MLP width"),
        .int("vocab", 256, in: .closed(2, 1_048_576), "vocabulary size (byte-level tokenizer)"),
        .int("seed", 0, in: .nonNegative, "seed of the random weights"),
    ]

    public static let reference: [OptionSpec] = [
        OptionSpec("path", .path(mustExist: true), default: .absent(note: "frozen copy of the starting policy"),
                   help: "a different model (GGUF file or Hugging Face folder) as the reference"),
        .bool("cache_logprobs", false, "compute reference log-probs once before training and reuse them"),
    ]

    public static let optimizer: [OptionSpec] = [
        .double("lr", 1e-6, in: .positive, "peak learning rate (AdamW)"),
        .double("beta1", 0.9, in: NumericRange(lower: 0, upper: 1, upperOpen: true), "AdamW first-moment decay"),
        .double("beta2", 0.999, in: NumericRange(lower: 0, upper: 1, upperOpen: true), "AdamW second-moment decay"),
        .double("eps", 1e-8, in: .positive, "AdamW denominator epsilon"),
        .double("weight_decay", 0.0, in: .nonNegative, "decoupled weight decay"),
        .double("max_grad_norm", 1.0, in: .nonNegative, "clip the global gradient L2 norm to this; 0 = no clipping"),
        .choice("schedule", ["constant", "linear", "cosine"], "constant", "learning-rate decay after warmup"),
        .int("warmup_steps", 0, in: .closed(0, RecipeSchema.maxSteps), "linear warmup from 0 over this many steps"),
        .double("min_lr_ratio", 0.0, in: .unitInterval, "linear/cosine decay floor, as a fraction of lr"),
    ]

    public static let training: [OptionSpec] = [
        OptionSpec("steps", .int(.closed(1, RecipeSchema.maxSteps)), default: .absent(note: "unset"), help: "optimizer steps (set steps or epochs)"),
        OptionSpec("epochs", .int(.closed(1, 1_000_000)), default: .absent(note: "unset"), help: "passes over the training data (set steps or epochs)"),
        .int("batch_size", 8, in: .closed(1, 1_048_576), "examples (pairs) per micro-batch"),
        .int("grad_accum", 1, in: .closed(1, 1_048_576), "micro-batches per optimizer step"),
        .int("max_length", 1024, in: .closed(1, 1_048_576), "longest prompt + completion in tokens"),
        .int("seed", 0, in: .nonNegative, "seed of every random choice of the run (data order, splits, init)"),
        .int("eval_every", 0, in: .closed(0, RecipeSchema.maxSteps), "evaluate every N steps; 0 = never (needs a split in data)"),
        .int("checkpoint_every", 0, in: .closed(0, RecipeSchema.maxSteps), "checkpoint every N steps; 0 = only at the end"),
        .int("keep_checkpoints", 2, in: .closed(1, 10_000), "most recent checkpoints kept on disk"),
        .int("log_every", 1, in: .closed(1, RecipeSchema.maxSteps), "record metrics every N steps"),
        .bool("share_prompt", true, "pack each pair as [prompt | chosen | rejected] so the prompt is computed once"),
        .int("eval_generations", 0, in: .closed(0, 1_000_000),
             "answer this many held-out prompts greedily at step 0 and at the end, scored by the reward plugin; 0 = never (needs a split in data)"),
        .int("eval_max_new_tokens", 64, in: .closed(1, 1_048_576), "longest answer of eval_generations, in tokens"),
    ]

    public static let output: [OptionSpec] = [
        OptionSpec("name", .string, default: .absent(note: "the recipe's file name"), help: "run name: letters, digits, '.', '_', '-'; at most 100 characters"),
        OptionSpec("dir", .path(mustExist: false), default: .absent(note: "only var/runs/<run>/export"),
                   help: "also export the final model to this folder, relative to the recipe's folder (replaced by each completed run; e.g. a reward model that other recipes read); must be new or a previous export (holding .keel-export), and neither the recipe's folder, var/ nor a folder containing them"),
        OptionSpec("reference_dir", .path(mustExist: false), default: .absent(note: "not exported"),
                   help: "also export the reference model at the end to this folder (e.g. for the `implicit` reward of a DPO policy)"),
    ]

    public static let logging: [OptionSpec] = [
        OptionSpec("tensorboard", .path(mustExist: false), default: .absent(note: "no event files"),
                   help: "write TensorBoard event files live to <this folder>/<run id>/, relative to the recipe's folder (tags as TRL's: train/loss, eval/rewards/margins, …)"),
    ]
}
