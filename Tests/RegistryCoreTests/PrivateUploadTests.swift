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

/// A blob store that records which upload ids were read one by one (owner, size) and whether
/// every upload was listed (`staleUploads`), so a test can tell what counting private sessions
/// touched.
final class ReadRecordingBlobStore: ForwardingBlobStore, @unchecked Sendable {
    let idsRead = Mutex<Set<String>>([])
    let fullListings = Mutex(0)

    init(base: any BlobStore) { super.init(inner: base) }

    override func uploadOwner(id: String) async throws -> String? {
        idsRead.withLock { _ = $0.insert(id) }
        return try await inner.uploadOwner(id: id)
    }

    override func uploadedSize(id: String) async throws -> Int64? {
        idsRead.withLock { _ = $0.insert(id) }
        return try await inner.uploadedSize(id: id)
    }

    override func staleUploads(olderThan: Double) async throws -> [String] {
        fullListings.withLock { $0 += 1 }
        return try await inner.staleUploads(olderThan: olderThan)
    }

    func forget() {
        idsRead.withLock { $0 = [] }
        fullListings.withLock { $0 = 0 }
    }
}

/// Private upload sessions (an import's kept partial copies): an id namespace of their own, so
/// counting them for the quotas never reads a client's upload, and a blob the repository holds
/// is not counted twice.
@Suite struct PrivateUploadTests {
    let repo = try! RepositoryName("team/app")

    func recorded() throws -> (Registry, ReadRecordingBlobStore) {
        let backends = try Backends.embedded(dataDirectory: NSTemporaryDirectory() + "berth-private-" + UUID().uuidString)
        let blobs = ReadRecordingBlobStore(base: backends.blobs)
        return (Registry(blobs: blobs, metadata: backends.metadata), blobs)
    }

    func park(_ r: Registry, _ repo: RepositoryName, _ digest: Digest, bytes: Int) async throws -> String {
        let id = try await r.openPrivateUpload(repo, digest: digest).id
        _ = try await r.appendUpload(repo, id, rangeStart: 0, privately: true, body: body([UInt8](repeating: 3, count: bytes)))
        return id
    }

    @Test func privateIDsHaveANamespaceNoClientUploadIDHas() async throws {
        let r = try makeRegistry()
        let digest = Digest.compute(Array("a layer".utf8))
        let id = Registry.privateUploadID(repo, digest)
        #expect(id.hasPrefix(Registry.privateUploadPrefix) && id.count <= 64)
        // One per (repository, blob); another repository or blob gets another.
        #expect(id == Registry.privateUploadID(repo, digest))
        #expect(id != Registry.privateUploadID(try RepositoryName("team/other"), digest))
        #expect(id != Registry.privateUploadID(repo, Digest.compute(Array("another".utf8))))
        for _ in 0..<20 {
            let ordinary = try await r.startUpload(repo)
            #expect(!ordinary.id.hasPrefix(Registry.privateUploadPrefix))
        }
        #expect(try await r.openPrivateUpload(repo, digest: digest).id == id)
    }

