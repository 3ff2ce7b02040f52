import Foundation
import OCIModel
import RegistryStore

/// The rules of the recycle bin, in one place for every backend: which entry a restore brings
/// back, what comes back with it, which tags it takes, and the order the bin is listed in. The
/// store only reads entries and applies the `RestorePlan` this makes, checking that what it was
/// planned from still holds (`RestoreError.planStale`, `.tagConflict`: plan again).
public enum RestorePlanning {
    /// What the planner reads, so the rules can be checked without a store.
    public struct Reads: Sendable {
        /// Whether the repository stores the manifest now.
        public var present: @Sendable (String) async throws -> Bool
        /// Every bin entry of these digests.
        public var entries: @Sendable ([String]) async throws -> [RecycleBinEntry]
        /// Every bin entry whose subject is the digest.
        public var referrers: @Sendable (String) async throws -> [RecycleBinEntry]
        /// Where a tag points now (nil: nowhere).
        public var tagTarget: @Sendable (String) async throws -> String?

        public init(present: @escaping @Sendable (String) async throws -> Bool,
                    entries: @escaping @Sendable ([String]) async throws -> [RecycleBinEntry],
                    referrers: @escaping @Sendable (String) async throws -> [RecycleBinEntry],
                    tagTarget: @escaping @Sendable (String) async throws -> String?) {
            self.present = present
            self.entries = entries
            self.referrers = referrers
            self.tagTarget = tagTarget
        }

        /// The reads of `repository` in `store`.
        public static func store(_ store: any MetadataStore, repository: String) -> Reads {
            Reads(present: { d in
                guard let digest = try? Digest(parsing: d) else { return false }
                return try await store.manifest(repository: repository, digest: digest) != nil
            }, entries: { try await store.recycleBinEntries(repository: repository, digests: $0) },
            referrers: { try await store.recycleBinEntries(repository: repository, subject: $0) },
            tagTarget: { try await store.tagTarget(repository: repository, tag: $0)?.string })
        }
    }

    public enum Failure: Error, Equatable {
        /// No entry of the digest is in the bin, or the manifest is stored again.
        case notInRecycleBin
        /// A manifest the restored one lists is neither stored nor in the bin.
        case childMissing(String)
    }

    public struct Outcome: Sendable, Equatable {
        public var plan: RestorePlan
        /// What comes back, in the plan's order; the restored manifest with the tags it gets.
        public var restored: [RestoredManifest]
        /// Where each tag the restore considered pointed when it was planned.
        public var tagTargets: [String: String]
    }

    /// The recycle bin's listing order: the newest deletion first (the later id between equal times).
    public static func newestFirst(_ a: DeletedManifest, _ b: DeletedManifest) -> Bool {
        a.deletedAt != b.deletedAt ? a.deletedAt > b.deletedAt : a.id > b.id
    }

    /// The entry a restore of a digest brings back: its newest deletion.
    public static func newest(_ entries: [RecycleBinEntry], digest: String) -> RecycleBinEntry? {
        entries.filter { $0.entry.digest == digest }.min { newestFirst($0.entry, $1.entry) }
    }

    /// What a manifest comes back with: the quarantine state it was deleted in (a verdict is not
    /// lifted by deleting and restoring), live (the retention pass stamps it again if nothing keeps
    /// it live), and every blob it references linked into the repository again.
    public static func comesBack(_ e: RecycleBinEntry) -> RestoredState {
        RestoredState(quarantineState: e.quarantineState, quarantineReason: e.quarantineReason, unliveSince: nil, links: e.blobs)
    }

    /// Plans bringing `digest` back, under `tags` or (nil) its former tags:
    /// - the newest bin entry of the digest comes back, with every manifest it lists first (a
    ///   listed manifest stored already is left as it is; one neither stored nor in the bin
    ///   refuses the restore: an index never comes back without its children);
    /// - then the referrers deleted at the same moment as a manifest that comes back (its
    ///   signatures and SBOMs, deleted with it), each by the same rules, in digest order, once
    ///   everything planned before them is placed (a referrer may list a manifest that comes back);
    /// - named tags are moved to it from wherever they point (the caller checks their locks);
    ///   former tags only when they point nowhere now, in the order the history keeps them.
    /// The plan names every bin entry read of the digests it restores (`RestorePlan.known`), so a
    /// deletion of one of them made meanwhile makes it stale.
    public static func plan(digest: String, tags: [String]?, tagHistoryLimit: Int, reads: Reads) async throws -> Outcome {
        var known: Set<Int64> = []
        func entries(_ digests: [String]) async throws -> [RecycleBinEntry] {
            let found = try await reads.entries(digests)
            known.formUnion(found.map(\.entry.id))
            return found
        }
        guard let root = newest(try await entries([digest]), digest: digest) else { throw Failure.notInRecycleBin }
        var order: [RecycleBinEntry] = []
        var claimed: Set<String> = []
        var pending: [RecycleBinEntry] = []

        // Children first, depth first; referrers wait in `pending` until what is under way is placed.
        func visit(_ e: RecycleBinEntry) async throws {
            let d = e.entry.digest
            guard !claimed.contains(d), try await !reads.present(d) else { return }
            claimed.insert(d)
            var absent: [String] = []
            for child in e.manifests where !claimed.contains(child) {
                if try await !reads.present(child) { absent.append(child) }
            }
            if !absent.isEmpty {
                let found = try await entries(absent)
                for child in absent {
                    guard let entry = newest(found, digest: child) else { throw Failure.childMissing(child) }
                    try await visit(entry)
                }
            }
            order.append(e)
            let referrers = try await reads.referrers(d)
            known.formUnion(referrers.map(\.entry.id))
            pending += referrers.filter { $0.entry.deletedAt == e.entry.deletedAt }
                .sorted { $0.entry.digest != $1.entry.digest ? $0.entry.digest < $1.entry.digest : $0.entry.id < $1.entry.id }
        }
        try await visit(root)
        guard !order.isEmpty else { throw Failure.notInRecycleBin }
        while !pending.isEmpty { try await visit(pending.removeFirst()) }

        var moves: [RestoreTagMove] = []
        var applied: [String] = []
        var targets: [String: String] = [:]
        var considered: Set<String> = []
        for tag in tags ?? root.entry.tags where considered.insert(tag).inserted {
            let current = try await reads.tagTarget(tag)
            targets[tag] = current
            if tags == nil, current != nil { continue }   // a former tag in use elsewhere is left alone
            if current != digest { moves.append(RestoreTagMove(tag: tag, expected: current)) }
            applied.append(tag)
        }
        let plan = RestorePlan(entries: order.map(\.entry.id),
                               comesBack: Dictionary(uniqueKeysWithValues: order.map { ($0.entry.id, comesBack($0)) }),
                               digest: digest, tagMoves: moves, tagHistoryLimit: tagHistoryLimit, known: known)
        let restored = order.map { RestoredManifest(digest: $0.entry.digest, tags: $0.entry.digest == digest ? applied : []) }
        return Outcome(plan: plan, restored: restored, tagTargets: targets)
    }
}
