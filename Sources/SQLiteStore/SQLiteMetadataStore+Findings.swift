import Foundation
import GRDB
import OCIModel
import RegistryStore

// MARK: findings per manifest (FindingStore)

/// Scanning's findings: one row per finding and one per matched manifest (the advisory version it
/// was matched against). No event: derived data; each put replaces the manifest's findings.
extension SQLiteMetadataStore {
    public func putFindings(_ set: StoredFindings) async throws {
        try await putFindings([set])
    }

    public func putFindings(_ sets: [StoredFindings]) async throws {
        guard !sets.isEmpty else { return }
        try await pool.write { db in
            for set in sets { try Self.writeFindings(db, set) }
        }
    }

    public func putFindings(_ sets: [StoredFindings], unchanged: [Digest], advisoryVersion: Int64, matchedAt: Date) async throws {
        guard !sets.isEmpty || !unchanged.isEmpty else { return }
        try await pool.write { db in
            // Only the set's row: a manifest never matched has none, and stays so.
            let update = try db.cachedStatement(sql: "UPDATE scan_finding_sets SET advisory_version = ?, matched_at = ? WHERE manifest = ?")
            for m in Set(unchanged.map(\.string)).sorted() {
                try update.execute(arguments: [advisoryVersion, matchedAt.timeIntervalSince1970, m])
            }
            for set in sets { try Self.writeFindings(db, set) }
        }
    }

    static func writeFindings(_ db: Database, _ set: StoredFindings) throws {
        let findings = StoredFinding.normalised(set.findings)
        let m = set.manifest.string
        // Cached statements: a re-match chunk writes many sets in one transaction, each statement
        // prepared once per connection.
        try db.cachedStatement(sql: """
            INSERT INTO scan_finding_sets(manifest, advisory_version, matched_at) VALUES (?, ?, ?)
            ON CONFLICT(manifest) DO UPDATE SET advisory_version = excluded.advisory_version, matched_at = excluded.matched_at
            """).execute(arguments: [m, set.advisoryVersion, set.matchedAt.timeIntervalSince1970])
        try db.cachedStatement(sql: "DELETE FROM scan_findings WHERE manifest = ?").execute(arguments: [m])
        guard !findings.isEmpty else { return }
        let insert = try db.cachedStatement(sql: """
            INSERT INTO scan_findings(manifest, advisory_id, ecosystem, package, installed_version, source_package,
                fixed_version, severity, score, fix_state, aliases)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for f in findings {
            try insert.execute(arguments: [m, f.advisoryID, f.ecosystem, f.package, f.installedVersion, f.sourcePackage, f.fixedVersion,
                                           f.severity, f.score, f.fixState, StoredFinding.encodeAliases(f.aliases)])
        }
    }

    public func findings(manifest: Digest) async throws -> StoredFindings? {
        try await pool.read { db in
            guard let head = try Row.fetchOne(db, sql: "SELECT advisory_version, matched_at FROM scan_finding_sets WHERE manifest = ?",
                                              arguments: [manifest.string]) else { return nil }
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM scan_findings WHERE manifest = ? ORDER BY advisory_id, ecosystem, package, installed_version
                """, arguments: [manifest.string])
            return StoredFindings(manifest: manifest, advisoryVersion: head["advisory_version"],
                                  matchedAt: Date(timeIntervalSince1970: head["matched_at"]), findings: rows.map(Self.finding))
        }
    }

    static func finding(_ row: Row) -> StoredFinding {
        StoredFinding(advisoryID: row["advisory_id"], aliases: StoredFinding.decodeAliases(row["aliases"]),
                      ecosystem: row["ecosystem"], package: row["package"], sourcePackage: row["source_package"],
                      installedVersion: row["installed_version"], fixedVersion: row["fixed_version"],
                      severity: row["severity"], score: row["score"], fixState: row["fix_state"])
    }

    public func findings(manifests: [Digest]) async throws -> [StoredFindings] {
        let asked = Dictionary(manifests.map { ($0.string, $0) }, uniquingKeysWith: { a, _ in a })
        let names = asked.keys.sorted()
        guard !names.isEmpty else { return [] }
        return try await pool.read { db in
            var out: [StoredFindings] = []
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + ScanStoreLimits.maxInventoryBatch)])
                start += ScanStoreLimits.maxInventoryBatch
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                let heads = try Row.fetchAll(db, sql: """
                    SELECT manifest, advisory_version, matched_at FROM scan_finding_sets WHERE manifest IN (\(marks)) ORDER BY manifest
                    """, arguments: StatementArguments(chunk))
                guard !heads.isEmpty else { continue }
                var byManifest: [String: [StoredFinding]] = [:]
                for row in try Row.fetchAll(db, sql: """
                    SELECT * FROM scan_findings WHERE manifest IN (\(marks))
                    ORDER BY manifest, advisory_id, ecosystem, package, installed_version
                    """, arguments: StatementArguments(chunk)) {
                    byManifest[row["manifest"], default: []].append(Self.finding(row))
                }
                for head in heads {
                    let m: String = head["manifest"]
                    guard let digest = asked[m] else { throw UnknownStoredValue(field: "findings manifest", value: String(m.prefix(100))) }
                    out.append(StoredFindings(manifest: digest, advisoryVersion: head["advisory_version"],
                                              matchedAt: Date(timeIntervalSince1970: head["matched_at"]), findings: byManifest[m] ?? []))
                }
            }
            return out
        }
    }
}

