import Foundation
import GRDB
import RegistryStore

// MARK: upload sessions

/// One process uses the database file (the data directory lock), so its clock is the store's.
extension SQLiteMetadataStore {
    static func uploadSession(_ row: Row) -> UploadSession {
        UploadSession(id: row["id"], owner: row["owner"], version: row["version"], state: [UInt8](row["state"] as Data),
                      updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    public func createUploadSession(id: String, owner: String, state: [UInt8]) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO upload_sessions(id, owner, version, state, updated_at) VALUES (?, ?, 1, ?, ?)
                ON CONFLICT(id) DO NOTHING
                """, arguments: [id, owner, Data(state), Date().timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func uploadSession(id: String) async throws -> UploadSession? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM upload_sessions WHERE id = ?", arguments: [id]).map(Self.uploadSession)
        }
    }

    public func updateUploadSession(id: String, expectedVersion: Int64, state: [UInt8]) async throws -> Int64? {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE upload_sessions SET version = version + 1, state = ?, updated_at = ? WHERE id = ? AND version = ?
                """, arguments: [Data(state), Date().timeIntervalSince1970, id, expectedVersion])
            return db.changesCount == 1 ? expectedVersion + 1 : nil
        }
    }

    public func deleteUploadSession(id: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM upload_sessions WHERE id = ?", arguments: [id])
        }
    }

    public func idleUploadSessions(for seconds: TimeInterval) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM upload_sessions WHERE updated_at <= ? ORDER BY id",
                                arguments: [Date().timeIntervalSince1970 - max(0, seconds)])
        }
    }

    public func uploadSessions(idPrefix: String) async throws -> [UploadSession] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM upload_sessions WHERE substr(id, 1, ?) = ? ORDER BY id",
                             arguments: [idPrefix.count, idPrefix]).map(Self.uploadSession)
        }
    }

    public func uploadSessionCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM upload_sessions") ?? 0 }
    }
}
