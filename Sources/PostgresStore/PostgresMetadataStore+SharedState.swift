import Foundation
import PostgresNIO
import RegistryStore

// MARK: failed logins

extension PostgresMetadataStore {
    public func recordLoginFailures(keys: [String], at: Date) async throws {
        guard !keys.isEmpty else { return }
        try await single { tx in
            try await tx.exec("""
                INSERT INTO login_failures(key, at) SELECT k, \(at.timeIntervalSince1970) FROM unnest(\(keys)::text[]) AS k
                """)
        }
    }

    public func loginFailures(since: Date, atLeast: Int, limit: Int) async throws -> [String: [Date]] {
        try await single { tx in
            let since = since.timeIntervalSince1970
            let rows = try await tx.rows("""
                SELECT key, at FROM login_failures
                WHERE at >= \(since) AND key IN (SELECT key FROM login_failures WHERE at >= \(since) GROUP BY key HAVING COUNT(*) >= \(max(1, atLeast)))
                ORDER BY key, at
                """)
            var result: [String: [Date]] = [:]
            for row in rows { result[try row.decode(0, String.self), default: []].append(Date(timeIntervalSince1970: try row.decode(1, Double.self))) }
            return result.mapValues { Array($0.suffix(max(0, limit))) }
        }
    }

    public func pruneLoginFailures(before: Date) async throws {
        try await single { tx in try await tx.exec("DELETE FROM login_failures WHERE at < \(before.timeIntervalSince1970)") }
    }
}

// MARK: garbage collection's pins, deletion markers and touches

/// A pin and a removal of the same digest (a touch and a removal of the same link) take one
/// transaction-scoped advisory lock, so each check-and-write is atomic against the other without
/// serializing pins of different digests. Removals also take the event counter's lock, as every
/// write that decides from references does. Pin and marker times are the database server's.
extension PostgresMetadataStore {
    private static let guardNow = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
    /// First keys of the advisory locks (the second is the hash of the digest or link).
    private static let digestLockKey: Int32 = 0x6763_6462   // "gcdb"
    private static let linkLockKey: Int32 = 0x6763_6c6b     // "gclk"

    private static func lockDigest(_ tx: Tx, _ digest: String) async throws {
        try await tx.exec("SELECT pg_advisory_xact_lock(\(digestLockKey), hashtext(\(digest)))")
    }

    private static func lockLink(_ tx: Tx, _ repository: String, _ digest: String) async throws {
        try await tx.exec("SELECT pg_advisory_xact_lock(\(linkLockKey), hashtext(\(repository + "@" + digest)))")
    }

    private static func pinned(_ tx: Tx, _ digest: String) async throws -> Bool {
        try await tx.one("SELECT 1 FROM blob_pins WHERE digest = \(digest) AND expires_at > \(unescaped: guardNow)") != nil
    }

    /// Whether another collection's deletion marker of `digest` stands: that one deletes the
    /// bytes, and clears only its own marker, so no other run may take the marker over.
    private static func markedByAnother(_ tx: Tx, _ digest: String, deleter: String) async throws -> Bool {
        try await tx.one("""
            SELECT 1 FROM blob_deletions WHERE digest = \(digest) AND deleter <> \(deleter) AND expires_at > \(unescaped: guardNow)
            """) != nil
    }

    private static func mark(_ tx: Tx, _ digest: String, deleter: String, ttl: TimeInterval) async throws {
        try await tx.exec("""
            INSERT INTO blob_deletions(digest, deleter, expires_at) VALUES (\(digest), \(deleter), \(unescaped: guardNow) + \(max(0, ttl)))
            ON CONFLICT (digest) DO UPDATE SET deleter = EXCLUDED.deleter, expires_at = EXCLUDED.expires_at
            """)
    }

    public func pinBlob(_ digest: String, holder: String, ttl: TimeInterval) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await Self.lockDigest(tx, digest)
            if try await tx.one("SELECT 1 FROM blob_deletions WHERE digest = \(digest) AND expires_at > \(unescaped: Self.guardNow)") != nil {
                return false
            }
            try await tx.exec("""
                INSERT INTO blob_pins(digest, holder, expires_at) VALUES (\(digest), \(holder), \(unescaped: Self.guardNow) + \(max(0, ttl)))
                ON CONFLICT (digest, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at
                """)
            return true
        }
    }

    public func unpinBlob(_ digest: String, holder: String) async throws {
        try await single { tx in try await tx.exec("DELETE FROM blob_pins WHERE digest = \(digest) AND holder = \(holder)") }
    }

    public func removeUnpinnedBlob(_ digest: String, before cutoff: Date, deleter: String, ttl: TimeInterval) async throws -> StoredBlob? {
        try await write { tx -> StoredBlob? in
            try await Self.lockDigest(tx, digest)
            guard try await !Self.pinned(tx, digest), try await !Self.markedByAnother(tx, digest, deleter: deleter) else { return nil }
            guard let removed = try await Self.removeUnreferencedBlob(tx, digest, before: cutoff) else { return nil }
            if !removed.inline { try await Self.mark(tx, digest, deleter: deleter, ttl: ttl) }
            return removed
        }
    }

    public func markOrphanDeletion(_ digest: String, deleter: String, ttl: TimeInterval) async throws -> Bool {
        try await write { tx in
            try await Self.lockDigest(tx, digest)
            guard try await !Self.pinned(tx, digest), try await !Self.markedByAnother(tx, digest, deleter: deleter),
                  try await tx.one("SELECT 1 FROM blobs WHERE digest = \(digest)") == nil else { return false }
            try await Self.mark(tx, digest, deleter: deleter, ttl: ttl)
            return true
        }
    }

    public func clearBlobDeletion(_ digest: String, deleter: String) async throws {
        try await single { tx in try await tx.exec("DELETE FROM blob_deletions WHERE digest = \(digest) AND deleter = \(deleter)") }
    }

    public func touchLink(repository: String, digest: String, at: Date) async throws {
        try await write(serialized: false) { tx in
            try await Self.lockLink(tx, repository, digest)
            try await tx.exec("""
                INSERT INTO link_touches AS t (repository, digest, touched_at) VALUES (\(repository), \(digest), \(at.timeIntervalSince1970))
                ON CONFLICT (repository, digest) DO UPDATE SET touched_at = GREATEST(t.touched_at, EXCLUDED.touched_at)
                """)
        }
    }

    public func removeUntouchedLink(repository: String, digest: String, before cutoff: Date, touchedSince: Date) async throws -> Bool {
        let origin = EventOrigin.current
        return try await write { tx in
            try await Self.lockLink(tx, repository, digest)
            if try await tx.one("""
                SELECT 1 FROM link_touches WHERE repository = \(repository) AND digest = \(digest)
                  AND touched_at >= \(touchedSince.timeIntervalSince1970)
                """) != nil {
                return false
            }
            return try await Self.removeUnreferencedLink(tx, origin, repository: repository, digest: digest, before: cutoff)
        }
    }

    public func pruneCollectionGuards(touchedBefore: Date) async throws {
        try await write(serialized: false) { tx in
            try await tx.exec("DELETE FROM link_touches WHERE touched_at < \(touchedBefore.timeIntervalSince1970)")
            try await tx.exec("DELETE FROM blob_pins WHERE expires_at <= \(unescaped: Self.guardNow)")
            try await tx.exec("DELETE FROM blob_deletions WHERE expires_at <= \(unescaped: Self.guardNow)")
        }
    }
}
