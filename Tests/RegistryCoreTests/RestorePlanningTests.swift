import Foundation
import RegistryStore
import Synchronization
import Testing
@testable import RegistryCore

/// The restore rules as pure logic: a recycle bin and the stored manifests and tags in memory.
@Suite struct RestorePlanningTests {
    final class Bin: Sendable {
        let entries: Mutex<[RecycleBinEntry]>
        let stored: Mutex<Set<String>>
        let tags: Mutex<[String: String]>
        init(entries: [RecycleBinEntry], stored: Set<String> = [], tags: [String: String] = [:]) {
            self.entries = Mutex(entries)
            self.stored = Mutex(stored)
            self.tags = Mutex(tags)
        }
        var reader: RestorePlanning.Reads {
            RestorePlanning.Reads(present: { d in self.stored.withLock { $0.contains(d) } },
                                  entries: { ds in self.entries.withLock { $0.filter { ds.contains($0.entry.digest) } } },
                                  referrers: { s in self.entries.withLock { $0.filter { $0.subject == s } } },
                                  tagTarget: { t in self.tags.withLock { $0[t] } })
        }
    }

    static func entry(_ id: Int64, _ digest: String, at: TimeInterval = 100, tags: [String] = [], subject: String? = nil,
                      manifests: [String] = []) -> RecycleBinEntry {
        RecycleBinEntry(entry: DeletedManifest(id: id, repository: "r", digest: digest, mediaType: "m", size: 1,
                                               deletedAt: Date(timeIntervalSince1970: at), expiresAt: Date(timeIntervalSince1970: at + 10),
                                               tags: tags, reason: "x"),
                        subject: subject, manifests: manifests, blobs: [])
    }

    func plan(_ bin: Bin, _ digest: String, tags: [String]? = nil) async throws -> RestorePlanning.Outcome {
        try await RestorePlanning.plan(digest: digest, tags: tags, tagHistoryLimit: 50, reads: bin.reader)
    }

    @Test func theNewestDeletionOfADigestComesBackThenTheLaterIdBetweenEqualTimes() async throws {
        let bin = Bin(entries: [Self.entry(1, "a", at: 300), Self.entry(2, "a", at: 100), Self.entry(3, "a", at: 300), Self.entry(4, "b", at: 900)])
        #expect(try await plan(bin, "a").plan.entries == [3])
        #expect(RestorePlanning.newest([Self.entry(7, "a", at: 5), Self.entry(2, "a", at: 6)], digest: "a")?.entry.id == 2)
        let listed = [Self.entry(1, "a", at: 300), Self.entry(2, "b", at: 100), Self.entry(3, "c", at: 300)].map(\.entry)
        #expect(listed.sorted(by: RestorePlanning.newestFirst).map(\.id) == [3, 1, 2])
    }

