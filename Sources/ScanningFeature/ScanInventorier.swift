import CompressNIO
import Foundation
import HTTPAPI
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Scanning

/// How the scanner bounds its work on one layer and what it stores.
public struct ScanConfiguration: Sendable {
    /// The bounds per layer (decompressed bytes, entries, file sizes, time, …).
    public var layerLimits = ScanLimits()
    /// Wall time one layer may take to index (`ScanLimits.maxLayerTime`).
    public var layerTimeLimit: Duration {
        get { layerLimits.maxLayerTime }
        set { layerLimits.maxLayerTime = newValue }
    }
    /// Bytes read from the blob store per request while a layer streams.
    public var readChunkBytes: Int64 = 1 << 20
    /// Largest stored (compressed) layer index; a larger one keeps its files of interest and
    /// whiteouts but not the list of every path (and is marked partial).
    public var maxStoredIndexBytes = 16 << 20
    /// Largest stored (compressed) inventory.
    public var maxStoredInventoryBytes = 16 << 20
    /// Tries at one pushed manifest before it is recorded as failed and the consumer goes on.
    public var maxAttempts = 5
    /// Push SPDX and CycloneDX documents as referrers of each inventoried image.
    public var pushSBOMs = true

    public init() {}
}

/// The version of what writes layer indexes and inventories: a stored record of another version
/// is made again (so a cataloger change re-indexes).
public enum ScanCatalogers {
    public static var version: String { "\(BerthVersion.string)/index-\(LayerIndex.currentFormat)" }
}

/// Stored documents: JSON, gzip-compressed, decoded under a bound.
enum ScanDocument {
    static let maxDecodedBytes = 512 << 20

    static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var json = ByteBuffer(data: try encoder.encode(value))
        let compressed = try json.compress(with: .gzip())
        return Array(compressed.readableBytesView)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        var buffer = ByteBuffer(bytes: bytes)
        let json = try buffer.decompress(with: .gzip(), maxSize: maxDecodedBytes)
        return try JSONDecoder().decode(T.self, from: Data(json.readableBytesView))
    }
}

/// The parts of a manifest the scanner reads (the registry validated it at push).
struct ScannedManifest: Decodable {
    struct Item: Decodable {
        var mediaType: String?
        var digest: String
        var size: Int64
        var platform: Platform?
        var artifactType: String?
    }
    struct Platform: Decodable { var os: String?; var architecture: String? }
    var mediaType: String?
    var artifactType: String?
    var config: Item?
    var layers: [Item]?
    var manifests: [Item]?
    var subject: Item?

    static let imageConfigTypes: Set<String> = [
        "application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json",
    ]

    /// Why this is not a container image the scanner can inventory, or nil when it is one. A
    /// `subject` alone does not make a manifest an artifact (review, M3: adding a `subject` to a
    /// runnable image exempted it from scanning and from the pull gate).
    var notAnImage: String? {
        guard let reason = notAnImageIgnoringSubject else { return nil }
        if let subject, manifests == nil { return "a referrer of \(subject.digest) (\(reason))" }
        return reason
    }

    /// Whether a client can run it: an image, or an index (of images).
    var isRunnable: Bool { manifests != nil || notAnImageIgnoringSubject == nil }

    private var notAnImageIgnoringSubject: String? {
        if let manifests { return "an index of \(manifests.count) manifest(s); each image in it is inventoried on its own" }
        if let artifactType { return "an artifact (\(artifactType.prefix(100)))" }
        guard let config else { return "no config" }
        guard Self.imageConfigTypes.contains(config.mediaType ?? "") else {
            return "an artifact (config \(config.mediaType?.prefix(100) ?? "without a media type"))"
        }
        for layer in layers ?? [] where !(layer.mediaType ?? "").contains(".tar") {
            return "an artifact (layer \(layer.mediaType?.prefix(100) ?? "without a media type"))"
        }
        return nil
    }
}

