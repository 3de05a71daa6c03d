import Foundation

/// `policy-logprobs` and `policy-expectations` from one forward pass of the policy: the completions'
/// summed log-probs, and with an expectation vector q the mean expectation of q per completion (the LM
/// head's softmax-expectation kernel beside its log-softmax, one forward and one backward).
public final class PolicySignals: SignalProvider {
    public static let descriptor = PluginDescriptor(
        name: "policy", kind: .signal, summary: "the policy's sequence log-probs (and expectations of a vector) from one forward pass",
        provides: [
            ProvidedSignal(Signals.policyLogProbs.key, requires: .policy, "Σ log πθ over each completion's tokens, and their count"),
            ProvidedSignal(Signals.policyExpectations.key, needs: [Signals.expectationVector.key], requires: [.policy, .separateRows],
                           "(1/|y|)·Σ_t Σ_v πθ(v | x, y_<t)·q(v) per completion"),
        ])

    public init(options: ResolvedOptions) throws {}

    public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
        if keys.contains(Signals.policyExpectations.key) {
            let (scores, expectations) = batch.sequences.scoresAndExpectations(run.policy, vector: try values[Signals.expectationVector])
            values.set(Signals.policyExpectations, expectations)
            if keys.contains(Signals.policyLogProbs.key) { values.set(Signals.policyLogProbs, scores) }
        } else {
            values.set(Signals.policyLogProbs, batch.sequences.scores(run.policy))
        }
    }
}

/// `reference-logprobs`: the reference model's sequence log-probs, without gradients. When the run may
/// cache them (`SignalRun.cachesReference`), every pair's are computed once before training in fixed
/// batches (so a resumed run recomputes the same values bit for bit) and the reference is freed.
public final class ReferenceSignals: SignalProvider {
    public static let descriptor = PluginDescriptor(
        name: "reference", kind: .signal, summary: "the reference model's sequence log-probs, cached before training when allowed",
        provides: [ProvidedSignal(Signals.referenceLogProbs.key, requires: .reference, "Σ log πref over each completion's tokens, and their count")])

    private var cache: [MetricSplit: (chosen: [Float], rejected: [Float])] = [:]

    public init(options: ResolvedOptions) throws {}

    public func prepare(_ run: SignalRun) throws {
        guard run.cachesReference, let reference = run.reference else { return }
        for split in [MetricSplit.train, .eval] {
            let pairs = run.pairs(split)
            var chosen: [Float] = [], rejected: [Float] = []
            try withNoGrad {
                for start in stride(from: 0, to: pairs.count, by: run.batchSize) {
                    let batch = PairBatch(Array(pairs[start..<min(start + run.batchSize, pairs.count)]), padID: run.padID, sharesPrompt: run.sharesPrompt)
                    let scores = try batch.scores(reference).pairs("reference", for: Self.descriptor.name)
                    chosen += scores.chosen.logProbs.toArray()
                    rejected += scores.rejected.logProbs.toArray()
                }
            }
            cache[split] = (chosen, rejected)
        }
        run.releaseReference()
        run.note("reference: log-probs cached for \(run.trainPairs.count + run.evalPairs.count) pairs")
    }

    public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
        if let cache = cache[batch.split] {
            values.set(Signals.referenceLogProbs, .paired(
                chosen: SequenceScores(logProbs: Tensor(batch.indices.map { cache.chosen[$0] }), tokenCounts: batch.pairs.map(\.chosen.count)),
                rejected: SequenceScores(logProbs: Tensor(batch.indices.map { cache.rejected[$0] }), tokenCounts: batch.pairs.map(\.rejected.count))))
        } else if let reference = run.reference {
            values.set(Signals.referenceLogProbs, withNoGrad { batch.sequences.scores(reference) })
        } else {
            throw PluginInputError("\(Self.descriptor.name): the reference model is not loaded; expected the trainer to load it for a provider that requires it")
        }
    }
}

/// `rewards`: the recipe's reward (one plugin or a weighted sum) of each pair's completions, scored on
/// the source texts.
public final class RewardSignals: SignalProvider {
    public static let descriptor = PluginDescriptor(
        name: "rewards", kind: .signal, summary: "the recipe's reward of each completion",
        provides: [ProvidedSignal(Signals.rewards.key, requires: .rewardScorer, "r(x, y) of the chosen and the rejected completion")])

    public init(options: ResolvedOptions) throws {}

    public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
        guard let reward = run.rewards else { throw PluginInputError("a loss needs rewards but the recipe has no reward plugin") }
        var chosen: [Double] = [], rejected: [Double] = []
        for pair in batch.pairs {
            let (prompt, c, r) = try run.texts(of: pair)
            let scores = try reward.scorePair(prompt: prompt, chosen: c, rejected: r)
            chosen.append(scores.chosen)
            rejected.append(scores.rejected)
        }
        values.set(Signals.rewards, .paired(chosen: chosen, rejected: rejected))
    }
}

/// `last-hidden-states`: the policy's final hidden state at each sequence's last token (no LM head).
public final class HiddenStateSignals: SignalProvider {
    public static let descriptor = PluginDescriptor(
        name: "hidden-states", kind: .signal, summary: "the policy's final hidden state at each sequence's last token",
        provides: [ProvidedSignal(Signals.lastHiddenStates.key, requires: [.policy, .separateRows],
                                  "h_L at the last token, [2B, C]: chosen rows, then rejected rows")])

    public init(options: ResolvedOptions) throws {}

    public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
        values.set(Signals.lastHiddenStates, run.policy.lastHiddenStates(batch.sequences.separateRows))
    }
}
