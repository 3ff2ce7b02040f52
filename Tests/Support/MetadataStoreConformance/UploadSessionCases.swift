import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let uploadSessionCases: [Case] = [
        Case("createUploadSession: version 1, state and owner kept; a second create of the id changes nothing") { s in
            let created = try await s.createUploadSession(id: "u1", owner: "library/a", state: [1, 2, 0, 255])
            let again = try await s.createUploadSession(id: "u1", owner: "other", state: [9])
            #expect(created && !again)
            let session = try #require(try await s.uploadSession(id: "u1"))
            #expect(session.id == "u1" && session.owner == "library/a" && session.version == 1 && session.state == [1, 2, 0, 255])
            let missing = try await s.uploadSession(id: "u2")
            #expect(missing == nil)
            let count = try await s.uploadSessionCount()
            #expect(count == 1)
        },
        Case("updateUploadSession: compare-and-swap on the version; a stale or unknown update changes nothing") { s in
            _ = try await s.createUploadSession(id: "u1", owner: "r", state: [1])
            let v2 = try await s.updateUploadSession(id: "u1", expectedVersion: 1, state: [2])
            let stale = try await s.updateUploadSession(id: "u1", expectedVersion: 1, state: [3])
            let unknown = try await s.updateUploadSession(id: "nothing", expectedVersion: 1, state: [4])
            #expect(v2 == 2 && stale == nil && unknown == nil)
            let session = try #require(try await s.uploadSession(id: "u1"))
            #expect(session.version == 2 && session.state == [2] && session.owner == "r")
            let v3 = try await s.updateUploadSession(id: "u1", expectedVersion: 2, state: [])
            let empty = try await s.uploadSession(id: "u1")
            #expect(v3 == 3 && empty?.state == [])
        },
        Case("updateUploadSession: of many updates from one version at once, exactly one wins") { s in
            _ = try await s.createUploadSession(id: "u1", owner: "r", state: [0])
            let winners = try await withThrowingTaskGroup(of: UInt8?.self) { group in
                for i in UInt8(1)...8 {
                    group.addTask { try await s.updateUploadSession(id: "u1", expectedVersion: 1, state: [i]) == nil ? nil : i }
                }
                var won: [UInt8] = []
                for try await w in group { if let w { won.append(w) } }
                return won
            }
            #expect(winners.count == 1)
            let session = try #require(try await s.uploadSession(id: "u1"))
            #expect(session.version == 2 && session.state == winners)
        },
        Case("deleteUploadSession: gone for reads and updates; idleUploadSessions and the count follow") { s in
            _ = try await s.createUploadSession(id: "b", owner: "r", state: [1])
            _ = try await s.createUploadSession(id: "a", owner: "r", state: [1])
            let idleAll = try await s.idleUploadSessions(for: 0)
            let idleNone = try await s.idleUploadSessions(for: 3600)
            #expect(idleAll == ["a", "b"] && idleNone == [])
            try await s.deleteUploadSession(id: "b")
            try await s.deleteUploadSession(id: "never")
            let gone = try await s.uploadSession(id: "b")
            let update = try await s.updateUploadSession(id: "b", expectedVersion: 1, state: [2])
            let idle = try await s.idleUploadSessions(for: 0)
            let count = try await s.uploadSessionCount()
            #expect(gone == nil && update == nil && idle == ["a"] && count == 1)
        },
        Case("uploadSessions(idPrefix:): only the sessions of that id namespace, in id order, with owner and state") { s in
            // Ids around the prefix in byte order ("private." sorts right after "private-").
            for (id, owner) in [("private-b2", "r#private#x"), ("private-a1", "r#private#y"), ("privatea", "r"),
                                ("private.", "r"), ("prival", "r"), ("0d5c-uuid", "r"), ("private", "r")] {
                _ = try await s.createUploadSession(id: id, owner: owner, state: Array(id.utf8))
            }
            let listed = try await s.uploadSessions(idPrefix: "private-")
            #expect(listed.map(\.id) == ["private-a1", "private-b2"])
            #expect(listed.map(\.owner) == ["r#private#y", "r#private#x"] && listed.first?.state == Array("private-a1".utf8))
            #expect(listed.allSatisfy { $0.version == 1 })
            _ = try await s.updateUploadSession(id: "private-a1", expectedVersion: 1, state: [7])
            try await s.deleteUploadSession(id: "private-b2")
            let after = try await s.uploadSessions(idPrefix: "private-")
            #expect(after.map(\.id) == ["private-a1"] && after.first?.state == [7] && after.first?.version == 2)
            let none = try await s.uploadSessions(idPrefix: "nothing-")
            #expect(none.isEmpty)
        },
    ]
}
