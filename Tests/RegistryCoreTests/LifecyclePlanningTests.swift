import Foundation
import RegistryStore
import Testing
@testable import RegistryCore

/// Pure tests of the referential model and the lifecycle planners, on hand-built graphs.
@Suite struct LifecyclePlanningTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func manifest(_ d: String, subject: String? = nil, created: Date? = nil) -> RepositoryGraph.Manifest {
        .init(digest: d, mediaType: "application/vnd.oci.image.manifest.v1+json", artifactType: subject == nil ? nil : "sig",
              size: 10, subject: subject, createdAt: created ?? t0, unliveSince: nil, quarantineState: nil)
    }

    /// index I (tag "multi") lists A and B; image S (tag "signed") has signature SIG and sbom SBOM;
    /// OLD is untagged; OLDSIG signs OLD; tag "old-build" points at X.
    func graph() -> RepositoryGraph {
        var m: [String: RepositoryGraph.Manifest] = [:]
        for d in ["I", "A", "B", "S", "OLD", "X"] { m[d] = manifest(d) }
        m["SIG"] = manifest("SIG", subject: "S")
        m["SBOM"] = manifest("SBOM", subject: "S")
        m["OLDSIG"] = manifest("OLDSIG", subject: "OLD")
        m["XSIG"] = manifest("XSIG", subject: "X")
        return RepositoryGraph(repository: "r", manifests: m, children: ["I": ["A", "B"]], tags: [
            .init(name: "multi", digest: "I", updatedAt: t0),
            .init(name: "signed", digest: "S", updatedAt: t0.addingTimeInterval(10)),
            .init(name: "old-build", digest: "X", updatedAt: t0.addingTimeInterval(-100)),
        ])
    }

    @Test func liveFollowsTagsIndexesReferrersAndLocks() {
        let g = graph()
        #expect(Liveness.live(g, locked: []) == ["I", "A", "B", "S", "SIG", "SBOM", "X", "XSIG"])
        #expect(Liveness.live(g, locked: ["OLD"]).isSuperset(of: ["OLD", "OLDSIG"]))
        #expect(!Liveness.live(g, locked: [], ignoringTags: ["multi"]).contains("A"))
        #expect(Liveness.live(g, locked: [], removed: ["S"]).isDisjoint(with: ["S", "SIG", "SBOM"]))
    }

    @Test func cyclesDoNotHang() {
        var g = graph()
        g.children["A"] = ["I"]  // hostile: an index cycle
        g.manifests["SIG"]?.subject = "SIG"
        let live = Liveness.live(g, locked: [])
        #expect(live.contains("I") && live.contains("A"))
        // A (live) lists I, so deleting I is refused rather than breaking A.
        let change = Liveness.cascade(g, target: "I", locks: LockTable())
        #expect(change.denied?.contains("listed by index A") == true)
        g.tags.removeAll { $0.name == "multi" }
        let unlive = Liveness.cascade(g, target: "I", locks: LockTable())
        #expect(unlive.denied == nil)
        #expect(Set(unlive.deleteManifests.map(\.digest)) == ["I", "A", "B"])
    }

    @Test func cascadeTakesReferrersAndChildrenButNotSharedOnes() {
        var g = graph()
        // A second live index lists A too.
        g.manifests["I2"] = manifest("I2")
        g.children["I2"] = ["A"]
        g.tags.append(.init(name: "other", digest: "I2", updatedAt: t0))
        let c = Liveness.cascade(g, target: "I", locks: LockTable())
        #expect(Set(c.deleteManifests.map(\.digest)) == ["I", "B"])
        let s = Liveness.cascade(g, target: "S", locks: LockTable())
        #expect(Set(s.deleteManifests.map(\.digest)) == ["S", "SIG", "SBOM"])
        #expect(s.deleteManifests.first { $0.digest == "SIG" }?.reason == "referrer of deleted S")
    }

    /// A deletion applied from a peer region (`dependents: false`): the manifest (and its tags)
    /// only; what its deletion took there arrives as deletions of their own. A live index listing
    /// it still refuses it.
    @Test func withoutDependentsOnlyTheManifestGoes() {
        let g = graph()
        let s = Liveness.cascade(g, target: "S", locks: LockTable(), dependents: false)
        #expect(s.denied == nil && s.deleteManifests.map(\.digest) == ["S"])
        var untagged = g
        untagged.tags.removeAll { $0.name == "multi" }
        #expect(Liveness.cascade(untagged, target: "I", locks: LockTable(), dependents: false).deleteManifests.map(\.digest) == ["I"])
        #expect(Liveness.cascade(g, target: "A", locks: LockTable(), dependents: false).denied?.contains("listed by index I") == true)
    }

    @Test func deletingAChildOfALiveIndexIsRefused() {
        let c = Liveness.cascade(graph(), target: "A", locks: LockTable())
        #expect(c.denied?.contains("listed by index I") == true)
        #expect(c.deleteManifests.isEmpty)
    }

    @Test func locksRefuseDeletesAndKeepManifestsLive() {
        let locks = LockTable([LockRecord(repository: "r", tag: "signed", deleteEnabled: false),
                               LockRecord(repository: "r", digest: "OLD", writeEnabled: false)])
        #expect(Liveness.cascade(graph(), target: "S", locks: locks).denied?.contains("tag 'signed'") == true)
        #expect(locks.lockedManifests("r") == ["OLD"])
        let purge = LifecyclePlanner.purge(graph(), options(["r:.*"], untagged: true), locks: locks, now: t0.addingTimeInterval(1000), grace: 0)
        #expect(purge.skipped.map(\.tag) == ["signed"])
        #expect(!purge.deleteManifests.contains { $0.digest == "OLD" || $0.digest == "OLDSIG" })
        let repoLocked = LockTable([LockRecord(repository: "r", writeEnabled: false)])
        #expect(LifecyclePlanner.deleteRepository(graph(), locks: repoLocked).denied?.contains("repository 'r'") == true)
    }

    func options(_ filters: [String], ago: TimeInterval = 0, untagged: Bool = false, keep: Int = 0) -> PurgeOptions {
        PurgeOptions(filters: filters.map { try! PurgeFilter(parsing: $0) }, ago: ago, untagged: untagged, keep: keep)
    }

    @Test func purgeUntaggedKeepsSignaturesAndChildrenOfKeptImages() {
        // Purge only old-build: X and its signature go; the signed image, its SBOM and the index children stay.
        let now = t0.addingTimeInterval(1000)
        let c = LifecyclePlanner.purge(graph(), options(["r:^old-"], ago: 60, untagged: true), locks: LockTable(), now: now, grace: 0)
        #expect(c.deleteTags.map(\.tag) == ["old-build"])
        #expect(Set(c.deleteManifests.map(\.digest)) == ["X", "XSIG", "OLD", "OLDSIG"])
        #expect(c.deleteManifests.first { $0.digest == "X" }?.reason == "tag purged")
        #expect(c.deleteManifests.first { $0.digest == "OLD" }?.reason == "untagged")
        #expect(c.deleteManifests.first { $0.digest == "XSIG" }?.reason == "referrer of deleted X")
    }

    @Test func purgeOfAnIndexTakesItsChildren() {
        let now = t0.addingTimeInterval(1000)
        let c = LifecyclePlanner.purge(graph(), options(["r:multi"], untagged: true), locks: LockTable(), now: now, grace: 0)
        #expect(Set(c.deleteManifests.map(\.digest)) == ["I", "A", "B", "OLD", "OLDSIG"])
        #expect(c.deleteManifests.first { $0.digest == "A" }?.reason == "child of deleted index I")
    }

    @Test func purgeRespectsAgoKeepAndGrace() {
        var g = graph()
        g.tags = (0..<10).map { .init(name: "build-\($0)", digest: "X", updatedAt: t0.addingTimeInterval(Double($0))) }
        let now = t0.addingTimeInterval(100)
        let keep3 = LifecyclePlanner.purge(g, options(["r:^build-"], keep: 3), locks: LockTable(), now: now, grace: 0)
        #expect(keep3.deleteTags.count == 7)
        #expect(!keep3.deleteTags.contains { ["build-7", "build-8", "build-9"].contains($0.tag) })
        let young = LifecyclePlanner.purge(g, options(["r:^build-"], ago: 95), locks: LockTable(), now: now, grace: 0)
        #expect(Set(young.deleteTags.map(\.tag)) == ["build-0", "build-1", "build-2", "build-3", "build-4"])
        // Without --untagged nothing but tags goes.
        #expect(keep3.deleteManifests.isEmpty)
        // Manifests younger than the grace period are never purged (a push may still be linking them).
        let graced = LifecyclePlanner.purge(graph(), options(["r:^old-"], untagged: true), locks: LockTable(), now: t0.addingTimeInterval(10),
                                            grace: 60)
        #expect(graced.deleteManifests.isEmpty)
        // Filters that match no repository change nothing.
        #expect(LifecyclePlanner.purge(graph(), options(["other:.*"], untagged: true), locks: LockTable(), now: now, grace: 0).isEmpty)
    }

    @Test func purgeNeverOrphansAnIndexChild() {
        var g = graph()
        // An untagged index younger than the grace period lists old untagged C.
        g.manifests["YI"] = manifest("YI", created: t0.addingTimeInterval(990))
        g.manifests["C"] = manifest("C")
        g.children["YI"] = ["C"]
        let c = LifecyclePlanner.purge(g, options(["r:nothing"], untagged: true), locks: LockTable(), now: t0.addingTimeInterval(1000), grace: 60)
        #expect(!c.deleteManifests.contains { $0.digest == "C" || $0.digest == "YI" })
        #expect(c.deleteManifests.contains { $0.digest == "OLD" })
    }

    @Test func retentionStampsAndDeletesAfterDays() {
        var g = graph()
        let now = t0.addingTimeInterval(3 * 86_400)
        let first = LifecyclePlanner.retention(g, days: 1, locks: LockTable(), now: now, grace: 0, delete: true)
        // Never seen unlive before: the clock starts now, nothing is deleted yet.
        #expect(first.deleteManifests.isEmpty)
        #expect(first.unliveUpdates["OLD"] == .some(now))
        g.manifests["OLD"]?.unliveSince = now
        g.manifests["OLDSIG"]?.unliveSince = now
        g.manifests["S"]?.unliveSince = now  // stale stamp on a live manifest is cleared
        let later = LifecyclePlanner.retention(g, days: 1, locks: LockTable(), now: now.addingTimeInterval(86_401), grace: 0, delete: true)
        #expect(Set(later.deleteManifests.map(\.digest)) == ["OLD", "OLDSIG"])
        #expect(later.unliveUpdates["S"] == .some(nil))
        let early = LifecyclePlanner.retention(g, days: 2, locks: LockTable(), now: now.addingTimeInterval(86_401), grace: 0, delete: true)
        #expect(early.deleteManifests.isEmpty)
    }

    @Test func repositoryDeleteKeepsLockedContent() {
        let locks = LockTable([LockRecord(repository: "r", tag: "signed", writeEnabled: false)])
        let c = LifecyclePlanner.deleteRepository(graph(), locks: locks)
        #expect(c.denied == nil)
        #expect(!c.deleteManifests.contains { ["S", "SIG", "SBOM"].contains($0.digest) })
        #expect(c.deleteManifests.contains { $0.digest == "I" })
        #expect(c.skipped.contains { $0.tag == "signed" })
        #expect(!c.unlinkAllBlobs)
        #expect(LifecyclePlanner.deleteRepository(graph(), locks: LockTable()).unlinkAllBlobs)
    }

    @Test func quotaPrefixes() {
        let q = QuotaLimit(name: "p", prefix: "payments/", limitBytes: 1)
        #expect(q.covers("payments/api") && !q.covers("payments") && !q.covers("paymentsx/a"))
        let exact = QuotaLimit(name: "p", prefix: "payments", limitBytes: 1)
        #expect(exact.covers("payments") && exact.covers("payments/api") && !exact.covers("payments-old"))
    }
}
