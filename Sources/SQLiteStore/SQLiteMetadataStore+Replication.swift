import Foundation
import GRDB
import RegistryStore

// MARK: replicas

extension SQLiteMetadataStore {
    static func replica(_ row: Row) -> ReplicaRecord {
        ReplicaRecord(location: row["location"], endpoint: row["endpoint"], sealedCredential: row["sealed_credential"],
                      regionEndpointEnabled: row["region_endpoint_enabled"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    private static func date(_ value: Double?) -> Date? { value.map(Date.init(timeIntervalSince1970:)) }

    public func replicas() async throws -> [ReplicaRecord] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM replicas ORDER BY location").map(Self.replica) }
    }

    public func replica(location: String) async throws -> ReplicaRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM replicas WHERE location = ?", arguments: [location]).map(Self.replica)
        }
    }

    public func createReplica(_ r: ReplicaRecord) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO replicas(location, endpoint, sealed_credential, region_endpoint_enabled, created_at)
                VALUES (?, ?, ?, ?, ?) ON CONFLICT(location) DO NOTHING
                """, arguments: [r.location, r.endpoint, r.sealedCredential, r.regionEndpointEnabled, r.createdAt.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?) async throws -> Bool {
        try await pool.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM replicas WHERE location = ?", arguments: [location]) != nil else { return false }
            if let endpoint { try db.execute(sql: "UPDATE replicas SET endpoint = ? WHERE location = ?", arguments: [endpoint, location]) }
            if let sealedCredential {
                try db.execute(sql: "UPDATE replicas SET sealed_credential = ? WHERE location = ?", arguments: [sealedCredential, location])
            }
            if let regionEndpointEnabled {
                try db.execute(sql: "UPDATE replicas SET region_endpoint_enabled = ? WHERE location = ?",
                               arguments: [regionEndpointEnabled, location])
            }
            return true
        }
    }

    public func deleteReplica(location: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM replicas WHERE location = ?", arguments: [location])
            return db.changesCount == 1
        }
    }

    public func replicaProgress(location: String) async throws -> ReplicaProgress? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM replicas WHERE location = ?", arguments: [location]).map { row in
                ReplicaProgress(peerSequence: row["peer_sequence"], peerSequenceAt: Self.date(row["peer_sequence_at"]),
                                oldestPendingAt: Self.date(row["oldest_pending_at"]), bytesPending: row["bytes_pending"],
                                lastError: row["last_error"], lastErrorAt: Self.date(row["last_error_at"]))
            }
        }
    }

    @discardableResult
    public func recordReplicaProgress(location: String, _ p: ReplicaProgress) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE replicas SET peer_sequence = ?, peer_sequence_at = ?, oldest_pending_at = ?, bytes_pending = ?,
                    last_error = ?, last_error_at = ? WHERE location = ?
                """, arguments: [p.peerSequence, p.peerSequenceAt?.timeIntervalSince1970, p.oldestPendingAt?.timeIntervalSince1970,
                                 p.bytesPending, p.lastError, p.lastErrorAt?.timeIntervalSince1970, location])
            return db.changesCount == 1
        }
    }
}
