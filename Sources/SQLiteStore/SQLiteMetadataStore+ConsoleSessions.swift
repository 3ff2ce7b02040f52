import Foundation
import GRDB
import RegistryStore

// MARK: the web console's sessions

/// One statement per call; no event is appended.
extension SQLiteMetadataStore {
    public func createConsoleSession(_ r: ConsoleSessionRecord) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO console_sessions(id_hash, subject, subject_id, generation, display_name, csrf, created_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id_hash) DO NOTHING
                """, arguments: [r.idHash, r.subject, r.subjectID, r.generation, r.displayName, r.csrf,
                                 r.createdAt.timeIntervalSince1970, r.expiresAt.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func consoleSession(idHash: String, now: Date) async throws -> ConsoleSessionRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT id_hash, subject, subject_id, generation, display_name, csrf, created_at, expires_at
                FROM console_sessions WHERE id_hash = ? AND expires_at > ?
                """, arguments: [idHash, now.timeIntervalSince1970]).map { row in
                ConsoleSessionRecord(idHash: row["id_hash"], subject: row["subject"], subjectID: row["subject_id"],
                                     generation: row["generation"], displayName: row["display_name"], csrf: row["csrf"],
                                     createdAt: Date(timeIntervalSince1970: row["created_at"]),
                                     expiresAt: Date(timeIntervalSince1970: row["expires_at"]))
            }
        }
    }

    public func deleteConsoleSession(idHash: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM console_sessions WHERE id_hash = ?", arguments: [idHash])
            return db.changesCount == 1
        }
    }

    public func deleteExpiredConsoleSessions(now: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM console_sessions WHERE expires_at <= ?", arguments: [now.timeIntervalSince1970])
            return db.changesCount
        }
    }

    public func trimConsoleSessions(subject: String, keep: Int) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: """
                DELETE FROM console_sessions WHERE subject = ? AND id_hash NOT IN (
                    SELECT id_hash FROM console_sessions WHERE subject = ? ORDER BY created_at DESC, id_hash DESC LIMIT ?)
                """, arguments: [subject, subject, max(0, keep)])
            return db.changesCount
        }
    }
}
