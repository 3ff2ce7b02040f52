import BerthAPIContract
import Foundation
import OCIModel
import RegistryStore
import Testing
@testable import ReplicationFeature

/// What the replication consumer does with each event of a peer's feed, and the conflict model's
/// decisions in the orders events arrive in (pure logic; the two-process proof is
/// tests/interop/test_replication.py).
@Suite struct ReplicationPlanTests {
    static let d1 = Digest.compute(Array("one".utf8))
    static let d2 = Digest.compute(Array("two".utf8))

    static func view(_ seq: Int64, _ action: String, region: String = "westeurope", hlc: String = "1700000000000.0", repo: String = "geo/app",
                     digest: Digest? = d1, tag: String? = nil, detail: String? = nil, replaces: String? = nil) -> ReplicationEventView {
        ReplicationEventView(sequence: seq, at: Date(timeIntervalSince1970: 1_700_000_000), action: action, repository: repo,
                             digest: digest?.string, mediaType: nil, size: nil, tag: tag, subject: nil, detail: detail, region: region,
                             hlc: hlc, replaces: replaces)
    }

    static func step(_ v: ReplicationEventView, local: String = "southeastasia") throws -> ApplyStep {
        ReplicationPlan.step(try PeerEvent(v), localRegion: local)
    }

    static func stamp(_ ms: Int64, _ logical: UInt32 = 0, _ region: String) -> WriteStamp {
        WriteStamp(hlc: HLCStamp(milliseconds: ms, logical: logical), region: region)
    }

