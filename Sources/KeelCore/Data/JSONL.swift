import Foundation

/// Problems found in a data file, each `file:line: what was wrong`. Thrown when the pipeline runs.
public struct DataError: Error, CustomStringConvertible {
    public let problems: [String]

    public init(_ problems: [String]) { self.problems = problems }
    public var description: String { problems.joined(separator: "\n") }
}

/// Reads a JSON-lines file, one object per non-blank line, handing each to `parse` with its 1-based line
/// number. All bad lines are reported together (up to `maxProblems`), like recipe errors.
func readJSONLines(path: String, limit: Int?, maxProblems: Int = 20,
                   parse: (_ object: [String: Any], _ line: Int) throws -> Void) throws {
    guard let data = FileManager.default.contents(atPath: path) else { throw DataError(["\(path): cannot read the file"]) }
    var problems: [String] = []
    var taken = 0
    var lineNumber = 0
    for lineBytes in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        lineNumber += 1
        if let limit, taken >= limit { break }
        if lineBytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
        do {
            let json: Any
            do { json = try JSONSerialization.jsonObject(with: Data(lineBytes)) } catch {
                throw DataLineProblem("invalid JSON; expected one JSON object per line")
            }
            guard let object = json as? [String: Any] else { throw DataLineProblem("expected a JSON object") }
            try parse(object, lineNumber)
            taken += 1
        } catch let problem as DataLineProblem {
            problems.append("\(path):\(lineNumber): \(problem.message)")
            if problems.count >= maxProblems {
                problems.append("\(path): stopped after \(maxProblems) problems")
                break
            }
        }
    }
    if !problems.isEmpty { throw DataError(problems) }
}

/// What is wrong with one line; `readJSONLines` adds the file and line.
struct DataLineProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A JSON field that must be a string.
func stringField(_ object: [String: Any], _ key: String) throws -> String {
    guard let value = object[key] else { throw DataLineProblem("missing \"\(key)\"; expected a string") }
    guard let text = value as? String else { throw DataLineProblem("\"\(key)\" is not a string") }
    return text
}

/// A JSON field in TRL's two formats: a string, or a list of `{"role", "content"}` messages.
func turnsField(_ object: [String: Any], _ key: String) throws -> Turns {
    let expected = "expected a string or a list of {\"role\", \"content\"} messages"
    guard let value = object[key] else { throw DataLineProblem("missing \"\(key)\"; \(expected)") }
    if let text = value as? String { return .text(text) }
    guard let list = value as? [Any] else { throw DataLineProblem("\"\(key)\" has the wrong type; \(expected)") }
    return .messages(try list.enumerated().map { index, item in
        guard let message = item as? [String: Any], let role = message["role"] as? String,
              let content = message["content"] as? String
        else { throw DataLineProblem("\"\(key)\"[\(index)] is not a {\"role\", \"content\"} message with string values") }
        return ChatMessage(role: role, content: content)
    })
}

/// `file:line` ids, short enough for reports.
public func exampleID(path: String, line: Int) -> String { "\((path as NSString).lastPathComponent):\(line)" }
