/// `keel plan`: the resolved graph, each node with every option's final value and where it came from.
extension PluginGraph {
    public func planText() -> String {
        var out: [String] = ["recipe \(recipe.file)"]
        func options(_ o: ResolvedOptions, indent: String) {
            let width = o.entries.map(\.spec.name.count).max() ?? 0
            for entry in o.entries {
                let value = entry.value?.description ?? "(\(entry.spec.defaultText))"
                let origin: String
                switch entry.origin {
                case .recipe(let mark): origin = "line \(mark)"
                case .defaultValue: origin = "default"
                }
                out.append(indent + entry.spec.name.padding(toLength: width, withPad: " ", startingAt: 0) + " = \(value)  [\(origin)]")
            }
        }
        func nodes(_ title: String, _ list: [PluginNode], weighted: Bool = false) {
            out.append(list.isEmpty ? "\(title): none" : title)
            for node in list {
                var head = "  \(node.keyPath): \(node.name)  [line \(node.mark)]"
                if weighted {
                    let origin = node.weightOrigin == .defaultValue ? "default" : "recipe"
                    head += "  weight \(node.weight) [\(origin)]"
                }
                out.append(head)
                options(node.options, indent: "    ")
            }
        }
        switch recipe.model {
        case .gguf(let path): out.append("model: GGUF file \(path)")
        case .huggingFace(let directory): out.append("model: Hugging Face folder \(directory)")
        case .tiny(let o):
            out.append("model: tiny random model")
            options(o, indent: "  ")
        }
        if let user = referenceNeededBy {
            let source = recipe.reference.string("path") ?? "frozen copy of the starting policy"
            out.append("reference: \(source), loaded for \(user.label)")
        } else {
            out.append("reference: not loaded (no plugin needs one)")
        }
        options(recipe.reference, indent: "  ")
        nodes("data → \(dataShape.rawValue) examples", recipe.data)
        nodes("reward", recipe.reward, weighted: true)
        nodes("loss", recipe.loss, weighted: true)
        nodes("schedulers", recipe.schedulers)
        out.append(signalProviders.isEmpty ? "signals: none" : "signals (computed per batch, in this order)")
        for provider in signalProviders {
            out.append("  \(provider.type.descriptor.name): \(provider.keys.map(\.name).joined(separator: ", "))"
                       + (provider.requires.names.isEmpty ? "" : "  [requires \(provider.requires.names.joined(separator: ", "))]"))
        }
        for (title, o) in [("optimizer", recipe.optimizer), ("training", recipe.training), ("output", recipe.output), ("logging", recipe.logging)] {
            out.append(title)
            options(o, indent: "  ")
        }
        return out.joined(separator: "\n")
    }
}
