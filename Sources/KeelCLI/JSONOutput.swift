import Foundation

/// How every `--json` prints: one line, keys sorted, paths with their slashes as they are (not `\/`).
enum JSONOutput {
    static func line<Value: Encodable>(_ value: Value) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
