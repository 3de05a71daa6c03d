import Foundation
import Glibc

/// Runs checkpoint writes on a background thread, one at a time, so that training goes on while a
/// checkpoint's files are written, hashed and fsync'd (for SmolLM2 1.6 GB, tens of seconds on a shared
/// disk). The training thread only copies the state it must not change under the writer
/// (`CheckpointStaging`) and hands the write over; the next checkpoint, and the end of the run, wait for
/// the write in flight. A failed write is reported by the next `start` or `wait`, so a run never
/// finishes as if its checkpoint existed.
///
/// Why a thread of its own and not a dispatch queue: it runs at a lower priority (nice +10, Linux
/// applies nice per thread), so hashing does not take CPU from the training threads on a small machine,
/// and a pooled thread would keep that priority for unrelated work.
public final class BackgroundCheckpointWriter: @unchecked Sendable {
    private let condition = NSCondition()
    private var inFlight = false
    private var failure: Error?
    private var busy = 0.0

    public init() {}

    /// Total seconds the background thread spent in writes so far.
    public var busySeconds: Double { condition.withLock { busy } }

    /// Waits for the write in flight (if any) to finish, then runs `write` on a new background thread
    /// and returns at once. Throws, without starting `write`, if the previous write failed.
    public func start(_ write: @escaping () throws -> Void) throws {
        try wait()
        condition.withLock { inFlight = true }
        let thread = Thread { [self] in
            lowerThreadPriority()
            let started = DispatchTime.now().uptimeNanoseconds
            var failed: Error?
            do { try write() } catch { failed = error }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            condition.withLock {
                busy += seconds
                failure = failed
                inFlight = false
                condition.broadcast()
            }
        }
        thread.name = "keel-checkpoint-writer"
        thread.start()
    }

    /// Blocks until no write is in flight; throws the error of a write that failed since the last call.
    public func wait() throws {
        let failed: Error? = condition.withLock {
            while inFlight { condition.wait() }
            defer { failure = nil }
            return failure
        }
        if let failed { throw failed }
    }

    /// Blocks until no write is in flight, leaving a failure for `wait` or `start` to report.
    public func waitUntilIdle() {
        condition.withLock { while inFlight { condition.wait() } }
    }

    /// On Linux the nice value belongs to the thread, and `who` 0 means the calling thread.
    private func lowerThreadPriority() {
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        errno = 0
        let current = getpriority(which, 0)
        guard errno == 0 else { return }
        _ = setpriority(which, 0, min(current + 10, 19))
    }
}

/// Copies of tensors for a checkpoint being written while training changes the originals. The buffers
/// are allocated at the first checkpoint and reused by every later one (a fresh 1.6 GB allocation
/// would cost its page faults each time); the writer must be done with one checkpoint before the next
/// is staged, which `BackgroundCheckpointWriter.start` guarantees.
public final class CheckpointStaging {
    private var buffers: [String: Tensor] = [:]

    public init() {}

    /// A copy of `tensor` held under `key` (replacing what an earlier checkpoint staged under it).
    public func copy(_ tensor: Tensor, key: String) -> Tensor {
        let buffer: Tensor
        if let existing = buffers[key], existing.shape == tensor.shape {
            buffer = existing
        } else {
            buffer = Tensor(uninitialized: tensor.shape)  // the copy below writes every element
            buffers[key] = buffer
        }
        buffer.pointer.update(from: tensor.pointer, count: tensor.count)
        return buffer
    }

    /// Bytes held (what staging adds to a run's memory).
    public var bytes: Int { buffers.values.reduce(0) { $0 + $1.count * MemoryLayout<Float>.size } }
}

extension CheckpointFile {
    /// A safetensors file streamed straight into the checkpoint (header, then each tensor's bytes), so
    /// it is hashed on the way and needs no temporary copy. The tensors must not change until it is
    /// written (stage them first when training goes on meanwhile).
    public static func safetensors(_ name: String, _ tensors: [(name: String, tensor: Tensor)],
                                   metadata: [String: String] = [:]) throws -> CheckpointFile {
        let header = try SafeTensors.header(tensors.map { (name: $0.name, shape: $0.tensor.shape, count: $0.tensor.count) },
                                            metadata: metadata, source: name)
        return CheckpointFile(name: name) { sink in
            try sink.write(header)
            for (_, tensor) in tensors {
                try sink.write(UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.count * MemoryLayout<Float>.size))
            }
        }
    }
}
