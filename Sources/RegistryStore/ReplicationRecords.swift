import Foundation

/// A replica: another region of this registry (a Berth node or cluster with its own storage and
/// database) that this region replicates with. The credential this region presents to the peer is
/// kept sealed (AES-GCM) by the caller; the store never sees it in the clear.
public struct ReplicaRecord: Sendable, Codable, Equatable {
    /// The region's name (`southeastasia`): unique, 1-64 characters of a-z, 0-9, '-'.
    public var location: String
    /// The peer's base URL (`https://sea.registry.example`).
    public var endpoint: String
    public var sealedCredential: Data?
    /// Whether clients may be routed to the region's own data endpoint (off: it still replicates).
    public var regionEndpointEnabled: Bool
    public var createdAt: Date
    /// Where clients of the region are sent to read blobs (a `307` of a blob GET names it);
    /// nil: the endpoint.
    public var dataEndpoint: String?

    public init(location: String, endpoint: String, sealedCredential: Data?, regionEndpointEnabled: Bool, createdAt: Date,
                dataEndpoint: String? = nil) {
        self.location = location
        self.endpoint = endpoint
        self.dataEndpoint = dataEndpoint
        self.sealedCredential = sealedCredential
        self.regionEndpointEnabled = regionEndpointEnabled
        self.createdAt = createdAt
    }
}

/// How far this region is with a replica's changes, as the replication consumer last saw it:
/// what `berth replication status` reports next to the consumer's cursor.
public struct ReplicaProgress: Sendable, Codable, Equatable {
    /// The newest sequence number in the peer's event log, and when it was read.
    public var peerSequence: Int64?
    public var peerSequenceAt: Date?
    /// When the oldest event not applied yet was appended at the peer (nil: none pending).
    public var oldestPendingAt: Date?
    /// Bytes of blobs known to be missing here and not fetched yet.
    public var bytesPending: Int64
    public var lastError: String?
    public var lastErrorAt: Date?

    public init(peerSequence: Int64? = nil, peerSequenceAt: Date? = nil, oldestPendingAt: Date? = nil, bytesPending: Int64 = 0,
                lastError: String? = nil, lastErrorAt: Date? = nil) {
        self.peerSequence = peerSequence
        self.peerSequenceAt = peerSequenceAt
        self.oldestPendingAt = oldestPendingAt
        self.bytesPending = bytesPending
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
    }
}

/// Persistence of replicas (issue 13). Where this region is in a replica's event log is the
/// replica's event consumer's (`EventLogStore`, `replication:<location>`), not the replica's.
public protocol ReplicationStore: Sendable {
    /// Every replica, by location.
    func replicas() async throws -> [ReplicaRecord]
    func replica(location: String) async throws -> ReplicaRecord?
    /// False, and nothing changes, when the location is taken. Progress starts empty.
    func createReplica(_ record: ReplicaRecord) async throws -> Bool
    /// Changes the given fields (`sealedCredential: .some(nil)` removes the credential); false when
    /// there is no such replica.
    /// Changes the given fields (nil: kept; `dataEndpoint: .some(nil)` goes back to the endpoint).
    func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?,
                       dataEndpoint: String??) async throws -> Bool
    /// Removes the replica and its progress; false when there was none.
    func deleteReplica(location: String) async throws -> Bool
    /// The replica's progress (empty for a replica never replicated), nil when there is no such replica.
    func replicaProgress(location: String) async throws -> ReplicaProgress?
    /// Replaces the replica's progress; false (nothing stored) when there is no such replica, or
    /// when `fence` names a lease whose token is another now (checked in the same transaction: a
    /// worker that lost the replica's lease never overwrites what its successor records).
    @discardableResult
    func recordReplicaProgress(location: String, _ progress: ReplicaProgress, fence: LeaseFence?) async throws -> Bool
}

extension ReplicationStore {
    /// `recordReplicaProgress` under no lease.
    @discardableResult
    public func recordReplicaProgress(location: String, _ progress: ReplicaProgress) async throws -> Bool {
        try await recordReplicaProgress(location: location, progress, fence: nil)
    }
}