/// What inventorying one pushed manifest did.
public struct ScanOutcome: Sendable, Equatable {
    public var manifest: Digest
    public var status: InventoryStatus
    /// Layers indexed now (those without a stored index); the others were read from the store.
    public var layersIndexed: [Digest]
    /// Referrer manifests pushed now (nil when none were due).
    public var sbomsPushed: [Digest]
    /// Image manifests of an index, inventoried with it.
    public var children: [ScanOutcome]
    /// Findings stored for the image now (nil when not matched: no matcher, or not an image).
    public var findings: Int? = nil
}

/// Inventories pushed manifests: each layer indexed once per digest (streamed from the blob store,
/// under `ScanConfiguration`'s bounds), the indexes merged, the inventory stored with its package
/// keys, and the SBOMs pushed as referrers.
public struct ScanInventorier: Sendable {
    public let registry: Registry
    public let store: any ScanStore
    public let configuration: ScanConfiguration
    /// Matches each inventory against the advisory database (nil: inventories only).
    public let matcher: FindingMatcher?
    let logger: Logger

    public init(registry: Registry, store: any ScanStore, configuration: ScanConfiguration = .init(), matcher: FindingMatcher? = nil,
                logger: Logger = Logger(label: "berth.scan")) {
        self.registry = registry
        self.store = store
        self.configuration = configuration
        self.matcher = matcher
        self.logger = logger
    }

    /// Inventories `digest` as pushed to `repository` (an index: its image children too). Nil when
    /// the manifest is no longer there.
    @discardableResult
    public func scan(repository: String, digest: Digest, depth: Int = 0) async throws -> ScanOutcome? {
        guard let record = try await registry.metadata.manifest(repository: repository, digest: digest),
              let bytes = try await registry.metadata.inlineContent(digest) else { return nil }
        let parsed: ScannedManifest
        do {
            parsed = try JSONDecoder().decode(ScannedManifest.self, from: Data(bytes))
        } catch {
            return try await self.record(.failed, digest, layers: [], detail: "the manifest does not parse")
        }
        if let reason = parsed.notAnImage {
            var children: [ScanOutcome] = []
            if let manifests = parsed.manifests, depth < 2 {
                for child in manifests {
                    if child.platform?.os == "unknown" || child.platform?.architecture == "unknown" { continue }
                    guard let d = try? Digest(parsing: child.digest) else { continue }
                    if let outcome = try await scan(repository: repository, digest: d, depth: depth + 1) { children.append(outcome) }
                }
            }
            if let existing = try await store.inventory(manifest: digest), existing.status == .notAnImage,
               existing.catalogerVersion == ScanCatalogers.version {
                return ScanOutcome(manifest: digest, status: .notAnImage, layersIndexed: [], sbomsPushed: [], children: children)
            }
            var outcome = try await self.record(.notAnImage, digest, layers: [], detail: reason)
            outcome.children = children
            return outcome
        }
        let layers = (parsed.layers ?? []).compactMap { try? Digest(parsing: $0.digest) }
        guard layers.count == (parsed.layers ?? []).count else {
            return try await self.record(.failed, digest, layers: [], detail: "a layer digest does not parse")
        }
        var inventory: ImageInventory
        var indexed: [Digest] = []
        var stored = try await store.inventory(manifest: digest)
        if let s = stored, s.catalogerVersion == ScanCatalogers.version, s.status == .complete || s.status == .partial,
           let decoded = try? ScanDocument.decode(ImageInventory.self, s.document) {
            inventory = decoded
        } else {
            var indexes: [LayerIndex] = []
            for (k, layer) in layers.enumerated() {
                let item = parsed.layers![k]
                switch try await layerIndex(repository: repository, layer, mediaType: item.mediaType) {
                case let .index(index, fresh):
                    indexes.append(index)
                    if fresh { indexed.append(layer) }
                case let .missing(reason):
                    return try await self.record(.failed, digest, layers: layers, detail: "layer \(k + 1) (\(layer)): \(reason)",
                                                 indexed: indexed)
                }
            }
            inventory = ImageInventory(layers: indexes)
            let createdAt = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
            var document = try ScanDocument.encode(inventory)
            while document.count > configuration.maxStoredInventoryBytes, !inventory.packages.isEmpty {
                let kept = inventory.packages.count / 2
                inventory.problems.append(InventoryProblem(path: nil, reason:
                    "inventory over \(configuration.maxStoredInventoryBytes) bytes stored; \(inventory.packages.count - kept) package(s) left out"))
                inventory.packages = Array(inventory.packages.prefix(kept))
                inventory.complete = false
                document = try ScanDocument.encode(inventory)
            }
            let status: InventoryStatus = inventory.complete ? .complete : .partial
            let detail = inventory.complete ? nil : inventory.problems.prefix(3).map(\.description).joined(separator: "; ").prefix(1000)
            let record = StoredInventory(manifest: digest, status: status, layers: layers, catalogerVersion: ScanCatalogers.version,
                                         document: document, detail: detail.map(String.init), createdAt: createdAt)
            try await store.putInventory(record, packages: Self.packageKeys(inventory))
            stored = record
        }
        var findings: Int?
        if let matcher {
            // After the inventory, before the SBOMs: a failure here is retried like the inventory's
            // (which is stored by now, so a retry reads no layer).
            findings = try await matcher.match(manifest: digest, inventory: inventory).findings.count
        }
        var pushed: [Digest] = []
        if configuration.pushSBOMs, let stored {
            // The SBOMs are derived from the stored inventory: a push the repository refuses (a
            // write lock, a quota) is logged, not retried until the queue gives up and records the
            // image as failed (review: that stalled the queue and then erased a good inventory).
            do {
                pushed = try await SBOMReferrers(registry: registry, logger: logger)
                    .ensure(repository: repository, subject: record, inventory: inventory, createdAt: stored.createdAt)
            } catch {
                logger.warning("SBOM referrers not pushed", metadata: ["repository": "\(repository)", "manifest": "\(digest)",
                                                                       "reason": "\(String(describing: error).prefix(300))"])
            }
        }
        return ScanOutcome(manifest: digest, status: stored?.status ?? .partial, layersIndexed: indexed, sbomsPushed: pushed, children: [],
                           findings: findings)
    }

