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

    static let ttlWithFeed = 20.0

    /// Two stacks on one data directory, each with its own `SQLiteMetadataStore` of the one file.
    func stacks(_ clock: ManualClock, tickFirst: Bool = true) async throws -> (Stack, Stack) {
        let dir = tempDataDir()
        var configuration = RegistryConfiguration()
        configuration.cacheTTL = Self.ttl
        configuration.cacheTTLWithFeed = Self.ttlWithFeed
        configuration.cacheClock = clock.now
        func stack() async throws -> Stack {
            let backends = try Backends.embedded(dataDirectory: dir)
            let registry = Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: configuration)
            let access = try await AccessControl.open(store: backends.metadata, keyDirectory: dir + "/keys",
                                                      stateCheckInterval: Self.ttl, clock: clock.now)
            let invalidation = CacheInvalidationService(registry: registry, access: access, logger: .init(label: "test"))
            if tickFirst { await invalidation.tick() }   // registers at the end of the log, as a starting process does
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

    /// The reads `two` makes of what it caches: a tag, a manifest, the lock table, a setting and
    /// content trust's configuration. Returns the metadata round trips they made.
    func cachedReads(_ two: Stack, _ trust: ContentTrustGate, _ repo: RepositoryName, expect digest: Digest) async throws -> Int64 {
        let counted = try #require(two.registry.metadata as? any CountsMetadataRoundTrips)
        let before = counted.roundTrips.total
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == digest)
        #expect(try await two.registry.lockTable().repository(repo.value) == nil)
        #expect(try await two.registry.retentionPolicy().enabled == false)
        #expect(try await trust.current().exempt.isEmpty)
        return counted.roundTrips.total - before
    }

    @Test func whileTheFeedIsHeardCachedCopiesOutliveTheShortTTLAndStillFollowChanges() async throws {
        let clock = ManualClock()
        let (one, two) = try await stacks(clock)
        let repo = try RepositoryName("team/app")
        let trust = ContentTrustGate(registry: two.registry)
        let first = try await push(one.registry, repo, tag: "latest", seed: "1")
        clock.advance(0.1)   // after the first catch-up (at the same instant, a read may have begun before it)
        await two.invalidation.tick()
        #expect(try await cachedReads(two, trust, repo, expect: first) > 0)   // read once
        #expect(try await cachedReads(two, trust, repo, expect: first) == 0)  // then cached

        // The feed heard every second: past the short TTL, nothing is read again.
        for _ in 0..<Int(Self.ttl * 2) {
            clock.advance(1)
            await two.invalidation.tick()
        }
        #expect(try await cachedReads(two, trust, repo, expect: first) == 0)

        // A change is still seen at the next tick.
        let second = try await push(one.registry, repo, tag: "latest", seed: "2")
        clock.advance(1)
        await two.invalidation.tick()
        #expect(try await cachedReads(two, trust, repo, expect: second) > 0)
        #expect(try await cachedReads(two, trust, repo, expect: second) == 0)

        // The feed stops being heard: copies older than the short TTL are read again.
        for _ in 0..<Int(Self.ttl) {
            clock.advance(1)
            await two.invalidation.tick()
        }
        #expect(try await cachedReads(two, trust, repo, expect: second) == 0)
        clock.advance(2.5)   // past the staleness (2 s) since the last catch-up
        #expect(try await cachedReads(two, trust, repo, expect: second) > 0)

        // With the feed heard throughout, the long TTL still ends a copy.
        await two.invalidation.tick()
        #expect(try await cachedReads(two, trust, repo, expect: second) == 0)
        for _ in 0..<Int(Self.ttlWithFeed - 1) {
            clock.advance(1)
            await two.invalidation.tick()
        }
        #expect(try await cachedReads(two, trust, repo, expect: second) == 0)
        clock.advance(1.5)
        await two.invalidation.tick()
        #expect(try await cachedReads(two, trust, repo, expect: second) > 0)
    }

    /// The cursor starts at the end of the log when it is registered: a copy read before that may
    /// miss a change no event will ever tell of, so it keeps the short TTL.
    @Test func copiesReadBeforeTheFeedFirstCaughtUpKeepTheShortTTL() async throws {
        let clock = ManualClock()
        let (one, two) = try await stacks(clock, tickFirst: false)
        let repo = try RepositoryName("team/app")
        let trust = ContentTrustGate(registry: two.registry)
        let first = try await push(one.registry, repo, tag: "latest", seed: "1")
        #expect(try await cachedReads(two, trust, repo, expect: first) > 0)   // read before the feed started
        // A change made before two's cursor is registered: its event is behind the cursor.
        let second = try await push(one.registry, repo, tag: "latest", seed: "2")
        _ = try await one.registry.updateLock(repo, tag: nil, digest: nil, LockChange(writeEnabled: false))
        try await one.registry.updateRetention(Self.retention)
        try await ContentTrustGate(registry: one.registry).update(ContentTrustConfig(exempt: ["scanner"]))
        await two.invalidation.tick()   // registers after those changes, and is caught up
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == first)   // stale, as before
        for _ in 0..<Int(Self.ttl) {
            clock.advance(1)
            await two.invalidation.tick()
        }
        clock.advance(0.5)
        await two.invalidation.tick()
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == second)
        #expect(try await two.registry.lockTable().repository(repo.value)?.writeEnabled == false)
        #expect(try await two.registry.retentionPolicy() == Self.retention)
        #expect(try await trust.current().exempt == ["scanner"])
    }

    /// An event log whose event reads fail while `failing` is set.
    final class FailingLog: EventLogStore {
        let log: any EventLogStore
        let failing = NIOLockedValueBox(false)
        init(_ log: any EventLogStore) { self.log = log }
        struct Unreadable: Error {}
        func events(after: Int64, limit: Int) async throws -> [Event] {
            if failing.withLockedValue({ $0 }) { throw Unreadable() }
            return try await log.events(after: after, limit: limit)
        }
        func events(since: Date, limit: Int) async throws -> [Event] { try await log.events(since: since, limit: limit) }
        func latestEventSequence() async throws -> Int64 { try await log.latestEventSequence() }
        func eventConsumers() async throws -> [EventConsumerRecord] { try await log.eventConsumers() }
        func eventConsumer(named name: String) async throws -> EventConsumerRecord? { try await log.eventConsumer(named: name) }
        func registerEventConsumer(name: String, start: EventConsumerStart) async throws -> EventConsumerRecord {
            try await log.registerEventConsumer(name: name, start: start)
        }
        func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64) async throws -> Bool {
            try await log.advanceEventConsumer(name: name, from: expected, to: cursor)
        }
        func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date) async throws {
            try await log.recordEventConsumerFailure(name: name, error: error, attempts: attempts, nextAttemptAt: nextAttemptAt)
        }
        func setEventConsumerPaused(name: String, paused: Bool) async throws -> Bool {
            try await log.setEventConsumerPaused(name: name, paused: paused)
        }
        func deleteEventConsumer(name: String) async throws -> Bool { try await log.deleteEventConsumer(name: name) }
    }

    /// A loop that keeps ticking but cannot read the events written meanwhile has not caught up:
    /// the short TTL applies again.
    @Test func aFeedThatTicksButCannotReadItsEventsIsNotHeard() async throws {
        let clock = ManualClock()
        let (one, two) = try await stacks(clock, tickFirst: false)
        let log = FailingLog(two.registry.metadata)
        let invalidation = CacheInvalidationService(registry: two.registry, access: nil, log: log, logger: .init(label: "test"))
        await invalidation.tick()   // registers; caught up
        let repo = try RepositoryName("team/app")
        let first = try await push(one.registry, repo, tag: "latest", seed: "1")
        clock.advance(0.1)
        await invalidation.tick()
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == first)

        log.failing.withLockedValue { $0 = true }
        let second = try await push(one.registry, repo, tag: "latest", seed: "2")
        for _ in 0..<Int(Self.ttl) {
            clock.advance(1)
            await invalidation.tick()
        }
        clock.advance(0.5)
        await invalidation.tick()
        #expect(try await two.registry.manifest(repo, .tag("latest")).digest == second)
    }
}
