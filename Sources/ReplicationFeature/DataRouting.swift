import Access
import BerthAPIContract
import Crypto
import Foundation
import HTTPAPI
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryCore
import RegistryStore
import ServiceLifecycle
import UpstreamClient

/// Regional data endpoints and health-aware routing (issue 13 items 4-5).
public struct DataRoutingConfiguration: Sendable {
    /// This region's own data endpoint (`https://west.data.example`): upload sessions name it,
    /// and routing is on only when it is set.
    public var dataEndpoint: String?
    public var clientNetworks: ClientNetworks
    /// Seconds a signed URL lives (at most `DataEndpointSignature.maxLifetime`).
    public var urlLifetime: TimeInterval = 120
    /// Signed URLs are bound to the client's address as this region sees it (the peer must see
    /// the same one): a leaked URL works for no other address.
    public var bindClient = false
    /// Between two health checks of a peer, and how long one may take.
    public var healthInterval: Duration = .seconds(1)
    public var healthTimeout: Duration = .milliseconds(1500)
    public var failuresToFail = 2
    public var successesToRecover = 2
    /// The key that signs this region's redirects: the raw 32 bytes stored under `name` in the
    /// shared key material (sealed at rest, the same for every node of the region), made when
    /// missing. Keys rotate every `keyPeriod`; a new period's key is made on first use.
    public var signingKeyMaterial: @Sendable (_ name: String) async throws -> Data
    public var keyPeriod: TimeInterval = 30 * 86_400
    /// The stored names of this region's signing keys (`DataRouting.keyNamePrefix` + period) and
    /// their removal: when a period's key is first used, the keys of the periods more than two
    /// before it are removed (`DataRouting.retireKeys`). Nil: old keys are kept.
    public var signingKeyNames: (@Sendable () async throws -> [String])?
    /// Removes a stored key; true when it removed one (false: another node did first).
    public var removeSigningKey: (@Sendable (_ name: String) async throws -> Bool)?

    /// A fresh Ed25519 signing key, raw (32 bytes), for `signingKeyMaterial` to store.
    public static func newSigningKey() -> Data { Curve25519.Signing.PrivateKey().rawRepresentation }

    public init(dataEndpoint: String?, clientNetworks: ClientNetworks,
                signingKeyMaterial: @escaping @Sendable (_ name: String) async throws -> Data) {
        self.dataEndpoint = dataEndpoint
        self.clientNetworks = clientNetworks
        self.signingKeyMaterial = signingKeyMaterial
    }
}

/// Sends a blob GET to the data endpoint of the region its client's network maps to, when that
/// replica is healthy and its region endpoint enabled; verifies the signed reads other regions
/// send here and fetches what is missing from the region that signed.
public final class DataRouting: BlobRouting, Sendable {
    let configuration: DataRoutingConfiguration
    let applier: ReplicationApplier
    let health: PeerHealthMonitor
    let logger: Logger
    /// This region's signing keys by period.
    private let signingKeys = NIOLockedValueBox<[Int64: Curve25519.Signing.PrivateKey]>([:])
    /// Peers' public keys by (region, key id), with when to ask again.
    private let peerKeys = NIOLockedValueBox<[String: (key: Curve25519.Signing.PublicKey, until: Date)]>([:])
    /// The request for a peer's key under way, shared by the reads that wait for it.
    private let keyFetches = NIOLockedValueBox<[String: Task<Void, Never>]>([:])
    /// When a peer's key was last asked for (an unknown key id asks at most once per 5 s per region).
    private let lastKeyFetch = NIOLockedValueBox<[String: Date]>([:])
    /// Redirects answered, and signed reads served (for the metrics and tests).
    let redirects = NIOLockedValueBox<[String: Int]>([:])
    let signedReads = NIOLockedValueBox<(served: Int, fetched: Int, refused: Int)>((0, 0, 0))
    /// Signed reads of a blob this region lacks, by (signer, repository, digest): concurrent ones
    /// share one fetch from the signer (a cold image pulled by many nodes at once asks for each
    /// layer once).
    private let missingFetches = SingleFlight<String, Bool>()

