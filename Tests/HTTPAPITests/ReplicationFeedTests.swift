import Access
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import ReplicationFeature
import Testing
@testable import HTTPAPI

/// `GET /api/v1/replication/events` (issue 13, item 2): the event log as a peer region reads it.
@Suite struct ReplicationFeedTests {
    func makeServer() async throws -> (app: some ApplicationProtocol, access: AccessControl, store: any MetadataBackend) {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let backend = registry.metadata as! any MetadataBackend
        let access = try await AccessControl.open(store: backend, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let key = try await ReplicationService.sharedSealingKey(SharedKeyMaterial(store: backend, kek: KeyEncryptionKey.generate()))
        let service = ReplicationService(store: backend, events: backend, sealingKey: key, logger: logger, region: "westeurope",
                                         content: backend, registers: backend, settings: backend)
        let app = try await BerthServer.makeApplication(registry: registry, access: access,
                                                        features: standardFeatures(registry) + [ReplicationFeature(service: service)],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        return (app, access, backend)
    }

    func identity(_ access: AccessControl, _ name: String, role: String) async throws -> HTTPFields {
        _ = try await access.createIdentity(testActor, name: name, withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: name)
        _ = try await access.assignRole(testActor, assignee: name, role: role, scope: "*")
        return basic(name, password)
    }

    func page(_ response: TestResponse) throws -> ReplicationEventPage {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(ReplicationEventPage.self, from: Data(buffer: response.body))
    }

    /// A manifest of `name`'s bytes in `repo`, with its one blob linked first.
    func pushManifest(_ store: any MetadataBackend, _ repo: String, _ name: String, tag: String?, subject: Digest? = nil) async throws -> Digest {
        let blob = Digest.compute(Array("blob-\(name)".utf8))
        try await store.linkBlob(repository: repo, digest: blob, size: 5, inline: nil)
        let bytes = Array(name.utf8)
        let record = ManifestRecord(digest: Digest.compute(bytes), mediaType: MediaType.ociManifest, size: Int64(bytes.count),
                                    artifactType: subject == nil ? nil : "application/example", subject: subject, annotations: nil,
                                    createdAt: Date())
        var push = ManifestPush(repository: repo, record: record, bytes: bytes, tag: tag, blobs: [blob], children: [])
        if let tag { push.expectedTagTarget = try await store.tagTarget(repository: repo, tag: tag) }
        #expect(try await store.putManifest(push) == .stored(previousTagTarget: nil))
        return record.digest
    }

    @Test func onlyAReplicatorReadsTheFeed() async throws {
        let s = try await makeServer()
        let puller = try await identity(s.access, "puller", role: "Pull")
        let reader = try await identity(s.access, "reader", role: "Reader")
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        try await s.app.test(.router) { client in
            func status(_ uri: String, _ headers: HTTPFields = [:]) async throws -> HTTPResponse.Status {
                try await client.execute(uri: uri, method: .get, headers: headers).status
            }
            let anonymous = try await status("/api/v1/replication/events")
            #expect(anonymous == .unauthorized)
            let pull = try await status("/api/v1/replication/events", puller)
            #expect(pull == .forbidden)
            // management/read is not replication/read
            let read = try await status("/api/v1/replication/events", reader)
            #expect(read == .forbidden)
            let peer = try await status("/api/v1/replication/events", replicator)
            #expect(peer == .ok)
            // nor does the Replicator role open the management API
            let management = try await status("/api/v1/replications", replicator)
            #expect(management == .forbidden)
        }
    }

    @Test func theFeedCarriesWhatAPeerAppliesWithOriginAndStamp() async throws {
        let s = try await makeServer()
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        let image = try await pushManifest(s.store, "app", "image", tag: "v1")
        let signature = try await pushManifest(s.store, "app", "signature", tag: nil, subject: image)
        #expect(try await s.store.deleteTag(TagDeletion(repository: "app", tag: "v1", expectedTarget: image, dropLock: true,
                                                        tagHistoryLimit: 0)) == .deleted)
        // a change applied from a peer keeps the peer's region and stamp
        let peerStamp = EventStamp(region: "southeastasia", milliseconds: 1_700_000_000_000, logical: 4)
        try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:southeastasia", address: "-", replicated: peerStamp)) {
            try await s.store.linkBlob(repository: "app", digest: Digest.compute(Array("peer".utf8)), size: 4, inline: nil)
        }
        try await s.app.test(.router) { client in
            let feed = try page(try await client.execute(uri: "/api/v1/replication/events?limit=1000", method: .get, headers: replicator))
            #expect(feed.region == "westeurope")
            #expect(feed.latestSequence == feed.events.last?.sequence)
            // the Replicator identity's own writes (access events) come first; the content after
            var all = feed
            all.events = feed.events.filter { $0.action != "access" }
            #expect(feed.events.prefix(feed.events.count - all.events.count).allSatisfy { $0.action == "access" })
            #expect(all.events.map(\.action) == ["blob.push", "push", "tag.move", "blob.push", "push", "tag.delete", "blob.push"])
            let push = all.events[1], move = all.events[2], referrer = all.events[4], delete = all.events[5], applied = all.events[6]
            #expect(push.digest == image.string && push.mediaType == MediaType.ociManifest && push.subject == nil)
            #expect(move.tag == "v1" && move.digest == image.string)
            #expect(referrer.digest == signature.string && referrer.subject == image.string)
            #expect(delete.tag == "v1" && delete.digest == image.string)
            #expect(all.events.dropLast().allSatisfy { $0.region == "westeurope" })
            #expect(applied.region == "southeastasia" && applied.hlc == "1700000000000.4")
            let stamps = all.events.dropLast().map { $0.hlc.split(separator: ".").map { Int64($0)! } }
            #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) })

            // pages: after and limit
            let second = try page(try await client.execute(uri: "/api/v1/replication/events?after=\(all.events[1].sequence)&limit=2",
                                                           method: .get, headers: replicator))
            #expect(second.events.map(\.sequence) == all.events[2...3].map(\.sequence))
            let end = try page(try await client.execute(uri: "/api/v1/replication/events?after=\(all.latestSequence)", method: .get,
                                                        headers: replicator))
            #expect(end.events.isEmpty && end.latestSequence == all.latestSequence)
            for bad in ["limit=0", "limit=1001", "after=-1", "after=x"] {
                let r = try await client.execute(uri: "/api/v1/replication/events?\(bad)", method: .get, headers: replicator)
                #expect(r.status == .badRequest, "\(bad)")
            }
        }
    }

    /// A register write names the write before it (a peer tells a successor from a concurrent
    /// write by it); the first write of a tag names none.
    @Test func tagWritesNameTheWriteTheyReplaced() async throws {
        let s = try await makeServer()
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        _ = try await pushManifest(s.store, "app", "first", tag: "v1")
        let second = try await pushManifest(s.store, "app", "second", tag: nil)
        var move = ManifestPush(repository: "app", record: try #require(try await s.store.manifest(repository: "app", digest: second)),
                                bytes: Array("second".utf8), tag: "v1", blobs: [], children: [])
        move.expectedTagTarget = try await s.store.tagTarget(repository: "app", tag: "v1")
        _ = try await s.store.putManifest(move)
        try await s.app.test(.router) { client in
            let all = try page(try await client.execute(uri: "/api/v1/replication/events?limit=1000", method: .get, headers: replicator))
            let moves = all.events.filter { $0.action == "tag.move" }
            #expect(moves.count == 2)
            #expect(moves[0].replaces == nil)
            #expect(moves[1].replaces == "\(moves[0].hlc)@westeurope")
            #expect(all.events.filter { $0.action != "tag.move" && $0.action != "access" }.allSatisfy { $0.replaces == nil })
        }
    }

    /// Issue 13: a setting is a register: its writes in the feed carry the document's digest and
    /// name the write before them, and a peer (only a Replicator) reads the document by name.
    @Test func settingWritesCarryTheirDocumentWhichAReplicatorReads() async throws {
        let s = try await makeServer()
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        let reader = try await identity(s.access, "reader", role: "Reader")
        let first = Data(#"{"enabled":true,"days":3}"#.utf8), second = Data(#"{"enabled":true,"days":5}"#.utf8)
        try await s.store.setSettingDocument("soft-delete-policy", first)
        try await s.store.setSettingDocument("soft-delete-policy", second)
        try await s.app.test(.router) { client in
            let all = try page(try await client.execute(uri: "/api/v1/replication/events?limit=1000", method: .get, headers: replicator))
            let writes = all.events.filter { $0.action == "setting" && $0.detail == "soft-delete-policy" }
            #expect(writes.map(\.digest) == [Digest.compute(Array(first)).string, Digest.compute(Array(second)).string])
            #expect(writes.count == 2 && writes[0].replaces == nil && writes[1].replaces == "\(writes[0].hlc)@westeurope")
            let doc = try await client.execute(uri: "/api/v1/replication/settings/soft-delete-policy", method: .get, headers: replicator)
            let view = try JSONDecoder().decode(ReplicatedSettingView.self, from: Data(buffer: doc.body))
            #expect(doc.status == .ok && view.name == "soft-delete-policy" && Data(view.document.utf8) == second)
            let refused = try await client.execute(uri: "/api/v1/replication/settings/soft-delete-policy", method: .get, headers: reader)
            #expect(refused.status == .forbidden)
            for name in ["Bad%20Name", "no-such-setting"] {
                let bad = try await client.execute(uri: "/api/v1/replication/settings/\(name)", method: .get, headers: replicator)
                #expect(bad.status == .badRequest, "\(name)")
            }
            let unstored = try await client.execute(uri: "/api/v1/replication/settings/gc-policy", method: .get, headers: replicator)
            #expect(unstored.status == .notFound)
        }
    }

    /// Issue 13: access records are registers: each write is an `access` event in the feed
    /// (kind:name and the SHA-256 of the record, nothing secret), and only a Replicator reads the
    /// record itself (password hashes included), every read audited.
    @Test func accessWritesAreInTheFeedAndOnlyAReplicatorReadsTheRecord() async throws {
        let s = try await makeServer()
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        let reader = try await identity(s.access, "reader", role: "Reader")
        let secondOwner = try await identity(s.access, "another-owner", role: "Owner")
        let (_, passwords) = try await s.access.createToken(testActor, name: "ci", scopeMap: "_repositories_pull")
        let tokenAuth = basic("ci", try #require(passwords["password1"]))
        try await s.app.test(.router) { client in
            let all = try page(try await client.execute(uri: "/api/v1/replication/events?limit=1000", method: .get, headers: replicator))
            let writes = all.events.filter { $0.action == "access" }
            // the bootstrap owner is this region's own; the identities made since and the token are registers
            #expect(!writes.contains { $0.detail == "identity:owner" })
            let peerWrites = writes.filter { $0.detail == "identity:peer" }
            #expect(peerWrites.count == 3)   // created, password set, role assigned
            #expect(peerWrites[0].replaces == nil && peerWrites[1].replaces == "\(peerWrites[0].hlc)@westeurope")
            #expect(writes.allSatisfy { $0.repository.isEmpty && $0.tag == nil && $0.region == "westeurope" })
            let tokenWrite = try #require(writes.last { $0.detail == "token:ci" })
            // nothing of a secret in the feed: no hash, no password
            let feedText = String(decoding: try await client.execute(uri: "/api/v1/replication/events?limit=1000", method: .get,
                                                                    headers: replicator).body.readableBytesView, as: UTF8.self)
            let password1 = try #require(passwords["password1"])
            #expect(!feedText.contains("passwordHash") && !feedText.contains(password1))

            let answer = try await client.execute(uri: "/api/v1/replication/access/token/ci", method: .get, headers: replicator)
            #expect(answer.status == .ok)
            let view = try JSONDecoder().decode(ReplicatedAccessRecordView.self, from: Data(buffer: answer.body))
            #expect(view.kind == "token" && view.name == "ci")
            #expect(Digest.compute(Array(view.record.utf8)).string == tokenWrite.digest)
            #expect(view.record.contains("\"hash\""))
            // everyone but the Replicator is refused, and nothing of the record is in the answer:
            // Owners too, although their rights include the Replicator's action (no management
            // answer shows a password hash)
            for headers in [reader, tokenAuth, HTTPFields(), owner, secondOwner] {
                let refused = try await client.execute(uri: "/api/v1/replication/access/token/ci", method: .get, headers: headers)
                #expect(refused.status == .forbidden || refused.status == .unauthorized)
                #expect(!String(buffer: refused.body).contains("hash"))
            }
            for (uri, status) in [("network/rules", HTTPResponse.Status.badRequest), ("identity/Bad%20Name", .badRequest),
                                  ("identity/nobody", .notFound), ("scope-map/_repositories_pull", .badRequest),
                                  ("scope-map/_repositories_admin", .badRequest), ("registry/anonymous-pull", .ok)] {
                let r = try await client.execute(uri: "/api/v1/replication/access/" + uri, method: .get, headers: replicator)
                #expect(r.status == status, "\(uri)")
            }
        }
        let audited = try await s.access.audit(since: Date(timeIntervalSince1970: 0), limit: 1000)
        #expect(audited.contains { $0.action == "replication.access-record.read" && $0.target == "token:ci" && $0.actor == "peer" })
    }

    /// Issue 13: a peer verifies this region's registry tokens with the public keys it reads here
    /// (Replicator only; public halves, never the private keys).
    @Test func onlyAReplicatorReadsTheTokenVerificationKeys() async throws {
        let s = try await makeServer()
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        let reader = try await identity(s.access, "reader", role: "Reader")
        try await s.app.test(.router) { client in
            let answer = try await client.execute(uri: "/api/v1/replication/token-keys", method: .get, headers: replicator)
            #expect(answer.status == .ok)
            let view = try JSONDecoder().decode(ReplicationTokenKeysView.self, from: Data(buffer: answer.body))
            #expect(view.region == "westeurope" && view.keys.first?.kid == s.access.tokens.currentKeyID)
            #expect(view.keys.allSatisfy { $0.publicKeyPEM.hasPrefix("-----BEGIN PUBLIC KEY-----") })
            #expect(!String(buffer: answer.body).contains("PRIVATE"))
            for headers in [reader, HTTPFields()] {
                let refused = try await client.execute(uri: "/api/v1/replication/token-keys", method: .get, headers: headers)
                #expect(refused.status == .forbidden || refused.status == .unauthorized)
                #expect(!String(buffer: refused.body).contains("PUBLIC KEY"))
            }
        }
    }

    @Test func theConflictLogIsReadWithManagementRights() async throws {
        let s = try await makeServer()
        let replicator = try await identity(s.access, "peer", role: "Replicator")
        let owner = basic("owner", ownerPassword)
        let loser = EventStamp(region: "westeurope", milliseconds: 1_700_000_000_000, logical: 1)
        let winner = EventStamp(region: "southeastasia", milliseconds: 1_700_000_000_500, logical: 0)
        for (location, key) in [("southeastasia", "v1"), ("eastus", "v2")] {
            try await s.store.recordReplicationConflict(ReplicationConflict(
                location: location, kind: "tag", repository: "app", key: key, loserValue: "sha256:" + String(repeating: "a", count: 64),
                loserStamp: loser, winnerValue: "tombstone", winnerStamp: winner, recordedAt: Date(timeIntervalSince1970: 1_700_000_001)))
        }
        try await s.app.test(.router) { client in
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let all = try await client.execute(uri: "/api/v1/replication/conflicts", method: .get, headers: owner)
            #expect(all.status == .ok)
            let views = try decoder.decode([ReplicationConflictView].self, from: Data(buffer: all.body))
            #expect(views.map(\.key) == ["v2", "v1"])
            #expect(views[1].location == "southeastasia" && views[1].loserStamp == "1700000000000.1@westeurope"
                    && views[1].winner == "tombstone" && views[1].winnerStamp == "1700000000500.0@southeastasia")
            let one = try await client.execute(uri: "/api/v1/replication/conflicts?location=eastus", method: .get, headers: owner)
            #expect(try decoder.decode([ReplicationConflictView].self, from: Data(buffer: one.body)).map(\.key) == ["v2"])
            let bad = try await client.execute(uri: "/api/v1/replication/conflicts?limit=0", method: .get, headers: owner)
            #expect(bad.status == .badRequest)
            let peer = try await client.execute(uri: "/api/v1/replication/conflicts", method: .get, headers: replicator)
            #expect(peer.status == .forbidden)
            let anonymous = try await client.execute(uri: "/api/v1/replication/conflicts", method: .get)
            #expect(anonymous.status == .unauthorized)
        }
    }
}
