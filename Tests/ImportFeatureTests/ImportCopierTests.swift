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

/// The import copier against a scripted upstream on loopback and a real embedded registry.
@Suite struct ImportCopierTests {
    static let good = [UInt8](repeating: 7, count: 100_000)      // above the inline limit: the blob store's upload path
    static let small = Array("a small layer".utf8)               // kept inline
    static let config = Array(#"{"architecture":"amd64","os":"linux"}"#.utf8)

    static func manifest(_ layers: [[UInt8]]) -> [UInt8] {
        let items = layers.map { #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(Digest.compute($0))","size":\#($0.count)}"# }
        return Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Digest.compute(config))","size":\(config.count)},"layers":[\(items.joined(separator: ","))]}
        """.utf8)
    }

    /// Serves `manifest` for tag v1 and each blob from `blobs` (by digest); counts blob GETs.
    static func withUpstream(manifest: [UInt8], blobs: NIOLockedValueBox<[Digest: [UInt8]]>,
                             _ body: @Sendable (Int, NIOLockedValueBox<[String: Int]>) async throws -> Void) async throws {
        let gets = NIOLockedValueBox<[String: Int]>([:])
        let router = Router()
        router.get("**") { request, _ -> Response in
            let path = request.uri.path
            gets.withLockedValue { $0[path, default: 0] += 1 }
            if path.hasSuffix("/manifests/v1") || path.hasSuffix("/manifests/\(Digest.compute(manifest))") {
                var h = HTTPFields()
                h[.contentType] = MediaType.ociManifest
                return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: manifest)))
            }
            if let d = path.split(separator: "/").last.flatMap({ try? Digest(parsing: $0) }), let bytes = blobs.withLockedValue({ $0[d] }) {
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            return Response(status: .notFound)
        }
        var logger = Logger(label: "upstream")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in try await body(try #require(client.port), gets) }
    }

    static func copier(port: Int, registry: Registry, force: Bool = false, source: String = "lib/app:v1",
                       image: String = "mirror/app:v1") throws -> ImportCopier {
        let plan = try ImportPlan(ImportRequest(source: "127.0.0.1:\(port)/\(source)", image: image, force: force))
        let upstream = try UpstreamClient(registry: "127.0.0.1:\(port)", plainHTTP: true, policy: try OutboundPolicy(allow: "127.0.0.1/32"))
        return ImportCopier(registry: registry, upstream: upstream, plan: plan,
                            progress: ImportJob(id: "t", source: source, image: image, owner: "test"), log: Logger(label: "import"))
    }

    static func fresh() throws -> (Registry, Backends) {
        let dir = NSTemporaryDirectory() + "berth-import-" + UUID().uuidString
        let backends = try Backends.embedded(dataDirectory: dir)
        return (Registry(blobs: backends.blobs, metadata: backends.metadata), backends)
    }

    @Test(arguments: [false, true])
    func aBlobWithTheWrongContentIsNotStoredAndARerunResumes(inline: Bool) async throws {
        let bad = inline ? Array("a bad small layer".utf8) : [UInt8](repeating: 9, count: 90_000)
        let layers = [Self.small, Self.good, bad]
        let m = Self.manifest(layers)
        let blobs = NIOLockedValueBox<[Digest: [UInt8]]>([Digest.compute(Self.config): Self.config])
        for layer in layers.dropLast() { blobs.withLockedValue { $0[Digest.compute(layer)] = layer } }
        // The last layer is served with other bytes of the same length.
        blobs.withLockedValue { $0[Digest.compute(bad)] = bad.map { $0 ^ 1 } }
        let (registry, backends) = try Self.fresh()
        let target = try RepositoryName("mirror/app")
        try await Self.withUpstream(manifest: m, blobs: blobs) { port, gets in
            await #expect {
                _ = try await Self.copier(port: port, registry: registry).run()
            } throws: { ($0 as? UpstreamError)?.kind == .digestMismatch }
            // Nothing of the bad blob is stored, no upload is left behind, nothing is tagged.
            await #expect(throws: (any Error).self) { _ = try await registry.blobSize(target, Digest.compute(bad)) }
            #expect(try await backends.blobs.size(of: Digest.compute(bad)) == nil)
            #expect(try await backends.blobs.openUploadCount() == 0)
            await #expect(throws: (any Error).self) { _ = try await registry.resolve(target, .tag("v1")) }

            // Fixed upstream: the re-run fetches only what was not stored.
            blobs.withLockedValue { $0[Digest.compute(bad)] = bad }
            let digest = try await Self.copier(port: port, registry: registry).run()
            #expect(digest == Digest.compute(m))
            #expect(try await registry.resolve(target, .tag("v1")) == digest)
            let counts = gets.withLockedValue { $0 }
            #expect(counts["/v2/lib/app/blobs/\(Digest.compute(Self.config))"] == 1)
            #expect(counts["/v2/lib/app/blobs/\(Digest.compute(layers[0]))"] == 1)
            #expect(counts["/v2/lib/app/blobs/\(Digest.compute(layers[1]))"] == 1)
            #expect(counts["/v2/lib/app/blobs/\(Digest.compute(bad))"] == 2)
        }
    }

    /// An `--all-platforms` import of an index whose images each fit under the target's quota but
    /// together do not is refused before anything is stored (the whole index asked at once, as
    /// the cache's fill does), with the quota's error, and no blob is fetched.
    @Test func anAllPlatformsImportOverTheQuotaStoresNothing() async throws {
        let a = [UInt8](repeating: 3, count: 100_000), b = [UInt8](repeating: 4, count: 100_000)
        let (ma, mb) = (Self.manifest([a]), Self.manifest([b]))
        let index = Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[\
        {"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(ma))","size":\(ma.count),"platform":{"architecture":"amd64","os":"linux"}},\
        {"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(mb))","size":\(mb.count),"platform":{"architecture":"arm64","os":"linux"}}]}
        """.utf8)
        let manifests: [String: ([UInt8], String)] = [
            "v1": (index, MediaType.ociIndex), Digest.compute(index).string: (index, MediaType.ociIndex),
            Digest.compute(ma).string: (ma, MediaType.ociManifest), Digest.compute(mb).string: (mb, MediaType.ociManifest),
        ]
        let blobs: [Digest: [UInt8]] = [Digest.compute(Self.config): Self.config, Digest.compute(a): a, Digest.compute(b): b]
        let blobGets = NIOLockedValueBox(0)
        let router = Router()
        router.get("**") { request, _ -> Response in
            let last = String(request.uri.path.split(separator: "/").last ?? "")
            if request.uri.path.contains("/manifests/"), let (bytes, type) = manifests[last] {
                var h = HTTPFields()
                h[.contentType] = type
                return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            if let d = try? Digest(parsing: last), let bytes = blobs[d] {
                blobGets.withLockedValue { $0 += 1 }
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            return Response(status: .notFound)
        }
        var logger = Logger(label: "upstream")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        let (registry, backends) = try Self.fresh()
        let target = try RepositoryName("mirror/app")
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let plan = try ImportPlan(ImportRequest(source: "127.0.0.1:\(port)/lib/app:v1", image: "mirror/app:v1", allPlatforms: true))
            let upstream = try UpstreamClient(registry: "127.0.0.1:\(port)", plainHTTP: true, policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            func copier() -> ImportCopier {
                ImportCopier(registry: registry, upstream: upstream, plan: plan,
                             progress: ImportJob(id: "t", source: "lib/app:v1", image: "mirror/app:v1", owner: "test"), log: Logger(label: "import"))
            }
            _ = try await registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 150_000))
            await #expect { _ = try await copier().run() } throws: {
                ($0 as? RegistryError)?.code == .denied && ($0 as? RegistryError)?.message.contains("mirrors") == true
            }
            #expect(blobGets.withLockedValue { $0 } == 0)
            for blob in [Self.config, a, b] { #expect((try? await registry.blobSize(target, Digest.compute(blob))) == nil) }
            for m in [ma, mb, index] { #expect((try? await registry.manifest(target, .digest(Digest.compute(m)))) == nil) }
            #expect(try await backends.blobs.openUploadCount() == 0)
            try await registry.deleteQuota(name: "mirrors")
            #expect(try await copier().run() == Digest.compute(index))
            #expect(try await registry.blobSize(target, Digest.compute(b)) == Int64(b.count))
        }
    }

    @Test func anExistingTagMovesOnlyWithForce() async throws {
        let first = Self.manifest([Self.small])
        let blobs = NIOLockedValueBox<[Digest: [UInt8]]>([Digest.compute(Self.config): Self.config, Digest.compute(Self.small): Self.small,
                                                          Digest.compute(Self.good): Self.good])
        let (registry, _) = try Self.fresh()
        let target = try RepositoryName("mirror/app")
        try await Self.withUpstream(manifest: first, blobs: blobs) { port, _ in
            _ = try await Self.copier(port: port, registry: registry).run()
        }
        let second = Self.manifest([Self.good])
        try await Self.withUpstream(manifest: second, blobs: blobs) { port, gets in
            await #expect {
                _ = try await Self.copier(port: port, registry: registry).run()
            } throws: { ($0 as? RegistryError)?.status == 409 }
            // Refused before any blob was fetched.
            #expect(gets.withLockedValue { $0 }.keys.allSatisfy { !$0.contains("/blobs/") })
            #expect(try await registry.resolve(target, .tag("v1")) == Digest.compute(first))
            _ = try await Self.copier(port: port, registry: registry, force: true).run()
            #expect(try await registry.resolve(target, .tag("v1")) == Digest.compute(second))
        }
    }

