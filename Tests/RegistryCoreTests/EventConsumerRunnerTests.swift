import Foundation
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore
import Testing
@testable import RegistryCore

/// The one event-consumer runner: durable cursor, at-least-once, retry with backoff, pause,
/// switched-off consumers, and two runners of one cursor.
@Suite struct EventConsumerRunnerTests {
    final class Recorder: EventConsumer, Sendable {
        let name: String
        let start: EventConsumerStart
        let seen = NIOLockedValueBox<[Int64]>([])
        let failNext = NIOLockedValueBox(0)
        let active = NIOLockedValueBox(true)
        let activeFails = NIOLockedValueBox(false)

        init(name: String = "recorder", start: EventConsumerStart = .beginning) {
            self.name = name
            self.start = start
        }

        func isActive() async throws -> Bool {
            if activeFails.withLockedValue({ $0 }) { throw RegistryError(.unsupported, "setting unreadable") }
            return active.withLockedValue { $0 }
        }

        func handle(_ events: [Event]) async throws {
            let fail = failNext.withLockedValue { n -> Bool in
                guard n > 0 else { return false }
                n -= 1
                return true
            }
            if fail { throw RegistryError(.unsupported, "downstream unavailable") }
            seen.withLockedValue { $0 += events.map(\.sequence) }
        }
    }

