import Foundation
import KeelModels

/// `keel bench model` and `keel bench dpo`: the real model on real HH text, measured the way
/// ../shared/bench/bench_torch.py measures PyTorch, so that the two can be run back to back:
///   fwd     forward with the full [B·T, V] logits (as HF computes them), no grad
///   fwdbwd  forward + backward of Σ log p(x_{t+1} | x_≤t) over every position
///   dpo     one DPO step: reference forward (separate frozen copy, no grad), policy forward+backward
///           on [chosen…; rejected…], the given preference loss (`keel bench dpo`: the `dpo` plugin,
///           sigmoid, β = 0.1), AdamW step, zero grad. By default each
///           pair is packed as [prompt | chosen | rejected] (`SharedPromptPairBatch`), so its prompt is
///           computed once; tokens/s still counts the unshared workload (B rows × T tokens, as
///           bench_torch.py computes it), so that the ratio against PyTorch compares the same work.
/// One mode per process (peak RSS belongs to that mode); the thread count is the pool's (KEEL_THREADS).
/// Times are the median of `iterations` steps after `warmup` untimed ones.
public enum ModelBenchmark {
    public enum Mode: String, CaseIterable, Codable, Sendable {
        case fwd, fwdbwd, dpo
    }

    public struct Options: Sendable {
        public var mode: Mode
        public var modelPath: String
        /// HH-format JSON lines ({"chosen", "rejected"} dialogues).
        public var dataPath: String
        /// Sequences per step (dpo: 2 rows per pair, so batch/2 pairs).
        public var batch = 4
        public var length = 256
        public var iterations = 5
        public var warmup = 1
        /// Per-kernel times (Profiler) over the timed iterations.
        public var profile = false
        /// dpo: compute each pair's prompt once (false: chosen and rejected as separate rows).
        public var sharesPrompt = true

        public init(mode: Mode, modelPath: String, dataPath: String) {
            self.mode = mode
            self.modelPath = modelPath
            self.dataPath = dataPath
        }
    }

    public struct KernelTime: Codable, Sendable {
        public let name: String
        /// Per step.
        public let seconds: Double
        public let share: Double
    }

    public struct Report: Codable, Sendable {
        public let mode: Mode
        public let threads: Int
        public let batch: Int
        public let length: Int
        /// Tokens per step of the unshared workload (B·T; every row is exactly T tokens long), which
        /// tokens/s counts even when dpo shares prompts and so computes fewer positions.
        public let tokensPerStep: Int
        /// dpo: whether pairs shared their prompt.
        public let sharedPrompt: Bool?
        /// Positions one forward pass computes (mean over the timed steps): B·T, or for shared prompts
        /// the packed pairs' Σ |prompt| + |chosen| + |rejected|.
        public let computedPositionsPerStep: Double
        public let stepSecondsMedian: Double
        public let stepSecondsMin: Double
        public let stepSecondsMax: Double
        public let tokensPerSecond: Double
        /// dpo: reference forward, policy forward+backward, optimizer (medians).
        public let phases: [String: Double]?
        public let loadSeconds: Double
        public let peakRSSMiB: Double
        public let loadAverageAtStart: Double
        public let loadAverageAtEnd: Double
        public let kernels: [KernelTime]?
    }

