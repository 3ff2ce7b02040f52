import Foundation
import NIOCore
import OCIModel
import RegistryStore
import Testing
@testable import RegistryCore

/// The lifecycle features against a real embedded registry (SQLite + filesystem blob store).
@Suite struct LifecycleRegistryTests {
    let repo = try! RepositoryName("team/app")

    func push(_ r: Registry, _ repo: RepositoryName, tag: String?, layer: [UInt8], subject: Digest? = nil) async throws -> Digest {
        let config = Array(#"{"os":"linux"}"#.utf8)
        let c = Digest.compute(config)
        let l = Digest.compute(layer)
        _ = try await r.putBlob(repo, digest: c, contentLength: Int64(config.count), body: body(config))
        _ = try await r.putBlob(repo, digest: l, contentLength: Int64(layer.count), body: body(layer))
        var json = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":\#(config.count)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(l)","size":\#(layer.count)}]"#
        if let subject {
            json += #","artifactType":"application/spdx+json","subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(subject)","size":1}"#
        }
        json += "}"
        let bytes = Array(json.utf8)
        let d = Digest.compute(bytes)
        _ = try await r.putManifest(repo, reference: tag.map { .tag($0) } ?? .digest(d), bytes: bytes,
                                    contentType: "application/vnd.oci.image.manifest.v1+json")
        return d
    }

    func noGrace(_ r: Registry) async throws {
        var p = GarbageCollectionPolicy()
        p.graceSeconds = 0
        try await r.updateGarbageCollection(p)
    }

    @Test func deleteCollectAndUsageStayExact() async throws {
        let r = try makeRegistry()
        try await noGrace(r)
        let big = Array(repeating: UInt8(7), count: r.configuration.inlineBlobThreshold + 10)
        let keep = try await push(r, repo, tag: "keep", layer: Array("small".utf8))
        let gone = try await push(r, repo, tag: "gone", layer: big)
        let sbom = try await push(r, repo, tag: nil, layer: Array("sbom".utf8), subject: gone)
        try await r.deleteManifest(repo, .digest(gone))
        await #expect(try r.metadata.manifest(repository: repo.value, digest: sbom) == nil, "the referrer goes with its subject")
        let dry = try await r.collectGarbage(dryRun: true)
        #expect(dry.digests.contains(Digest.compute(big).string))
        #expect(try await r.blobs.size(of: Digest.compute(big)) != nil, "a dry run deletes nothing")
        let real = try await r.collectGarbage(dryRun: false)
        #expect(Set(real.digests) == Set(dry.digests))
        #expect(try await r.blobs.size(of: Digest.compute(big)) == nil)
        // What remains is exactly the kept image: config, layer, manifest.
        let kept = try await r.manifest(repo, .digest(keep))
        let usage = try await r.usage(repository: nil)
        #expect(usage.bytes == Int64(#"{"os":"linux"}"#.utf8.count + "small".utf8.count + kept.bytes.readableBytes))
        #expect(usage.manifests == 1 && usage.tags == 1)
        #expect(try await read(r, repo, Digest.compute(Array("small".utf8))) == Array("small".utf8))
    }

    @Test func softDeleteRestoresIdenticalBytesAndGCKeepsThem() async throws {
        let r = try makeRegistry()
        try await noGrace(r)
        var soft = SoftDeletePolicy()
        soft.enabled = true
        soft.days = 1
        try await r.updateSoftDelete(soft)
        let big = Array(repeating: UInt8(9), count: r.configuration.inlineBlobThreshold + 1)
        let d = try await push(r, repo, tag: "v1", layer: big)
        let before = try await r.manifest(repo, .digest(d)).bytes
        try await r.deleteManifest(repo, .digest(d))
        _ = try await r.collectGarbage(dryRun: false)
        #expect(try await r.blobs.size(of: Digest.compute(big)) != nil, "blobs of soft-deleted manifests are kept")
        await #expect(try r.deletedManifests(repo).map(\.tags) == [["v1"]])
        let restored = try await r.restoreManifest(repo, digest: d, tag: nil)
        #expect(restored.map(\.digest) == [d.string] && restored[0].tags == ["v1"])
        await #expect(try r.manifest(repo, .tag("v1")).bytes == before)
        #expect(try await read(r, repo, Digest.compute(big)) == big)
        // Expiry removes it for good; then GC reclaims the bytes.
        try await r.deleteManifest(repo, .digest(d))
        #expect(try await r.expireSoftDeleted(now: Date().addingTimeInterval(2 * 86_400)) == 1)
        _ = try await r.collectGarbage(dryRun: false)
        #expect(try await r.blobs.size(of: Digest.compute(big)) == nil)
        await #expect(try r.usage(repository: nil).bytes == 0)
    }

    @Test func recycleBinKeepsTheTagHistory() async throws {
        let r = try makeRegistry()
        var soft = SoftDeletePolicy()
        soft.enabled = true
        try await r.updateSoftDelete(soft)
        let d = try await push(r, repo, tag: "v1", layer: Array("history".utf8))
        _ = try await push(r, repo, tag: "latest", layer: Array("history".utf8))
        try await r.deleteManifest(repo, .tag("v1"))
        try await r.deleteManifest(repo, .digest(d))
        await #expect(try r.deletedManifests(repo).first?.tags == ["latest", "v1"])
        let restored = try await r.restoreManifest(repo, digest: d, tag: nil)
        #expect(Set(restored.first?.tags ?? []) == ["latest", "v1"])
        await #expect(try r.resolve(repo, .tag("v1")) == d)
    }

    @Test func theBinIsListedNewestFirstAndAReferrerDeletedWithItsSubjectComesBackWithIt() async throws {
        let r = try makeRegistry()
        var soft = SoftDeletePolicy()
        soft.enabled = true
        try await r.updateSoftDelete(soft)
        let first = try await push(r, repo, tag: "one", layer: Array("first".utf8))
        let second = try await push(r, repo, tag: "two", layer: Array("second".utf8))
        let sbom = try await push(r, repo, tag: nil, layer: Array("sbom".utf8), subject: second)
        try await r.deleteManifest(repo, .digest(first))
        try await Task.sleep(for: .milliseconds(5))
        try await r.deleteManifest(repo, .digest(second))
        let bin = try await r.deletedManifests(repo)
        #expect(bin.map(\.digest).last == first.string)
        #expect(Set(bin.map(\.digest)) == [first.string, second.string, sbom.string])
        #expect(bin == bin.sorted { $0.deletedAt != $1.deletedAt ? $0.deletedAt > $1.deletedAt : $0.id > $1.id })
        let restored = try await r.restoreManifest(repo, digest: second, tag: nil)
        #expect(restored.map(\.digest) == [second.string, sbom.string])
        await #expect(try r.metadata.referrers(repository: repo.value, subject: second).map(\.digest) == [sbom])
        await #expect(try r.resolve(repo, .tag("two")) == second)
        await #expect(try r.deletedManifests(repo).map(\.digest) == [first.string])
    }

    @Test func aRestoreOfWhatIsNotInTheBinIs404AnIndexWithoutItsChild409ALockedTag403First() async throws {
        let r = try makeRegistry()
        var soft = SoftDeletePolicy()
        soft.enabled = true
        try await r.updateSoftDelete(soft)
        let kept = try await push(r, repo, tag: "t", layer: Array("kept".utf8))
        let child = try await push(r, repo, tag: "c", layer: Array("child".utf8))
        let stored = try await push(r, repo, tag: nil, layer: Array("stored".utf8))
        await #expect(throws: LifecycleError.notFound("manifest \(stored) in the recycle bin of \(repo.value)")) {
            try await r.restoreManifest(repo, digest: stored, tag: nil)
        }
        // an index whose child (tagged, so not deleted with it) is then deleted for good
        let index = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(child)","size":1}]}"#.utf8)
        let indexDigest = Digest.compute(index)
        _ = try await r.putManifest(repo, reference: .tag("i"), bytes: index, contentType: "application/vnd.oci.image.index.v1+json")
        try await r.deleteManifest(repo, .digest(indexDigest))
        soft.enabled = false
        try await r.updateSoftDelete(soft)
        try await r.deleteManifest(repo, .digest(child))
        await #expect(throws: LifecycleError.conflict("cannot restore \(indexDigest): \(child) is no longer stored")) {
            try await r.restoreManifest(repo, digest: indexDigest, tag: nil)
        }
        // the named tag's target is write-locked: 403, before anything is said about the restore
        _ = try await r.updateLock(repo, tag: nil, digest: kept, LockChange(writeEnabled: false))
        do {
            _ = try await r.restoreManifest(repo, digest: stored, tag: "t")
            Issue.record("a restore over a locked tag was not refused")
        } catch let e as RegistryError {
            #expect(e.status == 403)
        }
    }

    @Test func quotaRefusesAndLeavesNothingBehind() async throws {
        let r = try makeRegistry()
        _ = try await r.createQuota(QuotaLimit(name: "team", prefix: "team/", limitBytes: 100_000))
        let big = Array(repeating: UInt8(3), count: 150_000)
        let d = Digest.compute(big)
        await #expect(throws: RegistryError.self) {
            _ = try await r.putBlob(repo, digest: d, contentLength: Int64(big.count), body: body(big))
        }
        await #expect(try r.metadata.linkedBlobSize(repository: repo.value, digest: d) == nil)
        #expect(try await r.blobs.size(of: d) == nil)
        #expect(try await r.blobs.openUploadCount() == 0)
        // Another prefix is not limited.
        _ = try await r.putBlob(try RepositoryName("other/app"), digest: d, contentLength: Int64(big.count), body: body(big))
        await #expect(try r.quotaViews().first?.usedBytes == 0)
    }

    @Test func locksAreEnforcedOnPushPullAndDelete() async throws {
        let r = try makeRegistry()
        let d = try await push(r, repo, tag: "v1", layer: Array("one".utf8))
        _ = try await r.updateLock(repo, tag: "v1", digest: nil, LockChange(writeEnabled: false))
        let other = try await push(r, repo, tag: nil, layer: Array("two".utf8))
        await #expect(throws: RegistryError.self) { _ = try await push(r, repo, tag: "v1", layer: Array("two".utf8)) }
        _ = try await push(r, repo, tag: "v1", layer: Array("one".utf8))  // same digest: not a move
        await #expect(throws: RegistryError.self) { try await r.deleteManifest(repo, .tag("v1")) }
        await #expect(throws: RegistryError.self) { try await r.deleteManifest(repo, .digest(d)) }
        _ = try await r.updateLock(repo, tag: nil, digest: other, LockChange(readEnabled: false))
        await #expect(throws: RegistryError.self) { _ = try await r.manifest(repo, .digest(other)) }
        _ = try await r.updateLock(repo, tag: nil, digest: nil, LockChange(readEnabled: false, writeEnabled: false))
        await #expect(throws: RegistryError.self) { _ = try await r.blobSize(repo, Digest.compute(Array("one".utf8))) }
        await #expect(throws: RegistryError.self) { _ = try await r.startUpload(repo) }
        _ = try await r.updateLock(repo, tag: nil, digest: nil, LockChange(readEnabled: true, writeEnabled: true))
        _ = try await r.updateLock(repo, tag: "v1", digest: nil, LockChange(writeEnabled: true))
        try await r.deleteManifest(repo, .tag("v1"))
    }

    /// A push as a client makes it: a manifest refused with MANIFEST_BLOB_UNKNOWN (its blobs were
    /// collected because the moment between its blob uploads and the manifest outlasted the grace
    /// period, as happens on a loaded 2-core CI machine) is pushed again, blobs first, a few times.
    /// Only an acknowledged push counts: what it references must never be lost.
    func pushRetrying(_ r: Registry, _ repo: RepositoryName, layer: [UInt8]) async throws -> Digest {
        for attempt in 1... {
            do {
                return try await push(r, repo, tag: "t", layer: layer)
            } catch let e as RegistryError where e.code == .manifestBlobUnknown && attempt < 4 {
                continue
            }
        }
        fatalError("unreachable")
    }

    /// Garbage collection runs over and over while pushes reuse the same blobs: nothing a push
    /// was acknowledged for is ever lost.
    @Test func collectionDuringPushesLosesNothing() async throws {
        let r = try makeRegistry()
        // The grace period covers the moment between a push's blob uploads and its manifest (3 s:
        // on a loaded 2-core CI machine that moment was seen to pass 1 s).
        var p = GarbageCollectionPolicy()
        p.graceSeconds = 3
        try await r.updateGarbageCollection(p)
        let layers = (0..<4).map { i in Array(repeating: UInt8(i), count: r.configuration.inlineBlobThreshold + 100 + i) }
        let deadline = Date().addingTimeInterval(4)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while Date() < deadline { _ = try await r.collectGarbage(dryRun: false) }
            }
            for worker in 0..<3 {
                group.addTask {
                    var n = 0
                    while Date() < deadline {
                        let layer = layers[(worker + n) % layers.count]
                        let repo = try RepositoryName("stress/w\(worker)")
                        let d = try await pushRetrying(r, repo, layer: layer)
                        #expect(try await read(r, repo, Digest.compute(layer)) == layer)
                        if n % 2 == 0 { try await r.deleteManifest(repo, .digest(d)) }
                        n += 1
                    }
                    // end on an image that is kept
                    _ = try await push(r, try RepositoryName("stress/w\(worker)"), tag: "t", layer: layers[worker])
                }
            }
            try await group.waitForAll()
        }
        // Past the grace period, a collection must still leave every kept image whole.
        try await Task.sleep(for: .milliseconds(3100))
        _ = try await r.collectGarbage(dryRun: false)
        for worker in 0..<3 {
            let repo = try RepositoryName("stress/w\(worker)")
            let content = try await r.manifest(repo, .tag("t"))
            let parsed = try ManifestParser.parse(Array(content.bytes.readableBytesView), contentType: content.mediaType)
            #expect(!parsed.blobs.isEmpty)
            for blob in parsed.blobs { #expect(try await read(r, repo, blob).count > 0) }
        }
    }
}