    @Test func eachKindOfEventMapsToItsStep() throws {
        let s = Self.stamp(1_700_000_000_000, 3, "westeurope")
        #expect(try Self.step(Self.view(1, "push")) == .manifest(repository: "geo/app", digest: Self.d1))
        #expect(try Self.step(Self.view(2, "tag.move", hlc: "1700000000000.3", tag: "v1", replaces: "1699999999999.0@southeastasia"))
                == .tag(repository: "geo/app", tag: "v1",
                        write: RegisterWrite(value: .digest(Self.d1.string), stamp: s, replaces: Self.stamp(1_699_999_999_999, 0, "southeastasia"))))
        #expect(try Self.step(Self.view(3, "tag.delete", hlc: "1700000000000.3", tag: "v1"))
                == .tag(repository: "geo/app", tag: "v1", write: RegisterWrite(value: .tombstone, stamp: s)))
        // a tag that went with its manifest is no write of the tag's register
        #expect(try Self.step(Self.view(3, "tag.delete", hlc: "1700000000000.3", tag: "v1", detail: EventAction.cascadeDetail))
                == .cascade(repository: "geo/app", tag: "v1", digest: Self.d1))
        #expect(try Self.step(Self.view(4, "delete")) == .deleteManifest(repository: "geo/app", digest: Self.d1))
        #expect(try Self.step(Self.view(5, "quarantine", detail: "Failed: critical findings"))
                == .quarantine(repository: "geo/app", digest: Self.d1, state: .failed, reason: "critical findings"))
        #expect(try Self.step(Self.view(6, "quarantine", detail: "Passed")) == .quarantine(repository: "geo/app", digest: Self.d1, state: .passed, reason: nil))
        let lock = try Self.step(Self.view(7, "lock", digest: nil, tag: "v1", detail: "read=true write=false delete=false list=true"))
        guard case .lock(let repo, let tag, let digest, let attributes, let stamp) = lock else {
            Issue.record("not a lock: \(lock)")
            return
        }
        #expect(repo == "geo/app" && tag == "v1" && digest == nil && stamp.region == "westeurope")
        #expect(!attributes.writeEnabled && !attributes.deleteEnabled && attributes.readEnabled && attributes.listEnabled)
        #expect(attributes.detail == "read=true write=false delete=false list=true")
        // a setting: a register of the document whose digest the event carries
        #expect(try Self.step(Self.view(8, "setting", hlc: "1700000000000.3", repo: "", detail: "quarantine-policy",
                                        replaces: "1699999999999.0@southeastasia"))
                == .setting(name: "quarantine-policy", write: RegisterWrite(value: .digest(Self.d1.string), stamp: s,
                                                                             replaces: Self.stamp(1_699_999_999_999, 0, "southeastasia"))))
    }

    /// Settings written by an older build or a cache rule change carry no document digest, and
    /// a name a setting cannot have is not written here.
    @Test func aSettingWithoutItsDocumentsDigestOrWithABadNameIsSkipped() throws {
        for v in [Self.view(1, "setting", repo: "", digest: nil, detail: "cache-rules"),
                  Self.view(1, "setting", repo: "", detail: "../keys"), Self.view(1, "setting", repo: "", detail: ""),
                  Self.view(1, "setting", repo: "", detail: String(repeating: "a", count: 65)),
                  Self.view(1, "setting", repo: "", detail: "some-future-setting")] {
            guard case .skip = try Self.step(v) else {
                Issue.record("applied: \(v.detail ?? "nil")")
                continue
            }
        }
    }

    @Test func echoesBlobsAndWhatIsNotReplicatedAreSkipped() throws {
        // this region's own change, come back through the peer
        #expect(try Self.step(Self.view(1, "tag.move", region: "southeastasia", tag: "v1")) == .skip("echo of this region's change"))
        for action in ["blob.push", "blob.delete", "gc.run", "task.run.queued", "setting", "retention.run", "scan"] {
            guard case .skip = try Self.step(Self.view(1, action)) else {
                Issue.record("\(action) is applied")
                continue
            }
        }
        // an action this build does not know is skipped, not a failure that stops replication
        guard case .skip = try Self.step(Self.view(1, "future.thing")) else { Issue.record("unknown action applied"); return }
        // malformed details are not guessed at
        guard case .skip = try Self.step(Self.view(1, "lock", detail: "read=yes")) else { Issue.record("bad lock applied"); return }
        guard case .skip = try Self.step(Self.view(1, "quarantine", detail: "Maybe")) else { Issue.record("bad verdict applied"); return }
        guard case .skip = try Self.step(Self.view(1, "tag.move", tag: nil)) else { Issue.record("tag move without tag applied"); return }
    }

    @Test(arguments: [
        view(1, "push", hlc: "-1.0"), view(1, "push", hlc: "1.2.3"), view(1, "push", region: "West Europe"),
        view(1, "push", region: ""), view(1, "tag.move", tag: "t", replaces: "1.0"), view(1, "tag.move", tag: "t", replaces: "1.0@Bad Region"),
        view(1, "tag.move", tag: "../etc"), view(1, "tag.move", tag: ".hidden"), view(1, "push", repo: "Upper/Case"),
        view(1, "push", repo: "a//b"), view(1, "push", repo: "/abs"),
    ])
    func malformedFeedEntriesAreRefused(_ v: ReplicationEventView) {
        #expect(throws: ReplicationError.self) { _ = try PeerEvent(v) }
    }

    @Test func aBadDigestIsRefused() {
        var v = Self.view(1, "push")
        v.digest = "sha256:nothex"
        #expect(throws: ReplicationError.self) { _ = try PeerEvent(v) }
    }

    @Test func theCurrentWriteComesFromTheNewestEventsHere() {
        let local = Event(sequence: 9, timestamp: Date(), action: .tagMove, repository: "r", digest: Self.d2.string, tag: "t", mediaType: nil,
                          size: nil, detail: nil, actor: nil, address: nil, requestID: nil, requestHost: nil, requestMethod: nil, userAgent: nil,
                          stamp: EventStamp(region: nil, milliseconds: 20, logical: 1))
        var replicated = local
        replicated.sequence = 5
        replicated.digest = Self.d1.string
        replicated.stamp = EventStamp(region: "westeurope", milliseconds: 10, logical: 0)
        let current = ReplicationPlan.current([local, replicated], localRegion: "southeastasia")
        #expect(current == RegisterWrite(value: .digest(Self.d2.string), stamp: Self.stamp(20, 1, "southeastasia"),
                                         replaces: Self.stamp(10, 0, "westeurope")))
        var deletion = local
        deletion.action = .tagDelete
        #expect(ReplicationPlan.current([deletion], localRegion: "x")?.value == .tombstone)
        #expect(ReplicationPlan.current([], localRegion: "x") == nil)
        // marks answer as the writes they stand for
        var mark = local
        mark.action = .registerMark
        mark.detail = EventAction.manifestDelete.rawValue
        #expect(ReplicationPlan.current([mark], localRegion: "x")?.value == .tombstone)
        mark.detail = EventAction.tagMove.rawValue
        #expect(ReplicationPlan.current([mark], localRegion: "x")?.value == .digest(Self.d2.string))
    }

    /// A manifest's presence is the write with the greatest stamp, whatever the log order.
    @Test func presenceIsTheWriteWithTheGreatestStamp() {
        let push = Event(sequence: 9, timestamp: Date(), action: .manifestPush, repository: "r", digest: Self.d1.string, tag: nil, mediaType: nil,
                         size: nil, detail: nil, actor: nil, address: nil, requestID: nil, requestHost: nil, requestMethod: nil, userAgent: nil,
                         stamp: EventStamp(region: "westeurope", milliseconds: 10, logical: 0))
        var move = push
        move.sequence = 12
        move.action = .tagMove
        move.tag = "t"
        move.stamp = EventStamp(region: "eastus", milliseconds: 30, logical: 0)
        var deletion = push
        deletion.sequence = 11
        deletion.action = .registerMark
        deletion.detail = EventAction.manifestDelete.rawValue
        deletion.stamp = EventStamp(region: nil, milliseconds: 20, logical: 0)
        #expect(ReplicationPlan.newest([push, move, deletion], localRegion: "here")
                == RegisterWrite(value: .digest(Self.d1.string), stamp: Self.stamp(30, 0, "eastus")))
        #expect(ReplicationPlan.newest([deletion, push], localRegion: "here") == RegisterWrite(value: .tombstone, stamp: Self.stamp(20, 0, "here")))
        // equal clocks: the region decides
        move.stamp = EventStamp(region: "aaa", milliseconds: 20, logical: 0)
        #expect(ReplicationPlan.newest([move, deletion], localRegion: "here")?.value == .tombstone)
        #expect(ReplicationPlan.newest([], localRegion: "here") == nil)
    }

    @Test func aMarkIsAppliedAsTheWriteItStandsFor() throws {
        let s = Self.stamp(1_700_000_000_000, 3, "westeurope")
        #expect(try Self.step(Self.view(1, "replication.mark", hlc: "1700000000000.3", detail: "push")) == .manifest(repository: "geo/app", digest: Self.d1))
        #expect(try Self.step(Self.view(2, "replication.mark", hlc: "1700000000000.3", detail: "delete"))
                == .deleteManifest(repository: "geo/app", digest: Self.d1))
        #expect(try Self.step(Self.view(3, "replication.mark", hlc: "1700000000000.3", tag: "v1", detail: "tag.move", replaces: "1.0@eastus"))
                == .tag(repository: "geo/app", tag: "v1", write: RegisterWrite(value: .digest(Self.d1.string), stamp: s,
                                                                             replaces: Self.stamp(1, 0, "eastus"))))
        #expect(try Self.step(Self.view(4, "replication.mark", hlc: "1700000000000.3", digest: nil, tag: "v1", detail: "tag.delete"))
                == .tag(repository: "geo/app", tag: "v1", write: RegisterWrite(value: .tombstone, stamp: s)))
        // a mark of anything else, or of nothing, is not applied; nor is an echo of this region's own
        for detail in ["lock", "access", "replication.mark", "", "push "] {
            guard case .skip = try Self.step(Self.view(5, "replication.mark", detail: detail)) else {
                Issue.record("a mark of \(detail) was applied")
                continue
            }
        }
        guard case .skip = try Self.step(Self.view(6, "replication.mark", detail: nil)) else { Issue.record("no detail applied"); return }
        guard case .skip = try Self.step(Self.view(7, "replication.mark", region: "southeastasia", detail: "push")) else {
            Issue.record("an echo was applied")
            return
        }
    }

    /// The orders the consumer meets: a peer's successor of what is here applies without a
    /// conflict; a concurrent older write loses and is logged; a concurrent newer one wins and the
    /// write here is logged; a late copy of a write its successor already replaced is dropped quietly.
    @Test func registerWritesInApplyOrder() {
        let here = RegisterWrite(value: .digest(Self.d1.string), stamp: Self.stamp(100, 0, "southeastasia"))
        // successor: the peer saw our write and moved the tag on
        let successor = RegisterWrite(value: .digest(Self.d2.string), stamp: Self.stamp(200, 0, "westeurope"), replaces: here.stamp)
        #expect(ReplicationPlan.merge(successor, into: here) == MergeOutcome(effect: .applied, conflictLoser: nil))
        // concurrent and newer: applied, ours lost
        let newer = RegisterWrite(value: .digest(Self.d2.string), stamp: Self.stamp(200, 0, "westeurope"))
        #expect(ReplicationPlan.merge(newer, into: here) == MergeOutcome(effect: .applied, conflictLoser: here))
        // concurrent and older: not applied, theirs lost
        let older = RegisterWrite(value: .tombstone, stamp: Self.stamp(50, 0, "westeurope"))
        #expect(ReplicationPlan.merge(older, into: here) == MergeOutcome(effect: .discarded, conflictLoser: older))
        // same instant: the region name breaks the tie, the same way in both regions
        let tie = RegisterWrite(value: .digest(Self.d2.string), stamp: Self.stamp(100, 0, "westeurope"))
        #expect(ReplicationPlan.merge(tie, into: here).effect == .applied)
        #expect(ReplicationPlan.merge(here, into: tie).effect == .discarded)
        // a late copy of the write our current write replaced
        let current = RegisterWrite(value: .digest(Self.d2.string), stamp: Self.stamp(300, 0, "southeastasia"), replaces: Self.stamp(200, 0, "westeurope"))
        #expect(ReplicationPlan.merge(newer, into: current) == MergeOutcome(effect: .discarded, conflictLoser: nil))
        // a first write
        #expect(ReplicationPlan.merge(newer, into: nil) == MergeOutcome(effect: .applied, conflictLoser: nil))
        // the same write delivered twice
        #expect(ReplicationPlan.merge(here, into: here).effect == .duplicate)
    }

    @Test func aStampFarInTheFutureIsRefused() throws {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        try ReplicationPlan.checkDrift(Self.stamp(1_700_000_000_000 + 60_000, 0, "w"), now: now)
        try ReplicationPlan.checkDrift(Self.stamp(1_000, 0, "w"), now: now)
        #expect(throws: ReplicationError.self) {
            try ReplicationPlan.checkDrift(Self.stamp(1_700_000_000_000 + 301_000, 0, "w"), now: now)
        }
    }

    @Test func writeStampsRoundTripTheirWireForm() {
        let s = Self.stamp(1_700_000_000_123, 7, "southeastasia")
        #expect(WriteStamp(parsing: s.description) == s)
        #expect(WriteStamp(parsing: "1.2") == nil && WriteStamp(parsing: "x@y") == nil && WriteStamp(parsing: "1.2@") == nil)
        #expect(WriteStamp(EventStamp(region: nil, milliseconds: 5, logical: 2), localRegion: "here") == Self.stamp(5, 2, "here"))
        #expect(s.eventStamp == EventStamp(region: "southeastasia", milliseconds: 1_700_000_000_123, logical: 7))
    }
}
