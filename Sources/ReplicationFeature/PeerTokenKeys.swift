import Access
import BerthAPIContract
import Foundation
import NIOConcurrencyHelpers

/// The public keys the peer regions sign their registry tokens with (issue 13: a client whose DNS
/// moves to another region keeps its cached token), asked of the peer over the replication
/// credential this region holds for it (`GET /api/v1/replication/token-keys`, the peer's
/// Replicator) and kept by (region, key id) for an hour. A key id not known is asked again at
/// most once per 5 s per region, so forged key ids cost the peer nothing. Only a region that is
/// a replica here, and that names itself by that location, is asked.
public final class PeerTokenKeySource: PeerTokenKeys {
    let applier: ReplicationApplier
    let keepSeconds: TimeInterval
    let refetchSeconds: TimeInterval
    private let cache = NIOLockedValueBox<[String: (keys: [String: String], fetchedAt: Date?, askedAt: Date)]>([:])
    /// The replicas' locations, read again at most every `refetchSeconds`: a token naming any
    /// other region costs no store read and leaves nothing in `cache` (whose entries so stay one
    /// per replica).
    private let replicaNames = NIOLockedValueBox<(names: Set<String>, readAt: Date)>(([], .distantPast))

    public init(applier: ReplicationApplier, keepSeconds: TimeInterval = 3600, refetchSeconds: TimeInterval = 5) {
        self.applier = applier
        self.keepSeconds = keepSeconds
        self.refetchSeconds = refetchSeconds
    }

    public func publicKeyPEM(region: String, kid: String) async -> String? {
        let now = Date()
        guard await isReplica(region, now: now) else { return nil }
        let due = cache.withLockedValue { cache -> Bool in
            let entry = cache[region]
            if let entry, let fetched = entry.fetchedAt, entry.keys[kid] != nil, now.timeIntervalSince(fetched) < keepSeconds { return false }
            if let entry, now.timeIntervalSince(entry.askedAt) < refetchSeconds { return false }
            cache[region, default: ([:], nil, now)].askedAt = now
            return true
        }
        if due { await fetch(region) }
        return cache.withLockedValue { cache in
            guard let entry = cache[region], let fetched = entry.fetchedAt, now.timeIntervalSince(fetched) < keepSeconds + refetchSeconds else {
                return nil
            }
            return entry.keys[kid]
        }
    }

    private func isReplica(_ region: String, now: Date) async -> Bool {
        let (names, readAt) = replicaNames.withLockedValue { ($0.names, $0.readAt) }
        if now.timeIntervalSince(readAt) < refetchSeconds { return names.contains(region) }
        replicaNames.withLockedValue { $0.readAt = now }   // one reader per period; the others use the last set
        guard let replicas = try? await applier.service.store.replicas() else {
            replicaNames.withLockedValue { $0.readAt = readAt }   // failed: the next caller reads again
            return names.contains(region)
        }
        let fresh = Set(replicas.map(\.location))
        replicaNames.withLockedValue { $0 = (fresh, now) }
        return fresh.contains(region)
    }

    private func fetch(_ region: String) async {
        do {
            guard let replica = try await applier.service.store.replica(location: region) else { return }
            let client = try await applier.client(for: replica)
            let bytes = try await client.document(path: "/api/v1/replication/token-keys", limit: 1 << 20)
            let view = try JSONDecoder().decode(ReplicationTokenKeysView.self, from: Data(bytes))
            guard view.region == region else {
                applier.logger.warning("a replica names itself another region; its tokens are not accepted",
                                       metadata: ["location": "\(region)", "names": "\(view.region.prefix(64))"])
                return
            }
            let keys = Dictionary(view.keys.prefix(64).map { ($0.kid, $0.publicKeyPEM) }, uniquingKeysWith: { a, _ in a })
            cache.withLockedValue { $0[region] = (keys, Date(), Date()) }
        } catch {
            applier.logger.info("could not read a replica's token keys", metadata: ["location": "\(region)", "error": "\(error)"])
        }
    }
}
