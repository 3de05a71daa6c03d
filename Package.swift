// swift-tools-version:6.0
// Keel: preference alignment of language models, in Swift.
//
// Dependencies point one way:  KeelRuntime ← KeelModels ← KeelCore ← (Plugins/*, KeelDaemon) ← keel
import PackageDescription

/// Release builds compile the Swift kernels for the x86-64-v3 feature level (AVX2 + FMA; swiftc spells
/// it `haswell`, its name for `x86-64-v3` is not accepted by the clang importer) so that plain loops over
/// `UnsafeMutablePointer<Float>` auto-vectorize. This is the single place the flag lives.
/// Debug builds keep the generic target so that any x86-64 machine can run the tests.
let kernelSettings: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell"], .when(configuration: .release)),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
    // Without it, `Float.squareRoot()` stays a `sqrtf` call (which may set errno) and loops around it
    // (AdamW, norms) do not vectorize.
    .unsafeFlags(["-Xcc", "-fno-math-errno"], .when(configuration: .release)),
]

/// Method plugins: one folder per method, Plugins/<Method>/<Method>.swift, each a target depending only on
/// KeelCore, with its parity tests beside it in Plugins/<Method>/Tests (test target <Method>Tests).
/// The keel executable depends on every one; Sources/KeelCLI/PluginsCommand.swift registers their types.
let methodPlugins: [String] = ["DPO", "SimPO", "SFT", "RefSync", "POET", "RuleRewards", "VAR", "DEFT", "GeneratePairs",
                               "RewardModel", "ImplicitReward", "ORPO"]

/// Method plugins whose parity tests read committed fixtures from Plugins/<Method>/Tests/Fixtures (the JSON and
/// the script that made it, outside the test target's sources).
let pluginsWithFixtures: Set<String> = ["ORPO"]

let package = Package(
    name: "Keel",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "keel", targets: ["KeelCLI"]),
        .library(name: "KeelCore", targets: ["KeelCore"]),
        // Keel's plugin API as a shared library: custom method plugins' tests link it (README "Writing a
        // method plugin"). Plugin libraries themselves link no copy of Keel; `keel` exports its own symbols
        // (below) so that a loaded plugin binds to keel's one copy of KeelCore's type metadata.
        .library(name: "KeelPluginAPI", type: .dynamic, targets: ["KeelCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libyaml-dev, libsqlite3-dev, libopenblas-dev).
        .systemLibrary(name: "CYaml", path: "Sources/CYaml", pkgConfig: "yaml-0.1",
                       providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),

        // Tensors, reverse-mode autodiff, kernels, optimizers, RNG. Knows nothing of models or plugins.
        .target(name: "KeelRuntime", dependencies: ["COpenBLAS"], swiftSettings: kernelSettings),
        // LLaMA-family transformer, GGUF / safetensors, BPE tokenizer, generation, sequence log-probs.
        .target(name: "KeelModels", dependencies: ["KeelRuntime"], swiftSettings: kernelSettings),
        // Plugin protocols, registry, recipes (YAML), plugin graph, trainer, SQLite store.
        .target(name: "KeelCore", dependencies: ["KeelModels", "KeelRuntime", "CYaml", "CSQLite"],
                swiftSettings: kernelSettings),
        // Watches recipes/, keeps the durable queue, supervises worker processes.
        .target(name: "KeelDaemon", dependencies: ["KeelCore"]),
        // `keel daemon --http`: the live dashboard (Hummingbird), reading the store and queueing into recipes/.
        // Hummingbird and SwiftNIO add minutes to a clean build (README "Build notes").
        .target(name: "KeelDashboard", dependencies: ["KeelCore", "KeelDaemon", .product(name: "Hummingbird", package: "hummingbird")]),
        .executableTarget(
            name: "KeelCLI",
            dependencies: [
                "KeelCore",
                "KeelDaemon",
                "KeelDashboard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ] + methodPlugins.map { .target(name: $0) },
            // Exports every symbol of the executable (KeelCore's included) to plugin libraries it dlopens.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic"])]),

        .testTarget(name: "KeelRuntimeTests", dependencies: ["KeelRuntime"]),
        .testTarget(name: "KeelModelsTests", dependencies: ["KeelModels"]),
        .testTarget(name: "KeelCoreTests", dependencies: ["KeelCore"]),
        .testTarget(name: "KeelDaemonTests", dependencies: ["KeelDaemon"]),
        // The `keel` registry with every method plugin: example recipes and graph rules on real declarations.
        .testTarget(name: "KeelCLITests", dependencies: ["KeelCLI", "KeelCore", "DPO", "DEFT", "GeneratePairs"]),
    ] + methodPlugins.flatMap { name -> [Target] in [
        .target(name: name, dependencies: ["KeelCore"], path: "Plugins/\(name)", exclude: ["Tests"],
                swiftSettings: kernelSettings),
        .testTarget(name: "\(name)Tests", dependencies: [.target(name: name), "KeelCore"], path: "Plugins/\(name)/Tests",
                    exclude: pluginsWithFixtures.contains(name) ? ["Fixtures"] : []),
    ] },
    swiftLanguageModes: [.v5]
)
