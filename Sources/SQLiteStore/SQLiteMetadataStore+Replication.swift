import Foundation
import GRDB
import RegistryStore

// MARK: replicas

extension SQLiteMetadataStore {
    static func replica(_ row: Row) -> ReplicaRecord {
        ReplicaRecord(location: row["location"], endpoint: row["endpoint"], sealedCredential: row["sealed_credential"],
                      regionEndpointEnabled: row["region_endpoint_enabled"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                      dataEndpoint: row["data_endpoint"])
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
                INSERT INTO replicas(location, endpoint, sealed_credential, region_endpoint_enabled, created_at, data_endpoint)
                VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(location) DO NOTHING
                """, arguments: [r.location, r.endpoint, r.sealedCredential, r.regionEndpointEnabled, r.createdAt.timeIntervalSince1970,
                                r.dataEndpoint])
            return db.changesCount == 1
        }
    }

    public func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?,
                              dataEndpoint: String??) async throws -> Bool {
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
            if let dataEndpoint {
                try db.execute(sql: "UPDATE replicas SET data_endpoint = ? WHERE location = ?", arguments: [dataEndpoint, location])
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
    public func recordReplicaProgress(location: String, _ p: ReplicaProgress, fence: LeaseFence?) async throws -> Bool {
        try await pool.write { db in
            if let fence, try !Self.fenceHolds(db, fence) { return false }
            try db.execute(sql: """
                UPDATE replicas SET peer_sequence = ?, peer_sequence_at = ?, oldest_pending_at = ?, bytes_pending = ?,
                    last_error = ?, last_error_at = ? WHERE location = ?
                """, arguments: [p.peerSequence, p.peerSequenceAt?.timeIntervalSince1970, p.oldestPendingAt?.timeIntervalSince1970,
                                 p.bytesPending, p.lastError, p.lastErrorAt?.timeIntervalSince1970, location])
            return db.changesCount == 1
        }
    }
}

// MARK: registers and the conflict log

extension SQLiteMetadataStore {
    public func registerWrites(repository: String, key: RegisterKey, before: Int64?, limit: Int) async throws -> [Event] {
        try await pool.read { db in
            let bound = before ?? Int64.max
            switch key {
            case .tag(let tag):
                return try Row.fetchAll(db, sql: """
                    SELECT * FROM events WHERE repository = ? AND tag = ? AND seq < ?
                      AND (action = ? OR (action = ? AND (detail IS NULL OR detail != ?)) OR (action = ? AND detail IN (?, ?)))
                    ORDER BY seq DESC LIMIT ?
                    """, arguments: [repository, tag, bound, EventAction.tagMove.rawValue, EventAction.tagDelete.rawValue,
                                     EventAction.cascadeDetail, EventAction.registerMark.rawValue, EventAction.tagMove.rawValue,
                                     EventAction.tagDelete.rawValue, limit])
                    .map(Self.event)
            case .lock(let tag, let digest):
                return try Row.fetchAll(db, sql: """
                    SELECT * FROM events WHERE repository = ? AND tag IS ? AND digest IS ? AND seq < ? AND action = ?
                    ORDER BY seq DESC LIMIT ?
                    """, arguments: [repository, tag, digest, bound, EventAction.lock.rawValue, limit]).map(Self.event)
            case .setting(let name):
                return try Row.fetchAll(db, sql: """
                    SELECT * FROM events WHERE action = ? AND detail = ? AND digest IS NOT NULL AND seq < ?
                    ORDER BY seq DESC LIMIT ?
                    """, arguments: [EventAction.setting.rawValue, name, bound, limit]).map(Self.event)
            case .access(let kind, let name):
                return try Row.fetchAll(db, sql: """
                    SELECT * FROM events WHERE action = ? AND detail = ? AND seq < ?
                    ORDER BY seq DESC LIMIT ?
                    """, arguments: [EventAction.access.rawValue, AccessRecordChange(kind: kind, name: name, digest: nil).detail,
                                     bound, limit]).map(Self.event)
            case .manifest(let digest):
                return try Row.fetchAll(db, sql: """
                    SELECT * FROM events WHERE repository = ? AND digest = ? AND seq < ?
                      AND (action IN (?, ?, ?, ?) OR (action = ? AND detail IN (?, ?, ?)))
                    ORDER BY hlc_ms DESC, hlc_logical DESC, seq DESC LIMIT ?
                    """, arguments: [repository, digest, bound, EventAction.manifestPush.rawValue, EventAction.restore.rawValue,
                                     EventAction.manifestDelete.rawValue, EventAction.tagMove.rawValue, EventAction.registerMark.rawValue,
                                     EventAction.manifestPush.rawValue, EventAction.manifestDelete.rawValue, EventAction.tagMove.rawValue,
                                     limit]).map(Self.event)
            case .manifestDeletion(let digest):
                return try Row.fetchAll(db, sql: """
                    SELECT * FROM events WHERE repository = ? AND digest = ? AND seq < ?
                      AND (action = ? OR (action = ? AND detail = ?))
                    ORDER BY hlc_ms DESC, hlc_logical DESC, seq DESC LIMIT ?
                    """, arguments: [repository, digest, bound, EventAction.manifestDelete.rawValue, EventAction.registerMark.rawValue,
                                     EventAction.manifestDelete.rawValue, limit]).map(Self.event)
            }
        }
    }

    public func appendRegisterMark(repository: String, standingFor action: EventAction, digest: String?, tag: String?) async throws {
        let origin = EventOrigin.current
        try await pool.write { db in
            try Self.appendEvent(db, origin, .registerMark, repository, digest: digest, tag: tag, detail: action.rawValue)
        }
    }

    @discardableResult
    public func recordReplicationConflict(_ c: ReplicationConflict) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO replication_conflicts(location, kind, repository, key, loser_value, loser_region, loser_ms, loser_logical,
                    winner_value, winner_region, winner_ms, winner_logical, recorded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                """, arguments: [c.location, c.kind, c.repository, c.key, c.loserValue, c.loserStamp.region ?? "", c.loserStamp.milliseconds,
                                 c.loserStamp.logical, c.winnerValue, c.winnerStamp.map { $0.region ?? "" }, c.winnerStamp?.milliseconds,
                                 c.winnerStamp?.logical, c.recordedAt.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func replicationConflicts(location: String?, limit: Int) async throws -> [ReplicationConflict] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM replication_conflicts WHERE (? IS NULL OR location = ?) ORDER BY id DESC LIMIT ?
                """, arguments: [location, location, limit]).map { row in
                let winnerMs: Int64? = row["winner_ms"]
                return ReplicationConflict(
                    id: row["id"], location: row["location"], kind: row["kind"], repository: row["repository"], key: row["key"],
                    loserValue: row["loser_value"],
                    loserStamp: EventStamp(region: row["loser_region"], milliseconds: row["loser_ms"], logical: row["loser_logical"]),
                    winnerValue: row["winner_value"],
                    winnerStamp: winnerMs.map { EventStamp(region: row["winner_region"], milliseconds: $0, logical: row["winner_logical"] ?? 0) },
                    recordedAt: Date(timeIntervalSince1970: row["recorded_at"]))
            }
        }
    }
}
