import Access
import BerthAPIContract
import Foundation
import HTTPAPI
import Hummingbird
import OCIModel
import RegistryStore
import ServiceLifecycle

/// Replication between regions as a feature (issue 13): `/api/v1/replications` (behind the
/// management check) and the replicas' gauges of `/metrics`.
public struct ReplicationFeature: RegistryFeature {
    let replication: ReplicationService
    let applier: ReplicationApplier?
    let poll: Duration
    /// Regional data endpoints and health-aware routing (items 4-5); nil: no routing, no checks.
    let routing: DataRouting?

    /// `applier` nil: the feed and the configuration only, nothing is applied from peers.
    /// `routing` (needs the applier: its clients reach the peers): peers' health checked, blob
    /// GETs routed to their data endpoints, signed reads verified.
    public init(service: ReplicationService, applier: ReplicationApplier? = nil, poll: Duration = .seconds(1),
                routing: DataRoutingConfiguration? = nil) {
        replication = service
        self.applier = applier
        self.poll = poll
        if let routing, let applier {
            self.routing = DataRouting(configuration: routing, applier: applier,
                                       health: PeerHealthMonitor(failuresToFail: routing.failuresToFail,
                                                                 successesToRecover: routing.successesToRecover))
        } else {
            self.routing = nil
        }
    }

    /// The applier runs once per cluster (the composition root leases it); the health checks on every node.
    public var services: [any Service] {
        applier.map { [ReplicationApplierService(applier: $0, poll: poll)] } ?? []
    }

    /// The per-node health checks of the peers (routing is decided per node, so each checks).
    public var nodeServices: [any Service] {
        routing.map { [PeerHealthService(routing: $0)] } ?? []
    }

    public var blobRouting: (any BlobRouting)? { routing }

    /// The routing's health of a replica as this node sees it.
    func health(_ location: String) -> PeerHealth.Snapshot? { routing?.health.snapshot(location) }

