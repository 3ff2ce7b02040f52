import Foundation
import PostgresNIO
import RegistryStore

// MARK: leases

/// Times are the database server's (`clock_timestamp()`), so nodes whose clocks disagree still
/// agree on whether a lease is live.
extension PostgresMetadataStore {
    private static let dbNow = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

    private static func lease(_ row: Row) throws -> Lease {
        Lease(name: try row.decode("name"), holder: try row.decode("holder"), token: try row.decode("token"),
              expiresAt: try row.date("expires_at"))
    }

    public func acquireLease(name: String, holder: String, ttl: TimeInterval) async throws -> Lease? {
        // One statement: of two nodes acquiring at once, the second waits on the first's row and
        // then finds the lease live and another's (no row comes back).
        try await single { tx in
            try await tx.one("""
                INSERT INTO leases AS l (name, holder, token, expires_at)
                VALUES (\(name), \(holder), 1, \(unescaped: Self.dbNow) + \(max(0, ttl)))
                ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, token = l.token + 1, expires_at = EXCLUDED.expires_at
                WHERE l.holder = EXCLUDED.holder OR l.expires_at <= \(unescaped: Self.dbNow)
                RETURNING name, holder, token, expires_at
                """).map(Self.lease)
        }
    }

    public func renewLease(name: String, holder: String, token: Int64, ttl: TimeInterval) async throws -> Bool {
        try await single { tx in
            try await tx.count("""
                UPDATE leases SET expires_at = \(unescaped: Self.dbNow) + \(max(0, ttl))
                WHERE name = \(name) AND holder = \(holder) AND token = \(token) AND expires_at > \(unescaped: Self.dbNow) RETURNING 1
                """) == 1
        }
    }

    public func releaseLease(name: String, holder: String, token: Int64) async throws {
        try await single { tx in
            try await tx.exec("UPDATE leases SET expires_at = 0 WHERE name = \(name) AND holder = \(holder) AND token = \(token)")
        }
    }

    public func leases() async throws -> [Lease] {
        try await single { tx in
            try await tx.rows("SELECT name, holder, token, expires_at FROM leases ORDER BY name").map(Self.lease)
        }
    }

    // A fenced write checks the lease in the statement itself: the lease row is share-locked while
    // the statement runs (an acquisition committed meanwhile is re-read, its new token failing the
    // check), and no transaction is left open holding it when a node is cut off between
    // statements (its successor's acquisition would wait for the server to drop the connection).

    public func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64, fence: LeaseFence) async throws -> Bool {
        try await single { tx in
            try await tx.count("""
                UPDATE event_consumers SET cursor = \(cursor), attempts = 0, next_attempt_at = NULL, last_error = NULL, updated_at = \(Self.now())
                WHERE name = \(name) AND cursor = \(expected)
                  AND EXISTS (SELECT 1 FROM leases WHERE name = \(fence.name) AND token = \(fence.token) FOR SHARE)
                RETURNING 1
                """) == 1
        }
    }

    public func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date,
                                           fence: LeaseFence) async throws -> Bool {
        try await single { tx in
            try await tx.count("""
                UPDATE event_consumers SET attempts = \(attempts), next_attempt_at = \(nextAttemptAt.timeIntervalSince1970),
                    last_error = \(String(error.prefix(1000))), updated_at = \(Self.now())
                WHERE name = \(name)
                  AND EXISTS (SELECT 1 FROM leases WHERE name = \(fence.name) AND token = \(fence.token) FOR SHARE)
                RETURNING 1
                """) == 1
        }
    }
}
