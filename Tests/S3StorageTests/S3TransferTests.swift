import BlobStorage
import BlobStoreConformance
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OCIModel
import Testing
@testable import S3Storage

/// A sink as the HTTP layer's relay is one: on an event loop of the process's group, taking
/// chunks in order. `holdEvery` makes every n-th write wait a moment before it says "more"
/// (back-pressure); `holdForever` keeps the first write's future pending until `release`.
final class CollectingSink: BlobByteSink, @unchecked Sendable {
    let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    private let state = NIOLockedValueBox<(bytes: [UInt8], writes: Int, offLoop: Int, held: EventLoopPromise<Void>?)>(([], 0, 0, nil))
    let holdEvery: Int
    let holdForever: Bool

    init(holdEvery: Int = 0, holdForever: Bool = false) {
        self.holdEvery = holdEvery
        self.holdForever = holdForever
    }

    var bytes: [UInt8] { state.withLockedValue { $0.bytes } }
    /// Writes that did not come on `eventLoop` (the store's connection should run there).
    var offLoop: Int { state.withLockedValue { $0.offLoop } }

    func write(_ chunk: ByteBuffer) -> EventLoopFuture<Void> {
        let onLoop = eventLoop.inEventLoop
        let n = state.withLockedValue { s -> Int in
            s.bytes.append(contentsOf: chunk.readableBytesView)
            s.writes += 1
            if !onLoop { s.offLoop += 1 }
            return s.writes
        }
        if holdForever {
            let promise = eventLoop.makePromise(of: Void.self)
            state.withLockedValue { $0.held = promise }
            return promise.futureResult
        }
        if holdEvery > 0, n % holdEvery == 0 {
            return eventLoop.scheduleTask(in: .milliseconds(1)) {}.futureResult
        }
        return eventLoop.makeSucceededVoidFuture()
    }

    /// Fails a held write (a destination that went away), so no promise is left pending.
    func release() {
        state.withLockedValue { s -> EventLoopPromise<Void>? in
            defer { s.held = nil }
            return s.held
        }?.fail(ChannelError.ioOnClosedChannel)
    }
}

private func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 12)) }
}

/// `startTransfer`, the S3 store's GET straight into a sink, on the real object store: the exact
/// bytes of whole and ranged reads (across part boundaries, with back-pressure), and the errors
/// that must come before the first byte.
@Suite struct S3TransferTests {
    @Test func wholeAndRangedTransfersCarryTheExactBytes() async throws {
        let s = try await S3TestService.store()
        let part = S3BlobStore.minimumPartSize
        let data = pattern(2 * part + 123_457, seed: 9)
        let d = Digest.compute(data)
        let id = UUID().uuidString.lowercased()
        try await s.createUpload(id: id, owner: "r")
        _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 1 << 20), limit: nil)
        _ = try await s.commitUpload(id: id, expected: d, expectedSize: Int64(data.count))

        let ranges: [Range<Int64>] = [0..<Int64(data.count), Int64(part) - 5..<Int64(part) + 5,
                                      Int64(data.count) - 1..<Int64(data.count), 0..<1]
        for (i, range) in ranges.enumerated() {
            let sink = CollectingSink(holdEvery: i == 0 ? 3 : 0)
            let transfer = try #require(try await s.startTransfer(d, range: range, into: sink))
            try await transfer.completion.get()
            #expect(sink.bytes == Array(data[Int(range.lowerBound)..<Int(range.upperBound)]), "range \(range)")
            // The store's connection runs on the sink's loop: no hop per chunk.
            #expect(sink.offLoop == 0)
        }
        // An empty range is not a transfer (the caller writes nothing).
        #expect(try await s.startTransfer(d, range: 0..<0, into: CollectingSink()) == nil)
    }

    @Test func aMissingBlobOrARangePastItsEndIsBlobUnknownBeforeAnyByte() async throws {
        let s = try await S3TestService.store()
        let data = pattern(1000, seed: 1)
        let d = Digest.compute(data)
        let sink = CollectingSink()
        await #expect(throws: BlobStoreError.blobUnknown) { _ = try await s.startTransfer(d, range: 0..<10, into: sink) }
        let id = UUID().uuidString.lowercased()
        try await s.createUpload(id: id, owner: "r")
        _ = try await s.append(id: id, offset: 0, body: body(data), limit: nil)
        _ = try await s.commitUpload(id: id, expected: d, expectedSize: 1000)
        await #expect(throws: BlobStoreError.blobUnknown) { _ = try await s.startTransfer(d, range: 2000..<2010, into: sink) }
        #expect(sink.bytes.isEmpty)
    }
}

