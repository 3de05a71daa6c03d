import Foundation

/// llama.cpp's token types (GGUF `tokenizer.ggml.token_type`), with its numbering.
public enum TokenType: Int32, Sendable, CaseIterable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6

    /// Tokens that are matched as whole strings in text (when allowed) instead of going through BPE,
    /// and whose vocabulary entry is their literal text rather than a byte-level spelling.
    var isMatchedLiterally: Bool { self == .control || self == .userDefined }
}

/// A failure to build, read or write a tokenizer; the message names the source, field and problem.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Byte-level BPE (GPT-2 family: SmolLM2, GPT-2, StarCoder, …), as HF `tokenizers` and llama.cpp run it.
///
/// encode: text → (optionally) split out literal special tokens → pre-tokenizer chunks → UTF-8 bytes of
/// each chunk → BPE over byte tokens, repeatedly merging the adjacent pair with the lowest merge rank
/// (leftmost first on ties) → ids. decode: ids → bytes (inverse byte spelling) → UTF-8.
/// decode(encode(text)) == text whenever every byte of the text has a token (see `bytesWithoutToken`).
///
/// Thread safety: the only mutable state is the chunk cache, guarded by a lock, so one instance can be
/// shared by concurrent encoders.
public final class BPETokenizer: @unchecked Sendable {
    /// Vocabulary entries as stored (byte-level spelling, literal text for control/user-defined tokens).
    public let tokens: [String]
    public let tokenTypes: [TokenType]
    /// Merge rules "left right", lowest rank first.
    public let merges: [String]
    public let pretokenizer: Pretokenizer
    /// Unicode normalisation of the text before it is split (Qwen 2's tokenizer.json declares NFC).
    public let normalizer: TextNormalizer?
    /// A chunk that is itself a vocabulary token becomes that token without merging (tokenizers'
    /// `ignore_merges`, which Llama 3's tokenizer.json sets and llama.cpp applies to "llama-bpe").
    public let ignoresMerges: Bool
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    public let unknownTokenID: Int?
    public let paddingTokenID: Int?
    /// The Jinja chat template text the tokenizer was distributed with, if any (see `ChatMLTemplate`).
    public let chatTemplateSource: String?

    public var vocabularySize: Int { tokens.count }

    private let idForToken: [String: Int]
    /// The raw bytes each token stands for (what decode emits).
    private let bytesOfToken: [[UInt8]]
    /// The id of the single-byte token for each byte value (-1 if none): where BPE starts.
    private let idForByte: [Int32]
    /// Byte values the vocabulary has no token for (SmolLM2: 21, e.g. 0x04, 0xC0, 0xF5…0xFF). encode
    /// drops them before merging, as HF `tokenizers` does for a BPE model without an unknown token
    /// (llama.cpp drops them too), so text containing them does not survive a round trip.
    public let bytesWithoutToken: [UInt8]
    /// (left id << 32 | right id) → rank and merged id.
    private let mergeRules: [UInt64: MergeRule]
    /// Literal control / user-defined tokens, by first byte, longest first.
    private let specialTokensByFirstByte: [[SpecialToken]]

    private struct MergeRule { let rank: Int32; let merged: Int32 }
    private struct SpecialToken { let bytes: [UInt8]; let id: Int }

    /// BPE result of each chunk seen so far: text repeats its words, and BPE is the slow part.
    /// Keyed by bytes, not String: String equality is canonical equivalence, which would merge
    /// "é" (U+00E9) with "e\u{301}" and break the lossless round trip.
    private var chunkCache: [[UInt8]: [Int32]] = [:]
    private let chunkCacheLock = NSLock()
    /// Bound on the cache; it is emptied when full (a simple policy that keeps memory bounded).
    private static let chunkCacheCapacity = 200_000

