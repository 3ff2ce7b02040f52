import Access
import Backends
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryCore
import Testing
import UpstreamClient
@testable import ImportFeature

/// An import whose source drops the connection in the middle of a large blob goes on from the
/// bytes already received (a `Range` request answered 206), starts the blob over when the source
/// ignores the range, verifies the whole against the digest before storing it, and leaves no
/// upload session behind when it fails.
@Suite struct ImportResumeTests {
    /// Above the inline limit (the blob store's upload path), cut at `cut` bytes.
    static let big: [UInt8] = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
    static let cut = 100_000

    /// How the scripted source answers GETs of the big blob.
    enum Behaviour: Sendable, Equatable {
        /// The first GET is cut after `cut` bytes; ranges are answered 206.
        case dropOnce
        /// The first GET is cut; a range is answered 200 with the whole blob.
        case ignoresRange
        /// The first GET is cut; the range is answered 206 with other bytes.
        case wrongRange
        /// Every GET is cut after `cut` bytes.
        case alwaysDrops
        /// The first GET is cut; the range is answered 206 with a Content-Range of another offset.
        case misplacedRange
        /// Every GET sends `cut` bytes, then nothing more until the test ends (at most 20 s).
        case stalls
        /// The first `n` GETs as `alwaysDrops` (an import that fails); then ranges answered 206.
        case dropsUntil(Int)
        /// The first GET is cut; the range is answered 200 with the whole blob, cut again after
        /// `secondCut` bytes; the next range is answered 206.
        case ignoresRangeThenDrops
        /// The first GET sends `cut` bytes, then waits until `held` is cleared (at most 20 s) and
        /// is cut; later GETs are answered as `dropOnce` answers them.
        case holdsFirst
        /// The first GET sends the whole blob in 10,000-byte pieces 40 ms apart (about 1.2 s).
        case trickles
    }

    /// Cleared by the test of the held source when it is done with it.
    static let held = NIOLockedValueBox(true)

    static let secondCut = 150_000

    /// Set when the test of the stalled source is done with it.
    static let released = NIOLockedValueBox(false)

    struct Cut: Error {}

    /// The first byte a `Range: bytes=N-` header asks for.
    static func rangeStart(_ header: String?) -> Int? {
        header.flatMap { $0.split(separator: "=").last?.split(separator: "-").first.flatMap { Int($0) } }
    }

    /// Requests of the big blob: the Range header of each (nil for a plain GET).
    typealias Requests = NIOLockedValueBox<[String?]>

