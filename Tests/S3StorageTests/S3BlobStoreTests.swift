import AsyncHTTPClient
import BlobStorage
import BlobStoreConformance
import Foundation
import NIOCore
import OCIModel
import Testing
@testable import S3Storage
import SQLiteStore

/// The S3 blob store against the blob store conformance suite, on a real object store (Ceph's RADOS
/// Gateway): every case gets a fresh prefix in this run's bucket.
@Suite struct S3BlobStoreConformanceTests {
    @Test(arguments: BlobStoreConformance.cases)
    func conformance(_ c: BlobStoreConformance.Case) async throws {
        try await c.run { try await S3TestService.store() }
    }
}

private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 12)) }
}

private func readAll(_ s: S3BlobStore, _ d: Digest, _ range: Range<Int64>) async throws -> [UInt8] {
    var out: [UInt8] = []
    try await s.read(d, range: range) { out.append(contentsOf: $0.readableBytesView) }
    return out
}

@Suite struct S3BlobStoreTests {
    static let part = S3BlobStore.minimumPartSize

    @Test func aWrongSecretIsAClearError() async throws {
        let bucket = try await S3TestService.bucket.value
        let wrong = try await S3TestService.client(bucket: bucket, secret: "not-the-secret")
        await #expect(throws: S3Error.signatureMismatch) { try await wrong.headObject("x") }
        let store = try await S3TestService.store(client: wrong)
        await #expect(throws: S3Error.signatureMismatch) { try await store.size(of: Digest.compute([1])) }
        // HEAD answers have no body, yet the error still says why.
        await #expect(throws: S3Error.signatureMismatch) { try await store.checkHealth() }
        #expect(S3Error.signatureMismatch.description.contains("SignatureDoesNotMatch"))
    }

    /// More than two parts, from PATCHes whose sizes fit no part boundary: each leaves a tail
    /// that the next one continues; the blob reads back whole and across part boundaries.
    @Test func multipartBlobFromOddPatches() async throws {
        let s = try await S3TestService.store()
        let data = pattern(3 * Self.part + 777_777, seed: 3)
        let d = Digest.compute(data)
        let id = UUID().uuidString.lowercased()
        try await s.createUpload(id: id, owner: "r")
        var offset = 0
        for size in [3_000_001, 1, 4_999_999, 2_345_678, 12_345, 13] + [data.count] {
            let end = min(offset + size, data.count)
            guard end > offset else { break }
            let got = try await s.append(id: id, offset: Int64(offset), body: body(Array(data[offset..<end]), chunk: 100_003), limit: nil)
            offset = end
            #expect(got == Int64(offset))
        }
        let state = try #require(try await s.loadState(id)).state
        #expect(state.parts.count == 3)
        #expect(state.parts.allSatisfy { $0.size == Int64(Self.part) })
        #expect(state.tailSize == 777_777)
        #expect(try await s.size(of: d) == nil)
        #expect(try await s.commitUpload(id: id, expected: d, expectedSize: Int64(data.count)) == Int64(data.count))
        #expect(try await s.size(of: d) == Int64(data.count))
        #expect(try await readAll(s, d, 0..<Int64(data.count)) == data)
        let across = Int64(Self.part) - 10..<Int64(2 * Self.part) + 10
        #expect(try await readAll(s, d, across) == Array(data[Int(across.lowerBound)..<Int(across.upperBound)]))
        // Nothing of the upload is left behind.
        #expect(try await s.client.listObjects(prefix: s.uploadsPrefix) == [])
        #expect(try await s.client.listMultipartUploads(prefix: s.uploadsPrefix) == [])
    }

