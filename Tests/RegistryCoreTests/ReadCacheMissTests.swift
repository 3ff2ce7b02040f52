import Foundation
import NIOConcurrencyHelpers
import OCIModel
import Testing
@testable import RegistryCore

/// Concurrent misses of one cache entry make one store read (when a hot entry expires, every
/// request in flight for it misses at once).
@Suite struct ReadCacheMissTests {
    /// A read that counts its calls and does not finish until `open()`.
    final class GatedRead: Sendable {
        let calls = NIOLockedValueBox(0)
        let gate = NIOLockedValueBox<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

        func read<V: Sendable>(_ value: V) async throws -> V {
            calls.withLockedValue { $0 += 1 }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resume = gate.withLockedValue { g -> Bool in
                    if g.open { return true }
                    g.waiting.append(c)
                    return false
                }
                if resume { c.resume() }
            }
            return value
        }

        func open() {
            for c in gate.withLockedValue({ g -> [CheckedContinuation<Void, Never>] in
                g.open = true
                defer { g.waiting = [] }
                return g.waiting
            }) { c.resume() }
        }
    }

    /// Yields until `condition` holds (a bounded number of times, then the test fails).
    func eventually(_ condition: () -> Bool) async {
        for _ in 0..<1_000_000 where !condition() { await Task.yield() }
        #expect(condition())
    }

    let digest = Digest.compute(Array("m".utf8))

    @Test func concurrentMissesOfOneEntryMakeOneRead() async throws {
        let cache = ReadCache(manifestBytes: 1 << 20)
        let read = GatedRead()
        let generation = cache.generation("team/app")
        let key = ReadCache.MissKey(repository: "team/app", generation: generation, entry: .tag("latest"))
        let d = digest
        let results = Task {
            try await withThrowingTaskGroup(of: Digest?.self) { group in
                for _ in 0..<32 {
                    group.addTask { try await cache.miss("team/app", generation: generation, .tag("latest")) { try await read.read(Optional(d)) } }
                }
                return try await group.reduce(into: [Digest?]()) { $0.append($1) }
            }
        }
        await eventually { cache.misses.callers(key) == 32 }
        read.open()
        let values = try await results.value
        #expect(values.count == 32 && values.allSatisfy { $0 == d })
        #expect(read.calls.withLockedValue { $0 } == 1)
        #expect(cache.misses.callers(key) == 0)

        // the next miss (after the entry expired, say) reads again
        #expect(try await cache.miss("team/app", generation: generation, .tag("latest")) { try await read.read(Optional(d)) } == d)
        #expect(read.calls.withLockedValue { $0 } == 2)
    }

    @Test func aMissAfterAChangeDoesNotJoinAReadStartedBeforeIt() async throws {
        let cache = ReadCache(manifestBytes: 1 << 20)
        let before = GatedRead(), after = GatedRead()
        let old = cache.generation("team/app")
        let stale = Task { try await cache.miss("team/app", generation: old, .blobSize(digest)) { try await before.read(Optional(Int64(1))) } }
        await eventually { before.calls.withLockedValue { $0 } == 1 }
        cache.invalidate("team/app")   // a push or an event from another node
        let new = cache.generation("team/app")
        #expect(new != old)
        after.open()
        #expect(try await cache.miss("team/app", generation: new, .blobSize(digest)) { try await after.read(Optional(Int64(2))) } == 2)
        #expect(after.calls.withLockedValue { $0 } == 1)
        before.open()
        #expect(try await stale.value == 1)
    }

    @Test func aFailedReadFailsItsWaitersAndTheNextMissReadsAgain() async throws {
        struct Refused: Error {}
        let cache = ReadCache(manifestBytes: 1 << 20)
        let read = GatedRead()
        let generation = cache.generation("team/app")
        let key = ReadCache.MissKey(repository: "team/app", generation: generation, entry: .manifest(digest))
        let failures = Task {
            await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        do {
                            let _: Int? = try await cache.miss("team/app", generation: generation, .manifest(digest)) {
                                _ = try await read.read(0)
                                throw Refused()
                            }
                            return false
                        } catch { return error is Refused }
                    }
                }
                return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
            }
        }
        await eventually { cache.misses.callers(key) == 8 }
        read.open()
        #expect(await failures.value == 8)
        #expect(read.calls.withLockedValue { $0 } == 1)
        let value: Int? = try await cache.miss("team/app", generation: generation, .manifest(digest)) { try await read.read(7) }
        #expect(value == 7)
    }
}
