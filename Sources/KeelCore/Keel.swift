/// Facts about this build of Keel that the CLI, the store and plugins share.
public enum Keel {
    /// Semantic version of Keel, printed by `keel --version` and recorded with every run.
    public static let version = "0.1.0"
}
