import Access
import BerthAPIContract
import Foundation
import OCIModel
import RegistryStore
import Testing
@testable import ReplicationFeature

/// Access records as last-writer-wins registers (issue 13 item 2): how an `access` event of a
/// peer's feed maps to its step, and the conflict model's decisions on records (pure logic; the
/// applier's I/O is in tests/interop/test_replication.py).
@Suite struct AccessReplicationPlanTests {
    static let d1 = Digest.compute(Array("record one".utf8))

    static func access(_ detail: String, digest: Digest? = d1, region: String = "westeurope", hlc: String = "1700000000000.3",
                       replaces: String? = nil) throws -> ApplyStep {
        try ReplicationPlanTests.step(ReplicationPlanTests.view(1, "access", region: region, hlc: hlc, repo: "", digest: digest,
                                                                 detail: detail, replaces: replaces))
    }

    static let s = ReplicationPlanTests.stamp(1_700_000_000_000, 3, "westeurope")

    @Test func anAccessEventIsARegisterWriteOfItsRecordOrATombstone() throws {
        #expect(try Self.access("identity:alice", replaces: "1699999999999.0@southeastasia")
                == .access(kind: .identity, name: "alice", write: RegisterWrite(value: .digest(Self.d1.string), stamp: Self.s,
                                                                                 replaces: ReplicationPlanTests.stamp(1_699_999_999_999, 0, "southeastasia"))))
        #expect(try Self.access("token:ci", digest: nil) == .access(kind: .token, name: "ci", write: RegisterWrite(value: .tombstone, stamp: Self.s)))
        #expect(try Self.access("scope-map:team") == .access(kind: .scopeMap, name: "team", write: RegisterWrite(value: .digest(Self.d1.string), stamp: Self.s)))
        #expect(try Self.access("registry:admin") == .access(kind: .registry, name: "admin", write: RegisterWrite(value: .digest(Self.d1.string), stamp: Self.s)))
    }

    @Test func unknownKindsBadNamesFlagTombstonesAndEchoesAreSkipped() throws {
        for step in [try Self.access("network:rules"), try Self.access("identity"), try Self.access("identity:../owner"),
                     try Self.access("identity:Alice"), try Self.access("token:" + String(repeating: "a", count: 65)),
                     try Self.access("registry:network"), try Self.access("registry:admin", digest: nil),
                     try Self.access("identity:alice", region: "southeastasia")] {
            guard case .skip = step else {
                Issue.record("not skipped: \(step)")
                continue
            }
        }
    }

    /// Region A creates token X while B creates identity Y: different registers, both applied.
    /// B deletes identity Y after a late, older write of Y from A: the tombstone wins and the late
    /// write goes to the conflict log, so a deleted identity never comes back.
    @Test func differentRecordsBothSurviveAndATombstoneBeatsAnOlderConcurrentWrite() {
        let early = ReplicationPlanTests.stamp(1_700_000_000_000, 0, "westeurope")
        let later = ReplicationPlanTests.stamp(1_700_000_000_500, 0, "southeastasia")
        // two registers: nothing of one is the other's current write
        #expect(ReplicationPlan.merge(RegisterWrite(value: .digest("token-x"), stamp: early), into: nil).effect == .applied)
        #expect(ReplicationPlan.merge(RegisterWrite(value: .digest("identity-y"), stamp: later), into: nil).effect == .applied)
        // identity Y: deleted here (later) while an older write of it from the peer was on its way
        let tombstone = RegisterWrite(value: .tombstone, stamp: later)
        let lateOlder = RegisterWrite(value: .digest("identity-y-v2"), stamp: early)
        let outcome = ReplicationPlan.merge(lateOlder, into: tombstone)
        #expect(outcome.effect == .discarded && outcome.conflictLoser == lateOlder)
        // the peer's newer deletion of a record written here earlier wins, the local write its predecessor
        let written = RegisterWrite(value: .digest("identity-y"), stamp: early)
        let deletion = RegisterWrite(value: .tombstone, stamp: later, replaces: early)
        let applied = ReplicationPlan.merge(deletion, into: written)
        #expect(applied.effect == .applied && applied.conflictLoser == nil)
        #expect(ReplicationApplier.describe(.access(kind: .token, name: "ci", write: deletion)) == ("access", "", "token:ci", .tombstone))
    }
}