    public init(configuration: DataRoutingConfiguration, applier: ReplicationApplier, health: PeerHealthMonitor,
                logger: Logger = Logger(label: "berth.replication")) {
        self.configuration = configuration
        self.applier = applier
        self.health = health
        self.logger = logger
    }

    var region: String { applier.region }

    public var uploadLocationBase: String? { configuration.dataEndpoint }

    public func isSigned(_ request: Request) -> Bool {
        request.uri.queryParameters[DataEndpointSignature.signatureParameter[...]] != nil
    }

    // MARK: signing (the login server's side)

    /// The shared key material name of a period's signing key is this and the period's number.
    public static let keyNamePrefix = "replication-data-signing-key-"

    func signingKey(now: Date) async throws -> Curve25519.Signing.PrivateKey {
        let period = Int64(now.timeIntervalSince1970 / configuration.keyPeriod)
        if let key = signingKeys.withLockedValue({ $0[period] }) { return key }
        let raw = try await configuration.signingKeyMaterial(Self.keyNamePrefix + String(period))
        let key = try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        let first = signingKeys.withLockedValue { keys -> Bool in
            defer { keys[period] = key }
            keys = keys.filter { $0.key >= period - 1 }
            return keys[period] == nil
        }
        // Off the request that asked for the key: a backlog of old keys costs it nothing.
        if first { Task { await self.retireKeys(period: period) } }
        return key
    }

    /// The names among `names` of signing keys to remove when `period` starts: those of periods
    /// more than two before it. None when no key of the two periods before it is stored: then
    /// this node's clock may be ahead of the region's (a wrong clock before it is synchronized),
    /// and the keys it would remove are the ones the other nodes sign with. The previous
    /// period's key stays for nodes whose clocks lag; names of another form are never removed.
    static func retiredKeys(_ names: [String], period: Int64) -> [String] {
        let periods = names.compactMap { name -> (name: String, period: Int64)? in
            guard name.hasPrefix(keyNamePrefix) else { return nil }
            let suffix = name.dropFirst(keyNamePrefix.count)
            guard let p = Int64(suffix), String(p) == suffix else { return nil }
            return (name, p)
        }
        guard periods.contains(where: { $0.period == period - 1 || $0.period == period - 2 }) else { return [] }
        return periods.filter { $0.period < period - 2 }.map(\.name)
    }

    /// Removes the stored signing keys `retiredKeys` names (every node may try: a removal of what
    /// another node removed changes nothing). A failure is logged: the next period tries again.
    func retireKeys(period: Int64) async {
        guard let list = configuration.signingKeyNames, let remove = configuration.removeSigningKey else { return }
        do {
            for name in Self.retiredKeys(try await list(), period: period) where try await remove(name) {
                logger.info("retired an old data-endpoint signing key", metadata: ["key": "\(name)"])
            }
        } catch {
            logger.warning("could not remove old data-endpoint signing keys", metadata: ["error": "\(error)"])
        }
    }

    /// The public key of the current period, for peers (`GET /api/v1/replication/data-key`), and
    /// the previous period's while a URL it signed may still be alive (`maxLifetime` and the skew
    /// past the rotation): a peer that never cached it, asked first by such a URL after the
    /// rotation, would otherwise refuse it. Only a stored previous key is served (never made).
    func currentKey(now: Date = Date()) async throws -> DataEndpointKeyView {
        let key = try await signingKey(now: now).publicKey
        let period = (now.timeIntervalSince1970 / configuration.keyPeriod).rounded(.down)
        let start = period * configuration.keyPeriod
        var previous: [DataEndpointKeyView]?
        if now.timeIntervalSince1970 < start + DataEndpointSignature.maxLifetime + DataEndpointSignature.skew,
           let names = configuration.signingKeyNames {
            let name = Self.keyNamePrefix + String(Int64(period) - 1)
            // The current key is served whatever happens to the listing.
            if (try? await names())?.contains(name) == true,
               let old = try? Curve25519.Signing.PrivateKey(rawRepresentation: try await configuration.signingKeyMaterial(name)).publicKey {
                previous = [DataEndpointKeyView(region: region, keyId: DataEndpointSignature.keyId(old),
                                                publicKey: old.rawRepresentation.base64EncodedString(),
                                                expiresAt: Date(timeIntervalSince1970: start))]
            }
        }
        return DataEndpointKeyView(region: region, keyId: DataEndpointSignature.keyId(key), publicKey: key.rawRepresentation.base64EncodedString(),
                                   expiresAt: Date(timeIntervalSince1970: start + configuration.keyPeriod), previousKeys: previous)
    }

