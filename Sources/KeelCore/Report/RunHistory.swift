import Foundation

/// Everything the store holds about one run, read at once: what `keel report` draws and `keel export
/// --tensorboard` writes.
public struct RunHistory {
    public let run: RunRecord
    /// Split → metric name → values by step, ascending.
    public let metrics: [MetricSplit: [String: [(step: Int, value: Double)]]]
    /// What each data node produced, skipped and flagged (the run's `data` event; empty before it).
    let dataReports: [DataReportEvent]
    public let checkpoints: [CheckpointRecord]
    /// The greedy answers to held-out prompts, when the run evaluated generations.
    public let generations: GenerationReport?

    public init(store: KeelStore, runID: String) throws {
        guard let run = try store.run(runID) else { throw StoreError.unknownRun(runID) }
        self.run = run
        metrics = try store.metricSeries(runID)
        let dataEvent = try store.events(runID).last { $0.kind == RunEvent.data }
        dataReports = try dataEvent.map { try JSONDecoder().decode([DataReportEvent].self, from: Data($0.message.utf8)) } ?? []
        checkpoints = try store.checkpoints(runID)
        generations = try GenerationReport(store: store, runID: runID)
    }

    /// The steps at which the run was evaluated (any eval metric recorded).
    public var evalSteps: [Int] {
        Set(metrics[.eval]?.values.flatMap { $0.map(\.step) } ?? []).sorted()
    }

    /// Every (split, step) with its metrics, train before eval at the same step: the order TensorBoard
    /// event files are written in.
    public var metricsByStep: [(split: MetricSplit, step: Int, values: [(name: String, value: Double)])] {
        var grouped: [MetricSplit: [Int: [(name: String, value: Double)]]] = [:]
        for (split, series) in metrics {
            for (name, points) in series.sorted(by: { $0.key < $1.key }) {
                for point in points { grouped[split, default: [:]][point.step, default: []].append((name: name, value: point.value)) }
            }
        }
        return grouped.flatMap { split, steps in steps.map { (split: split, step: $0.key, values: $0.value) } }
            .sorted { ($0.step, $0.split == .train ? 0 : 1) < ($1.step, $1.split == .train ? 0 : 1) }
    }
}
