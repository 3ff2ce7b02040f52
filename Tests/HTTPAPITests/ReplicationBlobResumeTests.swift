import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Testing
import UpstreamClient
@testable import ReplicationFeature

/// Issue 13's resumable blob fetches: the applier's `ensureBlob` against a live peer on loopback
/// whose connection drops mid-blob. A broken transfer goes on from the bytes received with a
/// `Range` request, in the attempt and at the next one; a peer that ignores the range restarts the
/// blob; bytes kept that do not verify are read again from byte 0; the stored blob is the peer's.
@Suite struct ReplicationBlobResumeTests {
    static let big: [UInt8] = (0..<600_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
    static let cut = 200_000
    static var digest: Digest { Digest.compute(big) }
    let repo = try! RepositoryName("geo/app")

    enum Peer: Sendable, Equatable {
        /// The first GET is cut after `cut` bytes; ranges are answered 206.
        case dropOnce
        /// The first `n` GETs are cut (the first after `cut` bytes, the others before their first byte).
        case dropsUntil(Int)
        /// The first GET is cut; a range is answered 200 with the whole blob.
        case ignoresRange
        /// Every GET is answered 404.
        case gone
    }

    static func rangeStart(_ header: String?) -> Int? {
        header.flatMap { $0.split(separator: "=").last?.split(separator: "-").first.flatMap { Int($0) } }
    }

    struct Cut: Error {}

    /// A peer serving `big` as `behaviour` says; `body` gets its port and the Range header of each
    /// GET of the blob (nil for a plain GET).
    static func withPeer(_ behaviour: Peer, _ body: @Sendable (Int, NIOLockedValueBox<[String?]>) async throws -> Void) async throws {
        let requests = NIOLockedValueBox<[String?]>([])
        let router = Router()
        router.get("**") { request, _ -> Response in
            guard request.uri.path.hasSuffix("/blobs/\(digest)"), behaviour != .gone else { return Response(status: .notFound) }
            let range = request.headers[.range]
            let n = requests.withLockedValue { list -> Int in
                list.append(range)
                return list.count
            }
            let dropping = switch behaviour {
            case .dropsUntil(let k): n <= k
            default: n == 1
            }
            if dropping, let from = rangeStart(range) {
                var h = HTTPFields()
                h[.contentRange] = "bytes \(from)-\(big.count - 1)/\(big.count)"
                return Response(status: .partialContent, headers: h, body: ResponseBody(contentLength: big.count - from) { _ in throw Cut() })
            }
            if dropping {
                let head = Array(big[..<cut])
                return Response(status: .ok, body: ResponseBody(contentLength: big.count) { writer in
                    try await writer.write(ByteBuffer(bytes: head))
                    throw Cut()
                })
            }
            if let from = rangeStart(range), behaviour != .ignoresRange, from < big.count {
                var h = HTTPFields()
                h[.contentRange] = "bytes \(from)-\(big.count - 1)/\(big.count)"
                return Response(status: .partialContent, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: big[from...])))
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: big)))
        }
        var logger = Logger(label: "peer")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in try await body(try #require(client.port), requests) }
    }

    func region() async throws -> (Registry, ReplicationApplier) {
        let r = try await ReplicationTestRegion.make()
        return (r.registry, r.applier)
    }

    func client(_ port: Int) throws -> UpstreamClient {
        try UpstreamClient(registry: "127.0.0.1:\(port)", plainHTTP: true, policy: try OutboundPolicy(allow: "127.0.0.1/32"))
    }

    func stored(_ registry: Registry) async throws -> [UInt8] {
        let out = NIOLockedValueBox<[UInt8]>([])
        try await registry.readBlob(repo, Self.digest, range: 0..<Int64(Self.big.count)) { chunk in
            out.withLockedValue { $0 += chunk.readableBytesView }
        }
        return out.withLockedValue { $0 }
    }

    @Test(arguments: [Int64(600_000), nil])
    func aDroppedTransferGoesOnFromTheBytesReceived(size: Int64?) async throws {
        let (registry, applier) = try await region()
        try await Self.withPeer(.dropOnce) { port, requests in
            #expect(try await applier.ensureBlob(repo, Self.digest, size: size, client: try client(port)))
            let list = requests.withLockedValue { $0 }
            #expect(list.count == 2 && list.first == .some(nil))
            let from = try #require(Self.rangeStart(list.last ?? nil))
            #expect(from > 0 && from <= Self.cut)
            #expect(try await stored(registry) == Self.big)
            #expect(try await registry.blobs.openUploadCount() == 0)
        }
    }

    /// An attempt that fails keeps the bytes it received (counted against the quotas as a partial
    /// copy); the next attempt asks only for the rest.
    @Test func aFailedAttemptKeepsItsBytesAndTheNextAsksOnlyForTheRest() async throws {
        let (registry, applier) = try await region()
        _ = try await registry.createQuota(QuotaLimit(name: "geo", prefix: "geo/", limitBytes: 10_000_000))
        try await Self.withPeer(.dropsUntil(1 + ReplicationApplier.maxIdleBlobPieces)) { port, requests in
            let peer = try client(port)
            await #expect(throws: UpstreamError.self) { _ = try await applier.ensureBlob(repo, Self.digest, size: Int64(Self.big.count), client: peer) }
            let held = try await registry.uploadStatus(repo, Registry.privateUploadID(repo, Self.digest), privately: true).size
            #expect(held > 0 && held <= Int64(Self.cut))
            #expect(try await registry.quotaViews().first?.partialBytes == held)
            let failed = requests.withLockedValue { $0 }
            #expect(failed.count == 1 + ReplicationApplier.maxIdleBlobPieces)
            #expect(failed.dropFirst().allSatisfy { Self.rangeStart($0) == Int(held) })
            // The next attempt.
            #expect(try await applier.ensureBlob(repo, Self.digest, size: Int64(Self.big.count), client: peer))
            let next = requests.withLockedValue { $0 }.dropFirst(failed.count)
            #expect(Array(next) == ["bytes=\(held)-"])
            #expect(try await stored(registry) == Self.big)
            #expect(try await registry.blobs.openUploadCount() == 0)
            let view = try await registry.quotaViews().first
            #expect(view?.partialBytes == 0 && view?.usedBytes == Int64(Self.big.count))
        }
    }

    @Test func aPeerThatIgnoresTheRangeRestartsTheBlob() async throws {
        let (registry, applier) = try await region()
        try await Self.withPeer(.ignoresRange) { port, requests in
            let fetched = try await applier.ensureBlob(repo, Self.digest, size: Int64(Self.big.count), client: try client(port))
            #expect(fetched)
            let list = requests.withLockedValue { $0 }
            #expect(list.count == 2 && list.first == .some(nil) && (Self.rangeStart(list.last ?? nil) ?? 0) > 0)
            #expect(try await stored(registry) == Self.big)
        }
    }

    /// Bytes kept that are not the blob's (another copy's, or altered) fail verification: nothing
    /// is stored from them, and the blob is read once more from byte 0.
    @Test func keptBytesThatDoNotVerifyAreReadAgainFromZero() async throws {
        let (registry, applier) = try await region()
        let id = try await registry.openPrivateUpload(repo, digest: Self.digest).id
        _ = try await registry.appendUpload(repo, id, rangeStart: 0, privately: true, body: AsyncStream { c in
            c.yield(ByteBuffer(bytes: [UInt8](repeating: 0xee, count: 1_000)))
            c.finish()
        })
        try await Self.withPeer(.dropsUntil(0)) { port, requests in
            let fetched = try await applier.ensureBlob(repo, Self.digest, size: Int64(Self.big.count), client: try client(port))
            #expect(fetched)
            #expect(requests.withLockedValue { $0 } == ["bytes=1000-", nil])
            #expect(try await stored(registry) == Self.big)
            #expect(try await registry.blobs.openUploadCount() == 0)
        }
    }

    @Test func aBlobThePeerNoLongerHasLeavesNoSession() async throws {
        let (registry, applier) = try await region()
        try await Self.withPeer(.gone) { port, _ in
            let fetched = try await applier.ensureBlob(repo, Self.digest, size: Int64(Self.big.count), client: try client(port))
            #expect(fetched == false)
            #expect(try await registry.blobs.openUploadCount() == 0)
        }
    }
}
