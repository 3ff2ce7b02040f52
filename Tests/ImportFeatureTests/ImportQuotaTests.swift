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
import RegistryStore
import Testing
import UpstreamClient
@testable import ImportFeature

/// What an import may store under a quota: the referrers `--include-referrers` copies are in the
/// image's total (each blob once), the partial copies imports keep count as used, and the cap on
/// kept partial copies is per namespace.
@Suite struct ImportQuotaTests {
    static let layer = [UInt8](repeating: 5, count: 100_000)
    static let other = [UInt8](repeating: 6, count: 100_000)
    static let config = ImportCopierTests.config

    /// An image (one layer) and a referrer of it (an artifact whose one blob is `referrerBlob`).
    struct Source {
        let image: [UInt8]
        let referrer: [UInt8]
        let blobs: [Digest: [UInt8]]

        init(referrerBlob: [UInt8]) {
            image = ImportCopierTests.manifest([ImportQuotaTests.layer])
            let config = ImportQuotaTests.config
            referrer = Array("""
            {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","artifactType":"application/vnd.example.sbom",\
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Digest.compute(config))","size":\(config.count)},\
            "layers":[{"mediaType":"application/vnd.example.sbom.layer","digest":"\(Digest.compute(referrerBlob))","size":\(referrerBlob.count)}],\
            "subject":{"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(image))","size":\(image.count)}}
            """.utf8)
            var blobs = [Digest.compute(config): config, Digest.compute(ImportQuotaTests.layer): ImportQuotaTests.layer]
            blobs[Digest.compute(referrerBlob)] = referrerBlob
            self.blobs = blobs
        }
    }