    /// Records a manifest that gave no inventory (not an image, or failed).
    func record(_ status: InventoryStatus, _ digest: Digest, layers: [Digest], detail: String,
                indexed: [Digest] = []) async throws -> ScanOutcome {
        if status == .failed, let kept = try await store.inventory(manifest: digest), kept.status == .complete || kept.status == .partial {
            // A later failure (a re-delivery, a second push of the same image) never erases an inventory.
            logger.warning("scan failed; the stored inventory is kept", metadata: ["manifest": "\(digest)", "reason": "\(detail.prefix(300))"])
            return ScanOutcome(manifest: digest, status: kept.status, layersIndexed: indexed, sbomsPushed: [], children: [])
        }
        try await store.putInventory(StoredInventory(manifest: digest, status: status, layers: layers,
                                                     catalogerVersion: ScanCatalogers.version, document: [],
                                                     detail: String(detail.prefix(1000)), createdAt: Date()), packages: [])
        if status == .failed {
            logger.warning("scan failed", metadata: ["manifest": "\(digest)", "reason": "\(detail.prefix(300))"])
        }
        return ScanOutcome(manifest: digest, status: status, layersIndexed: indexed, sbomsPushed: [], children: [])
    }

    /// The package keys advisories are looked up by (`AdvisoryIndex.lookupKeys(for:)`, built on the
    /// function the advisory side stores its keys with): a distribution package's source package
    /// (an rpm package's binary and source names both), other packages' normalised names.
    static func packageKeys(_ inventory: ImageInventory) -> [InventoryPackageKey] {
        AdvisoryIndex.packageKeys(of: inventory.installedPackages()).map { InventoryPackageKey(ecosystem: $0.ecosystem, name: $0.name) }
    }

    enum LayerLookup { case index(LayerIndex, fresh: Bool), missing(String) }

