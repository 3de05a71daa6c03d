import Foundation

/// What a run trained, as hashes: two runs with the same fingerprint trained the same recipe on the same
/// data from the same model. `keel resume` recomputes the parts and names each one that changed.
///
/// Parts (SHA-256 hex each): `recipe` (the file's text), `data <path>` (each input file a data node
/// names, e.g. the `hh` source's `path`), `model` (the GGUF file; a Hugging Face folder's files, in name
/// order; for `tiny` its resolved options, which determine the random weights), `reference` when
/// `reference.path` names another model, and `overrides` when `keel run --set` changed the recipe.
public enum RunFingerprint {
    public static func parts(recipe: Recipe, recipeText: String, overrides: [RecipeOverride] = []) throws -> [String: String] {
        var parts = ["recipe": SHA256.hex(of: Data(recipeText.utf8))]
        if !overrides.isEmpty { parts["overrides"] = SHA256.hex(of: Data(overrides.map(\.text).joined(separator: "\n").utf8)) }
        for node in recipe.data {
            for entry in node.options.entries {
                guard case .path(mustExist: true) = entry.spec.type, case .path(let path)? = entry.value else { continue }
                parts["data \(path)"] = try SHA256.hex(ofFileAt: URL(fileURLWithPath: path))
            }
        }
        parts["model"] = try modelHash(recipe.model)
        if recipe.reference.string("path") != nil { parts["reference"] = try modelHash(ModelLoading.referenceSource(recipe)) }
        return parts
    }

    /// One hash over all parts (sorted "name=hash" lines).
    public static func combined(_ parts: [String: String]) -> String {
        SHA256.hex(of: Data(parts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined().utf8))
    }

    /// One line per part that differs: "recipe changed", "data /x.jsonl changed", "… is new", "… is gone".
    public static func differences(recorded: [String: String], current: [String: String]) -> [String] {
        Set(recorded.keys).union(current.keys).sorted().compactMap { key in
            switch (recorded[key], current[key]) {
            case let (old?, new?) where old != new: return "\(key) changed (SHA-256 \(old.prefix(12))… → \(new.prefix(12))…)"
            case (nil, _?): return "\(key) is new"
            case (_?, nil): return "\(key) is no longer used"
            default: return nil
            }
        }
    }

    private static func modelHash(_ source: ModelSource) throws -> String {
        switch source {
        case .gguf(let path):
            return try SHA256.hex(ofFileAt: URL(fileURLWithPath: path))
        case .huggingFace(let directory):
            var hash = SHA256()
            for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() where !name.hasPrefix(".") {
                hash.update("\(name)=\(try SHA256.hex(ofFileAt: URL(fileURLWithPath: directory).appendingPathComponent(name)))\n")
            }
            return hash.finalizeHex()
        case .tiny(let options):
            return SHA256.hex(of: Data(options.entries.map { "\($0.spec.name)=\($0.value?.description ?? "")\n" }.joined().utf8))
        }
    }
}
