import Access
import Foundation
import OCIModel
import RegistryStore

/// The scan policy (issue 15 item 8): which findings fail an image, the exceptions that let named
/// advisories through (each with who asked, why and until when), and whether images that fail it
/// are refused at pull. Stored as the `scan-policy` setting; a failing image gets a `Failed`
/// quarantine verdict from the scanner, and with `blockPulls` its pulls are refused.
public struct ScanPolicy: Codable, Sendable, Equatable {
    /// Findings of this severity or above fail an image; `None` fails nothing. One of
    /// `ScanPolicy.severities`. Findings of `Unknown` severity never fail an image.
    public var blockSeverity: String
    /// Findings without a fixed version do not fail an image.
    public var ignoreUnfixed: Bool
    /// Pulls (and Kubernetes admission) of images that fail the policy are refused.
    public var blockPulls: Bool
    public var allow: [ScanPolicyException]

    public init(blockSeverity: String = "None", ignoreUnfixed: Bool = false, blockPulls: Bool = false, allow: [ScanPolicyException] = []) {
        self.blockSeverity = blockSeverity
        self.ignoreUnfixed = ignoreUnfixed
        self.blockPulls = blockPulls
        self.allow = allow
    }

    /// The severities a policy may block at, lowest first.
    public static let severities = ["None", "Low", "Medium", "High", "Critical"]
    /// The longest an exception may last.
    public static let maxExceptionDays = 366
    public static let maxExceptions = 1000

    /// Whether the policy fails anything at all.
    public var isActive: Bool { blockSeverity != "None" }
}

/// One exception: findings of the advisory `id` (or one of its aliases) do not fail images of the
/// repositories `repository` matches (all when nil) until `until`.
public struct ScanPolicyException: Codable, Sendable, Equatable {
    public var id: String
    /// A repository pattern (`payments/*`, an exact name, `*`); nil: every repository.
    public var repository: String?
    /// The identity that added it, recorded by the server.
    public var who: String
    public var why: String
    public var until: Date
    public var createdAt: Date

    public init(id: String, repository: String?, who: String, why: String, until: Date, createdAt: Date) {
        self.id = id
        self.repository = repository
        self.who = who
        self.why = why
        self.until = until
        self.createdAt = createdAt
    }

    public func isExpired(at now: Date) -> Bool { until <= now }

    func covers(_ finding: StoredFinding, repository name: String, at now: Date) -> Bool {
        guard !isExpired(at: now) else { return false }
        if let repository, !((try? RepositoryPattern(repository))?.matches(name) ?? false) { return false }
        let wanted = id.lowercased()
        return finding.advisoryID.lowercased() == wanted || finding.aliases.contains { $0.lowercased() == wanted }
    }
}

/// A field of a policy change that is not valid: answered 400 naming the field.
public struct ScanPolicyInvalid: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let reason: String
    public var description: String { "\(field): \(reason)" }
}

/// A change to the policy (PATCH): what is given replaces the field; `allow` entries are added
/// (replacing one of the same id and repository), `removeAllow` removes every entry of the ids.
public struct ScanPolicyChange: Sendable {
    public struct Exception: Sendable {
        public var id: String
        public var repository: String?
        public var why: String?
        public var until: String?
        public init(id: String, repository: String?, why: String?, until: String?) {
            self.id = id
            self.repository = repository
            self.why = why
            self.until = until
        }
    }

    public var blockSeverity: String?
    public var ignoreUnfixed: Bool?
    public var blockPulls: Bool?
    public var allow: [Exception]
    public var removeAllow: [String]

    public init(blockSeverity: String? = nil, ignoreUnfixed: Bool? = nil, blockPulls: Bool? = nil, allow: [Exception] = [],
                removeAllow: [String] = []) {
        self.blockSeverity = blockSeverity
        self.ignoreUnfixed = ignoreUnfixed
        self.blockPulls = blockPulls
        self.allow = allow
        self.removeAllow = removeAllow
    }