extension SQLiteMetadataStore {
    /// Drops the findings of `digest` once no copy of the manifest is left: in no repository, and
    /// not in a recycle bin (a restore brings its findings back with it). In the deleting transaction.
    static func dropFindingsIfGone(_ db: Database, _ digest: String) throws {
        guard try !(Bool.fetchOne(db, sql: "SELECT 1 FROM manifests WHERE digest = ? LIMIT 1", arguments: [digest]) ?? false),
              try !(Bool.fetchOne(db, sql: "SELECT 1 FROM deleted_manifests WHERE digest = ? LIMIT 1", arguments: [digest]) ?? false)
        else { return }
        try db.execute(sql: "DELETE FROM scan_findings WHERE manifest = ?", arguments: [digest])
        try db.execute(sql: "DELETE FROM scan_finding_sets WHERE manifest = ?", arguments: [digest])
    }
}

extension SQLiteMetadataStore {
    public func appendScanEvent(repository: String, digest: Digest, tag: String?, detail: String) async throws {
        let origin = EventOrigin.current
        try await pool.write { db in
            try Self.appendEvent(db, origin, EventAction.scan, repository, digest: digest.string, tag: tag, detail: detail)
        }
    }
}

extension SQLiteMetadataStore {
    public func scannedImages(namePrefix: String?, after: ScannedImageCursor?, limit: Int) async throws -> [ScannedImageSummary] {
        let n = max(0, min(limit, FindingStoreLimits.maxSummaryPage))
        guard n > 0 else { return [] }
        return try await pool.read { db in
            var conditions: [String] = []
            var arguments: [any DatabaseValueConvertible] = []
            if let after {
                conditions.append("(r.name, m.digest) > (?, ?)")
                arguments += [after.repository, after.manifest.string]
            }
            if let namePrefix, !namePrefix.isEmpty {
                conditions.append("substr(r.name, 1, ?) = ?")
                arguments += [namePrefix.count, namePrefix]
            }
            arguments.append(n)
            let rows = try Row.fetchAll(db, sql: """
                SELECT r.name AS repository, m.digest AS digest, m.quarantine_state AS quarantine_state,
                       s.advisory_version AS advisory_version, s.matched_at AS matched_at,
                       (SELECT group_concat(t.name, ',') FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) AS tags
                FROM repositories r
                JOIN manifests m ON m.repo_id = r.id
                JOIN scan_finding_sets s ON s.manifest = m.digest
                \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
                ORDER BY r.name, m.digest
                LIMIT ?
                """, arguments: StatementArguments(arguments))
            let digests = Array(Set(rows.map { $0["digest"] as String }))
            var counts: [String: [String: Int]] = [:]
            if !digests.isEmpty {
                let marks = Array(repeating: "?", count: digests.count).joined(separator: ",")
                for row in try Row.fetchAll(db, sql: """
                    SELECT manifest, severity, COUNT(*) AS n FROM scan_findings WHERE manifest IN (\(marks)) GROUP BY manifest, severity
                    """, arguments: StatementArguments(digests)) {
                    counts[row["manifest"], default: [:]][row["severity"]] = row["n"]
                }
            }
            return try rows.map { row in
                let d: String = row["digest"]
                let tags = ((row["tags"] as String?) ?? "").split(separator: ",").map(String.init).sorted()
                return ScannedImageSummary(repository: row["repository"], manifest: try Digest(parsing: d), tags: tags,
                                           quarantineState: (row["quarantine_state"] as String?).flatMap(QuarantineState.init(rawValue:)),
                                           advisoryVersion: row["advisory_version"], matchedAt: Date(timeIntervalSince1970: row["matched_at"]),
                                           counts: counts[d] ?? [:])
            }
        }
    }
}
