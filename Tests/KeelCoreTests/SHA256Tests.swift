import Foundation
import XCTest
@testable import KeelCore

/// SHA-256 against the FIPS 180-4 example vectors (NIST "SHA256.pdf", "SHA2_Additional.pdf") and
/// against coreutils `sha256sum` as an independent implementation.
final class SHA256Tests: XCTestCase {
    func testFIPSVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
        ]
        for (message, digest) in vectors {
            XCTAssertEqual(SHA256.hex(of: Data(message.utf8)), digest, "message '\(message)'")
        }
    }

    /// One million 'a', fed in uneven chunks so that partial-block buffering is exercised too.
    func testMillionAInChunks() {
        let million = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        var hasher = SHA256()
        var offset = 0
        var chunk = 1
        while offset < million.count {
            let end = min(million.count, offset + chunk)
            hasher.update(million[offset..<end])
            offset = end
            chunk = chunk * 7 % 1021 + 1
        }
        XCTAssertEqual(hasher.finalizeHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths around the padding boundaries (55, 56, 63, 64, 119, 120 bytes) against sha256sum.
    func testPaddingBoundariesAndFileAgainstSha256sum() throws {
        let directory = try makeStoreTestDirectory()
        var generator = SystemRandomNumberGenerator()
        for length in [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1 << 20 | 13] {
            let bytes = Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let file = directory.appendingPathComponent("blob-\(length)")
            try bytes.write(to: file)
            let reference = try sha256sum(file)
            XCTAssertEqual(SHA256.hex(of: bytes), reference, "length \(length)")
            XCTAssertEqual(try SHA256.hex(ofFileAt: file), reference, "file of length \(length)")
        }
    }

    func testFinalizeDoesNotConsumeTheHasher() {
        var hasher = SHA256()
        hasher.update("ab")
        _ = hasher.finalize()
        hasher.update("c")
        XCTAssertEqual(hasher.finalizeHex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    private func sha256sum(_ file: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(String(decoding: output, as: UTF8.self).prefix(64))
    }
}
