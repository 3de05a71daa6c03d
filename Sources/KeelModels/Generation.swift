import Foundation

// Autoregressive generation with a key/value cache: one sequence, or several continuations of one prompt
// decoded as one batch (`generateSamples`).
//
// Prefill runs the prompt through every layer once and keeps each layer's rotated keys and values;
// each later step feeds only the newest token (T = 1): its query attends to all cached positions, so a
// step costs one row of every matmul instead of a forward over the whole prefix (Pope et al. 2022,
// "Efficiently Scaling Transformer Inference", §2). The layer itself is `LlamaModel.layerForward`,
// the same code the training forward runs; only the attention reads the cache.

/// Problems with a generation request (bad token ids, a full context).
public struct GenerationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Rotated keys and values of every layer for the positions seen so far of one sequence.
public final class KVCache {
    /// Positions the cache can hold (at most the model's context length).
    public let capacity: Int
    /// Positions filled so far: the next token is at position `count`.
    public private(set) var count = 0
    /// Per layer [capacity, NKV·D], rows in position order.
    let keys: [Tensor]
    let values: [Tensor]

    init(layers: Int, capacity: Int, rowWidth: Int) {
        self.capacity = capacity
        keys = (0..<layers).map { _ in Tensor(uninitialized: [capacity, rowWidth]) }
        values = (0..<layers).map { _ in Tensor(uninitialized: [capacity, rowWidth]) }
    }

    func advance(by positions: Int) { count += positions }

    /// A cache holding the same positions as `self`, for up to `capacity` positions (a continuation of
    /// the same prefix).
    func copy(capacity: Int) -> KVCache {
        let copy = KVCache(layers: keys.count, capacity: capacity, rowWidth: keys.first?.shape[1] ?? 0)
        let filled = count * (keys.first?.shape[1] ?? 0)
        for (source, target) in zip(keys + values, copy.keys + copy.values) { target.pointer.update(from: source.pointer, count: filled) }
        copy.count = count
        return copy
    }
}

extension LlamaModel {
    /// An empty cache for up to `capacity` positions (default and maximum: the model's context length).
    public func makeKVCache(capacity: Int? = nil) -> KVCache {
        let positions = min(capacity ?? config.maxPositions, config.maxPositions)
        return KVCache(layers: config.layers, capacity: max(positions, 1), rowWidth: config.kvHeads * config.headDim)
    }

    /// Runs `tokens` at positions cache.count ..< cache.count + tokens.count (prefill when the cache is
    /// empty, one decoding step for a single token), appends their keys/values to `cache`, and returns
    /// the logits [V] that predict the token after the last one. No gradient is recorded.
    public func decode(_ tokens: [Int], cache: KVCache) throws -> Tensor {
        guard !tokens.isEmpty else { throw GenerationError("decode: no tokens to feed") }
        if let bad = tokens.firstIndex(where: { $0 < 0 || $0 >= config.vocab }) {
            throw GenerationError("decode: token id \(tokens[bad]) at index \(bad) is outside the vocabulary 0..<\(config.vocab)")
        }
        guard cache.count + tokens.count <= cache.capacity else {
            throw GenerationError("decode: \(cache.count) cached + \(tokens.count) new positions exceed the cache's \(cache.capacity)")
        }
        return withNoGrad {
            let T = tokens.count, P = cache.count, C = config.hidden
            let KVD = config.kvHeads * config.headDim
            var x = embed(tokens.map { Int32($0) })
            let scratch = makeActivations(B: 1, T: T, input: x, forBackward: false)
            for (index, w) in layers.enumerated() {
                let keys = cache.keys[index], values = cache.values[index]
                x = layerForward(w, scratch.with(input: x), B: 1, T: T, positionOffset: P) { a in
                    (keys.pointer + P * KVD).update(from: a.k.pointer, count: T * KVD)
                    (values.pointer + P * KVD).update(from: a.v.pointer, count: T * KVD)
                    cachedAttentionForward(a.attention.pointer, a.q.pointer, keys.pointer, values.pointer, T: T,
                                           positionOffset: P, NH: config.heads, NKV: config.kvHeads, D: config.headDim,
                                           scoring: attentionScoring(w))
                }
            }
            cache.advance(by: T)
            // Only the last row feeds the LM head.
            let last = Tensor(uninitialized: [1, C]), rstd = Tensor(uninitialized: [1])
            finalNormForward(last.pointer, rstd.pointer, x.pointer + (T - 1) * C, N: 1)
            let logits = Tensor(uninitialized: [config.vocab])
            headLogits(logits.pointer, last.pointer, rows: [0])
            return logits
        }
    }

