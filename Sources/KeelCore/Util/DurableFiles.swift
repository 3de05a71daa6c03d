import Foundation
import Glibc

/// A failed POSIX call, with the path and `strerror(errno)`.
public struct POSIXFileError: Error, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let errno: Int32

    public var description: String { "\(operation) \(path): \(String(cString: strerror(errno)))" }
}

/// A file being written through a raw descriptor and hashed on the way, so a checkpoint file's SHA-256
/// costs no second read; `write` takes borrowed bytes, so a weight buffer goes to disk without a copy.
public final class HashingFileSink {
    public let path: String
    private let descriptor: Int32
    private var hasher = SHA256()
    public private(set) var bytesWritten: Int64 = 0

    /// Creates `path`, which must not exist yet.
    init(creating path: String) throws {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw POSIXFileError(operation: "create", path: path, errno: errno) }
    }

    deinit { close(descriptor) }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var next = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let written = Glibc.write(descriptor, next, remaining)
            if written < 0 {
                if errno == EINTR { continue }
                throw POSIXFileError(operation: "write", path: path, errno: errno)
            }
            next += written
            remaining -= written
        }
        hasher.update(bytes)
        bytesWritten += Int64(bytes.count)
    }

    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Flushes to stable storage and returns the file's SHA-256 (hex).
    func finish() throws -> String {
        guard fsync(descriptor) == 0 else { throw POSIXFileError(operation: "fsync", path: path, errno: errno) }
        return hasher.finalizeHex()
    }
}

enum DurableFiles {
    /// fsync on a directory makes the entries created or renamed in it durable (POSIX leaves a
    /// rename's durability to the directory's fsync, not the file's).
    static func syncDirectory(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw POSIXFileError(operation: "open directory", path: path, errno: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw POSIXFileError(operation: "fsync directory", path: path, errno: errno) }
    }

    /// rename(2): atomic replacement of `destination`'s directory entry.
    static func rename(_ source: String, to destination: String) throws {
        guard Glibc.rename(source, destination) == 0 else {
            throw POSIXFileError(operation: "rename to \(destination)", path: source, errno: errno)
        }
    }
}
