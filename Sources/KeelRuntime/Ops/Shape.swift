/// Views and layout changes. Views (reshape, first-axis slices) share storage; transpose and
/// concatenation copy. Backward of a view is a view of the gradient, so these cost no copies.
extension Tensor {
    /// The same elements under another shape (one entry may be −1: inferred). A view.
    ///   x: S → newShape   (same count);  dx = g reshaped to S
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0,
                         "reshaped: cannot infer −1 in \(newShape) for shape \(shape) (\(count) elements)")
            resolved[inferred] = count / known
        }
        precondition(resolved.reduce(1, *) == count && resolved.allSatisfy { $0 >= 0 },
                     "reshaped: shape \(shape) (\(count) elements) cannot be viewed as \(newShape)")
        let out = Tensor(shape: resolved, storage: storage, offset: offset)
        return Tensor.record(op: "reshape", inputs: [self], output: out) { [shape] g in
            [Tensor(shape: shape, storage: g.storage, offset: g.offset)]
        }
    }

    /// Elements `range` along the first axis. A view.
    ///   x: [N, …] → [range.count, …];  dx = zeros with g written at range
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1, "rows: tensor of shape \(shape) has no first axis")
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "rows: range \(range) out of bounds for shape \(shape)")
        let rowSize = shape.dropFirst().reduce(1, *)
        let out = Tensor(shape: [range.count] + shape.dropFirst(), storage: storage,
                         offset: offset + range.lowerBound * rowSize)
        return Tensor.record(op: "rows", inputs: [self], output: out) { [shape] g in
            let dx = Tensor(zeros: shape)
            (dx.pointer + range.lowerBound * rowSize).update(from: g.pointer, count: g.count)
            return [dx]
        }
    }

    /// The `index`-th entry along the first axis, with that axis removed. A view.
    ///   x: [N, …] → […]
    public func row(_ index: Int) -> Tensor {
        rows(index..<(index + 1)).reshaped(Array(shape.dropFirst()))
    }

    /// Swaps two axes, materialising the result (matmul takes transpose flags instead, for free).
    ///   x: […, A, …, B, …] → […, B, …, A, …];  dx = transposed(g)
    public func transposed(_ axis0: Int = -2, _ axis1: Int = -1) -> Tensor {
        let a0 = axis0 < 0 ? axis0 + rank : axis0, a1 = axis1 < 0 ? axis1 + rank : axis1
        precondition(a0 >= 0 && a0 < rank && a1 >= 0 && a1 < rank,
                     "transposed: axes (\(axis0), \(axis1)) out of range for shape \(shape)")
        var outShape = shape
        outShape.swapAt(a0, a1)
        let out = Tensor(uninitialized: outShape)
        // Input strides permuted into output axis order; walk the output contiguously.
        var inStrides = [Int](repeating: 1, count: rank)
        for axis in stride(from: rank - 2, through: 0, by: -1) { inStrides[axis] = inStrides[axis + 1] * shape[axis + 1] }
        inStrides.swapAt(a0, a1)
        let src = pointer, dst = out.pointer
        var index = [Int](repeating: 0, count: rank)
        var source = 0
        for i in 0..<out.count {
            dst[i] = src[source]
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                source += inStrides[d]
                if index[d] < outShape[d] { break }
                source -= inStrides[d] * outShape[d]
                index[d] = 0
                d -= 1
            }
        }
        return Tensor.record(op: "transpose", inputs: [self], output: out) { g in
            [g.transposed(a0, a1)]
        }
    }

    /// Joins tensors along `axis`; all other axes must agree.
    ///   xs[i]: […, n_i, …] → […, Σ n_i, …];  dx_i = the matching slab of g
    public static func concatenate(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "concatenate: no tensors")
        let first = tensors[0]
        let a = axis < 0 ? axis + first.rank : axis
        precondition(a >= 0 && a < first.rank, "concatenate: axis \(axis) out of range for shape \(first.shape)")
        for t in tensors {
            precondition(t.rank == first.rank && t.shape.indices.allSatisfy { $0 == a || t.shape[$0] == first.shape[$0] },
                         "concatenate: shape \(t.shape) does not match \(first.shape) outside axis \(a)")
        }
        var outShape = first.shape
        outShape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
        let outer = first.shape[..<a].reduce(1, *)
        let chunks = tensors.map { $0.shape[a...].reduce(1, *) }   // elements per outer index
        let outChunk = chunks.reduce(0, +)
        let out = Tensor(uninitialized: outShape)
        var start = 0
        for (t, chunk) in zip(tensors, chunks) {
            for o in 0..<outer { (out.pointer + o * outChunk + start).update(from: t.pointer + o * chunk, count: chunk) }
            start += chunk
        }
        let inputShapes = tensors.map(\.shape), needs = tensors.map(\.requiresGrad)
        return record(op: "concatenate", inputs: tensors, output: out) { g in
            var begin = 0
            return inputShapes.indices.map { i in
                let chunk = chunks[i]
                defer { begin += chunk }
                guard needs[i] else { return nil }
                let dx = Tensor(uninitialized: inputShapes[i])
                for o in 0..<outer { (dx.pointer + o * chunk).update(from: g.pointer + o * outChunk + begin, count: chunk) }
                return dx
            }
        }
    }
}
