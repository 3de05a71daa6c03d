import CSQLite
import Foundation

/// A small wrapper over the SQLite C API: one connection, cached prepared statements, typed values,
/// and `transaction { }`.
///
/// Why raw SQLite and not GRDB: Keel issues a few dozen distinct statements, and crash-exact resume
/// needs transactions whose boundaries are explicit in the code (`BEGIN IMMEDIATE` … `COMMIT`), which
/// is easier to read here than through an ORM; and it keeps GRDB's build time (minutes on two cores)
/// out of every clean build.
///
/// Thread safety: the connection is opened without SQLite's own mutex and every call is serialized by
/// a recursive lock, so one `SQLiteDatabase` may be shared by threads (a transaction holds the lock
/// for its whole body). Separate processes or connections coordinate through SQLite's file locks
/// and the busy timeout.
public final class SQLiteDatabase: @unchecked Sendable {
    public let path: String
    private let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]
    private var transactionDepth = 0
    private let lock = NSRecursiveLock()

    /// Opens (creating if needed) the database at `path` in WAL mode.
    ///
    /// - WAL: readers (`keel status`) never block the writer (the training worker) and vice versa.
    /// - `synchronous = NORMAL`: in WAL mode a committed transaction survives a crash of the process
    ///   (what resuming a killed run needs) and is fsync'd at the next WAL checkpoint; only a power loss
    ///   can take back the last few commits. The trainer commits metrics every step, where FULL's fsync
    ///   per commit would be a measurable share of a tiny model's step. Commits that must survive power
    ///   loss too — the mark that makes a checkpoint complete, after which older checkpoint directories
    ///   are deleted — go through `durably`, which fsyncs the WAL (and so every earlier commit).
    /// - `busy_timeout`: a writer waits for another connection's write transaction instead of failing.
    /// - `foreign_keys`: SQLite leaves them off by default.
    public init(path: String, busyTimeout: TimeInterval = 5) throws {
        self.path = path
        var opened: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &opened, flags, nil)
        guard code == SQLITE_OK, let opened else {
            let message = opened.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(code))
            sqlite3_close_v2(opened)
            throw SQLiteError(code: code, message: message, sql: nil, path: path)
        }
        handle = opened
        sqlite3_busy_timeout(handle, Int32(min(max(0, busyTimeout * 1000), Double(Int32.max))))
        let mode = try query("PRAGMA journal_mode = WAL").first?["journal_mode"].text
        guard mode == "wal" || mode == "memory" else {
            throw SQLiteError(code: SQLITE_ERROR, message: "could not switch to WAL mode (got \(mode ?? "nothing"))",
                              sql: "PRAGMA journal_mode = WAL", path: path)
        }
        try executeScript("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    // MARK: Statements

    /// Runs one statement and returns how many rows it changed.
    @discardableResult
    public func execute(_ sql: String, _ arguments: any SQLiteConvertible...) throws -> Int {
        try execute(sql, arguments: arguments)
    }

    @discardableResult
    public func execute(_ sql: String, arguments: [any SQLiteConvertible]) throws -> Int {
        try withStatement(sql, arguments) { statement in
            while try step(statement, sql) {}
            return Int(sqlite3_changes(handle))
        }
    }

    /// Runs one statement and returns all its rows.
    public func query(_ sql: String, _ arguments: any SQLiteConvertible...) throws -> [SQLiteRow] {
        try query(sql, arguments: arguments)
    }

    public func query(_ sql: String, arguments: [any SQLiteConvertible]) throws -> [SQLiteRow] {
        try withStatement(sql, arguments) { statement in
            let columnCount = sqlite3_column_count(statement)
            var columns: [String: Int] = [:]
            for index in 0..<columnCount {
                columns[String(cString: sqlite3_column_name(statement, index))] = Int(index)
            }
            var rows: [SQLiteRow] = []
            while try step(statement, sql) {
                let values = (0..<columnCount).map { readColumn(statement, $0) }
                rows.append(SQLiteRow(columns: columns, values: values, sql: sql, path: path))
            }
            return rows
        }
    }

    /// Runs several `;`-separated statements without arguments (migrations, pragmas).
    public func executeScript(_ sql: String) throws {
        lock.lock()
        defer { lock.unlock() }
        var message: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(handle, sql, nil, nil, &message)
        guard code == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(message)
            throw SQLiteError(code: code, message: text, sql: sql, path: path)
        }
    }

    // MARK: Transactions

    /// Runs `body` in a write transaction: `BEGIN IMMEDIATE` takes the write lock up front (waiting up
    /// to the busy timeout), so the transaction cannot fail half-way on a lock upgrade; `COMMIT` on
    /// return, `ROLLBACK` if `body` throws. Nested calls become savepoints, so an inner failure that the
    /// caller catches undoes only the inner part.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let savepoint = transactionDepth == 0 ? nil : "keel_savepoint_\(transactionDepth)"
        try executeScript(savepoint.map { "SAVEPOINT \($0)" } ?? "BEGIN IMMEDIATE")
        transactionDepth += 1
        let result: T
        do {
            result = try body()
        } catch {
            transactionDepth -= 1
            rollback(to: savepoint)
            throw error
        }
        transactionDepth -= 1
        do {
            try executeScript(savepoint.map { "RELEASE \($0)" } ?? "COMMIT")
        } catch {
            rollback(to: savepoint)
            throw error
        }
        return result
    }

    /// Runs `body` (its own statements or transactions) with `synchronous = FULL`, so that its commits
    /// fsync the WAL: they — and every commit before them — survive power loss, not only a process crash.
    /// For the few commits other durable state depends on (see `init`).
    public func durably<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        precondition(transactionDepth == 0, "SQLiteDatabase.durably: the synchronous level cannot change inside a transaction")
        try executeScript("PRAGMA synchronous = FULL")
        defer { try? executeScript("PRAGMA synchronous = NORMAL") }
        return try body()
    }

    private func rollback(to savepoint: String?) {
        // Best effort: if the transaction is already gone (SQLite rolls back by itself on some errors),
        // there is nothing to undo, and the original error is the one worth reporting.
        try? executeScript(savepoint.map { "ROLLBACK TO \($0); RELEASE \($0)" } ?? "ROLLBACK")
    }

    /// The schema version kept in the database header (`PRAGMA user_version`).
    public func userVersion() throws -> Int {
        Int(try query("PRAGMA user_version").first?["user_version"].integer ?? 0)
    }

    // MARK: Internals

    private func withStatement<T>(_ sql: String, _ arguments: [any SQLiteConvertible],
                                  _ body: (OpaquePointer) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        let parameterCount = Int(sqlite3_bind_parameter_count(statement))
        guard parameterCount == arguments.count else {
            throw SQLiteError(code: SQLITE_RANGE,
                              message: "statement has \(parameterCount) parameters, got \(arguments.count) arguments",
                              sql: sql, path: path)
        }
        for (offset, argument) in arguments.enumerated() {
            try bind(argument.sqliteValue, at: Int32(offset + 1), in: statement, sql)
        }
        return try body(statement)
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let cached = statements[sql] { return cached }
        var statement: OpaquePointer?
        // `tail` points into the C string, so it must be read while that string is alive (a String
        // passed directly is bridged to a temporary that is freed when the call returns).
        let (code, rest) = sql.withCString { text -> (Int32, String) in
            var tail: UnsafePointer<CChar>?
            let code = sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, &tail)
            return (code, tail.map { String(cString: $0) } ?? "")
        }
        guard code == SQLITE_OK, let statement else { throw error(code, sql) }
        if !rest.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            sqlite3_finalize(statement)
            throw SQLiteError(code: SQLITE_MISUSE, message: "more than one statement; use executeScript",
                              sql: sql, path: path)
        }
        statements[sql] = statement
        return statement
    }

    /// SQLite's `SQLITE_TRANSIENT`: a macro (a cast of -1 to a destructor) that Swift does not import.
    /// It tells SQLite to copy the bound bytes, since Swift frees them after the call.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private func bind(_ value: SQLiteValue, at index: Int32, in statement: OpaquePointer, _ sql: String) throws {
        let code: Int32
        switch value {
        case .integer(let number): code = sqlite3_bind_int64(statement, index, number)
        case .real(let number): code = sqlite3_bind_double(statement, index, number)
        case .text(let text): code = sqlite3_bind_text(statement, index, text, -1, Self.transient)
        case .blob(let data):
            code = data.withUnsafeBytes {
                sqlite3_bind_blob64(statement, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
                                    UInt64($0.count), Self.transient)
            }
        case .null: code = sqlite3_bind_null(statement, index)
        }
        guard code == SQLITE_OK else { throw error(code, sql) }
    }

    /// Steps once: true if a row is available, false when done.
    private func step(_ statement: OpaquePointer, _ sql: String) throws -> Bool {
        switch sqlite3_step(statement) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let code: throw error(code, sql)
        }
    }

    private func readColumn(_ statement: OpaquePointer, _ index: Int32) -> SQLiteValue {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, index)))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let bytes = sqlite3_column_blob(statement, index) else { return .blob(Data()) }
            return .blob(Data(bytes: bytes, count: count))
        default: return .null
        }
    }

    private func error(_ code: Int32, _ sql: String) -> SQLiteError {
        SQLiteError(code: code, message: String(cString: sqlite3_errmsg(handle)), sql: sql, path: path)
    }
}