    /// Continues `prompt` token by token until a stop token (which is included in the result), the
    /// token limit, or the end of the context. `onToken` sees each new token as it is chosen (streaming).
    public func generate(prompt: [Int], options: GenerationOptions,
                         onToken: ((Int) -> Void)? = nil) throws -> GenerationResult {
        guard !prompt.isEmpty else { throw GenerationError("generate: the prompt has no tokens") }
        guard prompt.count < config.maxPositions else {
            throw GenerationError("generate: the prompt's \(prompt.count) tokens leave no room in the model's \(config.maxPositions) positions")
        }
        guard options.maxNewTokens > 0 else { return GenerationResult(tokens: [], stopReason: .tokenLimit) }
        let cache = makeKVCache(capacity: min(config.maxPositions, prompt.count + options.maxNewTokens))
        var sampler = TokenSampler(options.sampling, seed: options.seed)
        var logits = try decode(prompt, cache: cache)
        var generated: [Int] = []
        while true {
            let next = sampler.sample(logits)
            generated.append(next)
            onToken?(next)
            if options.stopTokenIDs.contains(next) { return GenerationResult(tokens: generated, stopReason: .stopToken(next)) }
            if generated.count == options.maxNewTokens { return GenerationResult(tokens: generated, stopReason: .tokenLimit) }
            // Prompt and continuation together never exceed the context the model was trained on.
            if prompt.count + generated.count == config.maxPositions {
                return GenerationResult(tokens: generated, stopReason: .contextFull)
            }
            logits = try decode([next], cache: cache)
        }
    }
}

extension LlamaModel {
    /// Continues every prompt of `prompts` (row b: prompts[b] with a sampler seeded by seeds[b];
    /// `options.seed` is not used), each row stopping as `generate` stops.
    ///
    /// Decoding is memory-bound — a step at T = 1 reads every weight matrix to multiply one row — so the
    /// rows are decoded together: each prompt is prefilled on its own (a row repeating the previous row's
    /// prompt copies its cache instead), then every step feeds the rows' newest tokens as ONE batch of B
    /// rows (T = 1), each at its own position with its own cache, reading the weights once for all rows.
    /// A row that has stopped is fed on until the last one stops; its further tokens are dropped.
    public func generateBatch(prompts: [[Int]], options: GenerationOptions, seeds: [UInt64]) throws -> [GenerationResult] {
        guard prompts.count == seeds.count else {
            throw GenerationError("generate: \(prompts.count) prompts for \(seeds.count) seeds; expected one seed per row")
        }
        for prompt in prompts {
            guard !prompt.isEmpty else { throw GenerationError("generate: a prompt has no tokens") }
            guard prompt.count < config.maxPositions else {
                throw GenerationError("generate: the prompt's \(prompt.count) tokens leave no room in the model's \(config.maxPositions) positions")
            }
        }
        let B = prompts.count
        guard B > 0, options.maxNewTokens > 0 else { return prompts.map { _ in GenerationResult(tokens: [], stopReason: .tokenLimit) } }
        var caches: [KVCache] = [], logits: [Tensor] = []
        for (b, prompt) in prompts.enumerated() {
            let capacity = min(config.maxPositions, prompt.count + options.maxNewTokens)
            if b > 0, prompts[b - 1] == prompt {
                caches.append(caches[b - 1].copy(capacity: capacity))
                logits.append(logits[b - 1])
            } else {
                let cache = makeKVCache(capacity: capacity)
                logits.append(try decode(prompt, cache: cache))
                caches.append(cache)
            }
        }
        var samplers = seeds.map { TokenSampler(options.sampling, seed: $0) }
        var generated = [[Int]](repeating: [], count: B)
        var stopped = [GenerationResult.StopReason?](repeating: nil, count: B)
        while true {
            for b in 0..<B where stopped[b] == nil {
                let next = samplers[b].sample(logits[b])
                generated[b].append(next)
                if options.stopTokenIDs.contains(next) {
                    stopped[b] = .stopToken(next)
                } else if generated[b].count == options.maxNewTokens {
                    stopped[b] = .tokenLimit
                } else if prompts[b].count + generated[b].count == config.maxPositions {
                    stopped[b] = .contextFull
                }
            }
            // Rows still running decide the batch; stopped rows ride along only while others run.
            if stopped.allSatisfy({ $0 != nil }) { break }
            let running = (0..<B).filter { stopped[$0] == nil }
            let rowLogits = decodeRows(running.map { generated[$0][generated[$0].count - 1] }, caches: running.map { caches[$0] })
            for (row, b) in running.enumerated() { logits[b] = rowLogits[row] }
        }
        return (0..<B).map { GenerationResult(tokens: generated[$0], stopReason: stopped[$0]!) }
    }

