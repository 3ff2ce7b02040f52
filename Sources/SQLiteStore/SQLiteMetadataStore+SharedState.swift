import Foundation
import GRDB
import RegistryStore

// MARK: failed logins

extension SQLiteMetadataStore {
    public func recordLoginFailures(keys: [String], at: Date) async throws {
        guard !keys.isEmpty else { return }
        try await pool.write { db in
            for key in keys {
                try db.execute(sql: "INSERT INTO login_failures(key, at) VALUES (?, ?)", arguments: [key, at.timeIntervalSince1970])
            }
        }
    }

    public func loginFailures(since: Date, atLeast: Int, limit: Int) async throws -> [String: [Date]] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT key, at FROM login_failures
                WHERE at >= :since AND key IN (SELECT key FROM login_failures WHERE at >= :since GROUP BY key HAVING COUNT(*) >= :least)
                ORDER BY key, at
                """, arguments: ["since": since.timeIntervalSince1970, "least": max(1, atLeast)])
            var result: [String: [Date]] = [:]
            for row in rows { result[row[0], default: []].append(Date(timeIntervalSince1970: row[1])) }
            return result.mapValues { Array($0.suffix(max(0, limit))) }
        }
    }

    public func pruneLoginFailures(before: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM login_failures WHERE at < ?", arguments: [before.timeIntervalSince1970])
        }
    }
}

// MARK: garbage collection's pins, deletion markers and touches

/// One process uses the database file (the data directory lock), so its clock is the store's.
/// Every write is serialized by SQLite, so each check-and-write below is atomic.
extension SQLiteMetadataStore {
    public func pinBlob(_ digest: String, holder: String, ttl: TimeInterval) async throws -> Bool {
        try await pool.write { db in
            let now = Date().timeIntervalSince1970
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM blob_deletions WHERE digest = ? AND expires_at > ?",
                                 arguments: [digest, now]) ?? false {
                return false
            }
            try db.execute(sql: """
                INSERT INTO blob_pins(digest, holder, expires_at) VALUES (?, ?, ?)
                ON CONFLICT(digest, holder) DO UPDATE SET expires_at = excluded.expires_at
                """, arguments: [digest, holder, now + max(0, ttl)])
            return true
        }
    }

    public func unpinBlob(_ digest: String, holder: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM blob_pins WHERE digest = ? AND holder = ?", arguments: [digest, holder])
        }
    }

    private static func pinned(_ db: Database, _ digest: String, now: Double) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM blob_pins WHERE digest = ? AND expires_at > ?", arguments: [digest, now]) ?? false
    }

    /// Whether another collection's deletion marker of `digest` stands: that one deletes the
    /// bytes, and clears only its own marker, so no other run may take the marker over.
    private static func markedByAnother(_ db: Database, _ digest: String, deleter: String, now: Double) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT 1 FROM blob_deletions WHERE digest = ? AND deleter <> ? AND expires_at > ?",
                          arguments: [digest, deleter, now]) ?? false
    }

    private static func mark(_ db: Database, _ digest: String, deleter: String, until: Double) throws {
        try db.execute(sql: """
            INSERT INTO blob_deletions(digest, deleter, expires_at) VALUES (?, ?, ?)
            ON CONFLICT(digest) DO UPDATE SET deleter = excluded.deleter, expires_at = excluded.expires_at
            """, arguments: [digest, deleter, until])
    }

    public func removeUnpinnedBlob(_ digest: String, before cutoff: Date, deleter: String, ttl: TimeInterval) async throws -> StoredBlob? {
        try await pool.write { db -> StoredBlob? in
            let now = Date().timeIntervalSince1970
            guard try !Self.pinned(db, digest, now: now), try !Self.markedByAnother(db, digest, deleter: deleter, now: now) else { return nil }
            guard let removed = try Self.removeUnreferencedBlob(db, digest, before: cutoff) else { return nil }
            if !removed.inline { try Self.mark(db, digest, deleter: deleter, until: now + max(0, ttl)) }
            return removed
        }
    }

    public func markOrphanDeletion(_ digest: String, deleter: String, ttl: TimeInterval) async throws -> Bool {
        try await pool.write { db in
            let now = Date().timeIntervalSince1970
            guard try !Self.pinned(db, digest, now: now), try !Self.markedByAnother(db, digest, deleter: deleter, now: now),
                  try !(Bool.fetchOne(db, sql: "SELECT 1 FROM blobs WHERE digest = ?", arguments: [digest]) ?? false) else { return false }
            try Self.mark(db, digest, deleter: deleter, until: now + max(0, ttl))
            return true
        }
    }

    public func clearBlobDeletion(_ digest: String, deleter: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM blob_deletions WHERE digest = ? AND deleter = ?", arguments: [digest, deleter])
        }
    }

    public func touchLink(repository: String, digest: String, at: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO link_touches(repository, digest, touched_at) VALUES (?, ?, ?)
                ON CONFLICT(repository, digest) DO UPDATE SET touched_at = MAX(touched_at, excluded.touched_at)
                """, arguments: [repository, digest, at.timeIntervalSince1970])
        }
    }

    public func removeUntouchedLink(repository: String, digest: String, before cutoff: Date, touchedSince: Date) async throws -> Bool {
        let origin = EventOrigin.current
        return try await pool.write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM link_touches WHERE repository = ? AND digest = ? AND touched_at >= ?",
                                 arguments: [repository, digest, touchedSince.timeIntervalSince1970]) ?? false {
                return false
            }
            return try Self.removeUnreferencedLink(db, origin, repository: repository, digest: digest, before: cutoff)
        }
    }

    public func pruneCollectionGuards(touchedBefore: Date) async throws {
        try await pool.write { db in
            let now = Date().timeIntervalSince1970
            try db.execute(sql: "DELETE FROM link_touches WHERE touched_at < ?", arguments: [touchedBefore.timeIntervalSince1970])
            try db.execute(sql: "DELETE FROM blob_pins WHERE expires_at <= ?", arguments: [now])
            try db.execute(sql: "DELETE FROM blob_deletions WHERE expires_at <= ?", arguments: [now])
        }
    }
}