    /// The layer's stored index (when of this version), else the layer streamed and indexed now and stored.
    func layerIndex(repository: String, _ layer: Digest, mediaType: String?) async throws -> LayerLookup {
        if let stored = try await store.layerIndex(layer), stored.format == LayerIndex.currentFormat,
           stored.catalogerVersion == ScanCatalogers.version,
           let index = try? ScanDocument.decode(LayerIndex.self, stored.document) {
            return .index(index, fresh: false)
        }
        guard let size = try await registry.metadata.linkedBlobSize(repository: repository, digest: layer) else {
            return .missing("not stored in the repository")
        }
        var index: LayerIndex
        let stop = StopFlag()
        do {
            index = try await LayerWalker(limits: configuration.layerLimits).index(
                LayerChunks(read: { range in try await self.read(layer, size: size, range: range) }, size: size,
                            chunk: configuration.readChunkBytes, deadline: ContinuousClock.now + configuration.layerTimeLimit, stop: stop),
                mediaType: mediaType)
        } catch let e as LayerWalkError {
            return .missing("cannot be read: \(e)")
        }
        if stop.stopped {
            index.complete = false
            index.problems.append(InventoryProblem(path: nil, reason: "indexing took longer than \(configuration.layerTimeLimit) (limit); stopped"))
        }
        var document = try ScanDocument.encode(index)
        if document.count > configuration.maxStoredIndexBytes {
            index.paths = []
            index.directories = []
            index.complete = false
            index.problems.append(InventoryProblem(path: nil, reason:
                "index over \(configuration.maxStoredIndexBytes) bytes stored; the layer's list of paths is not kept"))
            document = try ScanDocument.encode(index)
        }
        if document.count > configuration.maxStoredIndexBytes {
            return .missing("its index is over \(configuration.maxStoredIndexBytes) bytes even without its paths")
        }
        try await store.putLayerIndex(StoredLayerIndex(digest: layer, format: index.format, catalogerVersion: ScanCatalogers.version,
                                                       complete: index.complete, document: document, indexedAt: Date()))
        return .index(index, fresh: true)
    }

    /// One range of a blob: from the metadata store when it is kept inline, else from the blob store.
    func read(_ digest: Digest, size: Int64, range: Range<Int64>) async throws -> ByteBuffer {
        try await Self.read(registry, digest, size: size, range: range)
    }

    static func read(_ registry: Registry, _ digest: Digest, size: Int64, range: Range<Int64>) async throws -> ByteBuffer {
        var inline = registry.keepsInline(size: size)
        if !inline { inline = try await registry.blobs.size(of: digest) == nil }
        if inline {
            guard let bytes = try await registry.metadata.inlineContent(digest), Int64(bytes.count) >= range.upperBound else {
                throw RegistryError(.blobUnknown, "blob content missing")
            }
            return ByteBuffer(bytes: bytes[Int(range.lowerBound)..<Int(range.upperBound)])
        }
        var out = ByteBuffer()
        try await registry.blobs.read(digest, range: range) { chunk in
            var chunk = chunk
            out.writeBuffer(&chunk)
        }
        return out
    }
}

/// Set when a layer's walk was stopped by its time limit (one task uses it).
final class StopFlag: @unchecked Sendable {
    var stopped = false
}

/// A blob as a sequence of ranges read one after another (one request in flight, one chunk held):
/// ends early, setting `stop`, once the deadline has passed.
struct LayerChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let read: @Sendable (Range<Int64>) async throws -> ByteBuffer
    let size: Int64
    let chunk: Int64
    let deadline: ContinuousClock.Instant
    let stop: StopFlag

    struct AsyncIterator: AsyncIteratorProtocol {
        let owner: LayerChunks
        var offset: Int64 = 0
        mutating func next() async throws -> ByteBuffer? {
            guard offset < owner.size else { return nil }
            try Task.checkCancellation()   // a stopping server: not a partial index
            if ContinuousClock.now >= owner.deadline {
                owner.stop.stopped = true
                return nil
            }
            let end = Swift.min(owner.size, offset + Swift.max(1, owner.chunk))
            let buffer = try await owner.read(offset..<end)
            guard buffer.readableBytes == Int(end - offset) else {
                throw RegistryError(.blobUnknown, "blob shorter than its recorded size")
            }
            offset = end
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(owner: self) }
}
