import Foundation
import PostgresNIO
import RegistryStore

// MARK: replicas

/// Each change is one statement on the replica's row (no event), so none takes the event-counter lock
/// (a fenced progress write checks its lease in the same statement).
extension PostgresMetadataStore {
    private static let replicaColumns = "location, endpoint, sealed_credential, region_endpoint_enabled, created_at, data_endpoint"

    private static func replica(_ row: Row) throws -> ReplicaRecord {
        ReplicaRecord(location: try row.decode("location"), endpoint: try row.decode("endpoint"),
                      sealedCredential: try row.decode("sealed_credential", Data?.self),
                      regionEndpointEnabled: try row.decode("region_endpoint_enabled"), createdAt: try row.date("created_at"),
                      dataEndpoint: try row.decode("data_endpoint", String?.self))
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
                INSERT INTO replicas(location, endpoint, sealed_credential, region_endpoint_enabled, created_at, data_endpoint)
                VALUES (\(r.location), \(r.endpoint), \(r.sealedCredential), \(r.regionEndpointEnabled), \(r.createdAt.timeIntervalSince1970),
                        \(r.dataEndpoint))
                ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
        }
    }

    public func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?,
                              dataEndpoint: String??) async throws -> Bool {
        try await write(serialized: false) { tx in
            // COALESCE keeps a field not given; the credential has its own flag (nil is a value for it).
            let setCredential = sealedCredential != nil
            let setDataEndpoint = dataEndpoint != nil
            return try await tx.count("""
                UPDATE replicas SET endpoint = COALESCE(\(endpoint), endpoint),
                    sealed_credential = CASE WHEN \(setCredential) THEN \(sealedCredential ?? nil) ELSE sealed_credential END,
                    region_endpoint_enabled = COALESCE(\(regionEndpointEnabled), region_endpoint_enabled),
                    data_endpoint = CASE WHEN \(setDataEndpoint) THEN \(dataEndpoint ?? nil) ELSE data_endpoint END
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
    /// One statement, the fence checked in it: a node cut off mid-write leaves no transaction open
    /// holding the lease row (its successor's acquisition would wait for it).
    public func recordReplicaProgress(location: String, _ p: ReplicaProgress, fence: LeaseFence?) async throws -> Bool {
        try await single { tx in
            try await tx.count("""
                UPDATE replicas SET peer_sequence = \(p.peerSequence), peer_sequence_at = \(p.peerSequenceAt?.timeIntervalSince1970),
                    oldest_pending_at = \(p.oldestPendingAt?.timeIntervalSince1970), bytes_pending = \(p.bytesPending),
                    last_error = \(p.lastError), last_error_at = \(p.lastErrorAt?.timeIntervalSince1970)
                WHERE location = \(location)
                  AND (\(fence == nil)::boolean
                       OR EXISTS (SELECT 1 FROM leases WHERE name = \(fence?.name ?? "") AND token = \(fence?.token ?? 0) FOR SHARE))
                RETURNING 1
                """) == 1
        }
    }
}

// MARK: registers and the conflict log

extension PostgresMetadataStore {
    public func registerWrites(repository: String, key: RegisterKey, before: Int64?, limit: Int) async throws -> [Event] {
        try await single { tx in
            let bound = before ?? Int64.max
            switch key {
            case .tag(let tag):
                return try await tx.rows("""
                    SELECT \(unescaped: Self.eventColumns) FROM events
                    WHERE repository = \(repository) AND tag = \(tag) AND seq < \(bound)
                      AND (action = \(EventAction.tagMove.rawValue)
                           OR (action = \(EventAction.tagDelete.rawValue) AND (detail IS NULL OR detail <> \(EventAction.cascadeDetail)))
                           OR (action = \(EventAction.registerMark.rawValue)
                               AND detail IN (\(EventAction.tagMove.rawValue), \(EventAction.tagDelete.rawValue))))
                    ORDER BY seq DESC LIMIT \(limit)
                    """).map(Self.event)
            case .lock(let tag, let digest):
                return try await tx.rows("""
                    SELECT \(unescaped: Self.eventColumns) FROM events
                    WHERE repository = \(repository) AND tag IS NOT DISTINCT FROM \(tag)::text AND digest IS NOT DISTINCT FROM \(digest)::text
                      AND seq < \(bound) AND action = \(EventAction.lock.rawValue)
                    ORDER BY seq DESC LIMIT \(limit)
                    """).map(Self.event)
            case .setting(let name):
                return try await tx.rows("""
                    SELECT \(unescaped: Self.eventColumns) FROM events
                    WHERE action = \(EventAction.setting.rawValue) AND detail = \(name) AND digest IS NOT NULL AND seq < \(bound)
                    ORDER BY seq DESC LIMIT \(limit)
                    """).map(Self.event)
            case .access(let kind, let name):
                let detail = AccessRecordChange(kind: kind, name: name, digest: nil).detail
                return try await tx.rows("""
                    SELECT \(unescaped: Self.eventColumns) FROM events
                    WHERE action = \(EventAction.access.rawValue) AND detail = \(detail) AND seq < \(bound)
                    ORDER BY seq DESC LIMIT \(limit)
                    """).map(Self.event)
            case .manifest(let digest):
                return try await tx.rows("""
                    SELECT \(unescaped: Self.eventColumns) FROM events
                    WHERE repository = \(repository) AND digest = \(digest) AND seq < \(bound)
                      AND (action IN (\(EventAction.manifestPush.rawValue), \(EventAction.restore.rawValue), \(EventAction.manifestDelete.rawValue),
                                      \(EventAction.tagMove.rawValue))
                           OR (action = \(EventAction.registerMark.rawValue)
                               AND detail IN (\(EventAction.manifestPush.rawValue), \(EventAction.manifestDelete.rawValue),
                                              \(EventAction.tagMove.rawValue))))
                    ORDER BY hlc_ms DESC, hlc_logical DESC, seq DESC LIMIT \(limit)
                    """).map(Self.event)
            case .manifestDeletion(let digest):
                return try await tx.rows("""
                    SELECT \(unescaped: Self.eventColumns) FROM events
                    WHERE repository = \(repository) AND digest = \(digest) AND seq < \(bound)
                      AND (action = \(EventAction.manifestDelete.rawValue)
                           OR (action = \(EventAction.registerMark.rawValue) AND detail = \(EventAction.manifestDelete.rawValue)))
                    ORDER BY hlc_ms DESC, hlc_logical DESC, seq DESC LIMIT \(limit)
                    """).map(Self.event)
            }
        }
    }

    public func appendRegisterMark(repository: String, standingFor action: EventAction, digest: String?, tag: String?) async throws {
        let origin = EventOrigin.current
        try await write { tx in
            try await Self.appendEvent(tx, origin, .registerMark, repository, digest: digest, tag: tag, detail: action.rawValue)
        }
    }

    @discardableResult
    public func recordReplicationConflict(_ c: ReplicationConflict) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO replication_conflicts(location, kind, repository, key, loser_value, loser_region, loser_ms, loser_logical,
                    winner_value, winner_region, winner_ms, winner_logical, recorded_at)
                VALUES (\(c.location), \(c.kind), \(c.repository), \(c.key), \(c.loserValue), \(c.loserStamp.region ?? ""),
                    \(c.loserStamp.milliseconds), \(c.loserStamp.logical), \(c.winnerValue), \(c.winnerStamp.map { $0.region ?? "" }),
                    \(c.winnerStamp?.milliseconds), \(c.winnerStamp?.logical), \(c.recordedAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
        }
    }

    public func replicationConflicts(location: String?, limit: Int) async throws -> [ReplicationConflict] {
        try await single { tx in
            try await tx.rows("""
                SELECT id, location, kind, repository, key, loser_value, loser_region, loser_ms, loser_logical,
                       winner_value, winner_region, winner_ms, winner_logical, recorded_at
                FROM replication_conflicts WHERE (\(location)::text IS NULL OR location = \(location)::text)
                ORDER BY id DESC LIMIT \(limit)
                """).map { row in
                let winnerMs = try row.decode("winner_ms", Int64?.self)
                let winnerRegion = try row.decode("winner_region", String?.self)
                let winnerLogical = try row.decode("winner_logical", Int64?.self)
                return ReplicationConflict(
                    id: try row.decode("id"), location: try row.decode("location"), kind: try row.decode("kind"),
                    repository: try row.decode("repository"), key: try row.decode("key"), loserValue: try row.decode("loser_value"),
                    loserStamp: EventStamp(region: try row.decode("loser_region"), milliseconds: try row.decode("loser_ms"),
                                           logical: try row.decode("loser_logical")),
                    winnerValue: try row.decode("winner_value", String?.self),
                    winnerStamp: winnerMs.map { EventStamp(region: winnerRegion, milliseconds: $0, logical: winnerLogical ?? 0) },
                    recordedAt: try row.date("recorded_at"))
            }
        }
    }
}
