import Foundation

/// `keel bench runtime`: sgemm throughput, the fp32 FMA peak, and a synthetic SmolLM2-shaped
/// training step assembled from the Keel kernels, with each kernel's share of the step.
public enum RuntimeBenchmark {
    public struct Options: Sendable {
        /// Timed repetitions per sgemm shape and per step (after one warm-up).
        public var repetitions: Int = 3
        public var stepConfig = SyntheticStepConfig.smolLM2
        /// Skip the (heavy) synthetic step, e.g. in tests.
        public var includeStep = true
        public init() {}
    }

    public struct SgemmResult: Codable, Sendable {
        public let M: Int, K: Int, N: Int
        /// OpenBLAS on the calling thread only.
        public let gflopsOneThread: Double
        /// Rows split over `ThreadPool.shared` with single-threaded OpenBLAS (what the kernels use).
        public let gflopsPool: Double
        /// One call with OpenBLAS's own threads (BLAS threads = pool size), for comparison.
        public let gflopsOpenBLASThreads: Double
    }

    public struct KernelShare: Codable, Sendable {
        public let name: String
        public let seconds: Double
        public let calls: Int
        public let share: Double
    }

    public struct StepResult: Codable, Sendable {
        public let description: String
        /// `BLASThreads.sgemmSplit` during the measurement.
        public let sgemmSplit: String
        public let forwardSeconds: Double
        public let forwardTokensPerSecond: Double
        public let stepSeconds: Double
        public let stepTokensPerSecond: Double
        /// Process CPU time (user + system, all threads; least over repetitions). On a shared machine
        /// CPU time / threads bounds the quiet-machine wall time from above (idle spinning counts too).
        public let forwardCPUSeconds: Double
        public let stepCPUSeconds: Double
        /// Profiled forward+backward, kernel by kernel, largest first.
        public let kernels: [KernelShare]
    }

    public struct Report: Codable, Sendable {
        public let threads: Int
        /// OpenBLAS kernel family in use (see `BLASThreads.configured`).
        public let blasCore: String
        public let fmaPeakGflopsOneThread: Double
        public let fmaPeakGflopsAllThreads: Double
        public let sgemm: [SgemmResult]
        public let step: StepResult?
        /// The same step with the other `BLASThreads.SgemmSplit` (timings only, no kernel profile).
        public let stepOtherSgemmSplit: StepResult?
        /// 1-minute load average when the benchmark started (other processes compete for the cores).
        public let loadAverageAtStart: Double
        /// Microseconds per empty `parallelFor` over the pool's threads: the fixed cost every threaded
        /// kernel call pays (a pathological pool shows up here as tens of µs).
        public let poolDispatchMicroseconds: Double
    }

    public static func run(_ options: Options = Options()) -> Report {
        let load = loadAverage()
        let pool = ThreadPool.shared
        let savedBLASThreads = BLASThreads.count
        defer { BLASThreads.count = savedBLASThreads }
        BLASThreads.count = 1
        let dispatch = poolDispatchMicroseconds()
        let peak1 = fmaPeakGflops(threads: 1)
        let peakAll = fmaPeakGflops(threads: pool.threadCount)
        let shapes = [(1024, 576, 1536), (1024, 1536, 576), (1024, 576, 49152)]
        let sgemm = shapes.map { measureSgemm(M: $0.0, K: $0.1, N: $0.2, repetitions: options.repetitions) }
        var step: StepResult?, other: StepResult?
        if options.includeStep {
            BLASThreads.count = 1
            step = measureStep(options.stepConfig, repetitions: options.repetitions)
            let configured = BLASThreads.sgemmSplit
            defer { BLASThreads.sgemmSplit = configured }
            BLASThreads.sgemmSplit = configured == .pool ? .openBLAS : .pool
            other = measureStep(options.stepConfig, repetitions: options.repetitions, profile: false)
        }
        return Report(threads: pool.threadCount, blasCore: BLASThreads.coreName, fmaPeakGflopsOneThread: peak1,
                      fmaPeakGflopsAllThreads: peakAll, sgemm: sgemm, step: step, stepOtherSgemmSplit: other,
                      loadAverageAtStart: load, poolDispatchMicroseconds: dispatch)
    }