    public func updateMetrics(_ metrics: HTTPMetrics) async throws {
        let statuses = try await replication.statuses()
        metrics.setGauge("berth_replicas", [], Double(statuses.count), help: "Replicas (other regions) this region replicates with")
        if let routing {
            let reads = routing.signedReads.withLockedValue { $0 }
            metrics.setGauge("berth_replication_signed_reads_served", [], Double(reads.served),
                             help: "Signed blob reads this data endpoint served for other regions since start")
            metrics.setGauge("berth_replication_signed_reads_fetched", [], Double(reads.fetched),
                             help: "Blobs a signed read fetched from the signing region (not replicated here yet) since start")
            metrics.setGauge("berth_replication_signed_reads_refused", [], Double(reads.refused),
                             help: "Signed blob reads refused (bad, expired or tampered signature) since start")
        }
        for s in statuses {
            let labels = [("location", s.replica.location)]
            if let routing {
                let health = routing.health.snapshot(s.replica.location)
                metrics.setGauge("berth_replication_peer_healthy", labels, health?.state == .healthy ? 1 : 0,
                                 help: "1 when this node's end-to-end checks find the replica healthy (only then are clients routed to it)")
                metrics.setGauge("berth_replication_redirects", labels, Double(routing.redirects.withLockedValue { $0[s.replica.location] ?? 0 }),
                                 help: "Blob GETs sent to the replica's data endpoint since start")
            }
            metrics.setGauge("berth_replication_region_endpoint_enabled", labels, s.replica.regionEndpointEnabled ? 1 : 0,
                             help: "1 when clients may be routed to the replica's own data endpoint")
            metrics.setGauge("berth_replication_bytes_pending", labels, Double(s.progress.bytesPending),
                             help: "Bytes of a replica's blobs known to be missing here and not fetched yet")
            if let lag = s.lagEvents {
                metrics.setGauge("berth_replication_lag_events", labels, Double(lag), help: "Events of a replica's log not applied here yet")
            }
            if let lag = s.lagSeconds {
                metrics.setGauge("berth_replication_lag_seconds", labels, lag, help: "Age of the oldest event of a replica's log not applied here yet")
            }
        }
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let replication = self.replication
        let server = routes.server
        // A peer region reads this region's changes: registry-wide replication/read (the
        // Replicator role on `*`), not the management check; everyone else is refused.
        routes.root.get("api/v1/replication/events") { request, context in
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: nil, action: .replicationRead)
            let after = try server.queryInt(request, "after") ?? 0
            let limit = try server.queryInt(request, "limit") ?? 100
            let page = try await replication.feed(after: Int64(after), limit: limit)
            return server.json(ReplicationEventPage(region: replication.region, latestSequence: page.latest, events: page.events.map { e in
                ReplicationEventView(sequence: e.event.sequence, at: e.event.timestamp, action: e.event.action.rawValue,
                                     repository: e.event.repository, digest: e.event.digest, mediaType: e.event.mediaType,
                                     size: e.event.size, tag: e.event.tag, subject: e.subject, detail: e.event.detail, region: e.region,
                                     hlc: "\(e.event.stamp.milliseconds).\(e.event.stamp.logical)", replaces: e.replaces)
            }))
        }
        // The document a `setting` event of the feed names (the peer checks it against the event's digest).
        routes.root.get("api/v1/replication/settings/:name") { request, context in
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: nil, action: .replicationRead)
            let name = try context.parameters.require("name")
            guard let document = try await replication.settingDocument(name) else {
                throw ReplicationError.notFound("setting \(name)")
            }
            return server.json(ReplicatedSettingView(name: name, document: String(decoding: document, as: UTF8.self)))
        }
        // An access record an `access` event of the feed names (the peer checks it against the
        // event's digest): its password hashes go to the Replicator only, and every read is audited.
        routes.root.get("api/v1/replication/access/:kind/:name") { request, context in
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: nil, action: .replicationRead)
            guard server.access.holdsReplicatorRole(caller) else {
                await server.access.recordAudit(actor: caller?.principal.name ?? "-", address: server.address(request, context)?.description ?? "-",
                                                action: "replication.access-record.read", target: "-", outcome: "denied")
                throw RegistryError(.denied, "access records are read by an identity holding the Replicator role only", status: 403)
            }
            let rawKind = try context.parameters.require("kind"), name = try context.parameters.require("name")
            guard let kind = AccessRecordKind(rawValue: rawKind) else { throw ReplicationError.invalid("unknown access record kind") }
            guard ReplicationPlan.isReplicableAccessName(name) else { throw ReplicationError.invalid("not an access record name") }
            let record = try await server.access.replicatedRecord(kind: kind, name: name)
            await server.access.recordAudit(actor: caller?.principal.name ?? "-", address: server.address(request, context)?.description ?? "-",
                                            action: "replication.access-record.read", target: "\(kind.rawValue):\(name)",
                                            outcome: record == nil ? "not-found" : "ok")
            guard let record else { throw ReplicationError.notFound("access record \(kind.rawValue):\(name)") }
            return server.json(ReplicatedAccessRecordView(kind: kind.rawValue, name: name, record: String(decoding: record, as: UTF8.self)))
        }
        // The public keys this region signs registry tokens with, for a peer accepting them.
        routes.root.get("api/v1/replication/token-keys") { request, context in
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: nil, action: .replicationRead)
            let keys = try await server.access.tokens.publicKeys()
            return server.json(ReplicationTokenKeysView(region: replication.region, keys: keys.map { .init(kid: $0.kid, publicKeyPEM: $0.pem) }))
        }
        // A peer's end-to-end check of this region (database, storage, replication lag): Replicator.
        routes.root.get("api/v1/replication/health") { request, context in
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: nil, action: .replicationRead)
            return server.json(await replication.health(registry: server.registry))
        }
        // The public key this region signs its data-endpoint redirects with, for a peer that verifies them.
        let routing = self.routing
        routes.root.get("api/v1/replication/data-key") { request, context in
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: nil, action: .replicationRead)
            guard let routing else { throw ReplicationError.notFound("a data-endpoint key (routing is off in this region)") }
            return server.json(try await routing.currentKey())
        }
        let api = routes.management
        api.get("replications") { _, _ in
            server.json(try await replication.list().map(ReplicaView.init))
        }
        api.post("replications") { request, _ in
            let body = try await server.decode(ReplicationRequest.self, request)
            if body.clearCredential == true { throw ReplicationError.invalid("clearCredential is for updates") }
            let replica = try await replication.create(location: body.location ?? "", endpoint: body.endpoint ?? "", credential: body.credential,
                                                       regionEndpointEnabled: body.regionEndpointEnabled ?? true,
                                                       dataEndpoint: body.dataEndpoint)
            return server.json(ReplicaView(replica), status: .created)
        }
        api.get("replications/:location") { _, context in
            server.json(ReplicaView(try await replication.get(try context.parameters.require("location"))))
        }
        api.patch("replications/:location") { request, context in
            let location = try context.parameters.require("location")
            let body = try await server.decode(ReplicationRequest.self, request)
            if let named = body.location, named != location { throw ReplicationError.invalid("a replica's location cannot change") }
            let replica = try await replication.update(location: location, endpoint: body.endpoint, credential: body.credential,
                                                       clearCredential: body.clearCredential ?? false,
                                                       regionEndpointEnabled: body.regionEndpointEnabled,
                                                       dataEndpoint: body.dataEndpoint)
            return server.json(ReplicaView(replica))
        }
        api.delete("replications/:location") { _, context in
            try await replication.delete(location: try context.parameters.require("location"))
            return Response(status: .noContent)
        }
        api.get("replication/conflicts") { request, _ in
            let location = request.uri.queryParameters["location"].map(String.init)
            let limit = try server.queryInt(request, "limit") ?? 100
            return server.json(try await replication.conflicts(location: location, limit: limit).map(ReplicationConflictView.init))
        }
        api.get("replications/:location/status") { _, context in
            var status = try await replication.status(try context.parameters.require("location"))
            status.health = routing?.health.snapshot(status.replica.location)
            return server.json(ReplicaStatusView(status))
        }
    }
}

