/// NumPy broadcasting: shapes are aligned at their last axis; two sizes are compatible when equal or
/// when one is 1 (that operand is repeated along the axis). Returns nil when incompatible.
public func broadcastShapes(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for axis in 0..<rank {
        let da = axis < rank - a.count ? 1 : a[axis - (rank - a.count)]
        let db = axis < rank - b.count ? 1 : b[axis - (rank - b.count)]
        guard da == db || da == 1 || db == 1 else { return nil }
        out[axis] = da == 1 ? db : da
    }
    return out
}

/// The broadcast shape of `shapes` for op `op`, or a precondition failure naming the op and the shapes.
func broadcastShape(_ op: String, _ shapes: [Int]...) -> [Int] {
    var result: [Int] = []
    for shape in shapes {
        guard let next = broadcastShapes(result, shape) else {
            preconditionFailure("\(op): shapes \(shapes.map { "\($0)" }.joined(separator: " and ")) "
                                + "cannot be broadcast together")
        }
        result = next
    }
    return result
}

/// How to walk a row-major `shape` while reading operands that broadcast into it.
///
/// Axes of size 1 are dropped and adjacent axes that every operand traverses contiguously are merged,
/// so the walk is a loop over "rows" (the innermost merged axis, `rowLength` elements) in which each
/// operand advances by `innerStride[k]` (0 = broadcast, 1 = contiguous). Same-shape operands collapse
/// to a single row; `[N, M] ⊕ [M]` becomes N rows with the second operand's offset fixed at 0.
struct BroadcastPlan {
    let count: Int
    private(set) var sizes: [Int] = []
    /// strides[k][d]: element stride of operand k along merged axis d.
    private(set) var strides: [[Int]]
    var rowLength: Int { sizes.last ?? 1 }
    var rowCount: Int { rowLength == 0 ? 0 : count / rowLength }

    func innerStride(_ operand: Int) -> Int { strides[operand].last ?? 0 }

    init(shape: [Int], operands: [[Int]]) {
        count = shape.reduce(1, *)
        let rank = shape.count
        var operandStrides = [[Int]](repeating: [], count: operands.count)
        for (k, operand) in operands.enumerated() {
            precondition(operand.count <= rank, "BroadcastPlan: operand \(operand) has more axes than \(shape)")
            let padded = [Int](repeating: 1, count: rank - operand.count) + operand
            var step = 1
            var s = [Int](repeating: 0, count: rank)
            for axis in (0..<rank).reversed() {
                s[axis] = padded[axis] == 1 ? 0 : step
                step *= padded[axis]
            }
            operandStrides[k] = s
        }
        strides = [[Int]](repeating: [], count: operands.count)
        for axis in 0..<rank where shape[axis] != 1 {
            if let last = sizes.last, (0..<operands.count).allSatisfy({ k in
                strides[k].last! == operandStrides[k][axis] * shape[axis] }) {
                sizes[sizes.count - 1] = last * shape[axis]
                for k in 0..<operands.count { strides[k][strides[k].count - 1] = operandStrides[k][axis] }
            } else {
                sizes.append(shape[axis])
                for k in 0..<operands.count { strides[k].append(operandStrides[k][axis]) }
            }
        }
        if sizes.isEmpty {
            sizes = [1]
            for k in 0..<operands.count { strides[k] = [0] }
        }
    }

    /// Calls `body(row, offsets)` for each row in row-major order; `offsets[k]` is operand k's element
    /// offset at the start of the row (the output's is `row * rowLength`).
    func forEachRow(_ body: (_ row: Int, _ offsets: UnsafeMutableBufferPointer<Int>) -> Void) {
        let rows = rowCount
        guard rows > 0 else { return }
        let outerRank = sizes.count - 1
        let operandCount = strides.count
        withUnsafeTemporaryAllocation(of: Int.self, capacity: max(operandCount, 1)) { offsets in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: max(outerRank, 1)) { index in
                for k in 0..<operandCount { offsets[k] = 0 }
                for d in 0..<max(outerRank, 1) { index[d] = 0 }
                for row in 0..<rows {
                    body(row, offsets)
                    // Odometer increment over the outer axes.
                    var d = outerRank - 1
                    while d >= 0 {
                        index[d] += 1
                        for k in 0..<operandCount { offsets[k] += strides[k][d] }
                        if index[d] < sizes[d] { break }
                        for k in 0..<operandCount { offsets[k] -= strides[k][d] * sizes[d] }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// Sums this tensor over the axes along which a tensor of `shape` was broadcast to produce it: the
    /// gradient of broadcasting. Returns `self` unchanged when the shapes already match.
    ///   self: broadcastShapes(shape, …)  →  shape
    public func sum(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(broadcastShapes(target, shape) == shape,
                     "sum(toShape:): shape \(target) does not broadcast to \(shape)")
        let out = reducedSum(to: target)
        return Tensor.record(op: "sumToShape", inputs: [self], output: out) { [shape] g in
            [g.broadcast(to: shape)]
        }
    }

    /// Σ of this tensor into a new tensor of `target` (which broadcasts to `shape`); not recorded.
    func reducedSum(to target: [Int]) -> Tensor {
        let out = Tensor(zeros: target)
        let plan = BroadcastPlan(shape: shape, operands: [target])
        let src = pointer, dst = out.pointer
        let n = plan.rowLength
        if plan.innerStride(0) == 0 {
            plan.forEachRow { row, offsets in dst[offsets[0]] += sumOf(src + row * n, n) }
        } else {
            plan.forEachRow { row, offsets in
                let s = src + row * n, d = dst + offsets[0]
                for i in 0..<n { d[i] += s[i] }
            }
        }
        return out
    }

    /// Repeats this tensor along broadcast axes (NumPy rules) into a new contiguous tensor.
    ///   self: s  →  shape (s broadcasts to shape)
    public func broadcast(to target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(broadcastShapes(shape, target) == target,
                     "broadcast(to:): shape \(shape) cannot be broadcast to \(target)")
        let out = Tensor(uninitialized: target)
        let plan = BroadcastPlan(shape: target, operands: [shape])
        let src = pointer, dst = out.pointer
        let n = plan.rowLength
        if plan.innerStride(0) == 0 {
            plan.forEachRow { row, offsets in (dst + row * n).update(repeating: src[offsets[0]], count: n) }
        } else {
            plan.forEachRow { row, offsets in (dst + row * n).update(from: src + offsets[0], count: n) }
        }
        return Tensor.record(op: "broadcast", inputs: [self], output: out) { [shape] g in
            [g.sum(toShape: shape)]
        }
    }
}

/// Σ p[0..<n] with 16 independent partial sums (vectorizes; also more accurate than one running sum).
@inline(__always)
func sumOf(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    let raw = UnsafeRawPointer(p)
    while i + 16 <= n {
        acc0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        acc1 += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
        i += 16
    }
    var total = (acc0 + acc1).sum()
    while i < n { total += p[i]; i += 1 }
    return total
}

/// Σ a[i]·b[i] over n elements, vectorized like `sumOf`.
@inline(__always)
func dotOf(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 16 <= n {
        acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        acc1 += ra.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            * rb.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
        i += 16
    }
    var total = (acc0 + acc1).sum()
    while i < n { total += a[i] * b[i]; i += 1 }
    return total
}
