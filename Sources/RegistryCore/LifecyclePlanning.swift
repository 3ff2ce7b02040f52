import Foundation
import RegistryStore

/// Locks (attributes) of every repository, tag and manifest, held in memory: checked on every
/// pull and push without touching the database.
public struct LockTable: Sendable {
    struct RepositoryLocks: Sendable {
        var repository: LockRecord?
        var tags: [String: LockRecord] = [:]
        var manifests: [String: LockRecord] = [:]
    }

    var repositories: [String: RepositoryLocks] = [:]

    public init(_ records: [LockRecord] = []) {
        for r in records {
            if let tag = r.tag { repositories[r.repository, default: .init()].tags[tag] = r }
            else if let digest = r.digest { repositories[r.repository, default: .init()].manifests[digest] = r }
            else { repositories[r.repository, default: .init()].repository = r }
        }
    }

    public var isEmpty: Bool { repositories.isEmpty }
    public func repository(_ name: String) -> LockRecord? { repositories[name]?.repository }
    public func tag(_ repository: String, _ tag: String) -> LockRecord? { repositories[repository]?.tags[tag] }
    public func manifest(_ repository: String, _ digest: String) -> LockRecord? { repositories[repository]?.manifests[digest] }

    /// Manifests a lock keeps alive (write- or delete-disabled): roots of liveness.
    public func lockedManifests(_ repository: String) -> Set<String> {
        Set((repositories[repository]?.manifests.values ?? [:].values).filter { !$0.writeEnabled || !$0.deleteEnabled }.compactMap(\.digest))
    }

    static func describe(_ lock: LockRecord, _ attribute: String) -> String {
        if let tag = lock.tag { return "tag '\(tag)' in '\(lock.repository)' is locked (\(attribute) false)" }
        if let digest = lock.digest { return "manifest \(digest) in '\(lock.repository)' is locked (\(attribute) false)" }
        return "repository '\(lock.repository)' is locked (\(attribute) false)"
    }

    /// Why `lock` forbids deleting (or moving) what it covers: write-disabled forbids both.
    static func deleteBlocker(_ lock: LockRecord?) -> String? {
        guard let lock else { return nil }
        if !lock.writeEnabled { return describe(lock, "write-enabled") }
        if !lock.deleteEnabled { return describe(lock, "delete-enabled") }
        return nil
    }

    /// Why deleting `tag` (pointing at `digest`) is refused, or nil. A write-locked manifest keeps
    /// its tags; a delete-locked one may lose them (it stays live through its lock).
    public func tagDeletionBlocker(_ repository: String, tag: String, digest: String) -> String? {
        if let b = Self.deleteBlocker(self.repository(repository)) ?? Self.deleteBlocker(self.tag(repository, tag)) { return b }
        if let lock = manifest(repository, digest), !lock.writeEnabled { return Self.describe(lock, "write-enabled") }
        return nil
    }

    /// Why deleting the manifest `digest` (and the tags that point at it) is refused, or nil.
    public func manifestDeletionBlocker(_ repository: String, digest: String, tags: [String]) -> String? {
        if let b = Self.deleteBlocker(self.repository(repository)) ?? Self.deleteBlocker(manifest(repository, digest)) { return b }
        for t in tags { if let b = Self.deleteBlocker(tag(repository, t)) { return b } }
        return nil
    }
}