    func pushTags(_ r: Registry, _ n: Int, repo: String = "team/app") async throws {
        let repo = try RepositoryName(repo)
        for i in 0..<n {
            let config = Array(#"{"i":\#(i)}"#.utf8)
            let c = Digest.compute(config)
            _ = try await r.putBlob(repo, digest: c, contentLength: Int64(config.count), body: body(config))
            let json = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":\#(config.count)},"layers":[]}"#
            _ = try await r.putManifest(repo, reference: .tag("t\(i)"), bytes: Array(json.utf8),
                                        contentType: "application/vnd.oci.image.manifest.v1+json")
        }
    }

    func store(_ r: Registry) -> any EventLogStore { r.metadata }

    @Test func handlesEveryEventOnceInOrderAcrossBatchesAndRestarts() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 3)
        let latest = try await store(r).latestEventSequence()
        #expect(latest >= 3)
        let consumer = Recorder()
        let runner = EventConsumerRunner(consumer: consumer, store: store(r), batchSize: 2)
        while case .advanced = try await runner.step() {}
        #expect(consumer.seen.withLockedValue { $0 } == Array(1...latest))
        // a new runner (a restart) resumes from the stored cursor: nothing again, then only what is new
        try await pushTags(r, 1, repo: "team/other")
        let again = Recorder()
        let restarted = EventConsumerRunner(consumer: again, store: store(r), batchSize: 100)
        while case .advanced = try await restarted.step() {}
        let newest = try await store(r).latestEventSequence()
        #expect(again.seen.withLockedValue { $0 } == Array((latest + 1)...newest))
        await #expect(try store(r).eventConsumer(named: "recorder")?.cursor == newest)
    }

    @Test func aConsumerStartingAtTheEndSeesOnlyWhatHappensNext() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 2)
        let before = try await store(r).latestEventSequence()
        let consumer = Recorder(name: "tail", start: .end)
        let runner = EventConsumerRunner(consumer: consumer, store: store(r))
        #expect(try await runner.step() == .idle)
        try await pushTags(r, 1, repo: "team/next")
        while case .advanced = try await runner.step() {}
        #expect(consumer.seen.withLockedValue { $0 }.allSatisfy { $0 > before })
        #expect(!consumer.seen.withLockedValue { $0 }.isEmpty)
    }

    @Test func aFailedBatchIsRetriedWithBackoffAndNothingIsSkipped() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 2)
        let consumer = Recorder()
        consumer.failNext.withLockedValue { $0 = 2 }
        let runner = EventConsumerRunner(consumer: consumer, store: store(r), backoffBase: 10, backoffMax: 25)
        let t0 = Date()
        guard case .failed(let retry1) = try await runner.step(now: t0) else { Issue.record("expected a failure"); return }
        #expect(abs(retry1.timeIntervalSince(t0) - 10) < 0.01)
        // waiting for the retry: nothing happens before it is due
        #expect(try await runner.step(now: t0.addingTimeInterval(5)) == .idle)
        // (a hair past the due time: the store keeps times as seconds in a double)
        guard case .failed(let retry2) = try await runner.step(now: retry1.addingTimeInterval(0.001)) else {
            Issue.record("expected a failure"); return
        }
        #expect(abs(retry2.timeIntervalSince(retry1) - 20) < 0.01)   // doubled
        let due = retry2.addingTimeInterval(0.001)
        let record = try await store(r).eventConsumer(named: "recorder")
        #expect(record?.attempts == 2 && record?.lastError?.contains("downstream unavailable") == true && record?.cursor == 0)
        guard case .advanced = try await runner.step(now: due) else { Issue.record("expected progress"); return }
        while case .advanced = try await runner.step(now: due) {}
        await #expect(consumer.seen.withLockedValue { $0 } == Array(1...(try await store(r).latestEventSequence())))
        let healed = try await store(r).eventConsumer(named: "recorder")
        #expect(healed?.attempts == 0 && healed?.lastError == nil && healed?.nextAttemptAt == nil)
    }

    /// A consumer that cannot tell whether it is on (its setting unreadable) fails like a failed
    /// batch: recorded with its error, retried after a backoff, not retried on every poll.
    @Test func aConsumerThatCannotSayWhetherItIsOnFailsWithBackoff() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 1)
        let consumer = Recorder()
        consumer.activeFails.withLockedValue { $0 = true }
        let runner = EventConsumerRunner(consumer: consumer, store: store(r), backoffBase: 10, backoffMax: 25)
        let t0 = Date()
        guard case .failed(let retry) = try await runner.step(now: t0) else { Issue.record("expected a failure"); return }
        #expect(abs(retry.timeIntervalSince(t0) - 10) < 0.01)
        let record = try await store(r).eventConsumer(named: "recorder")
        #expect(record?.attempts == 1 && record?.lastError?.contains("setting unreadable") == true && record?.cursor == 0)
        #expect(try await runner.step(now: t0.addingTimeInterval(1)) == .idle)
        consumer.activeFails.withLockedValue { $0 = false }
        guard case .advanced = try await runner.step(now: retry.addingTimeInterval(0.001)) else { Issue.record("expected progress"); return }
    }

    /// Handles events one by one and fails at `failAt` until its attempt reaches `succeedOn`.
    final class PartialConsumer: EventConsumer, Sendable {
        let name = "partial"
        let start = EventConsumerStart.beginning
        let failAt: Int64
        let succeedOn: Int
        let seen = NIOLockedValueBox<[(sequence: Int64, attempt: Int)]>([])
        init(failAt: Int64, succeedOn: Int) {
            self.failAt = failAt
            self.succeedOn = succeedOn
        }
        func handle(_ events: [Event]) async throws { Issue.record("the attempt-aware handle should be called") }
        func handle(_ events: [Event], attempt: Int) async throws {
            var handled: Int64?
            for (i, event) in events.enumerated() {
                let attempt = i == 0 ? attempt : 1
                seen.withLockedValue { $0.append((event.sequence, attempt)) }
                if event.sequence == failAt && attempt < succeedOn {
                    throw EventBatchStopped(handledThrough: handled, error: RegistryError(.unsupported, "receiver down"))
                }
                handled = event.sequence
            }
        }
    }

    @Test func aBatchStoppedPartWayKeepsWhatWasHandledAndCountsAttemptsOfTheFailedEvent() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 2)
        let latest = try await store(r).latestEventSequence()
        #expect(latest >= 4)
        let consumer = PartialConsumer(failAt: 3, succeedOn: 3)
        let runner = EventConsumerRunner(consumer: consumer, store: store(r), backoffBase: 1)
        let t0 = Date()
        guard case .failed(let retry1) = try await runner.step(now: t0) else { Issue.record("expected a failure"); return }
        let record = try await store(r).eventConsumer(named: "partial")
        #expect(record?.cursor == 2 && record?.attempts == 1)            // past what was handled
        guard case .failed(let retry2) = try await runner.step(now: retry1.addingTimeInterval(0.001)) else {
            Issue.record("expected a failure"); return
        }
        #expect(try await store(r).eventConsumer(named: "partial")?.attempts == 2)
        while case .advanced = try await runner.step(now: retry2.addingTimeInterval(0.001)) {}
        let seen = consumer.seen.withLockedValue { $0 }
        // events 1 and 2 once; event 3 at attempts 1, 2, 3; the rest once, each at its first attempt
        #expect(seen.filter { $0.sequence == 1 }.count == 1 && seen.filter { $0.sequence == 2 }.count == 1)
        #expect(seen.filter { $0.sequence == 3 }.map(\.attempt) == [1, 2, 3])
        #expect(seen.filter { $0.sequence > 3 }.allSatisfy { $0.attempt == 1 })
        #expect(try await store(r).eventConsumer(named: "partial")?.cursor == latest)
    }

    @Test func pausedAndSwitchedOffConsumersKeepTheirCursor() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 1)
        let consumer = Recorder()
        let runner = EventConsumerRunner(consumer: consumer, store: store(r))
        consumer.active.withLockedValue { $0 = false }
        #expect(try await runner.step() == .idle)
        await #expect(try store(r).eventConsumer(named: "recorder")?.cursor == 0)
        consumer.active.withLockedValue { $0 = true }
        #expect(try await store(r).setEventConsumerPaused(name: "recorder", paused: true))
        #expect(try await runner.step() == .idle)
        #expect(consumer.seen.withLockedValue { $0 }.isEmpty)
        #expect(try await store(r).setEventConsumerPaused(name: "recorder", paused: false))
        #expect(try await !store(r).setEventConsumerPaused(name: "nobody", paused: true))
        guard case .advanced = try await runner.step() else { Issue.record("expected progress after resume"); return }
    }

    @Test func twoRunnersOfOneCursorNeverSkipAnEvent() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 6)
        let a = Recorder(name: "shared"), b = Recorder(name: "shared")
        let ra = EventConsumerRunner(consumer: a, store: store(r), batchSize: 1)
        let rb = EventConsumerRunner(consumer: b, store: store(r), batchSize: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for runner in [ra, rb] {
                group.addTask { for _ in 0..<40 { try await runner.step() } }
            }
            try await group.waitForAll()
        }
        let latest = try await store(r).latestEventSequence()
        let seen = Set(a.seen.withLockedValue { $0 } + b.seen.withLockedValue { $0 })
        #expect(seen == Set(1...latest))   // every event handled (at least once), none skipped
        await #expect(try store(r).eventConsumer(named: "shared")?.cursor == latest)
    }

    @Test func theCompareAndSwapRefusesAStaleCursor() async throws {
        let r = try makeRegistry()
        try await pushTags(r, 1)
        _ = try await store(r).registerEventConsumer(name: "cas", start: .beginning)
        #expect(try await store(r).advanceEventConsumer(name: "cas", from: 0, to: 2))
        #expect(try await !store(r).advanceEventConsumer(name: "cas", from: 0, to: 3))
        await #expect(try store(r).eventConsumer(named: "cas")?.cursor == 2)
        // registering again keeps the cursor
        #expect(try await store(r).registerEventConsumer(name: "cas", start: .end).cursor == 2)
    }

    @Test func retentionFollowsTheLogFromItsDurableCursor() async throws {
        let r = try makeRegistry()
        var grace = GarbageCollectionPolicy()
        grace.graceSeconds = 0
        try await r.updateGarbageCollection(grace)
        try await pushTags(r, 1)
        let runner = EventConsumerRunner(consumer: RetentionConsumer(registry: r), store: store(r))
        // off: the cursor waits
        #expect(try await runner.step() == .idle)
        await #expect(try store(r).eventConsumer(named: RetentionConsumer.name)?.cursor == 0)
        var policy = RetentionPolicy()
        policy.enabled = true
        policy.days = 0
        try await r.updateRetention(policy)
        // an untagged manifest (not live) pushed now is deleted by the consumer, not by a tick
        let repo = try RepositoryName("team/untagged")
        let config = Array(#"{"untagged":true}"#.utf8)
        let c = Digest.compute(config)
        _ = try await r.putBlob(repo, digest: c, contentLength: Int64(config.count), body: body(config))
        let json = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":\#(config.count)},"layers":[]}"#.utf8)
        let d = Digest.compute(json)
        _ = try await r.putManifest(repo, reference: .digest(d), bytes: json, contentType: "application/vnd.oci.image.manifest.v1+json")
        while case .advanced = try await runner.step() {}
        await #expect(try store(r).eventConsumer(named: RetentionConsumer.name)?.cursor == (try store(r).latestEventSequence()))
        await #expect(throws: RegistryError.self) { _ = try await r.manifest(repo, .digest(d)) }
        await #expect(try r.manifest(try RepositoryName("team/app"), .tag("t0")).digest.string.hasPrefix("sha256:"))
    }
}

/// Which consumers a service runs, by exact name or by a prefix for consumers made per item.
@Suite struct EventConsumerHostTests {
    struct Host: EventConsumerHost { let consumerNames: [String] }

    @Test func exactNamesAndPrefixesEndingInAStar() {
        let host = Host(consumerNames: ["retention", "webhook:*"])
        #expect(host.hosts("retention") && host.hosts("webhook:a") && host.hosts("webhook:"))
        #expect(!host.hosts("retention2") && !host.hosts("retentio") && !host.hosts("webhook") && !host.hosts("replication:a"))
        #expect(!Host(consumerNames: []).hosts("retention"))
    }
}