    /// One decoding step for B sequences: token b continues sequence b at position caches[b].count, its
    /// key/value row goes into caches[b]; returns each row's next-token logits [V].
    private func decodeRows(_ tokens: [Int], caches: [KVCache]) -> [Tensor] {
        withNoGrad {
            let B = tokens.count, C = config.hidden, V = config.vocab
            let KVD = config.kvHeads * config.headDim, QD = config.heads * config.headDim
            let positions = caches.map(\.count), rowPositions = positions.map { Int32($0) }
            var x = embed(tokens.map { Int32($0) })
            let scratch = makeActivations(B: B, T: 1, input: x, forBackward: false)
            for (index, w) in layers.enumerated() {
                x = rowPositions.withUnsafeBufferPointer { rowPositions in
                layerForward(w, scratch.with(input: x), B: B, T: 1, positionOffset: 0, positions: rowPositions.baseAddress) { a in
                    for (b, cache) in caches.enumerated() {
                        let keys = cache.keys[index], values = cache.values[index], P = positions[b]
                        (keys.pointer + P * KVD).update(from: a.k.pointer + b * KVD, count: KVD)
                        (values.pointer + P * KVD).update(from: a.v.pointer + b * KVD, count: KVD)
                        cachedAttentionForward(a.attention.pointer + b * QD, a.q.pointer + b * QD, keys.pointer, values.pointer,
                                               T: 1, positionOffset: P, NH: config.heads, NKV: config.kvHeads, D: config.headDim,
                                               scoring: attentionScoring(w))
                    }
                }
                }
            }
            for cache in caches { cache.advance(by: 1) }
            let normed = Tensor(uninitialized: [B, C]), rstd = Tensor(uninitialized: [B])
            finalNormForward(normed.pointer, rstd.pointer, x.pointer, N: B)
            let logits = Tensor(uninitialized: [B, V])
            headLogits(logits.pointer, normed.pointer, rows: Array(0..<B))
            return (0..<B).map { Tensor(shape: [V], storage: logits.storage, offset: logits.offset + $0 * V) }
        }
    }
}

public struct GenerationOptions: Sendable {
    public var maxNewTokens: Int
    /// Generation stops after emitting any of these (e.g. EOS, ChatML's `<|im_end|>`).
    public var stopTokenIDs: Set<Int>
    public var sampling: SamplingOptions
    public var seed: UInt64

    public init(maxNewTokens: Int = 128, stopTokenIDs: Set<Int> = [], sampling: SamplingOptions = .greedy, seed: UInt64 = 0) {
        self.maxNewTokens = maxNewTokens
        self.stopTokenIDs = stopTokenIDs
        self.sampling = sampling
        self.seed = seed
    }
}

public struct GenerationResult: Equatable, Sendable {
    public enum StopReason: Equatable, Sendable {
        case stopToken(Int), tokenLimit, contextFull
    }
    /// The new tokens (not the prompt), including the stop token if one ended generation.
    public let tokens: [Int]
    public let stopReason: StopReason
}

/// How the next token is drawn from the logits. Temperature 0 is greedy (argmax).
public struct SamplingOptions: Equatable, Sendable {
    /// Logits are divided by it before the softmax; 0 means greedy.
    public var temperature: Float
    /// Nucleus sampling (Holtzman et al. 2020): draw only from the smallest set of most likely tokens
    /// whose probabilities sum to at least topP. 1 keeps the whole vocabulary.
    public var topP: Float

    public static let greedy = SamplingOptions(temperature: 0, topP: 1)

    public init(temperature: Float, topP: Float = 1) {
        self.temperature = temperature
        self.topP = topP
    }
}

/// Draws tokens from logits with a seeded counter-based generator, so a (seed, options, model, prompt)
/// always yields the same text.
public struct TokenSampler {
    public let options: SamplingOptions
    private var generator: Philox

    public init(_ options: SamplingOptions, seed: UInt64) {
        self.options = options
        generator = Philox(seed: seed)
    }

