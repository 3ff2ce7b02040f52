import Access
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import OCIModel
import BerthAPIContract
import RegistryCore
import RegistryStore

/// A replica as the service hands it to the HTTP edge: never its credential.
public struct Replica: Sendable, Equatable {
    public var location: String
    public var endpoint: String
    public var credentialSet: Bool
    public var regionEndpointEnabled: Bool
    public var createdAt: Date
    /// Where the replica's clients are sent to read blobs (its endpoint unless set apart).
    public var dataEndpoint: String
    /// Whether the data endpoint was set apart from the endpoint.
    public var dataEndpointSet: Bool = false
}

/// How far this region is behind a replica (`berth replication status`).
public struct ReplicaStatus: Sendable, Equatable {
    public var replica: Replica
    public var progress: ReplicaProgress
    public var appliedSequence: Int64?
    public var lagEvents: Int64?
    public var lagSeconds: Double?
    /// The peer's end-to-end health as this node's checks last saw it (nil: not checked here).
    public var health: PeerHealth.Snapshot?
}

public enum ReplicationError: Error, Equatable, Sendable {
    case invalid(String)
    case notFound(String)
    case conflict(String)

    /// The message alone.
    public var text: String {
        switch self {
        case .invalid(let m), .notFound(let m), .conflict(let m): m
        }
    }
}

/// Replicas of this registry in other regions (issue 13): their configuration, the credential this
/// region presents to each (sealed, bound to the replica's location), and their status. A peer's
/// endpoint is checked by the outbound policy when it is set (loopback, private and link-local
/// addresses only when the operator allows them).
public final class ReplicationService: Sendable {
    let store: any ReplicationStore
    let events: any EventLogStore
    let sealingKey: SymmetricKey
    let policy: OutboundPolicy
    let logger: Logger
    /// This region's name: the origin of the changes made here (their events store none).
    public let region: String
    /// Where the feed looks up a pushed referrer's subject (by digest); nil leaves it out.
    let content: (any ContentMetadataStore)?
    /// Where the feed looks up what a register write replaced, and the conflict log; nil leaves
    /// `replaces` out and the conflict log empty.
    let registers: (any ReplicationConflictStore)?
    /// Where a peer reads the document a `setting` event names (`settingDocument`); nil: none.
    let settings: (any SettingsStore)?
    /// The last storage probe of `health` (write, read back, remove), reused for 5 s.
    let storageProbe = NIOLockedValueBox<(at: Date, error: String?)?>(nil)

    public init(store: any ReplicationStore, events: any EventLogStore, sealingKey: SymmetricKey, policy: OutboundPolicy = OutboundPolicy(),
                logger: Logger = Logger(label: "berth.replication"), region: String = ReplicationService.defaultRegion,
                content: (any ContentMetadataStore)? = nil, registers: (any ReplicationConflictStore)? = nil,
                settings: (any SettingsStore)? = nil) {
        self.registers = registers
        self.settings = settings
        self.region = region
        self.content = content
        self.store = store
        self.events = events
        self.sealingKey = sealingKey
        self.policy = policy
        self.logger = logger
    }

    /// The name of the sealing key in the key material store.
    public static let keyMaterialName = "replication-sealing-key"

