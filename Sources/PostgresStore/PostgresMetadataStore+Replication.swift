import Foundation
import PostgresNIO
import RegistryStore

// MARK: replicas

/// Each change is one statement on the replica's row (no event), so none takes the event-counter lock.
extension PostgresMetadataStore {
    private static let replicaColumns = "location, endpoint, sealed_credential, region_endpoint_enabled, created_at"

    private static func replica(_ row: Row) throws -> ReplicaRecord {
        ReplicaRecord(location: try row.decode("location"), endpoint: try row.decode("endpoint"),
                      sealedCredential: try row.decode("sealed_credential", Data?.self),
                      regionEndpointEnabled: try row.decode("region_endpoint_enabled"), createdAt: try row.date("created_at"))
    }

    public func replicas() async throws -> [ReplicaRecord] {
        try await single { tx in
            try await tx.rows("SELECT \(unescaped: Self.replicaColumns) FROM replicas ORDER BY location").map(Self.replica)
        }
    }

    public func replica(location: String) async throws -> ReplicaRecord? {
        try await single { tx in
            try await tx.one("SELECT \(unescaped: Self.replicaColumns) FROM replicas WHERE location = \(location)").map(Self.replica)
        }
    }

    public func createReplica(_ r: ReplicaRecord) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO replicas(location, endpoint, sealed_credential, region_endpoint_enabled, created_at)
                VALUES (\(r.location), \(r.endpoint), \(r.sealedCredential), \(r.regionEndpointEnabled), \(r.createdAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
        }
    }

    public func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?) async throws -> Bool {
        try await write(serialized: false) { tx in
            // COALESCE keeps a field not given; the credential has its own flag (nil is a value for it).
            let setCredential = sealedCredential != nil
            return try await tx.count("""
                UPDATE replicas SET endpoint = COALESCE(\(endpoint), endpoint),
                    sealed_credential = CASE WHEN \(setCredential) THEN \(sealedCredential ?? nil) ELSE sealed_credential END,
                    region_endpoint_enabled = COALESCE(\(regionEndpointEnabled), region_endpoint_enabled)
                WHERE location = \(location) RETURNING 1
                """) == 1
        }
    }

    public func deleteReplica(location: String) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("DELETE FROM replicas WHERE location = \(location) RETURNING 1") == 1
        }
    }

    public func replicaProgress(location: String) async throws -> ReplicaProgress? {
        try await single { tx in
            try await tx.one("""
                SELECT peer_sequence, peer_sequence_at, oldest_pending_at, bytes_pending, last_error, last_error_at
                FROM replicas WHERE location = \(location)
                """).map { row in
                ReplicaProgress(peerSequence: try row.decode("peer_sequence", Int64?.self), peerSequenceAt: try row.optionalDate("peer_sequence_at"),
                                oldestPendingAt: try row.optionalDate("oldest_pending_at"), bytesPending: try row.decode("bytes_pending"),
                                lastError: try row.decode("last_error", String?.self), lastErrorAt: try row.optionalDate("last_error_at"))
            }
        }
    }

    @discardableResult
    public func recordReplicaProgress(location: String, _ p: ReplicaProgress) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                UPDATE replicas SET peer_sequence = \(p.peerSequence), peer_sequence_at = \(p.peerSequenceAt?.timeIntervalSince1970),
                    oldest_pending_at = \(p.oldestPendingAt?.timeIntervalSince1970), bytes_pending = \(p.bytesPending),
                    last_error = \(p.lastError), last_error_at = \(p.lastErrorAt?.timeIntervalSince1970)
                WHERE location = \(location) RETURNING 1
                """) == 1
        }
    }
}