    @Test func clientCallsNeverReachAPrivateSessionNorPrivateCallsAClientUpload() async throws {
        let (r, blobs) = try recorded()
        let id = try await park(r, repo, Digest.compute(Array("layer".utf8)), bytes: 10)
        let ordinary = try await r.startUpload(repo)
        blobs.forget()
        // As `/v2/` would ask (no `privately`): unknown, and the store is not even asked.
        await #expect(throws: RegistryError.self) { _ = try await r.uploadStatus(repo, id) }
        await #expect(throws: RegistryError.self) { _ = try await r.appendUpload(repo, id, rangeStart: nil, body: body([1])) }
        await #expect(throws: RegistryError.self) { try await r.cancelUpload(repo, id) }
        await #expect(throws: RegistryError.self) {
            _ = try await r.finishUpload(repo, id, digest: Digest.compute(Array("layer".utf8)))
        }
        #expect(blobs.idsRead.withLock { $0 }.isEmpty)
        #expect(try await r.uploadStatus(repo, id, privately: true).size == 10)
        // And a private call never reaches a client's upload.
        await #expect(throws: RegistryError.self) { _ = try await r.uploadStatus(repo, ordinary.id, privately: true) }
        #expect(try await r.uploadStatus(repo, ordinary.id).size == 0)
    }

    /// The hot path of the review: counting the kept partial bytes (quota views, an import's
    /// plan, opening a private session) lists only the private namespace.
    @Test func countingPartialBytesReadsNoClientUpload() async throws {
        let (r, blobs) = try recorded()
        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: 1_000_000))
        var ordinary: [String] = []
        for i in 0..<5 {
            let u = try await r.startUpload(try RepositoryName("team/app\(i)"))
            _ = try await r.appendUpload(try RepositoryName("team/app\(i)"), u.id, rangeStart: 0, body: body([1, 2, 3]))
            ordinary.append(u.id)
        }
        let parked = try await park(r, repo, Digest.compute(Array("one".utf8)), bytes: 1_000)
        blobs.forget()
        let view = try #require(try await r.quotaViews().first)
        #expect(view.partialBytes == 1_000 && view.usedBytes == 0)
        try await r.checkBlobStorable(repo, size: 998_000, countingPartialsExcept: [])
        await #expect(throws: RegistryError.self) { try await r.checkBlobStorable(repo, size: 999_001, countingPartialsExcept: []) }
        // An import's own session is not counted (its plan counts the blob whole).
        try await r.checkBlobStorable(repo, size: 999_001, countingPartialsExcept: [parked])
        let another = try await r.openPrivateUpload(repo, digest: Digest.compute(Array("two".utf8)))
        #expect(another.size == 0)
        #expect(try await r.privateSessions().map(\.id).sorted() == [parked, another.id].sorted())
        let read = blobs.idsRead.withLock { $0 }
        #expect(read.isDisjoint(with: ordinary), "counting read a client's upload: \(read.intersection(ordinary))")
        #expect(blobs.fullListings.withLock { $0 } == 0)
        // The sweep still sees every upload, private or not.
        #expect(try await r.removeStaleUploads(now: Date().addingTimeInterval(r.configuration.uploadMaxAge + 60)) == 7)
    }

    /// A kept partial copy of a blob that a push then linked into the same repository counts once
    /// (as stored), not also as a partial; a session of that blob in another repository still
    /// counts there.
    @Test func aPartialCopyOfABlobTheRepositoryHoldsIsNotCountedTwice() async throws {
        let r = try makeRegistry()
        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: 10_000_000))
        let layer = [UInt8](repeating: 9, count: r.configuration.inlineBlobThreshold + 5_000)
        let digest = Digest.compute(layer)
        let other = try RepositoryName("team/other")
        let mine = try await park(r, repo, digest, bytes: 4_000)
        _ = try await park(r, other, digest, bytes: 3_000)
        var view = try #require(try await r.quotaViews().first)
        #expect(view.partialBytes == 7_000 && view.usedBytes == 0)
        // An ordinary push of that blob into team/app.
        _ = try await r.putBlob(repo, digest: digest, contentLength: Int64(layer.count), body: body(layer))
        view = try #require(try await r.quotaViews().first)
        #expect(view.usedBytes == Int64(layer.count))
        #expect(view.partialBytes == 3_000)
        // The checks count the same: room for exactly the rest.
        let rest = 10_000_000 - Int64(layer.count) - 3_000
        try await r.checkBlobStorable(repo, size: rest, countingPartialsExcept: [])
        await #expect(throws: RegistryError.self) { try await r.checkBlobStorable(repo, size: rest + 1, countingPartialsExcept: []) }
        // The session itself is left (whoever copies the blob next removes it, or the sweep).
        #expect(try await r.uploadStatus(repo, mine, privately: true).size == 4_000)
        // A small (inline) blob counts once too.
        let small = Array("small config".utf8)
        _ = try await park(r, repo, Digest.compute(small), bytes: 5)
        #expect(try #require(try await r.quotaViews().first).partialBytes == 3_005)
        _ = try await r.putBlob(repo, digest: Digest.compute(small), contentLength: Int64(small.count), body: body(small))
        #expect(try #require(try await r.quotaViews().first).partialBytes == 3_000)
    }

    /// A client's own writes count the kept partial copies too (they hold storage): a monolithic
    /// or chunked blob, an upload start, a mount and a manifest that would fit without them are
    /// refused with them, the refusal counting them as used; a push of the very blob a copy in
    /// that repository is for does not count the copy besides the blob; an import finishing its
    /// own copy does not count that copy twice, and keeps it when refused.
    @Test func aClientsWritesCountKeptPartialCopies() async throws {
        let r = try makeRegistry()
        let limit: Int64 = 400_000
        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: limit))
        func denied(_ body: () async throws -> Void) async -> String? {
            do { try await body(); return nil } catch let e as RegistryError { return e.code == .denied ? e.message : "\(e.code)" } catch { return "\(error)" }
        }
        let big = [UInt8](repeating: 3, count: 250_000)   // `park` writes 3s
        let parked = Digest.compute(big)
        _ = try await park(r, repo, parked, bytes: 200_000)   // an interrupted import's copy
        let layer = [UInt8](repeating: 1, count: 250_000)   // fits the quota alone, not with the copy
        let refusal = await denied {
            _ = try await r.putBlob(repo, digest: Digest.compute(layer), contentLength: Int64(layer.count), body: body(layer))
        }
        #expect(refusal?.contains("limit 400000 bytes, used 200000") == true, "\(refusal ?? "stored")")
        // chunked: refused at the end, nothing linked
        let upload = try await r.startUpload(repo)
        _ = try await r.appendUpload(repo, upload.id, rangeStart: 0, body: body(layer))
        #expect(await denied { _ = try await r.finishUpload(repo, upload.id, digest: Digest.compute(layer)) }?.contains("used 200000") == true)
        #expect(try await r.metadata.linkedBlobSize(repository: repo.value, digest: Digest.compute(layer)) == nil)
        // a manifest too (bytes of its own)
        let manifest = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.utf8)
        // the very blob the copy is for, pushed into this repository: the copy is not counted besides it
        _ = try await r.putBlob(repo, digest: parked, contentLength: Int64(big.count), body: body(big))
        var view = try #require(try await r.quotaViews().first)
        #expect(view.usedBytes == Int64(big.count) && view.partialBytes == 0)
        // another copy, in another repository under the quota: 120,000 kept
        let other = try RepositoryName("team/other")
        let second = [UInt8](repeating: 3, count: 130_000)
        _ = try await park(r, other, Digest.compute(second), bytes: 120_000)
        let fits = [UInt8](repeating: 2, count: 30_000)   // 250,000 + 120,000 + 30,000 = the limit
        _ = try await r.putBlob(repo, digest: Digest.compute(fits), contentLength: Int64(fits.count), body: body(fits))
        // full with the copy: an upload is refused up front, and so are a mount and a manifest
        #expect(await denied { _ = try await r.startUpload(repo) }?.contains("used 400000") == true)
        let elsewhere = try RepositoryName("outside/app")
        let outside = [UInt8](repeating: 4, count: 70_000)
        _ = try await r.putBlob(elsewhere, digest: Digest.compute(outside), contentLength: Int64(outside.count), body: body(outside))
        #expect(await denied { _ = try await r.mountBlob(repo, from: elsewhere.value, Digest.compute(outside)) }?.contains("quota 'team'") == true)
        #expect(await denied {
            _ = try await r.putManifest(repo, reference: .tag("t"), bytes: manifest, contentType: "application/vnd.oci.image.manifest.v1+json")
        }?.contains("quota 'team'") == true)
        // the import finishing its own copy is refused on the quota (no room for the rest), and keeps its bytes
        let own = try await r.openPrivateUpload(other, digest: Digest.compute(second))
        _ = try await r.appendUpload(other, own.id, rangeStart: own.size, privately: true,
                                     body: body(Array(second[Int(own.size)...])))
        #expect(await denied { _ = try await r.finishUpload(other, own.id, digest: Digest.compute(second), privately: true) }?
            .contains("quota 'team'") == true)
        #expect(try await r.uploadStatus(other, own.id, privately: true).size == Int64(second.count))
        // with room again, it becomes the blob, counted once
        try await r.deleteQuota(name: "team")
        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: 1_000_000))
        #expect(try await r.finishUpload(other, own.id, digest: Digest.compute(second), privately: true) == Int64(second.count))
        view = try #require(try await r.quotaViews().first)
        #expect(view.partialBytes == 0 && view.usedBytes == Int64(big.count + fits.count + second.count))
    }

    /// A session kept by an older build (64 hex digits, owner without the blob) is counted the old
    /// way (every upload listed) while one exists, never resumed nor trimmed, and swept by age;
    /// once a count finds none, the old listing is never done again.
    @Test func aSessionOfAnOlderBuildIsCountedTheOldWayUntilSwept() async throws {
        let (r, blobs) = try recorded()
        // Left by the older build before this process started.
        let digest = Digest.compute(Array("old".utf8))
        let legacy = Registry.legacyPrivateUploadID(repo, digest)
        try await blobs.inner.createUpload(id: legacy, owner: repo.value + "#private")
        _ = try await blobs.inner.append(id: legacy, offset: 0, body: body([1, 2, 3]), limit: nil)
        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: 1_000_000))
        _ = try await r.startUpload(repo)
        #expect(try await r.quotaViews().first?.partialBytes == 3)
        #expect(try await r.quotaViews().first?.partialBytes == 3)
        #expect(blobs.fullListings.withLock { $0 } >= 2)
        // Not resumed: the blob's session of this build starts empty; the old one is not trimmed.
        #expect(try await r.openPrivateUpload(repo, digest: digest).size == 0)
        #expect(try await r.trimPrivateUploads(room: 100, now: Date().addingTimeInterval(86_400)) == 1)
        #expect(try await blobs.uploadedSize(id: legacy) == 3)
        await #expect(throws: RegistryError.self) { _ = try await r.uploadStatus(repo, legacy, privately: true) }
        // The sweep removes it (and the ordinary upload) by age.
        #expect(try await r.removeStaleUploads(now: Date().addingTimeInterval(r.configuration.uploadMaxAge + 60)) == 2)
        blobs.forget()
        #expect(try await r.quotaViews().first?.partialBytes == 0)
        #expect(try await r.quotaViews().first?.partialBytes == 0)
        #expect(blobs.fullListings.withLock { $0 } == 1)
    }
}