    /// Serves `source` as lib/app:v1, with the referrers API; counts blob GETs.
    static func withSource(_ source: Source, _ body: @Sendable (Int, NIOLockedValueBox<Int>) async throws -> Void) async throws {
        let blobGets = NIOLockedValueBox(0)
        let manifests: [String: [UInt8]] = ["v1": source.image, Digest.compute(source.image).string: source.image,
                                            Digest.compute(source.referrer).string: source.referrer]
        let router = Router()
        router.get("**") { request, _ -> Response in
            let path = request.uri.path
            let last = String(path.split(separator: "/").last ?? "")
            if path.contains("/referrers/") {
                var entries: [String] = []
                if last == Digest.compute(source.image).string {
                    entries.append(#"{"mediaType":"\#(MediaType.ociManifest)","digest":"\#(Digest.compute(source.referrer))","size":\#(source.referrer.count),"artifactType":"application/vnd.example.sbom"}"#)
                }
                var h = HTTPFields()
                h[.contentType] = MediaType.ociIndex
                let body = #"{"schemaVersion":2,"mediaType":"\#(MediaType.ociIndex)","manifests":[\#(entries.joined(separator: ","))]}"#
                return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(string: body)))
            }
            if path.contains("/manifests/"), let bytes = manifests[last] {
                var h = HTTPFields()
                h[.contentType] = MediaType.ociManifest
                return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            if let d = try? Digest(parsing: last), let bytes = source.blobs[d] {
                blobGets.withLockedValue { $0 += 1 }
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            return Response(status: .notFound)
        }
        var logger = Logger(label: "upstream")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in try await body(try #require(client.port), blobGets) }
    }

    static func copier(port: Int, registry: Registry, referrers: Bool) throws -> ImportCopier {
        let plan = try ImportPlan(ImportRequest(source: "127.0.0.1:\(port)/lib/app:v1", image: "mirror/app:v1", includeReferrers: referrers))
        let upstream = try UpstreamClient(registry: "127.0.0.1:\(port)", plainHTTP: true, policy: try OutboundPolicy(allow: "127.0.0.1/32"))
        return ImportCopier(registry: registry, upstream: upstream, plan: plan,
                            progress: ImportJob(id: "t", source: "lib/app:v1", image: "mirror/app:v1", owner: "test"), log: Logger(label: "import"))
    }

    static let target = try! RepositoryName("mirror/app")

    static func isQuotaError(_ error: any Error) -> Bool {
        (error as? RegistryError)?.code == .denied && (error as? RegistryError)?.message.contains("mirrors") == true
    }

    /// The image fits under the quota, the image with its referrer does not: an import with
    /// `--include-referrers` is refused before anything is stored (no blob fetched), not after
    /// the image was stored and the referrer's blob refused half-way.
    @Test func referrersAreInTheImagesTotalSoAnImportOverTheQuotaStoresNothing() async throws {
        let source = Source(referrerBlob: Self.other)
        let (registry, backends) = try ImportCopierTests.fresh()
        try await Self.withSource(source) { port, blobGets in
            _ = try await registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 150_000))
            await #expect { _ = try await Self.copier(port: port, registry: registry, referrers: true).run() } throws: { Self.isQuotaError($0) }
            #expect(blobGets.withLockedValue { $0 } == 0)
            for blob in [Self.config, Self.layer, Self.other] { #expect((try? await registry.blobSize(Self.target, Digest.compute(blob))) == nil) }
            #expect((try? await registry.manifest(Self.target, .digest(Digest.compute(source.image)))) == nil)
            #expect(try await backends.blobs.openUploadCount() == 0)
            // Without its referrers the image fits.
            #expect(try await Self.copier(port: port, registry: registry, referrers: false).run() == Digest.compute(source.image))
            // Held now; its referrer alone still passes the quota: refused before its blob is fetched.
            let gets = blobGets.withLockedValue { $0 }
            await #expect { _ = try await Self.copier(port: port, registry: registry, referrers: true).run() } throws: { Self.isQuotaError($0) }
            #expect(blobGets.withLockedValue { $0 } == gets)
            #expect((try? await registry.manifest(Self.target, .digest(Digest.compute(source.referrer)))) == nil)
            // With room, the referrer is copied.
            try await registry.deleteQuota(name: "mirrors")
            _ = try await Self.copier(port: port, registry: registry, referrers: true).run()
            #expect(try await registry.blobSize(Self.target, Digest.compute(Self.other)) == Int64(Self.other.count))
            #expect((try? await registry.manifest(Self.target, .digest(Digest.compute(source.referrer)))) != nil)
        }
    }

    /// A referrer whose blob is the image's own layer adds that blob once: the image and its
    /// referrer fit under a quota that two copies of the layer would pass.
    @Test func aBlobTheImageAndItsReferrerShareIsCountedOnce() async throws {
        let source = Source(referrerBlob: Self.layer)
        let (registry, _) = try ImportCopierTests.fresh()
        try await Self.withSource(source) { port, _ in
            _ = try await registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 150_000))
            let copier = try Self.copier(port: port, registry: registry, referrers: true)
            #expect(try await copier.run() == Digest.compute(source.image))
            #expect(copier.progress.view.referrersCopied == 1)
            #expect((try? await registry.manifest(Self.target, .digest(Digest.compute(source.referrer)))) != nil)
        }
    }

    /// Bytes imports keep in private sessions (partial copies) count under the quota: shown in
    /// the quota's view, counted when an import asks whether it fits and when a new partial
    /// copy is opened, so a tenant cannot park bytes without end; an import's own partial copy
    /// (the blob it resumes) is not counted twice.
    @Test func keptPartialCopiesCountAgainstTheQuota() async throws {
        let source = Source(referrerBlob: Self.other)
        let (registry, backends) = try ImportCopierTests.fresh()
        _ = try await registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 250_000))
        // 200,000 bytes parked in another repository of the namespace, as a failed import keeps them.
        let parked = try RepositoryName("mirror/other")
        let id = try await registry.openPrivateUpload(parked, digest: Digest.compute(Array("some blob".utf8))).id
        _ = try await registry.appendUpload(parked, id, rangeStart: 0, privately: true,
                                            body: ImportResumeTests.chunk([UInt8](repeating: 1, count: 200_000)))
        let view = try #require(try await registry.quotaViews().first { $0.name == "mirrors" })
        #expect(view.usedBytes == 0 && view.partialBytes == 200_000)
        try await Self.withSource(source) { port, blobGets in
            // 200,000 parked + 100,000 of the image > 250,000.
            await #expect { _ = try await Self.copier(port: port, registry: registry, referrers: false).run() } throws: { Self.isQuotaError($0) }
            #expect(blobGets.withLockedValue { $0 } == 0)
            #expect(try await backends.blobs.openUploadCount() == 1)
            // Another partial copy cannot be opened once the parked bytes fill the quota.
            _ = try await registry.appendUpload(parked, id, rangeStart: 200_000, privately: true,
                                                body: ImportResumeTests.chunk([UInt8](repeating: 1, count: 50_000)))
            await #expect { _ = try await registry.openPrivateUpload(parked, digest: Digest.compute(Array("another blob".utf8))) } throws: { Self.isQuotaError($0) }
            // Dropped, the room is back.
            try await registry.cancelUpload(parked, id, privately: true)
            #expect(try await Self.copier(port: port, registry: registry, referrers: false).run() == Digest.compute(source.image))
        }
        let after = try #require(try await registry.quotaViews().first { $0.name == "mirrors" })
        #expect(after.partialBytes == 0 && after.usedBytes > 100_000)
    }

    /// A re-run resumes its own partial copy although the quota could not hold that copy and the
    /// whole blob at once: the blob is counted whole in the plan, its partial copy not again.
    @Test func anImportsOwnPartialCopyIsNotCountedTwice() async throws {
        let (registry, backends) = try ImportCopierTests.fresh()
        let failing = 1 + ImportCopier.maxIdlePieces
        try await ImportResumeTests.withSource(.dropsUntil(failing)) { port, _ in
            await #expect(throws: UpstreamError.self) { _ = try await ImportCopierTests.copier(port: port, registry: registry).run() }
            let held = try await registry.uploadStatus(Self.target, ImportResumeTests.partial, privately: true).size
            #expect(held > 1)
            // Room for the image (the big blob, its config, the manifest) and half the partial copy.
            let image = Int64(ImportResumeTests.big.count + Self.config.count + ImportCopierTests.manifest([ImportResumeTests.big]).count)
            _ = try await registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: image + held / 2))
            let view = try #require(try await registry.quotaViews().first { $0.name == "mirrors" })
            #expect(view.partialBytes == held)
            let second = try ImportCopierTests.copier(port: port, registry: registry)
            _ = try await second.run()
            #expect(second.progress.view.blobResumes == 1)
            #expect(try await backends.blobs.openUploadCount() == 0)
        }
    }

    /// The cap on kept partial copies is per namespace: one tenant's imports trim only its own
    /// oldest, never another namespace's.
    @Test func thePartialCopyCapIsPerNamespace() async throws {
        let dir = NSTemporaryDirectory() + "berth-import-" + UUID().uuidString
        let backends = try Backends.embedded(dataDirectory: dir)
        var configuration = RegistryConfiguration()
        configuration.privateUploadsMax = 2
        let registry = Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: configuration)
        let mine = try RepositoryName("alice/app"), theirs = try RepositoryName("bob/app"), mineToo = try RepositoryName("alice/tools")
        var ids: [String: [String]] = [:]
        for (repository, n) in [(theirs, 2), (mine, 2), (mineToo, 1)] {
            for i in 0..<n {
                let id = try await registry.openPrivateUpload(repository, digest: Digest.compute([UInt8(i)])).id
                _ = try await registry.appendUpload(repository, id, rangeStart: 0, privately: true, body: ImportResumeTests.chunk([1]))
                ids[repository.value, default: []].append(id)
            }
        }
        let later = Date().addingTimeInterval(660)
        // Bob's namespace holds 2: with room for one more, one of his goes, none of Alice's.
        #expect(try await registry.trimPrivateUploads(of: theirs, room: 1, now: later) == 1)
        #expect(try await backends.blobs.openUploadCount() == 4)
        let alices = try await registry.privateSessions().filter { Registry.namespace(of: $0.repository) == "alice" }.map(\.id)
        #expect(Set(alices) == Set(ids[mine.value]! + ids[mineToo.value]!))
        // Alice's namespace (two repositories) holds 3: two go, Bob's last one stays.
        #expect(try await registry.trimPrivateUploads(of: mine, room: 1, now: later) == 2)
        let bobs = try await registry.privateSessions().filter { $0.repository == theirs.value }
        #expect(bobs.count == 1)
        #expect(try await registry.privateSessions().filter { Registry.namespace(of: $0.repository) == "alice" }.count == 1)
    }
}
