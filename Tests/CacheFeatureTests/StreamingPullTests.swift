import Access
import AsyncHTTPClient
import Backends
import struct Crypto.SymmetricKey
import Foundation
import HTTPAPI
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
@testable import CacheFeature

/// A blob missed through the cache is served while it streams from upstream, over real HTTP: a
/// scripted upstream sends half the blob and holds the rest until the test has read that half
/// through Berth's response (streaming proved without timings); a tampered blob never reaches a
/// client as a complete response and is not stored; a client that leaves does not stop the fill;
/// concurrent pulls fetch once.
@Suite struct StreamingPullTests {
    /// 300 KB of varied bytes: several chunks, above the inline limit.
    static let big: [UInt8] = (0..<300_000).map { UInt8(varying: $0) }
    static var bigDigest: Digest { Digest.compute(big) }
    static let owner = "Basic " + Data("owner:owner-pw".utf8).base64EncodedString()

    struct Served {
        let registry: Registry
        let access: AccessControl
        let pullThrough: PullThrough
        let port: Int
        let http: HTTPClient
        func blobURL(_ digest: Digest) -> String { "http://127.0.0.1:\(port)/v2/mirror/app/blobs/\(digest)" }
        func get(_ digest: Digest) -> HTTPClientRequest {
            var request = HTTPClientRequest(url: blobURL(digest))
            request.headers.add(name: "Authorization", value: StreamingPullTests.owner)
            return request
        }
    }

    /// Berth (live, on loopback) with the rule `127.0.0.1:<upstream>/lib/*` → `mirror/*`, and an HTTP client.
    static func withBerth(_ upstream: PullThroughTests.Upstream, now: @escaping @Sendable () -> Date = Date.init,
                          _ body: @Sendable (Served) async throws -> Void) async throws {
        try await PullThroughTests.withUpstream(upstream) { upstreamPort in
            let (registry, access, quiet) = try await PullThroughTests.registryWithOwner("berth-cache-stream-")
            let service = CacheService(store: registry.metadata as! any CacheRuleStore, sealingKey: SymmetricKey(size: .bits256),
                                       policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            _ = try await service.createRule(name: "lib", source: "127.0.0.1:\(upstreamPort)/lib/*", target: "mirror/*", credentialSet: nil,
                                             plainHTTP: true, tagFreshnessSeconds: 60, createdBy: "owner")
            let pullThrough = PullThrough(registry: registry, service: service, logger: quiet, now: now)
            let app = try await BerthServer.makeApplication(registry: registry, access: access,
                                                            features: [CacheFeature(service: service, pullThrough: pullThrough)],
                                                            host: "127.0.0.1", port: 0, serviceName: "berth-test", logger: quiet)
            try await app.test(.live) { client in
                let http = HTTPClient(eventLoopGroupProvider: .singleton)
                do {
                    try await body(Served(registry: registry, access: access, pullThrough: pullThrough, port: try #require(client.port),
                                          http: http))
                } catch {
                    try? await http.shutdown()
                    throw error
                }
                try await http.shutdown()
            }
        }
    }

    /// Polls (generously: this machine is shared) until `condition` holds.
    static func eventually(_ condition: @Sendable () async -> Bool) async throws -> Bool {
        for _ in 0..<6000 {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Review L2: a fill the repository cannot take (a full quota, a write lock) is refused with
    /// a clear 403 before the response begins, not a 200 cut short; nothing is stored.
    @Test func aFillTheRepositoryCannotTakeIsRefusedBeforeTheResponseBegins() async throws {
        let upstream = PullThroughTests.Upstream()
        let small = Array(repeating: UInt8(7), count: 70_000)
        upstream.blobs.withLockedValue {
            $0[Self.bigDigest] = Self.big
            $0[Digest.compute(small)] = small
        }
        try await Self.withBerth(upstream) { berth in
            _ = try await berth.registry.createQuota(QuotaLimit(name: "mirrors", prefix: "mirror/", limitBytes: 100_000))
            let full = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(120))
            let body = String(buffer: try await full.body.collect(upTo: 1 << 20))
            #expect(full.status == .forbidden && body.contains("DENIED") && body.contains("mirrors"))
            try await berth.registry.deleteQuota(name: "mirrors")
            // another blob fills (and makes the repository), then the repository is write-locked
            let other = try await berth.http.execute(berth.get(Digest.compute(small)), timeout: .seconds(120))
            let otherBytes = Array(try await other.body.collect(upTo: 1 << 20).readableBytesView)
            #expect(other.status == .ok && otherBytes == small)
            #expect(try await Self.eventually { (try? await berth.registry.blobSize(PullThroughTests.app, Digest.compute(small))) != nil })
            _ = try await berth.registry.updateLock(PullThroughTests.app, tag: nil, digest: nil, LockChange(writeEnabled: false))
            // (the negative cache remembers only upstream 404s: asked again at once)
            let locked = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(120))
            let lockedBody = String(buffer: try await locked.body.collect(upTo: 1 << 20))
            #expect(locked.status == .forbidden && lockedBody.contains("DENIED"))
            #expect(try await berth.registry.blobs.size(of: Self.bigDigest) == nil)
            _ = try await berth.registry.updateLock(PullThroughTests.app, tag: nil, digest: nil, LockChange(writeEnabled: true))
            let served = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(120))
            let servedBytes = Array(try await served.body.collect(upTo: 1 << 20).readableBytesView)
            #expect(served.status == .ok && servedBytes == Self.big)
        }
    }

