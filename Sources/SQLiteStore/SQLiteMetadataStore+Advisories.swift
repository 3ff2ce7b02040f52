import Foundation
import GRDB
import RegistryStore

// MARK: advisory database

/// An import is one write transaction (SQLite's single writer serializes imports); a lookup is one
/// read transaction, a WAL snapshot, so it sees the database before or after an import, whole.
extension SQLiteMetadataStore {
    public func importAdvisories(source: String, format: String, records: [StoredAdvisory],
                                 validators: AdvisoryFeedValidators?) async throws -> AdvisoryImportOutcome {
        try Self.validateImport(source: source, format: format, records: records)
        return try await pool.write { db in
            var existing: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, hash FROM advisories WHERE source = ?", arguments: [source]) {
                existing[row["id"]] = row["hash"]
            }
            let current = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM advisory_versions") ?? 0
            let next = current + 1
            var touched = Set<AdvisoryPackageKey>()
            var added = 0, changed = 0, unchanged = 0, removed = 0

            func dropPackages(_ id: String) throws {
                for row in try Row.fetchAll(db, sql: "SELECT ecosystem, name FROM advisory_packages WHERE source = ? AND id = ?",
                                            arguments: [source, id]) {
                    touched.insert(AdvisoryPackageKey(ecosystem: row["ecosystem"], name: row["name"]))
                }
                try db.execute(sql: "DELETE FROM advisory_packages WHERE source = ? AND id = ?", arguments: [source, id])
            }

            var incoming = Set<String>()
            for r in records {
                incoming.insert(r.id)
                if let hash = existing[r.id] {
                    if hash == r.contentHash { unchanged += 1; continue }
                    try dropPackages(r.id)
                    try db.execute(sql: "UPDATE advisories SET hash = ?, document = ?, version = ? WHERE source = ? AND id = ?",
                                   arguments: [r.contentHash, Data(r.document), next, source, r.id])
                    changed += 1
                } else {
                    try db.execute(sql: "INSERT INTO advisories(source, id, hash, document, version) VALUES (?, ?, ?, ?, ?)",
                                   arguments: [source, r.id, r.contentHash, Data(r.document), next])
                    added += 1
                }
                for key in Set(r.packages) {
                    try db.execute(sql: "INSERT INTO advisory_packages(ecosystem, name, source, id) VALUES (?, ?, ?, ?)",
                                   arguments: [key.ecosystem, key.name, source, r.id])
                    touched.insert(key)
                }
            }
            for id in existing.keys where !incoming.contains(id) {
                try dropPackages(id)
                try db.execute(sql: "DELETE FROM advisories WHERE source = ? AND id = ?", arguments: [source, id])
                removed += 1
            }
            let now = Date().timeIntervalSince1970
            let created = added + changed + removed > 0
            if created {
                try db.execute(sql: """
                    INSERT INTO advisory_versions(version, source, created_at, added, changed, removed) VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [next, source, now, added, changed, removed])
                for key in touched {
                    try db.execute(sql: "INSERT INTO advisory_changes(version, ecosystem, name) VALUES (?, ?, ?)",
                                   arguments: [next, key.ecosystem, key.name])
                }
            }
            try db.execute(sql: """
                INSERT INTO advisory_sources(source, format, version, imported_at, checked_at, etag, last_modified, last_error)
                VALUES (?, ?, ?, ?, ?, ?, ?, NULL)
                ON CONFLICT(source) DO UPDATE SET format = excluded.format,
                    version = CASE WHEN ? THEN excluded.version ELSE advisory_sources.version END,
                    imported_at = excluded.imported_at, checked_at = excluded.checked_at,
                    etag = excluded.etag, last_modified = excluded.last_modified, last_error = NULL
                """, arguments: [source, format, created ? next : 0, now, now, validators?.etag, validators?.lastModified, created])
            return AdvisoryImportOutcome(version: created ? next : current, created: created, added: added, changed: changed,
                                         removed: removed, unchanged: unchanged)
        }
    }

    public func currentAdvisoryVersion() async throws -> Int64 {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM advisory_versions") ?? 0 }
    }

    public func advisories(for packages: [AdvisoryPackageKey]) async throws -> (version: Int64, records: [StoredAdvisory]) {
        try await pool.read { db in
            let version = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM advisory_versions") ?? 0
            struct RecordKey: Hashable, Comparable {
                let source: String, id: String
                static func < (a: Self, b: Self) -> Bool { (a.source, a.id) < (b.source, b.id) }
            }
            var keys = Set<RecordKey>()
            for key in Set(packages) {
                for row in try Row.fetchAll(db, sql: "SELECT source, id FROM advisory_packages WHERE ecosystem = ? AND name = ?",
                                            arguments: [key.ecosystem, key.name]) {
                    keys.insert(RecordKey(source: row["source"], id: row["id"]))
                }
            }
            var records: [StoredAdvisory] = []
            for key in keys.sorted() {
                guard let row = try Row.fetchOne(db, sql: "SELECT hash, document, version FROM advisories WHERE source = ? AND id = ?",
                                                 arguments: [key.source, key.id]) else { continue }
                let names = try Row.fetchAll(db, sql: """
                    SELECT ecosystem, name FROM advisory_packages WHERE source = ? AND id = ? ORDER BY ecosystem, name
                    """, arguments: [key.source, key.id]).map { AdvisoryPackageKey(ecosystem: $0["ecosystem"], name: $0["name"]) }
                records.append(StoredAdvisory(source: key.source, id: key.id, contentHash: row["hash"],
                                              document: [UInt8](row["document"] as Data), packages: names, version: row["version"]))
            }
            return (version, records)
        }
    }

    public func advisoryPackagesChanged(since version: Int64) async throws -> [AdvisoryPackageKey] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT DISTINCT ecosystem, name FROM advisory_changes WHERE version > ? ORDER BY ecosystem, name
                """, arguments: [version]).map { AdvisoryPackageKey(ecosystem: $0["ecosystem"], name: $0["name"]) }
        }
    }

    public func advisorySources() async throws -> [AdvisorySourceRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT s.*, (SELECT COUNT(*) FROM advisories a WHERE a.source = s.source) AS records
                FROM advisory_sources s ORDER BY s.source
                """).map { row in
                AdvisorySourceRecord(source: row["source"], format: row["format"], version: row["version"], records: row["records"],
                                     importedAt: (row["imported_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                                     checkedAt: (row["checked_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                                     etag: row["etag"], lastModified: row["last_modified"], lastError: row["last_error"])
            }
        }
    }

    public func recordAdvisoryCheck(source: String, format: String, error: String?) async throws {
        let max = AdvisoryStoreLimits.maxFieldLength
        guard !source.isEmpty, source.utf8.count <= max, !format.isEmpty, format.utf8.count <= max else {
            throw AdvisoryStoreError("the source and format must be 1 to \(max) bytes")
        }
        let message = error.map(Self.shortenedError)
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO advisory_sources(source, format, version, checked_at, last_error) VALUES (?, ?, 0, ?, ?)
                ON CONFLICT(source) DO UPDATE SET checked_at = excluded.checked_at, last_error = excluded.last_error
                """, arguments: [source, format, Date().timeIntervalSince1970, message])
        }
    }
}
