import Foundation

public struct Severity: Sendable, Hashable, Codable {
    public enum Level: Int, Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
        case unknown, none, low, medium, high, critical
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        public var description: String {
            switch self {
            case .unknown: "unknown"; case .none: "none"; case .low: "low"
            case .medium: "medium"; case .high: "high"; case .critical: "critical"
            }
        }

        /// The CVSS v3 qualitative rating of a base score.
        public init(score: Double) {
            switch score {
            case ..<0.05: self = .none
            case ..<4.0: self = .low
            case ..<7.0: self = .medium
            case ..<9.0: self = .high
            default: self = .critical
            }
        }

        /// Words feeds use: GHSA's LOW/MODERATE/HIGH/CRITICAL, Debian urgencies, Ubuntu priorities.
        public init(word: String) {
            switch word.lowercased() {
            case "critical": self = .critical
            case "high", "important": self = .high
            case "moderate", "medium": self = .medium
            case "low", "unimportant", "negligible": self = .low
            case "none": self = .none
            default: self = .unknown
            }
        }
    }

    /// Where the severity came from: "CVSS_V3", "CVSS_V4", "Ubuntu", "GHSA", "Debian urgency".
    public var type: String
    public var level: Level
    public var score: Double?
    public var vector: String?

    public init(type: String, level: Level, score: Double? = nil, vector: String? = nil) {
        self.type = type; self.level = level; self.score = score; self.vector = vector
    }

    /// A severity from an OSV `severity[]` entry. CVSS v3 vectors are scored; CVSS v4 vectors are
    /// kept but not scored (level `.unknown`); other types are read as words.
    public static func fromOSV(type: String, score: String) -> Severity {
        switch type {
        case "CVSS_V3":
            if let s = try? CVSS3.baseScore(score) { return Severity(type: type, level: Level(score: s), score: s, vector: score) }
            return Severity(type: type, level: .unknown, vector: score)
        case "CVSS_V2", "CVSS_V4":
            return Severity(type: type, level: .unknown, vector: score)
        default:
            return Severity(type: type, level: Level(word: score))
        }
    }
}

/// The CVSS v3.0 / v3.1 base score (FIRST, "CVSS v3.1 Specification", section 7.1 and
/// Appendix A for the Roundup function).
public enum CVSS3 {
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { "invalid CVSS v3 vector: \(reason)" }
    }

    static let base: [String: [String: Double]] = [
        "AV": ["N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2],
        "AC": ["L": 0.77, "H": 0.44],
        "PR": ["N": 0.85, "L": 0.62, "H": 0.27],
        "UI": ["N": 0.85, "R": 0.62],
        "S": ["U": 0, "C": 1],
        "C": ["H": 0.56, "L": 0.22, "N": 0],
        "I": ["H": 0.56, "L": 0.22, "N": 0],
        "A": ["H": 0.56, "L": 0.22, "N": 0],
    ]
    /// Temporal and environmental metrics: accepted (once each, with a valid value) and ignored.
    static let other: [String: Set<String>] = [
        "E": ["X", "U", "P", "F", "H"], "RL": ["X", "O", "T", "W", "U"], "RC": ["X", "U", "R", "C"],
        "CR": ["X", "L", "M", "H"], "IR": ["X", "L", "M", "H"], "AR": ["X", "L", "M", "H"],
        "MAV": ["X", "N", "A", "L", "P"], "MAC": ["X", "L", "H"], "MPR": ["X", "N", "L", "H"],
        "MUI": ["X", "N", "R"], "MS": ["X", "U", "C"], "MC": ["X", "N", "L", "H"],
        "MI": ["X", "N", "L", "H"], "MA": ["X", "N", "L", "H"],
    ]

    /// Parses a vector such as `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H` and returns its
    /// base score (0.0 … 10.0).
    public static func baseScore(_ vector: String) throws -> Double {
        guard vector.utf8.count <= 200 else { throw ParseError(reason: "too long") }
        var parts = vector.split(separator: "/", omittingEmptySubsequences: false)
        guard let head = parts.first, head == "CVSS:3.1" || head == "CVSS:3.0" else {
            throw ParseError(reason: "must start with CVSS:3.0/ or CVSS:3.1/")
        }
        parts.removeFirst()
        var metrics: [String: String] = [:]
        for part in parts {
            let kv = part.split(separator: ":", omittingEmptySubsequences: false)
            guard kv.count == 2 else { throw ParseError(reason: "metric \"\(part.prefix(16))\" is not KEY:VALUE") }
            let key = String(kv[0]), value = String(kv[1])
            if metrics[key] != nil { throw ParseError(reason: "metric \(key.prefix(8)) given twice") }
            if let values = base[key] {
                guard values[value] != nil else { throw ParseError(reason: "bad value for \(key)") }
            } else if let values = other[key] {
                guard values.contains(value) else { throw ParseError(reason: "bad value for \(key)") }
            } else {
                throw ParseError(reason: "unknown metric \"\(key.prefix(8))\"")
            }
            metrics[key] = value
        }
        for key in ["AV", "AC", "PR", "UI", "S", "C", "I", "A"] where metrics[key] == nil {
            throw ParseError(reason: "base metric \(key) missing")
        }
        func w(_ k: String) -> Double { base[k]![metrics[k]!]! }
        let changed = metrics["S"] == "C"
        var pr = w("PR")
        if changed { pr = metrics["PR"] == "L" ? 0.68 : (metrics["PR"] == "H" ? 0.5 : pr) }
        let iss = 1 - (1 - w("C")) * (1 - w("I")) * (1 - w("A"))
        let impact = changed ? 7.52 * (iss - 0.029) - 3.25 * pow(iss - 0.02, 15) : 6.42 * iss
        let exploitability = 8.22 * w("AV") * w("AC") * pr * w("UI")
        if impact <= 0 { return 0 }
        return roundUp(min(changed ? 1.08 * (impact + exploitability) : impact + exploitability, 10))
    }

    /// The smallest number with one decimal place that is not below `x`, computed on integers
    /// so that floating-point noise (4.000000000000001) does not push a score up a tenth.
    static func roundUp(_ x: Double) -> Double {
        let scaled = Int((x * 100_000).rounded())
        if scaled % 10_000 == 0 { return Double(scaled) / 100_000 }
        return Double(scaled / 10_000 + 1) / 10
    }
}
