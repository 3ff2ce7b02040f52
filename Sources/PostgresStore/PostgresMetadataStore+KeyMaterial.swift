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
}
