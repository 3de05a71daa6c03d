import XCTest
@testable import KeelRuntime

final class PhiloxTests: XCTestCase {
    /// Known-answer test from the Random123 distribution (kat_vectors: philox4x32_10,
    /// counter = 0, key = 0 → 6627e8d5 e169c58d bc57ac4c 9b00dbd8).
    func testKnownAnswerZeroCounterZeroKey() {
        let (a, b, c, d) = Philox(seed: 0).block(counter: 0)
        XCTAssertEqual([a, b, c, d], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
    }

    func testSavedStateResumesTheSameStreamMidBlock() throws {
        var rng = Philox(seed: 42)
        for _ in 0..<7 { _ = rng.nextUInt32() }           // stop in the middle of a 4-word block
        let saved = try JSONEncoder().encode(rng)
        let expected = (0..<10).map { _ in rng.nextUInt32() }
        var restored = try JSONDecoder().decode(Philox.self, from: saved)
        XCTAssertEqual((0..<10).map { _ in restored.nextUInt32() }, expected)
    }

    func testSplitStreamsDifferFromEachOtherAndTheParent() {
        let root = Philox(seed: 7)
        var a = root.split(1), b = root.split(2), parent = root
        let xs = (0..<4).map { _ in a.nextUInt32() }, ys = (0..<4).map { _ in b.nextUInt32() }
        XCTAssertNotEqual(xs, ys)
        XCTAssertNotEqual(xs, (0..<4).map { _ in parent.nextUInt32() })
        var again = root.split(1)
        XCTAssertEqual((0..<4).map { _ in again.nextUInt32() }, xs)
    }

    func testUniformAndNormalMoments() {
        var rng = Philox(seed: 3)
        let n = 200_000
        var sumU = 0.0, sumN = 0.0, sumN2 = 0.0
        for _ in 0..<n {
            let u = rng.nextFloat(); XCTAssert(u >= 0 && u < 1)
            sumU += Double(u)
            let z = Double(rng.nextNormal()); sumN += z; sumN2 += z * z
        }
        XCTAssertEqual(sumU / Double(n), 0.5, accuracy: 0.005)
        XCTAssertEqual(sumN / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(sumN2 / Double(n), 1, accuracy: 0.02)
    }
}