    /// - Parameters:
    ///   - tokens: the vocabulary, index = id; normal tokens in GPT-2 byte-level spelling ("Ġthe").
    ///   - merges: "left right" pairs, highest priority first; both sides and their concatenation must
    ///     be tokens.
    ///   - tokenTypes: one per token; control and user-defined tokens are literal text.
    ///   - source: named in error messages (a file path, "GGUF", …).
    public init(tokens: [String], merges: [String], tokenTypes: [TokenType], pretokenizer: Pretokenizer,
                normalizer: TextNormalizer? = nil, ignoresMerges: Bool = false,
                bosTokenID: Int?, eosTokenID: Int?, unknownTokenID: Int?, paddingTokenID: Int?,
                chatTemplateSource: String? = nil, source: String = "tokenizer") throws {
        guard tokenTypes.count == tokens.count else {
            throw TokenizerError("\(source): \(tokens.count) tokens but \(tokenTypes.count) token types")
        }
        for (name, id) in [("bos", bosTokenID), ("eos", eosTokenID), ("unknown", unknownTokenID),
                           ("padding", paddingTokenID)] {
            if let id, !tokens.indices.contains(id) {
                throw TokenizerError("\(source): \(name) token id \(id) is outside the vocabulary 0..<\(tokens.count)")
            }
        }
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.pretokenizer = pretokenizer
        self.normalizer = normalizer
        self.ignoresMerges = ignoresMerges
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.unknownTokenID = unknownTokenID
        self.paddingTokenID = paddingTokenID
        self.chatTemplateSource = chatTemplateSource

        var idForToken: [String: Int] = [:]
        idForToken.reserveCapacity(tokens.count)
        var bytesOfToken: [[UInt8]] = []
        bytesOfToken.reserveCapacity(tokens.count)
        var specials = [[SpecialToken]](repeating: [], count: 256)
        for (id, token) in tokens.enumerated() {
            if let previous = idForToken.updateValue(id, forKey: token) {
                throw TokenizerError("\(source): token \(token.debugDescription) appears twice (ids \(previous) and \(id))")
            }
            if tokenTypes[id].isMatchedLiterally {
                let literal = Array(token.utf8)
                bytesOfToken.append(literal)
                if let first = literal.first { specials[Int(first)].append(SpecialToken(bytes: literal, id: id)) }
            } else {
                guard let bytes = ByteLevel.bytes(spelledBy: token) else {
                    throw TokenizerError("\(source): token \(id) \(token.debugDescription) is not in GPT-2 byte-level spelling")
                }
                bytesOfToken.append(bytes)
            }
        }
        self.idForToken = idForToken
        self.bytesOfToken = bytesOfToken
        self.specialTokensByFirstByte = specials.map { $0.sorted { $0.bytes.count > $1.bytes.count } }

        var idForByte = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            if let id = idForToken[String(ByteLevel.characterForByte[byte])] { idForByte[byte] = Int32(id) }
        }
        guard idForByte.contains(where: { $0 >= 0 }) else {
            throw TokenizerError("\(source): no token is a single byte in GPT-2 byte-level spelling; this is not a byte-level BPE vocabulary")
        }
        self.idForByte = idForByte
        self.bytesWithoutToken = (0..<256).filter { idForByte[$0] < 0 }.map { UInt8($0) }

