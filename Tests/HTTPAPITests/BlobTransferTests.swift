import Backends
import BlobStorage
import BlobStoreConformance
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OCIModel
import RegistryCore
import Testing
@testable import HTTPAPI

/// A blob store that keeps its blobs in the embedded filesystem store but serves blob GETs as the
/// S3 store does, through `startTransfer` (and never a file), by a script: deliver the bytes in
/// chunks (some of them held back a moment, to exercise back-pressure), break off after some
/// bytes, or slow to a trickle after some bytes (100 bytes every 10 ms: the rest of the blob
/// would take half a minute) until cancelled.
final class ScriptedTransferStore: ForwardingBlobStore, @unchecked Sendable {
    enum Script: Sendable {
        case deliver(chunk: Int)
        case breakOff(after: Int)
        case trickle(after: Int)
        case missing
    }

    struct Broken: Error {}

    let script = NIOLockedValueBox(Script.deliver(chunk: 7000))
    let started = NIOLockedValueBox(0)
    let cancelled = NIOLockedValueBox(0)
    /// Bytes handed to the sink so far (what the relay took from the source).
    let delivered = NIOLockedValueBox(0)

    override func startTransfer(_ digest: Digest, range: Range<Int64>, into sink: any BlobByteSink) async throws -> BlobTransfer? {
        let script = self.script.withLockedValue { $0 }
        if case .missing = script { throw BlobStoreError.blobUnknown }
        var read: [UInt8] = []
        try await inner.read(digest, range: range) { read.append(contentsOf: $0.readableBytesView) }
        let bytes = read
        started.withLockedValue { $0 += 1 }
        let loop = sink.eventLoop
        let done = loop.makePromise(of: Void.self)
        let over = NIOLockedValueBox(false)
        @Sendable func end(_ result: Result<Void, any Error>) {
            if over.withLockedValue({ o in defer { o = true }; return !o }) { done.completeWith(result) }
        }
        let (chunk, stop): (Int, Int) = switch script {
        case .deliver(let chunk): (chunk, bytes.count)
        case .breakOff(let after): (1000, after)
        case .trickle: (1000, bytes.count)
        case .missing: (0, 0)
        }
        @Sendable func step(_ offset: Int, _ n: Int) {
            guard !over.withLockedValue({ $0 }) else { return }
            guard offset < stop else {
                if case .breakOff = script { end(.failure(Broken())) } else { end(.success(())) }
                return
            }
            var next = min(offset + chunk, stop)
            if case .trickle(let after) = script, offset >= after {
                next = min(offset + 100, stop)
                sink.write(ByteBuffer(bytes: bytes[offset..<next])).whenComplete { result in
                    switch result {
                    case .failure(let error): end(.failure(error))
                    case .success: loop.scheduleTask(in: .milliseconds(10)) { step(next, n + 1) }
                    }
                }
                return
            }
            delivered.withLockedValue { $0 += next - offset }
            sink.write(ByteBuffer(bytes: bytes[offset..<next])).whenComplete { result in
                switch result {
                case .failure(let error): end(.failure(error))
                case .success:
                    // Every third chunk waits a moment before the next, as a slow source would.
                    if n % 3 == 2 {
                        loop.scheduleTask(in: .milliseconds(1)) { step(next, n + 1) }
                    } else {
                        step(next, n + 1)
                    }
                }
            }
        }
        loop.execute { step(0, 0) }
        return BlobTransfer(completion: done.futureResult, cancel: { [cancelled] in
            if !over.withLockedValue({ $0 }) { cancelled.withLockedValue { $0 += 1 } }
            end(.failure(CancellationError()))
        })
    }
}

/// One HTTP/1.1 connection over a plain socket, to see what a client sees on the wire: a body
/// cut short, the connection closed, or the client itself going away mid-body. Its calls block:
/// run them through `blocking` (off the tasks' threads, which the server needs).
final class RawConnection: @unchecked Sendable {
    struct ConnectFailed: Error {}
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var window: Int32 = 64 << 10  // small: a client that stops reading holds the server back soon
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { Glibc.close(fd); throw ConnectFailed() }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ request: String) {
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Reads until `count` bytes arrived or the server closed the connection (or 30 s passed).
    func read(upTo count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while out.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - out.count), 0) }
            if n <= 0 { break }
            out.append(contentsOf: buffer[..<n])
        }
        return out
    }

    /// Status, headers (lower-cased names) and whatever of the body came with them.
    func readHead() -> (status: Int, headers: [String: String], body: [UInt8]) {
        var got: [UInt8] = []
        let end = Array("\r\n\r\n".utf8)
        while true {
            let more = read(upTo: 1)
            if more.isEmpty { break }
            got += more
            if got.count >= 4, Array(got.suffix(4)) == end { break }
        }
        let lines = String(decoding: got, as: UTF8.self).components(separatedBy: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers, [])
    }

    /// Whether the server closed the connection (a read finds the end, not a timeout).
    func serverClosed() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    func close() { Glibc.close(fd) }
}

