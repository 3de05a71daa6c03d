#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization
import COpenBLAS

/// A small persistent thread pool: `threadCount - 1` worker threads plus the calling thread.
///
/// Why not `DispatchQueue.concurrentPerform`: on this machine it cost 50–75 µs per small split and
/// occasionally failed to join. Here a dispatch is one mutex-protected counter bump; idle workers spin
/// for `spinIterations` polls before blocking on a condition variable, so back-to-back kernels in a
/// training step pay a few µs, while an idle process does not burn its cores.
///
/// Determinism: `parallelFor` cuts `0..<count` into `chunkCount` contiguous chunks whose boundaries
/// depend only on `count`, the grain and `threadCount` — never on timing — and chunk `i` is always
/// run as one call. A kernel that writes per-chunk partial sums and reduces them in chunk order is
/// therefore bitwise reproducible run to run for a given thread count. `parallelBlocks` keeps fixed
/// block boundaries too but hands blocks to whichever worker is free (load balance when another process
/// slows a core); results indexed by block stay reproducible. A nested call (from inside a running
/// body) or a call while another thread holds the pool runs the same chunks serially in order.
public final class ThreadPool: @unchecked Sendable {
    /// The process-wide pool used by every kernel. Size: `KEEL_THREADS`, else the number of active cores.
    public static let shared: ThreadPool = {
        _ = BLASThreads.configured
        return ThreadPool(threadCount: ThreadPool.defaultThreadCount())
    }()

    public let threadCount: Int

    /// Polls of the generation counter before an idle worker sleeps (~50–100 µs).
    private let spinIterations = 20_000

    private let generation = Atomic<Int>(0)
    private let unfinishedWorkers = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let nextBlock = Atomic<Int>(0)
    private let shuttingDown = Atomic<Bool>(false)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wakeup = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var sleepingWorkers = 0          // guarded by `mutex`
    /// The current job: called with a worker index in `0..<threadCount`. Written by the dispatching
    /// thread before the generation bump (release) and read by workers after seeing it (acquire).
    private var job: ((Int) -> Void)?
    private var workers: [Thread] = []

    public init(threadCount: Int) {
        precondition(threadCount >= 1, "ThreadPool: threadCount must be at least 1, got \(threadCount)")
        self.threadCount = threadCount
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wakeup, nil)
        for index in 1..<threadCount {
            let thread = Thread { [unowned self] in self.workerLoop(index: index) }
            thread.name = "keel-worker-\(index)"
            thread.stackSize = 8 << 20
            workers.append(thread)
            thread.start()
        }
    }

    deinit {
        shuttingDown.store(true, ordering: .relaxed)
        unfinishedWorkers.store(threadCount - 1, ordering: .relaxed)
        pthread_mutex_lock(mutex)
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(wakeup)
        pthread_mutex_unlock(mutex)
        // Workers hold `unowned self`; wait until each has left its loop before freeing what they use.
        while unfinishedWorkers.load(ordering: .acquiring) != 0 { sched_yield() }
        pthread_cond_destroy(wakeup)
        pthread_mutex_destroy(mutex)
        wakeup.deallocate()
        mutex.deallocate()
    }

    /// `KEEL_THREADS` if set to a positive integer, else the active processor count.
    public static func defaultThreadCount() -> Int {
        if let text = ProcessInfo.processInfo.environment["KEEL_THREADS"], let value = Int(text), value > 0 {
            return value
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Number of chunks `parallelFor` cuts `count` items into when each chunk must hold at least
    /// `grain` items. Kernels size per-chunk scratch with it.
    public func chunkCount(_ count: Int, grain: Int = 1) -> Int {
        guard count > 0 else { return 0 }
        return max(1, min(threadCount, count / max(grain, 1)))
    }

    /// The `chunk`-th of `chunks` contiguous, near-equal pieces of `0..<count`.
    @inline(__always)
    public static func chunkRange(_ chunk: Int, of chunks: Int, count: Int) -> Range<Int> {
        (chunk * count / chunks)..<((chunk + 1) * count / chunks)
    }

    /// Runs `body(chunkIndex, range)` once for each of `chunkCount(count, grain:)` contiguous chunks of
    /// `0..<count`, in parallel, and returns when all are done. Chunk `i` runs on worker `i`.
    public func parallelFor(_ count: Int, grain: Int = 1, _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        let chunks = chunkCount(count, grain: grain)
        if chunks == 0 { return }
        if chunks == 1 || !acquire() {
            for chunk in 0..<chunks { body(chunk, ThreadPool.chunkRange(chunk, of: chunks, count: count)) }
            return
        }
        runOnAllWorkers { worker in
            if worker < chunks { body(worker, ThreadPool.chunkRange(worker, of: chunks, count: count)) }
        }
    }

    /// Runs `body(block, worker, range)` for each of `blocks` contiguous blocks of `0..<count`
    /// (boundaries as in `chunkRange`), handing blocks to whichever worker is free next. Use it when
    /// blocks write disjoint outputs, or partial results indexed by `block` (never by `worker`, which
    /// varies run to run; use `worker` only for scratch). More blocks than threads keep all cores busy
    /// when one of them is slowed down by another process.
    public func parallelBlocks(_ count: Int, blocks: Int,
                               _ body: (_ block: Int, _ worker: Int, _ range: Range<Int>) -> Void) {
        let blocks = Swift.min(Swift.max(blocks, 1), count)
        if blocks <= 0 { return }
        if blocks == 1 || threadCount == 1 || !acquire() {
            for block in 0..<blocks { body(block, 0, ThreadPool.chunkRange(block, of: blocks, count: count)) }
            return
        }
        nextBlock.store(0, ordering: .relaxed)
        runOnAllWorkers { worker in
            while true {
                let block = nextBlock.wrappingAdd(1, ordering: .relaxed).oldValue
                if block >= blocks { break }
                body(block, worker, ThreadPool.chunkRange(block, of: blocks, count: count))
            }
        }
    }

    /// Claims the pool for one dispatch; false when it is already running one (nested or concurrent
    /// call), in which case the caller runs its work inline.
    private func acquire() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    }

    /// Runs `task(worker)` on every worker (the caller is worker 0) and waits; releases the pool.
    private func runOnAllWorkers(_ task: (Int) -> Void) {
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(task) { task in
            job = task
            unfinishedWorkers.store(threadCount - 1, ordering: .relaxed)
            pthread_mutex_lock(mutex)
            generation.add(1, ordering: .releasing)
            if sleepingWorkers > 0 { pthread_cond_broadcast(wakeup) }
            pthread_mutex_unlock(mutex)
            task(0)
            var polls = 0
            while unfinishedWorkers.load(ordering: .acquiring) != 0 {
                polls += 1
                if polls > spinIterations { sched_yield() }
            }
            job = nil
        }
    }

    /// Convenience form when the chunk index is not needed.
    public func parallelFor(_ count: Int, grain: Int = 1, _ body: (_ range: Range<Int>) -> Void) {
        parallelFor(count, grain: grain) { (_: Int, range: Range<Int>) in body(range) }
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            var polls = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen && polls < spinIterations {
                polls += 1
                current = generation.load(ordering: .acquiring)
            }
            if current == seen {
                pthread_mutex_lock(mutex)
                sleepingWorkers += 1
                while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(wakeup, mutex) }
                sleepingWorkers -= 1
                pthread_mutex_unlock(mutex)
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if shuttingDown.load(ordering: .relaxed) { unfinishedWorkers.subtract(1, ordering: .releasing); return }
            job?(index)
            unfinishedWorkers.subtract(1, ordering: .releasing)
        }
    }
}

