import Foundation
import Yams

/// What Berth knows about one run of a task; the values of `$Registry`, `{{.Run.ID}}` and friends.
public struct RunContext: Sendable, Equatable {
    /// The run's id (`$ID`, `{{.Run.ID}}`).
    public var id: String
    /// The registry's host name as clients reach it (`$Registry`, `{{.Run.Registry}}`).
    public var registry: String
    /// When the run started (`$Date`, `{{.Run.Date}}`, written `yyyyMMdd-HHmmssz` in UTC).
    public var date: Date
    /// The source commit and branch, when the run was triggered from source (`$Commit`, `$Branch`).
    public var commit: String?
    public var branch: String?
    /// The task's name (`$TaskName`, `{{.Run.TaskName}}`).
    public var taskName: String

    public init(id: String, registry: String, date: Date, commit: String? = nil, branch: String? = nil, taskName: String) {
        self.id = id
        self.registry = registry
        self.date = date
        self.commit = commit
        self.branch = branch
        self.taskName = taskName
    }

    /// The names `$X` and `{{.Run.X}}` accept.
    public static let names = ["ID", "Registry", "Date", "Commit", "Branch", "TaskName"]

    func value(of name: String) -> String?? {
        switch name {
        case "ID": .some(id)
        case "Registry": .some(registry)
        case "Date": .some(Self.format(date))
        case "Commit": .some(commit)
        case "Branch": .some(branch)
        case "TaskName": .some(taskName)
        default: .none
        }
    }

    /// `yyyyMMdd-HHmmssz`, UTC.
    static func format(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func two(_ v: Int?) -> String { let v = v ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        let year = String(c.year ?? 0)
        return "\(year)\(two(c.month))\(two(c.day))-\(two(c.hour))\(two(c.minute))\(two(c.second))z"
    }
}

/// The values `{{.Values.x}}` refers to: a values file, then `--set x=y` on top.
///
/// A value may itself refer to other values and to the run's variables; it is expanded when it
/// is used, so a value that refers to itself (directly or through others) is refused naming the
/// chain, and no value may expand past the caps of `TaskLimits`.
public struct TaskValues: Sendable, Equatable {
    public private(set) var entries: [String: String] = [:]

    public init() {}

    /// Reads a values file: a YAML mapping of names to scalars (`tag: v2`, `replicas: 3`).
    public init(valuesFile bytes: [UInt8], limits: TaskLimits = .default) throws(TaskFileError) {
        let source = "values file"
        let root = try SafeYAML.load(bytes, limits: limits, source: source)
        guard case .mapping(let mapping) = root else {
            throw TaskFileError(.wrongType, line: root.mark?.line ?? 1,
                                "a values file is a mapping of names to values", source: source)
        }
        for (key, value) in mapping {
            let line = key.mark?.line ?? 1
            guard case .scalar(let k) = key, Self.isName(k.string) else {
                throw TaskFileError(.invalidValue, line: line,
                                    "a value's name is letters, digits and '_', not starting with a digit", source: source)
            }
            guard case .scalar(let v) = value else {
                throw TaskFileError(.wrongType, line: value.mark?.line ?? line,
                                    "value \(quoted(k.string)) must be a single value, not a list or mapping", source: source)
            }
            entries[k.string] = SafeYAML.text(of: v)
        }
    }

    /// Applies one `--set name=value`; later assignments win.
    public mutating func set(_ assignment: String) throws(TaskFileError) {
        guard let eq = assignment.firstIndex(of: "="), Self.isName(assignment[..<eq]) else {
            throw TaskFileError(.invalidValue, line: 0,
                                "expected name=value with a name of letters, digits and '_', got \(quoted(assignment))",
                                source: "--set")
        }
        let name = String(assignment[..<eq])
        entries[name] = String(assignment[assignment.index(after: eq)...])
    }

    static func isName(_ s: some StringProtocol) -> Bool {
        guard let first = s.utf8.first, !(first >= 0x30 && first <= 0x39), s.utf8.count <= 128 else { return false }
        return s.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }
    }
}

/// Expands the variables of one task file's values.
///
/// - `$Registry`, `$ID`, `$Date`, `$Commit`, `$Branch`, `$TaskName` are the run's values; `$$` is a
///   literal `$`; any other `$name` (e.g. `$HOME` in a `cmd`) is left as it is.
/// - `{{.Run.X}}` (X one of the names above) and `{{.Values.x}}`, with optional spaces inside the
///   braces. Nothing else of Go templates (pipelines, functions, `if`) is accepted.
/// - Run values are inserted as they are; values are expanded in turn, so they may refer to each
///   other, but never to themselves.
struct Expander {
    let run: RunContext
    let values: TaskValues
    let limits: TaskLimits
    private var cache: [String: String] = [:]
    private var spent = 0

