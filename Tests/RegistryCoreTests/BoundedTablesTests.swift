import Foundation
import NIOConcurrencyHelpers
import NIOCore
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
        for i in 0..<ReadCache.minimumSweep { cache.invalidate("team/r\(i)") }
        #expect(cache.repositoriesHeld < ReadCache.minimumSweep)   // a sweep ran
        #expect(!cache.holds("team/old"))                           // ... and took the expired entry
        #expect(cache.holds("team/new"))
        #expect(cache.tag("team/new", "v1") == d)
    }

    @Test func storesSweepToo() {
        let cache = ReadCache(manifestBytes: 1 << 20)
        let d = Digest.compute(Array("m".utf8))
        cache.invalidate("team/gone")   // an empty entry
        for i in 0..<ReadCache.minimumSweep { cache.storeTag("team/r\(i)", "v1", d, generation: cache.generation("team/r\(i)")) }
        #expect(!cache.holds("team/gone"))
        #expect(cache.repositoriesHeld == ReadCache.minimumSweep)
        #expect(cache.tag("team/r0", "v1") == d)
    }

    @Test func aFullCacheStartsOverAndKeepsWhatFilledIt() {
        // room for 4 manifests of 200 bytes (a manifest may take a quarter of the room)
        let cache = ReadCache(manifestBytes: 999)
        func manifest(_ i: Int) -> ManifestContent {
            let bytes = Array(String(repeating: "\(i % 10)", count: 200).utf8)
            return ManifestContent(digest: Digest.compute(bytes), mediaType: MediaType.ociManifest, bytes: ByteBuffer(bytes: bytes),
                                   subject: nil, quarantineState: nil, quarantineReason: nil)
        }
        let inFlight = cache.generation("team/other")   // a read of another repository under way
        for i in 0..<5 { cache.storeManifest("team/r\(i)", manifest(i), generation: cache.generation("team/r\(i)")) }
        #expect(cache.manifest("team/r4", manifest(4).digest) != nil)   // the store that filled it
        #expect(cache.manifest("team/r0", manifest(0).digest) == nil)   // what was there before
        #expect(cache.repositoriesHeld == 1)
        // a read recorded before the reset is not stored after it
        cache.storeTag("team/other", "v1", manifest(9).digest, generation: inFlight)
        #expect(cache.tag("team/other", "v1") == nil)
    }

    @Test func generationsNeverRepeat() {
        let cache = ReadCache(manifestBytes: 1 << 20)
        var seen: Set<UInt64> = [cache.generation("team/app")]
        var last = cache.generation("team/app")
        for i in 0..<(3 * ReadCache.minimumSweep) {
            cache.invalidate(i.isMultiple(of: 2) ? "team/app" : "team/r\(i)")
            let now = cache.generation("team/app")
            // team/app's generation changes when it is invalidated and when a sweep forgets it,
            // and each new value is one it never had before
            if now != last { #expect(seen.insert(now).inserted) }
            #expect(now != last || !i.isMultiple(of: 2))
            last = now
        }
        #expect(seen.count > 3 * ReadCache.minimumSweep / 2)   // sweeps moved it too
        cache.invalidateAll()
        #expect(seen.insert(cache.generation("team/app")).inserted)
    }

    // MARK: LinkTouches

    let layer = Digest.compute(Array("layer".utf8))

    @Test func aTouchIsDueOncePerSlack() {
        let touches = LinkTouches()
        #expect(touches.touch("team/app", layer, now: 100, slack: 5, keep: 3605))
        touches.written("team/app", layer, at: 100)
        #expect(!touches.touch("team/app", layer, now: 103, slack: 5, keep: 3605))
        #expect(touches.touch("team/other", layer, now: 103, slack: 5, keep: 3605))   // another link
        #expect(touches.touch("team/app", layer, now: 105, slack: 5, keep: 3605))
        #expect(touches.touch("team/app", layer, now: 90, slack: 5, keep: 3605))     // the clock went back
        #expect(touches.touched("team/app", layer, since: 90))
        #expect(!touches.touched("team/app", layer, since: 91))
    }

    @Test func digestsOfBothAlgorithmsAreTheirOwnLinks() throws {
        let touches = LinkTouches()
        let hex = String(repeating: "ab", count: 32)
        let sha256 = try Digest(parsing: "sha256:" + hex)
        let sameHexOtherAlgorithm = Digest(algorithm: .sha512, hex: hex)   // not a valid digest: only the key is tested
        let otherSha256 = try Digest(parsing: "sha256:" + String(repeating: "ab", count: 31) + "ac")
        _ = touches.touch("team/app", sha256, now: 10, slack: 5, keep: 100)
        #expect(touches.touched("team/app", sha256, since: 10))
        #expect(!touches.touched("team/app", sameHexOtherAlgorithm, since: 10))
        #expect(!touches.touched("team/app", otherSha256, since: 10))
        #expect(!touches.touched("team/ap", sha256, since: 10))
    }

    @Test func touchesOlderThanTheyCanMatterAreForgotten() {
        let touches = LinkTouches()
        // 100 links a second for 500 seconds, 10 seconds kept: about 1,000 can matter at a time
        for i in 0..<50_000 {
            let now = Double(i) / 100
            if touches.touch("team/r\(i)", layer, now: now, slack: 5, keep: 10) { touches.written("team/r\(i)", layer, at: now) }
        }
        #expect(touches.count <= 2 * LinkTouches.minimumSweep)
        // the last ones are still known
        #expect(touches.touched("team/r49999", layer, since: 499))
    }

    @Test func aTouchWithinTheGracePeriodSurvivesSweeps() {
        let touches = LinkTouches()
        _ = touches.touch("team/kept", layer, now: 0, slack: 5, keep: 3605)
        for i in 0..<(4 * LinkTouches.minimumSweep) {
            _ = touches.touch("team/r\(i)", layer, now: 3000, slack: 5, keep: 3605)
        }
        #expect(touches.touched("team/kept", layer, since: 0))
        // the same sweep after the grace period forgets it
        for i in 0..<(8 * LinkTouches.minimumSweep) {
            _ = touches.touch("team/s\(i)", layer, now: 3700, slack: 5, keep: 3605)
        }
        #expect(!touches.touched("team/kept", layer, since: 0))
    }

    @Test func pruneForgetsEachTimeBeforeItsBound() {
        let touches = LinkTouches()
        _ = touches.touch("team/app", layer, now: 10, slack: 5, keep: 100)
        touches.written("team/app", layer, at: 10)
        _ = touches.touch("team/app", layer, now: 12, slack: 5, keep: 100)
        touches.prune(before: 11)
        #expect(touches.count == 1)
        #expect(touches.touched("team/app", layer, since: 12))
        // the write at 10 is forgotten: the next touch is due at once
        #expect(touches.touch("team/app", layer, now: 13, slack: 5, keep: 100))
        touches.prune(before: 20)
        #expect(touches.count == 0)
    }
}