    @Test func runningImportsAreBoundedPerNodeAndPerIdentity() {
        // Review: any pusher could start imports without end, each holding clients and a manifest.
        let jobs = ImportJobs()
        let first = jobs.add(source: "s", image: "i", owner: "alice")
        #expect(first != nil && jobs.add(source: "s", image: "i", owner: "alice") != nil)
        #expect(jobs.add(source: "s", image: "i", owner: "alice") == nil)
        #expect(jobs.add(source: "s", image: "i", owner: "bob") != nil && jobs.add(source: "s", image: "i", owner: "carol") != nil)
        #expect(jobs.add(source: "s", image: "i", owner: "dave") == nil)
        first?.finish(digest: Digest.compute(Array("x".utf8)))
        #expect(jobs.add(source: "s", image: "i", owner: "alice") != nil)
    }

    @Test func oneImportCopiesABoundedNumberOfManifests() throws {
        let job = ImportJob(id: "t", source: "s", image: "i", owner: "o")
        for _ in 0..<3 { try job.countManifest(limit: 3) }
        #expect(throws: RegistryError.self) { try job.countManifest(limit: 3) }
    }

    @Test func anIndexWithoutAllPlatformsGivesItsLinuxAmd64Image() throws {
        let amd = Digest.compute(Array("amd".utf8)), arm = Digest.compute(Array("arm".utf8))
        let index = Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[
         {"mediaType":"\(MediaType.ociManifest)","digest":"\(arm)","size":3,"platform":{"architecture":"arm64","os":"linux"}},
         {"mediaType":"\(MediaType.ociManifest)","digest":"\(amd)","size":3,"platform":{"architecture":"amd64","os":"linux"}}]}
        """.utf8)
        #expect(try ImportCopier.defaultPlatform(index) == amd)
        let armOnly = Array(#"{"schemaVersion":2,"manifests":[{"mediaType":"\#(MediaType.ociManifest)","digest":"\#(arm)","size":3,"platform":{"architecture":"arm64","os":"linux"}}]}"#.utf8)
        #expect(throws: RegistryError.self) { try ImportCopier.defaultPlatform(armOnly) }
    }

    @Test(arguments: ["lib/app:v1", "127.0.0.1:5000/lib/app:v1"])
    func requestsAreChecked(image: String) throws {
        // The source must name its registry; the target is REPOSITORY:TAG here.
        #expect(throws: RegistryError.self) { try ImportPlan(ImportRequest(source: "lib/app:v1", image: "mirror/app:v1")) }
        if image.contains("127.0.0.1") {
            #expect(throws: RegistryError.self) { try ImportPlan(ImportRequest(source: "127.0.0.1:5000/lib/app:v1", image: image)) }
        } else {
            let plan = try ImportPlan(ImportRequest(source: "docker.io/alpine", image: image))
            #expect(plan.sourceRepository == "library/alpine" && plan.tag == "v1")
        }
    }
}
