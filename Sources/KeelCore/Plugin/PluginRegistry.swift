import Foundation

/// Plugins by name. `PluginRegistry.builtin()` holds Keel's own; method plugins and custom plugins loaded
/// from shared libraries (`PluginLibraryLoader`) are added with `register`, which checks each declaration
/// once so that a malformed plugin fails at registration, not in the middle of a user's recipe.
public struct PluginRegistry {
    private var types: [String: any KeelPlugin.Type] = [:]
    /// Custom plugins: the shared library each was loaded from.
    private var libraries: [String: URL] = [:]

    /// Keys a plugin node uses for itself; no option may take these names.
    public static let reservedKeys = ["name", "weight"]

    public init() {}

    /// Keel's built-in plugins (data sources and transforms, generic signal providers; method plugins live in Plugins/).
    public static func builtin() -> PluginRegistry {
        var registry = PluginRegistry()
        for type in builtinPluginTypes {
            do { try registry.register(type) } catch { preconditionFailure("built-in plugin: \(error)") }
        }
        return registry
    }

    static let builtinPluginTypes: [any KeelPlugin.Type] = [
        PreferenceJSONLSource.self, HHSource.self, SyntheticPreferencesSource.self, ShuffleTransform.self, SplitTransform.self,
        DropFlaggedFilter.self, PolicySignals.self, ReferenceSignals.self, RewardSignals.self, HiddenStateSignals.self,
    ]

    public mutating func register(_ type: any KeelPlugin.Type) throws {
        let d = type.descriptor
        func fail(_ why: String) -> RegistryError { RegistryError(message: "plugin '\(d.name)': \(why)") }
        guard let first = d.name.first, first.isLetter, d.name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" })
        else { throw fail("name must be lowercase letters, digits and '-', starting with a letter") }
        guard types[d.name] == nil else { throw fail("a plugin with this name is already registered") }
        let conforms: Bool
        switch d.kind {
        case .data: conforms = type is any DataPlugin.Type
        case .reward: conforms = type is any RewardPlugin.Type
        case .loss: conforms = type is any LossPlugin.Type
        case .scheduler: conforms = type is any SchedulerPlugin.Type
        case .signal: conforms = type is any SignalProvider.Type
        }
        guard conforms else { throw fail("declared kind \(d.kind.rawValue) but does not conform to its protocol") }
        guard (d.kind == .data) == (d.dataRole != nil) else { throw fail("a data role is required for, and only for, data plugins") }
        if d.dataRole == .source, d.produces == nil { throw fail("a data source must declare the shape it produces") }
        guard (d.kind == .signal) == !d.provides.isEmpty else { throw fail("`provides` is required for, and only for, signal providers") }
        guard d.needs.isEmpty || d.kind == .loss else { throw fail("only losses declare `needs` (a provider declares them per key in `provides`)") }
        if let repeated = Dictionary(grouping: d.provides.map(\.key), by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw fail("provides `\(repeated)` twice")
        }
        if !d.stateKeys.isEmpty, !(type is any Checkpointable.Type) { throw fail("declares state keys but is not Checkpointable") }
        var seen = Set<String>()
        for option in d.options {
            guard seen.insert(option.name).inserted else { throw fail("option '\(option.name)' declared twice") }
            guard !Self.reservedKeys.contains(option.name) else { throw fail("option name '\(option.name)' is reserved") }
            if case .value(let value) = option.defaultValue, !option.type.admits(value) {
                throw fail("default \(value) of option '\(option.name)' is not \(option.type.expectation)")
            }
        }
        types[d.name] = type
    }

    /// Registers a plugin library's types all together or, if any declaration fails, none of them.
    public mutating func register(_ libraryTypes: [any KeelPlugin.Type], library: URL) throws {
        var candidate = self
        for type in libraryTypes {
            try candidate.register(type)
            candidate.libraries[type.descriptor.name] = library
        }
        self = candidate
    }

    /// The shared library a custom plugin came from; nil for plugins compiled into `keel`.
    public func library(of name: String) -> URL? { libraries[name] }

    public func type(named name: String) -> (any KeelPlugin.Type)? { types[name] }
    public func descriptor(named name: String) -> PluginDescriptor? { types[name]?.descriptor }

    /// Every descriptor, grouped by kind (data, reward, loss, scheduler) then by name.
    public var descriptors: [PluginDescriptor] {
        types.values.map { $0.descriptor }.sorted {
            let (a, b) = (PluginKind.allCases.firstIndex(of: $0.kind) ?? 0, PluginKind.allCases.firstIndex(of: $1.kind) ?? 0)
            return a != b ? a < b : $0.name < $1.name
        }
    }

    public func names(of kind: PluginKind) -> [String] { descriptors.filter { $0.kind == kind }.map(\.name) }

    /// The signal providers that compute `key`, by name.
    public func providers(of key: SignalKey) -> [(type: any SignalProvider.Type, signal: ProvidedSignal)] {
        types.values.sorted { $0.descriptor.name < $1.descriptor.name }.compactMap { type in
            guard let provider = type as? any SignalProvider.Type, let signal = type.descriptor.provides.first(where: { $0.key == key })
            else { return nil }
            return (provider, signal)
        }
    }
}

public struct RegistryError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension OptionType {
    /// Whether a (default) value fits this type and range.
    func admits(_ value: OptionValue) -> Bool {
        switch (self, value) {
        case (.int(let range), .int(let x)): return range?.contains(Double(x)) ?? true
        case (.double(let range), .double(let x)): return range?.contains(x) ?? true
        case (.bool, .bool), (.string, .string), (.path, .path): return true
        case (.choice(let values), .string(let x)): return values.contains(x)
        default: return false
        }
    }
}