    public func redirect(_ request: Request, repository: RepositoryName, digest: OCIModel.Digest, client: IPAddress?) async throws -> String? {
        // A peer region's own fetches (the replication consumer, a signed read's fetch of what is
        // missing) are served here: sending them on could send them back.
        guard configuration.dataEndpoint != nil, let client,
              request.headers[.userAgent] != "berth-upstream",
              let target = configuration.clientNetworks.region(for: client), target != region,
              let peer = health.routable(target) else { return nil }
        let expires = Int64(Date().timeIntervalSince1970 + min(configuration.urlLifetime, DataEndpointSignature.maxLifetime))
        let query = try DataEndpointSignature.sign(repository: repository.value, digest: digest.string, expires: expires, region: region,
                                                   key: try await signingKey(now: Date()),
                                                   client: configuration.bindClient ? client.description : nil)
        redirects.withLockedValue { $0[target, default: 0] += 1 }
        return "\(peer.dataEndpoint)/v2/\(repository.value)/blobs/\(digest.string)?\(query)"
    }

    // MARK: verifying (the data endpoint's side)

    public func admitSigned(_ request: Request, repository: RepositoryName, digest: OCIModel.Digest, client: IPAddress?) async throws {
        do {
            try await verify(request, repository: repository, digest: digest, client: client)
        } catch let refusal as DataEndpointRefusal {
            signedReads.withLockedValue { $0.refused += 1 }
            logger.notice("signed blob read refused", metadata: ["repository": "\(repository)", "reason": "\(refusal.message)"])
            throw RegistryError(refusal.status == 401 ? .unauthorized : .denied, refusal.message, status: refusal.status)
        }
        signedReads.withLockedValue { $0.served += 1 }
    }

    /// Replication may not have brought the blob yet: it is fetched by digest from the region that
    /// signed (else from another healthy peer, `fetchFromPeers`), verified while it streams into
    /// the store (visible here only once whole and right). One fetch per (repository, digest) at a
    /// time. The read that starts it, when
    /// `streaming` (a GET of the whole blob), is answered while the bytes arrive: the peer's
    /// declared length first, each chunk as it comes through a `BlobTee` (the last bytes only once
    /// the digest verified; a failure cuts the response short), the fetch going on when the client
    /// leaves. Reads that arrive while a fetch runs, ranged reads and a peer that states no length
    /// wait for the stored copy (nil: serve it as stored).
    public func fetchMissing(_ request: Request, repository: RepositoryName, digest: OCIModel.Digest,
                             streaming: Bool) async throws -> StreamedBlob? {
        guard try await applier.registry.metadata.linkedBlobSize(repository: repository.value, digest: digest) == nil,
              let signer = request.uri.queryParameters[DataEndpointSignature.regionParameter[...]].map(String.init),
              let record = try await applier.service.store.replica(location: signer) else { return nil }
        let client = try await applier.client(for: record)
        // One fetch of a blob at a time, whichever region signed the reads that want it. Either
        // kind ends with the other peers when the signer cannot give the blob, so a read that joins
        // it has the same answer as the read that started it.
        let key = repository.value + "\u{0}" + digest.string
        if streaming {
            let tee = BlobTee()
            let started = missingFetches.startIfIdle(key) { [self] in
                try await self.fetchStreamingThenPeers(repository, digest, signer: record, client: client, tee: tee)
            }
            // No length stated, nothing to fetch, or the signer could not start the transfer (it
            // lacks the blob now, or cannot be reached): wait for the stored copy below.
            if started, let length = try? await tee.streamingLength() {
                return StreamedBlob(size: length, next: { try await tee.next() }, close: { tee.close() })
            }
        }
        _ = try await missingFetches.value(key) { [self] in
            try await self.fetchFromPeers(repository, digest, signer: record, signerClient: client)
        }
        return nil
    }

