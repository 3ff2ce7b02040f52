import Foundation
import GRDB
import RegistryStore

extension SQLiteMetadataStore {
    public func keyMaterial(named name: String) async throws -> (version: Int64, blob: Data)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT version, blob FROM key_material WHERE name = ?", arguments: [name]).map {
                (version: $0["version"] as Int64, blob: $0["blob"] as Data)
            }
        }
    }

    public func storeKeyMaterial(named name: String, _ blob: Data, expectedVersion: Int64) async throws -> Bool {
        try await pool.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT version FROM key_material WHERE name = ?", arguments: [name]) ?? 0
            guard current == expectedVersion else { return false }
            try db.execute(sql: """
                INSERT INTO key_material(name, version, blob) VALUES (?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET version = excluded.version, blob = excluded.blob
                """, arguments: [name, current + 1, blob])
            return true
        }
    }

    public func keyMaterialNames(prefix: String) async throws -> [String] {
        try await pool.read { db in
            // substr compares bytes (BLOB affinity of the cast), unlike LIKE with its wildcards and case folding
            try String.fetchAll(db, sql: """
                SELECT name FROM key_material WHERE substr(CAST(name AS BLOB), 1, ?) = CAST(? AS BLOB) ORDER BY name
                """, arguments: [prefix.utf8.count, prefix])
        }
    }

    public func deleteKeyMaterial(named name: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM key_material WHERE name = ?", arguments: [name])
            return db.changesCount > 0
        }
    }
}
