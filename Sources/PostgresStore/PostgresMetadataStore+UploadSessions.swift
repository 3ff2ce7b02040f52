import Foundation
import PostgresNIO
import RegistryStore

// MARK: upload sessions

/// Each change is one statement on the session's row (no event, nothing decided from other rows), so
/// it does not take the event-counter lock: of two updates from the same version, the second waits
/// on the first's row lock and then finds another version. Times are the database server's.
extension PostgresMetadataStore {
    private static let dbNow = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

    private static func uploadSession(_ row: Row) throws -> UploadSession {
        UploadSession(id: try row.decode("id"), owner: try row.decode("owner"), version: try row.decode("version"),
                      state: [UInt8](try row.decode("state", Data.self)), updatedAt: try row.date("updated_at"))
    }

    public func createUploadSession(id: String, owner: String, state: [UInt8]) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO upload_sessions(id, owner, version, state, updated_at)
                VALUES (\(id), \(owner), 1, \(Data(state)), \(unescaped: Self.dbNow)) ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
        }
    }

    public func uploadSession(id: String) async throws -> UploadSession? {
        try await single { tx in
            try await tx.one("SELECT id, owner, version, state, updated_at FROM upload_sessions WHERE id = \(id)")
                .map(Self.uploadSession)
        }
    }

    public func updateUploadSession(id: String, expectedVersion: Int64, state: [UInt8]) async throws -> Int64? {
        try await write(serialized: false) { tx in
            try await tx.value("""
                UPDATE upload_sessions SET version = version + 1, state = \(Data(state)), updated_at = \(unescaped: Self.dbNow)
                WHERE id = \(id) AND version = \(expectedVersion) RETURNING version
                """, Int64.self)
        }
    }

    public func deleteUploadSession(id: String) async throws {
        try await write(serialized: false) { tx in
            try await tx.exec("DELETE FROM upload_sessions WHERE id = \(id)")
        }
    }

    public func idleUploadSessions(for seconds: TimeInterval) async throws -> [String] {
        try await single { tx in
            try await tx.rows("""
                SELECT id FROM upload_sessions WHERE updated_at <= \(unescaped: Self.dbNow) - \(max(0, seconds)) ORDER BY id
                """).map { try $0.decode(0, String.self) }
        }
    }

    public func uploadSessions(idPrefix: String) async throws -> [UploadSession] {
        try await single { tx in
            try await tx.rows("""
                SELECT id, owner, version, state, updated_at FROM upload_sessions
                WHERE left(id, length(\(idPrefix))) = \(idPrefix) ORDER BY id COLLATE "C"
                """).map(Self.uploadSession)
        }
    }

    public func uploadSessionCount() async throws -> Int {
        try await single { tx in
            Int(try await tx.value("SELECT COUNT(*) FROM upload_sessions", Int64.self) ?? 0)
        }
    }
}
