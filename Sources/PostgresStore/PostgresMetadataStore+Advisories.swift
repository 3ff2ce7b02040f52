import Foundation
import PostgresNIO
import RegistryStore

// MARK: advisory database

/// An import is one transaction that first takes `advisory_versions` in EXCLUSIVE mode (imports run
/// one after another, each numbering the next version; readers are not blocked); it appends no
/// event, so it does not take the event-counter lock. A lookup reads in one REPEATABLE READ
/// snapshot, so it sees the database before or after an import, whole. Rows are written in
/// multi-row statements of `batch` rows, not one round trip each.
extension PostgresMetadataStore {
    private static let dbNow = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
    private static let batch = 400

    /// `INSERT INTO table(columns) VALUES (…), (…)` for `rows`, `batch` rows per statement.
    private static func insertRows(_ tx: Tx, _ table: String, _ columns: [String], _ rows: [[any PostgresThrowingDynamicTypeEncodable]]) async throws {
        var start = 0
        while start < rows.count {
            let chunk = rows[start..<min(rows.count, start + batch)]
            var binds = PostgresBindings(capacity: chunk.count * columns.count)
            var tuples: [String] = []
            var n = 0
            for row in chunk {
                var placeholders: [String] = []
                for value in row {
                    n += 1
                    try binds.append(value)
                    placeholders.append("$\(n)")
                }
                tuples.append("(" + placeholders.joined(separator: ", ") + ")")
            }
            try await tx.exec(PostgresQuery(unsafeSQL: "INSERT INTO \(table)(\(columns.joined(separator: ", "))) VALUES "
                                            + tuples.joined(separator: ", "), binds: binds))
            start += batch
        }
    }

    private static func packageKeys(_ tx: Tx, source: String, ids: [String]) async throws -> [AdvisoryPackageKey] {
        var keys: [AdvisoryPackageKey] = []
        var start = 0
        while start < ids.count {
            let chunk = Array(ids[start..<min(ids.count, start + 5000)])
            keys += try await tx.rows("""
                SELECT ecosystem, name FROM advisory_packages WHERE source = \(source) AND id = ANY(\(chunk))
                """).map { AdvisoryPackageKey(ecosystem: try $0.decode(0, String.self), name: try $0.decode(1, String.self)) }
            try await tx.exec("DELETE FROM advisory_packages WHERE source = \(source) AND id = ANY(\(chunk))")
            start += 5000
        }
        return keys
    }

    public func importAdvisories(source: String, format: String, records: [StoredAdvisory],
                                 validators: AdvisoryFeedValidators?) async throws -> AdvisoryImportOutcome {
        try Self.validateImport(source: source, format: format, records: records)
        return try await write(serialized: false) { tx in
            try await tx.exec("LOCK TABLE advisory_versions IN EXCLUSIVE MODE")
            var existing: [String: String] = [:]
            for row in try await tx.rows("SELECT id, hash FROM advisories WHERE source = \(source)") {
                existing[try row.decode(0, String.self)] = try row.decode(1, String.self)
            }
            let current = try await tx.value("SELECT COALESCE(MAX(version), 0)::bigint FROM advisory_versions", Int64.self) ?? 0
            let next = current + 1
            var touched = Set<AdvisoryPackageKey>()
            var added: [StoredAdvisory] = [], changed: [StoredAdvisory] = []
            var unchanged = 0
            var incoming = Set<String>()
            for r in records {
                incoming.insert(r.id)
                if let hash = existing[r.id] {
                    if hash == r.contentHash { unchanged += 1 } else { changed.append(r) }
                } else {
                    added.append(r)
                }
            }
            let removed = existing.keys.filter { !incoming.contains($0) }.sorted()
            // Old package keys of changed and removed records count as touched, then go.
            touched.formUnion(try await Self.packageKeys(tx, source: source, ids: changed.map(\.id) + removed))
            var start = 0
            while start < removed.count {
                let chunk = Array(removed[start..<min(removed.count, start + 5000)])
                try await tx.exec("DELETE FROM advisories WHERE source = \(source) AND id = ANY(\(chunk))")
                start += 5000
            }
            for r in changed {
                try await tx.exec("""
                    UPDATE advisories SET hash = \(r.contentHash), document = \(Data(r.document)), version = \(next)
                    WHERE source = \(source) AND id = \(r.id)
                    """)
            }
            try await Self.insertRows(tx, "advisories", ["source", "id", "hash", "document", "version"],
                                      added.map { [source, $0.id, $0.contentHash, Data($0.document), next] })
            var packageRows: [[any PostgresThrowingDynamicTypeEncodable]] = []
            for r in added + changed {
                for key in Set(r.packages).sorted() {
                    packageRows.append([key.ecosystem, key.name, source, r.id])
                    touched.insert(key)
                }
            }
            try await Self.insertRows(tx, "advisory_packages", ["ecosystem", "name", "source", "id"], packageRows)
            let created = !added.isEmpty || !changed.isEmpty || !removed.isEmpty
            if created {
                try await tx.exec("""
                    INSERT INTO advisory_versions(version, source, created_at, added, changed, removed)
                    VALUES (\(next), \(source), \(unescaped: Self.dbNow), \(Int64(added.count)), \(Int64(changed.count)), \(Int64(removed.count)))
                    """)
                try await Self.insertRows(tx, "advisory_changes", ["version", "ecosystem", "name"],
                                          touched.sorted().map { [next, $0.ecosystem, $0.name] })
            }
            let etag = validators?.etag, lastModified = validators?.lastModified
            try await tx.exec("""
                INSERT INTO advisory_sources(source, format, version, imported_at, checked_at, etag, last_modified, last_error)
                VALUES (\(source), \(format), \(created ? next : 0), \(unescaped: Self.dbNow), \(unescaped: Self.dbNow), \(etag), \(lastModified), NULL)
                ON CONFLICT (source) DO UPDATE SET format = excluded.format,
                    version = CASE WHEN \(created) THEN excluded.version ELSE advisory_sources.version END,
                    imported_at = excluded.imported_at, checked_at = excluded.checked_at,
                    etag = excluded.etag, last_modified = excluded.last_modified, last_error = NULL
                """)
            return AdvisoryImportOutcome(version: created ? next : current, created: created, added: added.count,
                                         changed: changed.count, removed: removed.count, unchanged: unchanged)
        }
    }

