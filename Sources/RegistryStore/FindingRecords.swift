import Foundation
import OCIModel

/// One advisory matched against one installed package of an image.
public struct StoredFinding: Sendable, Hashable {
    public var advisoryID: String
    public var aliases: [String]
    /// The ecosystem and package as the inventory names them ("Debian", "libssl3"; for a
    /// distribution package `sourcePackage` is what the advisory names).
    public var ecosystem: String
    public var package: String
    public var sourcePackage: String?
    public var installedVersion: String
    /// The lowest fixed version above the installed one; nil when there is no fix.
    public var fixedVersion: String?
    /// "Critical", "High", "Medium", "Low", "Negligible" or "Unknown".
    public var severity: String
    /// The CVSS base score, when the advisory has a vector.
    public var score: Double?
    /// "fix-available" (a fixed version is known), "unfixed" (none yet) or "no-dsa" (Debian: unfixed,
    /// and the security team decided not to issue an advisory for the release).
    public var fixState: String

    public init(advisoryID: String, aliases: [String], ecosystem: String, package: String, sourcePackage: String?,
                installedVersion: String, fixedVersion: String?, severity: String, score: Double?, fixState: String? = nil) {
        self.advisoryID = advisoryID
        self.aliases = aliases
        self.ecosystem = ecosystem
        self.package = package
        self.sourcePackage = sourcePackage
        self.installedVersion = installedVersion
        self.fixedVersion = fixedVersion
        self.severity = severity
        self.score = score
        self.fixState = fixState ?? ((fixedVersion ?? "").isEmpty ? "unfixed" : "fix-available")
    }
}

/// A manifest's findings: what matching its inventory against one version of the advisory
/// database gave.
public struct StoredFindings: Sendable, Equatable {
    public var manifest: Digest
    /// The advisory database version the inventory was matched against.
    public var advisoryVersion: Int64
    public var matchedAt: Date
    /// Ordered by advisory id, ecosystem, package, installed version; each once.
    public var findings: [StoredFinding]

    public init(manifest: Digest, advisoryVersion: Int64, matchedAt: Date, findings: [StoredFinding]) {
        self.manifest = manifest
        self.advisoryVersion = advisoryVersion
        self.matchedAt = matchedAt
        self.findings = findings
    }
}

public enum FindingStoreLimits {
    /// Most findings kept per manifest.
    public static let maxFindingsPerManifest = 100_000
    /// Longest id, alias, ecosystem, package, version or severity kept (longer ones are cut).
    public static let maxFieldLength = 1024
    /// Most rows one page of `scannedImages` answers.
    public static let maxSummaryPage = 1000
}

/// Findings per manifest (scanning's derived data, like `ScanStore`: no event; each put replaces
/// what was stored for the manifest).
public protocol FindingStore: Sendable {
    /// Replaces the manifest's findings (duplicates kept once, sorted) in one transaction.
    func putFindings(_ findings: StoredFindings) async throws
    /// As `putFindings` for each set, all in one transaction (the continuous re-match writes a
    /// page of manifests at once: one commit instead of one per manifest). A set named twice: the
    /// last one is kept.
    func putFindings(_ sets: [StoredFindings]) async throws
    /// As `putFindings(_ sets:)`, and in the same transaction moves the manifests of `unchanged`
    /// (matched again with the findings they have) to `advisoryVersion` and `matchedAt` without
    /// rewriting their findings (the re-match's commit of a chunk: a change of advisories that
    /// leaves most images' findings as they were writes one small row for each of them). A
    /// manifest of `unchanged` never matched stays never matched; one also in `sets` gets its set.
    func putFindings(_ sets: [StoredFindings], unchanged: [Digest], advisoryVersion: Int64, matchedAt: Date) async throws
    /// The manifest's findings, or nil when it was never matched.
    func findings(manifest: Digest) async throws -> StoredFindings?
    /// The findings of several manifests in one read (the re-match's page), each as
    /// `findings(manifest:)` gives it; a manifest never matched is absent, one named twice is
    /// answered once; in manifest digest order.
    func findings(manifests: [Digest]) async throws -> [StoredFindings]
    /// Appends a `scan` event (new High or Critical findings on `digest` in `repository`; `tag`
    /// one of its tags, for webhook scopes; `detail` the JSON of `ScanEventDetail`), with
    /// `EventOrigin.current` as its origin.
    func appendScanEvent(repository: String, digest: Digest, tag: String?, detail: String) async throws
    /// Matched manifests as they are held by repositories (`GET /api/v1/scans`): one row per
    /// (repository, manifest) whose manifest has findings stored, in (repository, manifest digest)
    /// order after `after`, at most `limit` (capped at `FindingStoreLimits.maxSummaryPage`), only
    /// of repositories whose name starts with `namePrefix` when given; each with the manifest's
    /// tags there (sorted), its quarantine state, and its findings counted by severity.
    func scannedImages(namePrefix: String?, after: ScannedImageCursor?, limit: Int) async throws -> [ScannedImageSummary]
}

