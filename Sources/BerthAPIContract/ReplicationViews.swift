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
    /// Where this region sends the replica's clients to read blobs (`307`); absent: the endpoint.
    /// On an update, an empty string goes back to the endpoint.
    public let dataEndpoint: String?
    public init(location: String? = nil, endpoint: String? = nil, credential: String? = nil, clearCredential: Bool? = nil,
                regionEndpointEnabled: Bool? = nil, dataEndpoint: String? = nil) {
        self.dataEndpoint = dataEndpoint
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
    /// Where the replica's clients are sent to read blobs (the endpoint unless set apart).
    public var dataEndpoint: String
    public init(location: String, endpoint: String, credentialSet: Bool, regionEndpointEnabled: Bool, createdAt: Date,
                dataEndpoint: String? = nil) {
        self.dataEndpoint = dataEndpoint ?? endpoint
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
    /// The end-to-end health check of the peer as this node last saw it (`healthy`, `unhealthy`,
    /// `unknown` before the first answer): only a healthy replica is routed to.
    public var health: String?
    /// When the health check last changed state, and why the last check failed.
    public var healthSince: Date?
    public var healthError: String?
    public init(location: String, endpoint: String, regionEndpointEnabled: Bool, peerSequence: Int64?, peerSequenceAt: Date?,
                appliedSequence: Int64?, lagEvents: Int64?, lagSeconds: Double?, bytesPending: Int64, lastError: String?,
                lastErrorAt: Date?, health: String? = nil, healthSince: Date? = nil, healthError: String? = nil) {
        self.health = health
        self.healthSince = healthSince
        self.healthError = healthError
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

/// One change of `GET /api/v1/replication/events`: what a peer region needs to apply it without
/// reading anything by name (issue 13). `digest` is the manifest or blob the change is about (for
/// a tag move: the digest the tag moved to), `subject` the manifest a pushed referrer refers to.
/// `region` is where the change was made and `hlc` its hybrid-logical-clock stamp
/// (`<milliseconds>.<logical>`): changes this region applied from a peer keep the peer's.
public struct ReplicationEventView: Codable, Sendable, Equatable {
    public var sequence: Int64
    public var at: Date
    public var action: String
    public var repository: String
    public var digest: String?
    public var mediaType: String?
    public var size: Int64?
    public var tag: String?
    public var subject: String?
    public var detail: String?
    public var region: String
    public var hlc: String
    /// For a write of a register (a tag's move or deletion, a lock): the write it replaced in the
    /// answering region's log (`<hlc>@<region>`), absent for a first write. A write that names what
    /// it replaced is a successor of it, not a concurrent one (issue 13's conflict model).
    public var replaces: String?
    public init(sequence: Int64, at: Date, action: String, repository: String, digest: String?, mediaType: String?, size: Int64?,
                tag: String?, subject: String?, detail: String?, region: String, hlc: String, replaces: String? = nil) {
        self.replaces = replaces
        self.sequence = sequence
        self.at = at
        self.action = action
        self.repository = repository
        self.digest = digest
        self.mediaType = mediaType
        self.size = size
        self.tag = tag
        self.subject = subject
        self.detail = detail
        self.region = region
        self.hlc = hlc
    }
}

/// `GET /api/v1/replication/events?after=SEQ&limit=N`: events after `after`, oldest first, at
/// most `limit`; `latestSequence` is the newest of the log when read (the peer's lag), `region`
/// the answering region's name.
public struct ReplicationEventPage: Codable, Sendable, Equatable {
    public var region: String
    public var latestSequence: Int64
    public var events: [ReplicationEventView]
    public init(region: String, latestSequence: Int64, events: [ReplicationEventView]) {
        self.region = region
        self.latestSequence = latestSequence
        self.events = events
    }
}

/// A registry-wide setting as a peer region reads it (`GET /api/v1/replication/settings/{name}`)
/// to apply a `setting` event of the feed: the JSON document exactly as stored, whose SHA-256 is
/// the digest that event carries.
public struct ReplicatedSettingView: Codable, Sendable, Equatable {
    public var name: String
    public var document: String

    public init(name: String, document: String) {
        self.name = name
        self.document = document
    }
}

/// The public keys a region signs its registry tokens with (`GET /api/v1/replication/token-keys`,
/// Replicator only): a peer verifies that region's tokens with them.
public struct ReplicationTokenKeysView: Codable, Sendable, Equatable {
    public struct Key: Codable, Sendable, Equatable {
        public var kid: String
        public var publicKeyPEM: String

        public init(kid: String, publicKeyPEM: String) {
            self.kid = kid
            self.publicKeyPEM = publicKeyPEM
        }
    }
    public var region: String
    public var keys: [Key]

    public init(region: String, keys: [Key]) {
        self.region = region
        self.keys = keys
    }
}

/// One access record (`GET /api/v1/replication/access/{kind}/{name}`, Replicator only): its
/// canonical JSON, password hashes included, exactly as its `access` event's digest was taken.
public struct ReplicatedAccessRecordView: Codable, Sendable, Equatable {
    public var kind: String
    public var name: String
    public var record: String

    public init(kind: String, name: String, record: String) {
        self.kind = kind
        self.name = name
        self.record = record
    }
}

/// One entry of the conflict log (`GET /api/v1/replication/conflicts`, `berth replication
/// conflicts`): a write this region lost to a concurrent one, and what won.
public struct ReplicationConflictView: Codable, Sendable, Equatable {
    public var id: Int64
    public var location: String
    /// `tag`, `manifest-delete`, `lock` or `setting` (lost to a concurrent write, or refused here), `manifest` or `quarantine` (refused here).
    public var kind: String
    public var repository: String
    public var key: String
    public var loser: String
    /// `<hlc>@<region>` of the losing write.
    public var loserStamp: String
    public var winner: String?
    public var winnerStamp: String?
    public var recordedAt: Date
    public init(id: Int64, location: String, kind: String, repository: String, key: String, loser: String, loserStamp: String,
                winner: String?, winnerStamp: String?, recordedAt: Date) {
        self.id = id
        self.location = location
        self.kind = kind
        self.repository = repository
        self.key = key
        self.loser = loser
        self.loserStamp = loserStamp
        self.winner = winner
        self.winnerStamp = winnerStamp
        self.recordedAt = recordedAt
    }
}

/// `GET /api/v1/replication/health` (Replicator): a region's own end-to-end check, which its peers
/// ask every second to decide whether clients may be routed to it.
public struct ReplicationHealthView: Codable, Sendable, Equatable {
    public var region: String
    public var healthy: Bool
    /// The metadata database answered a read.
    public var database: Bool
    /// A probe blob was written, read back and removed.
    public var storage: Bool
    /// The largest lag in events behind any of its own replicas (nil: unknown).
    public var lagEvents: Int64?
    public var error: String?
    public init(region: String, healthy: Bool, database: Bool, storage: Bool, lagEvents: Int64?, error: String?) {
        self.region = region
        self.healthy = healthy
        self.database = database
        self.storage = storage
        self.lagEvents = lagEvents
        self.error = error
    }
}

/// `GET /api/v1/replication/data-key` (Replicator): the public key a region signs its data-endpoint
/// redirects with (Ed25519), so a peer verifies them without any secret shared between regions.
public struct DataEndpointKeyView: Codable, Sendable, Equatable {
    public var region: String
    /// `<first 16 hex of SHA-256(public key)>`: named in every URL the key signs.
    public var keyId: String
    /// The raw 32-byte Ed25519 public key, base64.
    public var publicKey: String
    /// How long a peer may keep it before asking again.
    public var expiresAt: Date
    /// The previous period's key, while a URL it signed may still be alive (for
    /// `DataEndpointSignature.maxLifetime` and the clock skew after its period ended): a peer
    /// that first sees such a URL after the rotation verifies it with this one. Absent otherwise.
    public var previousKeys: [DataEndpointKeyView]?
    public init(region: String, keyId: String, publicKey: String, expiresAt: Date, previousKeys: [DataEndpointKeyView]? = nil) {
        self.region = region
        self.keyId = keyId
        self.publicKey = publicKey
        self.expiresAt = expiresAt
        self.previousKeys = previousKeys
    }
}
