/// How text is cut into chunks before byte-level BPE.
///
/// BPE never merges across a chunk boundary, so a tokenizer must cut text exactly the way its merges
/// were learned, or it produces different (longer) id sequences for the same text. The regexes are
/// implemented by hand over Unicode scalars, not with a regex engine: they only need three character
/// classes, and a hand-written matcher states the backtracking of `\s+(?!\S)` explicitly.
public enum Pretokenizer: String, Sendable, CaseIterable {
    /// GPT-2's split (HF `ByteLevel(use_regex: true)`, llama.cpp pre-type "gpt2"):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// Every `\p{N}` scalar becomes its own chunk first, then GPT-2's split runs on the text between
    /// them. This is SmolLM2's HF `Sequence[Digits(individual_digits: true), ByteLevel]` and llama.cpp's
    /// pre-types "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"
    /// (regexes `\p{N}` then GPT-2's). It differs from `.gpt2` only where a run of two or more
    /// whitespace scalars is followed by a digit: "\n\n1" is ["\n\n", "1"] here, ["\n", "\n", "1"] there.
    case isolatedDigitsThenGPT2
    /// Llama 3's split (tokenizer.json `Split` with `llama3Regex`, then `ByteLevel(use_regex: false)`;
    /// llama.cpp pre-type "llama-bpe"): contractions in any case, a letter run with at most one
    /// non-letter, non-digit, non-newline scalar before it, digits in groups of up to three,
    /// punctuation runs with the newlines after them, whitespace ending in newlines, then GPT-2's rules.
    case llama3
    /// Qwen 2's split: Llama 3's with single digits (llama.cpp pre-type "qwen2").
    case qwen2

    /// The Split regexes of Llama 3's and Qwen 2's tokenizer.json, as `tokenizers` spells them.
    public static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The Split regex of the split, for the Llama 3 kind; nil for the GPT-2 kinds (ByteLevel's own regex).
    public var splitRegex: String? {
        switch self {
        case .gpt2, .isolatedDigitsThenGPT2: return nil
        case .llama3: return Self.llama3Regex
        case .qwen2: return Self.qwen2Regex
        }
    }

    /// The GGUF `tokenizer.ggml.pre` names whose llama.cpp regexes are exactly one of the two splits.
    private static let ggufNames: [String: Pretokenizer] = [
        "gpt2": .gpt2, "mpt": .gpt2, "olmo": .gpt2, "jais": .gpt2,
        "smollm": .isolatedDigitsThenGPT2, "starcoder": .isolatedDigitsThenGPT2,
        "refact": .isolatedDigitsThenGPT2, "command-r": .isolatedDigitsThenGPT2,
        "codeshell": .isolatedDigitsThenGPT2, "exaone": .isolatedDigitsThenGPT2,
        "minerva": .isolatedDigitsThenGPT2, "llama-bpe": .llama3, "qwen2": .qwen2,
    ]

    /// The split named by a GGUF `tokenizer.ggml.pre` value; nil for names whose regex is not implemented.
    public init?(ggufName: String) {
        guard let kind = Pretokenizer.ggufNames[ggufName] else { return nil }
        self = kind
    }

    /// Appends to `pieces` the byte ranges of the chunks of `bytes[range]`, in order, covering the range.
    /// `bytes[range]` must be valid UTF-8 that starts and ends on scalar boundaries (any slice of a Swift
    /// String's UTF-8 cut at scalar boundaries is).
    func split(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into pieces: inout [Range<Int>]) {
        if range.isEmpty { return }
        let text = ScalarText(bytes, range)
        switch self {
        case .gpt2:
            text.splitGPT2(0..<text.count, into: &pieces)
        case .isolatedDigitsThenGPT2:
            var chunkStart = 0
            for k in 0..<text.count where text.classes[k] == .number {
                text.splitGPT2(chunkStart..<k, into: &pieces)
                pieces.append(text.byteRange(k..<(k + 1)))
                chunkStart = k + 1
            }
            text.splitGPT2(chunkStart..<text.count, into: &pieces)
        case .llama3:
            text.splitLlama3(maxDigits: 3, into: &pieces)
        case .qwen2:
            text.splitLlama3(maxDigits: 1, into: &pieces)
        }
    }
}

/// The three classes GPT-2's regex distinguishes, plus everything else.
enum ScalarClass: UInt8 {
    case letter      // \p{L}: Lu, Ll, Lt, Lm, Lo
    case number      // \p{N}: Nd, Nl, No
    case whitespace  // \s: the Unicode White_Space property
    case other

    /// Classes of the 128 ASCII scalars, so that the common case needs no Unicode property lookup.
    static let ascii: [ScalarClass] = (0..<128).map { classify(Unicode.Scalar(UInt8($0))) }

    static func of(_ scalar: Unicode.Scalar) -> ScalarClass {
        scalar.value < 128 ? ascii[Int(scalar.value)] : classify(scalar)
    }

    private static func classify(_ scalar: Unicode.Scalar) -> ScalarClass {
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }
}

/// A UTF-8 byte range decoded into scalars, with each scalar's class and byte offset.
private struct ScalarText {
    var scalars: [Unicode.Scalar] = []
    var classes: [ScalarClass] = []
    /// byteOffsets[k] is where scalar k starts; byteOffsets[count] is the end of the range.
    var byteOffsets: [Int] = []
    var count: Int { scalars.count }