    static func withSource(_ behaviour: Behaviour, _ body: @Sendable (Int, Requests) async throws -> Void) async throws {
        let manifest = ImportCopierTests.manifest([big])
        let config = ImportCopierTests.config
        let requests = Requests([])
        let router = Router()
        router.get("**") { request, _ -> Response in
            let path = request.uri.path
            if path.hasSuffix("/manifests/v1") {
                var h = HTTPFields()
                h[.contentType] = MediaType.ociManifest
                return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: manifest)))
            }
            if path.hasSuffix("/blobs/\(Digest.compute(config))") {
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: config)))
            }
            guard path.hasSuffix("/blobs/\(Digest.compute(big))") else { return Response(status: .notFound) }
            let range = request.headers[.range]
            let n = requests.withLockedValue { list -> Int in
                list.append(range)
                return list.count
            }
            if behaviour == .stalls {
                let head = Array(big[..<cut])
                return Response(status: .ok, body: ResponseBody(contentLength: big.count) { writer in
                    try await writer.write(ByteBuffer(bytes: head))
                    for _ in 0..<1000 where !released.withLockedValue({ $0 }) {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    throw Cut()
                })
            }
            if behaviour == .trickles, n == 1 {
                return Response(status: .ok, body: ResponseBody(contentLength: big.count) { writer in
                    var at = 0
                    while at < big.count {
                        try await writer.write(ByteBuffer(bytes: big[at..<min(big.count, at + 10_000)]))
                        at += 10_000
                        try await Task.sleep(for: .milliseconds(40))
                    }
                    try await writer.finish(nil)
                })
            }
            if behaviour == .holdsFirst, n == 1 {
                let head = Array(big[..<cut])
                return Response(status: .ok, body: ResponseBody(contentLength: big.count) { writer in
                    try await writer.write(ByteBuffer(bytes: head))
                    for _ in 0..<1000 where held.withLockedValue({ $0 }) {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    throw Cut()
                })
            }
            let dropping: Bool = switch behaviour {
            case .alwaysDrops: true
            case .dropsUntil(let k): n <= k
            default: false
            }
            let cutNow = dropping || n == 1
            if behaviour == .ignoresRangeThenDrops, n == 2 {
                // The range ignored: the whole length announced, `secondCut` bytes sent, then the connection goes.
                let head = Array(big[..<secondCut])
                return Response(status: .ok, body: ResponseBody(contentLength: big.count) { writer in
                    try await writer.write(ByteBuffer(bytes: head))
                    throw Cut()
                })
            }
            if let range, !cutNow, behaviour != .ignoresRange,
               let from = range.split(separator: "=").last?.split(separator: "-").first.flatMap({ Int($0) }), from < big.count {
                var bytes = Array(big[from...])
                var first = from
                if behaviour == .wrongRange { bytes = bytes.map { $0 ^ 0x5a } }
                if behaviour == .misplacedRange { first = 0 }
                var h = HTTPFields()
                h[.contentRange] = "bytes \(first)-\(big.count - 1)/\(big.count)"
                h[.contentLength] = "\(bytes.count)"
                return Response(status: .partialContent, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            if cutNow, let range, dropping,
               let from = range.split(separator: "=").last?.split(separator: "-").first.flatMap({ Int($0) }) {
                // A range announced, then the connection goes before its first byte.
                var h = HTTPFields()
                h[.contentRange] = "bytes \(from)-\(big.count - 1)/\(big.count)"
                return Response(status: .partialContent, headers: h, body: ResponseBody(contentLength: big.count - from) { _ in
                    throw Cut()
                })
            }
            if cutNow {
                // The whole length is announced, part of it sent, then the connection goes.
                let head = Array(big[..<cut])
                return Response(status: .ok, body: ResponseBody(contentLength: big.count) { writer in
                    try await writer.write(ByteBuffer(bytes: head))
                    throw Cut()
                })
            }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: big)))
        }
        var logger = Logger(label: "source")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in try await body(try #require(client.port), requests) }
    }

    static func job(_ copier: ImportCopier) -> ImportView { copier.progress.view }

    @Test func aDroppedBlobResumesFromTheBytesReceived() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.dropOnce) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            let digest = try await copier.run()
            #expect(digest == Digest.compute(ImportCopierTests.manifest([Self.big])))
            let list = requests.withLockedValue { $0 }
            // One plain GET, cut (the client receives at most the `cut` bytes sent: how many of them
            // arrive before the connection goes is the network's); one range from where the
            // received bytes end, not from 0.
            #expect(list.count == 2)
            #expect(list.first == .some(nil))
            let from = try #require(Self.rangeStart(list.last ?? nil))
            #expect(from > 0 && from <= Self.cut)
            let view = Self.job(copier)
            #expect(view.blobResumes == 1 && view.blobRestarts == nil)
            #expect(view.bytesCopied == Int64(Self.big.count + ImportCopierTests.config.count))
            // The stored blob is the source's, byte for byte, and no session is left.
            let target = try RepositoryName("mirror/app")
            #expect(try await registry.blobSize(target, Digest.compute(Self.big)) == Int64(Self.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
            let stored = NIOLockedValueBox<[UInt8]>([])
            try await registry.readBlob(target, Digest.compute(Self.big), range: 0..<Int64(Self.big.count)) { chunk in
                stored.withLockedValue { $0 += chunk.readableBytesView }
            }
            #expect(stored.withLockedValue { $0 } == Self.big)
        }
    }

    @Test func aSourceThatIgnoresTheRangeRestartsTheBlobFromZero() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.ignoresRange) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            _ = try await copier.run()
            let list = requests.withLockedValue { $0 }
            #expect(list.count == 2 && list[0] == nil)
            #expect((Self.rangeStart(list.last ?? nil) ?? 0) > 0)
            let view = Self.job(copier)
            #expect(view.blobRestarts == 1 && view.blobResumes == nil)
            #expect(view.bytesCopied == Int64(Self.big.count + ImportCopierTests.config.count))
            #expect(try await registry.blobSize(try RepositoryName("mirror/app"), Digest.compute(Self.big)) == Int64(Self.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    @Test func aRangeThatDoesNotMatchIsNotJoinedAndTheBlobStartsOver() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.misplacedRange) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            _ = try await copier.run()
            // cut, a range answered for another offset (refused), then the whole blob from byte 0
            let list = requests.withLockedValue { $0 }
            #expect(list.count == 3 && list[0] == nil && list[2] == nil)
            #expect((Self.rangeStart(list[1]) ?? 0) > 0)
            #expect(Self.job(copier).blobRestarts == 1)
            #expect(try await registry.blobSize(try RepositoryName("mirror/app"), Digest.compute(Self.big)) == Int64(Self.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    @Test func aResumedBlobWithOtherBytesIsRefusedAndNothingIsStored() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.wrongRange) { port, _ in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            await #expect {
                _ = try await copier.run()
            } throws: { ($0 as? UpstreamError)?.kind == .digestMismatch }
            let target = try RepositoryName("mirror/app")
            await #expect(throws: (any Error).self) { _ = try await registry.blobSize(target, Digest.compute(Self.big)) }
            #expect(try await backends.blobs.size(of: Digest.compute(Self.big)) == nil)
            #expect(try await backends.blobs.openUploadCount() == 0)
            await #expect(throws: (any Error).self) { _ = try await registry.resolve(target, .tag("v1")) }
        }
    }

    @Test func aSourceThatKeepsDroppingFailsTheImportAndKeepsOnlyAPrivatePartial() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.alwaysDrops) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            await #expect {
                _ = try await copier.run()
            } throws: { ($0 as? UpstreamError)?.kind == .unreachable }
            // Each range after the first brings nothing new (the source cuts at the same byte):
            // the copy gives up after a bounded number of fruitless pieces.
            let list = requests.withLockedValue { $0 }
            #expect(list.count == 1 + ImportCopier.maxIdlePieces)
            #expect(Set(list.dropFirst()).count == 1 && (Self.rangeStart(list.last ?? nil) ?? 0) > 0)
            // The bytes received stay in the blob's private session, for a re-run; no blob.
            #expect(try await backends.blobs.openUploadCount() == 1)
            #expect(try await backends.blobs.size(of: Digest.compute(Self.big)) == nil)
        }
    }

    @Test func aCancelledImportLeavesNoBlobAndKeepsItsPartial() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.stalls) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            let running = Task { try await copier.run() }
            // The blob streams into its upload session, then the source stalls.
            let config = Int64(ImportCopierTests.config.count)
            let streaming = try await StreamingWait.until {
                let uploads = try? await backends.blobs.openUploadCount()
                return uploads == 1 && requests.withLockedValue { $0.count } == 1 && copier.progress.view.bytesCopied > config
            }
            #expect(streaming)
            running.cancel()
            await #expect(throws: (any Error).self) { _ = try await running.value }
            // What arrived is kept (privately) for a re-run, never a blob.
            #expect(try await backends.blobs.openUploadCount() == 1)
            #expect(try await backends.blobs.size(of: Digest.compute(Self.big)) == nil)
            #expect(requests.withLockedValue { $0.count } == 1)
            Self.released.withLockedValue { $0 = true }
        }
    }
}

