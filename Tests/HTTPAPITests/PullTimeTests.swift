import Access
import Backends
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
import Testing
@testable import HTTPAPI

/// Pull times: a `/v2/` manifest GET is noted in memory and reaches the store with the next
/// flush; the management listings (what the CLI and the console read) show it.
@Suite struct PullTimeTests {
    struct Listed: Decodable { let name: String?; let digest: String; let lastPulledAt: Date? }

    func listing(_ client: any TestClientProtocol, _ path: String) async throws -> (items: [Listed], raw: String) {
        let r = try await client.execute(uri: "/api/v1/repository/\(path)?name=pulls/app", method: .get, headers: owner)
        #expect(r.status == .ok)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return (try decoder.decode([Listed].self, from: Data(buffer: r.body)), String(buffer: r.body))
    }

    @Test func aPullOrHeadByTagIsShownInTheListingsAfterTheFlushAndFailuresAreNot() async throws {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let app = try await BerthServer.makeApplication(registry: registry, access: access, features: standardFeatures(registry),
                                                        host: "127.0.0.1", port: 0,
                                                        // the test flushes itself: the server's own flush every 3 s
                                                        // raced it on a loaded CI machine (the pulls took longer)
                                                        pullTimeFlushInterval: .seconds(3600), logger: logger)
        let before = Date().addingTimeInterval(-2)
        try await app.test(.router) { client in
            #expect(try await push(client, "pulls/app", tag: "v1", auth: owner, seed: "one") == .created)
            #expect(try await push(client, "pulls/app", tag: "v2", auth: owner, seed: "two") == .created)
            #expect(try await push(client, "pulls/app", tag: "v3", auth: owner, seed: "three") == .created)
            let tags0 = try await listing(client, "tags")
            let digestOf = Dictionary(uniqueKeysWithValues: tags0.items.map { ($0.name ?? "", $0.digest) })
            #expect(digestOf.count == 3 && !tags0.raw.contains("lastPulledAt"))

            // v1 by tag; v2 by digest only; v3 only a HEAD (a node that holds the image); a missing tag and a refused anonymous pull
            #expect(try await client.execute(uri: "/v2/pulls/app/manifests/v1", method: .get, headers: owner).status == .ok)
            let v2 = try #require(digestOf["v2"])
            #expect(try await client.execute(uri: "/v2/pulls/app/manifests/\(v2)", method: .get, headers: owner).status == .ok)
            #expect(try await client.execute(uri: "/v2/pulls/app/manifests/v3", method: .head, headers: owner).status == .ok)
            #expect(try await client.execute(uri: "/v2/pulls/app/manifests/nope", method: .get, headers: owner).status == .notFound)
            #expect(try await client.execute(uri: "/v2/pulls/app/manifests/v3", method: .get).status == .unauthorized)

            // noted in memory, not yet written: the listing does not show it
            #expect(registry.pullTimes.pendingCount == 3)
            #expect(try await !listing(client, "tags").raw.contains("lastPulledAt"))
            #expect(try await registry.flushPullTimes() == 3)
            #expect(registry.pullTimes.pendingCount == 0)

            let (tags, rawTags) = try await listing(client, "tags")
            // the contract's types carry it: decoded and encoded again, the very bytes the server sent
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let views = try decoder.decode([TagDetailView].self, from: Data(rawTags.utf8))
            #expect(try RegistryResponder.encoder.encode(views) == Data(rawTags.utf8))
            #expect(views.first { $0.name == "v1" }?.lastPulledAt != nil)
            let rawManifests = try await listing(client, "manifests").raw
            let manifestViews = try decoder.decode([ManifestDetailView].self, from: Data(rawManifests.utf8))
            #expect(try RegistryResponder.encoder.encode(manifestViews) == Data(rawManifests.utf8))
            let byName = Dictionary(uniqueKeysWithValues: tags.map { ($0.name ?? "", $0) })
            let pulledV1 = try #require(byName["v1"]?.lastPulledAt)
            #expect(pulledV1 >= before && pulledV1 <= Date().addingTimeInterval(1))
            #expect(byName["v2"]?.lastPulledAt == nil)   // pulled by digest: the manifest was, not the tag
            #expect(byName["v3"]?.lastPulledAt != nil)   // a HEAD counts: the image is in use

            let manifests = try await listing(client, "manifests").items
            let byDigest = Dictionary(uniqueKeysWithValues: manifests.map { ($0.digest, $0) })
            #expect(byDigest[try #require(digestOf["v1"])]?.lastPulledAt != nil)
            #expect(byDigest[v2]?.lastPulledAt != nil)
            #expect(byDigest[try #require(digestOf["v3"])]?.lastPulledAt != nil)

            // the tag deleted: its pull time goes with it
            #expect(try await client.execute(uri: "/api/v1/repository/tags?name=pulls/app&tag=v1", method: .delete, headers: owner).status == .noContent)
            let after = try await listing(client, "tags").items
            #expect(after.map(\.name) == ["v2", "v3"] && after.first { $0.name == "v2" }?.lastPulledAt == nil)
        }
    }

    @Test func theRecorderIsBoundedAndAPullOfAnUnknownRepositoryIsIgnoredByTheFlush() async throws {
        let recorder = PullTimeRecorder(capacity: 2)
        let d = Digest.compute(Array("x".utf8))
        let t = Date(timeIntervalSince1970: 1_700_000_000)
        recorder.record(repository: "a", digest: d, tag: "v1", at: t)
        recorder.record(repository: "a", digest: d, tag: "v1", at: t.addingTimeInterval(5))   // same key: the later time
        recorder.record(repository: "a", digest: d, tag: nil, at: t)
        recorder.record(repository: "b", digest: d, tag: nil, at: t)                            // full: dropped
        #expect(recorder.pendingCount == 2 && recorder.droppedCount == 1)

        let registry = try Registry.embedded(dataDirectory: tempDataDir())
        registry.pullTimes.record(repository: "no/such", digest: d, tag: "v1", at: t)
        #expect(try await registry.flushPullTimes() == 1)   // an unknown repository is ignored by the store, not an error
        #expect(registry.pullTimes.pendingCount == 0)
    }

    /// A flush that keeps failing (a batch giving way to a long purge) warns once, then at most
    /// once a minute; the recovery resets the count.
    @Test func repeatedFlushFailuresWarnOnceAMinute() {
        let log = PullTimeFlushService.FailureLog()
        let start = ContinuousClock.now
        #expect(log.failed(now: start) == (true, 1))
        #expect(log.failed(now: start + .seconds(3)) == (false, 2))
        #expect(log.failed(now: start + .seconds(59)) == (false, 3))
        #expect(log.failed(now: start + .seconds(61)) == (true, 4))
        #expect(log.succeeded() == 4)
        #expect(log.succeeded() == 0)
        #expect(log.failed(now: start + .seconds(62)) == (true, 1))   // a new run of failures warns at once
    }

    /// The last flush when the server stops is tried again, so a batch that gave way then does not
    /// lose the node's pending pulls; it stops at the first success and after the last attempt.
    @Test func theFinalFlushIsRetried() async {
        let calls = ManagedCounter()
        #expect(await PullTimeFlushService.retrying(attempts: 3, delay: .milliseconds(1)) { calls.next() >= 2 })
        #expect(calls.value == 2)
        let failing = ManagedCounter()
        #expect(await PullTimeFlushService.retrying(attempts: 3, delay: .milliseconds(1)) { _ = failing.next(); return false } == false)
        #expect(failing.value == 3)
    }

    final class ManagedCounter: @unchecked Sendable {
        var value = 0
        func next() -> Int { value += 1; return value }
    }
}
