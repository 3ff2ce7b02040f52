import AsyncHTTPClient
import BlobStorage
import BlobStoreConformance
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import Testing
@testable import S3Storage

private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ Int(seed) &+ ($0 >> 11)) }
}

/// A request body that says when the store starts reading it, then yields what the test sends.
private struct Gated: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let started: AsyncStream<Void>.Continuation
    let inner: AsyncStream<ByteBuffer>

    struct AsyncIterator: AsyncIteratorProtocol {
        var started: AsyncStream<Void>.Continuation?
        var inner: AsyncStream<ByteBuffer>.AsyncIterator
        mutating func next() async -> ByteBuffer? {
            if let s = started {
                s.yield()
                s.finish()
                started = nil
            }
            return await inner.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(started: started, inner: inner.makeAsyncIterator()) }
}

/// Upload state in the metadata store: several store instances over one bucket prefix and one
/// metadata store are nodes of one registry.
@Suite struct S3UploadSessionTests {
    static let part = S3BlobStore.minimumPartSize

    /// A node whose requests are recorded as "METHOD key".
    static func node(_ prefix: String) async throws -> (S3BlobStore, NIOLockedValueBox<[String]>) {
        let seen = NIOLockedValueBox<[String]>([])
        let base = try await S3TestService.client(bucket: try await S3TestService.bucket.value)
        let client = S3Client(location: base.location, observe: { method, key in seen.withLockedValue { $0.append("\(method) \(key ?? "")") } })
        return (try await S3TestService.store(prefix: prefix, client: client), seen)
    }

