import Foundation
import Glibc

/// A recipe file read once and decoded once: `keel validate`, `keel run`, `keel resume` and the daemon
/// all parse, hash and store this same text, so they can never disagree about what a recipe says.
///
/// Reading is bounded: only a regular file is read (a FIFO, a device such as `/dev/zero`, a socket or a
/// folder is refused without blocking: the file is opened non-blocking and checked with `fstat`), and
/// at most `maxBytes`. Decoding: UTF-8, a leading byte-order mark dropped; UTF-16/32 (by their byte-order
/// marks or NUL bytes) and invalid UTF-8 are refused at the true line and column of the first bad byte.
public struct RecipeSource: Sendable {
    /// The file's bytes as read (the daemon's queue keys recipe versions by their SHA-256).
    public let bytes: [UInt8]
    /// The decoded text, without a byte-order mark.
    public let text: String

    /// Throws `YAMLError` (so that it reads `file:line:column: …` like any other recipe error).
    public static func read(_ url: URL, displayName: String, maxBytes: Int) throws -> RecipeSource {
        let bytes = try readRegularFile(url.path, displayName: displayName, maxBytes: maxBytes)
        return RecipeSource(bytes: bytes, text: try decode(bytes, file: displayName))
    }

    /// Reads at most `maxBytes` of a regular file; refuses anything else at 1:1, naming what it found.
    static func readRegularFile(_ path: String, displayName: String, maxBytes: Int) throws -> [UInt8] {
        func refuse(_ message: String) -> YAMLError { YAMLError(file: displayName, mark: Mark(line: 1, column: 1), message: message) }
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            throw refuse(FileKind.unopenable(path, errno: code) + "; expected a recipe file (YAML)")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw refuse("cannot read it: \(String(cString: strerror(errno)))") }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw refuse("found \(FileKind.name(of: status.st_mode)); expected a regular file holding a recipe (YAML)")
        }
        guard status.st_size <= maxBytes else { throw refuse("file is \(status.st_size) bytes; expected at most \(maxBytes) bytes for a recipe") }
        var bytes = [UInt8](repeating: 0, count: maxBytes + 1)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + count, $0.count - count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw refuse("cannot read it: \(String(cString: strerror(errno)))")
            }
            if got == 0 { break }
            count += got
        }
        guard count <= maxBytes else { throw refuse("file is more than \(maxBytes) bytes; expected at most \(maxBytes) bytes for a recipe") }
        return Array(bytes[..<count])
    }

    /// UTF-8 text without its byte-order mark, or a `YAMLError` at the first byte that is not UTF-8.
    static func decode(_ bytes: [UInt8], file: String) throws -> String {
        let encodings: [(mark: [UInt8], name: String)] = [
            ([0x00, 0x00, 0xFE, 0xFF], "UTF-32 (big-endian)"), ([0xFF, 0xFE, 0x00, 0x00], "UTF-32 (little-endian)"),
            ([0xFE, 0xFF], "UTF-16 (big-endian)"), ([0xFF, 0xFE], "UTF-16 (little-endian)"),
        ]
        for encoding in encodings where bytes.starts(with: encoding.mark) {
            throw YAMLError(file: file, mark: Mark(line: 1, column: 1),
                            message: "found \(encoding.name) text (its byte-order mark); expected UTF-8 (convert it, e.g. iconv -t UTF-8)")
        }
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes.dropFirst(3) : bytes[...]
        var (line, column) = (1, 1)
        var iterator = body.makeIterator()
        var decoder = UTF8()
        var scalars = String.UnicodeScalarView()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                if scalar == "\0" {
                    throw YAMLError(file: file, mark: Mark(line: line, column: column),
                                    message: "found a NUL byte; expected UTF-8 text (is the file UTF-16 or binary?)")
                }
                scalars.append(scalar)
                if scalar == "\n" { (line, column) = (line + 1, 1) } else { column += 1 }
            case .emptyInput:
                return String(scalars)
            case .error:
                throw YAMLError(file: file, mark: Mark(line: line, column: column),
                                message: "found a byte that is not UTF-8; expected UTF-8 text")
            }
        }
    }
}

/// How messages name what is at a path that should have been a regular file.
enum FileKind {
    static func name(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "a regular file"
        }
    }

    /// Why `open(path)` failed with `code`, naming dangling symbolic links and loops.
    static func unopenable(_ path: String, errno code: Int32) -> String {
        var status = stat()
        switch code {
        case ENOENT where lstat(path, &status) == 0:
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
            return "found a symbolic link to \(target), which does not exist"
        case ELOOP: return "found a symbolic link loop"
        case ENOENT: return "no such file"
        default: return "cannot open it: \(String(cString: strerror(code)))"
        }
    }
}