    public func currentAdvisoryVersion() async throws -> Int64 {
        try await single { tx in
            try await tx.value("SELECT COALESCE(MAX(version), 0)::bigint FROM advisory_versions", Int64.self) ?? 0
        }
    }

    public func advisories(for packages: [AdvisoryPackageKey]) async throws -> (version: Int64, records: [StoredAdvisory]) {
        let keys = Set(packages).sorted()
        let ecosystems = keys.map(\.ecosystem), names = keys.map(\.name)
        return try await read { tx in
            let version = try await tx.value("SELECT COALESCE(MAX(version), 0)::bigint FROM advisory_versions", Int64.self) ?? 0
            let matching = """
                SELECT DISTINCT p.source, p.id FROM advisory_packages p
                JOIN UNNEST($1::text[], $2::text[]) AS k(ecosystem, name) ON p.ecosystem = k.ecosystem AND p.name = k.name
                """
            var binds = PostgresBindings()
            binds.append(ecosystems)
            binds.append(names)
            var packagesOf: [String: [AdvisoryPackageKey]] = [:]
            for row in try await tx.rows(PostgresQuery(unsafeSQL: """
                SELECT q.source, q.id, q.ecosystem, q.name FROM advisory_packages q WHERE (q.source, q.id) IN (\(matching))
                ORDER BY q.ecosystem, q.name
                """, binds: binds)) {
                let source = try row.decode(0, String.self), id = try row.decode(1, String.self)
                packagesOf[source + "\u{0}" + id, default: []]
                    .append(AdvisoryPackageKey(ecosystem: try row.decode(2, String.self), name: try row.decode(3, String.self)))
            }
            let records = try await tx.rows(PostgresQuery(unsafeSQL: """
                SELECT a.source, a.id, a.hash, a.document, a.version FROM advisories a WHERE (a.source, a.id) IN (\(matching))
                ORDER BY a.source, a.id
                """, binds: binds)).map { row in
                let source = try row.decode(0, String.self), id = try row.decode(1, String.self)
                return StoredAdvisory(source: source, id: id, contentHash: try row.decode(2, String.self),
                                      document: [UInt8](try row.decode(3, Data.self)),
                                      packages: packagesOf[source + "\u{0}" + id] ?? [], version: try row.decode(4, Int64.self))
            }
            return (version, records)
        }
    }

    public func advisoryPackagesChanged(since version: Int64) async throws -> [AdvisoryPackageKey] {
        try await single { tx in
            try await tx.rows("""
                SELECT DISTINCT ecosystem, name FROM advisory_changes WHERE version > \(version) ORDER BY ecosystem, name
                """).map { AdvisoryPackageKey(ecosystem: try $0.decode(0, String.self), name: try $0.decode(1, String.self)) }
        }
    }

    public func advisorySources() async throws -> [AdvisorySourceRecord] {
        try await single { tx in
            try await tx.rows("""
                SELECT s.source, s.format, s.version, (SELECT COUNT(*) FROM advisories a WHERE a.source = s.source)::bigint AS records,
                       s.imported_at, s.checked_at, s.etag, s.last_modified, s.last_error
                FROM advisory_sources s ORDER BY s.source
                """).map { row in
                AdvisorySourceRecord(source: try row.decode("source"), format: try row.decode("format"),
                                     version: try row.decode("version"), records: Int(try row.decode("records", Int64.self)),
                                     importedAt: try row.optionalDate("imported_at"), checkedAt: try row.optionalDate("checked_at"),
                                     etag: try row.decode("etag"), lastModified: try row.decode("last_modified"),
                                     lastError: try row.decode("last_error"))
            }
        }
    }

    public func recordAdvisoryCheck(source: String, format: String, error: String?) async throws {
        let max = AdvisoryStoreLimits.maxFieldLength
        guard !source.isEmpty, source.utf8.count <= max, !format.isEmpty, format.utf8.count <= max else {
            throw AdvisoryStoreError("the source and format must be 1 to \(max) bytes")
        }
        let message = error.map(Self.shortenedError)
        try await write(serialized: false) { tx in
            try await tx.exec("""
                INSERT INTO advisory_sources(source, format, version, checked_at, last_error)
                VALUES (\(source), \(format), 0, \(unescaped: Self.dbNow), \(message))
                ON CONFLICT (source) DO UPDATE SET checked_at = excluded.checked_at, last_error = excluded.last_error
                """)
        }
    }
}
