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

    public init(location: String, endpoint: String, sealedCredential: Data?, regionEndpointEnabled: Bool, createdAt: Date) {
        self.location = location
        self.endpoint = endpoint
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
    func updateReplica(location: String, endpoint: String?, sealedCredential: Data??, regionEndpointEnabled: Bool?) async throws -> Bool
    /// Removes the replica and its progress; false when there was none.
    func deleteReplica(location: String) async throws -> Bool
    /// The replica's progress (empty for a replica never replicated), nil when there is no such replica.
    func replicaProgress(location: String) async throws -> ReplicaProgress?
    /// Replaces the replica's progress; false (nothing stored) when there is no such replica.
    @discardableResult
    func recordReplicaProgress(location: String, _ progress: ReplicaProgress) async throws -> Bool
}
