import Foundation
import KeelCore

/// Trust-region reference updates (TR-DPO, Gorbatovski et al. 2024, arXiv 2404.09656).
///
/// A frozen reference keeps the policy near its starting point for the whole run; TR-DPO lets the
/// reference follow the policy. After every τ-th optimizer step (step % τ == 0), for every parameter:
///
///     θ_ref ← (1 − α)·θ_ref + α·θ
///
/// soft updates (α < 1, typically τ = 1) or hard ones (α = 1: the reference becomes a copy of the policy
/// every τ steps; the copy is bitwise). The reference is written in place through
/// `TrainingContext.parameter(_:of:)`, in Float, elementwise as `(1 − α)·ref + α·policy`; the trainer must
/// therefore give the reference its own storage (not views of the policy's).
///
/// Declares `mutates-reference`: the graph refuses it with `reference.cache_logprobs: true`, since cached
/// reference log-probs would belong to the old reference.
/// Checkpoints: this plugin saves only its `sync_count`; the reference weights themselves change, so the
/// trainer must checkpoint them beside the policy for a resumed run to continue the same trajectory.
/// Metrics at each sync: `ref/sync_count` (syncs so far) and `ref/param_delta_norm` = ‖θ − θ_ref‖₂ over
/// all parameters, before the sync.
public final class ReferenceSyncScheduler: SchedulerPlugin, Checkpointable {
    public enum Option {
        public static let alpha = "alpha"
        public static let tau = "tau"
    }

    public enum Metric {
        public static let syncCount = "ref/sync_count"
        public static let parameterDeltaNorm = "ref/param_delta_norm"
    }

    public enum StateKey {
        public static let syncCount = "sync_count"
    }

    public static let descriptor = PluginDescriptor(
        name: "ref-sync", kind: .scheduler,
        summary: "TR-DPO: mix the policy into the reference every τ optimizer steps, θ_ref ← (1−α)·θ_ref + α·θ",
        options: [
            .double(Option.alpha, 0.6, in: NumericRange(lower: 0, upper: 1, lowerOpen: true),
                    "α: weight of the policy in the mix; 1 = hard copy"),
            .int(Option.tau, 512, in: .atLeast(1), "τ: optimizer steps between syncs"),
        ],
        capabilities: [.mutatesReference], controls: [ControlledValue.reference],
        metrics: [Metric.syncCount, Metric.parameterDeltaNorm], stateKeys: [StateKey.syncCount])

    public let alpha: Double
    public let tau: Int
    public private(set) var syncCount = 0

    public init(options: ResolvedOptions) throws {
        alpha = options.double(Option.alpha) ?? 0.6
        tau = options.int(Option.tau) ?? 512
    }

    public func afterOptimizerStep(_ context: TrainingContext) throws {
        guard context.step > 0, context.step % tau == 0 else { return }
        // Every parameter is checked before any is written, so a mismatch leaves the reference intact.
        let pairs = try context.parameterNames(.policy).map { try pair($0, context) }
        var squaredDelta = 0.0
        for (policy, reference) in pairs {
            squaredDelta += Self.mix(policy: policy, into: reference, alpha: Float(alpha))
        }
        syncCount += 1
        context.record(metric: Metric.syncCount, value: Double(syncCount))
        context.record(metric: Metric.parameterDeltaNorm, value: squaredDelta.squareRoot())
    }

    private func pair(_ name: String, _ context: TrainingContext) throws -> (policy: Tensor, reference: Tensor) {
        guard let policy = context.parameter(name, of: .policy) else {
            throw PluginInputError("ref-sync: the policy has no parameter '\(name)' it listed")
        }
        guard let reference = context.parameter(name, of: .reference) else {
            throw PluginInputError("ref-sync: the reference model has no parameter '\(name)' (or is not loaded); expected the same parameters as the policy")
        }
        guard policy.shape == reference.shape else {
            throw PluginInputError("ref-sync: parameter '\(name)' has shape \(policy.shape) in the policy but \(reference.shape) in the reference")
        }
        return (policy, reference)
    }

    /// reference ← (1 − α)·reference + α·policy in place (α = 1: a copy); returns Σ (policy − reference)²
    /// before the update, in Double.
    static func mix(policy: Tensor, into reference: Tensor, alpha: Float) -> Double {
        let (p, r, n) = (policy.pointer, reference.pointer, policy.count)
        var squared = 0.0
        for i in 0..<n {
            let d = Double(p[i]) - Double(r[i])
            squared += d * d
        }
        if alpha == 1 {
            r.update(from: p, count: n)
        } else {
            let keep = 1 - alpha
            for i in 0..<n { r[i] = keep * r[i] + alpha * p[i] }
        }
        return squared
    }

    public func saveState() throws -> PluginState {
        var state = PluginState()
        try state.set(StateKey.syncCount, syncCount)
        return state
    }

    public func restoreState(_ state: PluginState) throws {
        syncCount = try state.get(Int.self, StateKey.syncCount)
    }
}
