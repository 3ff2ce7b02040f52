import Foundation
import OCIModel
import RegistryStore
import Scanning

/// A manifest's stored inventory in a few numbers, for pages that show it (the web console,
/// through the seam `berth serve` hands it).
public struct InventorySummary: Sendable, Equatable {
    public var status: String
    public var detail: String?
    public var os: String?
    public var packagesByType: [String: Int]
    public var createdAt: Date
}

extension ScanInventorier {
    /// nil when the manifest was not inventoried yet; a stored document that does not decode is
    /// an error.
    public func summary(manifest: Digest) async throws -> InventorySummary? {
        guard let stored = try await store.inventory(manifest: manifest) else { return nil }
        var counts: [String: Int] = [:]
        var os: String?
        if !stored.document.isEmpty {
            let inventory = try ScanDocument.decode(ImageInventory.self, stored.document)
            for p in inventory.packages { counts[p.type.rawValue, default: 0] += 1 }
            os = inventory.os.map { $0.prettyName ?? ([$0.id, $0.versionID].compactMap { $0 }.joined(separator: " ")) }
        }
        return InventorySummary(status: stored.status.rawValue, detail: stored.detail, os: os, packagesByType: counts,
                                createdAt: stored.createdAt)
    }
}
