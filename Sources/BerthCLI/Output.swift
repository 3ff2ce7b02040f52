import ArgumentParser
import Foundation

/// Any JSON value, as the management API sends and takes it.
enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n == n.rounded(), abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var asString: String? { if case .string(let s) = self { return s }; return nil }
    var asArray: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    var asObject: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }

    /// Follows a dotted path (`identity.name`).
    func at(_ path: String) -> JSONValue? {
        var current: JSONValue? = self
        for part in path.split(separator: ".") { current = current?[String(part)] }
        return current
    }

    /// A one-cell rendering: scalars as is, arrays of scalars comma-joined, objects as compact JSON.
    var cell: String {
        switch self {
        case .null: return ""
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .string(let s): return s
        case .array(let a):
            if a.allSatisfy({ if case .array = $0 { return false }; if case .object = $0 { return false }; return true }) {
                return a.map(\.cell).joined(separator: ",")
            }
            return compactJSON
        case .object: return compactJSON
        }
    }

    var compactJSON: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: e.encode(self), as: UTF8.self)) ?? ""
    }

    var prettyJSON: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
        return (try? String(decoding: e.encode(self), as: UTF8.self)) ?? ""
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json, tsv
}

struct OutputOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")], help: "Output format: table, json or tsv.")
    var output: OutputFormat = .table
}

/// One column of a table: its header and where its value comes from (a dotted JSON path, or a function).
struct Column: Sendable {
    let header: String
    let value: @Sendable (JSONValue) -> String

    init(_ header: String, _ path: String) {
        self.header = header
        self.value = { $0.at(path)?.cell ?? "" }
    }

    init(_ header: String, compute: @escaping @Sendable (JSONValue) -> String) {
        self.header = header
        self.value = compute
    }
}

enum Printer {
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Prints rows (an array, or a single object as one row) in the chosen format. json prints the
    /// server's answer itself.
    static func rows(_ value: JSONValue, columns: [Column], format: OutputFormat) {
        let items: [JSONValue] = value.asArray ?? [value]
        switch format {
        case .json:
            write(value.prettyJSON + "\n")
        case .tsv:
            // no header: easy to feed to `cut`/`read`; tabs and newlines inside a cell become spaces
            for item in items {
                write(columns.map { sanitize($0.value(item)) }.joined(separator: "\t") + "\n")
            }
        case .table:
            let cells = items.map { item in columns.map { sanitize($0.value(item)) } }
            write(table(headers: columns.map(\.header), cells: cells))
        }
    }

    /// Prints an object as "key  value" lines (table), key\tvalue (tsv), or JSON.
    static func keyValues(_ value: JSONValue, fields: [Column], format: OutputFormat) {
        switch format {
        case .json:
            write(value.prettyJSON + "\n")
        case .tsv:
            for f in fields { write("\(f.header)\t\(sanitize(f.value(value)))\n") }
        case .table:
            let width = fields.map(\.header.count).max() ?? 0
            for f in fields {
                let value = sanitize(f.value(value))
                write((value.isEmpty ? f.header : f.header.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) + "\n")
            }
        }
    }

    static func sanitize(_ s: String) -> String {
        s.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ")
    }

    static func table(headers: [String], cells: [[String]]) -> String {
        var widths = headers.map(\.count)
        for row in cells {
            for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) }
        }
        func line(_ row: [String]) -> String {
            var out = ""
            for (i, c) in row.enumerated() {
                if i == row.count - 1 { out += c } else { out += c.padding(toLength: widths[i], withPad: " ", startingAt: 0) + "  " }
            }
            return out.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) + "\n"
        }
        var out = line(headers.map { $0.uppercased() })
        out += line(widths.map { String(repeating: "-", count: $0) })
        for row in cells { out += line(row) }
        return out
    }
}
