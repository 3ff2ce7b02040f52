import Foundation

/// A signed-in web console session as the metadata store keeps it: never the session id the
/// browser holds, only its SHA-256 (hex), with what the sign-in was bound to and the session's
/// CSRF token (worth nothing without the session cookie, which only the browser has).
public struct ConsoleSessionRecord: Sendable, Equatable {
    /// SHA-256 of the session id, lower-case hex.
    public var idHash: String
    public var subject: String
    public var subjectID: String?
    /// The identity's credential generation at sign-in: a password change ends the session.
    public var generation: Int
    public var displayName: String
    public var csrf: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(idHash: String, subject: String, subjectID: String?, generation: Int, displayName: String, csrf: String,
                createdAt: Date, expiresAt: Date) {
        self.idHash = idHash
        self.subject = subject
        self.subjectID = subjectID
        self.generation = generation
        self.displayName = displayName
        self.csrf = csrf
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// The console's sessions, shared by every node of a registry and kept across restarts. Writes
/// append no event (a session is not registry content). Times are the caller's clock.
public protocol ConsoleSessionStore: Sendable {
    /// Stores a new session; answers false (changing nothing) when its hash is already stored.
    func createConsoleSession(_ record: ConsoleSessionRecord) async throws -> Bool
    /// The session stored under `idHash` when it has not expired at `now`; nil otherwise.
    func consoleSession(idHash: String, now: Date) async throws -> ConsoleSessionRecord?
    /// Removes the session; answers whether one was stored.
    func deleteConsoleSession(idHash: String) async throws -> Bool
    /// Removes every session expired at `now` (`expiresAt <= now`); answers how many.
    func deleteExpiredConsoleSessions(now: Date) async throws -> Int
    /// Keeps the newest `keep` sessions of `subject` (by `createdAt`, then hash) and removes the
    /// rest; answers how many it removed.
    func trimConsoleSessions(subject: String, keep: Int) async throws -> Int
}
