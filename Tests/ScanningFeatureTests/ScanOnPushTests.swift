import Backends
import CompressNIO
import Foundation
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Scanning
import Testing
@testable import ScanningFeature

/// A tar stream of regular files (ustar), for layers.
func tar(_ files: [(String, String)]) -> [UInt8] {
    var out: [UInt8] = []
    for (name, content) in files {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, at: Int) { for (k, b) in s.utf8.enumerated() { h[at + k] = b } }
        let size = String(content.utf8.count, radix: 8)
        put(name, at: 0)
        put("0000644\0", at: 100); put("0000000\0", at: 108); put("0000000\0", at: 116)
        put(String(repeating: "0", count: 11 - size.count) + size + "\0", at: 124)
        put("00000000000\0", at: 136)
        h[156] = UInt8(ascii: "0")
        put("ustar\0", at: 257); put("00", at: 263)
        for k in 148..<156 { h[k] = 0x20 }
        let sum = String(h.reduce(0) { $0 + Int($1) }, radix: 8)
        put(String(repeating: "0", count: 6 - sum.count) + sum + "\0 ", at: 148)
        out += h + Array(content.utf8) + [UInt8](repeating: 0, count: (512 - content.utf8.count % 512) % 512)
    }
    return out + [UInt8](repeating: 0, count: 1024)
}

func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
    var b = ByteBuffer(bytes: bytes)
    return Array(try b.compress(with: .gzip()).readableBytesView)
}

func dpkgStatus(_ packages: [(String, String)]) -> String {
    packages.map { "Package: \($0.0)\nStatus: install ok installed\nArchitecture: amd64\nVersion: \($0.1)\n" }.joined(separator: "\n")
}

let osRelease = "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"

/// An embedded registry with the scanning feature over its own store, and pushes for the tests.
struct ScanFixture {
    let registry: Registry
    let store: any ScanStore
    let feature: ScanningFeature

    /// `inlineBlobThreshold` 0: every layer lives in the blob store (else small ones are kept inline).
    let backends: Backends