extension ImportResumeTests {
    static let target = try! RepositoryName("mirror/app")
    static var partial: String { ImportCopier.partialID(target, Digest.compute(big)) }

    static func chunk(_ bytes: [UInt8]) -> AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            continuation.yield(ByteBuffer(bytes: bytes))
            continuation.finish()
        }
    }

    /// A kept session that already holds the whole blob (a run refused on a quota after the
    /// last byte) is verified and stored, never asked of the source again. Review: the source's
    /// answer to an empty range led to a restart that emptied it.
    @Test func aKeptSessionHoldingTheWholeBlobIsVerifiedNotFetchedAgain() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        let kept = try await registry.openPrivateUpload(Self.target, digest: Digest.compute(Self.big))
        _ = try await registry.appendUpload(Self.target, kept.id, rangeStart: 0, privately: true, body: Self.chunk(Self.big))
        try await Self.withSource(.dropOnce) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            #expect(try await copier.run() == Digest.compute(ImportCopierTests.manifest([Self.big])))
            #expect(requests.withLockedValue { $0 }.isEmpty, "the blob was asked of the source")
            #expect(try await registry.blobSize(Self.target, Digest.compute(Self.big)) == Int64(Self.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    /// A failed import keeps the partial blob in a private upload session keyed by the target
    /// repository and the blob's digest; `/v2/` (the repository's ordinary upload calls) cannot
    /// reach it; a re-run of the import resumes it with a `Range` from the bytes it holds (the
    /// source sends only the rest), verifies the whole and leaves no session.
    @Test func aRerunResumesThePartialBlobAFailedImportKept() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        let failing = 1 + ImportCopier.maxIdlePieces
        try await Self.withSource(.dropsUntil(failing)) { port, requests in
            let first = try ImportCopierTests.copier(port: port, registry: registry)
            await #expect { _ = try await first.run() } throws: { ($0 as? UpstreamError)?.kind == .unreachable }
            #expect(requests.withLockedValue { $0.count } == failing)
            let held = try await registry.uploadStatus(Self.target, Self.partial, privately: true).size
            #expect(held > 0 && held <= Int64(Self.cut))
            // Not an upload of the repository as `/v2/` sees them, nor a blob.
            await #expect(throws: RegistryError.self) { _ = try await registry.uploadStatus(Self.target, Self.partial) }
            await #expect(throws: RegistryError.self) {
                _ = try await registry.appendUpload(Self.target, Self.partial, rangeStart: nil, body: Self.chunk([1, 2, 3]))
            }
            await #expect(throws: RegistryError.self) {
                _ = try await registry.finishUpload(Self.target, Self.partial, digest: Digest.compute(Self.big))
            }
            await #expect(throws: (any Error).self) { _ = try await registry.blobSize(Self.target, Digest.compute(Self.big)) }
            // Nor of another repository's import of the same blob.
            await #expect(throws: RegistryError.self) {
                _ = try await registry.uploadStatus(try RepositoryName("other/app"), Self.partial, privately: true)
            }

            let second = try ImportCopierTests.copier(port: port, registry: registry)
            _ = try await second.run()
            let list = requests.withLockedValue { $0 }
            // One request of the blob, from where the kept bytes end: the rest only.
            #expect(list.count == failing + 1)
            #expect(Self.rangeStart(list.last ?? nil) == Int(held))
            let view = second.progress.view
            #expect(view.blobResumes == 1 && view.blobRestarts == nil)
            #expect(view.bytesCopied == view.bytesTotal)
            #expect(try await registry.blobSize(Self.target, Digest.compute(Self.big)) == Int64(Self.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    /// A forced import never discards a kept partial copy (it may be another running import's,
    /// review): it resumes it as any re-run does, the whole verified before it is stored.
    @Test func aForcedRerunResumesThePartialBlobToo() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        let failing = 1 + ImportCopier.maxIdlePieces
        try await Self.withSource(.dropsUntil(failing)) { port, requests in
            await #expect(throws: UpstreamError.self) { _ = try await ImportCopierTests.copier(port: port, registry: registry).run() }
            #expect(try await backends.blobs.openUploadCount() == 1)
            let held = try await registry.uploadStatus(Self.target, Self.partial, privately: true).size
            let forced = try ImportCopierTests.copier(port: port, registry: registry, force: true)
            _ = try await forced.run()
            let list = requests.withLockedValue { $0 }
            #expect(list.count == failing + 1 && Self.rangeStart(list.last ?? nil) == Int(held))
            #expect(forced.progress.view.blobResumes == 1)
            #expect(forced.progress.view.bytesCopied == forced.progress.view.bytesTotal)
            #expect(try await registry.blobSize(Self.target, Digest.compute(Self.big)) == Int64(Self.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    /// Review: a restart (the source ignored the range) followed by another drop counted the
    /// bytes before the restart off twice; every byte stored is counted once.
    @Test func aRestartThenAnotherDropCountsEveryByteOnce() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(.ignoresRangeThenDrops) { port, requests in
            let copier = try ImportCopierTests.copier(port: port, registry: registry)
            _ = try await copier.run()
            let list = requests.withLockedValue { $0 }
            #expect(list.count == 3 && list[0] == nil)
            // The third piece asks for what the restarted session holds, past the first cut.
            let third = try #require(Self.rangeStart(list[2]))
            #expect(third > Self.cut && third <= Self.secondCut)
            let view = copier.progress.view
            #expect(view.blobRestarts == 1 && view.blobResumes == 1)
            #expect(view.bytesCopied == Int64(Self.big.count + ImportCopierTests.config.count))
            #expect(view.bytesCopied == view.bytesTotal)
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    /// Private sessions are bounded: by age (the stale-upload sweep, as any upload) and by count
    /// (`trimPrivateUploads`, asked when one is made), which leaves ordinary uploads alone.
    @Test func privateSessionsAreBoundedByAgeAndCount() async throws {
        let dir = NSTemporaryDirectory() + "berth-import-" + UUID().uuidString
        let backends = try Backends.embedded(dataDirectory: dir)
        var configuration = RegistryConfiguration()
        configuration.privateUploadsMax = 3
        let registry = Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: configuration)
        let ordinary = try await registry.startUpload(Self.target)
        for i in 0..<3 {
            let id = try await registry.openPrivateUpload(Self.target, digest: Digest.compute([UInt8(i)])).id
            #expect(id == ImportCopier.partialID(Self.target, Digest.compute([UInt8(i)])))
            _ = try await registry.appendUpload(Self.target, id, rangeStart: 0, privately: true, body: Self.chunk([1]))
        }
        // Opening one again finds its bytes.
        let again = try await registry.openPrivateUpload(Self.target, digest: Digest.compute([0]))
        #expect(again.size == 1)
        #expect(try await registry.trimPrivateUploads(room: 0) == 0)
        // Room for one more: the limit is passed, but a session touched in the last ten minutes
        // may be a copy in flight, so none goes yet.
        #expect(try await registry.trimPrivateUploads(room: 1) == 0)
        #expect(try await backends.blobs.openUploadCount() == 4)
        // Eleven minutes on: the oldest go, and the ordinary upload stays.
        let removed = try await registry.trimPrivateUploads(room: 1, now: Date().addingTimeInterval(660))
        #expect(removed >= 1)
        #expect(try await backends.blobs.openUploadCount() <= 3)
        #expect(try await registry.uploadStatus(Self.target, ordinary.id).size == 0)
        // By age: the stale-upload sweep removes private sessions as any other.
        let id = try await registry.openPrivateUpload(Self.target, digest: Digest.compute([9])).id
        _ = try await registry.removeStaleUploads(now: Date().addingTimeInterval(configuration.uploadMaxAge + 3600))
        await #expect(throws: RegistryError.self) { _ = try await registry.uploadStatus(Self.target, id, privately: true) }
        #expect(try await backends.blobs.openUploadCount() == 0)
    }
}

