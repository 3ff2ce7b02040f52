import Foundation
import GRDB
import OCIModel
import RegistryStore

// MARK: pull times

/// A batch is one write transaction; no event is appended. Rows reference their manifest or tag
/// (`ON DELETE CASCADE`), so a pull of something not stored writes nothing and a deletion drops it.
extension SQLiteMetadataStore {
    public func recordPulls(_ pulls: [PullRecord]) async throws {
        let merged = PullRecord.merged(pulls)
        guard !merged.isEmpty else { return }
        try await pool.write { db in
            var repoIDs: [String: Int64?] = [:]
            for p in merged {
                let repo: Int64?
                if let known = repoIDs[p.repository] { repo = known } else {
                    repo = try Self.repoID(db, p.repository)
                    repoIDs[p.repository] = repo
                }
                guard let repo else { continue }
                let at = p.at.timeIntervalSince1970
                try db.execute(sql: """
                    INSERT INTO manifest_pulls(repo_id, digest, pulled_at)
                    SELECT repo_id, digest, ? FROM manifests WHERE repo_id = ? AND digest = ?
                    ON CONFLICT(repo_id, digest) DO UPDATE SET pulled_at = MAX(pulled_at, excluded.pulled_at)
                    """, arguments: [at, repo, p.digest.string])
                if let tag = p.tag {
                    try db.execute(sql: """
                        INSERT INTO tag_pulls(repo_id, name, pulled_at)
                        SELECT repo_id, name, ? FROM tags WHERE repo_id = ? AND name = ?
                        ON CONFLICT(repo_id, name) DO UPDATE SET pulled_at = MAX(pulled_at, excluded.pulled_at)
                        """, arguments: [at, repo, tag])
                }
            }
        }
    }

    public func pullTimes(repository: String) async throws -> PullTimes {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return PullTimes() }
            var times = PullTimes()
            for row in try Row.fetchAll(db, sql: "SELECT digest, pulled_at FROM manifest_pulls WHERE repo_id = ?", arguments: [repo]) {
                times.manifests[row["digest"]] = Date(timeIntervalSince1970: row["pulled_at"])
            }
            for row in try Row.fetchAll(db, sql: "SELECT name, pulled_at FROM tag_pulls WHERE repo_id = ?", arguments: [repo]) {
                times.tags[row["name"]] = Date(timeIntervalSince1970: row["pulled_at"])
            }
            return times
        }
    }

    public func manifestsUsed(since: Date, among digests: [Digest]) async throws -> Set<Digest> {
        let wanted = Array(Set(digests.map(\.string)))
        guard !wanted.isEmpty else { return [] }
        return try await pool.read { db in
            var used: Set<Digest> = []
            var start = 0
            while start < wanted.count {
                let chunk = Array(wanted[start..<min(wanted.count, start + 400)])
                start += 400
                let marks = chunk.map { _ in "?" }.joined(separator: ",")
                let at = since.timeIntervalSince1970
                var values: [(any DatabaseValueConvertible)?] = [at]
                for d in chunk { values.append(d) }
                values.append(at)
                for d in chunk { values.append(d) }
                let arguments = StatementArguments(values)
                for digest in try String.fetchAll(db, sql: """
                    SELECT digest FROM manifest_pulls WHERE pulled_at >= ? AND digest IN (\(marks))
                    UNION SELECT digest FROM manifests WHERE created_at >= ? AND digest IN (\(marks))
                    """, arguments: arguments) {
                    if let d = try? Digest(parsing: digest) { used.insert(d) }
                }
            }
            return used
        }
    }
}