    /// Appended on A (a part and some), then on B (another part and a tail), committed on C: C
    /// continues the SHA-256 saved at B's last part boundary over the tail and reads no part back.
    @Test func aCommitOnAThirdNodeReadsNoPartBack() async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let (a, _) = try await Self.node(prefix)
        let (b, _) = try await Self.node(prefix)
        let (c, seenByC) = try await Self.node(prefix)
        let data = pattern(2 * Self.part + 4321, seed: 4)
        let id = UUID().uuidString.lowercased()
        try await a.createUpload(id: id, owner: "r")
        let first = Self.part + 100
        _ = try await a.append(id: id, offset: 0, body: body(Array(data[..<first])), limit: nil)
        _ = try await b.append(id: id, offset: Int64(first), body: body(Array(data[first...]), chunk: 70_001), limit: nil)
        let state = try #require(try await c.loadState(id)).state
        #expect(state.parts.count == 2 && state.tailSize == 4321 && state.hashState != nil)
        let d = Digest.compute(data)
        #expect(try await c.commitUpload(id: id, expected: d, expectedSize: Int64(data.count)) == Int64(data.count))
        let gets = seenByC.withLockedValue { $0 }.filter { $0.hasPrefix("GET ") }
        #expect(gets.count == 1 && gets.allSatisfy { $0.hasPrefix("GET \(c.uploadPrefix(id))tail-") }, "\(gets)")
        #expect(try await a.readAllBytes(d) == data)
        #expect(try await a.openUploadCount() == 0)
    }

    /// A saved hash state that does not match the parts is not trusted: the commit reads the bytes
    /// back (and a right digest still commits; a wrong one is refused).
    @Test func aHashStateThatDoesNotMatchFallsBackToReadingBack() async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let (a, _) = try await Self.node(prefix)
        let (b, seenByB) = try await Self.node(prefix)
        let data = pattern(Self.part + 10, seed: 8)
        let id = UUID().uuidString.lowercased()
        try await a.createUpload(id: id, owner: "r")
        _ = try await a.append(id: id, offset: 0, body: body(data), limit: nil)
        // Replace the saved state by one over other bytes of the same length.
        let loaded = try #require(try await a.loadState(id))
        var other = try ResumableSHA256()
        other.update(pattern(Self.part, seed: 9))
        var forged = loaded.state
        forged.hashState = Data(other.export()).base64EncodedString()
        var version = loaded.version
        try await a.saveState(id, forged, version: &version)
        let d = Digest.compute(data)
        #expect(try await b.commitUpload(id: id, expected: d, expectedSize: nil) == Int64(data.count))
        #expect(seenByB.withLockedValue { $0 }.contains("GET \(b.dataKey(id))"))
        #expect(try await b.readAllBytes(d) == data)
    }

    /// Two nodes append to one upload from the same offset at once: one wins, the other is told the
    /// size now (416 with the current Range at the HTTP layer) and none of its bytes count.
    @Test(arguments: [6, S3BlobStore.minimumPartSize + 6])
    func ofTwoConcurrentAppendsOneWins(loserSize: Int) async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let (a, _) = try await Self.node(prefix)
        let (b, _) = try await Self.node(prefix)
        let id = UUID().uuidString.lowercased()
        try await a.createUpload(id: id, owner: "r")
        let (started, startedC) = AsyncStream<Void>.makeStream()
        let (inner, innerC) = AsyncStream<ByteBuffer>.makeStream()
        let loser = Task { try await a.append(id: id, offset: 0, body: Gated(started: startedC, inner: inner), limit: nil) }
        for await _ in started {}
        // A has read the session; B appends and wins.
        let winner = Array("bbbb".utf8)
        #expect(try await b.append(id: id, offset: 0, body: body(winner), limit: nil) == 4)
        innerC.yield(ByteBuffer(bytes: pattern(loserSize, seed: 1)))
        innerC.finish()
        await #expect(throws: BlobStoreError.offsetMismatch(expected: 4, actual: 0)) { try await loser.value }
        #expect(try await a.uploadedSize(id: id) == 4)
        let d = Digest.compute(winner)
        #expect(try await a.commitUpload(id: id, expected: d, expectedSize: 4) == 4)
        #expect(try await b.readAllBytes(d) == winner)
        // Nothing of the loser is left: no tail, no multipart upload.
        #expect(try await a.client.listObjects(prefix: a.uploadsPrefix) == [])
        #expect(try await a.client.listMultipartUploads(prefix: a.uploadsPrefix) == [])
    }

    /// A tail object changed in the bucket after it was written fails the commit with a clear
    /// error, on the node that wrote it (live hasher) and on another; no blob is stored.
    @Test(arguments: [10, S3BlobStore.minimumPartSize + 10])
    func anAlteredTailFailsTheCommit(size: Int) async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let (a, _) = try await Self.node(prefix)
        let (b, _) = try await Self.node(prefix)
        let data = pattern(size, seed: 2)
        let id = UUID().uuidString.lowercased()
        try await a.createUpload(id: id, owner: "r")
        _ = try await a.append(id: id, offset: 0, body: body(data), limit: nil)
        let state = try #require(try await a.loadState(id)).state
        let tail = try #require(state.tail)
        try await a.client.putObject(a.uploadPrefix(id) + tail, body: ByteBuffer(bytes: Array(repeating: 0x41, count: Int(state.tailSize))))
        let d = Digest.compute(data)
        await #expect(throws: S3StorageError.tailAltered) { try await b.commitUpload(id: id, expected: d, expectedSize: nil) }
        await #expect(throws: S3StorageError.tailAltered) { try await a.commitUpload(id: id, expected: d, expectedSize: nil) }
        #expect(try await a.size(of: d) == nil)
        #expect(try await a.allDigests() == [])
        #expect(S3StorageError.tailAltered.description.contains("tail"))
    }

    /// Presigned redirects: off by default; on, a URL that GETs the blob (and honours a Range);
    /// none for a blob the bucket does not have; a lifetime out of 1...3600 s is refused.
    @Test func redirectURLsAreOffByDefaultAndReadTheBlob() async throws {
        let prefix = "case-" + UUID().uuidString.lowercased()
        let plain = try await S3TestService.store(prefix: prefix)
        let client = plain.client
        let sessions = try S3TestService.sessions(for: prefix)
        let redirecting = try S3BlobStore(client: client, prefix: prefix, sessions: sessions, partSize: Self.part, redirectTTL: 300)
        #expect(throws: S3Error.self) { try S3BlobStore(client: client, prefix: prefix, sessions: sessions, redirectTTL: 0) }
        #expect(throws: S3Error.self) { try S3BlobStore(client: client, prefix: prefix, sessions: sessions, redirectTTL: 3601) }
        let data = pattern(3000, seed: 6)
        let id = UUID().uuidString.lowercased()
        try await plain.createUpload(id: id, owner: "r")
        _ = try await plain.append(id: id, offset: 0, body: body(data), limit: nil)
        let d = Digest.compute(data)
        _ = try await plain.commitUpload(id: id, expected: d, expectedSize: nil)
        #expect(try await plain.redirectURL(d) == nil)
        #expect(try await redirecting.redirectURL(Digest.compute([1, 2, 3])) == nil)
        let url = try #require(try await redirecting.redirectURL(d))
        #expect(url.contains("X-Amz-Expires=300"))
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Range", value: "bytes=10-19")
        let response = try await S3Client.sharedHTTPClient.execute(request, timeout: .seconds(30))
        var got = try await response.body.collect(upTo: 1 << 20)
        #expect(response.status.code == 206 && got.readBytes(length: got.readableBytes) == Array(data[10..<20]))
    }
}
