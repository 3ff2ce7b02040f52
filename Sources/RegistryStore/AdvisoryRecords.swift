import Foundation

/// The key advisories are looked up by: an ecosystem (its base name in lower case, "debian",
/// "pypi", "alpine") and a package name (as the matcher normalises it: PEP 503 for PyPI, the
/// source package for distributions).
public struct AdvisoryPackageKey: Sendable, Hashable, Comparable, Codable {
    public var ecosystem: String
    public var name: String
    public init(ecosystem: String, name: String) {
        self.ecosystem = ecosystem
        self.name = name
    }
    public static func < (a: Self, b: Self) -> Bool { (a.ecosystem, a.name) < (b.ecosystem, b.name) }
}

/// One advisory as the store keeps it: its feed (`source`) and id, a hash of its content (so an
/// unchanged record is not rewritten), the serialized advisory (the scanner's own encoding; the
/// store never reads it) and the package keys it applies to.
public struct StoredAdvisory: Sendable, Equatable {
    public var source: String
    public var id: String
    public var contentHash: String
    public var document: [UInt8]
    public var packages: [AdvisoryPackageKey]
    /// The database version that last wrote this record (set by the store; ignored on import).
    public var version: Int64

    public init(source: String, id: String, contentHash: String, document: [UInt8], packages: [AdvisoryPackageKey],
                version: Int64 = 0) {
        self.source = source
        self.id = id
        self.contentHash = contentHash
        self.document = document
        self.packages = packages
        self.version = version
    }
}

/// What one import changed. `version` is the database version after it: a new one when anything
/// changed, the current one (and `created` false) when nothing did.
public struct AdvisoryImportOutcome: Sendable, Equatable {
    public var version: Int64
    public var created: Bool
    public var added: Int
    public var changed: Int
    public var removed: Int
    public var unchanged: Int

    public init(version: Int64, created: Bool, added: Int, changed: Int, removed: Int, unchanged: Int) {
        self.version = version
        self.created = created
        self.added = added
        self.changed = changed
        self.removed = removed
        self.unchanged = unchanged
    }
}

/// A feed's state: how many records it has, the version it last changed, when it was imported or
/// checked, the validators of its last download (`ETag`, `Last-Modified`) and its last error.
public struct AdvisorySourceRecord: Sendable, Equatable {
    public var source: String
    public var format: String
    public var version: Int64
    public var records: Int
    public var importedAt: Date?
    public var checkedAt: Date?
    public var etag: String?
    public var lastModified: String?
    public var lastError: String?

    public init(source: String, format: String, version: Int64, records: Int, importedAt: Date?, checkedAt: Date?,
                etag: String?, lastModified: String?, lastError: String?) {
        self.source = source
        self.format = format
        self.version = version
        self.records = records
        self.importedAt = importedAt
        self.checkedAt = checkedAt
        self.etag = etag
        self.lastModified = lastModified
        self.lastError = lastError
    }
}

/// Validators of a downloaded feed, kept with its source for the next conditional GET.
public struct AdvisoryFeedValidators: Sendable, Equatable {
    public var etag: String?
    public var lastModified: String?
    public init(etag: String?, lastModified: String?) {
        self.etag = etag
        self.lastModified = lastModified
    }
}

public enum AdvisoryStoreLimits {
    /// Largest serialized advisory kept.
    public static let maxDocumentBytes = 1 << 20
    /// Most records one import (one feed's snapshot) may hold.
    public static let maxRecordsPerImport = 1_000_000
    /// Most package keys one advisory may name.
    public static let maxPackagesPerRecord = 10_000
    /// Longest source name, id, hash, ecosystem or package name.
    public static let maxFieldLength = 1024
    /// Longest error message kept for a source.
    public static let maxErrorLength = 2048
}

