import Foundation
import Glibc

/// At most one daemon per `var/`: an exclusive `flock` on `var/daemon.lock`, holding the owner's pid.
///
/// Why flock: the kernel releases it when the process dies, however it dies, so a crashed daemon
/// never leaves a stale lock (a pid file alone would need guessing whether the pid is still ours).
/// The pid written into the file is only there to name the holder in the error message.
public final class InstanceLock {
    public static let fileName = "daemon.lock"

    public let path: String
    private var descriptor: Int32

    /// Takes the lock on `<varDirectory>/daemon.lock` without waiting, or throws naming the holder.
    public init(varDirectory: URL) throws {
        try FileManager.default.createDirectory(at: varDirectory, withIntermediateDirectories: true)
        path = varDirectory.appendingPathComponent(Self.fileName).path
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw InstanceLockError.cannotOpen(path: path, errno: errno) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let holder = Self.readPid(descriptor)
            close(descriptor)
            if code == EWOULDBLOCK { throw InstanceLockError.heldByAnotherDaemon(path: path, pid: holder) }
            throw InstanceLockError.cannotOpen(path: path, errno: code)
        }
        let pid = Data("\(getpid())\n".utf8)
        let written = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        guard ftruncate(descriptor, off_t(pid.count)) == 0, written == pid.count else {
            let code = errno
            close(descriptor)
            throw InstanceLockError.cannotOpen(path: path, errno: code)
        }
    }

    deinit { release() }

    /// Releases the lock (also released by the kernel when the process exits). The file stays: deleting
    /// it could let two daemons lock two different files of the same name.
    public func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
    }

    private static func readPid(_ descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

public enum InstanceLockError: Error, CustomStringConvertible, Equatable {
    case heldByAnotherDaemon(path: String, pid: Int32?)
    case cannotOpen(path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .heldByAnotherDaemon(path, pid):
            "another keel daemon (\(pid.map { "pid \($0)" } ?? "pid unknown")) already holds \(path); stop it first"
        case let .cannotOpen(path, code): "cannot lock \(path): \(String(cString: strerror(code)))"
        }
    }
}
