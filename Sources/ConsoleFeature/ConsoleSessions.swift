import Crypto
import Foundation
import RegistryStore

/// The console's signed-in sessions. A session id is 32 random bytes (base64url) that only the
/// browser holds, in an HttpOnly cookie; the metadata store (`ConsoleSessionStore`) keeps its
/// SHA-256, never the id itself, with what the login was bound to (subject, its immutable id, its
/// credential generation: a password reset or a disabled identity ends the session at its next
/// request, because the principal is looked up again through Access every time), the session's
/// CSRF token and its expiry. Being in the store, a session survives a restart of `berth serve`
/// and works on every node of a cluster (no balancer affinity). Expired sessions are never
/// answered and are removed by a sweep at most once a minute per node, run by a sign-in. An
/// identity holds at most 20 sessions: a sign-in past that ends its oldest.
public actor ConsoleSessions {
    public struct Session: Sendable, Equatable {
        public var subject: String
        public var subjectID: String?
        public var generation: Int
        /// The name shown in the page header.
        public var displayName: String
        /// Sent back in every state-changing form; compared in constant time.
        public var csrf: String
        public var expires: Date
    }

    /// Sessions one identity may hold at once; a new sign-in past it ends the oldest.
    public static let defaultMaxPerIdentity = 20

    private let store: any ConsoleSessionStore
    private let maxPerIdentity: Int
    private let lifetime: TimeInterval
    private let sweepInterval: TimeInterval
    private var lastSweep = Date.distantPast

    public init(store: any ConsoleSessionStore, lifetime: TimeInterval = 8 * 3600, sweepInterval: TimeInterval = 60,
                maxPerIdentity: Int = ConsoleSessions.defaultMaxPerIdentity) {
        self.store = store
        self.maxPerIdentity = max(1, maxPerIdentity)
        self.lifetime = lifetime
        self.sweepInterval = sweepInterval
    }

    /// Starts a session; returns the id for the cookie (kept nowhere on the server).
    public func create(subject: String, subjectID: String?, generation: Int, displayName: String,
                       now: Date = Date()) async throws -> (id: String, session: Session) {
        if now.timeIntervalSince(lastSweep) >= sweepInterval {
            lastSweep = now
            // A failed sweep must not refuse a valid sign-in (found in review); the next one retries.
            _ = try? await store.deleteExpiredConsoleSessions(now: now)
        }
        while true {
            let id = Self.randomToken()
            let session = Session(subject: subject, subjectID: subjectID, generation: generation, displayName: displayName,
                                  csrf: Self.randomToken(), expires: now.addingTimeInterval(lifetime))
            let record = ConsoleSessionRecord(idHash: Self.hash(id), subject: subject, subjectID: subjectID, generation: generation,
                                              displayName: displayName, csrf: session.csrf, createdAt: now, expiresAt: session.expires)
            // 256 random bits do not collide; were they to, another id is drawn rather than share a row.
            if try await store.createConsoleSession(record) {
                // At most `maxPerIdentity` sessions per identity: its oldest are signed out.
                _ = try await store.trimConsoleSessions(subject: subject, keep: maxPerIdentity)
                return (id, session)
            }
        }
    }

    /// The live session of a cookie's id, nil when unknown or expired.
    public func session(_ id: String, now: Date = Date()) async throws -> Session? {
        guard id.utf8.count <= 128 else { return nil }
        guard let r = try await store.consoleSession(idHash: Self.hash(id), now: now) else { return nil }
        return Session(subject: r.subject, subjectID: r.subjectID, generation: r.generation, displayName: r.displayName,
                       csrf: r.csrf, expires: r.expiresAt)
    }

    public func end(_ id: String) async throws {
        guard id.utf8.count <= 128 else { return }
        _ = try await store.deleteConsoleSession(idHash: Self.hash(id))
    }

    /// The stored key of a session id: its SHA-256, hex.
    static func hash(_ id: String) -> String {
        SHA256.hash(data: Data(id.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// 32 random bytes from the system's generator, base64url without padding.
    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &g) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Equal strings, compared without an early exit.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count, !x.isEmpty else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}
