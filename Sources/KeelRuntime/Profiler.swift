import Foundation
import Synchronization

/// Opt-in per-kernel wall-clock accumulator: name → (total seconds, calls).
///
/// Off by default, and then `begin()` is one relaxed atomic load and `end` one branch, so kernels can
/// stay instrumented permanently. Benchmarks switch it on to print each kernel's share of a step:
///
///     let token = Profiler.begin(); defer { Profiler.end("attention.forward", token) }
///
/// Nested regions are each counted in full (a parent's time includes its children's).
public enum Profiler {
    public struct Entry: Equatable, Sendable {
        public var seconds: Double
        public var calls: Int
    }

    private static let enabledFlag = Atomic<Bool>(false)
    private static let table = Mutex<[String: Entry]>([:])

    public static var isEnabled: Bool {
        get { enabledFlag.load(ordering: .relaxed) }
        set { enabledFlag.store(newValue, ordering: .relaxed) }
    }

    /// A start timestamp in nanoseconds, or 0 when profiling is off.
    @inline(__always)
    public static func begin() -> UInt64 {
        enabledFlag.load(ordering: .relaxed) ? DispatchTime.now().uptimeNanoseconds : 0
    }

    /// Adds the time since `token` to `name`. A zero token (profiling was off at `begin`) is ignored.
    @inline(__always)
    public static func end(_ name: @autoclosure () -> String, _ token: UInt64) {
        if token != 0 { record(name(), seconds: Double(DispatchTime.now().uptimeNanoseconds - token) * 1e-9) }
    }

    /// Times `body` under `name`.
    @inline(__always)
    public static func measure<R>(_ name: @autoclosure () -> String, _ body: () throws -> R) rethrows -> R {
        let token = begin()
        defer { end(name(), token) }
        return try body()
    }

    public static func record(_ name: String, seconds: Double) {
        table.withLock { entries in
            entries[name, default: Entry(seconds: 0, calls: 0)].seconds += seconds
            entries[name, default: Entry(seconds: 0, calls: 0)].calls += 1
        }
    }

    /// A copy of the accumulated entries.
    public static func snapshot() -> [String: Entry] { table.withLock { $0 } }

    public static func reset() { table.withLock { $0.removeAll() } }
}
