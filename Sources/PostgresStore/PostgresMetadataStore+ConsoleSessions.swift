import Foundation
import PostgresNIO
import RegistryStore

// MARK: the web console's sessions

/// One statement per call on the session's row (no event), so none takes the event-counter lock.
extension PostgresMetadataStore {
    public func createConsoleSession(_ r: ConsoleSessionRecord) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO console_sessions(id_hash, subject, subject_id, generation, display_name, csrf, created_at, expires_at)
                VALUES (\(r.idHash), \(r.subject), \(r.subjectID), \(Int64(r.generation)), \(r.displayName), \(r.csrf),
                        \(r.createdAt.timeIntervalSince1970), \(r.expiresAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
        }
    }

    public func consoleSession(idHash: String, now: Date) async throws -> ConsoleSessionRecord? {
        try await single { tx in
            try await tx.one("""
                SELECT id_hash, subject, subject_id, generation, display_name, csrf, created_at, expires_at
                FROM console_sessions WHERE id_hash = \(idHash) AND expires_at > \(now.timeIntervalSince1970)
                """).map { row in
                ConsoleSessionRecord(idHash: try row.decode("id_hash"), subject: try row.decode("subject"),
                                     subjectID: try row.decode("subject_id", String?.self),
                                     generation: Int(try row.decode("generation", Int64.self)), displayName: try row.decode("display_name"),
                                     csrf: try row.decode("csrf"), createdAt: try row.date("created_at"), expiresAt: try row.date("expires_at"))
            }
        }
    }

    public func deleteConsoleSession(idHash: String) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("DELETE FROM console_sessions WHERE id_hash = \(idHash) RETURNING 1") == 1
        }
    }

    public func deleteExpiredConsoleSessions(now: Date) async throws -> Int {
        try await write(serialized: false) { tx in
            try await tx.count("DELETE FROM console_sessions WHERE expires_at <= \(now.timeIntervalSince1970) RETURNING 1")
        }
    }

    public func trimConsoleSessions(subject: String, keep: Int) async throws -> Int {
        try await write(serialized: false) { tx in
            try await tx.count("""
                DELETE FROM console_sessions WHERE subject = \(subject) AND id_hash NOT IN (
                    SELECT id_hash FROM console_sessions WHERE subject = \(subject) ORDER BY created_at DESC, id_hash DESC
                    LIMIT \(Int64(max(0, keep))))
                RETURNING 1
                """)
        }
    }
}