    /// The key that seals peer credentials, shared by every node of the registry (created once).
    public static func sharedSealingKey(_ shared: SharedKeyMaterial) async throws -> SymmetricKey {
        let loaded = try await shared.loadOrCreate(keyMaterialName) { SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) } }
        guard loaded.plaintext.count == 32 else { throw KeyMaterialError("the stored replication sealing key is not 32 bytes") }
        return SymmetricKey(data: loaded.plaintext)
    }

    /// The name of the event consumer whose cursor is this region's place in the replica's event log.
    public static func consumerName(_ location: String) -> String { "replication:" + location }

    // MARK: sealing

    static let sealedFormat: UInt8 = 1

    static func context(_ location: String) -> Data {
        Data("berth-replica:\(location.utf8.count):\(location):credential".utf8)
    }

    /// Seals `credential` bound to the replica's location: copied in the database onto another
    /// replica it does not open.
    func seal(_ credential: String, location: String) throws -> Data {
        let box = try AES.GCM.seal(Data(credential.utf8), using: sealingKey, authenticating: Self.context(location))
        return Data([Self.sealedFormat]) + box.combined!
    }

    /// The replica's credential in the clear (for the replication consumer), nil when none is stored.
    public func credential(location: String) async throws -> String? {
        guard let r = try await store.replica(location: location) else { throw ReplicationError.notFound("replica \(location)") }
        guard let sealed = r.sealedCredential else { return nil }
        guard sealed.first == Self.sealedFormat, let box = try? AES.GCM.SealedBox(combined: sealed.dropFirst()),
              let plain = try? AES.GCM.open(box, using: sealingKey, authenticating: Self.context(location)) else {
            throw ReplicationError.invalid("the stored credential of replica \(location) does not open with this registry's key")
        }
        return String(decoding: plain, as: UTF8.self)
    }

    // MARK: the event feed a peer reads

    /// The region name of a server not told its own.
    public static let defaultRegion = "default"

    /// Most events one page of the feed holds.
    public static let maxFeedPage = 1000

    /// Events after `after` (at most `limit`, 1 to `maxFeedPage`), each with its origin region (this
    /// region's name for a change made here) and, for a manifest push, the subject it refers to;
    /// and the newest sequence of the log.
    public func feed(after: Int64, limit: Int) async throws -> (events: [FeedEvent], latest: Int64) {
        guard after >= 0 else { throw ReplicationError.invalid("after must be a sequence number (0 or more)") }
        guard (1...Self.maxFeedPage).contains(limit) else { throw ReplicationError.invalid("limit must be 1 to \(Self.maxFeedPage)") }
        let latest = try await events.latestEventSequence()
        var out: [FeedEvent] = []
        for e in try await events.events(after: after, limit: limit) {
            var subject: String?
            if e.action == .manifestPush, let content, let raw = e.digest, let d = try? Digest(parsing: raw) {
                subject = try await content.manifest(repository: e.repository, digest: d)?.subject?.string
            }
            // A register write names the write before it in this log: a peer tells a successor
            // from a concurrent write by it.
            var replaces: String?
            if let registers, let key = Self.registerKey(e) {
                replaces = try await registers.registerWrites(repository: e.repository, key: key, before: e.sequence, limit: 1).first
                    .map { WriteStamp($0.stamp, localRegion: region).description }
            }
            out.append(FeedEvent(event: e, region: e.stamp.region ?? region, subject: subject, replaces: replaces))
        }
        return (out, max(latest, out.last?.event.sequence ?? 0))
    }

    /// One event of the feed.
    public struct FeedEvent: Sendable {
        public var event: Event
        public var region: String
        public var subject: String?
        public var replaces: String?
    }

    static func registerKey(_ e: Event) -> RegisterKey? {
        switch e.action {
        case .tagMove: e.tag.map { .tag($0) }
        // A tag that went with its manifest is no write of the tag's register.
        case .tagDelete: e.detail == EventAction.cascadeDetail ? nil : e.tag.map { .tag($0) }
        case .registerMark where e.detail == EventAction.tagMove.rawValue || e.detail == EventAction.tagDelete.rawValue:
            e.tag.map { .tag($0) }
        case .lock: .lock(tag: e.tag, digest: e.digest)
        case .setting: e.digest != nil ? e.detail.map { .setting($0) } : nil
        case .access: e.detail.flatMap(AccessRecordChange.parse(detail:)).map { .access(kind: $0.kind, name: $0.name) }
        default: nil
        }
    }

    /// A registry-wide setting's current document, for a peer applying a `setting` event (it
    /// checks the document against the digest the event carries); nil when none is stored.
    public func settingDocument(_ name: String) async throws -> Data? {
        guard ReplicationPlan.isReplicatedSetting(name) else { throw ReplicationError.invalid("not a replicated setting name") }
        return try await settings?.settingDocument(name)
    }

    /// The conflict log, newest first (of one replica when `location` is given).
    public func conflicts(location: String?, limit: Int) async throws -> [ReplicationConflict] {
        guard (1...1000).contains(limit) else { throw ReplicationError.invalid("limit must be 1 to 1000") }
        guard let registers else { return [] }
        return try await registers.replicationConflicts(location: location, limit: limit)
    }

    // MARK: health (item 5)

    /// This region's own end-to-end check, as peers ask it: the metadata database answers, the
    /// blob store's probe (`BlobStore.checkHealth`, as `/readyz` asks) passes, and the largest lag
    /// behind its own replicas. Healthy when the database and storage are.
    public func health(registry: Registry) async -> ReplicationHealthView {
        var errors: [String] = []
        var database = true, storage = true
        do { try await registry.metadata.checkHealth() } catch {
            database = false
            errors.append("database: \(String("\(error)".prefix(200)))")
        }
        do {
            try await registry.blobs.checkHealth()
            try await probeStorage(registry)
        } catch {
            storage = false
            errors.append("storage: \(String("\(error)".prefix(200)))")
        }
        var lag: Int64?
        if database, let statuses = try? await statuses() {
            lag = statuses.compactMap(\.lagEvents).max()
        }
        return ReplicationHealthView(region: region, healthy: database && storage, database: database, storage: storage,
                                     lagEvents: lag, error: errors.isEmpty ? nil : errors.joined(separator: "; "))
    }

    // MARK: validation

    /// A region's name: what a replica's location is (`--region`).
    public static func validate(region: String) throws(ReplicationError) {
        try validate(location: region)
    }

    static func validate(location: String) throws(ReplicationError) {
        guard !location.isEmpty, location.utf8.count <= 64, location.first != "-",
              location.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d })
        else { throw .invalid("a location is 1-64 characters of a-z, 0-9 and '-' (e.g. southeastasia)") }
    }

    /// A replica's endpoint (or data endpoint): an http(s) URL of scheme, host and port, without
    /// credentials, query or fragment, normalized without a trailing slash. No path: a peer is a
    /// registry, which answers at its root (`/v2/`, `/api/v1/`), and clients are sent to a data
    /// endpoint's `/v2/…` routes; a path would be silently dropped, so it is refused.
    static func normalize(endpoint: String, what: String = "endpoint") throws(ReplicationError) -> String {
        guard endpoint.utf8.count <= 2048, let url = URLComponents(string: endpoint),
              url.scheme == "http" || url.scheme == "https", let host = url.host, !host.isEmpty,
              url.user == nil, url.password == nil, url.query == nil, url.fragment == nil
        else { throw .invalid("\(what) must be an http(s) URL without credentials, query or fragment (e.g. https://sea.registry.example)") }
        if !url.path.allSatisfy({ $0 == "/" }) {
            throw .invalid("\(what) must be a scheme, host and port without a path: a registry answers at its root (e.g. https://sea.registry.example)")
        }
        var normalized = endpoint
        while normalized.hasSuffix("/") { normalized.removeLast() }
        return normalized
    }

    /// This region's own data endpoint (`--data-endpoint`), checked as a replica's endpoint is.
    public static func normalizeDataEndpoint(_ value: String) throws(ReplicationError) -> String {
        try normalize(endpoint: value, what: "data-endpoint")
    }

    static func validate(credential: String) throws(ReplicationError) {
        guard let colon = credential.firstIndex(of: ":"), colon != credential.startIndex, credential.index(after: colon) != credential.endIndex,
              credential.utf8.count <= 4096, !credential.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f })
        else { throw .invalid("credential must be identity:secret (the peer's service identity and its secret)") }
    }

    func checkTarget(_ endpoint: String, what: String = "endpoint") async throws(ReplicationError) {
        do {
            try await policy.checkTarget(endpoint)
        } catch {
            throw .invalid("\(what) refused: \(error.message)")
        }
    }

    // MARK: management

    static func replica(_ r: ReplicaRecord) -> Replica {
        Replica(location: r.location, endpoint: r.endpoint, credentialSet: r.sealedCredential != nil,
                regionEndpointEnabled: r.regionEndpointEnabled, createdAt: r.createdAt, dataEndpoint: r.dataEndpoint ?? r.endpoint,
                dataEndpointSet: r.dataEndpoint != nil)
    }

    public func list() async throws -> [Replica] {
        try await store.replicas().map(Self.replica)
    }

    public func get(_ location: String) async throws -> Replica {
        guard let r = try await store.replica(location: location) else { throw ReplicationError.notFound("replica \(location)") }
        return Self.replica(r)
    }

    public func create(location: String, endpoint: String, credential: String?, regionEndpointEnabled: Bool,
                       dataEndpoint: String? = nil) async throws -> Replica {
        try Self.validate(location: location)
        let endpoint = try Self.normalize(endpoint: endpoint)
        let dataEndpoint = try dataEndpoint.map { e throws(ReplicationError) in try Self.normalize(endpoint: e, what: "data endpoint") }
        if let credential { try Self.validate(credential: credential) }
        try await checkTarget(endpoint)
        if let dataEndpoint { try await checkTarget(dataEndpoint, what: "data endpoint") }
        let record = ReplicaRecord(location: location, endpoint: endpoint, sealedCredential: try credential.map { try seal($0, location: location) },
                                   regionEndpointEnabled: regionEndpointEnabled, createdAt: Date(), dataEndpoint: dataEndpoint)
        guard try await store.createReplica(record) else { throw ReplicationError.conflict("replica \(location) exists") }
        logger.info("replica created", metadata: ["location": "\(location)", "endpoint": "\(endpoint)"])
        return try await get(location)
    }

    public func update(location: String, endpoint: String?, credential: String?, clearCredential: Bool,
                       regionEndpointEnabled: Bool?, dataEndpoint: String? = nil) async throws -> Replica {
        if credential != nil, clearCredential { throw ReplicationError.invalid("credential and clearCredential exclude each other") }
        let endpoint = try endpoint.map { e throws(ReplicationError) in try Self.normalize(endpoint: e) }
        // "" goes back to the endpoint; anything else is checked as the endpoint is.
        let newDataEndpoint: String?? = try dataEndpoint.map { e throws(ReplicationError) -> String? in
            e.isEmpty ? nil : try Self.normalize(endpoint: e, what: "data endpoint")
        }
        if let credential { try Self.validate(credential: credential) }
        if let endpoint { try await checkTarget(endpoint) }
        if case .some(.some(let d)) = newDataEndpoint { try await checkTarget(d, what: "data endpoint") }
        // The credential was given for one host: moving the replica elsewhere must not carry it
        // there unasked (found in review). A new endpoint needs the credential again, or its removal.
        if let endpoint, credential == nil, !clearCredential {
            let current = try await get(location)
            if current.credentialSet, current.endpoint != endpoint {
                throw ReplicationError.invalid("a new endpoint needs the credential again (--credential or --credential-file), or --clear-credential")
            }
        }
        let sealed: Data?? = if let credential { .some(try seal(credential, location: location)) } else if clearCredential { .some(nil) } else { nil }
        guard try await store.updateReplica(location: location, endpoint: endpoint, sealedCredential: sealed,
                                            regionEndpointEnabled: regionEndpointEnabled, dataEndpoint: newDataEndpoint) else {
            throw ReplicationError.notFound("replica \(location)")
        }
        return try await get(location)
    }

    /// Removes the replica and this region's cursor in its log (a replica added again under the
    /// location starts over; what was applied stays).
    public func delete(location: String) async throws {
        guard try await store.deleteReplica(location: location) else { throw ReplicationError.notFound("replica \(location)") }
        _ = try await events.deleteEventConsumer(name: Self.consumerName(location))
        logger.info("replica deleted", metadata: ["location": "\(location)"])
    }

    public func status(_ location: String, now: Date = Date()) async throws -> ReplicaStatus {
        guard let r = try await store.replica(location: location),
              let progress = try await store.replicaProgress(location: location) else {
            throw ReplicationError.notFound("replica \(location)")
        }
        return Self.status(r, progress: progress, applied: try await events.eventConsumer(named: Self.consumerName(location))?.cursor, now: now)
    }

    public func statuses(now: Date = Date()) async throws -> [ReplicaStatus] {
        var out: [ReplicaStatus] = []
        for r in try await store.replicas() {
            guard let progress = try await store.replicaProgress(location: r.location) else { continue }   // deleted meanwhile
            out.append(Self.status(r, progress: progress, applied: try await events.eventConsumer(named: Self.consumerName(r.location))?.cursor,
                                   now: now))
        }
        return out
    }

    /// Lag in events: the peer's newest sequence less the last one applied here (unknown until the
    /// peer's log was read). Lag in seconds: the age of the oldest event not applied yet, 0 when
    /// nothing is pending.
    static func status(_ r: ReplicaRecord, progress: ReplicaProgress, applied: Int64?, now: Date) -> ReplicaStatus {
        var lagEvents: Int64?
        var lagSeconds: Double?
        if let peer = progress.peerSequence {
            let events = max(0, peer - (applied ?? 0))
            lagEvents = events
            if events == 0 {
                lagSeconds = 0
            } else if let oldest = progress.oldestPendingAt {
                lagSeconds = max(0, now.timeIntervalSince(oldest))
            }
        }
        return ReplicaStatus(replica: replica(r), progress: progress, appliedSequence: applied, lagEvents: lagEvents, lagSeconds: lagSeconds)
    }
}