    init(run: RunContext, values: TaskValues, limits: TaskLimits) {
        self.run = run
        self.values = values
        self.limits = limits
    }

    mutating func expand(_ text: String, line: Int, source: String = "task file") throws(TaskFileError) -> String {
        let out = try expand(text, chain: [], line: line, source: source)
        spent += out.utf8.count
        guard spent <= limits.maxTotalExpansion else {
            throw TaskFileError(.variable, line: line,
                                "the file's values expand to more than \(limits.maxTotalExpansion) bytes in all", source: source)
        }
        return out
    }

    private mutating func expand(_ text: String, chain: [String], line: Int, source: String) throws(TaskFileError) -> String {
        guard text.contains("$") || text.contains("{{") else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        func append(_ piece: some Collection<UInt8>) throws(TaskFileError) {
            out += piece
            if out.count > limits.maxExpandedLength {
                let what = chain.last.map { "{{.Values.\($0)}}" } ?? "a value"
                throw TaskFileError(.variable, line: line,
                                    "\(what) expands to more than \(limits.maxExpandedLength) bytes", source: source)
            }
        }
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "$") {
                if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "$") {
                    try append(CollectionOfOne(b))
                    i += 2
                    continue
                }
                var j = i + 1
                while j < bytes.count, Self.isAlnum(bytes[j]) { j += 1 }
                let name = String(decoding: bytes[(i + 1)..<j], as: UTF8.self)
                if let value = run.value(of: name) {
                    guard let value else {
                        throw TaskFileError(.variable, line: line, "$\(name) has no value for this run", source: source)
                    }
                    try append(value.utf8)
                    i = j
                    continue
                }
                try append(bytes[i..<j])
                i = j
                continue
            }
            if b == UInt8(ascii: "{"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "{") {
                var j = i + 2
                while j + 1 < bytes.count, !(bytes[j] == UInt8(ascii: "}") && bytes[j + 1] == UInt8(ascii: "}")) { j += 1 }
                guard j + 1 < bytes.count else {
                    throw TaskFileError(.variable, line: line, "'{{' is not closed by '}}'", source: source)
                }
                let expression = String(decoding: bytes[(i + 2)..<j], as: UTF8.self)
                    .trimmingCharacters(in: .whitespaces)
                try append(resolve(expression, chain: chain, line: line, source: source).utf8)
                i = j + 2
                continue
            }
            try append(CollectionOfOne(b))
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func resolve(_ expression: String, chain: [String], line: Int, source: String) throws(TaskFileError) -> String {
        if expression.hasPrefix(".Run.") {
            let name = String(expression.dropFirst(5))
            guard let value = run.value(of: name) else {
                throw TaskFileError(.variable, line: line,
                                    "unknown run variable \(quoted("{{\(expression)}}", limit: 60)) (known: \(RunContext.names.map { ".Run.\($0)" }.joined(separator: ", ")))",
                                    source: source)
            }
            guard let value else {
                throw TaskFileError(.variable, line: line, "{{.Run.\(name)}} has no value for this run", source: source)
            }
            return value
        }
        if expression.hasPrefix(".Values.") {
            let name = String(expression.dropFirst(8))
            guard TaskValues.isName(name) else {
                throw TaskFileError(.variable, line: line, "\(quoted(expression, limit: 40)) is not a value name", source: source)
            }
            if let done = cache[name] { return done }
            if let at = chain.firstIndex(of: name) {
                let cycle = (chain[at...] + [name]).map { "Values.\($0)" }.joined(separator: " → ")
                throw TaskFileError(.variable, line: line, "a value refers to itself: \(cycle)", source: source)
            }
            guard let raw = values.entries[name] else {
                throw TaskFileError(.variable, line: line,
                                    "no value for {{.Values.\(name)}}: give it in the values file or with --set \(name)=…",
                                    source: source)
            }
            let value = try expand(raw, chain: chain + [name], line: line, source: source)
            cache[name] = value
            return value
        }
        throw TaskFileError(.variable, line: line,
                            "unsupported template \(quoted("{{\(expression)}}", limit: 60)): only {{.Run.X}} and {{.Values.x}} are expanded",
                            source: source)
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x5f
    }
}