        var mergeRules: [UInt64: MergeRule] = [:]
        mergeRules.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            let sides = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard sides.count == 2 else {
                throw TokenizerError("\(source): merge \(rank) \(merge.debugDescription) is not two tokens separated by one space")
            }
            let left = String(sides[0]), right = String(sides[1])
            guard let leftID = idForToken[left], let rightID = idForToken[right],
                  let mergedID = idForToken[left + right] else {
                throw TokenizerError("\(source): merge \(rank) \(merge.debugDescription) names a token missing from the vocabulary")
            }
            let key = UInt64(leftID) << 32 | UInt64(rightID)
            if mergeRules[key] == nil {  // a repeated rule keeps its first (highest-priority) rank
                mergeRules[key] = MergeRule(rank: Int32(rank), merged: Int32(mergedID))
            }
        }
        self.mergeRules = mergeRules
    }

    // MARK: Lookup

    /// The id of a vocabulary entry (as stored: "Ġthe", "<|im_start|>").
    public func id(forToken token: String) -> Int? { idForToken[token] }

    public func isSpecial(_ id: Int) -> Bool {
        tokenTypes.indices.contains(id) && tokenTypes[id].isMatchedLiterally
    }

    // MARK: Encode

    /// Token ids of `text`. No BOS/EOS is added. With `allowSpecial`, literal control and user-defined
    /// tokens in the text ("<|im_start|>") become their ids (leftmost, then longest match); without it
    /// they are ordinary text.
    public func encode(_ text: String, allowSpecial: Bool = false) -> [Int] {
        let utf8 = Array((normalizer?.apply(text) ?? text).utf8)
        var ids: [Int] = []
        ids.reserveCapacity(utf8.count / 3)
        utf8.withUnsafeBufferPointer { bytes in
            var pieces: [Range<Int>] = []
            var textStart = 0
            if allowSpecial {
                var position = 0
                while position < bytes.count {
                    if let special = specialToken(at: position, in: bytes) {
                        encodeOrdinaryText(bytes, textStart..<position, pieces: &pieces, into: &ids)
                        ids.append(special.id)
                        position += special.bytes.count
                        textStart = position
                    } else {
                        position += 1
                    }
                }
            }
            encodeOrdinaryText(bytes, textStart..<bytes.count, pieces: &pieces, into: &ids)
        }
        return ids
    }

    private func specialToken(at position: Int, in bytes: UnsafeBufferPointer<UInt8>) -> SpecialToken? {
        let candidates = specialTokensByFirstByte[Int(bytes[position])]
        return candidates.first { candidate in
            position + candidate.bytes.count <= bytes.count
                && bytes[position..<(position + candidate.bytes.count)].elementsEqual(candidate.bytes)
        }
    }

    private func encodeOrdinaryText(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
                                    pieces: inout [Range<Int>], into ids: inout [Int]) {
        pieces.removeAll(keepingCapacity: true)
        pretokenizer.split(bytes, range, into: &pieces)
        for piece in pieces {
            if piece.count == 1 {
                let id = idForByte[Int(bytes[piece.lowerBound])]
                if id >= 0 { ids.append(Int(id)) }
                continue
            }
            let key = Array(bytes[piece])
            if ignoresMerges, let whole = idForToken[ByteLevel.spell(key)], !tokenTypes[whole].isMatchedLiterally {
                ids.append(whole)
                continue
            }
            chunkCacheLock.lock()
            let cached = chunkCache[key]
            chunkCacheLock.unlock()
            let chunkIDs = cached ?? bytePairMerge(key)
            if cached == nil {
                chunkCacheLock.lock()
                if chunkCache.count >= Self.chunkCacheCapacity { chunkCache.removeAll(keepingCapacity: true) }
                chunkCache[key] = chunkIDs
                chunkCacheLock.unlock()
            }
            for id in chunkIDs { ids.append(Int(id)) }
        }
    }

    /// BPE on one chunk: start from one token per byte and apply the lowest-ranked applicable merge
    /// (leftmost on ties) until none applies — the order of HF `tokenizers` and llama.cpp. As in HF, the
    /// candidates sit in a min-heap keyed by (rank, left position) over a linked list of symbols, and
    /// entries made stale by an earlier merge are skipped when popped: O(n log n), so a long chunk
    /// (a base64 blob, a run of 100k spaces) stays fast.
    private func bytePairMerge(_ chunk: [UInt8]) -> [Int32] {
        var symbols = chunk.map { idForByte[Int($0)] }.filter { $0 >= 0 }
        let count = symbols.count
        if count < 2 { return symbols }
        // Linked list over `symbols`; `count` means "no next". Only right-hand symbols are removed,
        // so symbol 0 is always the head.
        var next = Array(1...count)
        var previous = Array(-1..<(count - 1))
        var removed = [Bool](repeating: false, count: count)
        var candidates = MinHeap()
        func pushCandidate(left: Int) {
            let right = next[left]
            if right < count, let rule = rule(symbols[left], symbols[right]) {
                candidates.push(UInt64(rule.rank) << 32 | UInt64(left))
            }
        }
        for left in 0..<(count - 1) { pushCandidate(left: left) }
        while let candidate = candidates.pop() {
            let rank = Int32(candidate >> 32), left = Int(candidate & 0xFFFF_FFFF)
            let right = next[left]
            // Stale if the left symbol is gone or its pair changed; one rank is one rule, so an equal
            // rank means the same pair.
            guard !removed[left], right < count, let rule = rule(symbols[left], symbols[right]),
                  rule.rank == rank else { continue }
            symbols[left] = rule.merged
            removed[right] = true
            next[left] = next[right]
            if next[right] < count { previous[next[right]] = left }
            if previous[left] >= 0 { pushCandidate(left: previous[left]) }
            pushCandidate(left: left)
        }
        var merged: [Int32] = []
        var position = 0
        while position < count {
            merged.append(symbols[position])
            position = next[position]
        }
        return merged
    }

    private func rule(_ left: Int32, _ right: Int32) -> MergeRule? {
        mergeRules[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))]
    }

    // MARK: Decode

    /// The raw bytes of `ids` (control tokens as their literal text unless `skipSpecial`). Use this for
    /// streaming: a token may end inside a multi-byte UTF-8 character.
    public func decodeBytes(_ ids: [Int], skipSpecial: Bool = false) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for (position, id) in ids.enumerated() {
            guard bytesOfToken.indices.contains(id) else {
                throw TokenizerError("decode: id \(id) at position \(position) is outside the vocabulary 0..<\(tokens.count)")
            }
            if skipSpecial && tokenTypes[id].isMatchedLiterally { continue }
            bytes.append(contentsOf: bytesOfToken[id])
        }
        return bytes
    }

    /// The text of `ids`; byte sequences that are not valid UTF-8 (a cut multi-byte character) become
    /// U+FFFD, as in HF `decode`.
    public func decode(_ ids: [Int], skipSpecial: Bool = false) throws -> String {
        String(decoding: try decodeBytes(ids, skipSpecial: skipSpecial), as: UTF8.self)
    }
}

/// A binary min-heap of UInt64 keys: BPE's merge candidates, (rank << 32 | position).
private struct MinHeap {
    private var keys: [UInt64] = []

    mutating func push(_ key: UInt64) {
        keys.append(key)
        var child = keys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if keys[parent] <= keys[child] { break }
            keys.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let top = keys.first else { return nil }
        let last = keys.removeLast()
        if keys.isEmpty { return top }
        keys[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < keys.count && keys[left] < keys[smallest] { smallest = left }
            if right < keys.count && keys[right] < keys[smallest] { smallest = right }
            if smallest == parent { return top }
            keys.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

/// A Unicode normalisation a tokenizer applies before splitting (tokenizer.json `normalizer`).
public enum TextNormalizer: String, Sendable {
    /// Canonical composition: "e\u{301}" becomes "é".
    case nfc = "NFC"

    func apply(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        }
    }
}
