import Foundation
import OCIModel
import RegistryStore
import Testing
@testable import RegistryCore

/// Pure tests of the content rules: what the core plans for a push, a tag deletion, a lifecycle
/// deletion and a quarantine verdict, before any store sees it.
@Suite struct ContentPlanningTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func d(_ s: String) -> Digest { Digest.compute(Array(s.utf8)) }

    func record(_ name: String, subject: Digest? = nil) -> ManifestRecord {
        ManifestRecord(digest: d(name), mediaType: MediaType.ociManifest, size: 10, artifactType: nil, subject: subject,
                       annotations: nil, createdAt: t0)
    }

    func manifest(_ digest: Digest, state: QuarantineState?) -> RepositoryGraph.Manifest {
        .init(digest: digest.string, mediaType: MediaType.ociIndex, artifactType: nil, size: 10, subject: nil, createdAt: t0,
              unliveSince: nil, quarantineState: state)
    }

    @Test func aNewManifestStartsPendingOnlyWhileQuarantineIsOnAndItIsNotAReferrer() {
        #expect(ContentPlanner.initialQuarantine(enabled: true, subject: nil) == .pending)
        #expect(ContentPlanner.initialQuarantine(enabled: true, subject: d("subject")) == nil)
        #expect(ContentPlanner.initialQuarantine(enabled: false, subject: nil) == nil)
        #expect(ContentPlanner.initialQuarantine(enabled: false, subject: d("subject")) == nil)
    }

    @Test func aPushIsPlannedFromTheTagsCurrentTargetWithTheQuarantineStateAndHistoryCap() {
        var pushed = record("m")
        pushed.quarantineState = .failed // whatever the caller put there, the plan decides
        pushed.quarantineReason = "stale"
        let quota = QuotaLimit(name: "q", prefix: "r", limitBytes: 100)
        let p = ContentPlanner.push(repository: "r", record: pushed, bytes: [1], tag: "t", currentTagTarget: d("old"),
                                    blobs: [d("layer")], children: [], quarantineEnabled: true, quotas: [quota])
        #expect(p.record.quarantineState == .pending)
        #expect(p.record.quarantineReason == nil)
        #expect(p.expectedTagTarget == d("old"))
        #expect(p.tagHistoryLimit == ContentPlanner.tagHistoryLimit)
        #expect(p.tagHistoryLimit == 50)
        #expect(p.tag == "t")
        #expect(p.blobs == [d("layer")])
        #expect(p.quotas == [quota])

        let referrer = ContentPlanner.push(repository: "r", record: record("sig", subject: d("m")), bytes: [1], tag: nil,
                                           currentTagTarget: d("ignored"), blobs: [], children: [], quarantineEnabled: true, quotas: [])
        #expect(referrer.record.quarantineState == nil)
        #expect(referrer.expectedTagTarget == nil) // no tag, no precondition
        let off = ContentPlanner.push(repository: "r", record: record("m"), bytes: [1], tag: "t", currentTagTarget: nil, blobs: [],
                                      children: [], quarantineEnabled: false, quotas: [])
        #expect(off.record.quarantineState == nil)
        #expect(off.expectedTagTarget == nil)
    }

    @Test func aTagDeletionTakesItsLockAndIsRemembered() {
        let plan = ContentPlanner.tagDeletion(repository: "r", tag: "t", target: d("m"))
        #expect(plan == TagDeletion(repository: "r", tag: "t", expectedTarget: d("m"), dropLock: true, tagHistoryLimit: 50))
    }

    @Test func aManifestLosingATagRemembersItNewestLastAndIsStampedNotLiveWhenNoTagIsLeft() {
        let state = TagLoss(formerTags: ["a", "b", "c"], unliveSince: nil)
        // the lost tag moves to the newest end; the oldest beyond the cap go
        #expect(state.losing("a", limit: 3, tagsLeft: true, now: t0) == TagLoss(formerTags: ["b", "c", "a"], unliveSince: nil))
        #expect(state.losing("d", limit: 2, tagsLeft: true, now: t0).formerTags == ["c", "d"])
        #expect(state.losing("d", limit: 0, tagsLeft: true, now: t0).formerTags == [])
        // untagged now: stamped, but an earlier stamp is kept
        #expect(state.losing("d", limit: 5, tagsLeft: false, now: t0).unliveSince == t0)
        let stamped = TagLoss(formerTags: [], unliveSince: t0)
        #expect(stamped.losing("d", limit: 5, tagsLeft: false, now: t0.addingTimeInterval(60)).unliveSince == t0)
        #expect(TagLoss.history(["x", "y"], losing: "x", limit: 50) == ["y", "x"])
    }

    @Test func lifecycleDeletionsFollowTheSameRules() {
        var change = LifecycleChange()
        change.detail = "purge"
        change.deleteTags = [LifecycleTagDeletion(repository: "r", tag: "t", digest: "x")]
        let empty = RepositoryGraph(repository: "r", manifests: [:], children: [:], tags: [])
        let planned = ContentPlanner.withDeletionRules(change, graph: empty, reason: "purge", softDeleted: false)
        #expect(planned.dropLocks)
        #expect(planned.tagHistoryLimit == 50)
        #expect(planned.detail == "purge")
        #expect(planned.deleteTags == change.deleteTags)
        #expect(planned.cascadeTags.isEmpty)
        #expect(LifecycleChange().dropLocks == false)
    }

    @Test func switchingQuarantineOnPendsTheNeverQuarantinedButReferrersSwitchingOffReleasesEveryPending() {
        #expect(ContentPlanner.quarantineExisting == QuarantineSweep(from: nil, includeReferrers: false, to: .pending,
                                                                     reason: "quarantine enabled without grandfathering", eventDetail: nil))
        #expect(ContentPlanner.releasePending == QuarantineSweep(from: .pending, includeReferrers: true, to: nil, reason: nil,
                                                                 eventDetail: "released: quarantine disabled"))
    }

    @Test func everyTagOfADeletedManifestGoesWithItInNameOrderUnlessDeletedByName() {
        let gone = d("gone"), kept = d("kept")
        let g = RepositoryGraph(repository: "r", manifests: [gone.string: manifest(gone, state: nil), kept.string: manifest(kept, state: nil)],
                                children: [:], tags: [
            .init(name: "v2", digest: gone.string, updatedAt: t0), .init(name: "named", digest: gone.string, updatedAt: t0),
            .init(name: "V1", digest: gone.string, updatedAt: t0), .init(name: "latest", digest: kept.string, updatedAt: t0),
            .init(name: "a", digest: gone.string, updatedAt: t0),
        ])
        var change = LifecycleChange()
        change.deleteTags = [LifecycleTagDeletion(repository: "r", tag: "named", digest: gone.string)]
        change.deleteManifests = [LifecycleDeletion(repository: "r", digest: gone.string, mediaType: nil, reason: "requested")]
        let planned = ContentPlanner.withDeletionRules(change, graph: g, reason: "api", softDeleted: false)
        #expect(planned.cascadeTags.map(\.tag) == ["V1", "a", "v2"])   // byte order, the same in every backend
        #expect(planned.cascadeTags.allSatisfy { $0.digest == gone.string && $0.repository == "r" })
        #expect(planned.deleteTags == change.deleteTags)
    }

    /// What a deleted manifest leaves behind: its event's detail, and its recycle-bin entry's
    /// reason and tags (taken with it, then deleted by name, then its history newest first,
    /// each once; a tag named for it that points elsewhere is not its).
    @Test func eachDeletedManifestLeavesItsEventDetailAndItsBinEntry() throws {
        let gone = d("gone"), child = d("child"), other = d("other")
        var m = manifest(gone, state: nil)
        m.formerTags = ["old1", "shared", "old2"]   // oldest first, as stored
        let g = RepositoryGraph(repository: "r", manifests: [gone.string: m, child.string: manifest(child, state: nil),
                                                              other.string: manifest(other, state: nil)],
                                children: [:], tags: [
            .init(name: "b", digest: gone.string, updatedAt: t0), .init(name: "shared", digest: gone.string, updatedAt: t0),
            .init(name: "named", digest: gone.string, updatedAt: t0), .init(name: "elsewhere", digest: other.string, updatedAt: t0),
        ])
        var change = LifecycleChange()
        change.detail = "purge run 3"
        change.deleteTags = [LifecycleTagDeletion(repository: "r", tag: "named", digest: gone.string),
                             LifecycleTagDeletion(repository: "r", tag: "elsewhere", digest: gone.string)]
        change.deleteManifests = [LifecycleDeletion(repository: "r", digest: gone.string, mediaType: nil, reason: "requested"),
                                  LifecycleDeletion(repository: "r", digest: child.string, mediaType: nil, reason: "index deleted")]
        let soft = ContentPlanner.withDeletionRules(change, graph: g, reason: "purge", softDeleted: true).records
        #expect(soft[gone.string] == LifecycleDeletionRecord(eventDetail: "requested; purge run 3; soft-deleted", binReason: "purge",
                                                             binTags: ["b", "shared", "named", "old2", "old1"]))
        #expect(soft[child.string] == LifecycleDeletionRecord(eventDetail: "index deleted; purge run 3; soft-deleted",
                                                              binReason: "purge: index deleted", binTags: []))
        #expect(soft[other.string] == nil && soft.count == 2)
        // A full history: the tags deleted by name join its newest end and the oldest fall off,
        // as a tag deletion records them (only the newest `tagHistoryLimit` come back).
        var full = g
        full.manifests[gone.string]?.formerTags = (1...ContentPlanner.tagHistoryLimit).map { "h\($0)" }
        let capped = try #require(ContentPlanner.withDeletionRules(change, graph: full, reason: "purge", softDeleted: true)
            .records[gone.string]?.binTags)
        #expect(capped.prefix(4) == ["b", "shared", "named", "h50"])
        #expect(capped.count == 3 + ContentPlanner.tagHistoryLimit - 1 && !capped.contains("h1") && capped.last == "h2")
        // A stored history longer than the cap (written under a higher one) is cut even when no
        // tag is deleted by name.
        var longer = full
        longer.manifests[gone.string]?.formerTags = (1...(ContentPlanner.tagHistoryLimit + 10)).map { "h\($0)" }
        longer.tags = []
        var unnamed = change
        unnamed.deleteTags = []
        let cut = try #require(ContentPlanner.withDeletionRules(unnamed, graph: longer, reason: "purge", softDeleted: true)
            .records[gone.string]?.binTags)
        #expect(cut.count == ContentPlanner.tagHistoryLimit && cut.first == "h60" && cut.last == "h11")
        change.detail = nil
        let hard = ContentPlanner.withDeletionRules(change, graph: g, reason: "api", softDeleted: false).records
        #expect(hard[gone.string]?.eventDetail == "requested")
        #expect(hard[child.string]?.binReason == "api: index deleted")
    }

    @Test func quarantinedChildrenFollowTheirIndexWithAReasonNamingIt() throws {
        let index = d("index"), pending = d("pending"), failed = d("failed"), free = d("free")
        let g = RepositoryGraph(repository: "r", manifests: [
            index.string: manifest(index, state: .pending),
            pending.string: manifest(pending, state: .pending),
            failed.string: manifest(failed, state: .failed),
            free.string: manifest(free, state: nil),
        ], children: [index.string: [pending.string, free.string, failed.string]], tags: [])
        let plan = try #require(ContentPlanner.quarantine(g, digest: index, state: .passed, reason: "scanned"))
        #expect(plan.repository == "r")
        #expect(plan.digest == index)
        #expect(plan.state == .passed)
        #expect(plan.reason == "scanned")
        // never-quarantined children stay so; the others follow from the state the plan saw, in digest order
        let expected = [(pending, QuarantineState.pending), (failed, .failed)].sorted { $0.0.string < $1.0.string }
            .map { QuarantineUpdate.Follower(digest: $0.0, from: $0.1, reason: "scanned (via index \(index))") }
        #expect(plan.followers == expected)

        let noReason = try #require(ContentPlanner.quarantine(g, digest: index, state: .failed, reason: nil))
        #expect(noReason.followers.allSatisfy { $0.reason == "via index \(index)" })
        // a child's verdict does not touch its index, and an image has no followers
        #expect(ContentPlanner.quarantine(g, digest: pending, state: .passed, reason: nil)?.followers == [])
        // unknown manifest: nothing to plan
        #expect(ContentPlanner.quarantine(g, digest: d("absent"), state: .passed, reason: nil) == nil)
    }
}