/// A bounded wait for a condition (generous: the machine is shared).
enum StreamingWait {
    static func until(seconds: Double = 60, _ condition: @Sendable () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

extension ImportResumeTests {
    /// Imports sharing one blob's session; serialized: they share the held source's switch.
    @Suite(.serialized) struct SharedSession {
        /// Two imports of the same blob into the same repository at once (images sharing a layer):
        /// the second finds the blob's session being written and waits, leaving the first's bytes
        /// alone; when the first has stored the blob, the second uses it and completes too. A forced
        /// second import too (review: `--force` cancelled the session the first was writing). Before
        /// the change the second failed at once with a 409.
        @Test(arguments: [false, true])
        func aSecondImportOfTheSameBlobAtOnceWaitsForTheFirstAndLeavesItAlone(force: Bool) async throws {
            ImportResumeTests.held.withLockedValue { $0 = true }
            let (registry, backends) = try ImportCopierTests.fresh()
            try await ImportResumeTests.withSource(.holdsFirst) { port, requests in
                let first = try ImportCopierTests.copier(port: port, registry: registry)
                let running = Task { try await first.run() }
                let config = Int64(ImportCopierTests.config.count)
                #expect(try await StreamingWait.until {
                    requests.withLockedValue { $0.count } == 1 && first.progress.view.bytesCopied > config
                })
                let held = try await registry.uploadStatus(ImportResumeTests.target, ImportResumeTests.partial, privately: true).size
                let second = try ImportCopierTests.copier(port: port, registry: registry, force: force)
                let waiting = Task { try await second.run() }
                // It waits: still running a while on, and the first's session holds what the first wrote.
                try await Task.sleep(for: .milliseconds(1500))
                #expect(second.progress.view.state == "running")
                let kept = try await registry.uploadStatus(ImportResumeTests.target, ImportResumeTests.partial, privately: true).size
                #expect(held > 0 && kept >= held)
                ImportResumeTests.held.withLockedValue { $0 = false }
                let digest = Digest.compute(ImportCopierTests.manifest([ImportResumeTests.big]))
                #expect(try await running.value == digest)
                #expect(try await waiting.value == digest)
                #expect(try await registry.blobSize(ImportResumeTests.target, Digest.compute(ImportResumeTests.big)) == Int64(ImportResumeTests.big.count))
                #expect(try await backends.blobs.openUploadCount() == 0)
            }
        }

        /// The second import starts while the first is streaming the blob (its session growing):
    /// it waits by looking only (a try asks the source once, and tries are seconds apart), and
    /// is done when the first has stored it. Review: it used to try the copy again every few hundred
    /// milliseconds and fail on the session's moved offset (a 416).
    @Test func aSecondImportWhileTheFirstStreamsWaitsByLookingAndUsesTheFirstsBlob() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        try await ImportResumeTests.withSource(.trickles) { port, requests in
            let first = try ImportCopierTests.copier(port: port, registry: registry)
            let running = Task { try await first.run() }
            let config = Int64(ImportCopierTests.config.count)
            #expect(try await StreamingWait.until { first.progress.view.bytesCopied > config + 20_000 })
            let second = try ImportCopierTests.copier(port: port, registry: registry, image: "mirror/app:v2")
            let digest = Digest.compute(ImportCopierTests.manifest([ImportResumeTests.big]))
            #expect(try await second.run() == digest)
            #expect(try await running.value == digest)
            // The second asked at most a couple of times (its first try, which found the session
            // being written, and perhaps one more after a pause of the first), never every poll.
            let asked = requests.withLockedValue { $0.count }
            #expect(asked >= 1 && asked <= 3, "the blob was asked for \(asked) times")
            let view = second.progress.view
            #expect(view.blobsSkipped >= 1 && view.bytesCopied == view.bytesTotal, "\(view)")
            #expect(try await registry.blobSize(ImportResumeTests.target, Digest.compute(ImportResumeTests.big)) == Int64(ImportResumeTests.big.count))
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    /// An import that waits for another one copying the same blob gives up with a 409 saying so
        /// when that one's session stops growing for `sharedBlobStall`; the other's bytes stay.
        @Test func anImportWaitingForAStalledCopyOfTheSameBlobGivesUpWithAConflict() async throws {
            ImportResumeTests.held.withLockedValue { $0 = true }
            let (registry, backends) = try ImportCopierTests.fresh()
            try await ImportResumeTests.withSource(.holdsFirst) { port, requests in
                let first = try ImportCopierTests.copier(port: port, registry: registry)
                let running = Task { try await first.run() }
                let config = Int64(ImportCopierTests.config.count)
                #expect(try await StreamingWait.until {
                    requests.withLockedValue { $0.count } == 1 && first.progress.view.bytesCopied > config
                })
                let held = try await registry.uploadStatus(ImportResumeTests.target, ImportResumeTests.partial, privately: true).size
                var second = try ImportCopierTests.copier(port: port, registry: registry)
                second.sharedBlobStall = .milliseconds(800)
                await #expect {
                    _ = try await second.run()
                } throws: { error in
                    (error as? RegistryError)?.status == 409 && (error as? RegistryError)?.message.contains("has made no progress") == true
                }
                let kept = try await registry.uploadStatus(ImportResumeTests.target, ImportResumeTests.partial, privately: true).size
                #expect(held > 0 && kept >= held)
                ImportResumeTests.held.withLockedValue { $0 = false }
                #expect(try await running.value == Digest.compute(ImportCopierTests.manifest([ImportResumeTests.big])))
                #expect(try await backends.blobs.openUploadCount() == 0)
            }
        }
    }
}
