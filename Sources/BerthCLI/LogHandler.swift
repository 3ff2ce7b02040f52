import Foundation
import Logging
import OCIModel
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Berth's log lines on standard error, with millisecond UTC timestamps:
/// - `text`: `2026-11-30T02:10:11.123Z info berth.access: request method=GET path=/v2/ status=200`
/// - `json`: one object per line: `{"ts":"…","level":"info","logger":"berth.access","msg":"request",…}`
///   with the metadata as string fields (a field never overrides `ts`, `level`, `logger` or `msg`).
struct BerthLogHandler: LogHandler {
    let label: String
    let format: ServeSettings.LogFormat
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Self.render(format: format, date: Date(), level: event.level, label: label,
                               message: "\(event.message)", metadata: merged)
        Self.emit(line)
    }

    static func render(format: ServeSettings.LogFormat, date: Date, level: Logger.Level, label: String,
                       message: String, metadata: Logger.Metadata) -> String {
        let ts = timestamp(date)
        let keys = metadata.keys.sorted()
        switch format {
        case .text:
            var line = "\(ts) \(level) \(label): \(message)"
            for key in keys { line += " \(key)=\(metadata[key]!)" }
            return line
        case .json:
            var line = "{\"ts\":\(jsonString(ts)),\"level\":\(jsonString(level.rawValue)),\"logger\":\(jsonString(label)),\"msg\":\(jsonString(message))"
            for key in keys where !["ts", "level", "logger", "msg"].contains(key) {
                line += ",\(jsonString(key)):\(jsonString("\(metadata[key]!)"))"
            }
            return line + "}"
        }
    }

    /// RFC 3339 in UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let whole = RFC3339.format(date)   // …:SSZ
        let millis = Int((date.timeIntervalSince1970 - date.timeIntervalSince1970.rounded(.down)) * 1000)
        let ms = String(millis)
        return String(whole.dropLast()) + "." + String(repeating: "0", count: 3 - ms.count) + ms + "Z"
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f || (0x2028...0x2029).contains(scalar.value):
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// One `write(2)` per line, so lines of concurrent tasks never interleave.
    static func emit(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { if errno == EINTR { continue }; return }
                offset += n
            }
        }
    }
}
