/// One thing wrong with a recipe: `file:line:column: key.path: what was wrong; expected …`.
public struct RecipeDiagnostic: Error, Equatable, CustomStringConvertible {
    public let file: String
    public let mark: Mark
    /// Dotted path of the offending key, e.g. `training.batch_size` or `data[1].seed`; empty for the file.
    public let keyPath: String
    public let message: String

    public init(file: String, mark: Mark, keyPath: String, message: String) {
        self.file = file
        self.mark = mark
        self.keyPath = keyPath
        self.message = message
    }

    /// Line 0: no line of a file (a `--set` override, named by `file`).
    public var description: String {
        let place = mark.line == 0 ? file : "\(file):\(mark)"
        return keyPath.isEmpty ? "\(place): \(message)" : "\(place): \(keyPath): \(message)"
    }
}

/// Every diagnostic of one or more recipes, in file order. Thrown when a recipe cannot run.
public struct RecipeErrors: Error, CustomStringConvertible {
    public let diagnostics: [RecipeDiagnostic]
    /// At most this many are printed (and stored by the daemon), then a count of the rest.
    public static let shownLimit = 100

    public var description: String {
        let shown = diagnostics.prefix(Self.shownLimit).map(\.description)
        let rest = diagnostics.count - shown.count
        return (shown + (rest > 0 ? ["… and \(rest) more errors (the first \(Self.shownLimit) are shown)"] : [])).joined(separator: "\n")
    }
}

/// A value quoted in a message, cut to `limit` characters: a message stays short however long the
/// input, and never replays a whole file.
func excerpt(_ text: String, limit: Int = 60) -> String {
    text.count <= limit ? text : String(text.prefix(limit)) + "… (\(text.count) characters)"
}

/// Collects diagnostics while decoding so that a user sees all mistakes in one run.
final class DiagnosticSink {
    let file: String
    private(set) var diagnostics: [RecipeDiagnostic] = []

    init(file: String) { self.file = file }

    func error(_ mark: Mark, _ keyPath: String, _ message: String) {
        diagnostics.append(RecipeDiagnostic(file: file, mark: mark, keyPath: keyPath, message: message))
    }

    var isEmpty: Bool { diagnostics.isEmpty }
}

/// `parent.key` / `parent[i]` for key paths in messages.
func joinPath(_ parent: String, _ key: String) -> String { parent.isEmpty ? excerpt(key) : "\(parent).\(excerpt(key))" }
func joinPath(_ parent: String, index: Int) -> String { "\(parent)[\(index)]" }

/// The closest candidate within a small edit distance, for "did you mean …?".
/// Threshold: at most a third of the word (at least 1, so `lr`→`rl` still matches, at most 3).
func closestMatch(to word: String, in candidates: [String]) -> String? {
    let limit = min(3, max(1, word.count / 3))
    let scored = candidates.map { ($0, editDistance(word, $0)) }.filter { $0.1 <= limit }
    return scored.min { $0.1 < $1.1 }?.0
}

/// "; did you mean 'x'?" or "; expected one of a, b, c" when nothing is close.
/// "unknown key; …" for a key of the mapping at `path` that is not among `candidates`: TRL's name for a
/// Keel key first, then the closest candidate — or, for YAML's merge key `<<`, that merge keys are not supported.
func unknownKeyMessage(_ what: String, _ key: String, in candidates: [String], at path: String) -> String {
    guard key != "<<" else {
        return "found a YAML merge key (<<), which Keel does not support; expected the keys written out (an alias can stand for a whole value)"
    }
    return "unknown \(what); " + (TRLKeys.suggestion(for: key, at: path) ?? suggestion(for: key, in: candidates))
}

func suggestion(for word: String, in candidates: [String]) -> String {
    if let match = closestMatch(to: word, in: candidates) { return "did you mean '\(match)'?" }
    return "expected one of " + candidates.sorted().joined(separator: ", ")
}

/// Keel's key for a name TRL's `DPOConfig` / transformers' `TrainingArguments` use, for people who bring
/// a TRL config: each answered by "did you mean" with where the value goes in a recipe.
public enum TRLKeys {
    public static let keel: [String: String] = [
        "learning_rate": "optimizer.lr",
        "lr_scheduler_type": "optimizer.schedule",
        "warmup_steps": "optimizer.warmup_steps",
        "warmup_ratio": "optimizer.warmup_steps",
        "weight_decay": "optimizer.weight_decay",
        "max_grad_norm": "optimizer.max_grad_norm",
        "adam_beta1": "optimizer.beta1",
        "adam_beta2": "optimizer.beta2",
        "adam_epsilon": "optimizer.eps",
        "num_train_epochs": "training.epochs",
        "max_steps": "training.steps",
        "per_device_train_batch_size": "training.batch_size",
        "gradient_accumulation_steps": "training.grad_accum",
        "max_length": "training.max_length",
        "max_prompt_length": "training.max_length",
        "max_completion_length": "training.max_length",
        "seed": "training.seed",
        "logging_steps": "training.log_every",
        "eval_steps": "training.eval_every",
        "save_steps": "training.checkpoint_every",
        "save_total_limit": "training.keep_checkpoints",
        "beta": "loss.beta",
        "loss_type": "loss.loss_type",
        "label_smoothing": "loss.label_smoothing",
        "rpo_alpha": "loss: [{name: dpo}, {name: sft, weight: α}]",
        "precompute_ref_log_probs": "reference.cache_logprobs",
        "ref_model": "reference.path",
        "model_name_or_path": "model",
        "output_dir": "output.dir",
        "run_name": "output.name",
        "sync_ref_model": "schedulers: [{name: ref-sync}]",
        "ref_model_sync_steps": "schedulers: [{name: ref-sync, tau: N}]",
        "ref_model_mixup_alpha": "schedulers: [{name: ref-sync, alpha: α}]",
    ]

    /// How Keel's key reads from `path` (a section such as `optimizer`, a node such as `loss[0]`, or ""):
    /// the bare key inside its own section or node, the full key path elsewhere.
    static func suggestion(for key: String, at path: String) -> String? {
        guard let target = keel[key] else { return nil }
        let section = String(path.prefix { $0 != "." && $0 != "[" })
        let note = key == "warmup_ratio" ? " (in steps: TRL's ratio × the run's steps)" : ""
        if !section.isEmpty, target.hasPrefix(section + ".") {
            let bare = target.dropFirst(section.count + 1)
            // The same name in its own section is a key this plugin does not have, not TRL's spelling.
            return bare == key ? nil : "did you mean '\(bare)'? ('\(key)' is TRL's name)\(note)"
        }
        return "did you mean '\(target)'? ('\(key)' is TRL's name)\(note)"
    }
}

/// Edit distance counting insertions, deletions, substitutions and swaps of adjacent letters as one
/// edit each (Damerau's "optimal string alignment"), since swapped letters are the commonest typo.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in stride(from: 1, through: a.count, by: 1) {
        for j in stride(from: 1, through: b.count, by: 1) {
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
        }
    }
    return d[a.count][b.count]
}
