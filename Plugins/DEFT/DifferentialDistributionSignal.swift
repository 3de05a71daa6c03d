import KeelCore

/// Provides `expectation-vector` as DEFT's Q_diff = Q_pos − Q_neg (`DifferentialDistribution`) over the
/// training pairs as tokenised, before token-level filters such as `deft` keep their top fraction: the
/// vector whose expectation under the policy, `policy-expectations`, is DEFT's differential distribution
/// reward R(x, y) that `deft-guidance` reads. Fixed for the run.
public final class DifferentialDistributionSignal: SignalProvider {
    public static let descriptor = PluginDescriptor(
        name: "differential-distribution", kind: .signal,
        summary: "DEFT's Q_diff (chosen minus rejected token distribution of the training pairs) as the expectation vector",
        provides: [ProvidedSignal(Signals.expectationVector.key, "Q_diff [V] over the training pairs, fixed for the run")])

    private var qDiff: [Float] = []

    public init(options: ResolvedOptions) throws {}

    public func prepare(_ run: SignalRun) throws {
        qDiff = try DifferentialDistribution.of(run.tokenizedTrainingPairs, vocabularySize: run.policy.config.vocab,
                                                user: Self.descriptor.name).map { Float($0) }
    }

    public func compute(_ keys: [SignalKey], for batch: SignalBatch, in run: SignalRun, into values: inout SignalValues) throws {
        values.set(Signals.expectationVector, qDiff)
    }
}