/// OpenBLAS configuration: its thread count and its choice of CPU kernels.
///
/// Keel kernels split sgemm across `ThreadPool` and run OpenBLAS single-threaded: OpenBLAS's pthreads
/// otherwise keep spinning after each call and steal the cores from the pool's workers, and a split
/// with fixed boundaries is deterministic (compare the columns of `keel bench runtime`).
public enum BLASThreads {
    public static var count: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// How `parallelSgemm` (and so `matmulForward/Backward`, `Tensor.linear`) uses the cores.
    public enum SgemmSplit: String, Sendable {
        /// Row (or column) blocks of C on the ThreadPool, OpenBLAS single-threaded: deterministic, and
        /// no OpenBLAS thread keeps spinning after the call against the pool's workers.
        case pool
        /// One call on OpenBLAS's own threads (raised to the pool size for the call, then back to 1).
        /// Shares the packing of B between threads; its threads spin for a while after each call.
        case openBLAS = "openblas"
    }

    /// From `KEEL_SGEMM_SPLIT` (`pool` or `openblas`), default `.pool`. Not thread-safe to change while
    /// kernels run.
    nonisolated(unsafe) public static var sgemmSplit: SgemmSplit =
        ProcessInfo.processInfo.environment["KEEL_SGEMM_SPLIT"].flatMap(SgemmSplit.init(rawValue:)) ?? .pool

    /// The OpenBLAS kernel family in use, e.g. "SkylakeX", "Haswell", "Prescott".
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Runs once, before the first Keel kernel (from `ThreadPool.shared`); call it early if you use
    /// cblas directly. Sets OpenBLAS to one thread, and repairs its CPU detection: Debian's OpenBLAS
    /// 0.3.21 (DYNAMIC_ARCH) does not know newer CPUs (e.g. Intel family 6 model 207) and falls back
    /// to its SSE3 "Prescott" kernels, which run sgemm at half speed. If that happened, the user has not
    /// forced a choice (OPENBLAS_CORETYPE), and the CPU has AVX-512 or AVX2+FMA, the dispatch table
    /// is re-selected through OpenBLAS's exported `gotoblas_dynamic_quit/init` with
    /// OPENBLAS_CORETYPE=SkylakeX or Haswell — the same path OpenBLAS takes at load time.
    public static let configured: String = {
        count = 1
        #if os(Linux)
        if coreName == "Prescott", ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
           let flags = cpuFlags() {
            let target = flags.contains("avx512f") ? "SkylakeX" : (flags.contains("avx2") && flags.contains("fma") ? "Haswell" : nil)
            if let target, let library = dlopen(nil, RTLD_NOW),
               let quit = dlsym(library, "gotoblas_dynamic_quit"), let initialize = dlsym(library, "gotoblas_dynamic_init") {
                typealias Hook = @convention(c) () -> Void
                setenv("OPENBLAS_CORETYPE", target, 1)
                unsafeBitCast(quit, to: Hook.self)()
                unsafeBitCast(initialize, to: Hook.self)()
                unsetenv("OPENBLAS_CORETYPE")
            }
        }
        #endif
        return coreName
    }()

    private static func cpuFlags() -> Set<Substring>? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        return Set(line.split(separator: " "))
    }
}
