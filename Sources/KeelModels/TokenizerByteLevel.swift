/// GPT-2's byte ↔ character table ("bytes_to_unicode" in openai/gpt-2 encoder.py).
///
/// Byte-level BPE works on raw UTF-8 bytes, but vocabularies are stored as text. GPT-2 therefore spells
/// every byte as one printable character: the 188 bytes that are printable Latin-1 (`!`…`~`, `¡`…`¬`,
/// `®`…`ÿ`) stand for themselves, and the other 68 (controls, space, DEL, NBSP, soft hyphen) are
/// spelled U+0100, U+0101, … in byte order. So a space is `Ġ` (U+0120) and a newline `Ċ` (U+010A).
enum ByteLevel {
    /// character(for: byte) — the spelling of each byte.
    static let characterForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var nextShifted: UInt32 = 256
        for byte in 0..<256 {
            if isPrintedAsItself(byte) {
                table[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                table[byte] = Unicode.Scalar(nextShifted)!  // 256…323, always a valid scalar
                nextShifted += 1
            }
        }
        return table
    }()

    /// The inverse table, indexed by scalar value (0…323); -1 where a scalar spells no byte.
    static let byteForCharacter: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (byte, scalar) in characterForByte.enumerated() { table[Int(scalar.value)] = Int16(byte) }
        return table
    }()

    private static func isPrintedAsItself(_ byte: Int) -> Bool {
        (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
    }

    /// The byte-level spelling of raw bytes (e.g. " the" → "Ġthe").
    static func spell(_ bytes: some Sequence<UInt8>) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in bytes { scalars.append(characterForByte[Int(byte)]) }
        return String(scalars)
    }

    /// The raw bytes a byte-level spelling stands for; nil if some character spells no byte.
    static func bytes(spelledBy token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(token.unicodeScalars.count)
        for scalar in token.unicodeScalars {
            let value = Int(scalar.value)
            guard value < byteForCharacter.count, byteForCharacter[value] >= 0 else { return nil }
            bytes.append(UInt8(byteForCharacter[value]))
        }
        return bytes
    }
}
