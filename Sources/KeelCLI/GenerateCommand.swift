import ArgumentParser
import Foundation
import KeelCore
import KeelModels

/// `keel generate`: continue a prompt with a GGUF model (batch of 1, KV cache), streaming the text.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt with a GGUF model (greedy by default).")

    @Option(help: "A GGUF model file, or a Hugging Face model directory (e.g. one `keel export` wrote).")
    var model: String

    @Flag(help: "Treat the prompt as a user message: render it with the model's ChatML template (generation prompt added) and stop at <|im_end|>.")
    var chat = false

    @Option(help: "Most new tokens to generate.")
    var maxTokens = 128

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(help: "Nucleus sampling: keep the most likely tokens up to this total probability (1 keeps all).")
    var topP: Float = 1

    @Option(help: "Seed of the sampler (Philox).")
    var seed: UInt64 = 0

    @Argument(help: "The prompt.")
    var prompt: String

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0, got \(temperature)") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
    }

    func run() throws {
        let (llama, tokenizer) = try ModelLoading.pretrained(at: model)
        var stopTokens = Set([tokenizer.eosTokenID, llama.config.eosTokenId].compactMap { $0 })
        let promptIDs: [Int]
        if chat {
            promptIDs = try tokenizer.encodeChat([KeelModels.ChatMessage(role: .user, content: prompt)], addGenerationPrompt: true)
            guard let turnEnd = tokenizer.id(forToken: ChatMLTemplate.turnEnd) else {
                throw GenerationError("\(model): the vocabulary has no \(ChatMLTemplate.turnEnd) token to end the reply")
            }
            stopTokens.insert(turnEnd)
        } else {
            promptIDs = tokenizer.encode(prompt)
        }
        guard !promptIDs.isEmpty else { throw GenerationError("the prompt is empty") }

        let options = GenerationOptions(maxNewTokens: maxTokens, stopTokenIDs: stopTokens,
                                        sampling: SamplingOptions(temperature: temperature, topP: topP), seed: seed)
        var printer = Utf8StreamPrinter()
        let start = Date()
        let result = try llama.generate(prompt: promptIDs, options: options) { id in
            if stopTokens.contains(id) { return }
            printer.write((try? tokenizer.decodeBytes([id], skipSpecial: true)) ?? [])
        }
        printer.finish()
        let seconds = Date().timeIntervalSince(start)
        let reason: String
        switch result.stopReason {
        case .stopToken(let id): reason = "stop token \(id)"
        case .tokenLimit: reason = "token limit"
        case .contextFull: reason = "context full"
        }
        printError(String(format: "[%d prompt tokens, %d generated in %.2f s (%.1f tok/s incl. prefill), stopped by %@]",
                          promptIDs.count, result.tokens.count, seconds, Double(result.tokens.count) / max(seconds, 1e-9), reason))
    }
}

/// Writes decoded bytes to stdout as they come, holding back an incomplete UTF-8 sequence at the end
/// (one character may span several tokens).
struct Utf8StreamPrinter {
    private var pending: [UInt8] = []

    mutating func write(_ bytes: [UInt8]) {
        pending += bytes
        let complete = pending.count - incompleteSuffixLength(pending)
        guard complete > 0 else { return }
        FileHandle.standardOutput.write(Data(pending[..<complete]))
        pending.removeFirst(complete)
    }

    mutating func finish() {
        pending.append(UInt8(ascii: "\n"))
        FileHandle.standardOutput.write(Data(pending))
        pending = []
    }

    /// Bytes at the end that start a multi-byte character whose continuation has not arrived yet.
    private func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        for back in 1...min(3, bytes.count) {
            let byte = bytes[bytes.count - back]
            if byte & 0xC0 == 0x80 { continue }            // continuation byte: keep looking for the lead
            let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
            return length > back ? back : 0
        }
        return 0
    }
}