    /// `policy` with this change applied by `who` at `now`; throws the first invalid field.
    /// Expired exceptions are dropped on every change (they no longer count).
    public func applied(to policy: ScanPolicy, who: String, now: Date) throws(ScanPolicyInvalid) -> ScanPolicy {
        var out = policy
        if let blockSeverity {
            guard let name = ScanPolicy.severities.first(where: { $0.lowercased() == blockSeverity.lowercased() }) else {
                throw ScanPolicyInvalid(field: "blockSeverity", reason: "one of \(ScanPolicy.severities.joined(separator: ", "))")
            }
            out.blockSeverity = name
        }
        if let ignoreUnfixed { out.ignoreUnfixed = ignoreUnfixed }
        if let blockPulls { out.blockPulls = blockPulls }
        for id in removeAllow {
            let before = out.allow.count
            out.allow.removeAll { $0.id.lowercased() == id.lowercased() }
            if out.allow.count == before {
                throw ScanPolicyInvalid(field: "removeAllow", reason: "no exception for \(id.prefix(100))")
            }
        }
        out.allow.removeAll { $0.isExpired(at: now) }
        for e in allow {
            let id = e.id.trimmingCharacters(in: .whitespaces)
            guard Self.validID(id) else {
                throw ScanPolicyInvalid(field: "allow.id", reason: "an advisory id (CVE-2024-1234, GHSA-…, letters, digits, . _ : -; at most 128)")
            }
            if let repository = e.repository {
                do { _ = try RepositoryPattern(repository) } catch {
                    throw ScanPolicyInvalid(field: "allow.repository", reason: "not a repository pattern (exact name, prefix/*, *)")
                }
            }
            guard let why = e.why?.trimmingCharacters(in: .whitespacesAndNewlines), !why.isEmpty else {
                throw ScanPolicyInvalid(field: "allow.why", reason: "say why the exception is granted")
            }
            guard why.utf8.count <= 1000 else { throw ScanPolicyInvalid(field: "allow.why", reason: "at most 1000 bytes") }
            guard let raw = e.until else {
                throw ScanPolicyInvalid(field: "allow.until", reason: "required: when the exception ends (RFC 3339)")
            }
            guard let until = Self.parseDate(raw) else {
                throw ScanPolicyInvalid(field: "allow.until", reason: "an RFC 3339 time (2027-01-01T00:00:00Z) or a date (2027-01-01)")
            }
            guard until > now else { throw ScanPolicyInvalid(field: "allow.until", reason: "in the past") }
            guard until <= now.addingTimeInterval(Double(ScanPolicy.maxExceptionDays) * 86400) else {
                throw ScanPolicyInvalid(field: "allow.until", reason: "at most \(ScanPolicy.maxExceptionDays) days ahead")
            }
            out.allow.removeAll { $0.id.lowercased() == id.lowercased() && $0.repository == e.repository }
            out.allow.append(ScanPolicyException(id: id, repository: e.repository, who: String(who.prefix(200)), why: why,
                                                 until: until, createdAt: Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))))
        }
        guard out.allow.count <= ScanPolicy.maxExceptions else {
            throw ScanPolicyInvalid(field: "allow", reason: "at most \(ScanPolicy.maxExceptions) exceptions")
        }
        out.allow.sort { ($0.id, $0.repository ?? "") < ($1.id, $1.repository ?? "") }
        return out
    }

    static func validID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: ":") || b == UInt8(ascii: "-")
        }
    }

    /// RFC 3339 (with or without fractional seconds), or a bare date meaning its midnight UTC.
    public static func parseDate(_ raw: String) -> Date? {
        let full = ISO8601DateFormatter()
        full.formatOptions = [.withInternetDateTime]
        if let d = full.date(from: raw) { return d }
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = full.date(from: raw) { return d }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        guard raw.count == 10 else { return nil }
        return day.date(from: raw)
    }
}

/// What the policy says of one image's findings.
public struct ScanPolicyVerdict: Sendable, Equatable {
    public var passed: Bool
    /// Why, in words: the blocking findings (most severe first, at most 10 named) or that none block.
    public var reason: String
    /// The findings that fail the image.
    public var blocking: [StoredFinding]
}

public enum ScanPolicyEvaluation {
    /// The reason of every verdict starts with this: the scanner changes only verdicts it gave
    /// (or `Pending`), never one a person recorded.
    public static let reasonPrefix = "scan policy: "

    static func rank(_ severity: String) -> Int { FindingSeverity.names.firstIndex(of: severity) ?? 0 }

    /// Pure: `findings` of an image in `repository` judged by `policy` at `now`. Expired
    /// exceptions are ignored; findings of Unknown severity never block. `suppressed` are the
    /// image's findings a VEX statement suppresses: never judged, those that would have blocked
    /// counted in the reason.
    public static func evaluate(_ findings: [StoredFinding], repository: String, policy: ScanPolicy, now: Date,
                                suppressed: [StoredFinding] = []) -> ScanPolicyVerdict {
        guard policy.isActive else {
            return ScanPolicyVerdict(passed: true, reason: reasonPrefix + "passed (no severity blocks)", blocking: [])
        }
        let threshold = rank(policy.blockSeverity)
        var blocking: [StoredFinding] = []
        var excepted = 0
        for f in findings {
            let r = rank(f.severity)
            guard r >= threshold, f.severity != "Unknown" else { continue }
            if policy.ignoreUnfixed, f.fixedVersion == nil { continue }
            if policy.allow.contains(where: { $0.covers(f, repository: repository, at: now) }) {
                excepted += 1
                continue
            }
            blocking.append(f)
        }
        let byVEX = suppressed.filter { rank($0.severity) >= threshold && $0.severity != "Unknown" }.count
        let exceptedText = (excepted > 0 ? "; \(excepted) excepted" : "") + (byVEX > 0 ? "; \(byVEX) suppressed by VEX" : "")
        if blocking.isEmpty {
            return ScanPolicyVerdict(passed: true, reason: reasonPrefix + "passed (no finding at \(policy.blockSeverity) or above\(policy.ignoreUnfixed ? " with a fix" : "")\(exceptedText))", blocking: [])
        }
        blocking.sort { (-rank($0.severity), $0.advisoryID, $0.package) < (-rank($1.severity), $1.advisoryID, $1.package) }
        var ids: [String] = []
        for f in blocking where !ids.contains(f.advisoryID) { ids.append(f.advisoryID) }
        let named = ids.prefix(10).joined(separator: ", ") + (ids.count > 10 ? " and \(ids.count - 10) more" : "")
        return ScanPolicyVerdict(passed: false,
                                 reason: reasonPrefix + "\(blocking.count) finding(s) at \(policy.blockSeverity) or above: \(named)\(exceptedText)",
                                 blocking: blocking)
    }
}
