import Foundation

/// A named lease on cluster-once background work (an event consumer, the lifecycle schedules):
/// who holds it, until when, and its fencing token. The token grows with every acquisition, so a
/// holder that lost the lease (paused, partitioned) cannot act with its old token after another
/// took over: writes fenced by a lease check the token in their own transaction.
public struct Lease: Sendable, Equatable {
    public var name: String
    public var holder: String
    public var token: Int64
    /// When the lease lapses unless renewed, by the store's clock.
    public var expiresAt: Date

    public init(name: String, holder: String, token: Int64, expiresAt: Date) {
        self.name = name
        self.holder = holder
        self.token = token
        self.expiresAt = expiresAt
    }

    public var fence: LeaseFence { LeaseFence(name: name, token: token) }
}

/// The lease a write is done under: refused unless the lease's current token is still `token`.
public struct LeaseFence: Sendable, Equatable, Hashable {
    public var name: String
    public var token: Int64
    public init(name: String, token: Int64) {
        self.name = name
        self.token = token
    }
}

/// Leases with fencing tokens, kept in the metadata store so every node sees the same ones. Time
/// comes from the store's side (the database server's clock for PostgreSQL; the process clock
/// for the embedded SQLite store, which one process uses), so nodes with skewed clocks agree.
public protocol LeaseStore: Sendable {
    /// Takes the lease for `holder` for `ttl` seconds when nobody holds it, its holder's time ran
    /// out, or `holder` holds it already (a restarted node under the same name); the token grows
    /// by one with every acquisition. Nil while another holder's lease is live.
    func acquireLease(name: String, holder: String, ttl: TimeInterval) async throws -> Lease?
    /// Extends the lease by `ttl` seconds from now; false (and nothing changes) unless `holder`
    /// still holds it under `token` and it is live (not run out, not released): a holder that
    /// lost it, even with nobody else taking it yet, acquires it again instead.
    func renewLease(name: String, holder: String, token: Int64, ttl: TimeInterval) async throws -> Bool
    /// Ends the lease at once (its token is kept, so the next holder's is higher); nothing
    /// happens unless `holder` holds it under `token`.
    func releaseLease(name: String, holder: String, token: Int64) async throws
    /// Every lease, by name (expired ones too).
    func leases() async throws -> [Lease]

    /// `EventLogStore.advanceEventConsumer`, refused (false, nothing changes) in the same
    /// transaction when the lease `fence` names has another token now.
    func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64, fence: LeaseFence) async throws -> Bool
    /// `EventLogStore.recordEventConsumerFailure`, refused (false) like the above.
    func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date,
                                    fence: LeaseFence) async throws -> Bool
}