/// The referential model: which manifests are live, and what a deletion takes with it.
///
/// A manifest is live when a tag points at it, a live index lists it, it is a referrer whose
/// subject is live, or a lock keeps it. Everything below works on one repository's graph.
public enum Liveness {
    /// Subject digest → its referrers.
    static func referrers(_ g: RepositoryGraph) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for m in g.manifests.values { if let s = m.subject { out[s, default: []].append(m.digest) } }
        return out
    }

    /// Child digest → indexes that list it.
    static func parents(_ g: RepositoryGraph) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for (p, cs) in g.children { for c in cs { out[c, default: []].append(p) } }
        return out
    }

    /// The live set, as if the tags in `ignoringTags` and the manifests in `removed` were gone.
    public static func live(_ g: RepositoryGraph, locked: Set<String>, ignoringTags: Set<String> = [],
                            removed: Set<String> = []) -> Set<String> {
        let refs = referrers(g)
        var live: Set<String> = []
        var stack: [String] = []
        func visit(_ d: String) {
            guard g.manifests[d] != nil, !removed.contains(d), live.insert(d).inserted else { return }
            stack.append(d)
        }
        for t in g.tags where !ignoringTags.contains(t.name) { visit(t.digest) }
        for d in locked { visit(d) }
        while let d = stack.popLast() {
            for c in g.children[d] ?? [] { visit(c) }
            for r in refs[d] ?? [] { visit(r) }
        }
        return live
    }

    /// Deleting `target` by digest: refused when a lock or a live index still needs it; otherwise
    /// it goes with its tags, and (`dependents`) its referrers (recursively) and the index children
    /// nothing else keeps. Without `dependents` only the manifest and its tags go (a deletion
    /// applied from a peer region, whose own cascade arrives as deletions of their own).
    public static func cascade(_ g: RepositoryGraph, target: String, locks: LockTable, dependents: Bool = true) -> LifecycleChange {
        var change = LifecycleChange()
        let repo = g.repository
        guard g.manifests[target] != nil else { return change }
        let tagsOf = Dictionary(grouping: g.tags, by: \.digest).mapValues { $0.map(\.name) }
        if let blocker = locks.manifestDeletionBlocker(repo, digest: target, tags: tagsOf[target] ?? []) {
            change.denied = blocker
            return change
        }
        let locked = locks.lockedManifests(repo)
        let liveNow = live(g, locked: locked)
        if let parent = (parents(g)[target] ?? []).sorted().first(where: { liveNow.contains($0) }) {
            change.denied = "manifest \(target) is listed by index \(parent); delete the index instead"
            return change
        }
        change.deleteManifests = [LifecycleDeletion(repository: repo, digest: target, mediaType: g.manifests[target]?.mediaType,
                                                    reason: "requested")]
        if dependents { expand(g, &change, locks: locks, locked: locked, tagsOf: tagsOf) }
        return change
    }

    /// Adds to `change` the referrers of deleted manifests and the index children that nothing
    /// else keeps, until nothing more follows.
    static func expand(_ g: RepositoryGraph, _ change: inout LifecycleChange, locks: LockTable, locked: Set<String>,
                       tagsOf: [String: [String]]) {
        let repo = g.repository
        let refs = referrers(g)
        let parentsOf = parents(g)
        var removed = Set(change.deleteManifests.map(\.digest))
        var skipped: Set<String> = []
        var frontier = Array(removed)
        while !frontier.isEmpty {
            let ignoring = Set(change.deleteTags.map(\.tag)).union(removed.flatMap { tagsOf[$0] ?? [] })
            let remainingLive = live(g, locked: locked, ignoringTags: ignoring, removed: removed)
            var next: [String] = []
            for d in frontier {
                var follow: [(String, String)] = (refs[d] ?? []).map { ($0, "referrer of deleted \(d)") }
                follow += (g.children[d] ?? []).map { ($0, "child of deleted index \(d)") }
                for (candidate, reason) in follow where !removed.contains(candidate) && !skipped.contains(candidate) {
                    guard let m = g.manifests[candidate] else { continue }
                    let isReferrer = m.subject == d
                    if !isReferrer {
                        // An index child stays while it is live another way or another index lists it.
                        if remainingLive.contains(candidate) { continue }
                        if (parentsOf[candidate] ?? []).contains(where: { !removed.contains($0) }) { continue }
                    }
                    if let blocker = locks.manifestDeletionBlocker(repo, digest: candidate, tags: tagsOf[candidate] ?? []) {
                        skipped.insert(candidate)
                        change.skipped.append(LifecycleSkip(repository: repo, tag: nil, digest: candidate, reason: blocker))
                        continue
                    }
                    removed.insert(candidate)
                    next.append(candidate)
                    change.deleteManifests.append(LifecycleDeletion(repository: repo, digest: candidate, mediaType: m.mediaType,
                                                                    reason: reason))
                }
            }
            frontier = next
        }
    }

    /// Keeps only deletions whose every parent index goes too (an index never loses a child).
    static func withoutOrphaningIndexes(_ candidates: Set<String>, _ g: RepositoryGraph) -> Set<String> {
        let parentsOf = parents(g)
        var kept = candidates
        var changed = true
        while changed {
            changed = false
            for c in kept where (parentsOf[c] ?? []).contains(where: { g.manifests[$0] != nil && !kept.contains($0) }) {
                kept.remove(c)
                changed = true
            }
        }
        return kept
    }

    /// Why an unlive manifest goes, for reports.
    static func reason(_ d: String, _ g: RepositoryGraph, deleting: Set<String>, wasLive: Bool, fallback: String) -> String {
        let m = g.manifests[d]
        if let s = m?.subject, deleting.contains(s) { return "referrer of deleted \(s)" }
        if let p = (parents(g)[d] ?? []).sorted().first(where: { deleting.contains($0) }) { return "child of deleted index \(p)" }
        return wasLive ? "tag purged" : fallback
    }
}