    /// Issue 17: a pull of a missing tag is answered with the upstream's manifest before the image
    /// is stored (its layer is still held upstream), the image is filled behind it and stored; its
    /// layer is fetched once. With quarantine on, nothing is served before it is stored and judged.
    @Test func aMissedManifestIsAnsweredBeforeItsImageIsStoredAndTheImageFollows() async throws {
        let upstream = PullThroughTests.Upstream()
        let m = PullThroughTests.manifest([Self.big])
        upstream.serve(m, tag: "v1", blobs: [PullThroughTests.config, Self.big])
        upstream.held.withLockedValue { _ = $0.insert(Self.bigDigest) }
        try await Self.withBerth(upstream) { berth in
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(berth.port)/v2/mirror/app/manifests/v1")
            request.headers.add(name: "Authorization", value: Self.owner)
            request.headers.add(name: "Accept", value: MediaType.ociManifest)
            let response = try await berth.http.execute(request, timeout: .seconds(120))
            let body = Array(try await response.body.collect(upTo: 1 << 20).readableBytesView)
            #expect(response.status == .ok && body == m)
            #expect(response.headers.first(name: "Docker-Content-Digest") == Digest.compute(m).string)
            // The layer is still held upstream: the image is not stored yet.
            #expect(upstream.released.withLockedValue { !$0 })
            #expect((try? await berth.registry.resolve(PullThroughTests.app, .tag("v1"))) == nil)
            #expect(try await berth.registry.blobs.size(of: Self.bigDigest) == nil)
            upstream.released.withLockedValue { $0 = true }
            let layer = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
            let layerBytes = Array(try await layer.body.collect(upTo: 1 << 20).readableBytesView)
            #expect(layer.status == .ok && layerBytes == Self.big)
            #expect(try await Self.eventually {
                (try? await berth.registry.resolve(PullThroughTests.app, .tag("v1"))) == Digest.compute(m)
            })
            #expect(upstream.count("/v2/lib/app/blobs/\(Self.bigDigest)") == 1)
            #expect(upstream.count("/v2/lib/app/manifests/v1") == 1)
            // Review: the first pull, answered before the manifest was stored, counts once it is
            // (a store ignores pulls of manifests it does not hold: it was dropped).
            #expect(try await Self.eventually {
                _ = try? await berth.registry.flushPullTimes()
                let times = try? await berth.registry.metadata.pullTimes(repository: PullThroughTests.app.value)
                return times?.manifests[Digest.compute(m).string] != nil && times?.tags["v1"] != nil
            })

            // Review: a new tag naming a manifest stored here with a Failed verdict is answered as
            // stored, with that verdict (quarantine is off, a Failed verdict stays in force): refused.
            try await berth.registry.setQuarantine(PullThroughTests.app, Digest.compute(m), state: .failed, reason: "bad image")
            upstream.serve(m, tag: "v3", blobs: [])
            let bootstrap = Actor(name: "owner", address: "-")
            let (_, password) = try await berth.access.createIdentity(bootstrap, name: "reader")
            _ = try await berth.access.assignRole(bootstrap, assignee: "reader", role: "Pull", scope: "mirror/*")
            var third = HTTPClientRequest(url: "http://127.0.0.1:\(berth.port)/v2/mirror/app/manifests/v3")
            third.headers.add(name: "Authorization", value: "Basic " + Data("reader:\(try #require(password))".utf8).base64EncodedString())
            let failed = try await berth.http.execute(third, timeout: .seconds(120))
            let failedText = String(buffer: try await failed.body.collect(upTo: 1 << 20))
            #expect(failed.status == .forbidden && failedText.contains("Failed"))
            // ... from the one upstream answer (review: deferring to the stored path asked again).
            #expect(upstream.count("/v2/lib/app/manifests/v3") == 1)

            // Quarantine on: a miss is stored first, as Pending, and only then answered (to the
            // owner, who may read past quarantine; others are refused by the chain as for any push).
            _ = try await berth.registry.updateQuarantine(QuarantinePolicy(enabled: true, grandfatherExisting: true), dryRun: false)
            let other = PullThroughTests.manifest([PullThroughTests.other])
            upstream.serve(other, tag: "v2", blobs: [PullThroughTests.config, PullThroughTests.other])
            var second = HTTPClientRequest(url: "http://127.0.0.1:\(berth.port)/v2/mirror/app/manifests/v2")
            second.headers.add(name: "Authorization", value: Self.owner)
            let answered = try await berth.http.execute(second, timeout: .seconds(120))
            let answeredBytes = Array(try await answered.body.collect(upTo: 1 << 20).readableBytesView)
            #expect(answered.status == .ok && answeredBytes == other)
            let stored = try await berth.registry.manifest(PullThroughTests.app, .tag("v2"))
            #expect(stored.digest == Digest.compute(other) && stored.quarantineState == .pending)
            // Review: the manifest fetched for the early answer is the one stored; upstream is
            // not asked for it again by the stored path.
            #expect(upstream.count("/v2/lib/app/manifests/v2") == 1)
        }
    }

    /// Issue 17: a cached tag that moved upstream, once its freshness window is over, is answered
    /// with the upstream's new manifest before the new image is stored (its layer still held
    /// upstream); the cached image stays tagged until the fill stores the new one, reads meanwhile
    /// get the new manifest without asking upstream again. A tag that may not move (a write lock)
    /// keeps being answered with the cached image.
    @Test func aCachedTagThatMovedUpstreamIsAnsweredBeforeItsNewImageIsStored() async throws {
        let upstream = PullThroughTests.Upstream()
        let first = PullThroughTests.manifest([PullThroughTests.other])
        upstream.serve(first, tag: "v1", blobs: [PullThroughTests.config, PullThroughTests.other])
        let clock = TestClock()
        try await Self.withBerth(upstream, now: { clock.now }) { berth in
            func get(_ reference: String = "v1") async throws -> (UInt, [UInt8], String?) {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(berth.port)/v2/mirror/app/manifests/\(reference)")
                request.headers.add(name: "Authorization", value: Self.owner)
                request.headers.add(name: "Accept", value: MediaType.ociManifest)
                let response = try await berth.http.execute(request, timeout: .seconds(120))
                let body = Array(try await response.body.collect(upTo: 1 << 20).readableBytesView)
                return (response.status.code, body, response.headers.first(name: "Docker-Content-Digest"))
            }
            let cachedFirst = try await get()
            #expect(cachedFirst.0 == 200 && cachedFirst.1 == first)
            #expect(try await Self.eventually {
                (try? await berth.registry.resolve(PullThroughTests.app, .tag("v1"))) == Digest.compute(first)
            })
            let second = PullThroughTests.manifest([Self.big])
            upstream.serve(second, tag: "v1", blobs: [Self.big])
            upstream.held.withLockedValue { _ = $0.insert(Self.bigDigest) }
            // Within the window: the cached image, upstream not asked.
            clock.advance(30)
            #expect(try await get().1 == first)
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == 0)
            // After it: the new manifest at once, while its layer is still held upstream.
            clock.advance(31)
            let moved = try await get()
            #expect(moved.0 == 200 && moved.1 == second && moved.2 == Digest.compute(second).string)
            #expect(upstream.released.withLockedValue { !$0 })
            #expect(try await berth.registry.resolve(PullThroughTests.app, .tag("v1")) == Digest.compute(first))
            // A second read during the fill: the same answer, from the fill, upstream not asked again.
            #expect(try await get().1 == second)
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == 1)
            #expect(upstream.count("/v2/lib/app/manifests/v1") == 2)
            // A read by digest (what a client does next): the same answer, from the same fill.
            let asked = upstream.manifestGets
            let byDigest = try await get(Digest.compute(second).string)
            #expect(byDigest.0 == 200 && byDigest.1 == second)
            #expect(upstream.manifestGets == asked)
            upstream.released.withLockedValue { $0 = true }
            let layer = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
            let layerBytes = Array(try await layer.body.collect(upTo: 1 << 20).readableBytesView)
            #expect(layer.status == .ok && layerBytes == Self.big)
            #expect(try await Self.eventually {
                (try? await berth.registry.resolve(PullThroughTests.app, .tag("v1"))) == Digest.compute(second)
            })
            #expect(upstream.count("/v2/lib/app/blobs/\(Self.bigDigest)") == 1)

            // A write-locked tag does not move: the cached image is answered, nothing filled.
            _ = try await berth.registry.updateLock(PullThroughTests.app, tag: "v1", digest: nil, LockChange(writeEnabled: false))
            let third = PullThroughTests.manifest([PullThroughTests.layer])
            upstream.serve(third, tag: "v1", blobs: [PullThroughTests.layer])
            clock.advance(61)
            let locked = try await get()
            #expect(locked.0 == 200 && locked.1 == second)
            #expect(try await berth.registry.resolve(PullThroughTests.app, .tag("v1")) == Digest.compute(second))
            #expect(upstream.count("/v2/lib/app/blobs/\(Digest.compute(PullThroughTests.layer))") == 0)
            // ... and asked again only after the next window.
            let heads = upstream.count("HEAD /v2/lib/app/manifests/v1")
            #expect(try await get().1 == second)
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == heads)
        }
    }

    /// Review: a moved tag whose new image cannot be filled (its layer is gone upstream) is not
    /// asked and answered anew on every read: once the fill failed, the cached image is served
    /// until the window ends.
    @Test func aMovedTagWhoseFillFailsServesTheCachedImageForTheWindow() async throws {
        let upstream = PullThroughTests.Upstream()
        let first = PullThroughTests.manifest([PullThroughTests.other])
        upstream.serve(first, tag: "v1", blobs: [PullThroughTests.config, PullThroughTests.other])
        let clock = TestClock()
        try await Self.withBerth(upstream, now: { clock.now }) { berth in
            try await berth.pullThrough.prepareManifest(PullThroughTests.app, .tag("v1"))
            let broken = PullThroughTests.manifest([Self.big])   // its layer is never served upstream
            upstream.serve(broken, tag: "v1", blobs: [])
            clock.advance(61)
            let moved = try #require(try await berth.pullThrough.provisionalManifest(PullThroughTests.app, .tag("v1")))
            #expect(moved.digest == Digest.compute(broken))
            // The fill fails in the background; from then on the cached image, upstream not asked.
            #expect(try await Self.eventually {
                do { return try await berth.pullThrough.provisionalManifest(PullThroughTests.app, .tag("v1")) == nil } catch { return false }
            })
            let asked = upstream.count("HEAD /v2/lib/app/manifests/v1")
            for _ in 0..<3 {
                let answer = try await berth.pullThrough.provisionalManifest(PullThroughTests.app, .tag("v1"))
                #expect(answer == nil)
                try await berth.pullThrough.prepareManifest(PullThroughTests.app, .tag("v1"))
            }
            #expect(upstream.count("HEAD /v2/lib/app/manifests/v1") == asked)
            #expect(try await berth.registry.resolve(PullThroughTests.app, .tag("v1")) == Digest.compute(first))
        }
    }

    @Test func aMissedBlobIsServedWhileItStreamsAndStored() async throws {
        let upstream = PullThroughTests.Upstream()
        upstream.blobs.withLockedValue { $0[Self.bigDigest] = Self.big }
        upstream.held.withLockedValue { _ = $0.insert(Self.bigDigest) }
        try await Self.withBerth(upstream) { berth in
            let response = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
            #expect(response.status == .ok)
            #expect(response.headers.first(name: "Content-Length") == String(Self.big.count))
            #expect(response.headers.first(name: "Docker-Content-Digest") == Self.bigDigest.string)
            var received: [UInt8] = []
            var heldWhileReceived = 0
            for try await chunk in response.body {
                received += chunk.readableBytesView
                // Half has arrived through Berth while the upstream still holds the rest: streamed.
                if received.count >= Self.big.count / 2, !upstream.released.withLockedValue({ $0 }) {
                    heldWhileReceived = received.count
                    // Not yet stored: only a verified whole blob is.
                    #expect(try await berth.registry.blobs.size(of: Self.bigDigest) == nil)
                    upstream.released.withLockedValue { $0 = true }
                }
            }
            #expect(heldWhileReceived >= Self.big.count / 2 && heldWhileReceived < Self.big.count)
            #expect(received == Self.big)
            #expect(try await Self.eventually { (try? await berth.registry.blobSize(PullThroughTests.app, Self.bigDigest)) == Int64(Self.big.count) })
            // Read again: from the store, upstream not asked.
            let again = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(120))
            #expect(Array(try await again.body.collect(upTo: 1 << 20).readableBytesView) == Self.big)
            #expect(upstream.blobGets == 1)
        }
    }

    @Test func aTamperedBlobIsCutShortAndNotStored() async throws {
        let upstream = PullThroughTests.Upstream()
        // Other bytes of the same length: the mismatch shows only at the end.
        upstream.blobs.withLockedValue { $0[Self.bigDigest] = Self.big.map { $0 ^ 0x5a } }
        try await Self.withBerth(upstream) { berth in
            var received = 0
            var completed = false
            do {
                let response = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
                for try await chunk in response.body { received += chunk.readableBytes }
                completed = true
            } catch {
                // The connection closed before the declared length: what a client must see.
            }
            #expect(!completed && received < Self.big.count, "received \(received) bytes, completed: \(completed)")
            let stored = try await berth.registry.blobs.size(of: Self.bigDigest)
            #expect(stored == nil)
            await #expect(throws: (any Error).self) { _ = try await berth.registry.blobSize(PullThroughTests.app, Self.bigDigest) }
            // Once the fill ended, no upload is left behind.
            let clean = try await Self.eventually { (try? await berth.registry.blobs.openUploadCount()) == 0 }
            #expect(clean)
        }
    }

    @Test func aClientThatLeavesDoesNotStopTheFill() async throws {
        let upstream = PullThroughTests.Upstream()
        upstream.blobs.withLockedValue { $0[Self.bigDigest] = Self.big }
        upstream.held.withLockedValue { _ = $0.insert(Self.bigDigest) }
        try await Self.withBerth(upstream) { berth in
            let leaving = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let response = try await leaving.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
                var received = 0
                for try await chunk in response.body {
                    received += chunk.readableBytes
                    if received >= Self.big.count / 2 { break }
                }
                #expect(received >= Self.big.count / 2)
            } catch {
                Issue.record("the first half did not arrive: \(error)")
            }
            try await leaving.shutdown()   // the connection is gone
            upstream.released.withLockedValue { $0 = true }
            #expect(try await Self.eventually { (try? await berth.registry.blobSize(PullThroughTests.app, Self.bigDigest)) == Int64(Self.big.count) })
            #expect(upstream.blobGets == 1)
        }
    }

    @Test func concurrentPullsOfAStreamingBlobFetchItOnce() async throws {
        let upstream = PullThroughTests.Upstream()
        upstream.blobs.withLockedValue { $0[Self.bigDigest] = Self.big }
        upstream.held.withLockedValue { _ = $0.insert(Self.bigDigest) }
        try await Self.withBerth(upstream) { berth in
            let first = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
            #expect(first.status == .ok)
            // Others ask while the first streams: they wait for the stored copy (the same fetch).
            let others = 3
            try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for _ in 0..<others {
                    group.addTask {
                        let r = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
                        return Array(try await r.body.collect(upTo: 1 << 20).readableBytesView)
                    }
                }
                #expect(try await Self.eventually { berth.pullThrough.fetchCallers("b:mirror/app@\(Self.bigDigest)") >= 1 + others })
                upstream.released.withLockedValue { $0 = true }
                #expect(Array(try await first.body.collect(upTo: 1 << 20).readableBytesView) == Self.big)
                for try await got in group { #expect(got == Self.big) }
            }
            #expect(upstream.blobGets == 1)
        }
    }

    @Test func aBlobWithoutALengthIsFilledFirstThenServed() async throws {
        let upstream = PullThroughTests.Upstream()
        upstream.blobs.withLockedValue { $0[Self.bigDigest] = Self.big }
        upstream.unsized.withLockedValue { _ = $0.insert(Self.bigDigest) }
        try await Self.withBerth(upstream) { berth in
            let response = try await berth.http.execute(berth.get(Self.bigDigest), timeout: .seconds(180))
            #expect(response.status == .ok)
            #expect(Array(try await response.body.collect(upTo: 1 << 20).readableBytesView) == Self.big)
            #expect(try await berth.registry.blobSize(PullThroughTests.app, Self.bigDigest) == Int64(Self.big.count))
            // A Range read of a missing blob is answered after the fill too.
            let other = Array("ranged".utf8)
            upstream.blobs.withLockedValue { $0[Digest.compute(other)] = other }
            var ranged = berth.get(Digest.compute(other))
            ranged.headers.add(name: "Range", value: "bytes=1-3")
            let part = try await berth.http.execute(ranged, timeout: .seconds(120))
            #expect(part.status == .partialContent)
            #expect(String(buffer: try await part.body.collect(upTo: 1024)) == "ang")
        }
    }
}

extension UInt8 {
    /// A byte that varies along a sequence (not a constant pattern a truncation could hide in).
    init(varying n: Int) { self = UInt8(truncatingIfNeeded: (n &* 2_654_435_761) >> 13) }
}
