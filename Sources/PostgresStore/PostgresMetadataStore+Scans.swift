import Foundation
import OCIModel
import PostgresNIO
import RegistryStore

// MARK: scanning's derived data (ScanStore)

/// Layer indexes, inventories and the packages per inventory. No event (derived data, not content),
/// so no event-counter lock: each write replaces what was stored under its key.
extension PostgresMetadataStore {
    public func layerIndex(_ digest: Digest) async throws -> StoredLayerIndex? {
        try await single { tx in
            guard let row = try await tx.one("""
                SELECT format, cataloger_version, complete, document, indexed_at FROM scan_layer_indexes WHERE digest = \(digest.string)
                """) else { return nil }
            return StoredLayerIndex(digest: digest, format: Int(try row.decode("format", Int32.self)),
                                    catalogerVersion: try row.decode("cataloger_version"), complete: try row.decode("complete"),
                                    document: [UInt8](try row.decode("document", Data.self)), indexedAt: try row.date("indexed_at"))
        }
    }

    public func putLayerIndex(_ index: StoredLayerIndex) async throws {
        try await write(serialized: false) { tx in
            try await tx.exec("""
                INSERT INTO scan_layer_indexes(digest, format, cataloger_version, complete, document, indexed_at)
                VALUES (\(index.digest.string), \(Int32(clamping: index.format)), \(index.catalogerVersion), \(index.complete),
                        \(Data(index.document)), \(index.indexedAt.timeIntervalSince1970))
                ON CONFLICT (digest) DO UPDATE SET format = EXCLUDED.format, cataloger_version = EXCLUDED.cataloger_version,
                    complete = EXCLUDED.complete, document = EXCLUDED.document, indexed_at = EXCLUDED.indexed_at
                """)
        }
    }

    public func inventory(manifest: Digest) async throws -> StoredInventory? {
        try await single { tx in
            guard let row = try await tx.one("""
                SELECT status, layers, cataloger_version, document, detail, created_at FROM scan_inventories
                WHERE manifest = \(manifest.string)
                """) else { return nil }
            return try Self.inventory(row, manifest: manifest)
        }
    }

    static func inventory(_ row: Row, manifest: Digest) throws -> StoredInventory {
        let raw: String = try row.decode("status")
        guard let status = InventoryStatus(rawValue: raw) else { throw UnknownStoredValue(field: "inventory status", value: raw) }
        let layersText: String = try row.decode("layers")
        let layers = try layersText.split(separator: ",").map { s in
            guard let d = try? Digest(parsing: String(s)) else { throw UnknownStoredValue(field: "inventory layer", value: String(s.prefix(100))) }
            return d
        }
        return StoredInventory(manifest: manifest, status: status, layers: layers,
                               catalogerVersion: try row.decode("cataloger_version"),
                               document: [UInt8](try row.decode("document", Data.self)), detail: try row.decode("detail", String?.self),
                               createdAt: try row.date("created_at"))
    }

    public func inventories(manifests: [Digest]) async throws -> [StoredInventory] {
        let asked = Dictionary(manifests.map { ($0.string, $0) }, uniquingKeysWith: { a, _ in a })
        let names = asked.keys.sorted()
        guard !names.isEmpty else { return [] }
        return try await read { tx in
            var out: [StoredInventory] = []
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + ScanStoreLimits.maxInventoryBatch)])
                start += ScanStoreLimits.maxInventoryBatch
                for row in try await tx.rows("""
                    SELECT manifest, status, layers, cataloger_version, document, detail, created_at FROM scan_inventories
                    WHERE manifest = ANY(\(chunk)::text[]) ORDER BY manifest
                    """) {
                    let m: String = try row.decode("manifest")
                    guard let digest = asked[m] else { throw UnknownStoredValue(field: "inventory manifest", value: String(m.prefix(100))) }
                    out.append(try Self.inventory(row, manifest: digest))
                }
            }
            return out
        }
    }

    public func putInventory(_ inventory: StoredInventory, packages: [InventoryPackageKey]) async throws {
        let m = inventory.manifest.string
        let keys = Set(packages).sorted()
        try await write(serialized: false) { tx in
            try await tx.exec("""
                INSERT INTO scan_inventories(manifest, status, layers, cataloger_version, document, detail, created_at)
                VALUES (\(m), \(inventory.status.rawValue), \(inventory.layers.map(\.string).joined(separator: ",")),
                        \(inventory.catalogerVersion), \(Data(inventory.document)), \(inventory.detail),
                        \(inventory.createdAt.timeIntervalSince1970))
                ON CONFLICT (manifest) DO UPDATE SET status = EXCLUDED.status, layers = EXCLUDED.layers,
                    cataloger_version = EXCLUDED.cataloger_version, document = EXCLUDED.document, detail = EXCLUDED.detail,
                    created_at = EXCLUDED.created_at
                """)
            try await tx.exec("DELETE FROM scan_inventory_packages WHERE manifest = \(m)")
            // One statement per few hundred keys (arrays unnested server-side).
            var start = 0
            while start < keys.count {
                let chunk = keys[start..<min(keys.count, start + 500)]
                let ecosystems = chunk.map(\.ecosystem), names = chunk.map(\.name)
                try await tx.exec("""
                    INSERT INTO scan_inventory_packages(ecosystem, name, manifest)
                    SELECT e, n, \(m) FROM unnest(\(ecosystems)::text[], \(names)::text[]) AS k(e, n) ON CONFLICT DO NOTHING
                    """)
                start += 500
            }
        }
    }

    public func inventories(containing package: InventoryPackageKey, after: Digest?, limit: Int) async throws -> [Digest] {
        try await single { tx in
            try await tx.rows("""
                SELECT manifest FROM scan_inventory_packages WHERE ecosystem = \(package.ecosystem) AND name = \(package.name)
                AND manifest > \(after?.string ?? "") ORDER BY manifest LIMIT \(max(0, limit))
                """).compactMap { try? Digest(parsing: try $0.decode(0, String.self)) }
        }
    }
}