    /// A token id drawn from logits [V].
    public mutating func sample(_ logits: Tensor) -> Int {
        let values = UnsafeBufferPointer(start: logits.pointer, count: logits.count)
        guard options.temperature > 0 else { return argmax(values) }
        // softmax(logits / temperature) in Double, shifted by the max for range safety.
        let inverseTemperature = 1 / Double(options.temperature)
        let maxLogit = Double(values.max() ?? 0)
        let probabilities = values.map { Foundation.exp((Double($0) - maxLogit) * inverseTemperature) }
        var candidates = Array(probabilities.indices)
        if options.topP < 1 {
            let total = probabilities.reduce(0, +), threshold = Double(options.topP) * total
            // Sorting the whole vocabulary for every token dominated batched sampling. The nucleus is a
            // prefix of the sorted order, so it lies within any set of the most likely tokens whose mass
            // reaches the threshold: keep those at or above a floor (lowered until they do), sort only them.
            var floor = 1e-4
            while floor > 0 {
                let above = candidates.filter { probabilities[$0] >= floor }
                // The margin keeps summation order from mattering: short of it, the floor drops further.
                if above.reduce(0.0, { $0 + probabilities[$1] }) >= threshold * (1 + 1e-9) { candidates = above; break }
                floor = floor > 1e-300 ? floor * 1e-4 : 0
            }
            candidates.sort { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }
            var cumulative = 0.0, kept = 0
            while kept < candidates.count {
                cumulative += probabilities[candidates[kept]]
                kept += 1
                if cumulative >= threshold { break }
            }
            candidates.removeSubrange(kept...)
        }
        let total = candidates.reduce(0) { $0 + probabilities[$1] }
        let target = Double(generator.nextFloat()) * total
        var cumulative = 0.0
        for id in candidates {
            cumulative += probabilities[id]
            if target < cumulative { return id }
        }
        return candidates[candidates.count - 1]   // rounding left target ≥ the sum: the last candidate
    }

    private func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }
}

extension LlamaModel {
    /// How a layer scores keys: the model's scale and soft-cap, the layer's window.
    func attentionScoring(_ w: LayerWeights) -> AttentionScoring {
        AttentionScoring(scale: config.attentionScale, softcap: config.attentionSoftcap,
                         window: w.kind == .sliding ? config.slidingWindow : nil)
    }
}

/// Scores s = scale · q·k (then cap · tanh(s / cap) with a softcap) over the keys of the last `window`
/// positions (all with nil).
struct AttentionScoring {
    let scale: Float
    let softcap: Float?
    let window: Int?
}

/// Attention of T new query rows against a sequence's cache (batch of 1):
/// out [T, NH, D] ← q [T, NH, D], keys/values [P+T, NKV, D] (rotated, positions 0..<P+T);
/// query row t is at position P+t and sees keys 0...P+t (causal), from P+t−window+1 with a window;
/// query head h reads key/value head h / (NH/NKV) (GQA). The flash kernel (`attentionForward`) assumes queries and keys start at the
/// same position, so it cannot serve a decoding step (T = 1, P > 0); this is its plain row-by-row form,
/// which costs only (P+T)·D per query row: the matmuls, not attention, dominate a decoding step.
func cachedAttentionForward(_ out: UnsafeMutablePointer<Float>, _ q: UnsafePointer<Float>,
                            _ keys: UnsafePointer<Float>, _ values: UnsafePointer<Float>,
                            T: Int, positionOffset P: Int, NH: Int, NKV: Int, D: Int, scoring: AttentionScoring) {
    let group = NH / NKV
    let pool = ThreadPool.shared
    let chunks = pool.chunkCount(T * NH)
    let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunks * (P + T))
    defer { scores.deallocate() }
    pool.parallelFor(T * NH) { chunk, units in
        let s = scores + chunk * (P + T)
        for unit in units {
            let t = unit / NH, h = unit % NH, kvh = h / group, visible = P + t + 1
            let first = scoring.window.map { max(0, visible - $0) } ?? 0
            let qRow = q + (t * NH + h) * D, o = out + (t * NH + h) * D
            var rowMax = -Float.greatestFiniteMagnitude
            for j in first..<visible {
                s[j] = scoring.scale * dot(qRow, keys + (j * NKV + kvh) * D, D)
                if let cap = scoring.softcap { s[j] = softcapped(s[j], cap: cap) }
                rowMax = max(rowMax, s[j])
            }
            var total: Float = 0
            for j in first..<visible {
                s[j] = fastExp(s[j] - rowMax)
                total += s[j]
            }
            o.initialize(repeating: 0, count: D)
            for j in first..<visible {
                let weight = s[j] / total, v = values + (j * NKV + kvh) * D
                for i in 0..<D { o[i] += weight * v[i] }
            }
        }
    }
}

private func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 8 <= n {
        acc += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    var total = acc.sum()
    while i < n { total += a[i] * b[i]; i += 1 }
    return total
}
