// Token embedding lookup and its gradient (a scatter-add into the table rows of the tokens seen).

/// out [N,C] ← table [V,C] rows tokens [N]. Token ids must lie in 0..<V (callers validate user data).
public func embeddingForward(_ out: UnsafeMutablePointer<Float>, _ tokens: UnsafePointer<Int32>,
                             _ table: UnsafePointer<Float>, N: Int, C: Int, V: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("embedding.forward", token) }
    for n in 0..<N {
        let id = Int(tokens[n])
        precondition(id >= 0 && id < V, "embedding: token id \(id) at position \(n) is outside 0..<\(V)")
        (out + n * C).update(from: table + id * C, count: C)
    }
}

/// dtable [V,C] += Σ_{n: tokens[n]=v} dout[n].
/// Each ThreadPool chunk owns a contiguous range of vocabulary rows and scans all tokens in order,
/// so repeated tokens are summed in position order whatever the timing (deterministic, race-free).
public func embeddingBackward(_ dtable: UnsafeMutablePointer<Float>, _ tokens: UnsafePointer<Int32>,
                              _ dout: UnsafePointer<Float>, N: Int, C: Int, V: Int) {
    let token = Profiler.begin()
    defer { Profiler.end("embedding.backward", token) }
    ThreadPool.shared.parallelFor(V, grain: 1024) { vocab in
        for n in 0..<N {
            let id = Int(tokens[n])
            guard vocab.contains(id) else { continue }
            let row = dtable + id * C, dy = dout + n * C
            for i in 0..<C { row[i] += dy[i] }
        }
    }
}
