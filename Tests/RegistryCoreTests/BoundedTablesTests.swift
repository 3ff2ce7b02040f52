import Foundation
import NIOConcurrencyHelpers
import OCIModel
import Testing
@testable import RegistryCore

/// The per-repository and per-link tables a node keeps in memory stay bounded by what can still
/// matter, not by how many repositories or links it has ever seen, and forgetting never lets a
/// stale read into the cache.
@Suite struct BoundedTablesTests {
    // MARK: ReadCache

    @Test func invalidatedRepositoriesAreNotHeldForever() {
        let cache = ReadCache(manifestBytes: 1 << 20)
        for i in 0..<10_000 { cache.invalidate("team/r\(i)") }   // a push to each
        #expect(cache.repositoriesHeld <= ReadCache.minimumSweep)
    }

    @Test func aReadRecordedBeforeItsEntryWasForgottenIsNotStored() {
        let cache = ReadCache(manifestBytes: 1 << 20)
        let d = Digest.compute(Array("old".utf8))
        let recorded = cache.generation("team/app")     // a reader starts its store read
        cache.invalidate("team/app")                    // a push moves the tag meanwhile
        for i in 0..<(2 * ReadCache.minimumSweep) { cache.invalidate("team/r\(i)") }
        #expect(cache.repositoriesHeld < ReadCache.minimumSweep)   // team/app's entry was swept too
        cache.storeTag("team/app", "latest", d, generation: recorded)
        #expect(cache.tag("team/app", "latest") == nil)
        // a reader that starts now stores what it reads
        cache.storeTag("team/app", "latest", d, generation: cache.generation("team/app"))
        #expect(cache.tag("team/app", "latest") == d)
    }

    @Test func cachedEntriesOutliveASweepAndExpiredOnesDoNot() {
        let now = NIOLockedValueBox(0.0)
        let cache = ReadCache(manifestBytes: 1 << 20, ttl: 5, clock: { now.withLockedValue { $0 } })
        let d = Digest.compute(Array("m".utf8))
        cache.storeTag("team/old", "v1", d, generation: cache.generation("team/old"))
        now.withLockedValue { $0 = 3 }
        cache.storeTag("team/new", "v1", d, generation: cache.generation("team/new"))
        now.withLockedValue { $0 = 6 }   // team/old's entries expired, team/new's did not
        // the table reaches the sweep's size with the last of these: only team/new is left
        for i in 0..<(ReadCache.minimumSweep - 2) { cache.invalidate("team/r\(i)") }
        #expect(cache.repositoriesHeld == 1)
        #expect(cache.tag("team/new", "v1") == d)
        #expect(cache.tag("team/old", "v1") == nil)
    }

    @Test func generationsNeverRepeat() {
        let cache = ReadCache(manifestBytes: 1 << 20)
        var seen: Set<UInt64> = [cache.generation("team/app")]
        for i in 0..<(3 * ReadCache.minimumSweep) {
            guard i.isMultiple(of: 2) else {
                cache.invalidate("team/r\(i)")   // (sweeps forget team/app's entry now and then)
                continue
            }
            cache.invalidate("team/app")
            #expect(seen.insert(cache.generation("team/app")).inserted)
        }
        cache.invalidateAll()
        #expect(seen.insert(cache.generation("team/app")).inserted)
    }
}
