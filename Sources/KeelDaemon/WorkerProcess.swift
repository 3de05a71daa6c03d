import Foundation
import Glibc

/// One `keel worker RUN` child process of the daemon, with its standard output and error appended to
/// the run's log file.
///
/// Why posix_spawn rather than Foundation.Process: the daemon ignores SIGTERM/SIGINT (Dispatch signal
/// sources need that) and ignored dispositions survive exec, so the child must get them reset to default
/// (`POSIX_SPAWN_SETSIGDEF`) and an empty signal mask; Process offers neither. The daemon reaps its
/// workers itself with `waitpid(WNOHANG)`, which Process would race with.
public final class WorkerProcess {
    public let runID: String
    public let pid: pid_t
    public let logURL: URL
    public let startedAt: Date
    /// Where this worker's output starts in the log (earlier attempts of the run come before).
    let logOffset: UInt64
    /// Set when the daemon itself sent SIGTERM/SIGKILL (shutdown or cancel), so the exit is not a crash.
    public var stopSignalSent = false

    /// Starts `executable arguments…` with stdout and stderr appended to `logURL` (created if needed)
    /// and stdin from /dev/null.
    public init(runID: String, executable: String, arguments: [String], logURL: URL,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.runID = runID
        self.logURL = logURL
        try FileManager.default.createDirectory(at: logURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        logOffset = ((try? FileManager.default.attributesOfItem(atPath: logURL.path)[.size]) as? NSNumber)?.uint64Value ?? 0

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logURL.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t(), empty = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGCHLD, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var child: pid_t = 0
        let code = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard code == 0 else { throw DaemonError("cannot start \(executable): \(String(cString: strerror(code)))") }
        pid = child
        startedAt = Date()
    }

    /// The exit status if the process has ended (reaping it), nil while it runs.
    public func poll() -> WorkerExit? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return nil }
        return WorkerExit(waitStatus: status)
    }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// What this worker printed before it died, for a crash report: its last `count` lines of output
    /// before the Swift runtime's crash backtrace (which stays in the log; its register dumps would
    /// crowd out the "Fatal error: …" line that says what happened).
    public func outputBeforeCrash(lines count: Int = 20) -> String {
        guard let handle = try? FileHandle(forReadingFrom: logURL) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: logOffset)
        let output = String(decoding: (try? handle.read(upToCount: 1 << 20)) ?? Data(), as: UTF8.self)
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        let beforeBacktrace = lines.prefix { !$0.contains(Self.backtraceMarker) }
        return beforeBacktrace.suffix(count).joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The first line of the Swift runtime's backtrace ("💣 Program crashed: Illegal instruction at …").
    static let backtraceMarker = "Program crashed:"
}

/// How a worker ended, decoded from a `waitpid` status.
public enum WorkerExit: Equatable, Sendable, CustomStringConvertible {
    case exited(code: Int32)
    case signalled(Int32)

    init(waitStatus status: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros, not imported: low 7 bits are the signal (0: exited).
        let signal = status & 0x7f
        self = signal == 0 ? .exited(code: (status >> 8) & 0xff) : .signalled(signal)
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signalled(let signal): "killed by \(Self.signalName(signal))"
        }
    }

    /// "SIGILL (illegal instruction: a Swift trap, fatalError or precondition)" etc.
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
            SIGPIPE: "SIGPIPE", SIGTERM: "SIGTERM",
        ]
        let name = names[signal] ?? "signal \(signal)"
        switch signal {
        // Swift traps (fatalError, precondition, force-unwrap of nil, overflow) are `ud2` on x86-64: SIGILL.
        case SIGILL, SIGTRAP: return "\(name) (a Swift runtime trap: fatalError, precondition or overflow)"
        case SIGSEGV, SIGBUS: return "\(name) (invalid memory access)"
        case SIGKILL: return "\(name) (killed from outside, e.g. the out-of-memory killer)"
        default: return name
        }
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
