import Foundation

/// What generation-based evaluation showed over a run: the policy's greedy answers to the same held-out
/// prompts at the first and the last evaluated step (`generations` events), their mean reward and length,
/// as Markdown (`runs/<id>/report.md`). A resumed run re-recording a step counts once (the latest event).
public struct GenerationReport {
    public let runID: String
    /// Step → answers, in step order.
    public let steps: [(step: Int, answers: [GeneratedAnswer])]

    /// nil when the run recorded no generations.
    public init?(store: KeelStore, runID: String) throws {
        var byStep: [Int: [GeneratedAnswer]] = [:]
        for event in try store.events(runID) where event.kind == RunEvent.generations {
            let decoded = try JSONDecoder().decode(GenerationsEvent.self, from: Data(event.message.utf8))
            byStep[decoded.step] = decoded.answers
        }
        guard !byStep.isEmpty else { return nil }
        self.runID = runID
        steps = byStep.sorted { $0.key < $1.key }.map { (step: $0.key, answers: $0.value) }
    }

    static func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }

    static func format(_ value: Double?) -> String { value.map { String(format: "%.3f", $0) } ?? "–" }

    /// One line: mean reward and length at the first and last step.
    public var summary: String {
        steps.map { step, answers in
            "step \(step): reward \(Self.format(Self.mean(answers.compactMap(\.reward)))), "
                + "length \(String(format: "%.1f", Self.mean(answers.map { Double($0.tokens) }) ?? 0)) tokens"
        }.joined(separator: " → ")
    }

    /// The reward terms' names when the reward is a weighted sum, in name order.
    var rewardTermNames: [String] {
        Set(steps.flatMap { $0.answers.flatMap { $0.rewardTerms?.keys.map { $0 } ?? [] } }).sorted()
    }

    public var markdown: String {
        let termNames = rewardTermNames
        var lines = ["# \(runID): greedy answers to held-out prompts", "",
                     "| step | answers | mean reward | " + termNames.map { "mean \($0) | " }.joined() + "mean length (tokens) |",
                     "|---:|---:|---:|" + String(repeating: "---:|", count: termNames.count) + "---:|"]
        for (step, answers) in steps {
            let terms = termNames.map { name in Self.format(Self.mean(answers.compactMap { $0.rewardTerms?[name] })) + " | " }
            lines.append("| \(step) | \(answers.count) | \(Self.format(Self.mean(answers.compactMap(\.reward)))) | " + terms.joined()
                         + String(format: "%.1f |", Self.mean(answers.map { Double($0.tokens) }) ?? 0))
        }
        guard let first = steps.first, let last = steps.last else { return lines.joined(separator: "\n") }
        let later = Dictionary(last.answers.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for answer in first.answers {
            lines += ["", "## \(answer.id)", "", "Prompt:", "", fenced(answer.prompt)]
            for (step, shown) in [(first.step, answer), (last.step, later[answer.id])] where step == first.step || first.step != last.step {
                guard let shown else { continue }
                let terms = termNames.compactMap { name in shown.rewardTerms?[name].map { "\(name) \(Self.format($0))" } }
                let reward = ([Self.format(shown.reward)] + (terms.isEmpty ? [] : ["(" + terms.joined(separator: ", ") + ")"])).joined(separator: " ")
                lines += ["", "Step \(step) (reward \(reward), \(shown.tokens) tokens):", "", fenced(shown.answer)]
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func fenced(_ text: String) -> String {
        "```text\n" + text.replacingOccurrences(of: "```", with: "ʼʼʼ") + "\n```"
    }
}
