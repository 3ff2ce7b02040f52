import Foundation
import GRDB
import RegistryStore

// MARK: import jobs

/// One statement per call; no event is appended.
extension SQLiteMetadataStore {
    public func saveImportJob(_ r: ImportJobRecord) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO import_jobs(id, owner, image, state, document, node, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET state = excluded.state, document = excluded.document, node = excluded.node,
                    updated_at = excluded.updated_at
                WHERE import_jobs.state = 'running'
                """, arguments: [r.id, r.owner, r.image, r.state, r.document, r.node,
                                 r.createdAt.timeIntervalSince1970, r.updatedAt.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func importJob(id: String) async throws -> ImportJobRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT id, owner, image, state, document, node, created_at, updated_at FROM import_jobs WHERE id = ?
                """, arguments: [id]).map { row in
                ImportJobRecord(id: row["id"], owner: row["owner"], image: row["image"], state: row["state"],
                                document: row["document"], node: row["node"],
                                createdAt: Date(timeIntervalSince1970: row["created_at"]),
                                updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
            }
        }
    }

    public func pruneImportJobs(keep: Int, staleBefore: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: """
                DELETE FROM import_jobs WHERE updated_at < ? OR id IN (
                    SELECT id FROM import_jobs WHERE state <> 'running' ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)
                """, arguments: [staleBefore.timeIntervalSince1970, max(0, keep)])
            return db.changesCount
        }
    }
}
