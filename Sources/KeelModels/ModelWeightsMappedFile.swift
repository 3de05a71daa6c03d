#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only, memory-mapped file (GGUF and safetensors readers share it).
///
/// Mapping instead of reading means opening a 100 MB model costs nothing until a tensor is touched,
/// and the page cache is shared between the processes of one machine.
final class MappedFile: @unchecked Sendable {
    let path: String
    /// Start of the mapping (nil only for an empty file, which `bytes` then presents as empty).
    private let base: UnsafeMutableRawPointer?
    let size: Int

    /// The whole file.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw MappedFileError.cannotOpen(path: path, reason: Self.errnoText()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw MappedFileError.cannotOpen(path: path, reason: Self.errnoText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw MappedFileError.cannotOpen(path: path, reason: "not a regular file")
        }
        size = Int(info.st_size)
        if size == 0 {
            base = nil
            return
        }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw MappedFileError.cannotOpen(path: path, reason: "mmap failed: \(Self.errnoText())")
        }
        base = mapped
    }

    deinit {
        if let base { munmap(base, size) }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

public enum MappedFileError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason): return "cannot open \(path): \(reason)"
        }
    }
}