/// A failed SQLite call: the result code, SQLite's message, and the statement that failed.
public struct SQLiteError: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public let sql: String?
    public let path: String

    /// Another connection held the lock for longer than the busy timeout.
    public var isBusy: Bool { code & 0xff == SQLITE_BUSY }

    public var description: String {
        "SQLite error \(code) (\(message)) in \(path)" + (sql.map { " running: \($0)" } ?? "")
    }
}

/// The five SQLite storage classes.
public enum SQLiteValue: Equatable, Sendable {
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob(Data)
    case null

    public var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
    /// REAL, or INTEGER widened (SQLite stores integral REALs as INTEGER in some expressions).
    public var real: Double? {
        switch self {
        case .real(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }
    public var text: String? { if case .text(let value) = self { value } else { nil } }
    public var blob: Data? { if case .blob(let value) = self { value } else { nil } }
    public var isNull: Bool { self == .null }
}

/// A Swift value that can be bound to a statement parameter.
public protocol SQLiteConvertible {
    var sqliteValue: SQLiteValue { get }
}

extension SQLiteValue: SQLiteConvertible { public var sqliteValue: SQLiteValue { self } }
extension Int64: SQLiteConvertible { public var sqliteValue: SQLiteValue { .integer(self) } }
extension Int: SQLiteConvertible { public var sqliteValue: SQLiteValue { .integer(Int64(self)) } }
extension Int32: SQLiteConvertible { public var sqliteValue: SQLiteValue { .integer(Int64(self)) } }
extension Double: SQLiteConvertible { public var sqliteValue: SQLiteValue { .real(self) } }
extension String: SQLiteConvertible { public var sqliteValue: SQLiteValue { .text(self) } }
extension Data: SQLiteConvertible { public var sqliteValue: SQLiteValue { .blob(self) } }
extension Bool: SQLiteConvertible { public var sqliteValue: SQLiteValue { .integer(self ? 1 : 0) } }
extension Optional: SQLiteConvertible where Wrapped: SQLiteConvertible {
    public var sqliteValue: SQLiteValue { self?.sqliteValue ?? .null }
}

/// One result row, read by column name with typed accessors that throw on NULL or a wrong type.
public struct SQLiteRow {
    let columns: [String: Int]
    public let values: [SQLiteValue]
    let sql: String
    let path: String

    /// `.null` for a column the statement does not have (use the typed accessors to get an error).
    public subscript(_ column: String) -> SQLiteValue {
        columns[column].map { values[$0] } ?? .null
    }

    public func int64(_ column: String) throws -> Int64 { try required(column, "INTEGER") { $0.integer } }
    public func int(_ column: String) throws -> Int { Int(try int64(column)) }
    public func double(_ column: String) throws -> Double { try required(column, "REAL") { $0.real } }
    public func string(_ column: String) throws -> String { try required(column, "TEXT") { $0.text } }
    public func data(_ column: String) throws -> Data { try required(column, "BLOB") { $0.blob } }

    public func optionalInt64(_ column: String) throws -> Int64? { try optional(column, "INTEGER") { $0.integer } }
    public func optionalInt(_ column: String) throws -> Int? { try optionalInt64(column).map { Int($0) } }
    public func optionalDouble(_ column: String) throws -> Double? { try optional(column, "REAL") { $0.real } }
    public func optionalString(_ column: String) throws -> String? { try optional(column, "TEXT") { $0.text } }

    private func optional<T>(_ column: String, _ expected: String, _ read: (SQLiteValue) -> T?) throws -> T? {
        guard let index = columns[column] else {
            throw SQLiteError(code: SQLITE_RANGE, message: "no column named '\(column)'", sql: sql, path: path)
        }
        let value = values[index]
        if value.isNull { return nil }
        guard let typed = read(value) else {
            throw SQLiteError(code: SQLITE_MISMATCH, message: "column '\(column)' holds \(value), expected \(expected)",
                              sql: sql, path: path)
        }
        return typed
    }

    private func required<T>(_ column: String, _ expected: String, _ read: (SQLiteValue) -> T?) throws -> T {
        guard let value = try optional(column, expected, read) else {
            throw SQLiteError(code: SQLITE_MISMATCH, message: "column '\(column)' is NULL, expected \(expected)",
                              sql: sql, path: path)
        }
        return value
    }
}