    init(configuration: ScanConfiguration = .init(), inlineBlobThreshold: Int? = nil, findings: Bool = false) throws {
        let dir = NSTemporaryDirectory() + "berth-scan-" + UUID().uuidString
        let backends = try Backends.embedded(dataDirectory: dir)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var registryConfiguration = RegistryConfiguration()
        if let inlineBlobThreshold { registryConfiguration.inlineBlobThreshold = inlineBlobThreshold }
        registry = Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: registryConfiguration, logger: logger)
        store = backends.metadata
        self.backends = backends
        feature = ScanningFeature(registry: registry, store: backends.metadata, configuration: configuration,
                                  matcher: findings ? FindingMatcher(advisories: backends.metadata, store: backends.metadata, logger: logger) : nil,
                                  logger: logger)
    }

    @discardableResult
    func blob(_ repo: String, _ bytes: [UInt8]) async throws -> Digest {
        let d = Digest.compute(bytes)
        _ = try await registry.putBlob(try RepositoryName(repo), digest: d, contentLength: Int64(bytes.count), body: Chunks(bytes: bytes))
        return d
    }

    /// Pushes an image of `layers` (each a gzip-compressed tar unless given raw); returns its digest.
    @discardableResult
    func image(_ repo: String, tag: String? = nil, layers: [[UInt8]], layerType: String = "application/vnd.oci.image.layer.v1.tar+gzip",
               configType: String = "application/vnd.oci.image.config.v1+json", subject: Digest? = nil) async throws -> Digest {
        var subjectField = ""
        if let subject, let bytes = try await registry.metadata.inlineContent(subject) {
            subjectField = ",\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"\(subject)\",\"size\":\(bytes.count)}"
        }
        let config = Array("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}".utf8)
        let c = try await blob(repo, config)
        var items: [String] = []
        for layer in layers {
            let d = try await blob(repo, layer)
            items.append("{\"mediaType\":\"\(layerType)\",\"digest\":\"\(d)\",\"size\":\(layer.count)}")
        }
        let manifest = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",\
            "config":{"mediaType":"\(configType)","digest":"\(c)","size":\(config.count)},\
            "layers":[\(items.joined(separator: ","))]\(subjectField)}
            """.utf8)
        let d = Digest.compute(manifest)
        _ = try await registry.putManifest(try RepositoryName(repo), reference: tag.map { .tag($0) } ?? .digest(d), bytes: manifest,
                                           contentType: MediaType.ociManifest)
        return d
    }

    func sbomReferrers(_ repo: String, _ subject: Digest) async throws -> [ManifestRecord] {
        try await registry.metadata.referrers(repository: repo, subject: subject)
            .filter { $0.annotations?[SBOMReferrers.generatorAnnotation] != nil }
    }

    func inventory(_ digest: Digest) async throws -> ImageInventory? {
        guard let s = try await store.inventory(manifest: digest), !s.document.isEmpty else { return nil }
        return try ScanDocument.decode(ImageInventory.self, s.document)
    }

    /// Steps the consumer until it has nothing left.
    func drain(_ runner: EventConsumerRunner) async throws {
        for _ in 0..<100 {
            guard case .advanced = try await runner.step() else { return }
        }
        Issue.record("the scan consumer did not run dry")
    }
}

@Suite struct ScanOnPushTests {
    let base: [UInt8]
    let app: [UInt8]

    init() throws {
        base = try gzip(tar([("etc/os-release", osRelease), ("var/lib/dpkg/status", dpkgStatus([("bash", "5.2.15-2+b2"), ("zlib1g", "1:1.2.13.dfsg-1")]))]))
        app = try gzip(tar([("usr/lib/python3/dist-packages/requests-2.28.1.dist-info/METADATA",
                             "Metadata-Version: 2.1\nName: requests\nVersion: 2.28.1\n")]))
    }

    @Test func pushGivesStoredInventoryAndSBOMReferrers() async throws {
        let f = try ScanFixture()
        let image = try await f.image("library/app", tag: "1", layers: [base, app])
        let runner = f.feature.runner()
        try await f.drain(runner)

        let stored = try #require(try await f.store.inventory(manifest: image))
        #expect(stored.status == .complete)
        #expect(stored.layers.count == 2 && stored.catalogerVersion == ScanCatalogers.version)
        let inventory = try #require(try await f.inventory(image))
        #expect(inventory.os?.id == "debian")
        #expect(Set(inventory.packages.map { "\($0.type.rawValue) \($0.name) \($0.version)" })
                == ["deb bash 5.2.15-2+b2", "deb zlib1g 1:1.2.13.dfsg-1", "python requests 2.28.1"])
        // The package index the continuous re-match needs, under the advisory side's keys.
        let withBash = try await f.store.inventories(containing: InventoryPackageKey(ecosystem: "debian", name: "bash"), after: nil, limit: 10)
        #expect(withBash == [image])
        let spelledAsOSV = try await f.store.inventories(containing: InventoryPackageKey(ecosystem: "Debian", name: "bash"), after: nil, limit: 10)
        #expect(spelledAsOSV.isEmpty)
        // Both layers' indexes are stored once per digest.
        for layer in stored.layers {
            let index = try await f.store.layerIndex(layer)
            #expect(index?.complete == true)
        }

        // Two referrers of the image, one per format, each carrying its document as its one layer.
        let referrers = try await f.sbomReferrers("library/app", image)
        #expect(Set(referrers.compactMap(\.artifactType)) == ["application/spdx+json", "application/vnd.cyclonedx+json"])
        let listed = try await f.registry.referrers(try RepositoryName("library/app"), subject: image, artifactType: "application/spdx+json", limit: nil, last: nil)
        #expect(listed.descriptors.count == 1)
        let spdx = try await ScanAPI.sbomDocument(f.feature.inventorier, repository: try RepositoryName("library/app"), digest: image, format: .spdx)
        let json = try JSONSerialization.jsonObject(with: Data(spdx.document.utf8)) as? [String: Any]
        #expect(json?["spdxVersion"] as? String == "SPDX-2.3")
        let names = Set(((json?["packages"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["bash", "zlib1g", "requests"]))

        // The scanner's own pushes are artifacts: recorded as such, never inventoried or given SBOMs.
        for r in referrers {
            let record = try await f.store.inventory(manifest: r.digest)
            #expect(record?.status == .notAnImage)
            let nested = try await f.sbomReferrers("library/app", r.digest)
            #expect(nested.isEmpty)
        }

        // The API view of the inventory.
        let view = try await ScanAPI.inventoryView(f.feature.inventorier, repository: try RepositoryName("library/app"), digest: image)
        #expect(view.status == "complete" && view.packages.count == 3 && view.os?.versionCodename == "bookworm")
        #expect(Set(view.sboms.map(\.format)) == ["spdx", "cyclonedx"])
    }

    @Test func redeliveryIsIdempotent() async throws {
        let f = try ScanFixture()
        let image = try await f.image("library/app", layers: [base])
        let runner = f.feature.runner()
        try await f.drain(runner)
        let before = try await f.sbomReferrers("library/app", image)
        #expect(before.count == 2)
        let eventsBefore = try await f.registry.metadata.latestEventSequence()

        // The same push handed over again (at-least-once delivery), and scanned again directly.
        let pushes = try await f.registry.metadata.events(after: 0, limit: 1000).filter { $0.action == .manifestPush && $0.digest == image.string }
        #expect(pushes.count == 1)
        try await ScanConsumer(inventorier: f.feature.inventorier).handle(pushes, attempt: 1)
        let outcome = try #require(try await f.feature.inventorier.scan(repository: "library/app", digest: image))
        #expect(outcome.sbomsPushed.isEmpty && outcome.layersIndexed.isEmpty)

        let after = try await f.sbomReferrers("library/app", image)
        #expect(Set(after.map(\.digest)) == Set(before.map(\.digest)))
        let eventsAfter = try await f.registry.metadata.latestEventSequence()
        #expect(eventsAfter == eventsBefore)   // nothing pushed again
    }

    @Test func sharedLayerIsIndexedOnce() async throws {
        let f = try ScanFixture(inlineBlobThreshold: 0)
        let first = try await f.image("library/one", layers: [base, app])
        let a = try #require(try await f.feature.inventorier.scan(repository: "library/one", digest: first))
        #expect(a.layersIndexed.count == 2)

        // Another image (another repository) on the same base layer: only its own layer is read.
        let other = try gzip(tar([("usr/lib/node_modules/left-pad/package.json", "{\"name\":\"left-pad\",\"version\":\"1.3.0\"}")]))
        let second = try await f.image("library/two", layers: [base, other])
        let b = try #require(try await f.feature.inventorier.scan(repository: "library/two", digest: second))
        #expect(b.layersIndexed == [Digest.compute(other)])
        let inventory = try #require(try await f.inventory(second))
        #expect(Set(inventory.packages.map(\.name)) == ["bash", "zlib1g", "left-pad"])
    }

    @Test func hostileLayerGivesPartialInventoryAndTheQueueGoesOn() async throws {
        var configuration = ScanConfiguration()
        configuration.layerLimits.maxEntries = 3
        let f = try ScanFixture(configuration: configuration)
        // A corrupt gzip stream after a valid header, and a layer of more entries than allowed.
        let corrupt = Array(try gzip(tar([("etc/os-release", osRelease)])).prefix(30)) + [UInt8](repeating: 0xA5, count: 4000)
        let many = try gzip(tar((0..<10).map { ("f\($0)", "x") }))
        let broken = try await f.image("library/bad", layers: [base, corrupt])
        let tooMany = try await f.image("library/bad", layers: [many])
        let fine = try await f.image("library/good", layers: [app])
        let runner = f.feature.runner()
        try await f.drain(runner)

        let latest = try await f.registry.metadata.latestEventSequence()
        let cursor = try await f.registry.metadata.eventConsumer(named: ScanConsumer.name)?.cursor
        #expect(cursor == latest)
        for d in [broken, tooMany] {
            let record = try #require(try await f.store.inventory(manifest: d))
            #expect(record.status == .partial)
            #expect(record.detail?.isEmpty == false)
        }
        let partial = try #require(try await f.inventory(broken))
        #expect(!partial.complete && Set(partial.packages.map(\.name)) == ["bash", "zlib1g"])
        let good = try await f.store.inventory(manifest: fine)
        #expect(good?.status == .complete)
        // Partial inventories still get their SBOMs (which say they are partial).
        let sboms = try await f.sbomReferrers("library/bad", broken)
        #expect(sboms.count == 2)
    }

    /// A layer that takes longer than `layerTimeLimit` to index is stopped: the image's
    /// inventory is partial and says why, and the queue goes on to the next image (issue 15
    /// item 9: bounded time per layer, never a hang of the scan queue).
    @Test func aLayerOverItsTimeLimitIsStoppedAndTheQueueGoesOn() async throws {
        var configuration = ScanConfiguration()
        configuration.layerTimeLimit = .nanoseconds(1)
        configuration.readChunkBytes = 512
        let f = try ScanFixture(configuration: configuration)
        let slow = try await f.image("library/slow", layers: [base])
        let next = try await f.image("library/next", layers: [app])
        try await f.drain(f.feature.runner())
        let cursor = try await f.registry.metadata.eventConsumer(named: ScanConsumer.name)?.cursor
        #expect(try await cursor == f.registry.metadata.latestEventSequence())
        for d in [slow, next] {
            let record = try #require(try await f.store.inventory(manifest: d))
            #expect(record.status == .partial)
            #expect(record.detail?.contains("took longer than") == true, "\(record.detail ?? "")")
        }
    }

    @Test func artifactsAreRecordedNotInventoried() async throws {
        let f = try ScanFixture()
        let helm = try await f.image("charts/app", layers: [Array("not a tar".utf8)], layerType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                                     configType: "application/vnd.cncf.helm.config.v1+json")
        try await f.drain(f.feature.runner())
        let record = try #require(try await f.store.inventory(manifest: helm))
        #expect(record.status == .notAnImage && record.document.isEmpty)
        let sboms = try await f.sbomReferrers("charts/app", helm)
        #expect(sboms.isEmpty)
    }

    @Test func everyChildOfAnIndexIsInventoried() async throws {
        let f = try ScanFixture()
        let amd = try await f.image("library/multi", layers: [base])
        let arm = try await f.image("library/multi", layers: [app])
        func item(_ d: Digest, _ arch: String) async throws -> String {
            let size = try #require(try await f.registry.metadata.manifest(repository: "library/multi", digest: d)).size
            return "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"\(d)\",\"size\":\(size),\"platform\":{\"os\":\"linux\",\"architecture\":\"\(arch)\"}}"
        }
        let index = Array("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[\(try await item(amd, "amd64")),\(try await item(arm, "arm64"))]}".utf8)
        let indexDigest = Digest.compute(index)
        _ = try await f.registry.putManifest(try RepositoryName("library/multi"), reference: .tag("latest"), bytes: index,
                                             contentType: MediaType.ociIndex)
        // Only the index is scanned here: its children come with it.
        let outcome = try #require(try await f.feature.inventorier.scan(repository: "library/multi", digest: indexDigest))
        #expect(outcome.status == .notAnImage)
        #expect(Set(outcome.children.map(\.manifest)) == [amd, arm] && outcome.children.allSatisfy { $0.status == .complete })
        let view = try await ScanAPI.inventoryView(f.feature.inventorier, repository: try RepositoryName("library/multi"), digest: indexDigest)
        #expect(Set(view.children ?? []) == [amd.string, arm.string])
    }

    @Test func aFailureAfterAGoodScanKeepsTheInventory() async throws {
        // Review: the give-up path replaced a complete inventory with an empty failed record.
        let f = try ScanFixture()
        let image = try await f.image("library/app", layers: [base])
        try await f.drain(f.feature.runner())
        #expect(try await f.store.inventory(manifest: image)?.status == .complete)
        let outcome = try await f.feature.inventorier.record(.failed, image, layers: [], detail: "gave up after 5 attempts: a lock")
        #expect(outcome.status == .complete)
        let kept = try #require(try await f.store.inventory(manifest: image))
        #expect(kept.status == .complete && !kept.document.isEmpty)
    }

    @Test func missingLayerIsAFailedScanAfterRetries() async throws {
        var configuration = ScanConfiguration()
        configuration.maxAttempts = 2
        let f = try ScanFixture(configuration: configuration, inlineBlobThreshold: 0)
        let image = try await f.image("library/app", layers: [base])
        // The layer's bytes disappear from the blob store (a broken backend): the scan fails.
        let layer = Digest.compute(base)
        try await f.registry.blobs.delete(layer)
        let consumer = ScanConsumer(inventorier: f.feature.inventorier)
        let events = try await f.registry.metadata.events(after: 0, limit: 1000).filter { $0.action == .manifestPush }
        await #expect(throws: (any Error).self) { try await consumer.handle(events, attempt: 1) }
        // The last attempt records the failure and goes on.
        try await consumer.handle(events, attempt: 2)
        let record = try #require(try await f.store.inventory(manifest: image))
        #expect(record.status == .failed && record.detail?.contains("gave up after 2 attempts") == true)
    }
}
