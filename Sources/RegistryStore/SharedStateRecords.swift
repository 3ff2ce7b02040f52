import Foundation

/// Failed logins, kept in the metadata store so that every node counts the same ones: ten bad
/// passwords spread over three nodes lock a name as ten on one node do. Keys are what the access
/// layer counts failures under, handed to the store as SHA-256 digests (hex), never as they are: a
/// key may contain a presented token. Times are the recording node's clock.
public protocol LoginFailureStore: Sendable {
    /// Records one failure of each of `keys` at `at`.
    func recordLoginFailures(keys: [String], at: Date) async throws
    /// Keys with at least `atLeast` failures at or after `since`, each with the times of those
    /// failures, oldest first (the newest `limit` of them).
    func loginFailures(since: Date, atLeast: Int, limit: Int) async throws -> [String: [Date]]
    /// Forgets failures before `before`.
    func pruneLoginFailures(before: Date) async throws
}

/// What keeps garbage collection on one node from removing what a push or a pull on another node
/// is using, as review queues postponed by an upload or a HEAD do. A push *pins* a digest before
/// it commits the bytes and unpins it once the blob is linked; collection removes an unreferenced
/// blob (or a file no record names) only in a transaction that finds no live pin, and writes a
/// *deletion marker* there that refuses new pins until it is cleared (after the bytes are gone) or
/// runs out. A pull or HEAD *touches* a link; collection keeps a link touched since its cutoff.
/// Pins and markers run out (`ttl`, on the store's clock: the database server's for PostgreSQL)
/// so a node that died holding one blocks nothing for long.
public protocol CollectionGuardStore: Sendable {
    /// Pins `digest` for `holder` (one pin per holder) for `ttl` seconds. False, and nothing is
    /// written, while a live deletion marker for the digest exists.
    func pinBlob(_ digest: String, holder: String, ttl: TimeInterval) async throws -> Bool
    func unpinBlob(_ digest: String, holder: String) async throws
    /// `LifecycleStore.removeUnreferencedBlob`, refused (nil) while the digest has a live pin. A
    /// removed blob whose bytes live in the blob store (not inline) leaves a deletion marker of
    /// `deleter`, live for `ttl` seconds unless cleared, written in the same transaction.
    func removeUnpinnedBlob(_ digest: String, before cutoff: Date, deleter: String, ttl: TimeInterval) async throws -> StoredBlob?
    /// Writes a deletion marker for bytes no record names: refused (false) while the digest has a
    /// live pin or a blob record.
    func markOrphanDeletion(_ digest: String, deleter: String, ttl: TimeInterval) async throws -> Bool
    /// Removes `deleter`'s deletion marker of `digest` (its bytes are gone).
    func clearBlobDeletion(_ digest: String, deleter: String) async throws
    /// Records that a pull or HEAD found the blob in the repository at `at` (the latest time kept).
    func touchLink(repository: String, digest: String, at: Date) async throws
    /// `LifecycleStore.removeUnreferencedLink`, refused (false) when the link was touched at or
    /// after `touchedSince`. A touch and this removal of the same link are serialized.
    func removeUntouchedLink(repository: String, digest: String, before cutoff: Date, touchedSince: Date) async throws -> Bool
    /// Forgets touches before `touchedBefore`, and pins and markers that ran out.
    func pruneCollectionGuards(touchedBefore: Date) async throws
}
