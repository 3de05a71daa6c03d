/// Data filters that rank pairs with the starting policy. A data plugin cannot see the model,
/// so the trainer hands it a `PolicyScorer`: the one question such filters ask of the model, answered in
/// a single no-grad pass, which keeps plugins independent of `LlamaModel`.

/// The starting policy as a data filter sees it. The trainer implements it with its model (LM head:
/// `Tensor.softmaxExpectation` / `softmaxExpectationForward` in KeelRuntime, with the same targets as
/// the log-prob pass so that exactly the completion positions are scored).
public protocol PolicyScorer: AnyObject {
    /// V: the model's vocabulary size, the length of the vectors passed to `expectedValue`.
    var vocabularySize: Int { get }

    /// For each sequence i (prompt + completion token ids, the completion as the losses score it, EOS
    /// included), the mean over its completion positions t of the expectation of `vector` under the
    /// next-token distribution:
    ///
    ///     E_i = (1/|y_i|) · Σ_{t<|y_i|} Σ_v pθ(v | x_i, y_i,<t) · vector[v]      (0 when |y_i| = 0)
    ///
    /// `vector` has `vocabularySize` entries; prompts and completions are aligned and equally many.
    func expectedValue(of vector: [Float], prompts: [[Int]], completions: [[Int]]) throws -> [Double]
}

/// A data filter over tokenised pairs that needs the starting policy to decide (e.g. the expectation of
/// a token statistic under the policy). Text-level `process` passes the examples through, as `TokenizedPairTransform`.
///
/// Trainer contract: pass a `PolicyScorer` to `PluginInstances.transformTokenized(_:split:scorer:)`,
/// which runs these filters in recipe order among the token-level transforms. A filter that ranks
/// examples lists every score it gave in `report.exampleScores` (for the store).
public protocol ModelScoredPairFilter: DataPlugin {
    /// `split` is `train` or `eval` (as passed to `transformTokenized`).
    func filter(_ pairs: inout [TokenizedPair], split: String, scorer: any PolicyScorer,
                report: inout DataNodeReport) throws
}

extension ModelScoredPairFilter {
    public func process(_ data: inout Dataset, report: inout DataNodeReport, context: DataContext) throws {
        report.produced = data.train.count
    }
}

/// A score a ranking data filter gave one example, and whether the example was kept.
public struct ExampleScore: Codable, Equatable, Sendable {
    /// The example's id (`file:line`).
    public var id: String
    public var score: Double
    public var kept: Bool

    public init(id: String, score: Double, kept: Bool) {
        self.id = id
        self.score = score
        self.kept = kept
    }
}
