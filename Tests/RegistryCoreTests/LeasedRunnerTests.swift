import Foundation
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore
import Testing
@testable import RegistryCore

/// Cluster-once background work: two nodes' leased runners over one store (an SQLite file), a
/// node cut off from the store, and a stale holder's cursor moves.
@Suite struct LeasedRunnerTests {
    typealias Recorder = EventConsumerRunnerTests.Recorder
    struct Unreachable: Error {}

    /// A node's way to the lease store; `cut` makes it unreachable, as for a node that died or was
    /// partitioned away (it can neither renew nor release).
    final class CutOff: LeaseStore {
        let inner: any LeaseStore
        let cut = NIOLockedValueBox(false)
        init(_ inner: any LeaseStore) { self.inner = inner }

        func check() throws { if cut.withLockedValue({ $0 }) { throw Unreachable() } }
        func acquireLease(name: String, holder: String, ttl: TimeInterval) async throws -> Lease? {
            try check()
            return try await inner.acquireLease(name: name, holder: holder, ttl: ttl)
        }
        func renewLease(name: String, holder: String, token: Int64, ttl: TimeInterval) async throws -> Bool {
            try check()
            return try await inner.renewLease(name: name, holder: holder, token: token, ttl: ttl)
        }
        func releaseLease(name: String, holder: String, token: Int64) async throws {
            try check()
            try await inner.releaseLease(name: name, holder: holder, token: token)
        }
        func leases() async throws -> [Lease] { try check(); return try await inner.leases() }
        func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64, fence: LeaseFence) async throws -> Bool {
            try check()
            return try await inner.advanceEventConsumer(name: name, from: expected, to: cursor, fence: fence)
        }
        func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date,
                                        fence: LeaseFence) async throws -> Bool {
            try check()
            return try await inner.recordEventConsumerFailure(name: name, error: error, attempts: attempts,
                                                              nextAttemptAt: nextAttemptAt, fence: fence)
        }
    }

    /// Polls `condition` (for at most a minute: a bound for a stuck test, not a timing).
    func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<3000 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("never happened: \(what)")
        throw Unreachable()
    }

    /// `seen` without repeats, each at its first place.
    func firstSeen(_ seen: [Int64]) -> [Int64] {
        var known: Set<Int64> = []
        return seen.filter { known.insert($0).inserted }
    }

    func allSequences(_ r: Registry) async throws -> [Int64] {
        try await r.metadata.events(after: 0, limit: 10_000).map(\.sequence)
    }

    @Test func twoNodesHandleEveryEventInOrderAndTheSurvivorTakesOver() async throws {
        let r = try makeRegistry()
        let leases = try #require(r.metadata as? any LeaseStore)
        try await EventConsumerRunnerTests().pushTags(r, 4)
        let recorder = Recorder(name: "rec")
        let nodes = [CutOff(leases), CutOff(leases)]
        let running = NIOLockedValueBox<[Int: Bool]>([:])
        var tasks: [Task<Void, Never>] = []
        for (i, node) in nodes.enumerated() {
            // Long enough that a busy machine does not let a renewal come late (a lease that runs
            // out while its job still works lets the next holder handle a batch again: at least once).
            let runner = LeasedRunner(store: node, holder: "node-\(i)", ttl: 5, retry: 0.05)
            tasks.append(Task {
                await runner.run(lease: "consumer:rec") {
                    running.withLockedValue { $0[i] = true }
                    defer { running.withLockedValue { $0[i] = false } }
                    await EventConsumerRunner(consumer: recorder, store: r.metadata, batchSize: 2).run(poll: .milliseconds(10))
                }
            })
        }
        defer { for task in tasks { task.cancel() } }
        let first = try await allSequences(r)
        try await eventually("the first events handled") { try await r.metadata.eventConsumer(named: "rec")?.cursor == first.last }
        // Every event in order; one that was handled when its holder lost the lease (a renewal late
        // on a busy machine) is handled again by the next holder, whose fenced cursor move wins.
        #expect(firstSeen(recorder.seen.withLockedValue { $0 }) == first)
        let holder = try #require(try await leases.leases().first)
        let held = try #require(Int(holder.holder.dropFirst("node-".count)))
        // Only the holder's job runs (on a very busy machine a lease may have changed hands before).
        #expect(running.withLockedValue { $0.filter(\.value).map(\.key) } == [held])

        // The holder is cut off: its job stops when its renewal fails, the other node takes over
        // once the lease has run out, with a higher token, and goes on from the cursor.
        nodes[held].cut.withLockedValue { $0 = true }
        try await eventually("the cut-off node's job stopped") { running.withLockedValue { $0[held] } == false }
        try await EventConsumerRunnerTests().pushTags(r, 3, repo: "team/other")
        let all = try await allSequences(r)
        try await eventually("the later events handled") { try await r.metadata.eventConsumer(named: "rec")?.cursor == all.last }
        let seen = recorder.seen.withLockedValue { $0 }
        #expect(firstSeen(seen) == all)
        let now = try #require(try await leases.leases().first)
        #expect(now.holder == "node-\(1 - held)" && now.token > holder.token)
        // At least once, never more than one batch (2) again per change of hands.
        #expect(seen.count - all.count <= 2 * Int(now.token - 1))
        let cursor = try await r.metadata.eventConsumer(named: "rec")?.cursor
        #expect(cursor == all.last)
    }

    @Test func aStaleHolderCannotMoveTheCursorOrRecordAFailure() async throws {
        let r = try makeRegistry()
        let leases = try #require(r.metadata as? any LeaseStore)
        try await EventConsumerRunnerTests().pushTags(r, 2)
        let recorder = Recorder(name: "rec")
        let runner = EventConsumerRunner(consumer: recorder, store: r.metadata)
        let old = try #require(try await leases.acquireLease(name: "consumer:rec", holder: "a", ttl: 0))
        let new = try #require(try await leases.acquireLease(name: "consumer:rec", holder: "b", ttl: 60))
        let stale = LeaseFencing(fence: old.fence, store: leases)

        let refused = try await LeaseFencing.$current.withValue(stale) { try await runner.step() }
        #expect(refused == .idle)
        recorder.failNext.withLockedValue { $0 = 1 }
        let failedStale = try await LeaseFencing.$current.withValue(stale) { try await runner.step() }
        #expect(failedStale == .idle)
        let untouched = try await r.metadata.eventConsumer(named: "rec")
        #expect(untouched?.cursor == 0 && untouched?.attempts == 0 && untouched?.lastError == nil)

        let latest = try await r.metadata.latestEventSequence()
        let moved = try await LeaseFencing.$current.withValue(LeaseFencing(fence: new.fence, store: leases)) {
            try await runner.step()
        }
        #expect(moved == .advanced(to: latest))
    }

    @Test func aJobThatEndsReleasesItsLeaseAndALostLeaseCancelsTheJob() async throws {
        let r = try makeRegistry()
        let leases = try #require(r.metadata as? any LeaseStore)
        let node = CutOff(leases)
        let runner = LeasedRunner(store: node, holder: "a", ttl: 60, retry: 0.01)
        // A job that returns: the lease is released (another node may acquire it at once).
        let runs = NIOLockedValueBox(0)
        await runner.run(lease: "job", isStopping: { runs.withLockedValue { $0 } >= 1 }) {
            runs.withLockedValue { $0 += 1 }
        }
        let released = try await leases.acquireLease(name: "job", holder: "b", ttl: 60)
        #expect(runs.withLockedValue { $0 } == 1 && released != nil)

        // A job whose lease is taken from it is cancelled (not only when the lease runs out).
        let other = CutOff(leases)
        let short = LeasedRunner(store: other, holder: "c", ttl: 5, retry: 0.01)
        let cancelled = NIOLockedValueBox(false)
        try await leases.releaseLease(name: "job", holder: "b", token: released!.token)
        let task = Task {
            await short.run(lease: "job", isStopping: { cancelled.withLockedValue { $0 } }) {
                do { try await Task.sleep(for: .seconds(3600)) } catch { cancelled.withLockedValue { $0 = true } }
            }
        }
        defer { task.cancel() }
        try await eventually("the job started") { try await leases.leases().first?.holder == "c" }
        // Another holder takes the lease over (as after an expiry): the next renewal is refused.
        let held = try #require(try await leases.leases().first)
        try await leases.releaseLease(name: "job", holder: "c", token: held.token)
        let taken = try await leases.acquireLease(name: "job", holder: "d", ttl: 60)
        #expect(taken != nil)
        try await eventually("the job cancelled") { cancelled.withLockedValue { $0 } }
    }
}
