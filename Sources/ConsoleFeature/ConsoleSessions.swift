import Crypto
import Foundation

/// The console's signed-in sessions. A session id is 32 random bytes (base64url) that only the
/// browser holds, in an HttpOnly cookie; this store keeps its SHA-256, never the id itself, with
/// what the login was bound to (subject, its immutable id, its credential generation: a password
/// reset or a disabled identity ends the session at its next request, because the principal is
/// looked up again through Access every time), the session's CSRF token and its expiry.
///
/// Sessions live in this process's memory: a restart signs everyone out, and in a cluster a
/// browser must stick to one node (the balancer's affinity) or sign in again.
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

    private var byHash: [String: Session] = [:]
    private let lifetime: TimeInterval
    private let capacity: Int

    public init(lifetime: TimeInterval = 8 * 3600, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// Starts a session; returns the id for the cookie (kept nowhere on the server).
    public func create(subject: String, subjectID: String?, generation: Int, displayName: String,
                       now: Date = Date()) -> (id: String, session: Session) {
        if byHash.count >= capacity {
            byHash = byHash.filter { $0.value.expires > now }
            if byHash.count >= capacity, let oldest = byHash.min(by: { $0.value.expires < $1.value.expires })?.key {
                byHash[oldest] = nil
            }
        }
        let id = Self.randomToken()
        let session = Session(subject: subject, subjectID: subjectID, generation: generation, displayName: displayName,
                              csrf: Self.randomToken(), expires: now.addingTimeInterval(lifetime))
        byHash[Self.hash(id)] = session
        return (id, session)
    }

    /// The live session of a cookie's id, nil when unknown or expired (an expired one is dropped).
    public func session(_ id: String, now: Date = Date()) -> Session? {
        guard id.utf8.count <= 128 else { return nil }
        let key = Self.hash(id)
        guard let s = byHash[key] else { return nil }
        guard s.expires > now else {
            byHash[key] = nil
            return nil
        }
        return s
    }

    public func end(_ id: String) {
        guard id.utf8.count <= 128 else { return }
        byHash[Self.hash(id)] = nil
    }

    /// How many sessions are held (tests).
    public var count: Int { byHash.count }

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
