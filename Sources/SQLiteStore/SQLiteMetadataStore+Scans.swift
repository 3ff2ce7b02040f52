import Foundation
import GRDB
import OCIModel
import RegistryStore

// MARK: scanning's derived data (ScanStore)

/// Layer indexes, inventories and the packages per inventory. No event: this is derived data, not
/// content; each write replaces what was stored under its key.
extension SQLiteMetadataStore {
    public func layerIndex(_ digest: Digest) async throws -> StoredLayerIndex? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM scan_layer_indexes WHERE digest = ?",
                                             arguments: [digest.string]) else { return nil }
            return StoredLayerIndex(digest: digest, format: row["format"], catalogerVersion: row["cataloger_version"],
                                    complete: row["complete"], document: [UInt8](row["document"] as Data),
                                    indexedAt: Date(timeIntervalSince1970: row["indexed_at"]))
        }
    }

    public func putLayerIndex(_ index: StoredLayerIndex) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO scan_layer_indexes(digest, format, cataloger_version, complete, document, indexed_at)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(digest) DO UPDATE SET format = excluded.format, cataloger_version = excluded.cataloger_version,
                    complete = excluded.complete, document = excluded.document, indexed_at = excluded.indexed_at
                """, arguments: [index.digest.string, index.format, index.catalogerVersion, index.complete, Data(index.document),
                                 index.indexedAt.timeIntervalSince1970])
        }
    }

    public func inventory(manifest: Digest) async throws -> StoredInventory? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM scan_inventories WHERE manifest = ?",
                                             arguments: [manifest.string]) else { return nil }
            return try Self.inventory(row, manifest: manifest)
        }
    }

    static func inventory(_ row: Row, manifest: Digest) throws -> StoredInventory {
        let raw: String = row["status"]
        guard let status = InventoryStatus(rawValue: raw) else { throw UnknownStoredValue(field: "inventory status", value: raw) }
        let layersText: String = row["layers"]
        let layers = try layersText.split(separator: ",").map { s in
            guard let d = try? Digest(parsing: String(s)) else { throw UnknownStoredValue(field: "inventory layer", value: String(s.prefix(100))) }
            return d
        }
        return StoredInventory(manifest: manifest, status: status, layers: layers, catalogerVersion: row["cataloger_version"],
                               document: [UInt8](row["document"] as Data), detail: row["detail"],
                               createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    public func inventories(manifests: [Digest]) async throws -> [StoredInventory] {
        let asked = Dictionary(manifests.map { ($0.string, $0) }, uniquingKeysWith: { a, _ in a })
        let names = asked.keys.sorted()
        guard !names.isEmpty else { return [] }
        return try await pool.read { db in
            var out: [StoredInventory] = []
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + ScanStoreLimits.maxInventoryBatch)])
                start += ScanStoreLimits.maxInventoryBatch
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for row in try Row.fetchAll(db, sql: "SELECT * FROM scan_inventories WHERE manifest IN (\(marks)) ORDER BY manifest",
                                            arguments: StatementArguments(chunk)) {
                    let m: String = row["manifest"]
                    guard let digest = asked[m] else { throw UnknownStoredValue(field: "inventory manifest", value: String(m.prefix(100))) }
                    out.append(try Self.inventory(row, manifest: digest))
                }
            }
            return out
        }
    }

    public func putInventory(_ inventory: StoredInventory, packages: [InventoryPackageKey]) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO scan_inventories(manifest, status, layers, cataloger_version, document, detail, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(manifest) DO UPDATE SET status = excluded.status, layers = excluded.layers,
                    cataloger_version = excluded.cataloger_version, document = excluded.document, detail = excluded.detail,
                    created_at = excluded.created_at
                """, arguments: [inventory.manifest.string, inventory.status.rawValue,
                                 inventory.layers.map(\.string).joined(separator: ","), inventory.catalogerVersion,
                                 Data(inventory.document), inventory.detail, inventory.createdAt.timeIntervalSince1970])
            try db.execute(sql: "DELETE FROM scan_inventory_packages WHERE manifest = ?", arguments: [inventory.manifest.string])
            for key in Set(packages) {
                try db.execute(sql: "INSERT INTO scan_inventory_packages(ecosystem, name, manifest) VALUES (?, ?, ?)",
                               arguments: [key.ecosystem, key.name, inventory.manifest.string])
            }
        }
    }

    public func inventories(containing package: InventoryPackageKey, after: Digest?, limit: Int) async throws -> [Digest] {
        try await pool.read { db in
            try String.fetchAll(db, sql: """
                SELECT manifest FROM scan_inventory_packages WHERE ecosystem = ? AND name = ? AND manifest > ?
                ORDER BY manifest LIMIT ?
                """, arguments: [package.ecosystem, package.name, after?.string ?? "", max(0, limit)])
                .compactMap { try? Digest(parsing: $0) }
        }
    }
}