/// What `berth purge` does.
public struct PurgeOptions: Sendable {
    public var filters: [PurgeFilter]
    public var ago: TimeInterval
    public var untagged: Bool
    public var keep: Int
    public init(filters: [PurgeFilter], ago: TimeInterval, untagged: Bool, keep: Int) {
        self.filters = filters
        self.ago = ago
        self.untagged = untagged
        self.keep = keep
    }
}

public enum LifecyclePlanner {
    /// Run reports kept per kind (`recordRun`): the newest, older ones dropped as a new one is recorded.
    public static let keptRunReports = 1000

    /// Recycle-bin entries removed for good in one transaction when they expire (the janitor
    /// comes back for the rest at its next tick).
    public static let expiryBatch = 10_000

    /// Tags matching a filter, older than `ago`, beyond the `keep` newest, are deleted; with
    /// `untagged`, manifests then not live (created before the grace period) go too. Nothing live
    /// is deleted; locked tags are skipped and reported.
    public static func purge(_ g: RepositoryGraph, _ o: PurgeOptions, locks: LockTable, now: Date, grace: TimeInterval) -> LifecycleChange {
        var change = LifecycleChange()
        let repo = g.repository
        let filters = o.filters.filter { $0.matchesRepository(repo) }
        guard !filters.isEmpty else { return change }
        let cutoff = now.addingTimeInterval(-o.ago)
        var doomed: [String: RepositoryGraph.Tag] = [:]
        for f in filters {
            let matching = g.tags.filter { f.matchesTag($0.name) }
                .sorted { ($0.updatedAt, $0.name) > ($1.updatedAt, $1.name) }
            for t in matching.dropFirst(max(0, o.keep)) where t.updatedAt < cutoff { doomed[t.name] = t }
        }
        for t in doomed.values.sorted(by: { $0.name < $1.name }) {
            if let blocker = locks.tagDeletionBlocker(repo, tag: t.name, digest: t.digest) {
                change.skipped.append(LifecycleSkip(repository: repo, tag: t.name, digest: t.digest, reason: blocker))
            } else {
                change.deleteTags.append(LifecycleTagDeletion(repository: repo, tag: t.name, digest: t.digest))
            }
        }
        guard o.untagged else { return change }
        if let blocker = LockTable.deleteBlocker(locks.repository(repo)) {
            change.skipped.append(LifecycleSkip(repository: repo, tag: nil, digest: nil, reason: blocker))
            return change
        }
        let locked = locks.lockedManifests(repo)
        let before = Liveness.live(g, locked: locked)
        let after = Liveness.live(g, locked: locked, ignoringTags: Set(change.deleteTags.map(\.tag)))
        let graceCutoff = now.addingTimeInterval(-grace)
        let candidates = Set(g.manifests.values.filter { !after.contains($0.digest) && $0.createdAt <= graceCutoff }.map(\.digest))
        let deleting = Liveness.withoutOrphaningIndexes(candidates, g)
        change.deleteManifests = deleting.sorted().map { d in
            LifecycleDeletion(repository: repo, digest: d, mediaType: g.manifests[d]?.mediaType,
                              reason: Liveness.reason(d, g, deleting: deleting, wasLive: before.contains(d), fallback: "untagged"))
        }
        return change
    }

