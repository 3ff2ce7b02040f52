import Foundation
import PostgresNIO
import RegistryStore

// MARK: import jobs

/// One statement per call on the job's row (no event), so none takes the event-counter lock.
extension PostgresMetadataStore {
    public func saveImportJob(_ r: ImportJobRecord) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO import_jobs(id, owner, image, state, document, node, created_at, updated_at)
                VALUES (\(r.id), \(r.owner), \(r.image), \(r.state), \(r.document), \(r.node),
                        \(r.createdAt.timeIntervalSince1970), \(r.updatedAt.timeIntervalSince1970))
                ON CONFLICT (id) DO UPDATE SET state = excluded.state, document = excluded.document, node = excluded.node,
                    updated_at = excluded.updated_at
                WHERE import_jobs.state = 'running'
                RETURNING 1
                """) == 1
        }
    }

    public func importJob(id: String) async throws -> ImportJobRecord? {
        try await single { tx in
            try await tx.one("""
                SELECT id, owner, image, state, document, node, created_at, updated_at FROM import_jobs WHERE id = \(id)
                """).map { row in
                ImportJobRecord(id: try row.decode("id"), owner: try row.decode("owner"), image: try row.decode("image"),
                                       state: try row.decode("state"), document: try row.decode("document", Data.self),
                                       node: try row.decode("node"), createdAt: try row.date("created_at"),
                                       updatedAt: try row.date("updated_at"))
            }
        }
    }

    public func pruneImportJobs(keep: Int, staleBefore: Date) async throws -> Int {
        try await write(serialized: false) { tx in
            try await tx.count("""
                DELETE FROM import_jobs WHERE updated_at < \(staleBefore.timeIntervalSince1970) OR id IN (
                    SELECT id FROM import_jobs WHERE state <> 'running' ORDER BY created_at DESC, id DESC OFFSET \(Int64(max(0, keep))))
                RETURNING 1
                """)
        }
    }
}
