import Foundation
import PostgresNIO
import RegistryStore

extension PostgresMetadataStore {
    public func keyMaterial(named name: String) async throws -> (version: Int64, blob: Data)? {
        try await single { tx in
            guard let row = try await tx.one("SELECT version, blob FROM key_material WHERE name = \(name)") else { return nil }
            return (version: try row.decode(0, Int64.self), blob: try row.decode(1, Data.self))
        }
    }

    public func storeKeyMaterial(named name: String, _ blob: Data, expectedVersion: Int64) async throws -> Bool {
        try await write(serialized: false) { tx in
            // One statement on the row (an insert for the first version): of two writers from the
            // same version, one changes a row and the other none.
            if expectedVersion == 0 {
                return try await tx.count("""
                    INSERT INTO key_material(name, version, blob) VALUES (\(name), 1, \(blob)) ON CONFLICT DO NOTHING RETURNING 1
                    """) == 1
            }
            return try await tx.count("""
                UPDATE key_material SET version = version + 1, blob = \(blob)
                WHERE name = \(name) AND version = \(expectedVersion) RETURNING 1
                """) == 1
        }
    }

    public func keyMaterialNames(prefix: String) async throws -> [String] {
        try await single { tx in
            try await tx.rows("""
                SELECT name FROM key_material WHERE left(name, length(\(prefix))) = \(prefix) ORDER BY name COLLATE "C"
                """).map { try $0.decode(0, String.self) }
        }
    }

    public func deleteKeyMaterial(named name: String) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("DELETE FROM key_material WHERE name = \(name) RETURNING 1") > 0
        }
    }
}
