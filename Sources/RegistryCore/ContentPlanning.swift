import Foundation
import OCIModel
import RegistryStore

/// The content rules, as pure functions from what the core read to the plan a store applies (the
/// lifecycle rules are in LifecyclePlanning.swift). A store checks a plan's preconditions and
/// applies it in one transaction with its events; it decides nothing itself, so every backend
/// behaves the same without copying a rule.
///
/// The plans and what they decide:
/// - `ManifestPush` (`push`): the state a new manifest starts in, where the tag was when the push
///   was planned (the store refuses to move it from anywhere else), and the tag-history cap.
/// - `TagDeletion` (`tagDeletion`): the tag's expected target, that its lock goes with it, the cap.
/// - a restore: `RestorePlanning` (RestorePlanning.swift).
/// - `LifecycleChange` (`withDeletionRules`): the tags a deleted manifest takes with it
///   (`cascadeTags`), the lock and history rules above, and what each deleted manifest leaves
///   behind (`records`: its event's detail, its recycle-bin entry's reason and tags).
/// - `QuarantineUpdate` (`quarantine`): which manifests follow a verdict, from which state, with
///   which reason.
/// - `QuarantineSweep` (`quarantineExisting`, `releasePending`): what switching quarantine on or
///   off moves.
public enum ContentPlanner {
    /// Former tags a manifest remembers: what a soft-deleted manifest takes to the recycle bin
    /// (and restore can put back).
    public static let tagHistoryLimit = 50

    /// How often a change planned from a state that moved before it applied is planned again
    /// before the caller is told to retry.
    public static let attempts = 8

    /// The state a newly pushed manifest starts in: `Pending` while quarantine-on-push is on,
    /// except for referrers (signatures and attestations stay readable so a gate can check them);
    /// otherwise none.
    public static func initialQuarantine(enabled: Bool, subject: Digest?) -> QuarantineState? {
        enabled && subject == nil ? .pending : nil
    }

    /// A manifest push, planned from where `tag` points now (`currentTagTarget`, nil: nowhere).
    public static func push(repository: String, record: ManifestRecord, bytes: [UInt8], tag: String?, currentTagTarget: Digest?,
                            blobs: [Digest], children: [Digest], quarantineEnabled: Bool, quotas: [QuotaLimit]) -> ManifestPush {
        var record = record
        record.quarantineState = initialQuarantine(enabled: quarantineEnabled, subject: record.subject)
        record.quarantineReason = nil
        var push = ManifestPush(repository: repository, record: record, bytes: bytes, tag: tag, blobs: blobs, children: children)
        push.expectedTagTarget = tag == nil ? nil : currentTagTarget
        push.tagHistoryLimit = tagHistoryLimit
        push.quotas = quotas
        return push
    }

    /// Deleting `tag`, which points at `target`. Its lock goes with it: a lock left behind would
    /// bind a later tag of the same name that nobody locked. The manifest remembers the tag.
    public static func tagDeletion(repository: String, tag: String, target: Digest) -> TagDeletion {
        TagDeletion(repository: repository, tag: tag, expectedTarget: target, dropLock: true, tagHistoryLimit: tagHistoryLimit)
    }

    /// A lifecycle change with the rules every deletion follows: every tag pointing at a deleted
    /// manifest goes with it (`cascadeTags`, in name order; those the change deletes by name
    /// already are not repeated), the locks of deleted tags and manifests go with them, a
    /// manifest that loses a tag remembers it, and each deleted manifest leaves its record
    /// (`deletionRecords`). `graph` is the one the change was planned from; `reason` names what
    /// deletes (`api`, `purge`, `retention`, `repository delete`), and `softDeleted` whether the
    /// manifests go to the recycle bin.
    public static func withDeletionRules(_ change: LifecycleChange, graph: RepositoryGraph, reason: String,
                                         softDeleted: Bool) -> LifecycleChange {
        var change = change
        let deleted = Set(change.deleteManifests.map(\.digest))
        let named = Set(change.deleteTags.map { "\($0.tag)\u{0}\($0.digest)" })
        change.cascadeTags = graph.tags
            .filter { deleted.contains($0.digest) && !named.contains("\($0.name)\u{0}\($0.digest)") }
            .sorted { $0.name < $1.name }
            .map { LifecycleTagDeletion(repository: graph.repository, tag: $0.name, digest: $0.digest) }
        change.dropLocks = true
        change.tagHistoryLimit = tagHistoryLimit
        change.records = deletionRecords(change, graph: graph, reason: reason, softDeleted: softDeleted)
        return change
    }