    /// Whether a failed fetch from a peer is that peer's (move on to the next one): an upstream
    /// failure (unreachable, refused, a bad or short answer) or bytes that did not verify. Anything
    /// else is this region's (a write lock, a full quota, the store) and would be the same with any
    /// peer.
    static func isPeerFailure(_ error: any Error) -> Bool {
        switch error {
        case let e as UpstreamError: e.kind != .tooLarge   // (this region's limit: the same with any peer)
        case let e as RegistryError: e.code == .digestInvalid || e.code == .sizeInvalid
        default: false
        }
    }

    /// The streamed fetch from the signer; when the signer lacks the blob now or fails (before or
    /// during the transfer: a streamed client's response is then cut), the resumable fetch from
    /// the peers, the signer again first unless it said it lacks the blob.
    private func fetchStreamingThenPeers(_ repository: RepositoryName, _ digest: OCIModel.Digest, signer: ReplicaRecord,
                                         client: UpstreamClient, tee: BlobTee) async throws -> Bool {
        let signerLacksIt: Bool
        do {
            if try await fetchStreaming(repository, digest, client: client, tee: tee) { return true }
            signerLacksIt = true
        } catch where Self.isPeerFailure(error) {
            signerLacksIt = false
        }
        return try await fetchFromPeers(repository, digest, signer: signer, signerClient: client, skipSigner: signerLacksIt)
    }

    /// The blob fetched resumably from the signing region, else from each other peer this node
    /// finds healthy in turn (by name): one that lacks the blob, cannot be asked or fails
    /// (`isPeerFailure`) is passed over, and the bytes an earlier one delivered are kept (the
    /// private session is by repository and digest, so the next peer continues from them with a
    /// range); a failure of this region's ends it. False when no peer has it (the read is a
    /// 404); the last peer's failure when none could give it.
    func fetchFromPeers(_ repository: RepositoryName, _ digest: OCIModel.Digest, signer: ReplicaRecord,
                        signerClient: UpstreamClient, skipSigner: Bool = false) async throws -> Bool {
        var failure: (any Error)?
        let others = health.healthyPeers().filter { $0 != signer.location && $0 != region }
        for location in (skipSigner ? [] : [signer.location]) + others {
            if try await applier.registry.metadata.linkedBlobSize(repository: repository.value, digest: digest) != nil { return true }
            let client: UpstreamClient
            do {
                if location == signer.location {
                    client = signerClient
                } else {
                    guard let record = try await applier.service.store.replica(location: location) else { continue }
                    client = try await applier.client(for: record)
                }
            } catch where Self.isPeerFailure(error) || error is ReplicationError {
                failure = error   // (a peer this region cannot ask: its address refused, its credential unreadable)
                continue
            }
            do {
                // (the loop just found it not stored: ensureBlob would ask again)
                if try await applier.fetchBlobResumably(repository, digest, size: nil, client: client) {
                    signedReads.withLockedValue { $0.fetched += 1 }
                    if location != signer.location {
                        logger.info("replication: a blob the signing region could not give was fetched from another peer",
                                    metadata: ["repository": "\(repository.value)", "digest": "\(digest)", "signer": "\(signer.location)",
                                               "peer": "\(location)"])
                    }
                    return true
                }
            } catch where Self.isPeerFailure(error) && !Task.isCancelled {
                failure = error
                logger.debug("replication: a peer could not give a missing blob",
                             metadata: ["peer": "\(location)", "digest": "\(digest)", "error": "\(error)"])
            }
        }
        if let failure { throw (failure as? UpstreamError)?.registryError ?? failure }
        return false
    }

