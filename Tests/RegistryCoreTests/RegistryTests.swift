import Backends
import Foundation
import NIOCore
import OCIModel
import Testing
@testable import RegistryCore

func makeRegistry() throws -> Registry {
    let dir = NSTemporaryDirectory() + "berth-core-" + UUID().uuidString
    return try Registry.embedded(dataDirectory: dir)
}

func body(_ bytes: [UInt8]) -> AsyncStream<ByteBuffer> {
    AsyncStream { c in
        c.yield(ByteBuffer(bytes: bytes))
        c.finish()
    }
}

func read(_ registry: Registry, _ repo: RepositoryName, _ d: Digest) async throws -> [UInt8] {
    let size = try await registry.blobSize(repo, d)
    var out: [UInt8] = []
    try await registry.readBlob(repo, d, range: 0..<size) { out.append(contentsOf: $0.readableBytesView) }
    return out
}

@Suite struct RegistryTests {
    let repo = try! RepositoryName("team/app")

    @Test func smallBlobsAreInlineAndLargeOnesAreFiles() async throws {
        let registry = try makeRegistry()
        let small = Array(repeating: UInt8(1), count: registry.configuration.inlineBlobThreshold)
        let large = Array(repeating: UInt8(2), count: registry.configuration.inlineBlobThreshold + 1)
        for bytes in [small, large] {
            let d = Digest.compute(bytes)
            _ = try await registry.putBlob(repo, digest: d, contentLength: Int64(bytes.count), body: body(bytes))
            #expect(try await read(registry, repo, d) == bytes)
        }
        #expect(try await registry.blobs.size(of: Digest.compute(small)) == nil)
        #expect(try await registry.blobs.size(of: Digest.compute(large)) == Int64(large.count))
        await #expect(try registry.metadata.inlineContent(Digest.compute(small)) == small)
        let stored = try await registry.metadata.storedBytes()
        #expect(stored == Int64(small.count + large.count))
    }

    @Test func aRangeOutsideTheStoredBlobIsRefusedNotSliced() async throws {
        // Found in review: the console and content trust read a blob with the size a pushed
        // descriptor claims; an inline blob was sliced with it and the process trapped.
        let registry = try makeRegistry()
        for count in [2, registry.configuration.inlineBlobThreshold + 1] {
            let bytes = Array(repeating: UInt8(7), count: count)
            let d = Digest.compute(bytes)
            _ = try await registry.putBlob(repo, digest: d, contentLength: Int64(count), body: body(bytes))
            for range in [Int64(0)..<Int64(count + 1000), Int64(-1)..<Int64(1), Int64(count + 1)..<Int64(count + 2)] {
                await #expect(throws: RegistryError.self) {
                    try await registry.readBlob(repo, d, range: range) { _ in }
                }
            }
            var out: [UInt8] = []
            try await registry.readBlob(repo, d, range: 1..<Int64(count)) { out.append(contentsOf: $0.readableBytesView) }
            #expect(out == Array(bytes.dropFirst()))
        }
    }

    @Test func cachedTagsFollowMovesAndDeletes() async throws {
        let registry = try makeRegistry()
        func image(_ seed: String) async throws -> [UInt8] {
            let config = Array("{\"s\":\"\(seed)\"}".utf8)
            _ = try await registry.putBlob(repo, digest: Digest.compute(config), contentLength: Int64(config.count), body: body(config))
            return Array("""
            {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Digest.compute(config))","size":\(config.count)},"layers":[]}
            """.utf8)
        }
        let a = try await image("a"), b = try await image("b")
        _ = try await registry.putManifest(repo, reference: .tag("t"), bytes: a, contentType: MediaType.ociManifest)
        await #expect(Array(buffer: try registry.manifest(repo, .tag("t")).bytes) == a)   // now cached
        _ = try await registry.putManifest(repo, reference: .tag("t"), bytes: b, contentType: MediaType.ociManifest)
        await #expect(Array(buffer: try registry.manifest(repo, .tag("t")).bytes) == b)
        try await registry.deleteManifest(repo, .digest(Digest.compute(b)))
        await #expect(throws: RegistryError.self) { try await registry.manifest(repo, .tag("t")) }
        await #expect(throws: RegistryError.self) { try await registry.manifest(repo, .digest(Digest.compute(b))) }
        await #expect(Array(buffer: try registry.manifest(repo, .digest(Digest.compute(a))).bytes) == a)
    }

    /// Two pushes to one tag race: the store refuses the one planned from a target the tag has
    /// left, and the core plans it again, so both pushes succeed with their manifests stored.
    @Test func concurrentPushesToOneTagBothLand() async throws {
        let registry = try makeRegistry()
        let config = Array("{}".utf8)
        _ = try await registry.putBlob(repo, digest: Digest.compute(config), contentLength: Int64(config.count), body: body(config))
        func manifest(_ seed: String) -> [UInt8] {
            Array("""
            {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Digest.compute(config))","size":\(config.count)},"layers":[],"annotations":{"seed":"\(seed)"}}
            """.utf8)
        }
        for round in 0..<10 {
            let tag = "t\(round)"
            let a = manifest("a\(round)"), b = manifest("b\(round)")
            async let x = registry.putManifest(repo, reference: .tag(tag), bytes: a, contentType: MediaType.ociManifest)
            async let y = registry.putManifest(repo, reference: .tag(tag), bytes: b, contentType: MediaType.ociManifest)
            let (pa, pb) = try await (x, y)
            for d in [pa.digest, pb.digest] { await #expect(try registry.metadata.manifest(repository: repo.value, digest: d) != nil) }
            let final = try await #require(try registry.metadata.tagTarget(repository: repo.value, tag: tag))
            #expect(final == pa.digest || final == pb.digest)
        }
    }

    @Test func cachedBlobSizesFollowDeletes() async throws {
        let registry = try makeRegistry()
        let bytes = Array("cached".utf8), d = Digest.compute(bytes)
        _ = try await registry.putBlob(repo, digest: d, contentLength: nil, body: body(bytes))
        await #expect(try registry.blobSize(repo, d) == 6)
        try await registry.deleteBlob(repo, d)
        await #expect(throws: RegistryError.self) { try await registry.blobSize(repo, d) }
    }

    @Test func staleUploadsAreRemovedByAge() async throws {
        let registry = try makeRegistry()
        let upload = try await registry.startUpload(repo)
        #expect(try await registry.removeStaleUploads() == 0)
        #expect(try await registry.removeStaleUploads(now: Date().addingTimeInterval(registry.configuration.uploadMaxAge + 5)) == 1)
        await #expect(throws: RegistryError.self) { try await registry.uploadStatus(repo, upload.id) }
    }

    @Test func streamedBodyWithoutLengthIsVerified() async throws {
        let registry = try makeRegistry()
        let bytes = Array(repeating: UInt8(7), count: 100_000)
        await #expect(throws: RegistryError.self) {
            try await registry.putBlob(repo, digest: Digest.compute(Array("x".utf8)), contentLength: nil, body: body(bytes))
        }
        #expect(try await registry.blobs.openUploadCount() == 0)
        #expect(try await registry.blobs.allDigests().isEmpty)
    }
}
