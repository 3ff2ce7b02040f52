import Foundation
import OCIModel
import RegistryStore
import Testing

struct PlanFailed: Error {}

extension MetadataStoreConformance {
    static let lifecycleCases: [Case] = [
        Case("repositoryGraph: nil for an unknown repository; manifests, index children and tags") { s in
            await #expect(try s.repositoryGraph("r") == nil)
            let child = try await image(s, "r", "child", tag: "c")
            let index = push("r", "index", tag: "i", children: [child.record.digest])
            try await store(s, index)
            try await store(s, push("other", "elsewhere", tag: "x"))
            let g = try await #require(try s.repositoryGraph("r"))
            #expect(g.repository == "r")
            #expect(Set(g.manifests.keys) == [child.record.digest.string, index.record.digest.string])
            #expect(g.manifests[index.record.digest.string]?.mediaType == MediaType.ociIndex)
            #expect(g.manifests[child.record.digest.string]?.size == child.record.size)
            #expect(g.manifests[child.record.digest.string]?.unliveSince == nil)
            #expect(g.children == [index.record.digest.string: [child.record.digest.string]])
            #expect(Set(g.tags.map(\.name)) == ["c", "i"])
            #expect(g.tags.first { $0.name == "c" }?.digest == child.record.digest.string)
        },
        Case("repositoryGraph around a digest: the manifest and the children it lists, nothing else, no tags") { s in
            let child = try await image(s, "r", "child", tag: "c")
            await #expect(try s.repositoryGraph("unknown", around: child.record.digest) == nil)
            let sibling = try await image(s, "r", "sibling", tag: "s")
            let index = push("r", "index", tag: "i", children: [child.record.digest])
            try await store(s, index)
            let outer = push("r", "outer", children: [index.record.digest])
            try await store(s, outer)
            // the same index digest in another repository, listing another child there
            let elsewhere = try await image(s, "other", "other-child")
            try await store(s, push("other", "index", children: [elsewhere.record.digest]))
            let g = try await #require(try s.repositoryGraph("r", around: index.record.digest))
            #expect(g.repository == "r")
            #expect(Set(g.manifests.keys) == [index.record.digest.string, child.record.digest.string])
            let whole = try await #require(try s.repositoryGraph("r"))
            #expect(g.manifests[child.record.digest.string] == whole.manifests[child.record.digest.string])
            #expect(g.children == [index.record.digest.string: [child.record.digest.string]])
            #expect(g.tags.isEmpty)
            let image = try await #require(try s.repositoryGraph("r", around: sibling.record.digest))
            #expect(Set(image.manifests.keys) == [sibling.record.digest.string])
            #expect(image.children.isEmpty)
            let absent = try await #require(try s.repositoryGraph("r", around: digest("absent")))
            #expect(absent.manifests.isEmpty)
        },
        Case("applyLifecycle: unknown repository is nil and the plan is not asked") { s in
            let change = try await s.applyLifecycle(repository: "unknown", softDeleteUntil: nil) { _ in
                Issue.record("plan called for an unknown repository")
                return LifecycleChange()
            }
            #expect(change == nil)
        },
        Case("applyLifecycle: a denied change applies nothing and appends nothing") { s in
            let p = try await image(s, "r", "m", tag: "t")
            let mark = try await s.latestEventSequence()
            let change = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.deleteTags = [LifecycleTagDeletion(repository: "r", tag: "t", digest: p.record.digest.string)]
                c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "requested")]
                c.unlinkAllBlobs = true
                c.denied = "locked"
                return c
            }
            #expect(change?.denied == "locked")
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) != nil)
            await #expect(try s.tagTarget(repository: "r", tag: "t") == p.record.digest)
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("layer-of-m")) != nil)
            await #expect(try events(s, after: mark).isEmpty)
        },
        Case("applyLifecycle: a plan that throws applies nothing") { s in
            let p = try await image(s, "r", "m", tag: "t")
            let mark = try await s.latestEventSequence()
            await #expect(throws: PlanFailed.self) {
                try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in throw PlanFailed() }
            }
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) != nil)
            await #expect(try events(s, after: mark).isEmpty)
        },
        Case("applyLifecycle: tag deletions apply only while the tag still points at the planned digest") { s in
            let a = push("r", "a", tag: "t"), b = push("r", "b", tag: "u")
            try await store(s, a)
            try await store(s, b)
            let mark = try await s.latestEventSequence()
            let change = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.detail = "retention run 1"
                c.deleteTags = [LifecycleTagDeletion(repository: "r", tag: "t", digest: a.record.digest.string),
                                LifecycleTagDeletion(repository: "r", tag: "u", digest: a.record.digest.string),
                                LifecycleTagDeletion(repository: "r", tag: "absent", digest: a.record.digest.string)]
                return c
            }
            #expect(change?.deleteTags.count == 3) // the change is returned as planned
            await #expect(try s.tagTarget(repository: "r", tag: "t") == nil)
            await #expect(try s.tagTarget(repository: "r", tag: "u") == b.record.digest)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.tagDelete])
            #expect(e.first?.tag == "t")
            #expect(e.first?.detail == "retention run 1")
            // the manifest itself stays, now not live
            await #expect(try s.manifest(repository: "r", digest: a.record.digest) != nil)
            await #expect(try s.repositoryGraph("r")?.manifests[a.record.digest.string]?.unliveSince != nil)
        },
        Case("applyLifecycle: a hard manifest delete removes it with its tags, refs and lock, with events") { s in
            let p = try await image(s, "r", "m", tag: "b")
            try await store(s, push("r", "m", tag: "a"))
            try await s.setLock(LockRecord(repository: "r", digest: p.record.digest.string, deleteEnabled: false))
            let mark = try await s.latestEventSequence()
            let change = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.dropLocks = true
                c.detail = "purge run 7"
                c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "untagged")]
                c.cascadeTags = ["a", "b"].map { LifecycleTagDeletion(repository: "r", tag: $0, digest: p.record.digest.string) }
                return c
            }
            #expect(change?.deleteManifests.count == 1)
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) == nil)
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == [])
            await #expect(try s.locks() == [])
            await #expect(try s.deletedManifests(repository: "r") == [])
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.tagDelete, EventAction.tagDelete, EventAction.manifestDelete])
            #expect(e.prefix(2).map(\.tag) == ["a", "b"])
            #expect(e.prefix(2).allSatisfy { $0.detail == EventAction.cascadeDetail })
            #expect(e.last?.detail == "untagged")   // no record planned: the deletion's reason
            #expect(e.last?.digest == p.record.digest.string)
            #expect(e.last?.size == p.record.size)
            // the layer is no longer referenced: its link is garbage now
            await #expect(try s.unreferencedLinks(before: future, limit: 10).map(\.digest) == [digest("layer-of-m").string])
            // deleting what is gone changes nothing
            let again = try await actions(s) { try await deleteManifests(s, "r", [p.record.digest]) }
            #expect(again == [])
        },
        Case("applyLifecycle: unliveUpdates set and clear unliveSince") { s in
            let p = push("r", "m")
            try await store(s, p)
            let when = Date(timeIntervalSince1970: 1_600_000_000)
            let acts = try await actions(s) {
                _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                    var c = LifecycleChange()
                    c.unliveUpdates = [p.record.digest.string: when]
                    return c
                }
            }
            #expect(acts == [])
            await #expect(try s.repositoryGraph("r")?.manifests[p.record.digest.string]?.unliveSince == when)
            await #expect(try s.repositoriesWithUnliveManifests(before: when.addingTimeInterval(1)) == ["r"])
            await #expect(try s.repositoriesWithUnliveManifests(before: when.addingTimeInterval(-1)) == [])
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                let cleared: Date? = nil
                    c.unliveUpdates = [p.record.digest.string: cleared]
                return c
            }
            await #expect(try s.repositoryGraph("r")?.manifests[p.record.digest.string]?.unliveSince == nil)
            await #expect(try s.repositoriesWithUnliveManifests(before: future) == [])
        },
        Case("applyLifecycle: a manifest deletion takes only the tags the plan names; one left behind refuses the change") { s in
            let p = try await image(s, "r", "m", tag: "b")
            try await store(s, push("r", "m", tag: "a"))
            try await store(s, push("r", "other", tag: "o"))
            let mark = try await s.latestEventSequence()
            await #expect(throws: LifecycleChangeInvalid.self) {
                try await s.applyLifecycle(repository: "r", softDeleteUntil: future) { _ in
                    var c = LifecycleChange()
                    c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "requested")]
                    c.cascadeTags = [LifecycleTagDeletion(repository: "r", tag: "a", digest: p.record.digest.string)]
                    return c
                }
            }
            await #expect(try events(s, after: mark).isEmpty)
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == ["a", "b", "o"])
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) != nil)
            await #expect(try s.deletedManifests(repository: "r") == [])
            // a cascade entry naming another manifest's tag, or a tag that is gone, removes nothing
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: future) { _ in
                var c = LifecycleChange()
                c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "requested")]
                c.cascadeTags = ["b", "a", "o", "absent"].map { LifecycleTagDeletion(repository: "r", tag: $0, digest: p.record.digest.string) }
                return c
            }
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.tagDelete, EventAction.tagDelete, EventAction.manifestDelete])
            #expect(e.prefix(2).map(\.tag) == ["b", "a"])   // in the plan's order
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == ["o"])
            await #expect(try s.deletedManifests(repository: "r").first?.tags == ["b", "a"])
        },
        Case("applyLifecycle: unlinkAllBlobs removes the repository's links with one event") { s in
            try await link(s, "r", "b1", "b2")
            try await link(s, "other", "b1")
            let mark = try await s.latestEventSequence()
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.unlinkAllBlobs = true
                c.detail = "repository delete"
                return c
            }
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("b1")) == nil)
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("b2")) == nil)
            await #expect(try s.linkedBlobSize(repository: "other", digest: digest("b1")) == 2)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.blobDelete])
            #expect(e.first?.detail == "2 blob links; repository delete")
            // nothing left to unlink: no event
            let again = try await actions(s) {
                _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                    var c = LifecycleChange()
                    c.unlinkAllBlobs = true
                    return c
                }
            }
            #expect(again == [])
        },
        Case("deleteTag stamps a manifest left without tags as not live; one still tagged stays live") { s in
            let p = push("r", "m", tag: "a")
            try await store(s, p)
            try await store(s, push("r", "m", tag: "b"))
            let q = push("r", "untagged")
            try await store(s, q)
            await #expect(try s.repositoriesWithUnliveManifests(before: future) == [])
            #expect(try await s.deleteTag(repository: "r", tag: "a"))
            await #expect(try s.repositoriesWithUnliveManifests(before: future) == [])
            #expect(try await s.deleteTag(repository: "r", tag: "b"))
            await #expect(try s.repositoriesWithUnliveManifests(before: future) == ["r"])
            await #expect(try s.repositoriesWithUnliveManifests(before: past) == [])
            let g = try await #require(try s.repositoryGraph("r"))
            #expect(g.manifests[p.record.digest.string]?.unliveSince != nil)
            #expect(g.manifests[q.record.digest.string]?.unliveSince == nil)
        },
        Case("repositoriesChanged: repositories with events after the sequence, and the newest sequence") { s in
            let empty = try await s.repositoriesChanged(after: 0)
            #expect(empty.repositories == [])
            #expect(empty.latest == 0)
            try await store(s, push("b", "x"))
            try await store(s, push("a", "y"))
            let mid = try await s.latestEventSequence()
            try await store(s, push("c", "z"))
            try await store(s, push("a", "w"))
            let all = try await s.repositoriesChanged(after: 0)
            #expect(all.repositories == ["a", "b", "c"])
            await #expect(all.latest == (try s.latestEventSequence()))
            let later = try await s.repositoriesChanged(after: mid)
            #expect(later.repositories == ["a", "c"])
            #expect(later.latest == all.latest)
            await #expect(try s.repositoriesChanged(after: all.latest).repositories == [])
        },
        Case("repositorySummaries: repositories with content, by name, with counts; one by name") { s in
            try await store(s, push("b", "b1", tag: "t1"))
            try await store(s, push("b", "b1", tag: "t2"))
            try await store(s, push("b", "b2"))
            try await link(s, "a", "only-a-blob")
            let all = try await s.repositorySummaries(named: nil)
            #expect(all.map(\.name) == ["a", "b"])
            #expect(all.map(\.manifests) == [0, 2])
            #expect(all.map(\.tags) == [0, 2])
            #expect(all.first?.lastUpdatedAt == nil)
            #expect(all.last?.lastUpdatedAt != nil)
            await #expect(try s.repositorySummaries(named: "b").map(\.name) == ["b"])
            await #expect(try s.repositorySummaries(named: "unknown") == [])
        },
    ]

    static let recycleBinCases: [Case] = [
        Case("soft delete: the manifest goes to the recycle bin with its tags and reason") { s in
            let p = try await image(s, "r", "m", tag: "b")
            try await store(s, push("r", "m", tag: "a"))
            let until = Date(timeIntervalSince1970: 4_000_000_000)
            let mark = try await s.latestEventSequence()
            try await deleteManifests(s, "r", [p.record.digest], softDeleteUntil: until, reason: "requested")
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) == nil)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.tagDelete, EventAction.tagDelete, EventAction.manifestDelete])
            #expect(e.last?.detail == "requested")   // no record planned: the deletion's reason
            let bin = try await s.deletedManifests(repository: "r")
            #expect(bin.count == 1)
            let d = try #require(bin.first)
            #expect(d.repository == "r")
            #expect(d.digest == p.record.digest.string)
            #expect(d.mediaType == p.record.mediaType)
            #expect(d.size == p.record.size)
            #expect(d.tags == ["a", "b"])   // the tags taken with it, in the plan's order
            #expect(d.reason == "requested")
            #expect(d.expiresAt == until)
            await #expect(try s.deletedManifests(repository: "unknown") == [])
            await #expect(try s.deletedManifests(repository: "other") == [])
            // what it referenced is kept: the layer link is not garbage
            await #expect(try s.unreferencedLinks(before: future, limit: 10).isEmpty)
            try await deleteManifests(s, "r", [], softDeleteUntil: until)
            let other = push("r", "n")
            try await store(s, other)
            try await deleteManifests(s, "r", [other.record.digest], softDeleteUntil: until, reason: "untagged")
            let both = try await s.deletedManifests(repository: "r")   // in no particular order: the core orders the bin
            #expect(Set(both.map(\.digest)) == [other.record.digest.string, p.record.digest.string])
            #expect(both.first { $0.digest == other.record.digest.string }?.reason == "untagged")
            #expect(Set(both.map(\.id)).count == 2)
        },
        Case("soft delete: a planned record is what the event and the recycle-bin entry say, verbatim") { s in
            let p = try await image(s, "r", "m", tag: "b")
            let q = try await image(s, "r", "n")
            let mark = try await s.latestEventSequence()
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: future) { _ in
                var c = LifecycleChange()
                c.detail = "purge run 2"
                c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "requested"),
                                     LifecycleDeletion(repository: "r", digest: q.record.digest.string, mediaType: nil, reason: "untagged")]
                c.cascadeTags = [LifecycleTagDeletion(repository: "r", tag: "b", digest: p.record.digest.string)]
                c.records[p.record.digest.string] = LifecycleDeletionRecord(eventDetail: "as planned; soft-deleted", binReason: "purge",
                                                                            binTags: ["b", "former-2", "former-1"])
                c.records[q.record.digest.string] = LifecycleDeletionRecord(eventDetail: "untagged, planned", binReason: "purge: untagged",
                                                                            binTags: [])
                return c
            }
            let e = try await events(s, after: mark).filter { $0.action == EventAction.manifestDelete }
            #expect(Set(e.map(\.detail)) == ["as planned; soft-deleted", "untagged, planned"])
            let bin = try await s.deletedManifests(repository: "r")
            #expect(bin.first { $0.digest == p.record.digest.string }.map { [$0.reason] + $0.tags } == ["purge", "b", "former-2", "former-1"])
            #expect(bin.first { $0.digest == q.record.digest.string }.map { [$0.reason] + $0.tags } == ["purge: untagged"])
        },
        Case("tag history: a soft-deleted manifest remembers its current tags, then former tags newest first") { s in
            let m = push("r", "m", tag: "a")
            try await store(s, m)
            try await store(s, push("r", "m", tag: "b"))
            try await store(s, push("r", "m", tag: "c"))
            let n = push("r", "n", tag: "a")
            try await store(s, n) // moves a away
            #expect(try await s.deleteTag(repository: "r", tag: "b"))
            // the tags it lost, oldest first, in the graph the core plans a deletion from
            await #expect(try s.repositoryGraph("r")?.manifests[m.record.digest.string]?.formerTags == ["a", "b"])
            await #expect(try s.repositoryGraph("r", around: m.record.digest)?.manifests[m.record.digest.string]?.formerTags == [])
            try await deleteManifests(s, "r", [m.record.digest], softDeleteUntil: future)
            await #expect(try s.deletedManifests(repository: "r").first?.tags == ["c"])
            // the plan brings it back under the free former tags
            let mark = try await s.latestEventSequence()
            try await restore(s, "r", m.record.digest, tags: ["c", "b"])
            await #expect(try s.tagTarget(repository: "r", tag: "a") == n.record.digest)
            await #expect(try s.tagTarget(repository: "r", tag: "b") == m.record.digest)
            await #expect(try s.tagTarget(repository: "r", tag: "c") == m.record.digest)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.restore, EventAction.tagMove, EventAction.tagMove])
            #expect(e.map(\.tag) == [nil, "c", "b"])
            #expect(e.dropFirst().map(\.detail) == ["restore", "restore"])
            #expect(e.allSatisfy { $0.digest == m.record.digest.string && $0.mediaType == m.record.mediaType && $0.size == m.record.size })
            await #expect(try s.deletedManifests(repository: "r") == [])
            await #expect(try s.manifest(repository: "r", digest: m.record.digest)?.annotations == ["name": "m"])
        },
        Case("recycleBinEntries: every entry of the digests or of a subject, with what each listed; only this repository's") { s in
            let child = try await image(s, "r", "child")
            let index = push("r", "index", tag: "i", blobs: [digest("layer-of-child")], children: [child.record.digest])
            try await store(s, index)
            let sig = push("r", "sig", subject: index.record.digest, artifactType: "application/sig")
            try await store(s, sig)
            _ = try await image(s, "q", "child")
            try await deleteManifests(s, "q", [child.record.digest], softDeleteUntil: future)
            try await deleteManifests(s, "r", [index.record.digest, child.record.digest, sig.record.digest], softDeleteUntil: future)
            let bin = try await s.recycleBinEntries(repository: "r", digests: [index.record.digest.string, child.record.digest.string,
                                                                              digest("absent").string])
            #expect(bin.count == 2)
            let i = try #require(bin.first { $0.entry.digest == index.record.digest.string })
            #expect(i.manifests == [child.record.digest.string])
            #expect(i.blobs == [digest("layer-of-child").string])
            #expect(i.subject == nil)
            #expect(i.entry.tags == ["i"])
            #expect(i.entry.repository == "r")
            let c = try #require(bin.first { $0.entry.digest == child.record.digest.string })
            #expect(c.manifests == [])
            #expect(c.blobs == [digest("layer-of-child").string])
            let referrers = try await s.recycleBinEntries(repository: "r", subject: index.record.digest.string)
            #expect(referrers.map(\.entry.digest) == [sig.record.digest.string])
            #expect(referrers.first?.subject == index.record.digest.string)
            #expect(referrers.first?.entry.deletedAt == i.entry.deletedAt)
            await #expect(try s.recycleBinEntries(repository: "r", subject: child.record.digest.string) == [])
            await #expect(try s.recycleBinEntries(repository: "unknown", digests: [child.record.digest.string]) == [])
            await #expect(try s.recycleBinEntries(repository: "r", digests: []) == [])
            let q = try await s.recycleBinEntries(repository: "q", digests: [child.record.digest.string])
            #expect(q.map(\.entry.repository) == ["q"])
            // a digest deleted twice has two entries; its layer link comes back with a restore
            _ = try await image(s, "r", "again")
            try await deleteManifests(s, "r", [digest("again")], softDeleteUntil: future)
            _ = try await image(s, "r", "again")
            try await deleteManifests(s, "r", [digest("again")], softDeleteUntil: future)
            let again = try await s.recycleBinEntries(repository: "r", digests: [digest("again").string])
            #expect(again.count == 2)
            #expect(Set(again.map(\.entry.id)).count == 2)
            try await restore(s, "r", digest("again"))
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("layer-of-again")) == Int64("layer-of-again".utf8.count))
            await #expect(try s.recycleBinEntries(repository: "r", digests: [digest("again").string]).count == 1)
        },
        Case("applyRestore: named tags move from where they were planned, the manifest left keeps its history cap") { s in
            let m = push("r", "m", tag: "t")
            try await store(s, m)
            try await deleteManifests(s, "r", [m.record.digest], softDeleteUntil: future)
            let n = push("r", "n", tag: "t")
            try await store(s, n)
            let mark = try await s.latestEventSequence()
            // n loses t to the restore; with a cap of 0 its tag history keeps nothing
            let id = try #require(try await s.recycleBinEntries(repository: "r", digests: [m.record.digest.string]).first?.entry.id)
            try await s.applyRestore(repository: "r", plan: RestorePlan(
                entries: [id], comesBack: try await comesBack(s, "r"), digest: m.record.digest.string,
                tagMoves: [RestoreTagMove(tag: "t", expected: n.record.digest.string), RestoreTagMove(tag: "new", expected: nil)],
                tagHistoryLimit: 0))
            await #expect(try s.tagTarget(repository: "r", tag: "t") == m.record.digest)
            await #expect(try s.tagTarget(repository: "r", tag: "new") == m.record.digest)
            let e = try await events(s, after: mark)
            #expect(e.map(\.detail) == [nil, "restore; from \(n.record.digest)", "restore"])
            try await deleteManifests(s, "r", [n.record.digest], softDeleteUntil: future)
            await #expect(try s.deletedManifests(repository: "r").first { $0.digest == n.record.digest.string }?.tags == [])
        },
        Case("tag loss: a manifest left untagged again keeps its first not-live stamp") { s in
            let m = try await image(s, "r", "m", tag: "t")
            #expect(try await s.deleteTag(repository: "r", tag: "t"))
            let first = try #require(try await s.repositoryGraph("r")?.manifests[m.record.digest.string]?.unliveSince)
            try await Task.sleep(for: .milliseconds(20))
            // tagged again (the stamp stays until the retention pass clears it), then the tag moves away
            try await store(s, push("r", "m", tag: "u"))
            try await store(s, push("r", "n", tag: "u"))
            let g = try #require(try await s.repositoryGraph("r"))
            #expect(g.manifests[m.record.digest.string]?.unliveSince == first)
            #expect(g.manifests[m.record.digest.string]?.formerTags == ["t", "u"])
        },
        Case("applyRestore: a manifest comes back with what the plan says, links included, deciding nothing itself") { s in
            let m = try await image(s, "r", "m", tag: "t")
            _ = try await s.setQuarantine(repository: "r", digest: m.record.digest, state: .pending, reason: "scan")
            try await deleteManifests(s, "r", [m.record.digest], softDeleteUntil: future)
            let entry = try #require(try await s.recycleBinEntries(repository: "r", digests: [m.record.digest.string]).first)
            // what it was deleted in, as the bin read it
            #expect(entry.quarantineState == .pending && entry.quarantineReason == "scan")
            #expect(entry.blobs == [digest("layer-of-m").string])
            try await link(s, "elsewhere", "only-elsewhere")
            // its own layer unlinked: only what the plan names is linked again
            #expect(try await s.unlinkBlob(repository: "r", digest: digest("layer-of-m")))
            let when = Date(timeIntervalSince1970: 1_700_000_000)
            func plan(_ links: [String]) -> RestorePlan {
                RestorePlan(entries: [entry.entry.id],
                            comesBack: [entry.entry.id: RestoredState(quarantineState: .failed, quarantineReason: "planned",
                                                                      unliveSince: when, links: links)],
                            digest: m.record.digest.string, tagMoves: [], tagHistoryLimit: tagHistoryLimit)
            }
            // a link to a blob no longer stored refuses the restore, writing nothing
            let mark = try await s.latestEventSequence()
            await #expect(throws: RestoreError.childMissing(digest("never-stored").string)) {
                try await s.applyRestore(repository: "r", plan: plan([digest("never-stored").string]))
            }
            await #expect(try events(s, after: mark).isEmpty)
            await #expect(try s.manifest(repository: "r", digest: m.record.digest) == nil)
            try await s.applyRestore(repository: "r", plan: plan([digest("only-elsewhere").string]))
            let back = try await #require(try s.manifest(repository: "r", digest: m.record.digest))
            #expect(back.quarantineState == .failed && back.quarantineReason == "planned")
            await #expect(try s.repositoryGraph("r")?.manifests[m.record.digest.string]?.unliveSince == when)
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("only-elsewhere")) != nil)
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("layer-of-m")) == nil)
            // an entry the plan says nothing about is a stale plan
            try await deleteManifests(s, "r", [m.record.digest], softDeleteUntil: future)
            let again = try #require(try await s.recycleBinEntries(repository: "r", digests: [m.record.digest.string]).first?.entry.id)
            await #expect(throws: RestoreError.planStale) {
                try await s.applyRestore(repository: "r", plan: RestorePlan(entries: [again], comesBack: [:], digest: m.record.digest.string,
                                                                            tagMoves: [], tagHistoryLimit: tagHistoryLimit))
            }
        },
        Case("applyRestore: a tag that moved since the restore was planned is refused, restoring nothing") { s in
            let m = push("r", "m", tag: "t")
            try await store(s, m)
            try await deleteManifests(s, "r", [m.record.digest], softDeleteUntil: future)
            let n = push("r", "n", tag: "t")
            try await store(s, n)              // planned while t pointed nowhere; then t moved to n
            let mark = try await s.latestEventSequence()
            let id = try #require(try await s.recycleBinEntries(repository: "r", digests: [m.record.digest.string]).first?.entry.id)
            let back = try await comesBack(s, "r")
            func plan(_ expected: String?) -> RestorePlan {
                RestorePlan(entries: [id], comesBack: back, digest: m.record.digest.string, tagMoves: [RestoreTagMove(tag: "t", expected: expected)],
                            tagHistoryLimit: tagHistoryLimit)
            }
            await #expect(throws: RestoreError.tagConflict(tag: "t", current: n.record.digest.string)) {
                try await s.applyRestore(repository: "r", plan: plan(nil))
            }
            let other = push("r", "o")
            try await store(s, other)
            await #expect(throws: RestoreError.tagConflict(tag: "t", current: n.record.digest.string)) {
                try await s.applyRestore(repository: "r", plan: plan(other.record.digest.string))
            }
            await #expect(try events(s, after: mark).map(\.action) == [EventAction.manifestPush])
            await #expect(try s.tagTarget(repository: "r", tag: "t") == n.record.digest)
            await #expect(try s.manifest(repository: "r", digest: m.record.digest) == nil)
            await #expect(try s.deletedManifests(repository: "r").map(\.digest) == [m.record.digest.string])
            // planned again from where t points now, it applies
            try await s.applyRestore(repository: "r", plan: plan(n.record.digest.string))
            await #expect(try s.tagTarget(repository: "r", tag: "t") == m.record.digest)
        },
        Case("applyRestore: an entry gone, of another repository, or whose manifest is back is a stale plan, changing nothing") { s in
            let m = push("r", "m", tag: "t")
            try await store(s, m)
            try await store(s, push("q", "m"))
            try await deleteManifests(s, "q", [m.record.digest], softDeleteUntil: future)
            let other = try #require(try await s.recycleBinEntries(repository: "q", digests: [m.record.digest.string]).first?.entry.id)
            let mark = try await s.latestEventSequence()
            var back = try await comesBack(s, "r", "q")
            func plan(_ id: Int64) -> RestorePlan {
                RestorePlan(entries: [id], comesBack: back, digest: m.record.digest.string, tagMoves: [RestoreTagMove(tag: "x", expected: nil)],
                            tagHistoryLimit: tagHistoryLimit)
            }
            await #expect(throws: RestoreError.planStale) { try await s.applyRestore(repository: "unknown", plan: plan(other)) }
            await #expect(throws: RestoreError.planStale) { try await s.applyRestore(repository: "r", plan: plan(other)) }
            await #expect(throws: RestoreError.planStale) { try await s.applyRestore(repository: "r", plan: plan(Int64.max)) }
            // r still stores m: q's entry cannot come back into r, and r's own entry of it would be a duplicate
            try await deleteManifests(s, "r", [m.record.digest], softDeleteUntil: future)
            let mine = try #require(try await s.recycleBinEntries(repository: "r", digests: [m.record.digest.string]).first?.entry.id)
            back = try await comesBack(s, "r", "q")
            try await store(s, push("r", "m"))   // pushed again meanwhile
            await #expect(throws: RestoreError.planStale) { try await s.applyRestore(repository: "r", plan: plan(mine)) }
            await #expect(try events(s, after: mark).map(\.action) == [EventAction.tagDelete, EventAction.manifestDelete,
                                                                       EventAction.manifestPush])
            await #expect(try s.tagTarget(repository: "r", tag: "x") == nil)
            await #expect(try s.recycleBinEntries(repository: "r", digests: [m.record.digest.string]).map(\.entry.id) == [mine])
        },
        Case("applyRestore: an entry of a restored digest the plan does not know (deleted again since) makes it stale") { s in
            try await store(s, push("r", "m", tag: "t"))
            try await deleteManifests(s, "r", [digest("m")], softDeleteUntil: future)
            let first = try #require(try await s.recycleBinEntries(repository: "r", digests: [digest("m").string]).first?.entry.id)
            try await restore(s, "r", digest("m"))
            try await deleteManifests(s, "r", [digest("m")], softDeleteUntil: future)
            let all = try await s.recycleBinEntries(repository: "r", digests: [digest("m").string]).map(\.entry.id)
            #expect(all.count == 1 && all != [first])
            try await store(s, push("r", "m"))
            try await deleteManifests(s, "r", [digest("m")], softDeleteUntil: future)
            let both = try await s.recycleBinEntries(repository: "r", digests: [digest("m").string]).map(\.entry.id)
            #expect(both.count == 2)
            let planned = try #require(both.min())
            let back = try await comesBack(s, "r")
            let mark = try await s.latestEventSequence()
            await #expect(throws: RestoreError.planStale) {
                try await s.applyRestore(repository: "r", plan: RestorePlan(entries: [planned], comesBack: back, digest: digest("m").string,
                                                                            tagMoves: [], tagHistoryLimit: tagHistoryLimit))
            }
            await #expect(try events(s, after: mark).isEmpty)
            // a plan made knowing both applies the one it names
            try await s.applyRestore(repository: "r", plan: RestorePlan(entries: [planned], comesBack: back, digest: digest("m").string,
                                                                        tagMoves: [], tagHistoryLimit: tagHistoryLimit, known: Set(both)))
            await #expect(try s.recycleBinEntries(repository: "r", digests: [digest("m").string]).map(\.entry.id) == [both.max()!])
        },
        Case("applyRestore: entries come back in the plan's order; an index before its children is a stale plan") { s in
            let child = try await image(s, "r", "child")
            let index = push("r", "index", tag: "i", children: [child.record.digest])
            try await store(s, index)
            let sig = push("r", "sig", subject: index.record.digest, artifactType: "application/sig")
            try await store(s, sig)
            try await deleteManifests(s, "r", [index.record.digest, child.record.digest, sig.record.digest], softDeleteUntil: future)
            await #expect(try s.repositoryGraph("r")?.manifests.isEmpty == true)
            let bin = try await s.recycleBinEntries(repository: "r", digests: [index, child, sig].map(\.record.digest.string))
            func id(_ p: ManifestPush) -> Int64 { bin.first { $0.entry.digest == p.record.digest.string }!.entry.id }
            let back = try await comesBack(s, "r")
            let mark = try await s.latestEventSequence()
            await #expect(throws: RestoreError.planStale) {
                try await s.applyRestore(repository: "r", plan: RestorePlan(entries: [id(index), id(child)], comesBack: back, digest: index.record.digest.string,
                                                                            tagMoves: [], tagHistoryLimit: tagHistoryLimit))
            }
            await #expect(try events(s, after: mark).isEmpty)
            await #expect(try s.repositoryGraph("r")?.manifests.isEmpty == true)
            try await s.applyRestore(repository: "r", plan: RestorePlan(
                entries: [id(child), id(index), id(sig)], comesBack: back, digest: index.record.digest.string,
                tagMoves: [RestoreTagMove(tag: "i", expected: nil)], tagHistoryLimit: tagHistoryLimit))
            let e = try await events(s, after: mark)
            #expect(e.map(\.digest) == [child, index, sig, index].map(\.record.digest.string))
            #expect(e.map(\.action) == [EventAction.restore, EventAction.restore, EventAction.restore, EventAction.tagMove])
            await #expect(try s.parents(repository: "r", child: child.record.digest) == [index.record.digest])
            await #expect(try s.referrers(repository: "r", subject: index.record.digest).map(\.digest) == [sig.record.digest])
            await #expect(try s.tagTarget(repository: "r", tag: "i") == index.record.digest)
            await #expect(try s.deletedManifests(repository: "r") == [])
        },
        Case("applyRestore: an index whose child is gone for good is a stale plan, restoring nothing") { s in
            let child = try await image(s, "r", "child")
            let index = push("r", "index", tag: "i", children: [child.record.digest])
            try await store(s, index)
            try await deleteManifests(s, "r", [index.record.digest], softDeleteUntil: future)
            try await deleteManifests(s, "r", [child.record.digest]) // hard
            let mark = try await s.latestEventSequence()
            let id = try #require(try await s.recycleBinEntries(repository: "r", digests: [index.record.digest.string]).first?.entry.id)
            await #expect(throws: RestoreError.planStale) {
                try await s.applyRestore(repository: "r", plan: RestorePlan(entries: [id], comesBack: try await comesBack(s, "r"), digest: index.record.digest.string, tagMoves: [],
                                                                            tagHistoryLimit: tagHistoryLimit))
            }
            await #expect(try events(s, after: mark).isEmpty)
            await #expect(try s.manifest(repository: "r", digest: index.record.digest) == nil)
            await #expect(try s.deletedManifests(repository: "r").map(\.digest) == [index.record.digest.string])
        },
        Case("expireDeletedManifests: removes entries expired by now, with events, and returns them") { s in
            let old = push("r", "old"), young = push("r", "young")
            try await store(s, old)
            try await store(s, young)
            let now = Date(timeIntervalSince1970: 2_000_000_000)
            try await deleteManifests(s, "r", [old.record.digest], softDeleteUntil: now.addingTimeInterval(-1))
            try await deleteManifests(s, "r", [young.record.digest], softDeleteUntil: now.addingTimeInterval(3600))
            let mark = try await s.latestEventSequence()
            let expired = try await s.expireDeletedManifests(now: now, limit: 10_000)
            #expect(expired.map(\.digest) == [old.record.digest.string])
            #expect(expired.first?.repository == "r")
            await #expect(try s.deletedManifests(repository: "r").map(\.digest) == [young.record.digest.string])
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.softDeleteExpire])
            #expect(e.first?.digest == old.record.digest.string)
            #expect(try await s.expireDeletedManifests(now: now, limit: 10_000) == [])
            await #expect(try s.recycleBinEntries(repository: "r", digests: [old.record.digest.string]) == [])
        },
    ]

    static let lockCases: [Case] = [
        Case("setLock/locks: upsert by target, ordered repository/tag/digest, a default lock removes it, each with an event") { s in
            await #expect(try s.locks() == [])
            let digestLock = LockRecord(repository: "a", digest: digest("m").string, deleteEnabled: false)
            let tagLock = LockRecord(repository: "a", tag: "t", writeEnabled: false)
            let repoLock = LockRecord(repository: "a", readEnabled: false, listEnabled: false)
            let other = LockRecord(repository: "0-first", writeEnabled: false)
            let mark = try await s.latestEventSequence()
            for l in [digestLock, tagLock, repoLock, other] { try await s.setLock(l) }
            await #expect(try s.locks() == [other, repoLock, tagLock, digestLock])
            var changed = tagLock
            changed.writeEnabled = true
            changed.deleteEnabled = false
            try await s.setLock(changed)
            await #expect(try s.locks() == [other, repoLock, changed, digestLock])
            try await s.setLock(LockRecord(repository: "a", tag: "t"))
            await #expect(try s.locks() == [other, repoLock, digestLock])
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == Array(repeating: EventAction.lock, count: 6))
            #expect(e[1].tag == "t")
            #expect(e[0].digest == digest("m").string)
            #expect(e[0].detail == "read=true write=true delete=false list=true")
        },
        Case("applyLifecycle: locks stay unless the change drops them; tag history keeps tagHistoryLimit tags") { s in
            let p = push("r", "m", tag: "t")
            try await store(s, p)
            for tag in ["h1", "h2", "h3"] { try await store(s, push("r", "m", tag: tag)) }
            try await s.setLock(LockRecord(repository: "r", tag: "t", deleteEnabled: false))
            try await s.setLock(LockRecord(repository: "r", digest: p.record.digest.string, deleteEnabled: false))
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.tagHistoryLimit = 2
                c.deleteTags = ["t", "h1", "h2", "h3"].map { LifecycleTagDeletion(repository: "r", tag: $0, digest: p.record.digest.string) }
                return c
            }
            await #expect(try s.locks().count == 2)
            // the newest two former tags, oldest first
            await #expect(try s.repositoryGraph("r")?.manifests[p.record.digest.string]?.formerTags == ["h2", "h3"])
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: future) { _ in
                var c = LifecycleChange()
                c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "requested")]
                return c
            }
            await #expect(try s.locks().count == 2)
        },
        Case("locks go with their tag or manifest when it is deleted") { s in
            let p = push("r", "m", tag: "t")
            try await store(s, p)
            try await s.setLock(LockRecord(repository: "r", tag: "t", deleteEnabled: false))
            try await s.setLock(LockRecord(repository: "r", digest: p.record.digest.string, deleteEnabled: false))
            try await s.setLock(LockRecord(repository: "r", writeEnabled: false))
            #expect(try await s.deleteTag(repository: "r", tag: "t"))
            await #expect(try s.locks().map(\.tag) == [nil, nil])
            try await deleteManifests(s, "r", [p.record.digest])
            await #expect(try s.locks() == [LockRecord(repository: "r", writeEnabled: false)])
        },
    ]
}
