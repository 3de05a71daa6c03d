/// A first-order optimizer over a `Parameters` collection. Usage per optimizer step:
///
///     optimizer.zeroGrad()
///     for microBatch in batches { loss(microBatch).backward() }   // gradients accumulate
///     let norm = clipGradNorm(parameters, maxNorm: 1)
///     optimizer.learningRate = schedule(step)
///     optimizer.step()
public protocol Optimizer: AnyObject {
    var parameters: Parameters { get }
    /// η, read at every `step()`; the trainer's schedule sets it.
    var learningRate: Float { get set }
    /// Number of `step()` calls so far (the t of bias correction).
    var stepCount: Int { get }
    /// Applies one update to every parameter that has a gradient; parameters without one are left
    /// untouched and keep their state.
    func step()
    /// A snapshot of the step count and every per-parameter buffer, for checkpoints.
    var state: OptimizerState { get }
    /// The per-parameter buffers themselves, not copies, named as in `OptimizerState.namedArrays()`
    /// (`<slot>.<parameter>`): a checkpoint copies them into memory it reuses instead of allocating
    /// `state`'s arrays every time. The next `step()` changes them.
    var stateBuffers: [(name: String, tensor: Tensor)] { get }
    /// Restores a snapshot taken by `state`; throws when it does not fit these parameters.
    func loadState(_ state: OptimizerState) throws
}

extension Optimizer {
    /// Forgets every parameter's accumulated gradient (before the next step's micro-batches).
    public func zeroGrad() { parameters.zeroGrad() }
}

/// The complete state of an optimizer: the step count and, for each state slot (e.g. AdamW's
/// `exp_avg`), one Float array per parameter name. A plain value: save it and restore it to continue
/// a run bit-for-bit. Its Codable form stores each Float's bit pattern, so any encoder (JSON,
/// property list) round-trips it exactly, including −0, subnormals and NaN payloads.
public struct OptimizerState: Codable, Equatable, Sendable {
    public var stepCount: Int
    /// slot name → parameter name → values (row-major, the parameter's element count).
    public var slots: [String: [String: [Float]]]

    public init(stepCount: Int, slots: [String: [String: [Float]]]) {
        self.stepCount = stepCount
        self.slots = slots
    }

    /// Flat name → array form for checkpoint files (safetensors): key "<slot>.<parameter name>" (slot
    /// names contain no dot). The step count is not an array; store it beside them (e.g. metadata).
    public func namedArrays() -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        for (slot, byParameter) in slots {
            for (parameter, values) in byParameter { result["\(slot).\(parameter)"] = values }
        }
        return result
    }

    /// Inverse of `namedArrays()`.
    public init(stepCount: Int, namedArrays: [String: [Float]]) throws {
        var slots: [String: [String: [Float]]] = [:]
        for (key, values) in namedArrays {
            guard let dot = key.firstIndex(of: "."), dot != key.startIndex, key.index(after: dot) != key.endIndex else {
                throw OptimizerStateError("optimizer state array '\(key)': expected '<slot>.<parameter name>'")
            }
            slots[String(key[..<dot]), default: [:]][String(key[key.index(after: dot)...])] = values
        }
        self.init(stepCount: stepCount, slots: slots)
    }

    private enum CodingKeys: String, CodingKey { case stepCount, slots }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        stepCount = try container.decode(Int.self, forKey: .stepCount)
        let bits = try container.decode([String: [String: [UInt32]]].self, forKey: .slots)
        slots = bits.mapValues { $0.mapValues { $0.map(Float.init(bitPattern:)) } }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(stepCount, forKey: .stepCount)
        try container.encode(slots.mapValues { $0.mapValues { $0.map(\.bitPattern) } }, forKey: .slots)
    }

    /// Equality of bit patterns (so NaN == NaN and −0 ≠ +0): "restores exactly" means this.
    public static func == (a: OptimizerState, b: OptimizerState) -> Bool {
        a.stepCount == b.stepCount
            && a.slots.mapValues { $0.mapValues { $0.map(\.bitPattern) } }
            == b.slots.mapValues { $0.mapValues { $0.map(\.bitPattern) } }
    }
}

public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Per-parameter buffers of one state slot, aligned with `Parameters.entries` (zero-initialised), with
/// the conversions to and from `OptimizerState`. Shared by the optimizers.
struct StateSlot {
    let name: String
    let buffers: [Tensor]

    init(name: String, parameters: Parameters) {
        self.name = name
        buffers = parameters.map { Tensor(zeros: $0.tensor.shape) }
    }

    /// This slot's buffers named `<slot>.<parameter>` (`OptimizerState.namedArrays()`'s keys).
    func named(_ parameters: Parameters) -> [(name: String, tensor: Tensor)] {
        zip(parameters, buffers).map { (name: "\(name).\($0.name)", tensor: $1) }
    }

    func export(_ parameters: Parameters) -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        for (entry, buffer) in zip(parameters, buffers) { result[entry.name] = buffer.toArray() }
        return result
    }

    /// Checks every array first, then copies, so a failed load leaves the optimizer unchanged.
    static func load(_ slots: [StateSlot], from state: OptimizerState, parameters: Parameters) throws {
        let expected = Set(slots.map(\.name))
        if let unknown = Set(state.slots.keys).subtracting(expected).sorted().first {
            throw OptimizerStateError("optimizer state has unknown slot '\(unknown)'; expected \(expected.sorted())")
        }
        for slot in slots {
            guard let arrays = state.slots[slot.name] else {
                throw OptimizerStateError("optimizer state lacks slot '\(slot.name)'")
            }
            for entry in parameters {
                guard let values = arrays[entry.name] else {
                    throw OptimizerStateError("optimizer state slot '\(slot.name)' lacks parameter '\(entry.name)'")
                }
                guard values.count == entry.tensor.count else {
                    throw OptimizerStateError("optimizer state '\(slot.name).\(entry.name)' has \(values.count) "
                                              + "values, parameter of shape \(entry.tensor.shape) needs \(entry.tensor.count)")
                }
            }
            if let extra = Set(arrays.keys).subtracting(parameters.names).sorted().first {
                throw OptimizerStateError("optimizer state slot '\(slot.name)' has unknown parameter '\(extra)'")
            }
        }
        for slot in slots {
            for (entry, buffer) in zip(parameters, slot.buffers) {
                state.slots[slot.name]![entry.name]!.withUnsafeBufferPointer {
                    buffer.pointer.update(from: $0.baseAddress!, count: $0.count)
                }
            }
        }
    }
}
