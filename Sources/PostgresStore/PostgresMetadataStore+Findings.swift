import Foundation
import OCIModel
import PostgresNIO
import RegistryStore

// MARK: findings per manifest (FindingStore)

/// Scanning's findings: derived data, no event (so no event-counter lock); each put replaces the
/// manifest's findings.
extension PostgresMetadataStore {
    public func putFindings(_ set: StoredFindings) async throws {
        try await putFindings([set])
    }

    public func putFindings(_ sets: [StoredFindings]) async throws {
        guard !sets.isEmpty else { return }
        try await write(serialized: false) { tx in
            for set in sets { try await Self.writeFindings(tx, set) }
        }
    }

    public func putFindings(_ sets: [StoredFindings], unchanged: [Digest], advisoryVersion: Int64, matchedAt: Date) async throws {
        guard !sets.isEmpty || !unchanged.isEmpty else { return }
        let names = Set(unchanged.map(\.string)).sorted()
        try await write(serialized: false) { tx in
            // Only the sets' rows: a manifest never matched has none, and stays so.
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + ScanStoreLimits.maxInventoryBatch)])
                start += ScanStoreLimits.maxInventoryBatch
                try await tx.exec("""
                    UPDATE scan_finding_sets SET advisory_version = \(advisoryVersion), matched_at = \(matchedAt.timeIntervalSince1970)
                    WHERE manifest = ANY(\(chunk)::text[])
                    """)
            }
            for set in sets { try await Self.writeFindings(tx, set) }
        }
    }

    static func writeFindings(_ tx: Tx, _ set: StoredFindings) async throws {
        let findings = StoredFinding.normalised(set.findings)
        let m = set.manifest.string
        try await tx.exec("""
            INSERT INTO scan_finding_sets(manifest, advisory_version, matched_at)
            VALUES (\(m), \(set.advisoryVersion), \(set.matchedAt.timeIntervalSince1970))
            ON CONFLICT (manifest) DO UPDATE SET advisory_version = EXCLUDED.advisory_version, matched_at = EXCLUDED.matched_at
            """)
        try await tx.exec("DELETE FROM scan_findings WHERE manifest = \(m)")
        // One statement per few hundred findings (arrays unnested server-side; an empty text
        // stands for a missing optional, which `normalised` never keeps as "").
        var start = 0
        while start < findings.count {
            let chunk = findings[start..<min(findings.count, start + 500)]
            let ids = chunk.map(\.advisoryID), ecosystems = chunk.map(\.ecosystem), packages = chunk.map(\.package)
            let installed = chunk.map(\.installedVersion), sources = chunk.map { $0.sourcePackage ?? "" }
            let fixed = chunk.map { $0.fixedVersion ?? "" }, severities = chunk.map(\.severity)
            let states = chunk.map(\.fixState)
            let scores = chunk.map { $0.score.map { String($0) } ?? "" }, aliases = chunk.map { StoredFinding.encodeAliases($0.aliases) }
            try await tx.exec("""
                INSERT INTO scan_findings(manifest, advisory_id, ecosystem, package, installed_version, source_package,
                    fixed_version, severity, score, fix_state, aliases)
                SELECT \(m), i, e, p, v, NULLIF(s, ''), NULLIF(f, ''), sev, NULLIF(sc, '')::float8, st, a
                FROM unnest(\(ids)::text[], \(ecosystems)::text[], \(packages)::text[], \(installed)::text[], \(sources)::text[],
                            \(fixed)::text[], \(severities)::text[], \(scores)::text[], \(states)::text[],
                            \(aliases)::text[])
                    AS k(i, e, p, v, s, f, sev, sc, st, a)
                ON CONFLICT DO NOTHING
                """)
            start += 500
        }
    }

    public func findings(manifest: Digest) async throws -> StoredFindings? {
        let m = manifest.string
        return try await read { tx in
            guard let head = try await tx.one("SELECT advisory_version, matched_at FROM scan_finding_sets WHERE manifest = \(m)") else {
                return nil
            }
            let rows = try await tx.rows("""
                SELECT advisory_id, ecosystem, package, installed_version, source_package, fixed_version, severity, score, fix_state, aliases
                FROM scan_findings WHERE manifest = \(m) ORDER BY advisory_id, ecosystem, package, installed_version
                """)
            return StoredFindings(manifest: manifest, advisoryVersion: try head.decode("advisory_version", Int64.self),
                                  matchedAt: try head.date("matched_at"), findings: try rows.map(Self.finding))
        }
    }

    static func finding(_ row: Row) throws -> StoredFinding {
        StoredFinding(advisoryID: try row.decode("advisory_id"), aliases: StoredFinding.decodeAliases(try row.decode("aliases")),
                      ecosystem: try row.decode("ecosystem"), package: try row.decode("package"),
                      sourcePackage: try row.decode("source_package", String?.self),
                      installedVersion: try row.decode("installed_version"),
                      fixedVersion: try row.decode("fixed_version", String?.self), severity: try row.decode("severity"),
                      score: try row.decode("score", Double?.self), fixState: try row.decode("fix_state"))
    }

    public func findings(manifests: [Digest]) async throws -> [StoredFindings] {
        let asked = Dictionary(manifests.map { ($0.string, $0) }, uniquingKeysWith: { a, _ in a })
        let names = asked.keys.sorted()
        guard !names.isEmpty else { return [] }
        return try await read { tx in
            var out: [StoredFindings] = []
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + ScanStoreLimits.maxInventoryBatch)])
                start += ScanStoreLimits.maxInventoryBatch
                let heads = try await tx.rows("""
                    SELECT manifest, advisory_version, matched_at FROM scan_finding_sets WHERE manifest = ANY(\(chunk)::text[])
                    ORDER BY manifest
                    """)
                guard !heads.isEmpty else { continue }
                var byManifest: [String: [StoredFinding]] = [:]
                for row in try await tx.rows("""
                    SELECT manifest, advisory_id, ecosystem, package, installed_version, source_package, fixed_version, severity, score,
                        fix_state, aliases
                    FROM scan_findings WHERE manifest = ANY(\(chunk)::text[])
                    ORDER BY manifest, advisory_id, ecosystem, package, installed_version
                    """) {
                    byManifest[try row.decode("manifest", String.self), default: []].append(try Self.finding(row))
                }
                for head in heads {
                    let m: String = try head.decode("manifest")
                    guard let digest = asked[m] else { throw UnknownStoredValue(field: "findings manifest", value: String(m.prefix(100))) }
                    out.append(StoredFindings(manifest: digest, advisoryVersion: try head.decode("advisory_version", Int64.self),
                                              matchedAt: try head.date("matched_at"), findings: byManifest[m] ?? []))
                }
            }
            return out
        }
    }
}