    /// Another node (a second store instance without the live hasher) continues an upload and
    /// commits it: the digest is verified by reading the assembled bytes back; a wrong one is
    /// refused, exposes nothing, and the upload can still be continued and committed.
    @Test func aSecondNodeContinuesAndCommitsVerifyingTheDigest() async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let a = try await S3TestService.store(prefix: prefix)
        let b = try await S3TestService.store(prefix: prefix)
        let data = pattern(2 * Self.part + 12_345, seed: 9)
        let extra: [UInt8] = [1, 2, 3]
        let id = UUID().uuidString.lowercased()
        try await a.createUpload(id: id, owner: "team/app")
        let first = Self.part + 1000
        _ = try await a.append(id: id, offset: 0, body: body(Array(data[..<first])), limit: nil)
        #expect(try await b.uploadOwner(id: id) == "team/app")
        #expect(try await b.uploadedSize(id: id) == Int64(first))
        _ = try await b.append(id: id, offset: Int64(first), body: body(Array(data[first...]), chunk: 65_536), limit: nil)
        let wrong = Digest.compute(data + [0])
        await #expect(throws: BlobStoreError.digestMismatch(computed: Digest.compute(data))) {
            try await a.commitUpload(id: id, expected: wrong, expectedSize: nil)
        }
        #expect(try await a.size(of: wrong) == nil)
        #expect(try await a.allDigests() == [])
        #expect(try await b.uploadedSize(id: id) == Int64(data.count))
        // Continued after the refused commit: the assembled bytes become the first part again.
        _ = try await a.append(id: id, offset: Int64(data.count), body: body(extra), limit: nil)
        let full = data + extra
        let d = Digest.compute(full)
        #expect(try await b.commitUpload(id: id, expected: d, expectedSize: Int64(full.count)) == Int64(full.count))
        #expect(try await a.readAllBytes(d) == full)
        #expect(try await a.openUploadCount() == 0)
        #expect(try await a.client.listMultipartUploads(prefix: a.uploadsPrefix) == [])
    }

    /// A node's live hasher counts only while the stored upload is the one it wrote: here another
    /// node replaced the upload with other bytes of the same size, and the first node's commit of
    /// its own digest is refused instead of storing the other bytes under it.
    @Test func aLiveHasherIsNotTrustedAfterAnotherNodeWroteTheUpload() async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let a = try await S3TestService.store(prefix: prefix)
        let b = try await S3TestService.store(prefix: prefix)
        let id = UUID().uuidString.lowercased()
        let mine = Array("0123456789".utf8), theirs = Array("abcdefghij".utf8)
        try await a.createUpload(id: id, owner: "r")
        _ = try await a.append(id: id, offset: 0, body: body(mine), limit: nil)
        try await b.cancelUpload(id: id)
        try await b.createUpload(id: id, owner: "r")
        _ = try await b.append(id: id, offset: 0, body: body(theirs), limit: nil)
        await #expect(throws: BlobStoreError.digestMismatch(computed: Digest.compute(theirs))) {
            try await a.commitUpload(id: id, expected: Digest.compute(mine), expectedSize: 10)
        }
        #expect(try await a.allDigests() == [])
        #expect(try await a.commitUpload(id: id, expected: Digest.compute(theirs), expectedSize: 10) == 10)
        #expect(try await b.readAllBytes(Digest.compute(theirs)) == theirs)
    }

    /// What commits rely on to read and copy exactly the completed object they verified: the store
    /// honours conditional reads and copies on the ETag a completion returned.
    @Test func readsAndCopiesArePinnedToAnETag() async throws {
        let s = try await S3TestService.store()
        let c = s.client
        let key = s.key("pinned"), other = s.key("copy")
        let upload = try await c.createMultipartUpload(key)
        let part = try await c.uploadPart(key, uploadID: upload, number: 1, body: ByteBuffer(string: "pinned bytes"))
        // Ceph 16 answers a completion with an empty ETag: then the object's own is used.
        let completed = try await c.completeMultipartUpload(key, uploadID: upload, parts: [(1, part)])
        let head = try await c.headObject(key)
        let etag = try #require(completed ?? head?.etag)
        var read: [UInt8] = []
        try await c.getObject(key, range: 0..<12, ifMatch: etag) { read += $0.readableBytesView }
        #expect(read == Array("pinned bytes".utf8))
        try await c.copyObject(from: key, to: other, ifMatch: etag)
        #expect(try await c.headObject(other)?.size == 12)
        try await c.putObject(key, body: ByteBuffer(string: "other bytes!"))
        await #expect(throws: S3Error.preconditionFailed) {
            try await c.getObject(key, range: 0..<12, ifMatch: etag) { _ in }
        }
        await #expect(throws: S3Error.preconditionFailed) { try await c.copyObject(from: key, to: other, ifMatch: etag) }
    }

    /// An upload abandoned with a multipart upload open is stale after its age and cancelling it
    /// aborts the multipart upload; so is a multipart upload left without any state (a crash
    /// between starting it and recording it).
    @Test func abandonedUploadsAreFoundAndAborted() async throws {
        let s = try await S3TestService.store()
        let id = UUID().uuidString.lowercased()
        try await s.createUpload(id: id, owner: "r")
        _ = try await s.append(id: id, offset: 0, body: body(pattern(Self.part + 5, seed: 1)), limit: nil)
        let orphan = UUID().uuidString.lowercased()
        let orphanUpload = try await s.client.createMultipartUpload(s.dataKey(orphan))
        #expect(try await s.client.listMultipartUploads(prefix: s.uploadsPrefix).count == 2)
        #expect(try await s.staleUploads(olderThan: Date().timeIntervalSince1970 - 3600) == [])
        let stale = try await s.staleUploads(olderThan: Date().timeIntervalSince1970 + 3600)
        #expect(Set(stale) == [id, orphan])
        for each in stale { try await s.cancelUpload(id: each) }
        #expect(try await s.client.listMultipartUploads(prefix: s.uploadsPrefix) == [])
        #expect(try await s.client.listObjects(prefix: s.uploadsPrefix) == [])
        #expect(try await s.openUploadCount() == 0)
        await #expect(throws: S3Error.notFound(code: "NoSuchUpload")) {
            try await s.client.uploadPart(s.dataKey(orphan), uploadID: orphanUpload, number: 1, body: ByteBuffer(string: "x"))
        }
    }

    @Test func aPresignedURLReadsTheBlobAndExpires() async throws {
        let s = try await S3TestService.store()
        let data = pattern(1000, seed: 5)
        let id = UUID().uuidString.lowercased()
        try await s.createUpload(id: id, owner: "r")
        _ = try await s.append(id: id, offset: 0, body: body(data), limit: nil)
        let d = Digest.compute(data)
        _ = try await s.commitUpload(id: id, expected: d, expectedSize: nil)
        func get(_ url: String) async throws -> (Int, [UInt8]) {
            let response = try await S3Client.sharedHTTPClient.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
            var body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), body.readBytes(length: body.readableBytes) ?? [])
        }
        let url = s.client.presignedGetURL(s.blobKey(d), expires: 60)
        #expect(url.hasPrefix(try await S3TestService.settings.value.endpoint + "/"))
        let (status, got) = try await get(url)
        #expect(status == 200)
        #expect(got == data)
        let (expired, _) = try await get(s.client.presignedGetURL(s.blobKey(d), expires: 60, date: Date().addingTimeInterval(-3600)))
        #expect(expired == 403)
        // The signature covers the key: the same query on another key is refused.
        let (other, _) = try await get(url.replacingOccurrences(of: d.hex, with: String(d.hex.reversed())))
        #expect(other == 403)
    }

    @Test func configurationIsChecked() throws {
        let c = S3Credentials(accessKey: "a", secretKey: "b")
        #expect(throws: S3Error.self) { try S3Location(endpoint: "ftp://x", region: "r", bucket: "bucket", credentials: c) }
        #expect(throws: S3Error.self) { try S3Location(endpoint: "http://x/path", region: "r", bucket: "bucket", credentials: c) }
        #expect(throws: S3Error.self) { try S3Location(endpoint: "http://x", region: "r", bucket: "Bad_Bucket", credentials: c) }
        #expect(throws: S3Error.self) { try S3Location(endpoint: "http://x", region: "r", bucket: "bucket", credentials: S3Credentials(accessKey: "a", secretKey: "")) }
        let ok = try? S3Location(endpoint: "https://s3.example.com", region: "eu-west-1", bucket: "my.bucket-1", credentials: c)
        #expect(ok?.hostHeader == "s3.example.com")
        #expect((try? S3Location(endpoint: "http://127.0.0.1:7480", region: "r", bucket: "bucket", credentials: c))?.hostHeader == "127.0.0.1:7480")
        let client = S3Client(location: ok!)
        let sessions = try S3TestService.sessions(for: "configuration")
        #expect(throws: S3Error.self) { try S3BlobStore(client: client, prefix: "a/../b", sessions: sessions) }
        #expect(throws: S3Error.self) { try S3BlobStore(client: client, prefix: "p", sessions: sessions, partSize: 1 << 20) }
        #expect((try? S3BlobStore(client: client, prefix: "/a//b/", sessions: sessions))?.prefix == "a/b")
    }
}

extension S3BlobStore {
    func readAllBytes(_ d: Digest) async throws -> [UInt8] {
        guard let size = try await size(of: d) else { throw BlobStoreError.blobUnknown }
        var out: [UInt8] = []
        try await read(d, range: 0..<size) { out.append(contentsOf: $0.readableBytesView) }
        return out
    }
}