    @Test func eachManifestComesBackInTheStateItWasDeletedInLiveWithItsBlobsLinked() async throws {
        var index = Self.entry(10, "index", manifests: ["child"])
        index.quarantineState = .failed
        index.quarantineReason = "CVE found"
        var child = Self.entry(11, "child")
        child.blobs = ["config", "layer"]
        let plan = try await plan(Bin(entries: [index, child]), "index").plan
        #expect(plan.entries == [11, 10])
        #expect(plan.comesBack == [
            10: RestoredState(quarantineState: .failed, quarantineReason: "CVE found", unliveSince: nil, links: []),
            11: RestoredState(quarantineState: nil, quarantineReason: nil, unliveSince: nil, links: ["config", "layer"]),
        ])
    }

    @Test func anIndexComesBackAfterItsChildrenAndItsReferrersDeletedWithItAfterIt() async throws {
        let bin = Bin(entries: [
            Self.entry(10, "index", tags: ["i"], manifests: ["c1", "c2", "kept"]),
            Self.entry(11, "c2"), Self.entry(12, "c1", manifests: ["grandchild"]), Self.entry(13, "grandchild"),
            Self.entry(14, "sig2", subject: "index"), Self.entry(15, "sig1", subject: "index"),
            Self.entry(16, "old-sig", at: 50, subject: "index"),     // deleted at another time: stays in the bin
            Self.entry(17, "c1-sig", subject: "c1"),                 // a child's referrer deleted with it comes too
        ], stored: ["kept"])
        let outcome = try await plan(bin, "index")
        // referrers once what is under way is placed, each subject's in digest order
        #expect(outcome.restored.map(\.digest) == ["grandchild", "c1", "c2", "index", "c1-sig", "sig1", "sig2"])
        #expect(outcome.plan.entries == [13, 12, 11, 10, 17, 15, 14])
        // every entry read of the digests it restores, so a deletion of one meanwhile makes it stale
        #expect(outcome.plan.known == Set(10...17))
        #expect(outcome.restored.first { $0.digest == "index" }?.tags == ["i"])
        #expect(outcome.restored.filter { $0.digest != "index" }.allSatisfy { $0.tags.isEmpty })
        #expect(outcome.plan.tagMoves == [RestoreTagMove(tag: "i", expected: nil)])
    }

    @Test func aListedManifestNeitherStoredNorInTheBinRefusesTheRestore() async throws {
        let bin = Bin(entries: [Self.entry(1, "index", manifests: ["gone"])])
        await #expect(throws: RestorePlanning.Failure.childMissing("gone")) { try await plan(bin, "index") }
    }

    @Test func aDigestNotInTheBinOrStoredAgainIsNotRestorable() async throws {
        let bin = Bin(entries: [Self.entry(1, "a")], stored: ["a"])
        await #expect(throws: RestorePlanning.Failure.notInRecycleBin) { try await plan(bin, "b") }
        await #expect(throws: RestorePlanning.Failure.notInRecycleBin) { try await plan(bin, "a") }
    }

    @Test func formerTagsComeBackOnlyWhereFreeNamedTagsFromWhereverTheyPoint() async throws {
        let bin = Bin(entries: [Self.entry(1, "a", tags: ["c", "b", "a", "b"])], tags: ["a": "other", "keep": "x"])
        let former = try await plan(bin, "a")
        #expect(former.plan.tagMoves == [RestoreTagMove(tag: "c", expected: nil), RestoreTagMove(tag: "b", expected: nil)])
        #expect(former.restored.map(\.tags) == [["c", "b"]])
        #expect(former.tagTargets == ["a": "other"])
        let named = try await plan(bin, "a", tags: ["a"])
        #expect(named.plan.tagMoves == [RestoreTagMove(tag: "a", expected: "other")])
        #expect(named.restored.map(\.tags) == [["a"]])
        #expect(named.tagTargets == ["a": "other"])
        #expect(named.plan.digest == "a")
        #expect(named.plan.tagHistoryLimit == 50)
        let none = try await plan(bin, "a", tags: [])
        #expect(none.plan.tagMoves.isEmpty)
        #expect(none.restored.map(\.tags) == [[]])
    }

    @Test func aReferrerThatListsAManifestComingBackIsPlacedAfterIt() async throws {
        // x lists y; z refers to y (deleted with it) and lists x
        let bin = Bin(entries: [Self.entry(1, "x", manifests: ["y"]), Self.entry(2, "y"),
                                Self.entry(3, "z", subject: "y", manifests: ["x"])])
        #expect(try await plan(bin, "x").restored.map(\.digest) == ["y", "x", "z"])
    }

    @Test func aChildSharedByTwoListedManifestsIsPlannedOnce() async throws {
        let bin = Bin(entries: [Self.entry(1, "index", manifests: ["a", "b"]), Self.entry(2, "a", manifests: ["shared"]),
                                Self.entry(3, "b", manifests: ["shared"]), Self.entry(4, "shared")])
        #expect(try await plan(bin, "index").plan.entries == [4, 2, 3, 1])
    }
}
