import Foundation

/// A line chart of metric series against the step, drawn as inline SVG (no script, no external file).
///
/// Train series are solid lines; eval series are dashed with a dot at every evaluated step, and each
/// run's evaluated steps are marked by faint vertical lines across the chart. Every series carries its
/// exact values in `data-steps` / `data-values` (shortest round-trip decimal), so that a test or a
/// reader can check the drawing against the store.
struct SVGChart {
    struct Series {
        let run: String
        /// Index into `SVGChart.palette`.
        let color: Int
        let split: MetricSplit
        let points: [(step: Int, value: Double)]
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    static func color(_ index: Int) -> String { palette[index % palette.count] }

    let metric: String
    let series: [Series]
    /// Per run color: its evaluated steps, drawn as vertical marks.
    let evalSteps: [(color: Int, steps: [Int])]

    let width = 560.0, height = 250.0
    let left = 64.0, right = 14.0, top = 12.0, bottom = 34.0

    var svg: String {
        let allPoints = series.flatMap(\.points)
        let xs = Self.paddedRange(allPoints.map { Double($0.step) } + evalSteps.flatMap { $0.steps.map(Double.init) })
        let ys = Self.paddedRange(allPoints.map(\.value))
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func x(_ step: Double) -> Double { left + (step - xs.lowerBound) / (xs.upperBound - xs.lowerBound) * plotWidth }
        func y(_ value: Double) -> Double { top + (ys.upperBound - value) / (ys.upperBound - ys.lowerBound) * plotHeight }
        func n(_ v: Double) -> String { String(format: "%.1f", v) }

        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" "
                   + "width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(HTML.escape(metric)) by step\">"]
        out.append("<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(plotWidth))\" height=\"\(n(plotHeight))\" class=\"plot\"/>")
        for tick in Self.ticks(ys) {
            out.append("<line class=\"grid\" x1=\"\(n(left))\" x2=\"\(n(width - right))\" y1=\"\(n(y(tick)))\" y2=\"\(n(y(tick)))\"/>")
            out.append("<text class=\"tick\" x=\"\(n(left - 6))\" y=\"\(n(y(tick) + 4))\" text-anchor=\"end\">\(Self.label(tick))</text>")
        }
        for tick in Self.ticks(xs) where tick == tick.rounded() {
            out.append("<text class=\"tick\" x=\"\(n(x(tick)))\" y=\"\(n(height - bottom + 16))\" text-anchor=\"middle\">\(Int(tick))</text>")
        }
        out.append("<text class=\"axis\" x=\"\(n(left + plotWidth / 2))\" y=\"\(n(height - 4))\" text-anchor=\"middle\">step</text>")
        for (color, steps) in evalSteps {
            for step in steps {
                out.append("<line class=\"eval-mark\" stroke=\"\(Self.color(color))\" x1=\"\(n(x(Double(step))))\" x2=\"\(n(x(Double(step))))\" "
                           + "y1=\"\(n(top))\" y2=\"\(n(top + plotHeight))\"/>")
            }
        }
        for s in series {
            let attributes = "data-run=\"\(HTML.escape(s.run))\" data-split=\"\(s.split.rawValue)\" data-metric=\"\(HTML.escape(metric))\" "
                + "data-steps=\"\(s.points.map { String($0.step) }.joined(separator: " "))\" "
                + "data-values=\"\(s.points.map { "\($0.value)" }.joined(separator: " "))\""
            let coordinates = s.points.map { "\(n(x(Double($0.step)))),\(n(y($0.value)))" }.joined(separator: " ")
            out.append("<polyline class=\"series \(s.split.rawValue)\" stroke=\"\(Self.color(s.color))\" points=\"\(coordinates)\" \(attributes)/>")
            guard s.split == .eval || s.points.count == 1 else { continue }
            for point in s.points {
                out.append("<circle class=\"point \(s.split.rawValue)\" fill=\"\(Self.color(s.color))\" cx=\"\(n(x(Double(point.step))))\" "
                           + "cy=\"\(n(y(point.value)))\" r=\"3.5\"><title>\(HTML.escape(s.run)) \(s.split.rawValue) step \(point.step): "
                           + "\(point.value)</title></circle>")
            }
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    /// The values' range, widened by 5 % on each side (or by 1 around a single value).
    static func paddedRange(_ values: [Double]) -> ClosedRange<Double> {
        guard let low = values.min(), let high = values.max() else { return 0 ... 1 }
        guard high > low else { return (low - max(1, abs(low) * 0.1)) ... (high + max(1, abs(high) * 0.1)) }
        let pad = (high - low) * 0.05
        return (low - pad) ... (high + pad)
    }

    /// Round values (1, 2 or 5 × 10ⁿ apart) inside `range`, about five of them.
    static func ticks(_ range: ClosedRange<Double>) -> [Double] {
        let raw = (range.upperBound - range.lowerBound) / 5
        let magnitude = pow(10, floor(log10(raw)))
        let spacing = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let first = Int(ceil(range.lowerBound / spacing)), last = Int(floor(range.upperBound / spacing))
        return first <= last ? (first...last).map { Double($0) * spacing } : []
    }

    static func label(_ value: Double) -> String { String(format: "%.4g", value) }
}

/// Text made safe for HTML element content and attribute values.
public enum HTML {
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
