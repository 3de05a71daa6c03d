import Foundation
import KeelCore

/// A JSON-lines file of preference pairs as `keel score` and `keel eval` read it, through KeelCore's
/// sources: HH when the first non-blank line has no "prompt" and a string "chosen", TRL's preference
/// format otherwise.
enum PreferenceFile {
    /// The file's pairs (at most `limit`), and how many lines each cause skipped.
    static func read(_ path: String, limit: Int?) throws -> (pairs: [PreferencePair], skipped: [String: Int]) {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw DataError(["\(path): cannot read the file"])
        }
        let firstLine = contents.split(separator: UInt8(ascii: "\n")).first { !$0.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }
        guard let firstLine, let object = try? JSONSerialization.jsonObject(with: Data(firstLine)) as? [String: Any] else {
            throw DataError(["\(path): the first non-blank line is not a JSON object; expected HH {\"chosen\", \"rejected\"} or TRL {\"prompt\", \"chosen\", \"rejected\"} lines"])
        }
        let isHH = object["prompt"] == nil && object["chosen"] is String
        var dataset = Dataset()
        var report = DataNodeReport(node: isHH ? HHSource.descriptor.name : PreferenceJSONLSource.descriptor.name)
        let context = DataContext(seed: 0, node: "file")
        if isHH {
            try HHSource(options: options(HHSource.descriptor, path: path, limit: limit)).process(&dataset, report: &report, context: context)
        } else {
            try PreferenceJSONLSource(options: options(PreferenceJSONLSource.descriptor, path: path, limit: limit))
                .process(&dataset, report: &report, context: context)
        }
        return (dataset.train.compactMap { if case .pair(let pair) = $0 { return pair } else { return nil } }, report.skipped)
    }

    /// The source's own options with `path` and `limit` set.
    private static func options(_ descriptor: PluginDescriptor, path: String, limit: Int?) -> ResolvedOptions {
        ResolvedOptions(defaultsOf: descriptor.options.map { spec in
            switch spec.name {
            case "path": return OptionSpec(spec.name, spec.type, default: .value(.path(path)), help: spec.help)
            case "limit": return limit.map { OptionSpec(spec.name, spec.type, default: .value(.int($0)), help: spec.help) } ?? spec
            default: return spec
            }
        })
    }
}
