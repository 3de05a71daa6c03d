/// The contract between `keel` and a method plugin built outside it as a shared library (`keel plugin new`).
///
/// A plugin library exports two C symbols:
///
///     @_cdecl("keel_plugin_abi_version") public func keelPluginABIVersion() -> Int { PluginLibraryABI.version }
///     @_cdecl("keel_plugin_register") public func keelPluginRegister() -> UnsafeMutableRawPointer {
///         PluginLibraryExports([MyLoss.self]).retained()
///     }
///
/// `keel` looks up and calls the first before the second: `version` is emitted into the plugin when it is
/// compiled, so the answer is the API version the plugin was built against, not the host's. A mismatch
/// refuses the library before its registration code runs.
///
/// Plugins are compiled against KeelCore's module without library evolution, so any change to a public
/// declaration a plugin can use (a protocol requirement, a struct's stored properties, an enum's cases)
/// changes the ABI: bump `version` with it.
public enum PluginLibraryABI {
    /// The plugin API version. Inlined into each plugin at its compile time (`@_alwaysEmitIntoClient`).
    @_alwaysEmitIntoClient public static var version: Int { 3 }   // 3: signals (SignalProvider, needs, LossInput keyed)

    /// The version this `keel` speaks (the same declaration, compiled into the host).
    public static let hostVersion = version

    /// `() -> Int`: the plugin API version the library was compiled against.
    public static let versionSymbol = "keel_plugin_abi_version"
    /// `() -> UnsafeMutableRawPointer`: a retained `PluginLibraryExports`.
    public static let registerSymbol = "keel_plugin_register"
}

/// What a plugin library's `keel_plugin_register` hands to `keel`: its plugin types, registered together
/// or not at all. Being a class of KeelCore, it also proves the plugin and `keel` share one copy of
/// KeelCore's type metadata: `keel` casts the returned object back to this class, which only succeeds then.
public final class PluginLibraryExports {
    public let types: [any KeelPlugin.Type]

    public init(_ types: [any KeelPlugin.Type]) { self.types = types }

    /// A +1 reference for the C boundary; `keel` takes ownership.
    public func retained() -> UnsafeMutableRawPointer { Unmanaged.passRetained(self as AnyObject).toOpaque() }
}
