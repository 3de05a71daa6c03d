import Foundation

extension BPETokenizer {
    /// The special tokens of the tokenizer for tiny models, after the 256 byte tokens (ids 256, 257, 258).
    public enum ByteLevelSpecial {
        public static let endOfText = "<|endoftext|>"
        public static let turnStart = ChatMLTemplate.turnStart
        public static let turnEnd = ChatMLTemplate.turnEnd
        public static let all = [endOfText, turnStart, turnEnd]
    }

    /// HF's default ChatML template (the Jinja text `ChatMLTemplate(jinjaSource:)` recognises), so that
    /// conversational data renders for tiny models exactly as it would for a ChatML model.
    static let defaultChatMLJinja = #"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"#

    /// The tokenizer of tiny random models (`model: {tiny: …}`): byte-level BPE with NO merges, so every
    /// UTF-8 byte is one token (ids 0–255, byte b = id b) — no model file is needed and any text
    /// round-trips — plus `<|endoftext|>` (256: EOS and padding), `<|im_start|>` (257) and `<|im_end|>`
    /// (258) as control tokens, and the ChatML chat template. 259 tokens in all.
    public static func byteLevel() throws -> BPETokenizer {
        let bytes = (0..<256).map { gpt2ByteSpelling(UInt8($0)) }
        let tokens = bytes + ByteLevelSpecial.all
        let types = [TokenType](repeating: .normal, count: 256) + [TokenType](repeating: .control, count: ByteLevelSpecial.all.count)
        return try BPETokenizer(tokens: tokens, merges: [], tokenTypes: types, pretokenizer: .gpt2,
                                bosTokenID: nil, eosTokenID: 256, unknownTokenID: nil, paddingTokenID: 256,
                                chatTemplateSource: defaultChatMLJinja, source: "byte-level tokenizer")
    }

    /// GPT-2's printable spelling of one byte (`bytes_to_unicode` in openai/gpt-2 encoder.py): printable
    /// Latin-1 bytes (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) stand for themselves, the other 68 become U+0100,
    /// U+0101, … in byte order. (KeelModels keeps its table internal; vocabularies store this spelling.)
    static func gpt2ByteSpelling(_ byte: UInt8) -> String {
        func printable(_ b: Int) -> Bool { (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) }
        let b = Int(byte)
        if printable(b) { return String(Unicode.Scalar(byte)) }
        let shifted = (0..<b).filter { !printable($0) }.count
        return String(Unicode.Scalar(UInt32(256 + shifted))!)
    }
}