    init(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        scalars.reserveCapacity(range.count)
        classes.reserveCapacity(range.count)
        byteOffsets.reserveCapacity(range.count + 1)
        var iterator = bytes[range].makeIterator()
        var decoder = UTF8()
        var offset = range.lowerBound
        while case .scalarValue(let scalar) = decoder.decode(&iterator) {
            scalars.append(scalar)
            classes.append(ScalarClass.of(scalar))
            byteOffsets.append(offset)
            offset += UTF8.width(scalar)
        }
        byteOffsets.append(offset)
    }

    func byteRange(_ scalarRange: Range<Int>) -> Range<Int> {
        byteOffsets[scalarRange.lowerBound]..<byteOffsets[scalarRange.upperBound]
    }

    /// GPT-2's regex applied repeatedly to scalars[chunk]; the chunk end acts as the end of the text
    /// (so `\s+(?!\S)` takes a trailing whitespace run whole), as in HF and llama.cpp.
    func splitGPT2(_ chunk: Range<Int>, into pieces: inout [Range<Int>]) {
        var start = chunk.lowerBound
        while start < chunk.upperBound {
            let end = gpt2MatchEnd(from: start, limit: chunk.upperBound)
            pieces.append(byteRange(start..<end))
            start = end
        }
    }

    /// Llama 3's regex (`Pretokenizer.llama3Regex`, digit groups of up to `maxDigits`) applied repeatedly.
    func splitLlama3(maxDigits: Int, into pieces: inout [Range<Int>]) {
        var start = 0
        while start < count {
            let end = llama3MatchEnd(from: start, maxDigits: maxDigits)
            pieces.append(byteRange(start..<end))
            start = end
        }
    }

    private func isNewline(_ k: Int) -> Bool { scalars[k] == "\n" || scalars[k] == "\r" }

    /// End of the match of Llama 3's regex at `i`, alternatives in the regex's order.
    private func llama3MatchEnd(from i: Int, maxDigits: Int) -> Int {
        let limit = count
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if scalars[i] == "'" && i + 1 < limit {
            let lower = { (k: Int) -> Character in Character(String(scalars[k]).lowercased()) }
            switch lower(i + 1) {
            case "s", "t", "m", "d": return i + 2
            case "r", "v", "l":
                let third: Character = lower(i + 1) == "l" ? "l" : "e"
                if i + 2 < limit && lower(i + 2) == third { return i + 3 }
            default: break
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var letters = i
        if classes[i] != .letter && classes[i] != .number && !isNewline(i) && i + 1 < limit && classes[i + 1] == .letter {
            letters = i + 1
        }
        if classes[letters] == .letter {
            var end = letters + 1
            while end < limit && classes[end] == .letter { end += 1 }
            return end
        }
        // \p{N}{1,maxDigits}
        if classes[i] == .number {
            var end = i + 1
            while end < limit && end - i < maxDigits && classes[end] == .number { end += 1 }
            return end
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        let other = scalars[i] == " " && i + 1 < limit && classes[i + 1] == .other ? i + 1 : i
        if classes[other] == .other {
            var end = other + 1
            while end < limit && classes[end] == .other { end += 1 }
            while end < limit && isNewline(end) { end += 1 }
            return end
        }
        // \s*[\r\n]+ : the whitespace run up to and including its last newline.
        var end = i + 1
        while end < limit && classes[end] == .whitespace { end += 1 }
        if let lastNewline = (i..<end).last(where: isNewline) { return lastNewline + 1 }
        // \s+(?!\S) | \s+ as in GPT-2's regex.
        if end == limit || end - i == 1 { return end }
        return end - 1
    }

    /// End of the match of GPT-2's regex at `i` (alternatives tried in the regex's order).
    private func gpt2MatchEnd(from i: Int, limit: Int) -> Int {
        // 's|'t|'re|'ve|'m|'ll|'d   (case-sensitive, ASCII)
        if scalars[i] == "'" && i + 1 < limit {
            switch scalars[i + 1] {
            case "s", "t", "m", "d": return i + 2
            case "r", "v", "l":
                let third: Unicode.Scalar = scalars[i + 1] == "l" ? "l" : "e"
                if i + 2 < limit && scalars[i + 2] == third { return i + 3 }
            default: break
            }
        }
        // " ?X+" for X in \p{L}, \p{N}, [^\s\p{L}\p{N}]: an ASCII space joins the run that follows it.
        var runStart = i
        if scalars[i] == " " && i + 1 < limit && classes[i + 1] != .whitespace { runStart = i + 1 }
        let runClass = classes[runStart]
        if runClass != .whitespace {
            var end = runStart + 1
            while end < limit && classes[end] == runClass { end += 1 }
            return end
        }
        // \s+(?!\S) | \s+ : a whitespace run followed by a non-space gives its last scalar to the next
        // match (backtracking one step satisfies the lookahead), unless the run is a single scalar.
        var end = i + 1
        while end < limit && classes[end] == .whitespace { end += 1 }
        if end == limit || end - i == 1 { return end }
        return end - 1
    }
}