    /// Retention of untagged manifests: stamps when manifests stopped being live, and deletes
    /// those not live for longer than `days`.
    public static func retention(_ g: RepositoryGraph, days: Double, locks: LockTable, now: Date, grace: TimeInterval,
                                 delete: Bool) -> LifecycleChange {
        var change = LifecycleChange()
        let repo = g.repository
        let live = Liveness.live(g, locked: locks.lockedManifests(repo))
        for m in g.manifests.values {
            if live.contains(m.digest), m.unliveSince != nil { change.unliveUpdates[m.digest] = .some(nil) }
            if !live.contains(m.digest), m.unliveSince == nil { change.unliveUpdates[m.digest] = .some(now) }
        }
        guard delete else { return change }
        if let blocker = LockTable.deleteBlocker(locks.repository(repo)) {
            if g.manifests.values.contains(where: { !live.contains($0.digest) }) {
                change.skipped.append(LifecycleSkip(repository: repo, tag: nil, digest: nil, reason: blocker))
            }
            return change
        }
        let cutoff = now.addingTimeInterval(-days * 86_400)
        let graceCutoff = now.addingTimeInterval(-grace)
        let candidates = Set(g.manifests.values.filter {
            !live.contains($0.digest) && ($0.unliveSince ?? now) <= cutoff && $0.createdAt <= graceCutoff
        }.map(\.digest))
        let deleting = Liveness.withoutOrphaningIndexes(candidates, g)
        change.deleteManifests = deleting.sorted().map { d in
            LifecycleDeletion(repository: repo, digest: d, mediaType: g.manifests[d]?.mediaType,
                              reason: Liveness.reason(d, g, deleting: deleting, wasLive: false, fallback: "untagged"))
        }
        for d in deleting { change.unliveUpdates[d] = nil }
        return change
    }

    /// Deleting a whole repository: every tag and manifest, except what a lock keeps (reported).
    public static func deleteRepository(_ g: RepositoryGraph, locks: LockTable) -> LifecycleChange {
        var change = LifecycleChange()
        let repo = g.repository
        if let blocker = LockTable.deleteBlocker(locks.repository(repo)) {
            change.denied = blocker
            return change
        }
        var keptTags: Set<String> = []
        for t in g.tags.sorted(by: { $0.name < $1.name }) {
            if let blocker = locks.tagDeletionBlocker(repo, tag: t.name, digest: t.digest) {
                keptTags.insert(t.name)
                change.skipped.append(LifecycleSkip(repository: repo, tag: t.name, digest: t.digest, reason: blocker))
            } else {
                change.deleteTags.append(LifecycleTagDeletion(repository: repo, tag: t.name, digest: t.digest))
            }
        }
        let locked = locks.lockedManifests(repo)
        let stays = Liveness.live(g, locked: locked, ignoringTags: Set(change.deleteTags.map(\.tag)))
        change.deleteManifests = g.manifests.keys.filter { !stays.contains($0) }.sorted().map {
            LifecycleDeletion(repository: repo, digest: $0, mediaType: g.manifests[$0]?.mediaType, reason: "requested")
        }
        for d in locked where g.manifests[d] != nil {
            change.skipped.append(LifecycleSkip(repository: repo, tag: nil, digest: d,
                                                reason: LockTable.deleteBlocker(locks.manifest(repo, d)) ?? "locked"))
        }
        change.unlinkAllBlobs = stays.isEmpty
        return change
    }
}
