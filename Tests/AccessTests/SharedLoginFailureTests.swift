import Foundation
import NIOConcurrencyHelpers
import RegistryStore
import SQLiteStore
import Testing
@testable import Access

/// Failed logins counted in the metadata store: two nodes over one database file, each with its
/// own key directory and the same key-encryption key, as two `berth serve` processes would be.
@Suite struct SharedLoginFailureTests {
    func nodes(failureCheckInterval: Double = 0, clock: @escaping @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime })
        async throws -> (AccessControl, AccessControl, SQLiteMetadataStore) {
        let dir = NSTemporaryDirectory() + "berth-failures-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let kek = KeyEncryptionKey.generate()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        let a = try await AccessControl.open(store: store, keyDirectory: dir + "/a", keyEncryptionKey: kek,
                                             failureCheckInterval: failureCheckInterval, clock: clock)
        _ = try await a.bootstrap(ownerPassword: "pw")
        let b = try await AccessControl.open(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), keyDirectory: dir + "/b",
                                             keyEncryptionKey: kek, failureCheckInterval: failureCheckInterval, clock: clock)
        return (a, b, store)
    }

    func limited(_ body: () async throws -> Void) async -> Bool {
        do { try await body() } catch AccessError.rateLimited { return true } catch { return false }
        return false
    }

    @Test func failuresSpreadOverTwoNodesLockTheNameOnBoth() async throws {
        let (a, b, store) = try await nodes()
        let attacker = IPAddress("203.0.113.66")
        for node in [a, b] {
            for _ in 0..<(FailureLimiter.perName / 2) {
                _ = try? await node.authenticate(username: "owner", password: "guess", address: attacker, service: "svc")
            }
        }
        // Neither node saw ten failures itself; together they did.
        #expect(await limited { _ = try await a.authenticate(username: "owner", password: "pw", address: attacker, service: "svc") })
        #expect(await limited { _ = try await b.authenticate(username: "owner", password: "pw", address: attacker, service: "svc") })
        // Locked for the address that failed only.
        #expect(try await b.authenticate(username: "owner", password: "pw", address: IPAddress("198.51.100.7"),
                                         service: "svc").subject == "identity:owner")
        // The store holds digests of the keys, never a name, an address or a presented token.
        _ = try? await a.authenticate(username: AccessControl.refreshTokenUser, password: "secret-token", address: attacker, service: "svc")
        let stored = try await store.loginFailures(since: Date(timeIntervalSince1970: 0), atLeast: 1, limit: 100)
        #expect(stored.count == 3)
        for key in stored.keys {
            #expect(key.count == 64 && key.allSatisfy { $0.isHexDigit })
            #expect(!key.contains("owner") && !key.contains("203.0.113.66") && !key.contains("secret-token"))
        }
    }

    @Test func anAddressSprayingNamesOverTwoNodesIsStoppedOnBoth() async throws {
        let (a, b, _) = try await nodes()
        let sprayer = IPAddress("203.0.113.67")
        for i in 0..<FailureLimiter.perAddress {
            _ = try? await (i.isMultiple(of: 2) ? a : b).authenticate(username: "user\(i)", password: "guess", address: sprayer, service: "svc")
        }
        #expect(await limited { _ = try await a.authenticate(username: "owner", password: "pw", address: sprayer, service: "svc") })
        #expect(await limited { _ = try await b.authenticate(username: "owner", password: "pw", address: sprayer, service: "svc") })
    }

    /// A node reads the others' failures at most once per interval, not on every login: a lock-out
    /// reached on another node holds here once the interval has passed.
    @Test func anotherNodesLockOutIsSeenWithinTheCheckInterval() async throws {
        let time = NIOLockedValueBox(100.0)
        let (a, b, _) = try await nodes(failureCheckInterval: 1, clock: { time.withLockedValue { $0 } })
        let attacker = IPAddress("203.0.113.68")
        #expect(try await b.authenticate(username: "owner", password: "pw", address: attacker, service: "svc").subject == "identity:owner")
        for _ in 0..<FailureLimiter.perName {
            _ = try? await a.authenticate(username: "owner", password: "guess", address: attacker, service: "svc")
        }
        #expect(await limited { _ = try await a.authenticate(username: "owner", password: "pw", address: attacker, service: "svc") })
        time.withLockedValue { $0 += 0.5 }
        // within the interval b answers from what it read last (its cached credential, no store read)
        #expect(try await b.authenticate(username: "owner", password: "pw", address: attacker, service: "svc").subject == "identity:owner")
        time.withLockedValue { $0 += 0.5 }
        #expect(await limited { _ = try await b.authenticate(username: "owner", password: "pw", address: attacker, service: "svc") })
    }
}