/// Replication errors in the management API's envelope.
extension ReplicationError: ManagementErrorConvertible {
    public var managementError: ManagementError {
        switch self {
        case .invalid(let m): ManagementError(status: .badRequest, code: "INVALID", message: m)
        case .notFound(let m): ManagementError(status: .notFound, code: "NOT_FOUND", message: "\(m) not found")
        case .conflict(let m): ManagementError(status: .conflict, code: "CONFLICT", message: m)
        }
    }
}

// The HTTP edge: the service's values in the management API's contract.

extension ReplicaView {
    init(_ r: Replica) {
        self.init(location: r.location, endpoint: r.endpoint, credentialSet: r.credentialSet, regionEndpointEnabled: r.regionEndpointEnabled,
                  createdAt: r.createdAt, dataEndpoint: r.dataEndpoint)
    }
}

extension ReplicaStatusView {
    init(_ s: ReplicaStatus) {
        self.init(location: s.replica.location, endpoint: s.replica.endpoint, regionEndpointEnabled: s.replica.regionEndpointEnabled,
                  peerSequence: s.progress.peerSequence, peerSequenceAt: s.progress.peerSequenceAt, appliedSequence: s.appliedSequence,
                  lagEvents: s.lagEvents, lagSeconds: s.lagSeconds, bytesPending: s.progress.bytesPending,
                  lastError: s.progress.lastError, lastErrorAt: s.progress.lastErrorAt,
                  health: s.health.map { $0.state.rawValue }, healthSince: s.health?.since, healthError: s.health?.lastError)
    }
}

extension ReplicationConflictView {
    init(_ c: ReplicationConflict) {
        func stamp(_ s: EventStamp) -> String { "\(s.milliseconds).\(s.logical)@\(s.region ?? "")" }
        self.init(id: c.id, location: c.location, kind: c.kind, repository: c.repository, key: c.key, loser: c.loserValue,
                  loserStamp: stamp(c.loserStamp), winner: c.winnerValue, winnerStamp: c.winnerStamp.map(stamp), recordedAt: c.recordedAt)
    }
}
