import Foundation
import OCIModel

/// A layer's index as the scanner stores it: once per layer digest, shared by every image that
/// holds the layer. `document` is the scanner's own encoding (compressed); the store keeps bytes
/// and the few columns needed to decide whether to index the layer again, and never reads them.
public struct StoredLayerIndex: Sendable, Equatable {
    public var digest: Digest
    /// The index format (`LayerIndex.currentFormat`) and the version of the catalogers that wrote it:
    /// either changing means the layer is indexed again.
    public var format: Int
    public var catalogerVersion: String
    /// False when the walk stopped early or a file could not be read (a partial index).
    public var complete: Bool
    public var document: [UInt8]
    public var indexedAt: Date

    public init(digest: Digest, format: Int, catalogerVersion: String, complete: Bool, document: [UInt8], indexedAt: Date) {
        self.digest = digest
        self.format = format
        self.catalogerVersion = catalogerVersion
        self.complete = complete
        self.document = document
        self.indexedAt = indexedAt
    }
}

/// What the scanner made of one manifest.
public enum InventoryStatus: String, Sendable, Codable, CaseIterable {
    /// Every layer was indexed in full.
    case complete
    /// Some layer's index is partial or a file could not be read: the inventory holds what was read.
    case partial
    /// Not a container image (an artifact, a signature, an SBOM, an index): nothing to inventory.
    case notAnImage = "not-an-image"
    /// Could not be inventoried (a layer missing, a manifest that does not parse); `detail` says why.
    case failed
}

/// One manifest's inventory: the layers it was merged from, in order, and the merged document.
public struct StoredInventory: Sendable, Equatable {
    /// The manifest digest (an inventory is the same in every repository that holds the manifest).
    public var manifest: Digest
    public var status: InventoryStatus
    public var layers: [Digest]
    public var catalogerVersion: String
    /// The scanner's encoding of the merged inventory (empty unless `complete` or `partial`).
    public var document: [UInt8]
    /// Why it is partial, not an image or failed, in a few words (bounded by the scanner).
    public var detail: String?
    public var createdAt: Date

    public init(manifest: Digest, status: InventoryStatus, layers: [Digest], catalogerVersion: String, document: [UInt8],
                detail: String?, createdAt: Date) {
        self.manifest = manifest
        self.status = status
        self.layers = layers
        self.catalogerVersion = catalogerVersion
        self.document = document
        self.detail = detail
        self.createdAt = createdAt
    }
}

/// The inventory side's package key is the advisory side's: one type, filled by one normalisation
/// (`Scanning.AdvisoryIndex.lookupKey`: the ecosystem's base name in lower case, PEP 503 names for
/// PyPI, a distribution package's source package), so an inventory and an advisory that name the
/// same package always meet in the re-match's join (two spellings used to miss: "Debian" vs "debian").
public typealias InventoryPackageKey = AdvisoryPackageKey

/// Scanning's derived data: layer indexes, inventories per manifest, and which inventories hold a
/// package (so a change of advisories re-matches only those, without reading a layer). Nothing here
/// is content: writes append no event, and each one replaces what was stored for its key.
public protocol ScanStore: Sendable {
    /// The stored index of a layer, or nil.
    func layerIndex(_ digest: Digest) async throws -> StoredLayerIndex?
    /// Stores (or replaces) a layer's index.
    func putLayerIndex(_ index: StoredLayerIndex) async throws
    /// The stored inventory of a manifest, or nil.
    func inventory(manifest: Digest) async throws -> StoredInventory?
    /// Stores (or replaces) a manifest's inventory and, in the same transaction, replaces the
    /// manifest's package keys with `packages` (duplicates are kept once).
    func putInventory(_ inventory: StoredInventory, packages: [InventoryPackageKey]) async throws
    /// Manifests whose inventory holds the package, in digest order, after `after` (a page).
    func inventories(containing package: InventoryPackageKey, after: Digest?, limit: Int) async throws -> [Digest]
    /// The stored inventories of `manifests` in one read (the re-match's page; a manifest named
    /// twice is answered once, one without an inventory is absent), in manifest digest order.
    /// At most `ScanStoreLimits.maxInventoryBatch` manifests are asked at a time (more: the store
    /// reads them in several statements, still one answer).
    func inventories(manifests: [Digest]) async throws -> [StoredInventory]
}

public enum ScanStoreLimits {
    /// Most manifests one statement of `inventories(manifests:)` (and
    /// `FindingStore.findings(manifests:)`) names; a longer list is read in several.
    public static let maxInventoryBatch = 500
}
