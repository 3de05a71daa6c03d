/// Sum and mean over axes.
///
/// Forward  out[k] = Σ_{reduced axes} x          x: S  →  S with the reduced axes removed
///          (or set to 1 with keepDims). mean divides by the number of reduced elements.
/// Backward dx = g broadcast back over the reduced axes (÷ N for mean).
/// Reducing over an axis of size 0 gives 0 (sum) and NaN (mean, 0/0), as in NumPy; an empty `axes`
/// list reduces nothing.
extension Tensor {
    /// Sum over `axes` (negative values count from the end).
    public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
        let reduced = normalizedAxes(axes, op: "sum")
        let keptShape = shape.indices.map { reduced.contains($0) ? 1 : shape[$0] }
        let outShape = keepDims ? keptShape : shape.indices.filter { !reduced.contains($0) }.map { shape[$0] }
        let total = reducedSum(to: keptShape)
        let out = Tensor(shape: outShape, storage: total.storage)
        return Tensor.record(op: "sum", inputs: [self], output: out) { [shape] g in
            [Tensor(shape: keptShape, storage: g.storage, offset: g.offset).broadcast(to: shape)]
        }
    }

    /// Sum of all elements, as a rank-0 tensor.
    public func sum() -> Tensor { sum(axes: Array(shape.indices)) }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
        let reduced = normalizedAxes(axes, op: "mean")
        let n = reduced.reduce(1) { $0 * shape[$1] }
        return sum(axes: axes, keepDims: keepDims) * (1 / Float(n))
    }

    /// Mean of all elements, as a rank-0 tensor.
    public func mean() -> Tensor { mean(axes: Array(shape.indices)) }

    /// Axes in 0..<rank, each once, from possibly negative `axes`.
    func normalizedAxes(_ axes: [Int], op: String) -> Set<Int> {
        var result = Set<Int>()
        for axis in axes {
            let a = axis < 0 ? axis + rank : axis
            precondition(a >= 0 && a < rank, "\(op): axis \(axis) out of range for shape \(shape)")
            precondition(result.insert(a).inserted, "\(op): axis \(axis) repeated in \(axes)")
        }
        return result
    }
}
