// The bias of a linear layer (Qwen 2's q/k/v projections): out = x·Wᵀ + b, added after `matmulForward`.

/// In place: out [N,C] += bias [C] on every row.
public func biasForward(_ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, N: Int, C: Int) {
    ThreadPool.shared.parallelFor(N, grain: 64) { rows in
        for n in rows {
            let row = out + n * C
            for c in 0..<C { row[c] += bias[c] }
        }
    }
}

/// dbias [C] += Σ_n dout [n, c]; summed over rows in order, per column (deterministic).
public func biasBackward(_ dbias: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, N: Int, C: Int) {
    ThreadPool.shared.parallelFor(C, grain: 16) { columns in
        for c in columns {
            var total: Float = 0
            for n in 0..<N { total += dout[n * C + c] }
            dbias[c] += total
        }
    }
}