/// Which register (issue 13's last-writer-wins registers) a write belongs to: a tag of a
/// repository (moves and deletions), or a lock (of the repository, one of its tags, or one of its
/// manifests). Its writes are the events of the log that changed it.
public enum RegisterKey: Sendable, Hashable {
    case tag(String)
    case lock(tag: String?, digest: String?)
    /// A registry-wide setting by name: its `setting` events that carry the document's digest
    /// (`SettingsStore.setSettingDocument`); the repository is empty.
    case setting(String)
    /// An access record (`AccessRecordChange`): its `access` events, with the detail
    /// `<kind>:<name>`, writes and tombstones alike; the repository is empty.
    case access(kind: String, name: String)
    /// A manifest's presence in a repository, by digest, newest *stamp* first (not log order): its
    /// `push`, `restore` and `delete` events (a deletion is a tombstone), the `tag.move` events
    /// naming it (a tag moved to a manifest writes its presence: a deletion older than the move
    /// does not remove it) and marks standing for those. So a peer's write older than this
    /// region's deletion does not bring the manifest back, and a peer's deletion older than a
    /// write here does not remove it.
    case manifest(String)
    /// A manifest's deletions in a repository, newest stamp first: its `delete` events and marks
    /// standing for one. A tag write older than the newest is void (the deletion took it).
    case manifestDeletion(String)
}

/// A write a region lost to a concurrent one (issue 13's conflict log): what it would have
/// written, its stamp, and what won instead. Recorded once per (kind, repository, key, loser stamp).
public struct ReplicationConflict: Sendable, Codable, Equatable {
    /// Assigned by the store (0 before it is stored), increasing.
    public var id: Int64
    /// The replica through which the conflict was seen.
    public var location: String
    /// `tag`, `manifest-delete` or `lock` (lost to a concurrent write, or refused here), `manifest` or `quarantine` (refused here).
    public var kind: String
    public var repository: String
    /// The tag, the manifest's digest, or the lock's target (`tag:<t>`, `digest:<d>`, or empty).
    public var key: String
    /// What the losing write would have set: a digest, `tombstone`, or lock attributes.
    public var loserValue: String
    public var loserStamp: EventStamp
    public var winnerValue: String?
    public var winnerStamp: EventStamp?
    public var recordedAt: Date

    public init(id: Int64 = 0, location: String, kind: String, repository: String, key: String, loserValue: String, loserStamp: EventStamp,
                winnerValue: String?, winnerStamp: EventStamp?, recordedAt: Date) {
        self.id = id
        self.location = location
        self.kind = kind
        self.repository = repository
        self.key = key
        self.loserValue = loserValue
        self.loserStamp = loserStamp
        self.winnerValue = winnerValue
        self.winnerStamp = winnerStamp
        self.recordedAt = recordedAt
    }
}

/// The replication consumer's view of registers and its conflict log (issue 13, items 2-3).
public protocol ReplicationConflictStore: Sendable {
    /// The newest writes of a register in this region's log (events, newest first), before the
    /// event `before` when given: a tag's `tag.move` and `tag.delete` events, a lock's `lock`
    /// events (with exactly that tag and digest, nil matching nil), a setting's `setting` events
    /// naming it with a document digest, an access record's `access` events naming it.
    /// A tag's register leaves out `tag.delete` events with `EventAction.cascadeDetail` (a tag
    /// that went with its manifest: the deletion's register says so) and counts `replication.mark`
    /// events as the writes they stand for (`EventAction.registerMark`).
    func registerWrites(repository: String, key: RegisterKey, before: Int64?, limit: Int) async throws -> [Event]
    /// Appends a `replication.mark` event standing for `action` (`push`, `delete`, `tag.move`,
    /// `tag.delete`), stamped as `EventOrigin.current` says (a peer's write keeps the peer's stamp).
    func appendRegisterMark(repository: String, standingFor action: EventAction, digest: String?, tag: String?) async throws
    /// Records a losing write; false (nothing stored) when the same loser of the same register is
    /// already recorded. The stored `id` is the store's.
    @discardableResult
    func recordReplicationConflict(_ conflict: ReplicationConflict) async throws -> Bool
    /// Recorded conflicts, newest first, of one replica when `location` is given.
    func replicationConflicts(location: String?, limit: Int) async throws -> [ReplicationConflict]
}

extension ReplicationStore {
    public func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?) async throws -> Bool {
        try await updateReplica(location: location, endpoint: endpoint, sealedCredential: sealedCredential,
                                regionEndpointEnabled: regionEndpointEnabled, dataEndpoint: nil)
    }
}
