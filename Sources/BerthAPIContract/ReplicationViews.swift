import Foundation

// Issue 13's bodies: replicas (`/api/v1/replications…`), shared by the server's ReplicationFeature
// and `berth replication`.

/// `POST /api/v1/replications` (location and endpoint required) and `PATCH /api/v1/replications/{location}`
/// (only the fields given change; `clearCredential` removes the stored credential).
public struct ReplicationRequest: Codable, Sendable, Equatable {
    public let location: String?
    public let endpoint: String?
    /// What this region presents to the peer, `identity:secret` (sent as Basic auth to its token
    /// service); stored sealed, never shown again.
    public let credential: String?
    public let clearCredential: Bool?
    public let regionEndpointEnabled: Bool?
    public init(location: String? = nil, endpoint: String? = nil, credential: String? = nil, clearCredential: Bool? = nil,
                regionEndpointEnabled: Bool? = nil) {
        self.location = location
        self.endpoint = endpoint
        self.credential = credential
        self.clearCredential = clearCredential
        self.regionEndpointEnabled = regionEndpointEnabled
    }
}

/// A replica: never its credential, only whether one is stored.
public struct ReplicaView: Codable, Sendable, Equatable {
    public var location: String
    public var endpoint: String
    public var credentialSet: Bool
    public var regionEndpointEnabled: Bool
    public var createdAt: Date
    public init(location: String, endpoint: String, credentialSet: Bool, regionEndpointEnabled: Bool, createdAt: Date) {
        self.location = location
        self.endpoint = endpoint
        self.credentialSet = credentialSet
        self.regionEndpointEnabled = regionEndpointEnabled
        self.createdAt = createdAt
    }
}

/// `GET /api/v1/replications/{location}/status`: how far this region is behind the replica's
/// changes. The lag fields are absent while it is unknown (the peer's log never read yet).
public struct ReplicaStatusView: Codable, Sendable, Equatable {
    public var location: String
    public var endpoint: String
    public var regionEndpointEnabled: Bool
    /// The newest sequence number of the peer's event log, as last read, and when.
    public var peerSequence: Int64?
    public var peerSequenceAt: Date?
    /// The last of the peer's events applied here (this region's cursor in the peer's log).
    public var appliedSequence: Int64?
    /// Events of the peer not applied here yet.
    public var lagEvents: Int64?
    /// Age of the oldest event not applied yet (0 when none is pending).
    public var lagSeconds: Double?
    /// Bytes of blobs known to be missing here and not fetched yet.
    public var bytesPending: Int64
    public var lastError: String?
    public var lastErrorAt: Date?
    public init(location: String, endpoint: String, regionEndpointEnabled: Bool, peerSequence: Int64?, peerSequenceAt: Date?,
                appliedSequence: Int64?, lagEvents: Int64?, lagSeconds: Double?, bytesPending: Int64, lastError: String?,
                lastErrorAt: Date?) {
        self.location = location
        self.endpoint = endpoint
        self.regionEndpointEnabled = regionEndpointEnabled
        self.peerSequence = peerSequence
        self.peerSequenceAt = peerSequenceAt
        self.appliedSequence = appliedSequence
        self.lagEvents = lagEvents
        self.lagSeconds = lagSeconds
        self.bytesPending = bytesPending
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
    }
}
