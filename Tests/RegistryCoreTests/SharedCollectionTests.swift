import Backends
import BlobStorage
import BlobStoreConformance
import Foundation
import NIOCore
import OCIModel
import RegistryStore
import Synchronization
import Testing
@testable import RegistryCore

/// A blob store that runs a hook once, right after a push committed the bytes and before the
/// registry links them: where garbage collection on another node used to see bytes or a record
/// that nothing referenced yet.
final class HookedBlobStore: ForwardingBlobStore, @unchecked Sendable {
    let afterCommit = Mutex<(@Sendable () async throws -> Void)?>(nil)

    init(base: any BlobStore) { super.init(inner: base) }

    override func commitUpload(id: String, expected: Digest, expectedSize: Int64?) async throws -> Int64 {
        let size = try await inner.commitUpload(id: id, expected: expected, expectedSize: expectedSize)
        if let hook = afterCommit.withLock({ h in defer { h = nil }; return h }) { try await hook() }
        return size
    }
}

/// Garbage collection on one node and pushes and pulls on another, over one database file and one
/// blob directory (as two `berth serve` nodes over one database and one bucket).
@Suite struct SharedCollectionTests {
    let repo = try! RepositoryName("team/app")

    /// Two registries over the same backends, with a grace period of `grace` (0: everything
    /// unreferenced is collectable at once unless a pin or a touch keeps it); `b` touches links at
    /// `bClock`.
    func twoNodes(grace: Double = 0, bClock: @escaping @Sendable () -> Date = { Date() }) async throws
        -> (a: Registry, aBlobs: HookedBlobStore, b: Registry) {
        let dir = NSTemporaryDirectory() + "berth-shared-gc-" + UUID().uuidString
        let first = try Backends.embedded(dataDirectory: dir), second = try Backends.embedded(dataDirectory: dir)
        let hooked = HookedBlobStore(base: first.blobs)
        let a = Registry(blobs: hooked, metadata: first.metadata)
        var configuration = RegistryConfiguration()
        configuration.touchClock = bClock
        let b = Registry(blobs: second.blobs, metadata: second.metadata, configuration: configuration)
        var policy = GarbageCollectionPolicy()
        policy.graceSeconds = grace
        try await a.updateGarbageCollection(policy)
        return (a, hooked, b)
    }

    func large(_ r: Registry, _ seed: UInt8) -> [UInt8] {
        Array(repeating: seed, count: r.configuration.inlineBlobThreshold + 100)
    }

    @Test func collectionOnOneNodeLeavesWhatAPushOnTheOtherIsCommitting() async throws {
        let (a, aBlobs, b) = try await twoNodes()
        // stored before and unreferenced now (its record would go), and new (its bytes would be an orphan file)
        let old = large(a, 1), new = large(a, 2)
        let oldDigest = Digest.compute(old), newDigest = Digest.compute(new)
        _ = try await a.putBlob(repo, digest: oldDigest, contentLength: Int64(old.count), body: body(old))
        #expect(try await a.metadata.unlinkBlob(repository: repo.value, digest: oldDigest))
        for (bytes, digest) in [(old, oldDigest), (new, newDigest)] {
            let collected = Mutex<GarbageCollectionReport?>(nil)
            aBlobs.afterCommit.withLock { hook in
                hook = { let report = try await b.collectGarbage(dryRun: false); collected.withLock { $0 = report } }
            }
            _ = try await a.putBlob(repo, digest: digest, contentLength: Int64(bytes.count), body: body(bytes))
            let report = try #require(collected.withLock { $0 })
            #expect(!report.digests.contains(digest.string), "collection on b removed \(digest) while a committed it")
            #expect(try await read(a, repo, digest) == bytes)
            #expect(try await read(b, repo, digest) == bytes)
        }
        // Once linked and unpinned, the same blob is collectable again when nothing references it.
        #expect(try await a.metadata.unlinkBlob(repository: repo.value, digest: newDigest))
        let later = try await b.collectGarbage(dryRun: false)
        #expect(later.digests.contains(newDigest.string))
        #expect(try await b.blobs.size(of: newDigest) == nil)
    }

    /// The links are a minute old (older than the grace period) when b touches one and a collects.
    @Test func collectionOnOneNodeKeepsALinkTheOtherJustTouched() async throws {
        let clock = Mutex(Date())
        let (a, _, b) = try await twoNodes(grace: 10, bClock: { clock.withLock { $0 } })
        let touched = large(a, 3), untouched = large(a, 4)
        for bytes in [touched, untouched] {
            _ = try await a.putBlob(repo, digest: Digest.compute(bytes), contentLength: Int64(bytes.count), body: body(bytes))
        }
        let later = Date().addingTimeInterval(60)
        clock.withLock { $0 = later }
        // b tells a client the blob exists (a HEAD): the client's next manifest will reference it
        #expect(try await b.blobSize(repo, Digest.compute(touched)) == Int64(touched.count))
        let report = try await a.collectGarbage(dryRun: false, now: later.addingTimeInterval(1))
        #expect(report.linksRemoved == 1, "the untouched link goes")
        #expect(try await a.metadata.linkedBlobSize(repository: repo.value, digest: Digest.compute(untouched)) == nil)
        #expect(try await a.metadata.linkedBlobSize(repository: repo.value, digest: Digest.compute(touched)) == Int64(touched.count))
        #expect(try await read(a, repo, Digest.compute(touched)) == touched)
    }
}
