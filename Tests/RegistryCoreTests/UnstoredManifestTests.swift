import Foundation
import NIOCore
import OCIModel
import RegistryStore
import Testing
@testable import RegistryCore

/// What a pull-through cache may answer before an image is stored (`Registry.unstoredManifest`),
/// and the pull time of such an answer, which waits for the manifest to be stored.
@Suite struct UnstoredManifestTests {
    let repo = try! RepositoryName("mirror/app")
    static let config = Array(#"{"os":"linux"}"#.utf8)

    func manifest(_ layer: [UInt8]) -> [UInt8] {
        let c = Digest.compute(Self.config), l = Digest.compute(layer)
        return Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":\#(Self.config.count)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(l)","size":\#(layer.count)}]}"#.utf8)
    }

    func store(_ r: Registry, _ layer: [UInt8], tag: String) async throws -> Digest {
        _ = try await r.putBlob(repo, digest: Digest.compute(Self.config), contentLength: Int64(Self.config.count), body: body(Self.config))
        _ = try await r.putBlob(repo, digest: Digest.compute(layer), contentLength: Int64(layer.count), body: body(layer))
        let bytes = manifest(layer)
        _ = try await r.putManifest(repo, reference: .tag(tag), bytes: bytes, contentType: MediaType.ociManifest)
        return Digest.compute(bytes)
    }

    @Test func aManifestNotStoredIsAnsweredUnstoredAStoredOneWithItsVerdictAndNoneUnderQuarantine() async throws {
        let r = try makeRegistry()
        let fresh = manifest(Array("fresh".utf8))
        let freshDigest = Digest.compute(fresh)
        // Bytes that are not the digest's, or not a manifest: refused.
        await #expect(throws: RegistryError.self) {
            _ = try await r.unstoredManifest(repo, tag: "v1", digest: Digest.compute(Array("x".utf8)), bytes: fresh,
                                             contentType: MediaType.ociManifest)
        }
        let notJSON = Array("not a manifest".utf8)
        await #expect(throws: RegistryError.self) {
            _ = try await r.unstoredManifest(repo, tag: "v1", digest: Digest.compute(notJSON), bytes: notJSON, contentType: nil)
        }
        let early = try #require(try await r.unstoredManifest(repo, tag: "v1", digest: freshDigest, bytes: fresh,
                                                              contentType: MediaType.ociManifest))
        #expect(!early.stored && early.quarantineState == nil && early.digest == freshDigest)

        // Stored already (under another tag) with a Failed verdict: answered as stored, with it.
        let kept = try await store(r, Array("kept".utf8), tag: "old")
        try await r.setQuarantine(repo, kept, state: .failed, reason: "bad image")
        let answer = try #require(try await r.unstoredManifest(repo, tag: "new", digest: kept, bytes: manifest(Array("kept".utf8)),
                                                               contentType: MediaType.ociManifest))
        #expect(answer.stored && answer.quarantineState == .failed && answer.quarantineReason == "bad image")

        // A write-locked repository could not take the fill: refused now.
        _ = try await r.updateLock(repo, tag: nil, digest: nil, LockChange(writeEnabled: false))
        await #expect(throws: RegistryError.self) {
            _ = try await r.unstoredManifest(repo, tag: "v1", digest: freshDigest, bytes: fresh, contentType: MediaType.ociManifest)
        }
        _ = try await r.updateLock(repo, tag: nil, digest: nil, LockChange(writeEnabled: true))

        // Quarantine on: judged only once stored, so nothing is answered early.
        _ = try await r.updateQuarantine(QuarantinePolicy(enabled: true, grandfatherExisting: true), dryRun: false)
        #expect(try await r.unstoredManifest(repo, tag: "v1", digest: freshDigest, bytes: fresh, contentType: MediaType.ociManifest) == nil)
    }

    /// Review: the first pull of a cached image was answered before its manifest was stored, and
    /// the store ignored it. Such a pull waits, and is pending once that manifest is stored in
    /// that repository (with its tag); others stay waiting, bounded, and an old one gives way.
    @Test func aPullOfAManifestNotStoredYetCountsOnceItIsStored() async throws {
        let r = try makeRegistry()
        let layer = Array("pulled".utf8)
        let digest = Digest.compute(manifest(layer))
        let other = Digest.compute(Array("other".utf8))
        let t = Date()
        r.pullTimes.recordBeforeStored(repository: repo.value, digest: digest, tag: "v1", at: t)
        r.pullTimes.recordBeforeStored(repository: "mirror/elsewhere", digest: digest, tag: nil, at: t)
        r.pullTimes.recordBeforeStored(repository: repo.value, digest: other, tag: nil, at: t)
        #expect(r.pullTimes.pendingCount == 0)
        #expect(try await store(r, layer, tag: "v1") == digest)
        #expect(r.pullTimes.pendingCount == 1)
        #expect(try await r.flushPullTimes() == 1)
        let times = try await r.metadata.pullTimes(repository: repo.value)
        #expect(times.manifests[digest.string] != nil && times.tags["v1"] != nil)

        let recorder = PullTimeRecorder()
        let old = t.addingTimeInterval(-PullTimeRecorder.beforeStoredSeconds - 1)
        for i in 0..<PullTimeRecorder.beforeStoredCapacity {
            recorder.recordBeforeStored(repository: "r\(i)", digest: other, tag: nil, at: i == 0 ? old : t)
        }
        recorder.recordBeforeStored(repository: "new", digest: other, tag: nil, at: t)     // the old one gives way
        recorder.recordBeforeStored(repository: "newer", digest: other, tag: nil, at: t)   // full of recent ones: dropped
        #expect(recorder.droppedCount == 1)
        recorder.stored(repository: "new", digest: other)
        recorder.stored(repository: "r0", digest: other)
        #expect(recorder.pendingCount == 1)
    }
}
