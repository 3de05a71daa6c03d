import XCTest
@testable import KeelRuntime

final class ThreadPoolTests: XCTestCase {
    func testEveryIndexIsVisitedExactlyOnce() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool(threadCount: threads)
            for count in [0, 1, 2, 7, 64, 1001] {
                let visits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                visits.initialize(repeating: 0, count: max(count, 1))
                defer { visits.deallocate() }
                pool.parallelFor(count) { range in for i in range { visits[i] += 1 } }
                XCTAssertEqual((0..<count).map { visits[$0] }, Array(repeating: 1, count: count),
                               "threads \(threads), count \(count)")
            }
        }
    }

    func testChunksAreContiguousOrderedAndIndependentOfTiming() {
        let pool = ThreadPool(threadCount: 3)
        let count = 100
        var seen = Array(repeating: 0..<0, count: pool.chunkCount(count))
        seen.withUnsafeMutableBufferPointer { slots in
            pool.parallelFor(count) { chunk, range in slots[chunk] = range }
        }
        XCTAssertEqual(seen, [0..<33, 33..<66, 66..<100])
        XCTAssertEqual(pool.chunkCount(10, grain: 4), 2)
        XCTAssertEqual(pool.chunkCount(3, grain: 4), 1)
        XCTAssertEqual(pool.chunkCount(0), 0)
    }

    /// A per-chunk partial-sum reduction over values of very different magnitudes, where any change of
    /// summation order changes the Float result, must be bitwise identical over repeated runs.
    func testChunkedReductionIsBitwiseReproducible() {
        let pool = ThreadPool(threadCount: 2)
        var rng = Philox(seed: 3)
        let values = (0..<100_003).map { _ in rng.nextNormal() * Float.random(in: 1...1e6, using: &rng) }
        func reduce() -> Float {
            var partial = [Float](repeating: 0, count: pool.chunkCount(values.count, grain: 1000))
            partial.withUnsafeMutableBufferPointer { slots in
                values.withUnsafeBufferPointer { v in
                    pool.parallelFor(v.count, grain: 1000) { chunk, range in
                        var s: Float = 0
                        for i in range { s += v[i] }
                        slots[chunk] = s
                    }
                }
            }
            return partial.reduce(0, +)
        }
        let first = reduce()
        for _ in 0..<50 { XCTAssertEqual(reduce().bitPattern, first.bitPattern) }
    }

    func testBlocksCoverTheRangeOnceWithFixedBoundaries() {
        let pool = ThreadPool(threadCount: 2)
        for (count, blocks) in [(0, 4), (1, 4), (10, 3), (1000, 7), (5, 1)] {
            let visits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
            visits.initialize(repeating: 0, count: max(count, 1))
            defer { visits.deallocate() }
            var ranges = Array(repeating: 0..<0, count: max(min(blocks, count), 1))
            ranges.withUnsafeMutableBufferPointer { slots in
                pool.parallelBlocks(count, blocks: blocks) { block, worker, range in
                    precondition(worker >= 0 && worker < pool.threadCount)
                    slots[block] = range
                    for i in range { visits[i] += 1 }
                }
            }
            XCTAssertEqual((0..<count).map { visits[$0] }, Array(repeating: 1, count: count), "count \(count)")
            if count > 0 {
                let n = min(blocks, count)
                XCTAssertEqual(ranges, (0..<n).map { ThreadPool.chunkRange($0, of: n, count: count) })
            }
        }
    }

    /// Per-block partial sums merged in block order are bitwise reproducible although blocks go to
    /// whichever worker is free.
    func testBlockReductionIsBitwiseReproducible() {
        let pool = ThreadPool(threadCount: 2)
        var rng = Philox(seed: 4)
        let values = (0..<50_001).map { _ in rng.nextNormal() * Float.random(in: 1...1e6, using: &rng) }
        func reduce() -> Float {
            var partial = [Float](repeating: 0, count: 9)
            partial.withUnsafeMutableBufferPointer { slots in
                values.withUnsafeBufferPointer { v in
                    pool.parallelBlocks(v.count, blocks: 9) { block, _, range in
                        var s: Float = 0
                        for i in range { s += v[i] }
                        slots[block] = s
                    }
                }
            }
            return partial.reduce(0, +)
        }
        let first = reduce()
        for _ in 0..<50 { XCTAssertEqual(reduce().bitPattern, first.bitPattern) }
    }

    func testNestedCallsRunTheSameChunksInline() {
        let pool = ThreadPool(threadCount: 2)
        let cells = UnsafeMutablePointer<Int>.allocate(capacity: 40)
        cells.initialize(repeating: 0, count: 40)
        defer { cells.deallocate() }
        pool.parallelFor(4) { outer in
            for i in outer {
                pool.parallelFor(10) { inner in for j in inner { cells[i * 10 + j] += 1 } }
            }
        }
        XCTAssertEqual((0..<40).map { cells[$0] }, Array(repeating: 1, count: 40))
    }

    /// Many back-to-back dispatches (the pattern of a training step) neither lose a wake-up nor hang,
    /// including after the workers have gone to sleep.
    func testRepeatedDispatchesAndSleepingWorkers() {
        let pool = ThreadPool(threadCount: 2)
        var total = 0
        for round in 0..<2000 {
            var partial = [0, 0]
            partial.withUnsafeMutableBufferPointer { slots in
                pool.parallelFor(2) { chunk, range in slots[chunk] = range.count }
            }
            total += partial.reduce(0, +)
            if round % 500 == 0 { usleep(5000) }   // longer than the spin phase: workers block
        }
        XCTAssertEqual(total, 4000)
    }
}
