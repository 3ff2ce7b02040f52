import Foundation
import GRDB
import RegistryStore

/// Copies of the metadata database for `berth backup` and `berth restore`.
public enum SQLiteBackup {
    /// A blob the database says is kept as a file in the blob store (not inline).
    public struct FileBlob: Sendable, Equatable {
        public var digest: String
        public var size: Int64
    }

    /// Copies the database at `source`, which a running server may be writing, to the new file
    /// `destination` with SQLite's backup API: one read transaction, so the copy is the state of
    /// one instant and holds every transaction committed before it began (in WAL mode the server's
    /// writers are not blocked meanwhile). The copy is a single self-contained file (rollback
    /// journal, no WAL). Returns the blobs the copy says are stored as files.
    public static func snapshot(source: String, destination: String) throws -> [FileBlob] {
        // Not opened read-only: SQLite cannot always read a WAL database read-only (the server may
        // be stopped, with no -shm file); nothing is written through this connection.
        var sourceConfiguration = Configuration()
        sourceConfiguration.busyMode = .timeout(10)
        let from = try DatabaseQueue(path: source, configuration: sourceConfiguration)
        let to = try DatabaseQueue(path: destination)
        try from.backup(to: to)
        try from.close()
        try to.writeWithoutTransaction { db in
            _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = DELETE")
        }
        let blobs = try fileBlobs(to)
        try to.close()
        return blobs
    }

    /// Opens a copy made by `snapshot` (read only), checks its integrity and returns the blobs it
    /// says are stored as files.
    public static func verify(path: String) throws -> [FileBlob] {
        var configuration = Configuration()
        configuration.readonly = true
        let db = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? db.close() }
        let problems = try db.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
        guard problems == ["ok"] else {
            throw BackupError(description: "the database \(path) is damaged: \(problems.prefix(5).joined(separator: "; "))")
        }
        return try fileBlobs(db)
    }

    private static func fileBlobs(_ reader: any DatabaseReader) throws -> [FileBlob] {
        try reader.read { db in
            try Row.fetchAll(db, sql: "SELECT digest, size FROM blobs WHERE inline IS NULL ORDER BY digest")
                .map { FileBlob(digest: $0[0], size: $0[1]) }
        }
    }

    public struct BackupError: Error, CustomStringConvertible {
        public var description: String
    }
}
