import Foundation

/// Reads a recipe file into a checked `Recipe`, or throws `RecipeErrors` holding every problem at once:
/// YAML syntax, unknown keys, wrong types, out-of-range values, unknown plugins, missing files, and then
/// (when all nodes decoded) the graph's conflicts between nodes.
public struct RecipeLoader {
    public var registry: PluginRegistry
    public var yaml = YAMLParser()
    /// Folders `output.dir` may neither be nor contain, besides the recipe's own folder: `var/` (and, in
    /// the daemon, the watched folder). See `ExportDestination`.
    public var protectedDirectories: [URL] = []
    /// `keel run --set`: applied in order to the recipe's tree (not to the recipes it requires).
    public var overrides: [RecipeOverride] = []

    public init(registry: PluginRegistry = .builtin(), protecting protectedDirectories: [URL] = []) {
        self.registry = registry
        self.protectedDirectories = protectedDirectories
    }

    /// `displayName`: how messages name the file (default: the path as given).
    public func load(_ url: URL, displayName: String? = nil) throws -> PluginGraph {
        try load(url, displayName: displayName, requiredBy: [])
    }

    /// Loads a recipe already read (the daemon reads each file once: its hash, its text, its checks).
    public func load(_ source: RecipeSource, from url: URL, displayName: String? = nil) throws -> PluginGraph {
        try load(source, from: url, displayName: displayName ?? url.relativePath, requiredBy: [])
    }

    /// `requiredBy`: the recipes whose `requires:` led here, outermost first (a cycle is refused).
    func load(_ url: URL, displayName: String?, requiredBy chain: [URL]) throws -> PluginGraph {
        let name = displayName ?? url.relativePath
        let source: RecipeSource
        do { source = try RecipeSource.read(url, displayName: name, maxBytes: yaml.maxBytes) } catch let error as YAMLError {
            throw RecipeErrors(diagnostics: [RecipeDiagnostic(file: name, mark: error.mark, keyPath: "", message: error.message)])
        }
        return try load(source, from: url, displayName: name, requiredBy: chain)
    }

    func load(_ source: RecipeSource, from url: URL, displayName name: String, requiredBy chain: [URL]) throws -> PluginGraph {
        let document: YAMLDocument
        do { document = try yaml.parse(bytes: Array(source.text.utf8), file: name) } catch let error as YAMLError {
            throw RecipeErrors(diagnostics: [RecipeDiagnostic(file: name, mark: error.mark, keyPath: "", message: error.message)])
        }
        var root = document.root
        let sink = DiagnosticSink(file: name)
        for problem in document.problems { sink.error(problem.mark, "", problem.message) }
        for (index, override) in overrides.enumerated() {
            switch override.apply(to: root, index: index) {
            case .success(let tree): root = tree
            case .failure(let problem): sink.error(problem.mark, problem.keyPath, problem.message)
            }
        }
        let directory = url.deletingLastPathComponent().standardizedFileURL
        let requirements = root["requires"].map {
            self.requirements($0, directory: directory, sink: sink, chain: chain + [url.standardizedFileURL])
        } ?? []
        let decoder = RecipeDecoder(registry: registry, directory: directory, file: name, text: source.text, sink: sink,
                                    protectedDirectories: protectedDirectories, requirements: requirements)
        guard let recipe = decoder.recipe(root), sink.isEmpty else {
            throw RecipeErrors(diagnostics: attributed(sink.diagnostics.enumerated()
                .sorted { ($0.element.mark, $0.offset) < ($1.element.mark, $1.offset) }.map(\.element)))
        }
        do {
            return try PluginGraph.build(recipe, registry: registry)
        } catch let errors as RecipeErrors {
            throw RecipeErrors(diagnostics: attributed(errors.diagnostics))
        }
    }

    /// Diagnostics at a node an override wrote name that override instead of the file.
    func attributed(_ diagnostics: [RecipeDiagnostic]) -> [RecipeDiagnostic] {
        diagnostics.map { d in
            guard d.mark.line == 0, overrides.indices.contains(d.mark.column - 1) else { return d }
            return RecipeDiagnostic(file: "--set \(overrides[d.mark.column - 1].text)", mark: d.mark, keyPath: d.keyPath, message: d.message)
        }
    }

