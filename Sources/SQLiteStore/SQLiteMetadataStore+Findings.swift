import Foundation
import GRDB
import OCIModel
import RegistryStore

// MARK: findings per manifest (FindingStore)

/// Scanning's findings: one row per finding and one per matched manifest (the advisory version it
/// was matched against). No event: derived data; each put replaces the manifest's findings.
extension SQLiteMetadataStore {
    public func putFindings(_ set: StoredFindings) async throws {
        let findings = StoredFinding.normalised(set.findings)
        let m = set.manifest.string
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO scan_finding_sets(manifest, advisory_version, matched_at) VALUES (?, ?, ?)
                ON CONFLICT(manifest) DO UPDATE SET advisory_version = excluded.advisory_version, matched_at = excluded.matched_at
                """, arguments: [m, set.advisoryVersion, set.matchedAt.timeIntervalSince1970])
            try db.execute(sql: "DELETE FROM scan_findings WHERE manifest = ?", arguments: [m])
            for f in findings {
                try db.execute(sql: """
                    INSERT INTO scan_findings(manifest, advisory_id, ecosystem, package, installed_version, source_package,
                        fixed_version, severity, score, fix_state, aliases)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [m, f.advisoryID, f.ecosystem, f.package, f.installedVersion, f.sourcePackage, f.fixedVersion,
                                     f.severity, f.score, f.fixState, StoredFinding.encodeAliases(f.aliases)])
            }
        }
    }

    public func findings(manifest: Digest) async throws -> StoredFindings? {
        try await pool.read { db in
            guard let head = try Row.fetchOne(db, sql: "SELECT advisory_version, matched_at FROM scan_finding_sets WHERE manifest = ?",
                                              arguments: [manifest.string]) else { return nil }
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM scan_findings WHERE manifest = ? ORDER BY advisory_id, ecosystem, package, installed_version
                """, arguments: [manifest.string])
            let findings = rows.map { row in
                StoredFinding(advisoryID: row["advisory_id"], aliases: StoredFinding.decodeAliases(row["aliases"]),
                              ecosystem: row["ecosystem"], package: row["package"], sourcePackage: row["source_package"],
                              installedVersion: row["installed_version"], fixedVersion: row["fixed_version"],
                              severity: row["severity"], score: row["score"], fixState: row["fix_state"])
            }
            return StoredFindings(manifest: manifest, advisoryVersion: head["advisory_version"],
                                  matchedAt: Date(timeIntervalSince1970: head["matched_at"]), findings: findings)
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
