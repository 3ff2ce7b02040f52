import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static func consoleSession(_ hash: String, expires: Date, subjectID: String? = "id-1") -> ConsoleSessionRecord {
        ConsoleSessionRecord(idHash: hash, subject: "identity:alice", subjectID: subjectID, generation: 3, displayName: "alice",
                             csrf: "csrf-" + hash, createdAt: Date(timeIntervalSince1970: 1_700_000_000), expiresAt: expires)
    }

    static let consoleSessionCases: [Case] = [
        Case("console sessions: stored as given, found until they expire, one per hash, no event") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            let a = consoleSession("aa", expires: t.addingTimeInterval(60))
            let b = consoleSession("bb", expires: t.addingTimeInterval(120), subjectID: nil)
            let before = try await s.consoleSession(idHash: "aa", now: t)
            #expect(before == nil)
            #expect(try await s.createConsoleSession(a))
            #expect(try await s.createConsoleSession(b))
            // a second session under a stored hash is refused and changes nothing
            var other = a
            other.subject = "identity:mallory"
            #expect(try await s.createConsoleSession(other) == false)
            await #expect(try s.consoleSession(idHash: "aa", now: t) == a)
            await #expect(try s.consoleSession(idHash: "bb", now: t) == b)
            // expired at its expiry: not answered (and still not deleted by a read)
            await #expect(try s.consoleSession(idHash: "aa", now: t.addingTimeInterval(60)) == nil)
            await #expect(try s.consoleSession(idHash: "aa", now: t.addingTimeInterval(59)) == a)
            await #expect(try s.consoleSession(idHash: "cc", now: t) == nil)
            await #expect(try s.latestEventSequence() == 0)
        },
        Case("console sessions: deleting one ends only it; expired ones are removed by the sweep, live ones kept") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            for (hash, seconds) in [("a", 10.0), ("b", 20.0), ("c", 30.0), ("d", 40.0)] {
                let created = try await s.createConsoleSession(consoleSession(hash, expires: t.addingTimeInterval(seconds)))
                #expect(created)
            }
            #expect(try await s.deleteConsoleSession(idHash: "d"))
            #expect(try await s.deleteConsoleSession(idHash: "d") == false)
            await #expect(try s.consoleSession(idHash: "d", now: t) == nil)
            await #expect(try s.consoleSession(idHash: "c", now: t) != nil)
            #expect(try await s.deleteExpiredConsoleSessions(now: t.addingTimeInterval(20)) == 2)
            #expect(try await s.deleteExpiredConsoleSessions(now: t.addingTimeInterval(20)) == 0)
            // gone for good: an earlier clock no longer finds them
            await #expect(try s.consoleSession(idHash: "a", now: t) == nil)
            await #expect(try s.consoleSession(idHash: "b", now: t) == nil)
            await #expect(try s.consoleSession(idHash: "c", now: t.addingTimeInterval(29)) != nil)
        },
        Case("console sessions: trimming keeps an identity's newest sessions and touches no other identity's") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            for i in 0..<5 {
                var r = consoleSession("alice-\(i)", expires: t.addingTimeInterval(3600))
                r.createdAt = t.addingTimeInterval(Double(i))
                let created = try await s.createConsoleSession(r)
                #expect(created)
            }
            var bob = consoleSession("bob", expires: t.addingTimeInterval(3600))
            bob.subject = "identity:bob"
            let createdBob = try await s.createConsoleSession(bob)
            #expect(createdBob)
            #expect(try await s.trimConsoleSessions(subject: "identity:alice", keep: 2) == 3)
            for i in 0..<5 {
                await #expect(try (s.consoleSession(idHash: "alice-\(i)", now: t) != nil) == (i >= 3))
            }
            await #expect(try s.consoleSession(idHash: "bob", now: t) == bob)
            #expect(try await s.trimConsoleSessions(subject: "identity:alice", keep: 2) == 0)
            #expect(try await s.trimConsoleSessions(subject: "identity:nobody' OR '1'='1", keep: 0) == 0)
            await #expect(try s.consoleSession(idHash: "bob", now: t) == bob)
        },
    ]
}