    /// One GET of the blob from byte 0 into `putBlob`, handing its chunks to `tee`. Not resumable
    /// (the client is answered from this one transfer): a transfer that breaks cuts the response
    /// (the fetch then goes on from the peers, `fetchStreamingThenPeers`, and the client's retry
    /// finds the stored copy or joins it). The repository's write lock and quotas are asked before
    /// the response begins. False (and a finished tee) when the signer lacks the blob; a failure
    /// is thrown as it came (the tee gets it as the client's answer).
    private func fetchStreaming(_ repository: RepositoryName, _ digest: OCIModel.Digest, client: UpstreamClient,
                                tee: BlobTee) async throws -> Bool {
        let registry = applier.registry
        do {
            guard try await registry.metadata.linkedBlobSize(repository: repository.value, digest: digest) == nil else {
                tee.finish(.success(()))
                return true
            }
            _ = try await client.blob(repository: repository.value, digest: digest, size: nil) {
                (stream: VerifiedBlobStream) async throws -> Int64 in
                let body = try await tee.feeding(stream) { try await registry.checkBlobStorable(repository, size: $0) }
                return try await registry.putBlob(repository, digest: digest, contentLength: stream.size, body: body)
            }
            tee.finish(.success(()))
            signedReads.withLockedValue { $0.fetched += 1 }
            return true
        } catch let e as UpstreamError where e.kind == .notFound {
            tee.finish(.success(()))   // nothing to stream: the read waits for the peers' answer
            return false
        } catch {
            tee.finish(.failure((error as? UpstreamError)?.registryError ?? error))
            throw error
        }
    }

    func verify(_ request: Request, repository: RepositoryName, digest: OCIModel.Digest, client: IPAddress?) async throws {
        var query: [String: [String]] = [:]
        for name in [DataEndpointSignature.regionParameter, DataEndpointSignature.keyParameter, DataEndpointSignature.expiresParameter,
                     DataEndpointSignature.signatureParameter, DataEndpointSignature.clientParameter] {
            query[name] = request.uri.queryParameters.getAll(name).map { String($0) }
        }
        let signed = try DataEndpointSignature.parse(query)
        guard signed.region != region, let record = try await applier.service.store.replica(location: signed.region) else {
            throw DataEndpointRefusal.unknownRegion(signed.region)
        }
        let key = try await peerKey(record, keyId: signed.keyId)
        try signed.verify(method: "GET", repository: repository.value, digest: digest.string, key: key, now: Date(),
                          client: client?.description)
    }

    /// The signing region's public key named `keyId`: cached until the peer's stated expiry, else
    /// asked of the peer over the replication credential (`GET /api/v1/replication/data-key`).
    /// Concurrent reads share one request; a key id still unknown after it is refused, and the peer
    /// is asked again at most every 5 s (a flood of forged key ids costs the peer nothing).
    func peerKey(_ replica: ReplicaRecord, keyId: String) async throws -> Curve25519.Signing.PublicKey {
        let cacheKey = replica.location + "\u{0}" + keyId
        if let cached = peerKeys.withLockedValue({ $0[cacheKey] }), cached.until > Date() { return cached.key }
        let task = keyFetches.withLockedValue { fetches -> Task<Void, Never>? in
            if let running = fetches[replica.location] { return running }
            let now = Date()
            let mayAsk = lastKeyFetch.withLockedValue { last -> Bool in
                if let at = last[replica.location], now.timeIntervalSince(at) < 5 { return false }
                last[replica.location] = now
                return true
            }
            guard mayAsk else { return nil }
            let running = Task { await self.fetchKey(replica) }
            fetches[replica.location] = running
            return running
        }
        await task?.value
        if let cached = peerKeys.withLockedValue({ $0[cacheKey] }), cached.until > Date() { return cached.key }
        throw DataEndpointRefusal.unknownKey
    }

