import Access
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RegistryCore
import RegistryStore
import ReplicationFeature
import Testing
@testable import HTTPAPI

/// `/api/v1/replications` (issue 13, item 1): replicas' configuration, sealed credentials, status and gauges.
@Suite struct ReplicationAPITests {
    struct Server<App: ApplicationProtocol> {
        let app: App
        let access: AccessControl
        let store: any ReplicationStore & EventLogStore
        let service: ReplicationService
    }

    func makeServer(policy: OutboundPolicy = OutboundPolicy()) async throws -> Server<some ApplicationProtocol> {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let backend = registry.metadata as! any MetadataBackend
        let access = try await AccessControl.open(store: backend, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let key = try await ReplicationService.sharedSealingKey(SharedKeyMaterial(store: backend, kek: KeyEncryptionKey.generate()))
        let service = ReplicationService(store: backend, events: backend, sealingKey: key, policy: policy, logger: logger)
        let app = try await BerthServer.makeApplication(registry: registry, access: access,
                                                        features: standardFeatures(registry) + [ReplicationFeature(service: service)],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        return Server(app: app, access: access, store: backend, service: service)
    }

    func body(_ value: some Encodable) -> ByteBuffer { ByteBuffer(bytes: Array(try! JSONEncoder().encode(value))) }

    func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(T.self, from: Data(buffer: response.body))
    }

    func managementCode(_ response: TestResponse) -> String? {
        struct Envelope: Decodable { struct E: Decodable { let code: String }; let error: E }
        return (try? JSONDecoder().decode(Envelope.self, from: Data(buffer: response.body)))?.error.code
    }

    @Test func replicasAreCreatedListedUpdatedAndDeleted() async throws {
        let s = try await makeServer()
        try await s.app.test(.router) { client in
            let create = ReplicationRequest(location: "southeastasia", endpoint: "https://203.0.113.10:5000/", credential: "replicator:s3cret-value")
            let created = try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner, body: body(create))
            #expect(created.status == .created)
            #expect(!String(buffer: created.body).contains("s3cret-value"))
            let view = try decode(ReplicaView.self, created)
            #expect(view.location == "southeastasia" && view.endpoint == "https://203.0.113.10:5000" && view.credentialSet
                    && view.regionEndpointEnabled)

            let again = try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner, body: body(create))
            #expect(again.status == .conflict && managementCode(again) == "CONFLICT")
            let second = ReplicationRequest(location: "eastus", endpoint: "http://198.51.100.7", regionEndpointEnabled: false)
            #expect(try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner, body: body(second)).status == .created)

            let list = try decode([ReplicaView].self, try await client.execute(uri: "/api/v1/replications", method: .get, headers: owner))
            #expect(list.map(\.location) == ["eastus", "southeastasia"])
            #expect(list.map(\.credentialSet) == [false, true] && list.map(\.regionEndpointEnabled) == [false, true])

            let off = try await client.execute(uri: "/api/v1/replications/southeastasia", method: .patch, headers: owner,
                                               body: body(ReplicationRequest(regionEndpointEnabled: false)))
            #expect(off.status == .ok)
            let shown = try decode(ReplicaView.self, try await client.execute(uri: "/api/v1/replications/southeastasia", method: .get, headers: owner))
            #expect(!shown.regionEndpointEnabled && shown.credentialSet && shown.endpoint == "https://203.0.113.10:5000")
            // The credential was given for that host: a new endpoint alone would carry it elsewhere.
            let moved = try await client.execute(uri: "/api/v1/replications/southeastasia", method: .patch, headers: owner,
                                                 body: body(ReplicationRequest(endpoint: "https://203.0.113.99")))
            #expect(moved.status == .badRequest)
            let stayed = try decode(ReplicaView.self, try await client.execute(uri: "/api/v1/replications/southeastasia", method: .get, headers: owner))
            #expect(stayed.endpoint == "https://203.0.113.10:5000" && stayed.credentialSet)
            let movedWithCredential = try await client.execute(
                uri: "/api/v1/replications/southeastasia", method: .patch, headers: owner,
                body: body(ReplicationRequest(endpoint: "https://203.0.113.99", credential: "replicator:other-value")))
            #expect(movedWithCredential.status == .ok)
            let cleared = try await client.execute(uri: "/api/v1/replications/southeastasia", method: .patch, headers: owner,
                                                   body: body(ReplicationRequest(clearCredential: true)))
            #expect(try decode(ReplicaView.self, cleared).credentialSet == false)

