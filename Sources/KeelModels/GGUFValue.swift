/// One metadata value of a GGUF file, with the file's own type kept (GGUF spec, `gguf_metadata_value_type`).
///
/// The accessors convert between widths on purpose: GGUF writers disagree on the integer width of the
/// same key (`uint32` vs `int32` vs `uint64`), so readers should ask for `.int` rather than match a case.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    /// Elements all have the array's declared element type (arrays of arrays are allowed by the spec).
    case array([GGUFValue])
    case uint64(UInt64)
    case int64(Int64)
    case float64(Double)

    /// Any integer case that fits in `Int` (a `uint64` above `Int.max` gives nil).
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// `float32` or `float64` (narrowed), or an integer case converted.
    public var float: Float? {
        switch self {
        case .float32(let v): return v
        case .float64(let v): return Float(v)
        default: return int.map { Float($0) }
        }
    }

    /// `float32` (widened) or `float64`, or an integer case converted.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map { Double($0) }
        }
    }

    public var bool: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }

    public var string: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var array: [GGUFValue]? {
        if case .array(let v) = self { return v }
        return nil
    }

    /// An array whose elements are all strings (e.g. `tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    public var stringArray: [String]? {
        guard case .array(let elements) = self else { return nil }
        var out: [String] = []
        out.reserveCapacity(elements.count)
        for element in elements {
            guard case .string(let s) = element else { return nil }
            out.append(s)
        }
        return out
    }

    /// An array whose elements are all integers (e.g. `tokenizer.ggml.token_type`).
    public var intArray: [Int]? {
        guard case .array(let elements) = self else { return nil }
        var out: [Int] = []
        out.reserveCapacity(elements.count)
        for element in elements {
            guard let v = element.int else { return nil }
            out.append(v)
        }
        return out
    }

    /// An array whose elements are all numbers (e.g. `tokenizer.ggml.scores`).
    public var floatArray: [Float]? {
        guard case .array(let elements) = self else { return nil }
        var out: [Float] = []
        out.reserveCapacity(elements.count)
        for element in elements {
            guard let v = element.float else { return nil }
            out.append(v)
        }
        return out
    }

    /// The GGUF type code of this value (`gguf_metadata_value_type`).
    public var typeCode: UInt32 {
        switch self {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }
}
