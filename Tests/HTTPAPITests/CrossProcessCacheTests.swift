import Access
import Backends
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Testing
@testable import ContentTrustFeature
@testable import HTTPAPI

/// Two registry stacks over one database, as two processes would have: what one changes, the
/// other's caches learn from the event feed (stepped here, as the poll loop would), and without
/// the feed from the TTL.
@Suite struct CrossProcessCacheTests {
    final class ManualClock: Sendable {
        let time = NIOLockedValueBox(1000.0)
        var now: @Sendable () -> Double { { [time] in time.withLockedValue { $0 } } }
        func advance(_ seconds: Double) { time.withLockedValue { $0 += seconds } }
    }

    struct Stack {
        let registry: Registry
        let access: AccessControl
        let invalidation: CacheInvalidationService
    }

    static let ttl = 5.0
    static let retention: RetentionPolicy = {
        var p = RetentionPolicy()
        p.enabled = true
        p.days = 3
        return p
    }()

    /// Two stacks on one data directory, each with its own `SQLiteMetadataStore` of the one file.
    func stacks(_ clock: ManualClock) async throws -> (Stack, Stack) {
        let dir = tempDataDir()
        var configuration = RegistryConfiguration()
        configuration.cacheTTL = Self.ttl
        configuration.cacheClock = clock.now
        func stack() async throws -> Stack {
            let backends = try Backends.embedded(dataDirectory: dir)
            let registry = Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: configuration)
            let access = try await AccessControl.open(store: backends.metadata, keyDirectory: dir + "/keys",
                                                      stateCheckInterval: Self.ttl, clock: clock.now)
            let invalidation = CacheInvalidationService(registry: registry, access: access, logger: .init(label: "test"))
            await invalidation.tick()   // registers at the end of the log, as a starting process does
            return Stack(registry: registry, access: access, invalidation: invalidation)
        }
        return (try await stack(), try await stack())
    }

    func push(_ r: Registry, _ repo: RepositoryName, tag: String, seed: String) async throws -> Digest {
        let config = Array(#"{"seed":"\#(seed)"}"#.utf8)
        let c = Digest.compute(config)
        _ = try await r.putBlob(repo, digest: c, contentLength: Int64(config.count),
                                body: AsyncStream { $0.yield(ByteBuffer(bytes: config)); $0.finish() })
        let json = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":\#(config.count)},"layers":[]}"#
        _ = try await r.putManifest(repo, reference: .tag(tag), bytes: Array(json.utf8),
                                    contentType: "application/vnd.oci.image.manifest.v1+json")
        return Digest.compute(Array(json.utf8))
    }

    @Test func changesOnOneStackReachTheOthersCachesThroughTheEventFeed() async throws {
        let clock = ManualClock()
        let (one, two) = try await stacks(clock)
        let repo = try RepositoryName("team/app")

        // a tag moved
        let first = try await push(one.registry, repo, tag: "latest", seed: "1")
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == first)   // now cached on two
        let second = try await push(one.registry, repo, tag: "latest", seed: "2")
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == first)   // stale until the feed says
        await two.invalidation.tick()
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == second)

        // a manifest marked Failed
        #expect(try await two.registry.manifest(repo, .digest(second)).quarantineState == nil)
        try await one.registry.setQuarantine(repo, second, state: .failed, reason: "scanner found CVE-1")
        await two.invalidation.tick()
        #expect(try await two.registry.manifest(repo, .digest(second)).quarantineState == .failed)

        // a lock set
        #expect(try await two.registry.lockTable().repository(repo.value) == nil)
        _ = try await one.registry.updateLock(repo, tag: nil, digest: nil, LockChange(writeEnabled: false))
        await two.invalidation.tick()
        #expect(try await two.registry.lockTable().repository(repo.value)?.writeEnabled == false)
        await #expect(throws: RegistryError.self) { try await two.registry.startUpload(repo) }

        // a setting changed
        #expect(try await two.registry.retentionPolicy().enabled == false)
        try await one.registry.updateRetention(Self.retention)
        await two.invalidation.tick()
        #expect(try await two.registry.retentionPolicy() == Self.retention)

        // content trust's configuration changed
        let trustOne = ContentTrustGate(registry: one.registry), trustTwo = ContentTrustGate(registry: two.registry)
        #expect(try await trustTwo.current().exempt.isEmpty)
        try await trustOne.update(ContentTrustConfig(exempt: ["scanner"]))
        #expect(try await trustTwo.current().exempt.isEmpty)   // stale until the feed says
        let verdictsBefore = trustTwo.verdictGeneration
        await two.invalidation.tick()
        #expect(try await trustTwo.current().exempt == ["scanner"])
        // and no verdict reached under the old policy is used any more
        #expect(trustTwo.verdictGeneration > verdictsBefore)

        // a token revoked
        let (_, passwords) = try await one.access.createToken(Actor(name: "test", address: "-"), name: "ci",
                                                              scopeMap: "_repositories_pull")
        let password = try #require(passwords["password1"])
        _ = try await two.access.authenticate(username: "ci", password: password, address: nil, service: "s")
        try await one.access.deleteToken(Actor(name: "test", address: "-"), name: "ci")
        _ = try await two.access.authenticate(username: "ci", password: password, address: nil, service: "s")   // stale
        await two.invalidation.tick()
        await #expect(throws: AccessError.self) {
            try await two.access.authenticate(username: "ci", password: password, address: nil, service: "s")
        }
    }

    @Test func withTheFeedStoppedTheTTLStillEndsAStaleCopy() async throws {
        let clock = ManualClock()
        let (one, two) = try await stacks(clock)
        let repo = try RepositoryName("team/app")
        let first = try await push(one.registry, repo, tag: "latest", seed: "1")
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == first)
        #expect(try await two.registry.lockTable().repository(repo.value) == nil)
        #expect(try await two.registry.retentionPolicy().enabled == false)
        let (_, passwords) = try await one.access.createToken(Actor(name: "test", address: "-"), name: "ci",
                                                              scopeMap: "_repositories_pull")
        let password = try #require(passwords["password1"])
        _ = try await two.access.authenticate(username: "ci", password: password, address: nil, service: "s")

        let trustOne = ContentTrustGate(registry: one.registry), trustTwo = ContentTrustGate(registry: two.registry)
        #expect(try await trustTwo.current().exempt.isEmpty)

        let second = try await push(one.registry, repo, tag: "latest", seed: "2")
        try await trustOne.update(ContentTrustConfig(exempt: ["scanner"]))
        _ = try await one.registry.updateLock(repo, tag: nil, digest: nil, LockChange(writeEnabled: false))
        try await one.registry.updateRetention(Self.retention)
        try await one.access.deleteToken(Actor(name: "test", address: "-"), name: "ci")

        clock.advance(Self.ttl - 0.5)   // not yet: still the cached copies
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == first)
        #expect(try await two.registry.retentionPolicy().enabled == false)
        #expect(try await trustTwo.current().exempt.isEmpty)
        _ = try await two.access.authenticate(username: "ci", password: password, address: nil, service: "s")
        let verdictsBefore = trustTwo.verdictGeneration
        clock.advance(1)                // past the TTL: read again
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == second)
        #expect(try await two.registry.lockTable().repository(repo.value)?.writeEnabled == false)
        #expect(try await two.registry.retentionPolicy().enabled == true)
        #expect(try await trustTwo.current().exempt == ["scanner"])
        #expect(trustTwo.verdictGeneration > verdictsBefore)   // a different policy: old verdicts go
        await #expect(throws: AccessError.self) {
            try await two.access.authenticate(username: "ci", password: password, address: nil, service: "s")
        }
    }
}