    private func fetchKey(_ replica: ReplicaRecord) async {
        defer {
            _ = keyFetches.withLockedValue { $0.removeValue(forKey: replica.location) }
            lastKeyFetch.withLockedValue { $0[replica.location] = Date() }
        }
        do {
            let client = try await applier.client(for: replica)
            let bytes = try await client.document(path: "/api/v1/replication/data-key", limit: 64 << 10)
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let view = try decoder.decode(DataEndpointKeyView.self, from: Data(bytes))
            // The current key and (just after a rotation) the previous one, at most one more.
            for key in [view] + (view.previousKeys ?? []).prefix(1) {
                guard key.region == replica.location, let raw = Data(base64Encoded: key.publicKey),
                      let publicKey = try? Curve25519.Signing.PublicKey(rawRepresentation: raw),
                      DataEndpointSignature.keyId(publicKey) == key.keyId
                else {
                    logger.warning("a replica's data-endpoint key is not usable", metadata: ["location": "\(replica.location)"])
                    return
                }
                // Kept past the key's period for as long as a URL it signed at the period's end may
                // live (so such a URL still verifies after the signer moved to its next key), and at
                // most a day past now whatever the peer says; a previous key past that is not kept.
                let grace = DataEndpointSignature.maxLifetime + DataEndpointSignature.skew
                let until = min(key.expiresAt.addingTimeInterval(grace), Date().addingTimeInterval(86_400))
                guard until > Date() else { continue }
                peerKeys.withLockedValue { $0[replica.location + "\u{0}" + key.keyId] = (publicKey, until) }
            }
        } catch {
            logger.warning("the data-endpoint key of a replica cannot be read", metadata: ["location": "\(replica.location)", "error": "\(error)"])
        }
    }
}

/// The health of every peer as this node checks it, and what routing may use.
public final class PeerHealthMonitor: Sendable {
    struct Peer {
        var health: PeerHealth
        var dataEndpoint: String
        var enabled: Bool
    }

    private let peers = NIOLockedValueBox<[String: Peer]>([:])
    let failuresToFail: Int
    let successesToRecover: Int

    public init(failuresToFail: Int = 2, successesToRecover: Int = 2) {
        self.failuresToFail = failuresToFail
        self.successesToRecover = successesToRecover
    }

    /// The replica's data endpoint when clients may be sent there: healthy and enabled.
    func routable(_ location: String) -> (dataEndpoint: String, Void)? {
        peers.withLockedValue { peers in
            guard let p = peers[location], p.enabled, p.health.state == .healthy else { return nil }
            return (p.dataEndpoint, ())
        }
    }

    public func snapshot(_ location: String) -> PeerHealth.Snapshot? {
        peers.withLockedValue { $0[location]?.health.snapshot }
    }

    /// The peers whose last checks found them healthy, by name (whether or not clients are sent
    /// there: a region may fetch from a peer whose endpoint serves no clients).
    func healthyPeers() -> [String] {
        peers.withLockedValue { peers in peers.filter { $0.value.health.state == .healthy }.map(\.key).sorted() }
    }

    /// Keeps the replicas' configuration current and forgets deleted ones.
    func configure(_ replicas: [ReplicaRecord]) {
        peers.withLockedValue { peers in
            let names = Set(replicas.map(\.location))
            peers = peers.filter { names.contains($0.key) }
            for r in replicas {
                var p = peers[r.location] ?? Peer(health: PeerHealth(failuresToFail: failuresToFail, successesToRecover: successesToRecover),
                                                  dataEndpoint: "", enabled: false)
                p.dataEndpoint = r.dataEndpoint ?? r.endpoint
                p.enabled = r.regionEndpointEnabled
                peers[r.location] = p
            }
        }
    }

    /// Records one check's outcome; true when the state changed.
    @discardableResult
    func record(_ location: String, error: String?, lagEvents: Int64? = nil, at now: Date = Date()) -> Bool {
        peers.withLockedValue { peers in
            guard var p = peers[location] else { return false }
            let changed = p.health.record(error: error, lagEvents: lagEvents, at: now)
            peers[location] = p
            return changed
        }
    }
}

/// Checks every peer end to end every `interval` (its `GET /api/v1/replication/health`, over the
/// replication credential, within `timeout`), on every node (routing is decided per node).
public struct PeerHealthService: Service {
    let routing: DataRouting

    public init(routing: DataRouting) { self.routing = routing }