    /// `preferenceLoss` is the loss of the dpo mode (fed policy and reference log-probs of the pairs).
    public static func run(_ options: Options, preferenceLoss: (any LossPlugin)? = nil) throws -> Report {
        let loadAtStart = loadAverage()
        let loadStart = now()
        let gguf = try GGUFFile(path: options.modelPath)
        let model = try LlamaModel(weights: ModelWeights(gguf: gguf))
        let loadSeconds = now() - loadStart
        let tokenizer = try BPETokenizer(gguf: gguf)
        let B = options.batch, T = options.length
        var phases: [String: [Double]] = [:]
        var computedPositions: [Int] = []
        let step: (Int) throws -> Void
        switch options.mode {
        case .fwd, .fwdbwd:
            let batch = try textBatch(tokenizer, path: options.dataPath, rows: B, length: T)
            if options.mode == .fwd {
                step = { _ in _ = model.logits(batch) }
            } else {
                step = { _ in
                    let loss = model.targetLogProbs(batch).sum() * -1
                    loss.backward()
                    model.parameters.zeroGrad()
                }
            }
        case .dpo:
            let pairs = try dpoPairs(tokenizer, path: options.dataPath, length: T)
            guard pairs.count >= B / 2, B % 2 == 0, B >= 2 else {
                throw BenchmarkError("\(options.dataPath): need \(B / 2) pairs whose prompt+completion reach \(T) tokens, found \(pairs.count) (batch must be even)")
            }
            guard let preferenceLoss else { throw BenchmarkError("the dpo mode needs a preference loss (the `dpo` plugin)") }
            let reference = try LlamaModel(weights: ModelWeights(gguf: gguf))
            for entry in reference.parameters { entry.tensor.requiresGrad = false }
            let optimizer = AdamW(parameters: model.parameters, learningRate: 1e-6, weightDecay: 0.01)
            let P = B / 2
            step = { iteration in
                let selected = (0..<P).map { pairs[(iteration * P + $0) % pairs.count] }
                let padID = tokenizer.paddingTokenID ?? 0
                let shared = SharedPromptPairBatch(selected.map { ($0.chosen.prompt, $0.chosen.completion, $0.rejected.completion) },
                                                   padID: padID)
                let separate = SequenceBatch(selected.map(\.chosen) + selected.map(\.rejected), padID: padID)
                computedPositions.append(options.sharesPrompt ? shared.length : separate.rows * separate.length)
                func scores(_ model: LlamaModel) -> LossBatch {
                    let (logProbs, counts) = options.sharesPrompt ? model.sequenceLogProbs(shared) : model.sequenceLogProbs(separate)
                    return .paired(chosen: SequenceScores(logProbs: logProbs.rows(0..<P), tokenCounts: Array(counts[..<P])),
                                   rejected: SequenceScores(logProbs: logProbs.rows(P..<2 * P), tokenCounts: Array(counts[P...])))
                }
                let t0 = now()
                let referenceScores = withNoGrad { scores(reference) }
                let t1 = now()
                try preferenceLoss.loss(LossInput(policy: scores(model), reference: referenceScores)).loss.backward()
                let t2 = now()
                optimizer.step()
                optimizer.zeroGrad()
                let t3 = now()
                phases["reference_forward", default: []].append(t1 - t0)
                phases["policy_forward_backward", default: []].append(t2 - t1)
                phases["optimizer", default: []].append(t3 - t2)
            }
        }

        var times: [Double] = []
        for iteration in 0..<(options.warmup + options.iterations) {
            let timed = iteration >= options.warmup
            if timed && options.profile { Profiler.isEnabled = true }
            if iteration == options.warmup { phases = [:]; computedPositions = []; Profiler.reset() }
            let start = now()
            try step(iteration)
            if timed { times.append(now() - start) }
        }
        Profiler.isEnabled = false
        let median = median(times)
        var kernels: [KernelTime]?
        if options.profile {
            kernels = Profiler.snapshot().map {
                KernelTime(name: $0.key, seconds: $0.value.seconds / Double(times.count),
                           share: $0.value.seconds / times.reduce(0, +))
            }.sorted { $0.seconds > $1.seconds }
        }
        return Report(mode: options.mode, threads: ThreadPool.shared.threadCount, batch: B, length: T, tokensPerStep: B * T,
                      sharedPrompt: options.mode == .dpo ? options.sharesPrompt : nil,
                      computedPositionsPerStep: computedPositions.isEmpty ? Double(B * T)
                          : Double(computedPositions.reduce(0, +)) / Double(computedPositions.count),
                      stepSecondsMedian: median, stepSecondsMin: times.min() ?? 0, stepSecondsMax: times.max() ?? 0,
                      tokensPerSecond: Double(B * T) / median,
                      phases: phases.isEmpty ? nil : phases.mapValues { Self.median($0) },
                      loadSeconds: loadSeconds, peakRSSMiB: peakRSSMiB(), loadAverageAtStart: loadAtStart,
                      loadAverageAtEnd: loadAverage(), kernels: kernels)
    }

