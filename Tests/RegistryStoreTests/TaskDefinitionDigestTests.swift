import Foundation
import Testing
@testable import RegistryStore

/// `TaskRecord.definitionDigest`: what `berth run` / `berth build` check before their run is
/// queued. Every field a saver sets changes it, field boundaries count, the triggers'
/// bookkeeping does not, and it is the same however the values were inserted.
@Suite struct TaskDefinitionDigestTests {
    static func record() -> TaskRecord {
        var r = TaskRecord(name: "quick-build", taskFile: "version: v1.1.0\nsteps:\n  - build: -t $Registry/app:$ID .\n", context: nil,
                           schedule: nil, values: ["a": "1", "b": "2"], timeoutSeconds: 600, repositories: ["app"], createdBy: "owner",
                           createdAt: Date(timeIntervalSince1970: 1_700_000_000), updatedAt: Date(timeIntervalSince1970: 1_700_000_000))
        r.command = nil
        r.scope = nil
        return r
    }

    @Test func everyFieldASaverSetsChangesIt() {
        let base = Self.record().definitionDigest
        #expect(base.hasPrefix("sha256:") && base.count == 71)
        let changes: [(String, (inout TaskRecord) -> Void)] = [
            ("taskFile", { $0.taskFile += " " }),
            ("context", { $0.context = "" }),
            ("values", { $0.values["a"] = "2" }),
            ("value added", { $0.values["c"] = "" }),
            ("timeout", { $0.timeoutSeconds = 601 }),
            ("repositories", { $0.repositories = ["app", "other"] }),
            ("command", { $0.command = "" }),
            ("scope", { $0.scope = [] }),
        ]
        var seen: Set<String> = [base]
        for (what, change) in changes {
            var r = Self.record()
            change(&r)
            #expect(seen.insert(r.definitionDigest).inserted, "\(what) did not change the digest")
        }
    }

    @Test func fieldBoundariesCount() {
        var a = Self.record(), b = Self.record()
        a.values = ["ab": "c"]
        b.values = ["a": "bc"]
        #expect(a.definitionDigest != b.definitionDigest)
        a = Self.record(); b = Self.record()
        a.repositories = ["a", "b"]
        b.repositories = ["a"]
        b.scope = ["b"]
        a.scope = []
        #expect(a.definitionDigest != b.definitionDigest)
    }

    @Test func bookkeepingAndInsertionOrderDoNot() {
        let base = Self.record().definitionDigest
        var r = Self.record()
        r.updatedAt = Date()
        r.lastScheduledAt = Date()
        r.enabled = false
        r.schedule = "0 3 * * *"
        r.externalBaseDigests = ["docker.io/library/x:1": "sha256:" + String(repeating: "a", count: 64)]
        r.baseTriggeredAt = Date()
        #expect(r.definitionDigest == base)
        var values: [String: String] = [:]
        for key in ["b", "a"] { values[key] = key == "a" ? "1" : "2" }
        r.values = values
        #expect(r.definitionDigest == base)
    }
}
