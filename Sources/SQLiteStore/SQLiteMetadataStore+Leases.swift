import Foundation
import GRDB
import RegistryStore

// MARK: leases

/// One process uses the database file (the data directory lock), so its clock is the store's.
extension SQLiteMetadataStore {
    static func lease(_ row: Row) -> Lease {
        Lease(name: row["name"], holder: row["holder"], token: row["token"],
              expiresAt: Date(timeIntervalSince1970: row["expires_at"]))
    }

    public func acquireLease(name: String, holder: String, ttl: TimeInterval) async throws -> Lease? {
        try await pool.write { db in
            let now = Date().timeIntervalSince1970
            let current = try Row.fetchOne(db, sql: "SELECT * FROM leases WHERE name = ?", arguments: [name]).map(Self.lease)
            if let current, current.holder != holder, current.expiresAt.timeIntervalSince1970 > now { return nil }
            let lease = Lease(name: name, holder: holder, token: (current?.token ?? 0) + 1,
                              expiresAt: Date(timeIntervalSince1970: now + max(0, ttl)))
            try db.execute(sql: """
                INSERT INTO leases(name, holder, token, expires_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at
                """, arguments: [name, holder, lease.token, lease.expiresAt.timeIntervalSince1970])
            return lease
        }
    }

    public func renewLease(name: String, holder: String, token: Int64, ttl: TimeInterval) async throws -> Bool {
        try await pool.write { db in
            let now = Date().timeIntervalSince1970
            try db.execute(sql: "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ? AND expires_at > ?",
                           arguments: [now + max(0, ttl), name, holder, token, now])
            return db.changesCount == 1
        }
    }

    public func releaseLease(name: String, holder: String, token: Int64) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
                           arguments: [name, holder, token])
        }
    }

    public func leases() async throws -> [Lease] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM leases ORDER BY name").map(Self.lease) }
    }

    static func fenceHolds(_ db: Database, _ fence: LeaseFence) throws -> Bool {
        try Int64.fetchOne(db, sql: "SELECT token FROM leases WHERE name = ?", arguments: [fence.name]) == fence.token
    }

    public func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64, fence: LeaseFence) async throws -> Bool {
        try await pool.write { db in
            guard try Self.fenceHolds(db, fence) else { return false }
            try db.execute(sql: """
                UPDATE event_consumers SET cursor = ?, attempts = 0, next_attempt_at = NULL, last_error = NULL, updated_at = ?
                WHERE name = ? AND cursor = ?
                """, arguments: [cursor, Date().timeIntervalSince1970, name, expected])
            return db.changesCount == 1
        }
    }

    public func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date,
                                           fence: LeaseFence) async throws -> Bool {
        try await pool.write { db in
            guard try Self.fenceHolds(db, fence) else { return false }
            try db.execute(sql: """
                UPDATE event_consumers SET attempts = ?, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE name = ?
                """, arguments: [attempts, nextAttemptAt.timeIntervalSince1970, String(error.prefix(1000)),
                                 Date().timeIntervalSince1970, name])
            return db.changesCount == 1
        }
    }
}
