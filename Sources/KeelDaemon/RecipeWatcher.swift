import Foundation
import Glibc
import KeelCore

/// Watches the top level of a recipes directory with inotify and reports recipe files (`*.yaml`,
/// `*.yml`) that finished arriving or went away, and anything else given such a name (a folder, a
/// symbolic link, a FIFO), which the daemon records as not a recipe.
///
/// Why inotify directly: Dispatch's file-system sources do not exist on Linux, and polling either
/// wastes a core or adds latency. A file is reported only when it is complete: on close after
/// writing (`IN_CLOSE_WRITE`: `cp`, an editor's save) or when renamed into the directory
/// (`IN_MOVED_TO`: an atomic `mv`). Creation and modification are not watched, so a file being
/// written is not reported before it is closed (only the start-up scan cannot tell; the close then
/// reports it again as `.written`).
///
/// All callbacks come from the watcher's own thread, in order. Consumers must be idempotent: a file
/// can be reported twice (as `.existing` by the start-up scan and `.written` by a close that raced
/// with it, or again by the full rescan after an inotify queue overflow).
public final class RecipeWatcher: @unchecked Sendable {
    public enum EventKind: String, Sendable {
        /// Found by the scan at start or the rescan after an inotify queue overflow.
        case existing
        /// Closed after writing, or moved into the directory.
        case written
        /// Deleted, or moved out of the directory.
        case removed
    }

    public let directory: URL
    private let onEvent: (URL, EventKind) -> Void
    private let onFailure: (Error) -> Void