    /// Mean µs of an empty dispatch of one chunk per pool thread, after a warm-up.
    public static func poolDispatchMicroseconds(rounds: Int = 10_000) -> Double {
        let pool = ThreadPool.shared
        for _ in 0..<100 { pool.parallelFor(pool.threadCount) { _, _ in } }
        let start = now()
        for _ in 0..<rounds { pool.parallelFor(pool.threadCount) { _, _ in } }
        return (now() - start) / Double(rounds) * 1e6
    }

    /// GFLOP/s of a register-resident FMA loop on `threads` pool workers: 12 independent SIMD8
    /// accumulators cover the FMA latency × ports. Compiled for x86-64-v3 (AVX2), so on AVX-512
    /// machines this is the peak of Keel's own Swift loops, not of OpenBLAS's AVX-512 kernels.
    public static func fmaPeakGflops(threads: Int, iterations: Int = 20_000_000) -> Double {
        let perChunk = UnsafeMutablePointer<Float>.allocate(capacity: threads)
        defer { perChunk.deallocate() }
        let start = now()
        ThreadPool.shared.parallelFor(threads) { chunk, _ in perChunk[chunk] = fmaLoop(iterations) }
        let seconds = now() - start
        precondition(perChunk[0].isFinite, "fma loop overflowed")
        return Double(threads) * Double(iterations) * 12 * 8 * 2 / seconds / 1e9
    }