/// An import the store refuses as a whole (a limit exceeded, a record named twice).
public struct AdvisoryStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The advisory database shared by every node: versioned, atomic and incremental.
///
/// Each import is a feed's complete snapshot (`source`), written in one transaction: a record
/// whose content hash is unchanged is not rewritten, a record absent from the snapshot (removed
/// or withdrawn upstream) is deleted, and when anything changed the database gets a new version
/// (one more than the highest so far, whatever the source) that names the package keys the
/// change touched. Readers see either the database before an import or after it, never a part.
public protocol AdvisoryStore: Sendable {
    /// Replaces `source`'s records with `records` (ids unique). `validators` are stored with the
    /// source for the next conditional download (nil for a local import); the source's last error
    /// is cleared and its check time set. Throws `AdvisoryStoreError` (changing nothing) when a
    /// limit of `AdvisoryStoreLimits` is exceeded or an id repeats.
    func importAdvisories(source: String, format: String, records: [StoredAdvisory],
                          validators: AdvisoryFeedValidators?) async throws -> AdvisoryImportOutcome
    /// The current version (0 before the first change).
    func currentAdvisoryVersion() async throws -> Int64
    /// The current records naming any of `packages`, with the version they belong to, read in
    /// one snapshot; ordered by source and id, each once.
    func advisories(for packages: [AdvisoryPackageKey]) async throws -> (version: Int64, records: [StoredAdvisory])
    /// The package keys that versions after `version` added, changed or removed records of, sorted.
    func advisoryPackagesChanged(since version: Int64) async throws -> [AdvisoryPackageKey]
    /// Every source, by name.
    func advisorySources() async throws -> [AdvisorySourceRecord]
    /// Records a check of `source` that imported nothing: `error` nil for "unchanged" (its last
    /// error is cleared), else the failure (shortened to `maxErrorLength`). Creates the source
    /// (no records, version 0) when it is new.
    func recordAdvisoryCheck(source: String, format: String, error: String?) async throws
}

extension AdvisoryStore {
    /// Checks an import against the limits; the backends call it before writing.
    public static func validateImport(source: String, format: String, records: [StoredAdvisory]) throws {
        let max = AdvisoryStoreLimits.maxFieldLength
        guard !source.isEmpty, source.utf8.count <= max, !format.isEmpty, format.utf8.count <= max else {
            throw AdvisoryStoreError("the source and format must be 1 to \(max) bytes")
        }
        guard records.count <= AdvisoryStoreLimits.maxRecordsPerImport else {
            throw AdvisoryStoreError("an import holds at most \(AdvisoryStoreLimits.maxRecordsPerImport) records")
        }
        var seen = Set<String>()
        for r in records {
            guard r.source == source else { throw AdvisoryStoreError("record \(r.id.prefix(100)) belongs to another source") }
            guard !r.id.isEmpty, r.id.utf8.count <= max, !r.contentHash.isEmpty, r.contentHash.utf8.count <= max else {
                throw AdvisoryStoreError("a record's id and hash must be 1 to \(max) bytes")
            }
            guard r.document.count <= AdvisoryStoreLimits.maxDocumentBytes else {
                throw AdvisoryStoreError("record \(r.id.prefix(100)) is larger than \(AdvisoryStoreLimits.maxDocumentBytes) bytes")
            }
            guard r.packages.count <= AdvisoryStoreLimits.maxPackagesPerRecord,
                  r.packages.allSatisfy({ $0.ecosystem.utf8.count <= max && $0.name.utf8.count <= max }) else {
                throw AdvisoryStoreError("record \(r.id.prefix(100)) names too many or too long packages")
            }
            guard seen.insert(r.id).inserted else { throw AdvisoryStoreError("record \(r.id.prefix(100)) is given twice") }
        }
    }

    public static func shortenedError(_ error: String) -> String {
        error.utf8.count <= AdvisoryStoreLimits.maxErrorLength ? error : String(error.prefix(AdvisoryStoreLimits.maxErrorLength / 4)) + "…"
    }
}