    /// `requires: [FILE, …]`: each file (relative to the recipe's folder) exists, is a valid recipe that
    /// does not require this one in turn, and exports to a fixed folder (`output.dir` or `output.reference_dir`).
    func requirements(_ node: YAMLNode, directory: URL, sink: DiagnosticSink, chain: [URL]) -> [RecipeRequirement] {
        let expected = "expected a recipe file, relative to this recipe's folder, whose output.dir this recipe reads"
        guard let items = node.items else {
            sink.error(node.mark, "requires", "found \(node.kindName); expected a list of recipe files (requires: [FILE, …])")
            return []
        }
        return items.enumerated().compactMap { index, item -> RecipeRequirement? in
            let keyPath = joinPath("requires", index: index)
            guard let text = item.scalar, !item.isNull, !text.isEmpty else {
                sink.error(item.mark, keyPath, "found \(item.kindName); \(expected)")
                return nil
            }
            let url = URL(fileURLWithPath: text, relativeTo: directory).standardizedFileURL
            guard FileManager.default.fileExists(atPath: url.path) else {
                sink.error(item.mark, keyPath, "no such file: \(url.path); \(expected)")
                return nil
            }
            guard !chain.contains(where: { $0.path == url.path }) else {
                let cycle = (chain + [url]).map(\.lastPathComponent).joined(separator: " → ")
                sink.error(item.mark, keyPath, "\(text) requires this recipe in turn (\(cycle)); expected requirements without a cycle")
                return nil
            }
            let graph: PluginGraph
            var plain = self
            plain.overrides = []
            do {
                graph = try plain.load(url, displayName: text, requiredBy: chain)
            } catch let errors as RecipeErrors {
                let count = errors.diagnostics.count
                sink.error(item.mark, keyPath, "\(text) is not a valid recipe (\(count) problem\(count == 1 ? "" : "s"), the first: "
                           + "\(errors.diagnostics.first.map(\.description) ?? "")); expected a recipe that keel validate accepts")
                return nil
            } catch {
                sink.error(item.mark, keyPath, "\(text): \(error); expected a recipe that keel validate accepts")
                return nil
            }
            let outputs = [graph.recipe.exportCopyDirectory, graph.recipe.referenceExportDirectory].compactMap { $0 }
            guard !outputs.isEmpty else {
                sink.error(item.mark, keyPath, "\(text) sets no output.dir; expected a recipe that exports its model to a fixed folder "
                           + "(output: {dir: …}) for this one to read")
                return nil
            }
            return RecipeRequirement(file: url, displayName: text, outputs: outputs)
        }
    }
}

/// The decoding pass: one function per section, all reporting into one sink.
struct RecipeDecoder {
    let registry: PluginRegistry
    let directory: URL
    let file: String
    let text: String
    let sink: DiagnosticSink
    let protectedDirectories: [URL]
    let requirements: [RecipeRequirement]

    /// Folders required recipes export to: path options may name them (or files in them) before they exist.
    var promised: [URL] { requirements.flatMap(\.outputs) }