/// Blob GETs served through a store's transfer (`BlobStore.startTransfer`, the S3 store's path)
/// on a live server: the relay carries the exact bytes of whole and ranged GETs; a source that
/// breaks off mid-body cuts the client's connection (never a short 200 that looks whole); a client
/// that goes away stops the transfer; a missing object is a clean 404 before any byte.
@Suite struct BlobTransferTests {
    /// The raw-socket exchanges block a thread until the server answers, so they run on a thread of
    /// their own: on NIOThreadPool.singleton (as they once did) two of them at once held both of its
    /// threads on a 2-core machine while the server under test waited for that pool to write the
    /// blob (FileSystemBlobStore), and the push timed out (CI of 110d66a).
    func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try work() }) }
            thread.start()
        }
    }

    func run(_ body: @Sendable (ScriptedTransferStore, Int, TestClientProtocol) async throws -> Void) async throws {
        let backends = try Backends.embedded(dataDirectory: tempDataDir())
        let store = ScriptedTransferStore(inner: backends.blobs)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = Registry(blobs: store, metadata: backends.metadata, logger: logger)
        let app = try await BerthServer.makeApplication(registry: registry, access: nil, host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.live) { client in
            try await body(store, try #require(client.port), client)
        }
    }

    static let blob: [UInt8] = (0..<300_001).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 9)) }

    func get(_ port: Int, _ path: String, range: String? = nil) async throws
        -> (status: Int, headers: [String: String], body: [UInt8], closed: Bool) {
        try await blocking {
            let c = try RawConnection(port: port)
            defer { c.close() }
            c.send("GET \(path) HTTP/1.1\r\nHost: x\r\n" + (range.map { "Range: \($0)\r\n" } ?? "") + "\r\n")
            let head = c.readHead()
            let length = Int(head.headers["content-length"] ?? "") ?? 0
            let body = c.read(upTo: length)
            return (head.status, head.headers, body, body.count < length && c.serverClosed())
        }
    }

    @Test func wholeAndRangedGetsCarryTheExactBytes() async throws {
        try await run { store, port, client in
            let digest = try await V2(client: client).pushBlob("t/relay", Self.blob)
            // Twice on the same connection too: the relay lets go of it after each body.
            let answers = try await blocking {
                let c = try RawConnection(port: port)
                defer { c.close() }
                return (0..<2).map { _ in
                    c.send("GET /v2/t/relay/blobs/\(digest) HTTP/1.1\r\nHost: x\r\n\r\n")
                    let head = c.readHead()
                    return (head.status, head.headers["content-length"], c.read(upTo: Self.blob.count) == Self.blob)
                }
            }
            for (status, length, same) in answers {
                #expect(status == 200 && length == "\(Self.blob.count)" && same)
            }
            let ranged = try await get(port, "/v2/t/relay/blobs/\(digest)", range: "bytes=1000-250999")
            #expect(ranged.status == 206 && ranged.headers["content-range"] == "bytes 1000-250999/\(Self.blob.count)")
            #expect(ranged.body == Array(Self.blob[1000...250_999]), "\(ranged.body.count) bytes")
            #expect(store.started.withLockedValue { $0 } == 3)
        }
    }

    @Test func aSourceThatBreaksOffMidBodyCutsTheConnection() async throws {
        try await run { store, port, client in
            let digest = try await V2(client: client).pushBlob("t/relay", Self.blob)
            store.script.withLockedValue { $0 = .breakOff(after: 50_000) }
            let got = try await get(port, "/v2/t/relay/blobs/\(digest)")
            #expect(got.status == 200 && got.headers["content-length"] == "\(Self.blob.count)")
            #expect(got.body == Array(Self.blob[..<50_000]), "\(got.body.count) bytes")
            #expect(got.closed)
        }
    }

    @Test func aClientThatGoesAwayStopsTheTransfer() async throws {
        try await run { store, port, client in
            let digest = try await V2(client: client).pushBlob("t/relay", Self.blob)
            // The source goes on sending (slowly, as a store does): the next write after the client
            // left fails, the relay stops the transfer.
            store.script.withLockedValue { $0 = .trickle(after: 20_000) }
            let (status, count) = try await blocking {
                let c = try RawConnection(port: port)
                defer { c.close() }
                c.send("GET /v2/t/relay/blobs/\(digest) HTTP/1.1\r\nHost: x\r\n\r\n")
                let status = c.readHead().status
                let count = c.read(upTo: 20_000).count
                #expect(store.cancelled.withLockedValue { $0 } == 0)
                return (status, count)
            }
            #expect(status == 200 && count == 20_000)
            var cancelled = 0
            for _ in 0..<200 {
                cancelled = store.cancelled.withLockedValue { $0 }
                if cancelled > 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(cancelled == 1)
        }
    }

    @Test func aBlobTheStoreLostIsACleanNotFound() async throws {
        try await run { store, port, client in
            let digest = try await V2(client: client).pushBlob("t/relay", Self.blob)
            store.script.withLockedValue { $0 = .missing }
            let got = try await get(port, "/v2/t/relay/blobs/\(digest)")
            #expect(got.status == 404)
            #expect(String(decoding: got.body, as: UTF8.self).contains("BLOB_UNKNOWN"))
            #expect(store.started.withLockedValue { $0 } == 0)
        }
    }

    /// Requests sent together on one keep-alive connection (HEAD, GET, ranged GET) are answered
    /// in order, each body exactly its bytes (the relay's writes never overtake or trail another
    /// response); an HTTP/1.0 client gets an HTTP/1.0 answer with the whole body.
    @Test func pipelinedRequestsAndHTTP10GetTheirOwnAnswers() async throws {
        try await run { store, port, client in
            let digest = try await V2(client: client).pushBlob("t/relay", Self.blob)
            let path = "/v2/t/relay/blobs/\(digest)"
            let (answers, afterHead) = try await blocking {
                let c = try RawConnection(port: port)
                defer { c.close() }
                c.send("HEAD \(path) HTTP/1.1\r\nHost: x\r\n\r\n"
                       + "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n"
                       + "GET \(path) HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n")
                let head = c.readHead()
                let whole = c.readHead()
                let wholeBody = c.read(upTo: Self.blob.count)
                let ranged = c.readHead()
                let rangedBody = c.read(upTo: 5)
                return ([(head.status, head.headers["content-length"], [UInt8]()),
                         (whole.status, whole.headers["content-length"], wholeBody),
                         (ranged.status, ranged.headers["content-length"], rangedBody)], store.started.withLockedValue { $0 })
            }
            #expect(answers[0].0 == 200 && answers[0].1 == "\(Self.blob.count)")
            #expect(answers[1].0 == 200 && answers[1].2 == Self.blob, "\(answers[1].2.count) bytes")
            #expect(answers[2].0 == 206 && answers[2].1 == "5" && answers[2].2 == Array(Self.blob[5...9]))
            #expect(afterHead == 2)
            let old = try await blocking {
                let c = try RawConnection(port: port)
                defer { c.close() }
                c.send("GET \(path) HTTP/1.0\r\nHost: x\r\n\r\n")
                var got: [UInt8] = []
                while true {
                    let more = c.read(upTo: 1 << 20)
                    if more.isEmpty { break }
                    got += more
                }
                return got
            }
            let text = String(decoding: old.prefix(16), as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.0 200"), "\(text)")
            #expect(Array(old.suffix(Self.blob.count)) == Self.blob && old.count > Self.blob.count)
        }
    }

    /// A client that stops reading holds the source back: the relay takes no more from it than
    /// the socket buffers and one chunk hold, and once the client reads on, every byte arrives.
    @Test func aClientThatStopsReadingHoldsTheSourceBack() async throws {
        try await run { store, port, client in
            let big: [UInt8] = (0..<(32 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 11)) }
            let digest = try await V2(client: client).pushBlob("t/relay", big)
            store.script.withLockedValue { $0 = .deliver(chunk: 64 << 10) }
            let c = try RawConnection(port: port)
            defer { c.close() }
            let status = try await blocking {
                c.send("GET /v2/t/relay/blobs/\(digest) HTTP/1.1\r\nHost: x\r\n\r\n")
                return c.readHead().status
            }
            #expect(status == 200)
            // Time for an unbounded relay to take the whole blob; a bounded one stops early.
            try await Task.sleep(for: .seconds(1))
            let held = store.delivered.withLockedValue { $0 }
            #expect(held < 16 << 20, "the relay took \(held) bytes from the source while the client read none")
            let body = try await blocking { c.read(upTo: big.count) }
            #expect(body == big, "\(body.count) bytes")
        }
    }
}