    /// What each manifest `change` deletes leaves behind:
    /// - its `manifest.delete` event's detail: its deletion's reason, the change's detail, and
    ///   `soft-deleted` when it goes to the recycle bin (`requested; purge run 3; soft-deleted`);
    /// - its recycle-bin entry's reason: `reason` for a deletion asked for as such (`requested`),
    ///   else `<reason>: <why>` (`retention: not live since …`);
    /// - its entry's tags, each once: those the change takes with it (`cascadeTags`, in order),
    ///   then those it deletes by name, then its former tags, newest first (what a restore may
    ///   bring back). Only tags that point at it in `graph` count as taken.
    public static func deletionRecords(_ change: LifecycleChange, graph: RepositoryGraph, reason: String,
                                       softDeleted: Bool) -> [String: LifecycleDeletionRecord] {
        var pointing: [String: Set<String>] = [:]
        for t in graph.tags { pointing[t.digest, default: []].insert(t.name) }
        var records: [String: LifecycleDeletionRecord] = [:]
        for m in change.deleteManifests where records[m.digest] == nil {
            let has = pointing[m.digest] ?? []
            let cascaded = change.cascadeTags.filter { $0.digest == m.digest && has.contains($0.tag) }.map(\.tag)
            let named = change.deleteTags.filter { $0.digest == m.digest && has.contains($0.tag) }.map(\.tag)
            // Its history as the deletions by name leave it: each one moved to the newest end, at
            // most the change's limit kept (as a tag deletion records it).
            var former = graph.manifests[m.digest]?.formerTags ?? []
            for t in named { former = TagLoss.history(former, losing: t, limit: change.tagHistoryLimit) }
            former = Array(former.suffix(max(0, change.tagHistoryLimit)))   // also when none is named
            var tags: [String] = []
            for t in cascaded + named + former.reversed() where !tags.contains(t) { tags.append(t) }
            var detail = m.reason
            if let d = change.detail { detail += "; " + d }
            if softDeleted { detail += "; soft-deleted" }
            records[m.digest] = LifecycleDeletionRecord(eventDetail: detail,
                                                        binReason: m.reason == "requested" ? reason : "\(reason): \(m.reason)",
                                                        binTags: tags)
        }
        return records
    }

    /// A verdict on `digest`, planned from its repository's graph; nil when the graph does not
    /// hold the manifest. The children an index lists follow it when they are quarantined (same
    /// state, a reason that names the index); children never quarantined stay so, and a child's
    /// verdict never changes its index.
    public static func quarantine(_ g: RepositoryGraph, digest: Digest, state: QuarantineState, reason: String?) -> QuarantineUpdate? {
        guard g.manifests[digest.string] != nil else { return nil }
        let via = reason.map { "\($0) (via index \(digest))" } ?? "via index \(digest)"
        var followers: [QuarantineUpdate.Follower] = []
        for child in Set(g.children[digest.string] ?? []).sorted() where child != digest.string {
            guard let from = g.manifests[child]?.quarantineState, let d = try? Digest(parsing: child) else { continue }
            followers.append(QuarantineUpdate.Follower(digest: d, from: from, reason: via))
        }
        return QuarantineUpdate(repository: g.repository, digest: digest, state: state, reason: reason, followers: followers)
    }

    /// The reason manifests get when quarantine is switched on without grandfathering.
    public static let quarantineExistingReason = "quarantine enabled without grandfathering"

    /// Switching quarantine on without grandfathering: every manifest never quarantined becomes
    /// `Pending`, except referrers (signatures and attestations stay readable so a gate can check
    /// them, as for a push). No event: nothing about the image changed but the gate in front of it.
    public static let quarantineExisting = QuarantineSweep(from: nil, includeReferrers: false, to: .pending,
                                                           reason: quarantineExistingReason, eventDetail: nil)

    /// Switching quarantine off: every `Pending` manifest is released (never quarantined, as if
    /// pushed with quarantine off), each with its `quarantine` event; `Failed` verdicts stay.
    public static let releasePending = QuarantineSweep(from: .pending, includeReferrers: true, to: nil, reason: nil,
                                                       eventDetail: "released: quarantine disabled")
}