    func recipe(_ root: YAMLNode) -> Recipe? {
        guard let entries = root.entries else {
            sink.error(root.mark, "", "the recipe is \(root.kindName); expected a mapping of sections (\(RecipeSchema.sections.joined(separator: ", ")))")
            return nil
        }
        for entry in entries where !RecipeSchema.sections.contains(entry.key) {
            sink.error(entry.keyMark, excerpt(entry.key), unknownKeyMessage("section", entry.key, in: RecipeSchema.sections, at: ""))
        }
        for section in RecipeSchema.requiredSections where root[section] == nil {
            sink.error(root.mark, section, "missing section; expected `\(section):`")
        }
        func options(_ key: String, _ specs: [OptionSpec]) -> ResolvedOptions {
            guard let node = root[key] else { return ResolvedOptions(defaultsOf: specs) }
            return mapping(node, key, specs)
        }
        let model = root["model"].flatMap { self.model($0) }
        let reference = options("reference", RecipeSchema.reference)
        if let path = reference.string("path") { checkModelPath(path, at: root["reference"]?["path"]?.mark, "reference.path") }
        let data = root["data"].map { nodeList($0, "data", kind: .data, allowEmpty: false) } ?? []
        let reward = root["reward"].map { weightedNodes($0, "reward", kind: .reward) } ?? []
        let loss = root["loss"].map { weightedNodes($0, "loss", kind: .loss) } ?? []
        let schedulers = root["schedulers"].map { nodeList($0, "schedulers", kind: .scheduler, allowEmpty: true) } ?? []
        let optimizer = options("optimizer", RecipeSchema.optimizer)
        let training = options("training", RecipeSchema.training)
        if let node = root["training"], node.entries != nil {
            switch (node["steps"], node["epochs"]) {
            case (nil, nil): sink.error(node.mark, "training", "no length; expected steps or epochs")
            case (.some, .some): sink.error(node["epochs"]?.mark ?? node.mark, "training.epochs", "both steps and epochs are set; expected one of them")
            default: break
            }
        }
        let output = options("output", RecipeSchema.output)
        if let name = output.string("name"),
           name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
            sink.error(root["output"]?["name"]?.mark ?? root.mark, "output.name",
                       "'\(excerpt(name))' is not a valid run name; expected letters, digits, '.', '_', '-'")
        } else if let name = output.string("name"), name.count > RecipeSchema.maxNameLength {
            sink.error(root["output"]?["name"]?.mark ?? root.mark, "output.name",
                       "found a name of \(name.count) characters; expected at most \(RecipeSchema.maxNameLength)")
        }
        for key in ["dir", "reference_dir"] {
            if let dir = output.string(key),
               let problem = ExportDestination.problem(URL(fileURLWithPath: dir), protected: [directory] + protectedDirectories) {
                sink.error(root["output"]?[key]?.mark ?? root.mark, "output.\(key)", problem)
            }
        }
        let logging = options("logging", RecipeSchema.logging)
        guard let model else { return nil }
        let recipe = Recipe(file: file, directory: directory, text: text, model: model, reference: reference, data: data, reward: reward,
                            loss: loss, schedulers: schedulers, optimizer: optimizer, training: training, output: output, logging: logging,
                            sectionMarks: Dictionary(uniqueKeysWithValues: root.entries?.map { ($0.key, $0.keyMark) } ?? []),
                            requirements: requirements)
        // A tiny model's size is known here; a pretrained one's is checked when the run starts (its header).
        if case .tiny = model, let problem = try? MemoryEstimate.of(recipe).problem() {
            sink.error(root["model"]?.mark ?? root.mark, "model.tiny", problem)
        }
        return recipe
    }

    /// A section or sub-mapping decoded against declared options.
    func mapping(_ node: YAMLNode, _ path: String, _ specs: [OptionSpec], reserved: [String] = []) -> ResolvedOptions {
        guard let entries = node.entries else {
            sink.error(node.mark, path, "found \(node.kindName); expected a mapping with keys " + specs.map(\.name).joined(separator: ", "))
            return ResolvedOptions(defaultsOf: specs)
        }
        return decodeOptions(specs, entries: entries, reserved: reserved, mapping: node, path: path,
                             baseDirectory: directory, promised: promised, sink: sink)
    }

    // MARK: model

    func model(_ node: YAMLNode) -> ModelSource? {
        if let text = node.scalar, !node.isNull {
            let url = URL(fileURLWithPath: text, relativeTo: directory).standardizedFileURL
            return checkModelPath(url.path, at: node.mark, "model")
        }
        guard let entries = node.entries, entries.count == 1, entries[0].key == "tiny" else {
            let first = node.entries?.first { $0.key != "tiny" }
            sink.error(first?.keyMark ?? node.mark, first.map { "model.\($0.key)" } ?? "model",
                       (first.map { closestMatch(to: $0.key, in: ["tiny"]) == nil ? "unknown key; " : "unknown key; did you mean 'tiny'? " } ?? "found \(node.kindName); ")
                       + "expected a path to a GGUF file or Hugging Face folder, or tiny: {…}")
            return nil
        }
        let options = mapping(entries[0].value, "model.tiny", RecipeSchema.tinyModel)
        let (hidden, heads, kvHeads) = (options.int("hidden") ?? 1, options.int("heads") ?? 1, options.int("kv_heads") ?? 1)
        let at = { (key: String) in entries[0].value[key]?.mark ?? entries[0].value.mark }
        if hidden % heads != 0 || (hidden / heads) % 2 != 0 {
            sink.error(at("heads"), "model.tiny.heads", "hidden \(hidden) / heads \(heads) is not an even integer; expected heads to divide hidden into an even head size (RoPE rotates pairs)")
        }
        if heads % kvHeads != 0 {
            sink.error(at("kv_heads"), "model.tiny.kv_heads", "heads \(heads) is not a multiple of kv_heads \(kvHeads); expected kv_heads to divide heads")
        }
        return .tiny(options)
    }

    /// An existing GGUF file (checked by its magic bytes) or a folder with `config.json`.
    @discardableResult
    func checkModelPath(_ path: String, at mark: Mark?, _ keyPath: String) -> ModelSource? {
        let mark = mark ?? Mark(line: 1, column: 1)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            sink.error(mark, keyPath, "no such file or folder: \(path); expected a GGUF file or a Hugging Face folder, relative to the recipe's folder")
            return nil
        }
        if isDirectory.boolValue {
            guard FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json")) else {
                sink.error(mark, keyPath, "folder \(path) has no config.json; expected a Hugging Face model folder")
                return nil
            }
            return .huggingFace(directory: path)
        }
        let magic = FileHandle(forReadingAtPath: path).flatMap { try? $0.read(upToCount: 4) }
        guard magic == Data("GGUF".utf8) else {
            sink.error(mark, keyPath, "\(path) is not a GGUF file (no GGUF magic); expected a GGUF file or a Hugging Face folder")
            return nil
        }
        return .gguf(path: path)
    }

    // MARK: plugin nodes

    func nodeList(_ node: YAMLNode, _ path: String, kind: PluginKind, allowEmpty: Bool) -> [PluginNode] {
        guard let items = node.items, allowEmpty || !items.isEmpty else {
            sink.error(node.mark, path, "found \(node.items == nil ? node.kindName : "an empty list"); expected a list of \(kind.rawValue) plugin nodes (- name: …)")
            return []
        }
        return items.enumerated().compactMap { pluginNode($1, joinPath(path, index: $0), kind: kind, weighted: false) }
    }

    /// `loss:` and `reward:` are one node or a non-empty list of weighted nodes (a weighted sum).
    func weightedNodes(_ node: YAMLNode, _ path: String, kind: PluginKind) -> [PluginNode] {
        if node.entries != nil { return pluginNode(node, path, kind: kind, weighted: true).map { [$0] } ?? [] }
        guard let items = node.items, !items.isEmpty else {
            sink.error(node.mark, path, "found \(node.items == nil ? node.kindName : "an empty list"); expected a \(kind.rawValue) node {name: …} or a list of them with weights")
            return []
        }
        return items.enumerated().compactMap { pluginNode($1, "\(path)[\($0)]", kind: kind, weighted: true) }
    }

    /// `{name: <plugin>, <option>: <value>, …}` (losses and rewards also take `weight`).
    func pluginNode(_ node: YAMLNode, _ path: String, kind: PluginKind, weighted: Bool) -> PluginNode? {
        let known = registry.names(of: kind)
        let expectedNames = known.isEmpty ? "no \(kind.rawValue) plugins are registered" : "expected one of " + known.joined(separator: ", ")
        guard let entries = node.entries else {
            sink.error(node.mark, path, "found \(node.kindName); expected a \(kind.rawValue) plugin node {name: …, <options>}")
            return nil
        }
        guard let nameNode = node["name"] else {
            sink.error(node.mark, joinPath(path, "name"), "missing; \(expectedNames)")
            return nil
        }
        guard let name = nameNode.scalar, !nameNode.isNull else {
            sink.error(nameNode.mark, joinPath(path, "name"), "found \(nameNode.kindName); \(expectedNames)")
            return nil
        }
        guard let type = registry.type(named: name), type.descriptor.kind == kind else {
            let other = registry.descriptor(named: name).map { "'\(name)' is a \($0.kind.rawValue) plugin, not a \(kind.rawValue) plugin; " }
            let hint = known.isEmpty ? expectedNames : suggestion(for: name, in: known)
            sink.error(nameNode.mark, joinPath(path, "name"), other.map { $0 + expectedNames } ?? "unknown \(kind.rawValue) plugin '\(excerpt(name))'; \(hint)")
            return nil
        }
        let reserved = weighted ? ["name", "weight"] : ["name"]
        let options = decodeOptions(type.descriptor.options, entries: entries, reserved: reserved, mapping: node, path: path,
                                    baseDirectory: directory, promised: promised, sink: sink)
        // Cross-option checks run only when every option the recipe sets has decoded: a value that failed
        // already has its error, and judging the default standing in for it would contradict the recipe.
        let written = entries.filter { entry in type.descriptor.options.contains { $0.name == entry.key } }.count
        let decoded = options.entries.filter { if case .recipe = $0.origin { return true } else { return false } }.count
        for problem in written == decoded ? type.checkOptions(options) : [] {
            let mark = problem.option.flatMap { node[$0]?.mark } ?? node.mark
            sink.error(mark, problem.option.map { joinPath(path, $0) } ?? path, problem.message)
        }
        var weight = 1.0, weightOrigin = OptionOrigin.defaultValue
        if weighted, let weightNode = node["weight"] {
            switch decodeValue(weightNode, as: .double(.positive), baseDirectory: directory) {
            case .success(let value):
                if case .double(let x) = value { (weight, weightOrigin) = (x, .recipe(weightNode.mark)) }
            case .failure(let problem): sink.error(weightNode.mark, joinPath(path, "weight"), problem.message)
            }
        }
        return PluginNode(keyPath: path, mark: node.mark, type: type, options: options,
                          weight: weight, weightOrigin: weightOrigin)
    }
}
