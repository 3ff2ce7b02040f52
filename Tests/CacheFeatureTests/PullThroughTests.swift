import Access
import Backends
import struct Crypto.SymmetricKey
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
@testable import CacheFeature

/// A settable clock for the freshness window.
final class TestClock: Sendable {
    private let value = NIOLockedValueBox(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { value.withLockedValue { $0 } }
    func advance(_ seconds: TimeInterval) { value.withLockedValue { $0 += seconds } }
}

/// The pull-through cache against a scripted upstream on loopback and a real embedded registry.
@Suite struct PullThroughTests {
    static let config = Array(#"{"architecture":"amd64","os":"linux"}"#.utf8)
    static let layer = [UInt8](repeating: 7, count: 100_000)   // above the inline limit: the blob store's upload path
    static let other = Array("another small layer".utf8)

    static func manifest(_ layers: [[UInt8]]) -> [UInt8] {
        let items = layers.map { #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(Digest.compute($0))","size":\#($0.count)}"# }
        return Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Digest.compute(config))","size":\(config.count)},"layers":[\(items.joined(separator: ","))]}
        """.utf8)
    }

    /// What the scripted upstream serves: manifests by tag and digest, blobs by digest.
    final class Upstream: Sendable {
        let tags = NIOLockedValueBox<[String: [UInt8]]>([:])
        let blobs = NIOLockedValueBox<[Digest: [UInt8]]>([:])
        let gets = NIOLockedValueBox<[String: Int]>([:])
        /// Called before a manifest by tag is answered (to hold it until the test's readers all wait).
        let beforeTag = NIOLockedValueBox<(@Sendable () async -> Void)?>(nil)
        /// Blobs sent in two halves: the second only once the test released it (else the answer is cut after 300 s).
        let held = NIOLockedValueBox<Set<Digest>>([])
        let released = NIOLockedValueBox(false)
        /// Blobs sent without a Content-Length (chunked).
        let unsized = NIOLockedValueBox<Set<Digest>>([])
        /// While true, a HEAD of a manifest gets no answer (an upstream that accepts and hangs).
        let hangHead = NIOLockedValueBox(false)

        func serve(_ m: [UInt8], tag: String, blobs: [[UInt8]]) {
            tags.withLockedValue { $0[tag] = m }
            self.blobs.withLockedValue { for b in blobs { $0[Digest.compute(b)] = b } }
        }

        func count(_ path: String) -> Int { gets.withLockedValue { $0[path] ?? 0 } }
        var blobGets: Int { gets.withLockedValue { $0.filter { $0.key.contains("/blobs/") }.values.reduce(0, +) } }
        /// Manifest requests, GET and HEAD.
        var manifestGets: Int { gets.withLockedValue { $0.filter { $0.key.contains("/manifests/") }.values.reduce(0, +) } }
    }

    static func withUpstream(_ upstream: Upstream, _ body: @Sendable (Int) async throws -> Void) async throws {
        let router = Router()
        router.head("**") { request, _ -> Response in
            let path = request.uri.path
            upstream.gets.withLockedValue { $0["HEAD " + path, default: 0] += 1 }
            while upstream.hangHead.withLockedValue({ $0 }) { try await Task.sleep(for: .milliseconds(50)) }
            let tag = String(path.split(separator: "/").last ?? "")
            guard path.contains("/manifests/"), let m = upstream.tags.withLockedValue({ $0[tag] }) else { return Response(status: .notFound) }
            var h = HTTPFields()
            h[.contentType] = MediaType.ociManifest
            h[HTTPField.Name("Docker-Content-Digest")!] = Digest.compute(m).string
            h[.contentLength] = String(m.count)
            return Response(status: .ok, headers: h)
        }
        router.get("**") { request, _ -> Response in
            let path = request.uri.path
            upstream.gets.withLockedValue { $0[path, default: 0] += 1 }
            let last = String(path.split(separator: "/").last ?? "")
            if path.contains("/manifests/") {
                let byDigest = try? Digest(parsing: last)
                if byDigest == nil, let hold = upstream.beforeTag.withLockedValue({ $0 }) { await hold() }
                let m = upstream.tags.withLockedValue { tags in
                    byDigest.flatMap { d in tags.values.first { Digest.compute($0) == d } } ?? tags[last]
                }
                guard let m else { return Response(status: .notFound) }
                var h = HTTPFields()
                h[.contentType] = String(decoding: m, as: UTF8.self).contains(MediaType.ociIndex) ? MediaType.ociIndex : MediaType.ociManifest
                return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: m)))
            }
            if let d = try? Digest(parsing: last), let bytes = upstream.blobs.withLockedValue({ $0[d] }) {
                if upstream.held.withLockedValue({ $0.contains(d) }) {
                    var h = HTTPFields()
                    h[.contentLength] = String(bytes.count)
                    return Response(status: .ok, headers: h, body: ResponseBody(contentLength: bytes.count) { writer in
                        let half = bytes.count / 2
                        try await writer.write(ByteBuffer(bytes: bytes[..<half]))
                        var waited = 0
                        while !upstream.released.withLockedValue({ $0 }) {
                            waited += 1
                            guard waited < 30_000 else { throw CancellationError() }
                            try await Task.sleep(for: .milliseconds(10))
                        }
                        try await writer.write(ByteBuffer(bytes: bytes[half...]))
                        try await writer.finish(nil)
                    })
                }
                if upstream.unsized.withLockedValue({ $0.contains(d) }) {
                    return Response(status: .ok, body: ResponseBody { writer in
                        try await writer.write(ByteBuffer(bytes: bytes))
                        try await writer.finish(nil)
                    })
                }
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            return Response(status: .notFound)
        }
        var logger = Logger(label: "upstream")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in try await body(try #require(client.port)) }
    }

    struct Cache {
        let registry: Registry
        let backends: Backends
        let service: CacheService
        let pullThrough: PullThrough
        let clock: TestClock
    }

    /// A registry with the rule `127.0.0.1:<port>/lib/*` → `mirror/*` (freshness 60 s).
    static func cache(port: Int, negativeSeconds: Double = 30, maxBlobBytes: Int64? = nil) async throws -> Cache {
        let dir = NSTemporaryDirectory() + "berth-cache-" + UUID().uuidString
        let backends = try Backends.embedded(dataDirectory: dir)
        let registry = Registry(blobs: backends.blobs, metadata: backends.metadata)
        let service = CacheService(store: backends.metadata, sealingKey: SymmetricKey(size: .bits256),
                                   policy: try OutboundPolicy(allow: "127.0.0.1/32"))
        _ = try await service.createRule(name: "lib", source: "127.0.0.1:\(port)/lib/*", target: "mirror/*", credentialSet: nil,
                                         plainHTTP: true, tagFreshnessSeconds: 60, createdBy: "owner")
        let clock = TestClock()
        var limits = UpstreamLimits()
        limits.connectTimeout = .seconds(2)   // the outage test's refused connections are retried until then
        if let maxBlobBytes { limits.maxBlobBytes = maxBlobBytes }
        let pullThrough = PullThrough(registry: registry, service: service, limits: limits, negativeSeconds: negativeSeconds,
                                      now: { clock.now })
        return Cache(registry: registry, backends: backends, service: service, pullThrough: pullThrough, clock: clock)
    }

    static let app = try! RepositoryName("mirror/app")

    /// An embedded registry (quiet) with access control and the owner `owner`/`owner-pw`.
    static func registryWithOwner(_ prefix: String) async throws -> (Registry, AccessControl, Logger) {
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let dir = NSTemporaryDirectory() + prefix + UUID().uuidString
        let registry = try Registry.embedded(dataDirectory: dir, logger: quiet)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore,
                                                  keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: "owner-pw")
        return (registry, access, quiet)
    }

    @Test func concurrentMissesOfOneTagFetchItOnce() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.layer])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.layer])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            let readers = 8
            // The upstream answers the tag only once every reader waits for the one fetch.
            upstream.beforeTag.withLockedValue {
                $0 = {
                    for _ in 0..<2000 where c.pullThrough.fetchCallers("t:mirror/app:v1") < readers {
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<readers { group.addTask { try await c.pullThrough.prepareManifest(Self.app, .tag("v1")) } }
                try await group.waitForAll()
            }
            #expect(upstream.count("/v2/lib/app/manifests/v1") == 1)
            #expect(upstream.count("/v2/lib/app/blobs/\(Digest.compute(Self.layer))") == 1)
            #expect(upstream.count("/v2/lib/app/blobs/\(Digest.compute(Self.config))") == 1)
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(m))
            #expect(try await c.registry.blobSize(Self.app, Digest.compute(Self.layer)) == Int64(Self.layer.count))
            // Stored as a push is: with its events, by the rule.
            let events = try await c.backends.metadata.events(after: 0, limit: 100)
            #expect(events.contains { $0.action == .manifestPush && $0.tag == "v1" && $0.repository == "mirror/app" && $0.actor == "cache:lib" },
                    "\(events.map { "\($0.action) \($0.repository) \($0.tag ?? "-") \($0.actor ?? "-")" })")
        }
    }

    @Test func aRepositoryNoRuleCoversIsNeverFetched() async throws {
        let upstream = Upstream()
        upstream.serve(Self.manifest([Self.other]), tag: "v1", blobs: [Self.config, Self.other])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            try await c.pullThrough.prepareManifest(try RepositoryName("other/app"), .tag("v1"))
            try await c.pullThrough.prepareManifest(try RepositoryName("mirror"), .tag("v1"))
            try await c.pullThrough.prepareBlob(try RepositoryName("other/app"), Digest.compute(Self.other))
            #expect(upstream.gets.withLockedValue { $0 }.isEmpty)
        }
    }

    @Test func aTamperedBlobIsRefusedAndNothingIsCached() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.layer])
        upstream.serve(m, tag: "v1", blobs: [Self.config])
        // The layer is served with other bytes of the same length.
        upstream.blobs.withLockedValue { $0[Digest.compute(Self.layer)] = Self.layer.map { $0 ^ 1 } }
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            await #expect {
                try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            } throws: { ($0 as? RegistryError)?.code == .digestInvalid && ($0 as? RegistryError)?.status == 502 }
            await #expect(throws: (any Error).self) { _ = try await c.registry.resolve(Self.app, .tag("v1")) }
            await #expect(throws: (any Error).self) { _ = try await c.registry.blobSize(Self.app, Digest.compute(Self.layer)) }
            #expect(try await c.backends.blobs.size(of: Digest.compute(Self.layer)) == nil)
            #expect(try await c.backends.blobs.openUploadCount() == 0)
            // A blob read by digest alone is refused the same way.
            await #expect(throws: RegistryError.self) { try await c.pullThrough.prepareBlob(Self.app, Digest.compute(Self.layer)) }
            #expect(try await c.backends.blobs.size(of: Digest.compute(Self.layer)) == nil)
        }
    }

    @Test func aTamperedManifestIsRefused() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.other])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.other])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            // Asked by a digest the upstream's bytes do not have.
            let wrong = Digest.compute(Array("not this".utf8))
            upstream.tags.withLockedValue { $0[wrong.string] = m }
            await #expect {
                try await c.pullThrough.prepareManifest(Self.app, .digest(wrong))
            } throws: { ($0 as? RegistryError)?.code == .digestInvalid }
            await #expect(throws: (any Error).self) { _ = try await c.registry.manifest(Self.app, .digest(wrong)) }
        }
    }

    @Test func aTagIsFreshForItsWindowThenMovedWhenUpstreamMovedIt() async throws {
        let upstream = Upstream()
        let first = Self.manifest([Self.other])
        upstream.serve(first, tag: "v1", blobs: [Self.config, Self.other])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(first))
            let second = Self.manifest([Self.layer])
            upstream.serve(second, tag: "v1", blobs: [Self.layer])
            // Within the window: answered from the cache, upstream not asked.
            c.clock.advance(59)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(upstream.count("/v2/lib/app/manifests/v1") == 1)
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(first))
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == 0)
            // After it: asked (HEAD), and the tag moved (GET of the new manifest).
            c.clock.advance(2)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == 1)
            #expect(upstream.count("/v2/lib/app/manifests/v1") == 2)
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(second))
            // Unchanged upstream after the next window: a HEAD only.
            c.clock.advance(61)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == 2)
            #expect(upstream.count("/v2/lib/app/manifests/v1") == 2)
            // A digest once cached never asks upstream.
            try await c.pullThrough.prepareManifest(Self.app, .digest(Digest.compute(first)))
            #expect(upstream.manifestGets == 4)
        }
    }

    @Test func anUpstream404IsRememberedForItsWindow() async throws {
        let upstream = Upstream()
        upstream.serve(Self.manifest([Self.other]), tag: "v1", blobs: [Self.config, Self.other])
        let absent = Digest.compute(Array("absent".utf8))
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            // A storm of pulls of a missing tag, manifest and blob: each asked upstream once.
            for _ in 0..<5 {
                await #expect { try await c.pullThrough.prepareManifest(Self.app, .tag("nope")) } throws: {
                    ($0 as? RegistryError)?.status == 404
                }
                await #expect { try await c.pullThrough.prepareManifest(Self.app, .digest(absent)) } throws: {
                    ($0 as? RegistryError)?.code == .manifestUnknown
                }
                await #expect { try await c.pullThrough.prepareBlob(Self.app, absent) } throws: {
                    ($0 as? RegistryError)?.code == .blobUnknown
                }
                await #expect { _ = try await c.pullThrough.streamBlob(Self.app, absent) } throws: {
                    ($0 as? RegistryError)?.code == .blobUnknown
                }
            }
            #expect(upstream.count("/v2/lib/app/manifests/nope") == 1)
            #expect(upstream.count("/v2/lib/app/manifests/\(absent)") == 1)
            #expect(upstream.count("/v2/lib/app/blobs/\(absent)") == 1)
            // What exists is still fetched; another name is its own entry.
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(Self.manifest([Self.other])))
            // After the window the upstream is asked again, and what appeared there is filled.
            upstream.serve(Self.manifest([Self.other]), tag: "nope", blobs: [])
            c.clock.advance(29)
            await #expect(throws: RegistryError.self) { try await c.pullThrough.prepareManifest(Self.app, .tag("nope")) }
            #expect(upstream.count("/v2/lib/app/manifests/nope") == 1)
            c.clock.advance(2)
            try await c.pullThrough.prepareManifest(Self.app, .tag("nope"))
            #expect(upstream.count("/v2/lib/app/manifests/nope") == 2)
        }
    }

    @Test func withoutANegativeWindowEveryMissAsksUpstream() async throws {
        let upstream = Upstream()
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port, negativeSeconds: 0)
            for _ in 0..<3 {
                await #expect(throws: RegistryError.self) { try await c.pullThrough.prepareManifest(Self.app, .tag("nope")) }
            }
            #expect(upstream.count("/v2/lib/app/manifests/nope") == 3)
        }
    }

    @Test func aBlobOverTheSizeCapIsRefusedAndNothingStored() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.layer])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.layer])
        // Sent without a length too: counted while it streams.
        let chunked = [UInt8](repeating: 3, count: 50_000)
        upstream.blobs.withLockedValue { $0[Digest.compute(chunked)] = chunked }
        upstream.unsized.withLockedValue { _ = $0.insert(Digest.compute(chunked)) }
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port, maxBlobBytes: 40_000)
            await #expect { try await c.pullThrough.prepareManifest(Self.app, .tag("v1")) } throws: {
                ($0 as? RegistryError)?.code == .sizeInvalid && ($0 as? RegistryError)?.status == 502
            }
            await #expect { _ = try await c.pullThrough.streamBlob(Self.app, Digest.compute(Self.layer)) } throws: {
                ($0 as? RegistryError)?.code == .sizeInvalid && ($0 as? RegistryError)?.message.contains("limit") == true
            }
            await #expect { try await c.pullThrough.prepareBlob(Self.app, Digest.compute(chunked)) } throws: {
                ($0 as? RegistryError)?.code == .sizeInvalid
            }
            #expect(try await c.backends.blobs.size(of: Digest.compute(Self.layer)) == nil)
            #expect(try await c.backends.blobs.size(of: Digest.compute(chunked)) == nil)
            #expect(try await c.backends.blobs.openUploadCount() == 0)
            await #expect(throws: (any Error).self) { _ = try await c.registry.resolve(Self.app, .tag("v1")) }
        }
    }

    /// An image whose blobs together pass the target's quota is refused before its first blob
    /// (a small config that fits on its own is not stored), and nothing is asked of the upstream's blobs.
    @Test func anImageOverTheQuotaStoresNoneOfItsBlobs() async throws {
        let upstream = Upstream()
        let big = [UInt8](repeating: 9, count: 200_000)   // above the inline limit: it would reach the blob store
        let m = Self.manifest([big])
        upstream.serve(m, tag: "v1", blobs: [Self.config, big])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            _ = try await c.registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 150_000))
            await #expect { try await c.pullThrough.prepareManifest(Self.app, .tag("v1")) } throws: {
                ($0 as? RegistryError)?.code == .denied && ($0 as? RegistryError)?.message.contains("mirrors") == true
            }
            #expect((try? await c.registry.blobSize(Self.app, Digest.compute(Self.config))) == nil)
            #expect((try? await c.registry.blobSize(Self.app, Digest.compute(big))) == nil)
            #expect(try await c.backends.blobs.size(of: Digest.compute(big)) == nil)
            #expect(upstream.blobGets == 0)
            try await c.registry.deleteQuota(name: "mirrors")
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(m))
        }
    }

    /// An index whose children each fit under the target's quota but together do not: the fill
    /// asks the quotas for the whole index before its first blob, so nothing of it is stored (by
    /// the fill of a tag, and by the early answer of a miss, which is refused instead of served),
    /// no blob is asked of the upstream, and the quota's error is what the client gets.
    @Test func anIndexWhoseChildrenTogetherPassTheQuotaStoresNothing() async throws {
        let upstream = Upstream()
        let a = [UInt8](repeating: 1, count: 100_000), b = [UInt8](repeating: 2, count: 100_000)
        let (ma, mb) = (Self.manifest([a]), Self.manifest([b]))
        let index = Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[\
        {"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(ma))","size":\(ma.count),"platform":{"architecture":"amd64","os":"linux"}},\
        {"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(mb))","size":\(mb.count),"platform":{"architecture":"arm64","os":"linux"}}]}
        """.utf8)
        upstream.serve(ma, tag: "child-a", blobs: [Self.config, a])
        upstream.serve(mb, tag: "child-b", blobs: [b])
        upstream.serve(index, tag: "v1", blobs: [])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            // Each child (100 kB and its config) fits; both do not.
            _ = try await c.registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 150_000))
            func refusedForQuota(_ error: any Error) -> Bool {
                (error as? RegistryError)?.code == .denied && (error as? RegistryError)?.message.contains("mirrors") == true
            }
            await #expect { try await c.pullThrough.prepareManifest(Self.app, .tag("v1")) } throws: { refusedForQuota($0) }
            await #expect { _ = try await c.pullThrough.provisionalManifest(Self.app, .tag("v1")) } throws: { refusedForQuota($0) }
            await #expect { _ = try await c.pullThrough.provisionalManifest(Self.app, .digest(Digest.compute(index))) } throws: {
                refusedForQuota($0)
            }
            #expect(upstream.blobGets == 0)
            for blob in [Self.config, a, b] {
                #expect((try? await c.registry.blobSize(Self.app, Digest.compute(blob))) == nil)
            }
            for m in [ma, mb, index] {
                #expect((try? await c.registry.manifest(Self.app, .digest(Digest.compute(m)))) == nil)
            }
            // Room made: the same pull fills the whole index.
            try await c.registry.deleteQuota(name: "mirrors")
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(index))
            #expect(try await c.registry.blobSize(Self.app, Digest.compute(b)) == Int64(b.count))
        }
    }

    /// The whole-index total saturates: children declaring sizes that overflow an Int64 when
    /// added are refused by the quota, not wrapped around to a small total.
    @Test func declaredSizesThatOverflowSaturate() async throws {
        let (registry, _) = try Self.registryOnly()
        let blobs = (0..<3).map { i in #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(Digest.compute([UInt8(i)]))","size":\#(Int64.max / 2 + 1)}"# }
        let m = Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(Digest.compute(Self.config))","size":\(Self.config.count)},"layers":[\(blobs.joined(separator: ","))]}
        """.utf8)
        let plan = try await registry.planCopy(Self.app, root: CopyPlan.Manifest(digest: Digest.compute(m), mediaType: MediaType.ociManifest, bytes: m),
                                               maxDepth: 4, maxManifests: 10) { _ in throw CancellationError() }
        #expect(plan.declaredBytes == Int64.max)
        #expect(plan.missingBlobs.count == 4)
        _ = try await registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 1 << 40))
        await #expect(throws: RegistryError.self) { try await registry.checkStorable(Self.app, plan) }
    }

    static func registryOnly() throws -> (Registry, Backends) {
        let backends = try Backends.embedded(dataDirectory: NSTemporaryDirectory() + "berth-plan-" + UUID().uuidString)
        return (Registry(blobs: backends.blobs, metadata: backends.metadata), backends)
    }

    @Test func aBlackHoledUpstreamFailsWithinTheConnectTimeoutAndTheCacheIsServed() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.other])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.other])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            // The rule now points at an address that never answers (TEST-NET-1, allowed by the policy).
            let service = CacheService(store: c.backends.metadata, sealingKey: SymmetricKey(size: .bits256),
                                       policy: try OutboundPolicy(allow: "127.0.0.1/32,192.0.2.0/24"))
            _ = try await service.updateRule(name: "lib", source: "192.0.2.1:5000/lib/*", target: nil, credentialSet: nil,
                                             clearCredentialSet: false, plainHTTP: nil, tagFreshnessSeconds: nil, by: "owner")
            var limits = UpstreamLimits()
            limits.connectTimeout = .milliseconds(500)
            let blackHoled = PullThrough(registry: c.registry, service: service, limits: limits, now: { c.clock.now })
            c.clock.advance(3600)
            // Served from the cache once the connection attempt gave up (not after minutes).
            try await blackHoled.prepareManifest(Self.app, .tag("v1"))
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(m))
            await #expect { try await blackHoled.prepareManifest(Self.app, .tag("v2")) } throws: { ($0 as? RegistryError)?.status == 502 }
        }
    }

    @Test func aRuleMadeOnAnotherNodeIsSeenThroughTheEventFeed() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.other])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.other])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            let hub = try RepositoryName("hub/app")
            // This node read the rules: hub/* is not covered.
            try await c.pullThrough.prepareManifest(hub, .tag("v1"))
            #expect(upstream.manifestGets == 0)
            let cursor = try await c.backends.metadata.events(after: 0, limit: 10_000).last?.sequence ?? 0
            // Another node (its own service over the same store) adds a rule; this node's clock does not move.
            let elsewhere = CacheService(store: c.backends.metadata, sealingKey: SymmetricKey(size: .bits256),
                                         policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            _ = try await elsewhere.createRule(name: "hub", source: "127.0.0.1:\(port)/lib/*", target: "hub/*", credentialSet: nil,
                                               plainHTTP: true, tagFreshnessSeconds: 60, createdBy: "owner")
            try await c.pullThrough.prepareManifest(hub, .tag("v1"))
            #expect(upstream.manifestGets == 0)   // not seen yet: the rules as read
            // The event feed hands this node the rule's event (as CacheInvalidationService does).
            c.registry.applyEvents(try await c.backends.metadata.events(after: cursor, limit: 100))
            try await c.pullThrough.prepareManifest(hub, .tag("v1"))
            #expect(try await c.registry.resolve(hub, .tag("v1")) == Digest.compute(m))
            // Deleted elsewhere: no longer covered once its event arrives.
            let cursor2 = try await c.backends.metadata.events(after: 0, limit: 10_000).last?.sequence ?? 0
            try await elsewhere.deleteRule("hub")
            c.registry.applyEvents(try await c.backends.metadata.events(after: cursor2, limit: 100))
            let gets = upstream.manifestGets
            await #expect(throws: (any Error).self) { _ = try await c.registry.resolve(try RepositoryName("hub/other"), .tag("v1")) }
            try await c.pullThrough.prepareManifest(try RepositoryName("hub/other"), .tag("v1"))
            #expect(upstream.manifestGets == gets)
        }
    }

    /// An upstream that accepts the connection and never answers: the cached tag is served once
    /// the tag check's own deadline passed, not after the request timeout (10 minutes here).
    @Test(.timeLimit(.minutes(1))) func aHungUpstreamDoesNotHoldACachedTag() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.other])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.other])
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            var limits = UpstreamLimits()
            limits.headTimeout = .seconds(600)
            limits.readTimeout = .seconds(600)
            let patient = PullThrough(registry: c.registry, service: c.service, limits: limits, now: { c.clock.now })
            upstream.hangHead.withLockedValue { $0 = true }
            defer { upstream.hangHead.withLockedValue { $0 = false } }
            c.clock.advance(3600)
            try await patient.prepareManifest(Self.app, .tag("v1"))
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == 1)
            #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(m))
        }
    }

    @Test func anUpstreamOutageServesWhatIsCached() async throws {
        let upstream = Upstream()
        let m = Self.manifest([Self.other])
        upstream.serve(m, tag: "v1", blobs: [Self.config, Self.other])
        let cache = NIOLockedValueBox<Cache?>(nil)
        try await Self.withUpstream(upstream) { port in
            let c = try await Self.cache(port: port)
            try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
            cache.withLockedValue { $0 = c }
        }
        // The upstream is gone (connection refused), the window is over.
        let c = try #require(cache.withLockedValue { $0 })
        c.clock.advance(3600)
        try await c.pullThrough.prepareManifest(Self.app, .tag("v1"))
        try await c.pullThrough.prepareManifest(Self.app, .digest(Digest.compute(m)))
        try await c.pullThrough.prepareBlob(Self.app, Digest.compute(Self.other))
        #expect(try await c.registry.resolve(Self.app, .tag("v1")) == Digest.compute(m))
        // What was never cached is an error the client can read (502), not a hang or a 500.
        await #expect {
            try await c.pullThrough.prepareManifest(Self.app, .tag("v2"))
        } throws: { ($0 as? RegistryError)?.status == 502 }
    }
}