/// Where a page of `scannedImages` continues: after this (repository, manifest).
public struct ScannedImageCursor: Sendable, Equatable {
    public var repository: String
    public var manifest: Digest
    public init(repository: String, manifest: Digest) {
        self.repository = repository
        self.manifest = manifest
    }
}

/// A matched manifest in one repository, its findings counted by severity.
public struct ScannedImageSummary: Sendable, Equatable {
    public var repository: String
    public var manifest: Digest
    public var tags: [String]
    public var quarantineState: QuarantineState?
    public var advisoryVersion: Int64
    public var matchedAt: Date
    /// Findings per severity name; a severity without findings is absent.
    public var counts: [String: Int]
    public var total: Int { counts.values.reduce(0, +) }

    public init(repository: String, manifest: Digest, tags: [String], quarantineState: QuarantineState?, advisoryVersion: Int64,
                matchedAt: Date, counts: [String: Int]) {
        self.repository = repository
        self.manifest = manifest
        self.tags = tags
        self.quarantineState = quarantineState
        self.advisoryVersion = advisoryVersion
        self.matchedAt = matchedAt
        self.counts = counts
    }

    public var cursor: ScannedImageCursor { ScannedImageCursor(repository: repository, manifest: manifest) }
}

/// What a `scan` event carries (its detail, JSON): the image's findings counted by severity, the
/// ids of the new High and Critical ones, and its tags.
public struct ScanEventDetail: Codable, Sendable, Equatable {
    public var counts: [String: Int]
    public var new: [String]
    public var tags: [String]
    public init(counts: [String: Int], new: [String], tags: [String]) {
        self.counts = counts
        self.new = new
        self.tags = tags
    }
}

extension StoredFinding {
    /// The order findings are stored and read in.
    public static func ordered(_ a: StoredFinding, _ b: StoredFinding) -> Bool {
        (a.advisoryID, a.ecosystem, a.package, a.installedVersion) < (b.advisoryID, b.ecosystem, b.package, b.installedVersion)
    }

    /// The findings a backend writes: fields bounded, one per (advisory, ecosystem, package,
    /// installed version), sorted; at most `maxFindingsPerManifest`.
    public static func normalised(_ findings: [StoredFinding]) -> [StoredFinding] {
        func cut(_ s: String) -> String {
            s.utf8.count <= FindingStoreLimits.maxFieldLength ? s : String(decoding: Array(s.utf8.prefix(FindingStoreLimits.maxFieldLength)), as: UTF8.self)
        }
        var seen = Set<[String]>()
        var out: [StoredFinding] = []
        for var f in findings {
            f.advisoryID = cut(f.advisoryID); f.ecosystem = cut(f.ecosystem); f.package = cut(f.package)
            f.installedVersion = cut(f.installedVersion); f.severity = cut(f.severity); f.fixState = cut(f.fixState)
            f.sourcePackage = f.sourcePackage.flatMap { $0.isEmpty ? nil : cut($0) }
            f.fixedVersion = f.fixedVersion.flatMap { $0.isEmpty ? nil : cut($0) }
            f.aliases = f.aliases.prefix(100).map(cut)
            if seen.insert([f.advisoryID, f.ecosystem, f.package, f.installedVersion]).inserted { out.append(f) }
        }
        return Array(out.sorted(by: ordered).prefix(FindingStoreLimits.maxFindingsPerManifest))
    }

    /// Aliases as stored in one text column (JSON array).
    public static func encodeAliases(_ aliases: [String]) -> String {
        (try? String(decoding: JSONEncoder().encode(aliases), as: UTF8.self)) ?? "[]"
    }

    public static func decodeAliases(_ text: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }
}
