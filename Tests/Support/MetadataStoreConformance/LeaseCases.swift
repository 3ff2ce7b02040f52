import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    /// A time to live of 0 makes a lease that has run out already: no case waits for a clock.
    static let leaseCases: [Case] = [
        Case("acquireLease: exclusive while live; its holder acquires it again with a higher token") { s in
            let a = try await s.acquireLease(name: "job", holder: "a", ttl: 60)
            let b = try await s.acquireLease(name: "job", holder: "b", ttl: 60)
            #expect(a?.holder == "a" && a?.name == "job" && b == nil)
            let again = try await s.acquireLease(name: "job", holder: "a", ttl: 60)
            #expect(again.map(\.token) == a.map { $0.token + 1 })
            // another name is another lease
            let other = try await s.acquireLease(name: "other", holder: "b", ttl: 60)
            #expect(other?.holder == "b")
            let all = try await s.leases()
            #expect(all.map(\.name) == ["job", "other"] && all.first?.holder == "a" && all.first?.token == again?.token)
        },
        Case("acquireLease: taken over after expiry with a higher token; the stale holder cannot renew or release") { s in
            let old = try #require(try await s.acquireLease(name: "job", holder: "a", ttl: 0))
            let new = try #require(try await s.acquireLease(name: "job", holder: "b", ttl: 60))
            #expect(new.holder == "b" && new.token > old.token)
            let staleRenew = try await s.renewLease(name: "job", holder: "a", token: old.token, ttl: 60)
            let wrongToken = try await s.renewLease(name: "job", holder: "b", token: old.token, ttl: 60)
            let wrongHolder = try await s.renewLease(name: "job", holder: "a", token: new.token, ttl: 60)
            #expect(!staleRenew && !wrongToken && !wrongHolder)
            let expired = try #require(try await s.acquireLease(name: "lapsed", holder: "a", ttl: 0))
            let lapsedRenew = try await s.renewLease(name: "lapsed", holder: "a", token: expired.token, ttl: 60)
            #expect(!lapsedRenew)
            try await s.releaseLease(name: "job", holder: "a", token: old.token)
            let taken = try await s.acquireLease(name: "job", holder: "c", ttl: 60)
            #expect(taken == nil)
            let renewed = try await s.renewLease(name: "job", holder: "b", token: new.token, ttl: 60)
            #expect(renewed)
            let unknown = try await s.renewLease(name: "nothing", holder: "b", token: 1, ttl: 60)
            #expect(!unknown)
        },
        Case("releaseLease: the next holder acquires at once, with a higher token") { s in
            let a = try #require(try await s.acquireLease(name: "job", holder: "a", ttl: 60))
            try await s.releaseLease(name: "job", holder: "a", token: a.token)
            let renewedAfterRelease = try await s.renewLease(name: "job", holder: "a", token: a.token, ttl: 60)
            #expect(!renewedAfterRelease)
            let b = try #require(try await s.acquireLease(name: "job", holder: "b", ttl: 60))
            #expect(b.token > a.token)
            let renewedByOld = try await s.renewLease(name: "job", holder: "a", token: a.token, ttl: 60)
            #expect(!renewedByOld)
        },
        Case("acquireLease: of many acquirers at once, exactly one wins") { s in
            let winners = try await withThrowingTaskGroup(of: Lease?.self) { group in
                for i in 0..<8 { group.addTask { try await s.acquireLease(name: "job", holder: "node-\(i)", ttl: 60) } }
                var won: [Lease] = []
                for try await lease in group { if let lease { won.append(lease) } }
                return won
            }
            #expect(winners.count == 1)
            let stored = try await s.leases()
            #expect(stored.count == 1 && stored.first?.holder == winners.first?.holder && stored.first?.token == winners.first?.token)
        },
        Case("advanceEventConsumer/recordEventConsumerFailure with a fence: refused unless the lease still has its token") { s in
            _ = try await s.registerEventConsumer(name: "c", start: .beginning)
            let old = try #require(try await s.acquireLease(name: "consumer:c", holder: "a", ttl: 0))
            let moved = try await s.advanceEventConsumer(name: "c", from: 0, to: 3, fence: old.fence)
            #expect(moved)
            let new = try #require(try await s.acquireLease(name: "consumer:c", holder: "b", ttl: 60))
            let staleMove = try await s.advanceEventConsumer(name: "c", from: 3, to: 7, fence: old.fence)
            let staleFailure = try await s.recordEventConsumerFailure(name: "c", error: "late", attempts: 2,
                                                                      nextAttemptAt: Date().addingTimeInterval(60), fence: old.fence)
            let unknownLease = try await s.advanceEventConsumer(name: "c", from: 3, to: 7,
                                                                fence: LeaseFence(name: "nothing", token: new.token))
            #expect(!staleMove && !staleFailure && !unknownLease)
            let untouched = try await s.eventConsumer(named: "c")
            #expect(untouched?.cursor == 3 && untouched?.attempts == 0 && untouched?.lastError == nil)
            let failed = try await s.recordEventConsumerFailure(name: "c", error: "boom", attempts: 1,
                                                                nextAttemptAt: Date().addingTimeInterval(60), fence: new.fence)
            let advanced = try await s.advanceEventConsumer(name: "c", from: 3, to: 7, fence: new.fence)
            // the cursor's compare-and-swap still holds under the fence
            let behind = try await s.advanceEventConsumer(name: "c", from: 3, to: 9, fence: new.fence)
            #expect(failed && advanced && !behind)
            let after = try await s.eventConsumer(named: "c")
            #expect(after?.cursor == 7 && after?.attempts == 0)
        },
    ]
}
