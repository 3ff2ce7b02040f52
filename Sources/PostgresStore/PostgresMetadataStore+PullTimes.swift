import Foundation
import OCIModel
import PostgresNIO
import RegistryStore

// MARK: pull times

/// A batch is one transaction of a few statements (arrays unnested server-side); no event is
/// appended, so it does not take the event-counter lock. Rows reference their manifest or tag
/// (`ON DELETE CASCADE`): a pull of something not stored writes nothing, a deletion drops it.
/// The tags' rows are written first, then the manifests', the order a deletion locks them in
/// (tags, then their manifest), so the two do not wait for each other in a cycle. As a backstop a
/// batch waits at most `pullBatchLockTimeoutMilliseconds` for a row lock (`lock_timeout`) and
/// gives way, the recorder keeping its pulls for the next flush, rather than queue behind a
/// deletion (a long purge) and make a deadlock among several rows likelier.
extension PostgresMetadataStore {
    public func recordPulls(_ pulls: [PullRecord]) async throws {
        let merged = PullRecord.merged(pulls)
        guard !merged.isEmpty else { return }
        let tagged = merged.filter { $0.tag != nil }
        try await write(serialized: false) { tx in
            try await tx.exec("SET LOCAL lock_timeout = '\(unescaped: String(Self.pullBatchLockTimeoutMilliseconds))ms'")
            var start = 0
            while start < tagged.count {
                let chunk = tagged[start..<min(tagged.count, start + 500)]
                start += 500
                let repos = chunk.map(\.repository), names = chunk.map { $0.tag ?? "" }
                let ats = chunk.map(\.at.timeIntervalSince1970)
                try await tx.exec("""
                    INSERT INTO tag_pulls(repo_id, name, pulled_at)
                    SELECT t.repo_id, t.name, MAX(p.at)
                    FROM unnest(\(repos)::text[], \(names)::text[], \(ats)::float8[]) AS p(repo, name, at)
                    JOIN repositories r ON r.name = p.repo
                    JOIN tags t ON t.repo_id = r.id AND t.name = p.name
                    GROUP BY t.repo_id, t.name
                    ON CONFLICT (repo_id, name) DO UPDATE SET pulled_at = GREATEST(tag_pulls.pulled_at, EXCLUDED.pulled_at)
                    """)
            }
            start = 0
            while start < merged.count {
                let chunk = merged[start..<min(merged.count, start + 500)]
                start += 500
                let repos = chunk.map(\.repository), digests = chunk.map(\.digest.string)
                let ats = chunk.map(\.at.timeIntervalSince1970)
                try await tx.exec("""
                    INSERT INTO manifest_pulls(repo_id, digest, pulled_at)
                    SELECT m.repo_id, m.digest, MAX(p.at)
                    FROM unnest(\(repos)::text[], \(digests)::text[], \(ats)::float8[]) AS p(repo, digest, at)
                    JOIN repositories r ON r.name = p.repo
                    JOIN manifests m ON m.repo_id = r.id AND m.digest = p.digest
                    GROUP BY m.repo_id, m.digest
                    ON CONFLICT (repo_id, digest) DO UPDATE SET pulled_at = GREATEST(manifest_pulls.pulled_at, EXCLUDED.pulled_at)
                    """)
            }
        }
    }

    /// How long a pull-times batch waits for a row lock before it gives way.
    static let pullBatchLockTimeoutMilliseconds = 200

    public func pullTimes(repository: String) async throws -> PullTimes {
        try await read { tx in
            var times = PullTimes()
            for row in try await tx.rows("""
                SELECT p.digest, p.pulled_at FROM manifest_pulls p JOIN repositories r ON r.id = p.repo_id WHERE r.name = \(repository)
                """) {
                times.manifests[try row.decode(0, String.self)] = Date(timeIntervalSince1970: try row.decode(1, Double.self))
            }
            for row in try await tx.rows("""
                SELECT p.name, p.pulled_at FROM tag_pulls p JOIN repositories r ON r.id = p.repo_id WHERE r.name = \(repository)
                """) {
                times.tags[try row.decode(0, String.self)] = Date(timeIntervalSince1970: try row.decode(1, Double.self))
            }
            return times
        }
    }

    public func manifestsUsed(since: Date, among digests: [Digest]) async throws -> Set<Digest> {
        let wanted = Array(Set(digests.map(\.string)))
        guard !wanted.isEmpty else { return [] }
        let at = since.timeIntervalSince1970
        return try await read { tx in
            var used: Set<Digest> = []
            var start = 0
            while start < wanted.count {
                let chunk = Array(wanted[start..<min(wanted.count, start + 1000)])
                start += 1000
                for row in try await tx.rows("""
                    SELECT digest FROM manifest_pulls WHERE pulled_at >= \(at) AND digest = ANY(\(chunk)::text[])
                    UNION SELECT digest FROM manifests WHERE created_at >= \(at) AND digest = ANY(\(chunk)::text[])
                    """) {
                    if let d = try? Digest(parsing: try row.decode(0, String.self)) { used.insert(d) }
                }
            }
            return used
        }
    }
}
