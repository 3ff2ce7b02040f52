import Foundation

/// An upload in progress, as a blob store that keeps its upload state in the metadata store (the
/// S3 store: any node continues any upload) sees it. `state` is the blob store's own encoding; the
/// metadata store keeps bytes, the owner label and a version, and never reads them.
public struct UploadSession: Sendable, Equatable {
    public var id: String
    public var owner: String
    /// 1 when created, one more at every successful update.
    public var version: Int64
    public var state: [UInt8]
    /// The last create or update, by the store's clock.
    public var updatedAt: Date

    public init(id: String, owner: String, version: Int64, state: [UInt8], updatedAt: Date) {
        self.id = id
        self.owner = owner
        self.version = version
        self.state = state
        self.updatedAt = updatedAt
    }
}

/// Upload sessions shared by every node. Updates are a compare-and-swap on the version, so of two
/// nodes changing one upload from the same version exactly one wins and the other learns it lost
/// (and reads the session again) instead of overwriting what the winner recorded. Times come from
/// the store's side (the database server's clock for PostgreSQL), so nodes with skewed clocks agree
/// on which sessions are idle.
public protocol UploadSessionStore: Sendable {
    /// Creates the session at version 1; false (nothing changes) when `id` has one already.
    func createUploadSession(id: String, owner: String, state: [UInt8]) async throws -> Bool
    /// The session, or nil.
    func uploadSession(id: String) async throws -> UploadSession?
    /// Replaces the state when the stored version is `expectedVersion`, and answers the new version
    /// (one more); nil, changing nothing, when the version differs or the session is gone.
    func updateUploadSession(id: String, expectedVersion: Int64, state: [UInt8]) async throws -> Int64?
    /// Removes the session (nothing happens when there is none).
    func deleteUploadSession(id: String) async throws
    /// Ids of the sessions not created or updated for at least `seconds`, by the store's clock,
    /// in id order (for the abandoned-upload sweeper).
    func idleUploadSessions(for seconds: TimeInterval) async throws -> [String]
    /// The sessions whose id begins with `idPrefix`, in id order (a namespace of ids the blob
    /// store's caller mints: counted without reading any other session).
    func uploadSessions(idPrefix: String) async throws -> [UploadSession]
    /// Number of sessions.
    func uploadSessionCount() async throws -> Int
}