    /// File descriptors: the inotify instance and a pipe whose write end wakes the loop to stop.
    private var inotify: Int32 = -1
    private var wakeRead: Int32 = -1, wakeWrite: Int32 = -1
    private var thread: Thread?
    /// Signalled by the watcher thread when the initial scan is done, and when it exits.
    private var scanned = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0)
    private var scanError: Error?
    private let stateLock = NSLock()
    private var isRunning = false
    /// Recipe file names currently present, as last reported; lets a rescan report removals too.
    /// Touched only by the watcher thread (or by tests before `start`).
    private var known: Set<String> = []

    /// What the watch asks for. IN_Q_OVERFLOW (events were dropped) and IN_IGNORED (the watch is
    /// gone) are always delivered without asking.
    private static let watchMask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_CREATE)
        | UInt32(IN_DELETE_SELF | IN_MOVE_SELF)

    /// - onEvent: called on the watcher thread with the file's URL and what happened to it.
    /// - onFailure: called on the watcher thread when watching ends by itself (the directory was
    ///   removed or moved, or a system call failed); no event follows it.
    public init(directory: URL, onEvent: @escaping (URL, EventKind) -> Void,
                onFailure: @escaping (Error) -> Void = { _ in }) {
        self.directory = directory.standardizedFileURL
        self.onEvent = onEvent
        self.onFailure = onFailure
    }

    /// Starts watching and returns once the initial scan has been reported (from the watcher thread).
    /// The watch is added before the scan, so no file can arrive unseen between the two; a file closed
    /// during the scan may be reported twice (`.existing`, then `.written`).
    public func start() throws {
        stateLock.lock()
        guard !isRunning else { return stateLock.unlock() }
        do {
            try openDescriptors()
        } catch {
            stateLock.unlock()
            throw error
        }
        isRunning = true
        (scanned, stopped, scanError) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0), nil)
        let thread = Thread { [self] in run() }
        thread.name = "keel.recipe-watcher"
        self.thread = thread
        thread.start()
        stateLock.unlock()
        scanned.wait()
        if let scanError {
            stopped.wait()  // the thread has closed its descriptors; `start` may be called again
            throw scanError
        }
    }

    private func openDescriptors() throws {
        inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard inotify >= 0 else { throw WatcherError.system("inotify_init1", errno) }
        guard inotify_add_watch(inotify, directory.path, Self.watchMask) >= 0 else {
            let code = errno
            close(inotify)
            throw code == ENOENT || code == ENOTDIR ? WatcherError.notADirectory(directory.path)
                                                    : WatcherError.system("inotify_add_watch \(directory.path)", code)
        }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            let code = errno
            close(inotify)
            throw WatcherError.system("pipe", code)
        }
        (wakeRead, wakeWrite) = (ends[0], ends[1])
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }  // pipe2 is not imported into Swift
    }

    /// Stops the watcher and waits for its thread to finish, unless called from a callback (then the
    /// loop ends as soon as the callback returns). No callback runs after `stop` returns.
    public func stop() {
        stateLock.lock()
        let wasRunning = isRunning
        if wasRunning {
            // Under the lock: the watcher thread closes this descriptor only while holding it.
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
        isRunning = false
        stateLock.unlock()
        if wasRunning && Thread.current != thread { stopped.wait() }
    }

    /// Editors and copy tools create helper files next to the one being saved; none may start a run.
    /// Dotfiles cover hidden files, Emacs locks (`.#x.yaml`), Vim swaps (`.x.yaml.swp`) and the hidden
    /// temporaries of atomic savers; requiring the extension excludes backups (`x.yaml~`), Vim's
    /// write probe (`4913`) and everything else.
    public static func isRecipeFileName(_ name: String) -> Bool {
        !name.hasPrefix(".") && (name.hasSuffix(".yaml") || name.hasSuffix(".yml"))
    }

    // MARK: Watcher thread

    private func run() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024,
                                                            alignment: MemoryLayout<inotify_event>.alignment)
        defer {
            buffer.deallocate()
            stateLock.lock()
            isRunning = false
            close(inotify)
            close(wakeRead)
            close(wakeWrite)
            stateLock.unlock()
            stopped.signal()
        }
        do {
            try rescan()
            scanned.signal()
        } catch {
            scanError = error  // thrown by `start`
            scanned.signal()
            return
        }
        do {
            var descriptors = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            while true {
                if poll(&descriptors, nfds_t(descriptors.count), -1) < 0 {
                    if errno == EINTR { continue }
                    throw WatcherError.system("poll", errno)
                }
                if descriptors[1].revents != 0 { return }
                guard descriptors[0].revents != 0 else { continue }
                let count = read(inotify, buffer.baseAddress, buffer.count)
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    throw WatcherError.system("read inotify", errno)
                }
                try handleEvents(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
        } catch {
            stateLock.lock()
            let stopRequested = !isRunning
            stateLock.unlock()
            if !stopRequested { onFailure(error) }
        }
    }

    /// Decodes a buffer of `struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }`
    /// records (`name` NUL-padded) and reports the recipe files among them.
    func handleEvents(_ bytes: UnsafeRawBufferPointer) throws {
        let headerSize = MemoryLayout<inotify_event>.size
        let maskOffset = MemoryLayout<inotify_event>.offset(of: \.mask)!
        let lengthOffset = MemoryLayout<inotify_event>.offset(of: \.len)!
        var offset = 0
        while offset + headerSize <= bytes.count {
            let mask = bytes.loadUnaligned(fromByteOffset: offset + maskOffset, as: UInt32.self)
            let nameLength = Int(bytes.loadUnaligned(fromByteOffset: offset + lengthOffset, as: UInt32.self))
            let nameStart = offset + headerSize
            let nameEnd = min(bytes.count, nameStart + nameLength)
            let name = String(decoding: bytes[nameStart..<nameEnd].prefix { $0 != 0 }, as: UTF8.self)
            offset = nameStart + nameLength
            try handle(mask: mask, name: name)
        }
    }

    private func handle(mask: UInt32, name: String) throws {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 { return try rescan() }
        if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
            throw WatcherError.directoryGone(directory.path)
        }
        guard Self.isRecipeFileName(name) else { return }
        // A regular file is reported when it is closed; anything else that gets a recipe's name (a
        // folder, a symbolic link, a FIFO) is never closed after writing, so it is reported as it
        // appears, for the daemon to record why it is not a recipe.
        if mask & UInt32(IN_CREATE) != 0 {
            var status = stat()
            guard lstat(directory.appendingPathComponent(name).path, &status) == 0, status.st_mode & S_IFMT != S_IFREG else { return }
            known.insert(name)
            onEvent(directory.appendingPathComponent(name), .written)
        } else if mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO) != 0 {
            known.insert(name)
            onEvent(directory.appendingPathComponent(name), .written)
        } else if mask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0 {
            known.remove(name)
            onEvent(directory.appendingPathComponent(name), .removed)
        }
    }

    /// Lists the directory: reports known files that are gone as `.removed`, then every entry with a
    /// recipe's name as `.existing` (name order; folders, links and special files too, for the daemon to
    /// record). Used at start and when inotify dropped events.
    func rescan() throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter(Self.isRecipeFileName).sorted()
        } catch {
            throw WatcherError.directoryGone(directory.path)
        }
        for gone in known.subtracting(names).sorted() {
            onEvent(directory.appendingPathComponent(gone), .removed)
        }
        known = Set(names)
        for name in names {
            onEvent(directory.appendingPathComponent(name), .existing)
        }
    }
}

public enum WatcherError: Error, CustomStringConvertible, Equatable {
    case notADirectory(String)
    case directoryGone(String)
    case system(String, Int32)

    public var description: String {
        switch self {
        case .notADirectory(let path): "cannot watch \(path): no such directory"
        case .directoryGone(let path): "stopped watching \(path): the directory was removed or moved"
        case let .system(call, code): "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}
