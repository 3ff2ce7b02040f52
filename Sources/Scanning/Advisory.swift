import Foundation

/// One advisory, whatever feed it came from.
public struct Advisory: Sendable, Hashable, Codable {
    public enum Source: String, Sendable, Hashable, Codable { case osv, debianSecurityTracker, alpineSecdb }

    public var id: String
    public var aliases: [String]
    public var summary: String?
    public var source: Source
    /// Set when the advisory was withdrawn; withdrawn advisories never match.
    public var withdrawn: String?
    public var severities: [Severity]
    public var affected: [AffectedPackage]

    public init(id: String, aliases: [String] = [], summary: String? = nil, source: Source, withdrawn: String? = nil,
                severities: [Severity] = [], affected: [AffectedPackage]) {
        self.id = id; self.aliases = aliases; self.summary = summary; self.source = source
        self.withdrawn = withdrawn; self.severities = severities; self.affected = affected
    }
}

/// A package an advisory applies to, and which of its versions are affected.
public struct AffectedPackage: Sendable, Hashable, Codable {
    /// The ecosystem as the feed names it ("Debian:12", "PyPI", "Alpine").
    public var ecosystem: String
    public var name: String
    /// The distribution release this entry is about ("bookworm", "v3.18"), when the feed says.
    public var release: String?
    public var ranges: [AffectedRange]
    /// Versions listed one by one as affected.
    public var versions: [String]
    /// Severity stated for this package in particular (Debian urgency, for example).
    public var severity: Severity?
    /// Debian: the security team decided not to issue an advisory (no-dsa) for this release.
    public var noDSA: Bool

    public init(ecosystem: String, name: String, release: String? = nil, ranges: [AffectedRange] = [],
                versions: [String] = [], severity: Severity? = nil, noDSA: Bool = false) {
        self.ecosystem = ecosystem; self.name = name; self.release = release; self.ranges = ranges
        self.versions = versions; self.severity = severity; self.noDSA = noDSA
    }

    /// Versions that fix the issue, in the order the feed gives them.
    public var fixedVersions: [String] {
        ranges.flatMap { $0.events.compactMap { if case let .fixed(v) = $0 { return v } else { return nil } } }
    }

    /// True when some range is open (introduced and never fixed or bounded).
    public var isUnfixed: Bool {
        ranges.contains { r in
            r.events.contains { if case .introduced = $0 { return true } else { return false } }
                && !r.events.contains { switch $0 { case .fixed, .lastAffected, .limit: return true; default: return false } }
        }
    }
}

public struct AffectedRange: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable { case semver = "SEMVER", ecosystem = "ECOSYSTEM", git = "GIT" }
    public enum Event: Sendable, Hashable {
        /// "0" means "from the first version".
        case introduced(String)
        case fixed(String)
        case lastAffected(String)
        case limit(String)

        public var version: String {
            switch self { case let .introduced(v), let .fixed(v), let .lastAffected(v), let .limit(v): return v }
        }
    }

    public var kind: Kind
    public var events: [Event]
    /// GIT ranges: the repository the commits belong to.
    public var repository: String?

    public init(kind: Kind, events: [Event], repository: String? = nil) {
        self.kind = kind; self.events = events; self.repository = repository
    }
}
