import Foundation
import XCTest
@testable import KeelModels

/// Paths of the real model and the shared PyTorch fixture, found from this file's location.
enum ModelFixtures {
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let smolLM2Path = repoRoot.appendingPathComponent("var/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    static let dpoFixturePath = repoRoot.appendingPathComponent("../shared/fixtures/smollm2_hh8_dpo.json").standardized.path
    /// Tiny random checkpoints of seven families with transformers' float64 numbers (see its README).
    static let familiesDirectory = repoRoot.appendingPathComponent("../shared/fixtures/families").standardized

    /// The real model's path, or a test failure that says how to get it (never a silent skip).
    static func requireSmolLM2(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard FileManager.default.fileExists(atPath: smolLM2Path) else {
            XCTFail("missing \(smolLM2Path): run scripts/setup.sh to download SmolLM2-135M-Instruct", file: file, line: line)
            throw XCTSkip("model file absent")
        }
        return smolLM2Path
    }

    /// A fresh scratch directory under the system temporary directory.
    static func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("keel-models-tests-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// `tokenizer` written as Hugging Face tokenizer files into a scratch directory and read back.
    static func rereadThroughHuggingFaceFiles(_ tokenizer: BPETokenizer, name: String) throws -> BPETokenizer {
        let directory = try temporaryDirectory(name)
        defer { try? FileManager.default.removeItem(at: directory) }
        try tokenizer.writeHuggingFaceFiles(to: directory)
        return try BPETokenizer(huggingFaceDirectory: directory)
    }
}