    /// B rows of T tokens cut from the HH "chosen" dialogues tokenised back to back, every position a
    /// target (as bench_torch.py's fwd/fwdbwd modes).
    static func textBatch(_ tokenizer: BPETokenizer, path: String, rows: Int, length: Int) throws -> SequenceBatch {
        var ids: [Int] = []
        try readJSONLines(path: path, limit: nil) { object, _ in
            if ids.count < rows * length { ids += tokenizer.encode(try stringField(object, "chosen")) }
        }
        guard ids.count >= rows * length else {
            throw BenchmarkError("\(path): its chosen dialogues have \(ids.count) tokens, fewer than \(rows)×\(length)")
        }
        return SequenceBatch((0..<rows).map { r in
            let row = ids[r * length..<(r + 1) * length]
            return PromptCompletionTokens(prompt: [row.first!], completion: Array(row.dropFirst()))
        }, padID: 0)
    }

    /// HH pairs tokenised as prompt + completion + EOS and cut to exactly `length` tokens, keeping only
    /// those where both rows reach `length` and keep at least one completion token, so that every step
    /// computes B×T positions like bench_torch.py's padded batches.
    static func dpoPairs(_ tokenizer: BPETokenizer, path: String, length: Int) throws
        -> [(chosen: PromptCompletionTokens, rejected: PromptCompletionTokens)] {
        var pairs: [(chosen: PromptCompletionTokens, rejected: PromptCompletionTokens)] = []
        try readJSONLines(path: path, limit: nil) { object, _ in
            guard pairs.count < 64,
                  case .success(let (prompt, chosen, rejected)) = HHSource.split(chosen: try stringField(object, "chosen"),
                                                                                 rejected: try stringField(object, "rejected")),
                  let c = try? tokenizer.encode(prompt: prompt, completion: chosen),
                  let r = try? tokenizer.encode(prompt: prompt, completion: rejected) else { return }
            func cut(_ s: PromptCompletionTokens) -> PromptCompletionTokens? {
                let completion = s.completion + [tokenizer.eosTokenID ?? 0]
                guard s.prompt.count < length, s.prompt.count + completion.count >= length else { return nil }
                return PromptCompletionTokens(prompt: s.prompt, completion: Array(completion.prefix(length - s.prompt.count)))
            }
            if let c = cut(c), let r = cut(r) { pairs.append((c, r)) }
        }
        return pairs
    }

    public static func format(_ r: Report) -> String {
        func f(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }
        var lines = ["\(r.mode.rawValue), \(r.threads) thread(s), \(r.batch)×\(r.length): "
                     + (r.sharedPrompt == true ? "prompt shared (\(f(r.computedPositionsPerStep, 0)) positions computed; tok/s counts the unshared tokens), " : "")
                     + "\(f(r.stepSecondsMedian, 3)) s/step (\(f(r.stepSecondsMin, 3))–\(f(r.stepSecondsMax, 3))), "
                     + "\(f(r.tokensPerSecond, 1)) tok/s, peak RSS \(f(r.peakRSSMiB, 0)) MiB, load \(f(r.loadSeconds)) s, "
                     + "load average \(f(r.loadAverageAtStart)) → \(f(r.loadAverageAtEnd))"]
        for (name, seconds) in (r.phases ?? [:]).sorted(by: { $0.key < $1.key }) { lines.append("  \(name): \(f(seconds, 3)) s") }
        for k in r.kernels ?? [] {
            lines.append("  \(k.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(f(k.seconds, 3)) s  \(f(100 * k.share, 1)) %")
        }
        return lines.joined(separator: "\n")
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    static func loadAverage() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
              let first = text.split(separator: " ").first, let value = Double(first) else { return -1 }
        return value
    }

    /// getrusage's ru_maxrss (KiB on Linux).
    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_maxrss) / 1024
    }
}

public struct BenchmarkError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
