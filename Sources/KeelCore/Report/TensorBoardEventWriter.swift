import Foundation

/// Writes TensorBoard event files: TFRecord framing (length, masked CRC32C of the length, the record,
/// masked CRC32C of the record) around `tensorflow.Event` protobufs, encoded by hand (the few fields
/// used). The first record carries `file_version: "brain.Event:2"`; each later one a `Summary` of
/// `simple_value` scalars at one step. Tags follow TRL (Hugging Face Trainer): `train/loss`,
/// `train/rewards/margins`, `eval/loss`, ….
///
/// Records are written with one `write(2)` each, unbuffered, so TensorBoard sees a live run's values as
/// soon as they are recorded.
public final class TensorBoardEventWriter {
    public let file: URL
    private let handle: FileHandle

    /// Creates `directory` and a new event file in it, named as TensorFlow names them
    /// (`events.out.tfevents.<unix seconds>.<host>.<pid>`, then `suffix`): TensorBoard reads every file
    /// whose name contains `tfevents`.
    public init(directory: URL, suffix: String = "", now: Date = Date()) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName.isEmpty ? "localhost" : ProcessInfo.processInfo.hostName
        file = directory.appendingPathComponent(
            "events.out.tfevents.\(Int(now.timeIntervalSince1970)).\(host).\(ProcessInfo.processInfo.processIdentifier)\(suffix)")
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw TrainerError("cannot create the TensorBoard event file \(file.path)")
        }
        handle = try FileHandle(forWritingTo: file)
        var event = Protobuf()
        event.double(field: 1, now.timeIntervalSince1970)
        event.lengthDelimited(field: 3, Array("brain.Event:2".utf8))
        try write(record: event.bytes)
    }

    deinit { try? handle.close() }

    /// TRL's tag of a Keel metric: `<split>/<name>`.
    public static func tag(split: MetricSplit, name: String) -> String { "\(split.rawValue)/\(name)" }

    /// One event at `step` holding every metric of `split` as a scalar summary value.
    public func write(step: Int, split: MetricSplit, metrics: [(name: String, value: Double)], at time: Date = Date()) throws {
        var summary = Protobuf()
        for (name, value) in metrics {
            var entry = Protobuf()
            entry.lengthDelimited(field: 1, Array(Self.tag(split: split, name: name).utf8))
            entry.float(field: 2, Float(value))
            summary.lengthDelimited(field: 1, entry.bytes)
        }
        var event = Protobuf()
        event.double(field: 1, time.timeIntervalSince1970)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        event.lengthDelimited(field: 5, summary.bytes)
        try write(record: event.bytes)
    }

    /// `keel export RUN --tensorboard DIR`: every recorded metric of the run, step by step, in a new
    /// file in `DIR/<run>/` that replaces an earlier export there (not the files a live run wrote).
    /// The store keeps no time per step, so every event carries the export's time. Returns the file.
    public static func export(_ history: RunHistory, to directory: URL, at time: Date = Date()) throws -> URL {
        let folder = directory.appendingPathComponent(history.run.id, isDirectory: true)
        let files = FileManager.default
        for name in (try? files.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasSuffix(exportSuffix) && name.contains("tfevents") {
            try files.removeItem(at: folder.appendingPathComponent(name))
        }
        let writer = try TensorBoardEventWriter(directory: folder, suffix: exportSuffix, now: time)
        for entry in history.metricsByStep {
            try writer.write(step: entry.step, split: entry.split, metrics: entry.values, at: time)
        }
        return writer.file
    }

    static let exportSuffix = ".keel-export"

    private func write(record: [UInt8]) throws {
        var length = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { length[i] = UInt8(truncatingIfNeeded: UInt64(record.count) >> (8 * UInt64(i))) }
        var framed = length
        framed += Self.littleEndian(CRC32C.masked(length))
        framed += record
        framed += Self.littleEndian(CRC32C.masked(record))
        try handle.write(contentsOf: framed)
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) } }
}

/// The Castagnoli CRC (CRC-32C, reflected polynomial 0x82F63B78), as TFRecord frames use it.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord's masking: rotate right by 15 bits and add a constant.
    static func masked(_ bytes: [UInt8]) -> UInt32 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}

/// A protobuf message under construction: the wire types the event files need.
struct Protobuf {
    private(set) var bytes: [UInt8] = []

    private mutating func key(_ field: Int, _ wireType: UInt64) { appendVarint(UInt64(field) << 3 | wireType) }

    private mutating func appendVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, 0)
        appendVarint(value)
    }

    mutating func double(field: Int, _ value: Double) {
        key(field, 1)
        bytes += (0..<8).map { UInt8(truncatingIfNeeded: value.bitPattern >> (8 * UInt64($0))) }
    }

    mutating func lengthDelimited(field: Int, _ value: [UInt8]) {
        key(field, 2)
        appendVarint(UInt64(value.count))
        bytes += value
    }

    mutating func float(field: Int, _ value: Float) {
        key(field, 5)
        bytes += TensorBoardEventWriter.littleEndian(value.bitPattern)
    }
}
