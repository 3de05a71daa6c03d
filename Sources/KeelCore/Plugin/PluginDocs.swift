/// Plugin documentation rendered from descriptors only (`keel plugins`, docs/plugins.md), so the help a
/// user reads is the declaration the decoder enforces.
extension PluginDescriptor {
    /// Plain text for the terminal.
    public func helpText() -> String {
        var lines = ["\(name)  (\(kind.rawValue)\(dataRole.map { " " + $0.rawValue } ?? ""))  \(summary)"]
        for (label, value) in facts { lines.append("  \(label): \(value)") }
        if options.isEmpty { lines.append("  no options") }
        let width = options.map(\.name.count).max() ?? 0
        for o in options {
            lines.append("  " + o.name.padding(toLength: width, withPad: " ", startingAt: 0)
                         + "  \(o.type.expectation); default: \(o.defaultText) — \(o.help)")
        }
        return lines.joined(separator: "\n")
    }

    /// A Markdown section with an options table.
    public func markdown() -> String {
        var lines = ["### `\(name)` — \(kind.rawValue)\(dataRole.map { " " + $0.rawValue } ?? "")", "", summary, ""]
        for (label, value) in facts { lines.append("- \(label): \(value)") }
        if !facts.isEmpty { lines.append("") }
        if !options.isEmpty {
            lines += ["| option | type | allowed | default | meaning |", "|---|---|---|---|---|"]
            for o in options {
                lines.append("| `\(o.name)` | \(o.type.shortName) | \(o.type.expectation) | \(o.defaultText) | \(o.help) |")
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }

    /// Declared facts other than options, omitting empty ones.
    var facts: [(String, String)] {
        var facts: [(String, String)] = []
        if !capabilities.names.isEmpty { facts.append(("capabilities", capabilities.names.joined(separator: ", "))) }
        if !needs.isEmpty { facts.append(("needs", needs.map(\.name).joined(separator: ", "))) }
        for signal in provides {
            let from = (signal.needs.isEmpty ? [] : ["from " + signal.needs.map(\.name).joined(separator: ", ")])
                + (signal.requires.names.isEmpty ? [] : ["requires " + signal.requires.names.joined(separator: ", ")])
            facts.append(("provides", "`\(signal.key)`: \(signal.summary)" + (from.isEmpty ? "" : " (\(from.joined(separator: "; ")))")))
        }
        if !consumes.isEmpty { facts.append(("consumes", consumes.map(\.rawValue).sorted().joined(separator: ", "))) }
        if let produces { facts.append(("produces", produces.rawValue)) }
        if !controls.isEmpty { facts.append(("controls", controls.joined(separator: ", "))) }
        if !metrics.isEmpty { facts.append(("metrics", metrics.joined(separator: ", "))) }
        if !stateKeys.isEmpty { facts.append(("checkpoint state", stateKeys.joined(separator: ", "))) }
        return facts
    }
}

extension PluginRegistry {
    /// What signals are, with one worked example: the opening of docs/plugins.md's signal section.
    static let signalsIntroduction = """
        Signals are the per-batch quantities a loss reads. A loss lists their keys in its descriptor's
        `needs`; a signal provider lists the keys it computes in `provides`, each with the keys it is computed
        from and what it requires (`policy`, `reference`, `reward-scorer`, `separate-rows`). Recipes do not
        name providers: for every key a loss needs, the graph takes the one registered provider of that key,
        and refuses the recipe, naming the loss, its line, the key and what is missing, when there is none,
        when there are two, or when the recipe does not meet the provider's requirements (e.g. `rewards`
        without a `reward:` node). For each micro-batch the trainer computes the providers in dependency
        order into one keyed store, `LossInput`, which the loss reads with `try input[Signals.policyLogProbs]`.

        Worked example, an entropy bonus beside DPO (`keel plugin new token-entropy --kind signal` writes it):
        the loss `token-entropy-bonus` declares `needs: [token-entropy]` and the package's provider
        `token-entropy` declares `provides: [token-entropy (requires policy, separate-rows)]`, computing each
        completion's mean per-token entropy of the policy, differentiably, in its own forward pass. With
        `loss: [{name: dpo}, {name: token-entropy-bonus, weight: 0.01}]`, `keel plan` lists the providers
        `policy: policy-logprobs`, `reference: reference-logprobs` and `token-entropy: token-entropy
        [requires policy, separate-rows]`; batches then keep chosen and rejected rows apart, and the loss
        reads `try input[TokenEntropySignal.entropy]`. Without the package installed the recipe is refused:
        "'token-entropy-bonus' needs signal `token-entropy`, but no signal provider computes it".

        """

    /// docs/plugins.md: every registered plugin, grouped by kind; custom plugins name their library.
    public func markdown() -> String {
        var text = "# Keel plugins\n\nGenerated by `keel plugins --builtin-only --markdown` from the plugins' own declarations.\n"
        for kind in PluginKind.allCases {
            let list = descriptors.filter { $0.kind == kind }
            text += "\n## \(kind.rawValue.capitalized) plugins\n\n"
            if kind == .signal { text += Self.signalsIntroduction + "\n" }
            text += list.isEmpty ? "None registered yet.\n" : list.map { descriptor in
                library(of: descriptor.name).map { descriptor.markdown() + "Custom plugin, loaded from `\($0.path)`.\n" }
                    ?? descriptor.markdown()
            }.joined(separator: "\n")
        }
        return text
    }
}