    @inline(never)
    static func fmaLoop(_ iterations: Int) -> Float {
        let m = SIMD8<Float>(repeating: 1e-7), c = SIMD8<Float>(repeating: 1e-3)
        var a0 = SIMD8<Float>(repeating: 0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0
        var a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0
        for _ in 0..<iterations {
            a0.addProduct(m, c); a1.addProduct(m, c); a2.addProduct(m, c); a3.addProduct(m, c)
            a4.addProduct(m, c); a5.addProduct(m, c); a6.addProduct(m, c); a7.addProduct(m, c)
            a8.addProduct(m, c); a9.addProduct(m, c); a10.addProduct(m, c); a11.addProduct(m, c)
        }
        return (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).sum()
    }

    /// C [M,N] = A [M,K] · B [K,N]: the best of `repetitions` timings, in GFLOP/s, three ways.
    public static func measureSgemm(M: Int, K: Int, N: Int, repetitions: Int) -> SgemmResult {
        let a = TensorStorage(count: M * K), b = TensorStorage(count: K * N), c = TensorStorage(count: M * N)
        var rng = Philox(seed: 1)
        for i in 0..<M * K { a.pointer[i] = rng.nextNormal() }
        for i in 0..<K * N { b.pointer[i] = rng.nextNormal() }
        let flops = 2 * Double(M) * Double(N) * Double(K)
        func best(_ body: () -> Void) -> Double {
            body()
            var fastest = Double.infinity
            for _ in 0..<max(1, repetitions) {
                let start = now()
                body()
                fastest = min(fastest, now() - start)
            }
            return flops / fastest / 1e9
        }
        BLASThreads.count = 1
        let one = best {
            sgemm(transA: false, transB: false, M: M, N: N, K: K, alpha: 1, a.pointer, lda: K, b.pointer, ldb: N,
                  beta: 0, c.pointer, ldc: N)
        }
        let pooled = best {
            parallelSgemm(transA: false, transB: false, M: M, N: N, K: K, a.pointer, lda: K, b.pointer, ldb: N,
                          beta: 0, c.pointer, ldc: N)
        }
        BLASThreads.count = ThreadPool.shared.threadCount
        let openblas = best {
            sgemm(transA: false, transB: false, M: M, N: N, K: K, alpha: 1, a.pointer, lda: K, b.pointer, ldb: N,
                  beta: 0, c.pointer, ldc: N)
        }
        BLASThreads.count = 1
        return SgemmResult(M: M, K: K, N: N, gflopsOneThread: one, gflopsPool: pooled, gflopsOpenBLASThreads: openblas)
    }

    /// Forward-only and forward+backward timings (best of `repetitions`), then one profiled step.
    public static func measureStep(_ config: SyntheticStepConfig, repetitions: Int, profile: Bool = true) -> StepResult {
        let model = SyntheticLLaMAStep(config)
        let tokens = Double(config.batch * config.sequence)
        model.forward()
        var forwardBest = Double.infinity, forwardCPU = Double.infinity
        for _ in 0..<max(1, repetitions) {
            let (start, cpuStart) = (now(), processCPUSeconds())
            model.forward()
            forwardBest = min(forwardBest, now() - start)
            forwardCPU = min(forwardCPU, processCPUSeconds() - cpuStart)
        }
        model.backward()
        var stepBest = Double.infinity, stepCPU = Double.infinity
        for _ in 0..<max(1, repetitions) {
            let (start, cpuStart) = (now(), processCPUSeconds())
            model.forward()
            model.backward()
            stepBest = min(stepBest, now() - start)
            stepCPU = min(stepCPU, processCPUSeconds() - cpuStart)
        }
        guard profile else {
            return StepResult(description: config.description, sgemmSplit: BLASThreads.sgemmSplit.rawValue,
                              forwardSeconds: forwardBest, forwardTokensPerSecond: tokens / forwardBest,
                              stepSeconds: stepBest, stepTokensPerSecond: tokens / stepBest,
                              forwardCPUSeconds: forwardCPU, stepCPUSeconds: stepCPU, kernels: [])
        }
        let wasEnabled = Profiler.isEnabled
        Profiler.reset()
        Profiler.isEnabled = true
        let start = now()
        model.forward()
        model.backward()
        let profiledSeconds = now() - start
        Profiler.isEnabled = wasEnabled
        let kernels = Profiler.snapshot()
            .map { KernelShare(name: $0.key, seconds: $0.value.seconds, calls: $0.value.calls,
                               share: $0.value.seconds / profiledSeconds) }
            .sorted { $0.seconds > $1.seconds }
        Profiler.reset()
        return StepResult(description: config.description, sgemmSplit: BLASThreads.sgemmSplit.rawValue,
                          forwardSeconds: forwardBest,
                          forwardTokensPerSecond: tokens / forwardBest, stepSeconds: stepBest,
                          stepTokensPerSecond: tokens / stepBest, forwardCPUSeconds: forwardCPU,
                          stepCPUSeconds: stepCPU, kernels: kernels)
    }

    /// The report as aligned text.
    public static func format(_ report: Report) -> String {
        func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }
        var lines = ["Keel runtime benchmark — \(report.threads) threads, OpenBLAS \(report.blasCore) kernels, "
                     + "load average at start \(f(report.loadAverageAtStart, 2))"]
        lines.append("fp32 FMA peak (AVX2 loop): \(f(report.fmaPeakGflopsOneThread)) GFLOP/s on 1 thread, "
                     + "\(f(report.fmaPeakGflopsAllThreads)) on \(report.threads)")
        lines.append("thread pool: \(f(report.poolDispatchMicroseconds, 2)) µs per empty dispatch over \(report.threads) threads")
        lines.append("sgemm GFLOP/s (C[M,N] = A[M,K]·B[K,N]; best of repetitions):")
        lines.append("  M×K×N                 1 thread   pool split   OpenBLAS threads")
        for s in report.sgemm {
            let shape = "\(s.M)×\(s.K)×\(s.N)".padding(toLength: 20, withPad: " ", startingAt: 0)
            lines.append("  \(shape)  \(f(s.gflopsOneThread).leftPad(8))   \(f(s.gflopsPool).leftPad(10))   \(f(s.gflopsOpenBLASThreads).leftPad(16))")
        }
        if let step = report.step {
            lines.append(step.description)
            for result in [step] + (report.stepOtherSgemmSplit.map { [$0] } ?? []) {
                lines.append("  sgemm split \(result.sgemmSplit):")
                lines.append("    forward:          \(f(result.forwardSeconds, 3)) s = \(f(result.forwardTokensPerSecond)) tok/s"
                             + "  (CPU \(f(result.forwardCPUSeconds, 3)) s)")
                lines.append("    forward+backward: \(f(result.stepSeconds, 3)) s = \(f(result.stepTokensPerSecond)) tok/s"
                             + "  (CPU \(f(result.stepCPUSeconds, 3)) s)")
            }
            lines.append("  profiled forward+backward (sgemm split \(step.sgemmSplit)) by kernel, share of the step:")
            for k in step.kernels {
                lines.append("    \(k.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(f(k.seconds, 3).leftPad(7)) s "
                             + "\(f(100 * k.share).leftPad(5)) %  \(k.calls) calls")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    static func processCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static func loadAverage() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
              let first = text.split(separator: " ").first, let value = Double(first) else { return -1 }
        return value
    }
}

private extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