/// `startGetObject` against a scripted stand-in for the store: what a healthy Ceph does not do
/// on demand (break off mid-body, answer short) and what a client going away must do (stop the
/// GET).
@Suite struct S3TransferStubTests {
    final class Upstream: Sendable {
        /// What the stand-in's body writer saw: bytes sent, and whether the connection to it was
        /// closed under it.
        let sent = NIOLockedValueBox(0)
        let closed = NIOLockedValueBox(false)
        let requests = NIOLockedValueBox(0)
    }

    enum Mode: Sendable {
        /// 206 announcing `announce` bytes, sends `send` and then breaks off (closes).
        case breakOff(announce: Int, send: Int)
        /// 206 with an endless body: 64 KiB at a time until the connection goes away.
        case endless
        /// 503 SlowDown once, then 206 with the bytes.
        case slowDownThen([UInt8])
    }

    func run(_ mode: Mode, _ body: @Sendable (S3Client, Upstream) async throws -> Void) async throws {
        let upstream = Upstream()
        let router = Router()
        router.get("/bucket/k") { _, _ -> Response in
            let n = upstream.requests.withLockedValue { $0 += 1; return $0 }
            switch mode {
            case .breakOff(let announce, let send):
                return Response(status: .partialContent, body: ResponseBody(contentLength: announce) { writer in
                    try await writer.write(ByteBuffer(repeating: 7, count: send))
                    upstream.sent.withLockedValue { $0 += send }
                    throw CancellationError()
                })
            case .endless:
                return Response(status: .partialContent, body: ResponseBody(contentLength: 1 << 40) { writer in
                    let chunk = ByteBuffer(repeating: 1, count: 64 << 10)
                    do {
                        while true {
                            try await writer.write(chunk)
                            upstream.sent.withLockedValue { $0 += chunk.readableBytes }
                        }
                    } catch {
                        upstream.closed.withLockedValue { $0 = true }
                        throw error
                    }
                })
            case .slowDownThen(let bytes):
                if n == 1 {
                    return Response(status: .serviceUnavailable,
                                    body: .init(byteBuffer: ByteBuffer(string: "<Error><Code>SlowDown</Code></Error>")))
                }
                return Response(status: .partialContent, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let location = try S3Location(endpoint: "http://127.0.0.1:\(port)", region: "us-east-1", bucket: "bucket",
                                          credentials: S3Credentials(accessKey: "a", secretKey: "s"))
            try await body(S3Client(location: location, attempts: 4, backoff: .milliseconds(1)), upstream)
        }
    }

    /// Waits (bounded) for a condition another thread makes true.
    func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(50)) }
        return condition()
    }

    @Test func aBodyThatBreaksOffMidStreamFailsTheTransfer() async throws {
        try await run(.breakOff(announce: 100_000, send: 1000)) { client, _ in
            let sink = CollectingSink()
            let transfer = try await client.startGetObject("k", range: 0..<100_000, into: sink)
            await #expect(throws: (any Error).self) { try await transfer.completion.get() }
            #expect(sink.bytes.count <= 1000)
        }
    }

    @Test func anAnswerShorterThanTheRangeIsAnErrorBeforeAnyByte() async throws {
        try await run(.slowDownThen(Array(repeating: 3, count: 10))) { client, upstream in
            let sink = CollectingSink()
            // The SlowDown is retried; the answer then has 10 bytes where 20 were asked for.
            await #expect(throws: S3Error.malformedResponse("GetObject: asked for 20 bytes, the answer has 10")) {
                _ = try await client.startGetObject("k", range: 0..<20, into: sink)
            }
            #expect(upstream.requests.withLockedValue { $0 } == 2)
            #expect(sink.bytes.isEmpty)
        }
    }

    @Test func aRetriedGetDeliversTheBytes() async throws {
        let bytes = pattern(10, seed: 4)
        try await run(.slowDownThen(bytes)) { client, upstream in
            let sink = CollectingSink()
            let transfer = try await client.startGetObject("k", range: 0..<10, into: sink)
            try await transfer.completion.get()
            #expect(sink.bytes == bytes)
            #expect(upstream.requests.withLockedValue { $0 } == 2)
        }
    }

    /// A client that goes away cancels the transfer: the GET's connection to the store is closed
    /// (the store stops sending), and the completion fails.
    @Test func cancellingATransferStopsTheUpstreamGet() async throws {
        try await run(.endless) { client, upstream in
            let sink = CollectingSink(holdForever: true)
            let transfer = try await client.startGetObject("k", range: 0..<(1 << 40), into: sink)
            #expect(try await eventually { !sink.bytes.isEmpty })
            #expect(!upstream.closed.withLockedValue { $0 })
            transfer.cancel()
            await #expect(throws: (any Error).self) { try await transfer.completion.get() }
            #expect(try await eventually { upstream.closed.withLockedValue { $0 } })
            sink.release()
        }
    }
}