    public func run() async throws {
        let interval = routing.configuration.healthInterval
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await checkAll()
                try? await Task.sleep(for: interval)
            }
        }
    }

    func checkAll() async {
        guard let replicas = try? await routing.applier.service.store.replicas() else { return }
        routing.health.configure(replicas)
        await withTaskGroup(of: Void.self) { group in
            for replica in replicas {
                group.addTask { await check(replica) }
            }
        }
    }

    func check(_ replica: ReplicaRecord) async {
        let timeout = routing.configuration.healthTimeout
        let routing = self.routing
        // The check is bounded whatever the transport does: at the deadline it counts as failed
        // and is cancelled, and the next one starts on time (a peer that hangs leaves routing as
        // fast as one that refuses).
        let outcome: (error: String?, lag: Int64?) = await Self.withDeadline(timeout, onTimeout: ("no answer within \(timeout)", nil)) {
            do {
                let client = try await routing.applier.client(for: replica)
                let bytes = try await client.document(path: "/api/v1/replication/health", limit: 64 << 10)
                let view = try JSONDecoder().decode(ReplicationHealthView.self, from: Data(bytes))
                guard view.region == replica.location else { return ("the peer answers as region \(view.region)", nil) }
                return view.healthy ? (nil, view.lagEvents) : (view.error ?? "the peer reports itself unhealthy", view.lagEvents)
            } catch {
                return (String("\(error)".prefix(300)), nil)
            }
        }
        if routing.health.record(replica.location, error: outcome.error, lagEvents: outcome.lag) {
            let state = routing.health.snapshot(replica.location)?.state.rawValue ?? "?"
            routing.logger.notice("replica health changed", metadata: ["location": "\(replica.location)", "health": "\(state)",
                                                                       "error": "\(outcome.error ?? "-")"])
        }
    }

    /// `operation`'s answer, or `onTimeout` once `timeout` passed (the operation is then cancelled
    /// and not waited for).
    static func withDeadline<T: Sendable>(_ timeout: Duration, onTimeout: T,
                                          _ operation: @escaping @Sendable () async -> T) async -> T {
        let answered = NIOLockedValueBox(false)
        let claim: @Sendable () -> Bool = { answered.withLockedValue { done in defer { done = true }; return !done } }
        return await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let work = Task {
                let value = await operation()
                if claim() { continuation.resume(returning: value) }
            }
            Task {
                try? await Task.sleep(for: timeout)
                if claim() {
                    work.cancel()
                    continuation.resume(returning: onTimeout)
                }
            }
        }
    }
}

extension ReplicationService {
    /// The blob store written, read back and cleaned: a small upload session of its own (never a
    /// blob, never a repository's), at most once per 5 s whatever the number of peers asking.
    func probeStorage(_ registry: Registry, now: Date = Date()) async throws {
        if let last = storageProbe.withLockedValue({ $0 }), now.timeIntervalSince(last.at) < 5, now >= last.at {
            if let error = last.error { throw ReplicationError.invalid(error) }
            return
        }
        var failure: String?
        do { try await Self.writeReadProbe(registry) } catch { failure = "storage probe: \(String("\(error)".prefix(200)))" }
        storageProbe.withLockedValue { $0 = (now, failure) }
        if let failure { throw ReplicationError.invalid(failure) }
    }

    static func writeReadProbe(_ registry: Registry) async throws {
        let id = UUID().uuidString.lowercased()
        let bytes = Array("berth replication health probe \(id)".utf8)
        let blobs = registry.blobs
        try await blobs.createUpload(id: id, owner: "-replication-health-probe")
        do {
            let body = AsyncStream<ByteBuffer> { c in
                c.yield(ByteBuffer(bytes: bytes))
                c.finish()
            }
            _ = try await blobs.append(id: id, offset: 0, body: body, limit: Int64(bytes.count))
            let back = try await blobs.readSmallUpload(id: id, expected: OCIModel.Digest.compute(bytes), limit: 4096)
            guard back == bytes else { throw ReplicationError.invalid("the storage probe read back other bytes") }
        } catch {
            try? await blobs.cancelUpload(id: id)
            throw error
        }
        try await blobs.cancelUpload(id: id)
    }
}