extension PostgresMetadataStore {
    /// Drops the findings of `digest` once no copy of the manifest is left: in no repository, and
    /// not in a recycle bin (a restore brings its findings back with it). In the deleting transaction.
    static func dropFindingsIfGone(_ tx: Tx, _ digest: String) async throws {
        try await tx.exec("""
            DELETE FROM scan_findings WHERE manifest = \(digest)
            AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = \(digest))
            AND NOT EXISTS (SELECT 1 FROM deleted_manifests WHERE digest = \(digest))
            """)
        try await tx.exec("""
            DELETE FROM scan_finding_sets WHERE manifest = \(digest)
            AND NOT EXISTS (SELECT 1 FROM manifests WHERE digest = \(digest))
            AND NOT EXISTS (SELECT 1 FROM deleted_manifests WHERE digest = \(digest))
            """)
    }
}

extension PostgresMetadataStore {
    public func appendScanEvent(repository: String, digest: Digest, tag: String?, detail: String) async throws {
        let origin = EventOrigin.current
        try await write { tx in
            try await Self.appendEvent(tx, origin, .scan, repository, digest: digest.string, tag: tag, detail: detail)
        }
    }
}

extension PostgresMetadataStore {
    public func scannedImages(namePrefix: String?, after: ScannedImageCursor?, limit: Int) async throws -> [ScannedImageSummary] {
        let n = max(0, min(limit, FindingStoreLimits.maxSummaryPage))
        guard n > 0 else { return [] }
        let afterRepository = after?.repository ?? ""
        let afterManifest = after?.manifest.string ?? ""
        let hasAfter = after != nil
        let prefix = namePrefix ?? ""
        let prefixLength = prefix.count
        return try await read { tx in
            let rows = try await tx.rows("""
                SELECT r.name AS repository, m.digest AS digest, m.quarantine_state AS quarantine_state,
                       s.advisory_version AS advisory_version, s.matched_at AS matched_at,
                       (SELECT string_agg(t.name, ',' ORDER BY t.name) FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) AS tags
                FROM repositories r
                JOIN manifests m ON m.repo_id = r.id
                JOIN scan_finding_sets s ON s.manifest = m.digest
                WHERE (NOT \(hasAfter) OR (r.name, m.digest) > (\(afterRepository), \(afterManifest)))
                  AND (\(prefixLength) = 0 OR substr(r.name, 1, \(prefixLength)::int) = \(prefix))
                ORDER BY r.name, m.digest
                LIMIT \(n)
                """)
            var summaries: [ScannedImageSummary] = []
            for row in rows {
                let d = try row.decode("digest", String.self)
                let tags = (try row.decode("tags", String?.self) ?? "").split(separator: ",").map(String.init).sorted()
                summaries.append(ScannedImageSummary(
                    repository: try row.decode("repository"), manifest: try Digest(parsing: d), tags: tags,
                    quarantineState: (try row.decode("quarantine_state", String?.self)).flatMap(QuarantineState.init(rawValue:)),
                    advisoryVersion: try row.decode("advisory_version", Int64.self), matchedAt: try row.date("matched_at"), counts: [:]))
            }
            let digests = Array(Set(summaries.map(\.manifest.string)))
            guard !digests.isEmpty else { return summaries }
            var counts: [String: [String: Int]] = [:]
            for row in try await tx.rows("""
                SELECT manifest, severity, COUNT(*)::bigint AS n FROM scan_findings WHERE manifest = ANY(\(digests)::text[])
                GROUP BY manifest, severity
                """) {
                counts[try row.decode("manifest", String.self), default: [:]][try row.decode("severity", String.self)] = Int(try row.decode("n", Int64.self))
            }
            for k in summaries.indices { summaries[k].counts = counts[summaries[k].manifest.string] ?? [:] }
            return summaries
        }
    }
}