            #expect(try await client.execute(uri: "/api/v1/replications/southeastasia", method: .delete, headers: owner).status == .noContent)
            let gone = try await client.execute(uri: "/api/v1/replications/southeastasia", method: .get, headers: owner)
            #expect(gone.status == .notFound && managementCode(gone) == "NOT_FOUND")
            let deletedAgain = try await client.execute(uri: "/api/v1/replications/southeastasia", method: .delete, headers: owner)
            #expect(deletedAgain.status == .notFound)
            let patchMissing = try await client.execute(uri: "/api/v1/replications/nowhere", method: .patch, headers: owner,
                                                        body: body(ReplicationRequest(regionEndpointEnabled: true)))
            #expect(patchMissing.status == .notFound)
        }
    }

    @Test(arguments: [
        ("Southeast", "https://203.0.113.10"),           // upper case
        ("", "https://203.0.113.10"),                    // empty
        ("-sea", "https://203.0.113.10"),                // leading '-'
        (String(repeating: "a", count: 65), "https://203.0.113.10"),
        ("sea", "ftp://203.0.113.10"),                   // not http(s)
        ("sea", "https://user:pw@203.0.113.10"),         // credentials in the URL
        ("sea", "https://203.0.113.10/?x=1"),            // query
        ("sea", "not a url"),
        ("sea", "https://127.0.0.1:5000"),               // loopback, not allowed by the operator
        ("sea", "http://10.1.2.3"),                      // private
        ("sea", "http://169.254.169.254"),               // link-local (cloud metadata)
    ])
    func badReplicasAreRefused(_ location: String, _ endpoint: String) async throws {
        let s = try await makeServer()
        try await s.app.test(.router) { client in
            let r = try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner,
                                             body: body(ReplicationRequest(location: location, endpoint: endpoint)))
            #expect(r.status == .badRequest && managementCode(r) == "INVALID")
            let list = try decode([ReplicaView].self, try await client.execute(uri: "/api/v1/replications", method: .get, headers: owner))
            #expect(list.isEmpty)
        }
    }

    @Test func badCredentialsAndBodiesAreRefused() async throws {
        let s = try await makeServer()
        try await s.app.test(.router) { client in
            for credential in ["no-colon", ":secret", "name:", "name:se\ncret"] {
                let r = try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner,
                                                 body: body(ReplicationRequest(location: "sea", endpoint: "https://203.0.113.10", credential: credential)))
                #expect(r.status == .badRequest && managementCode(r) == "INVALID")
            }
            for raw in ["{", "[]", "{\"location\":\"sea\",\"location\":\"x\",\"endpoint\":\"https://203.0.113.10\"}"] {
                let r = try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner, body: ByteBuffer(string: raw))
                #expect(r.status == .badRequest)
            }
            #expect(try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner,
                                             body: body(ReplicationRequest(location: "sea", endpoint: "https://203.0.113.10"))).status == .created)
            let both = try await client.execute(uri: "/api/v1/replications/sea", method: .patch, headers: owner,
                                                body: body(ReplicationRequest(credential: "a:b", clearCredential: true)))
            #expect(both.status == .badRequest)
            let rename = try await client.execute(uri: "/api/v1/replications/sea", method: .patch, headers: owner,
                                                  body: body(ReplicationRequest(location: "other")))
            #expect(rename.status == .badRequest)
            let loopback = try await client.execute(uri: "/api/v1/replications/sea", method: .patch, headers: owner,
                                                    body: body(ReplicationRequest(endpoint: "http://127.0.0.1:1")))
            #expect(loopback.status == .badRequest)
            let kept = try decode(ReplicaView.self, try await client.execute(uri: "/api/v1/replications/sea", method: .get, headers: owner))
            #expect(kept.endpoint == "https://203.0.113.10")
        }
    }

    @Test func loopbackPeersNeedTheOperatorsAllowance() async throws {
        let s = try await makeServer(policy: try OutboundPolicy(allow: "127.0.0.1"))
        try await s.app.test(.router) { client in
            let r = try await client.execute(uri: "/api/v1/replications", method: .post, headers: owner,
                                             body: body(ReplicationRequest(location: "local", endpoint: "http://127.0.0.1:5001")))
            #expect(r.status == .created)
        }
    }

    @Test func credentialsAreSealedAndBoundToTheirReplica() async throws {
        let s = try await makeServer()
        _ = try await s.service.create(location: "a", endpoint: "https://203.0.113.10", credential: "replicator:plain-secret", regionEndpointEnabled: true)
        _ = try await s.service.create(location: "b", endpoint: "https://203.0.113.11", credential: nil, regionEndpointEnabled: true)
        let stored = try #require(try await s.store.replica(location: "a")?.sealedCredential)
        #expect(stored.range(of: Data("plain-secret".utf8)) == nil)
        #expect(try await s.service.credential(location: "a") == "replicator:plain-secret")
        #expect(try await s.service.credential(location: "b") == nil)
        // the sealed value copied onto another replica does not open there
        _ = try await s.store.updateReplica(location: "b", endpoint: nil, sealedCredential: .some(stored), regionEndpointEnabled: nil)
        await #expect(throws: ReplicationError.self) { try await s.service.credential(location: "b") }
    }

    @Test func statusReportsLagBytesAndLastError() async throws {
        let s = try await makeServer()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        _ = try await s.service.create(location: "sea", endpoint: "https://203.0.113.10", credential: nil, regionEndpointEnabled: true)
        // never replicated: lag unknown
        let fresh = try await s.service.status("sea", now: now)
        #expect(fresh.lagEvents == nil && fresh.lagSeconds == nil && fresh.appliedSequence == nil && fresh.progress.bytesPending == 0)
        // the peer's log is at 10, this region applied up to 4, the oldest pending event is 90 s old
        _ = try await s.store.registerEventConsumer(name: ReplicationService.consumerName("sea"), start: .beginning)
        let consumer = try #require(try await s.store.eventConsumer(named: ReplicationService.consumerName("sea")))
        #expect(try await s.store.advanceEventConsumer(name: consumer.name, from: consumer.cursor, to: 4))
        _ = try await s.store.recordReplicaProgress(location: "sea", ReplicaProgress(
            peerSequence: 10, peerSequenceAt: now, oldestPendingAt: now.addingTimeInterval(-90), bytesPending: 4096,
            lastError: "blob sha256:ab… answered 503", lastErrorAt: now))
        let behind = try await s.service.status("sea", now: now)
        #expect(behind.appliedSequence == 4 && behind.lagEvents == 6 && behind.lagSeconds == 90 && behind.progress.bytesPending == 4096)
        // caught up: no lag, whatever the oldest pending time says
        #expect(try await s.store.advanceEventConsumer(name: consumer.name, from: 4, to: 10))
        let caughtUp = try await s.service.status("sea", now: now)
        #expect(caughtUp.lagEvents == 0 && caughtUp.lagSeconds == 0)

        try await s.app.test(.router) { client in
            let r = try await client.execute(uri: "/api/v1/replications/sea/status", method: .get, headers: owner)
            #expect(r.status == .ok)
            let view = try decode(ReplicaStatusView.self, r)
            #expect(view.location == "sea" && view.peerSequence == 10 && view.appliedSequence == 10 && view.lagEvents == 0
                    && view.bytesPending == 4096 && view.lastError == "blob sha256:ab… answered 503")
            #expect(try await client.execute(uri: "/api/v1/replications/nowhere/status", method: .get, headers: owner).status == .notFound)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("berth_replicas 1"))
            #expect(metrics.contains("berth_replication_lag_events{location=\"sea\"} 0"))
            #expect(metrics.contains("berth_replication_bytes_pending{location=\"sea\"} 4096"))
        }
    }

    @Test func onlyManagersSeeOrChangeReplicas() async throws {
        let s = try await makeServer()
        _ = try await s.access.createIdentity(testActor, name: "puller", withPassword: false)
        let password = try await s.access.resetIdentityPassword(testActor, name: "puller")
        _ = try await s.access.assignRole(testActor, assignee: "puller", role: "Pull", scope: "*")
        let puller = basic("puller", password)
        try await s.app.test(.router) { client in
            #expect(try await client.execute(uri: "/api/v1/replications", method: .get).status == .unauthorized)
            #expect(try await client.execute(uri: "/api/v1/replications", method: .get, headers: puller).status == .forbidden)
            let r = try await client.execute(uri: "/api/v1/replications", method: .post, headers: puller,
                                             body: body(ReplicationRequest(location: "sea", endpoint: "https://203.0.113.10")))
            #expect(r.status == .forbidden)
            #expect(try await s.store.replicas().isEmpty)
        }
    }
}
