import Foundation
import OCIModel

/// Everything the lifecycle rules need to know about one repository, read in one transaction:
/// manifests, which index lists which manifest, and the tags. Digests are kept as strings.
public struct RepositoryGraph: Sendable {
    public struct Manifest: Sendable, Equatable {
        public var digest: String
        public var mediaType: String
        public var artifactType: String?
        public var size: Int64
        public var subject: String?
        public var createdAt: Date
        /// When the manifest was last seen to stop being live (nil: live, or not yet seen unlive).
        public var unliveSince: Date?
        public var quarantineState: QuarantineState?
        /// The tags it had before (its tag history, oldest first, at most the history limit): in
        /// the whole graph only (empty in a graph read `around` a digest).
        public var formerTags: [String]

        public init(digest: String, mediaType: String, artifactType: String?, size: Int64, subject: String?, createdAt: Date,
                    unliveSince: Date?, quarantineState: QuarantineState?, formerTags: [String] = []) {
            self.formerTags = formerTags
            self.digest = digest
            self.mediaType = mediaType
            self.artifactType = artifactType
            self.size = size
            self.subject = subject
            self.createdAt = createdAt
            self.unliveSince = unliveSince
            self.quarantineState = quarantineState
        }
    }

    public struct Tag: Sendable, Equatable {
        public var name: String
        public var digest: String
        public var updatedAt: Date
        public init(name: String, digest: String, updatedAt: Date) {
            self.name = name
            self.digest = digest
            self.updatedAt = updatedAt
        }
    }

    public var repository: String
    public var manifests: [String: Manifest]
    /// Index digest → the manifests it lists.
    public var children: [String: [String]]
    public var tags: [Tag]

    public init(repository: String, manifests: [String: Manifest], children: [String: [String]], tags: [Tag]) {
        self.repository = repository
        self.manifests = manifests
        self.children = children
        self.tags = tags
    }
}

/// Why a lifecycle operation removes a manifest or a tag; recorded in the event and the report.
public struct LifecycleDeletion: Sendable, Equatable, Codable {
    public var repository: String
    public var digest: String
    public var mediaType: String?
    public var reason: String
    public init(repository: String, digest: String, mediaType: String?, reason: String) {
        self.repository = repository
        self.digest = digest
        self.mediaType = mediaType
        self.reason = reason
    }
}

public struct LifecycleTagDeletion: Sendable, Equatable, Codable {
    public var repository: String
    public var tag: String
    public var digest: String
    public init(repository: String, tag: String, digest: String) {
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }
}

/// Something a lifecycle operation would have removed but did not (a lock).
public struct LifecycleSkip: Sendable, Equatable, Codable {
    public var repository: String
    public var tag: String?
    public var digest: String?
    public var reason: String
    public init(repository: String, tag: String?, digest: String?, reason: String) {
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.reason = reason
    }
}

/// What a manifest keeps when a tag leaves it (a push moves the tag away, the tag is deleted,
/// a restore takes it): every plan that takes tags carries the cap (`tagHistoryLimit`), which the
/// core chooses (`ContentPlanner.tagHistoryLimit`). A store applies this to the manifest's state as
/// it reads it inside the change's transaction (two changes taking tags from one manifest at once
/// both count); the core applies it to a graph it plans from (`ContentPlanner.deletionRecords`).
/// It is a rule on a record, kept with the records so that no backend writes its own.
public struct TagLoss: Sendable, Equatable {
    /// The manifest's tag history, oldest first.
    public var formerTags: [String]
    /// When it was last seen to stop being live (nil: live, or not yet seen unlive).
    public var unliveSince: Date?

    public init(formerTags: [String], unliveSince: Date?) {
        self.formerTags = formerTags
        self.unliveSince = unliveSince
    }

    /// The history after losing `tag`: the tag moved to the newest end, at most `limit` kept
    /// (the newest; 0 keeps none).
    public static func history(_ former: [String], losing tag: String, limit: Int) -> [String] {
        var former = former
        former.removeAll { $0 == tag }
        former.append(tag)
        return Array(former.suffix(max(0, limit)))
    }

    /// The state after losing `tag` at `now`: the tag remembered (`history`), and a manifest no
    /// tag points at any more stamped not-live at `now` unless it was already (the retention pass
    /// corrects the stamp of one an index or a subject keeps live).
    public func losing(_ tag: String, limit: Int, tagsLeft: Bool, now: Date) -> TagLoss {
        TagLoss(formerTags: Self.history(formerTags, losing: tag, limit: limit),
                unliveSince: unliveSince ?? (tagsLeft ? nil : now))
    }
}

/// What one lifecycle step does to one repository, decided from its graph inside the write
/// transaction that applies it (so nothing that became live meanwhile is removed).
public struct LifecycleChange: Sendable, Equatable {
    public var deleteTags: [LifecycleTagDeletion] = []
    public var deleteManifests: [LifecycleDeletion] = []
    /// The tags that go with a deleted manifest (each pointing at one of `deleteManifests`, not
    /// named in `deleteTags`): removed just before their manifest, each with a `tag.delete` event
    /// of detail `EventAction.cascadeDetail`. A manifest deletion that would leave a tag pointing at
    /// the manifest is refused (`LifecycleChangeInvalid`): the store takes no tag the plan did not name.
    public var cascadeTags: [LifecycleTagDeletion] = []
    public var skipped: [LifecycleSkip] = []
    /// New values of `unliveSince` (nil clears it).
    public var unliveUpdates: [String: Date?] = [:]
    /// Event detail of every deletion ("purge run 3", "retention", "repository delete", ...).
    public var detail: String?
    /// Also remove the repository's blob links (repository delete).
    public var unlinkAllBlobs = false
    /// Refuse the whole change with this message (a lock, an index that still lists the manifest).
    public var denied: String?
    /// Remove the locks of the tags and manifests it deletes (set by the core's deletion rules).
    public var dropLocks = false
    /// How many former tags a manifest that loses a tag keeps in its history. 0 keeps none.
    public var tagHistoryLimit = 0
    /// What each deleted manifest (by digest) leaves behind, as the core planned it: its event's
    /// detail and, with soft delete, its recycle-bin entry's reason and tags. A manifest the
    /// change deletes without a record gets its deletion's `reason` as both, and the tags the
    /// change took from it, in the order taken.
    public var records: [String: LifecycleDeletionRecord] = [:]

    public init() {}

    public var isEmpty: Bool { deleteTags.isEmpty && deleteManifests.isEmpty && unliveUpdates.isEmpty && !unlinkAllBlobs }
}

/// What a deleted manifest leaves behind (`LifecycleChange.records`).
public struct LifecycleDeletionRecord: Sendable, Equatable {
    /// The detail of its `manifest.delete` event.
    public var eventDetail: String
    /// Its recycle-bin entry's reason (with soft delete).
    public var binReason: String
    /// Its recycle-bin entry's tags, in order (with soft delete): what a restore may bring back.
    public var binTags: [String]
    public init(eventDetail: String, binReason: String, binTags: [String]) {
        self.eventDetail = eventDetail
        self.binReason = binReason
        self.binTags = binTags
    }
}

/// A lifecycle change the store cannot apply as planned: nothing of it is applied.
public struct LifecycleChangeInvalid: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "lifecycle change refused by the store: \(reason)" }
}

/// A manifest in the recycle bin.
public struct DeletedManifest: Sendable, Equatable, Codable {
    public var id: Int64
    public var repository: String
    public var digest: String
    public var mediaType: String
    public var size: Int64
    public var deletedAt: Date
    public var expiresAt: Date
    public var tags: [String]
    public var reason: String
    public init(id: Int64, repository: String, digest: String, mediaType: String, size: Int64, deletedAt: Date, expiresAt: Date, tags: [String], reason: String) {
        self.id = id
        self.repository = repository
        self.digest = digest
        self.mediaType = mediaType
        self.size = size
        self.deletedAt = deletedAt
        self.expiresAt = expiresAt
        self.tags = tags
        self.reason = reason
    }
}

public struct RestoredManifest: Sendable, Equatable, Codable {
    public var digest: String
    public var tags: [String]
    public init(digest: String, tags: [String]) {
        self.digest = digest
        self.tags = tags
    }
}

public enum RestoreError: Error, Sendable, Equatable {
    /// A blob or manifest bytes a restored manifest needs are no longer stored.
    case childMissing(String)
    /// A tag no longer points where the restore was planned from: plan again.
    case tagConflict(tag: String, current: String?)
    /// The recycle bin or the manifests changed since the restore was planned (an entry gone, a
    /// manifest to restore already back, a manifest one lists no longer present): plan again.
    case planStale
}

/// A recycle-bin entry with what planning a restore reads: its subject and what it listed.
public struct RecycleBinEntry: Sendable, Equatable {
    public var entry: DeletedManifest
    public var subject: String?
    /// The manifests it listed (an index's children), in digest order.
    public var manifests: [String]
    /// The blobs it referenced (config and layers), in digest order.
    public var blobs: [String]
    /// Its quarantine state and reason when it was deleted.
    public var quarantineState: QuarantineState?
    public var quarantineReason: String?
    public init(entry: DeletedManifest, subject: String?, manifests: [String], blobs: [String],
                quarantineState: QuarantineState? = nil, quarantineReason: String? = nil) {
        self.entry = entry
        self.subject = subject
        self.manifests = manifests
        self.blobs = blobs
        self.quarantineState = quarantineState
        self.quarantineReason = quarantineReason
    }
}

/// What a manifest a restore brings back comes back with, as the core planned it
/// (`RestorePlanning.comesBack`): the store writes it as given.
public struct RestoredState: Sendable, Equatable {
    public var quarantineState: QuarantineState?
    public var quarantineReason: String?
    /// Its not-live stamp (nil: live until the retention pass sees otherwise).
    public var unliveSince: Date?
    /// The blobs linked into the repository again, each of which must still be stored
    /// (`RestoreError.childMissing` otherwise); a link that exists is left as it is.
    public var links: [String]
    public init(quarantineState: QuarantineState?, quarantineReason: String?, unliveSince: Date?, links: [String]) {
        self.quarantineState = quarantineState
        self.quarantineReason = quarantineReason
        self.unliveSince = unliveSince
        self.links = links
    }
}

/// A tag a restore points at the restored manifest, planned from where it pointed then.
public struct RestoreTagMove: Sendable, Equatable {
    public var tag: String
    /// Where the tag pointed when the restore was planned (nil: nowhere).
    public var expected: String?
    public init(tag: String, expected: String?) {
        self.tag = tag
        self.expected = expected
    }
}

/// A restore as the core planned it (`RestorePlanning` in RegistryCore): the store applies it as
/// one transaction or not at all, checking only that what it was planned from still holds.
public struct RestorePlan: Sendable, Equatable {
    /// The repository's recycle-bin entries to bring back, in this order: a manifest comes after
    /// every manifest it lists.
    public var entries: [Int64]
    /// What each entry's manifest comes back with, by entry id: an entry without one makes the
    /// plan stale.
    public var comesBack: [Int64: RestoredState]
    /// The restored manifest the tags are moved to.
    public var digest: String
    public var tagMoves: [RestoreTagMove]
    /// How many former tags a manifest that loses a tag to the restore keeps in its history.
    public var tagHistoryLimit: Int
    /// Every bin entry the plan was made from, of every digest it restores: an entry of such a
    /// digest that is not among them (deleted again since) makes the plan stale.
    public var known: Set<Int64>
    /// `known` nil: the planned entries only (a plan made from a bin holding nothing else of them).
    public init(entries: [Int64], comesBack: [Int64: RestoredState], digest: String, tagMoves: [RestoreTagMove],
                tagHistoryLimit: Int, known: Set<Int64>? = nil) {
        self.entries = entries
        self.comesBack = comesBack
        self.digest = digest
        self.tagMoves = tagMoves
        self.tagHistoryLimit = tagHistoryLimit
        self.known = known ?? Set(entries)
    }
}

/// A lock (attributes) on a repository, one of its tags or one of its manifests. `false` means
/// the operation is disabled.
public struct LockRecord: Sendable, Equatable, Codable {
    public var repository: String
    public var tag: String?
    public var digest: String?
    public var readEnabled: Bool
    public var writeEnabled: Bool
    public var deleteEnabled: Bool
    public var listEnabled: Bool

    public init(repository: String, tag: String? = nil, digest: String? = nil, readEnabled: Bool = true, writeEnabled: Bool = true,
                deleteEnabled: Bool = true, listEnabled: Bool = true) {
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.readEnabled = readEnabled
        self.writeEnabled = writeEnabled
        self.deleteEnabled = deleteEnabled
        self.listEnabled = listEnabled
    }

    public var isDefault: Bool { readEnabled && writeEnabled && deleteEnabled && listEnabled }
}

/// A storage quota over every repository under a prefix.
public struct QuotaLimit: Sendable, Equatable, Codable {
    public var name: String
    public var prefix: String
    public var limitBytes: Int64
    public init(name: String, prefix: String, limitBytes: Int64) {
        self.name = name
        self.prefix = prefix
        self.limitBytes = limitBytes
    }

    /// "payments/" covers everything under payments/; "payments" covers payments itself and below.
    public func covers(_ repository: String) -> Bool {
        if prefix.hasSuffix("/") { return repository.hasPrefix(prefix) }
        return repository == prefix || repository.hasPrefix(prefix + "/")
    }
}

public struct QuotaExceeded: Error, Sendable, Equatable, CustomStringConvertible {
    public var quota: String
    public var limit: Int64
    public var used: Int64
    public var needed: Int64
    public init(quota: String, limit: Int64, used: Int64, needed: Int64) {
        self.quota = quota
        self.limit = limit
        self.used = used
        self.needed = needed
    }
    public var description: String {
        "storage quota '\(quota)' exceeded (limit \(limit) bytes, used \(used), push needs \(needed) more)"
    }
}

public struct UsageRecord: Sendable, Equatable, Codable {
    public var repository: String?
    public var bytes: Int64
    public var blobs: Int64
    public var manifests: Int64
    public var tags: Int64
    public var repositories: Int64?
    public var deletedManifests: Int64
    public init(repository: String?, bytes: Int64, blobs: Int64, manifests: Int64, tags: Int64, repositories: Int64?, deletedManifests: Int64) {
        self.repository = repository
        self.bytes = bytes
        self.blobs = blobs
        self.manifests = manifests
        self.tags = tags
        self.repositories = repositories
        self.deletedManifests = deletedManifests
    }
}

/// A repository as `repository list` shows it.
public struct RepositorySummary: Sendable, Equatable {
    public var name: String
    public var manifests: Int64
    public var tags: Int64
    public var createdAt: Date
    public var lastUpdatedAt: Date?
    public init(name: String, manifests: Int64, tags: Int64, createdAt: Date, lastUpdatedAt: Date?) {
        self.name = name
        self.manifests = manifests
        self.tags = tags
        self.createdAt = createdAt
        self.lastUpdatedAt = lastUpdatedAt
    }
}

/// A stored blob as garbage collection sees it.
public struct StoredBlob: Sendable, Equatable {
    public var digest: String
    public var size: Int64
    public var inline: Bool
    public init(digest: String, size: Int64, inline: Bool) {
        self.digest = digest
        self.size = size
        self.inline = inline
    }
}

public struct BlobCollectionState: Sendable, Equatable {
    public var size: Int64
    public var createdAt: Date
    public var linkedRepositories: [String]
    public var referenced: Bool
    public init(size: Int64, createdAt: Date, linkedRepositories: [String], referenced: Bool) {
        self.size = size
        self.createdAt = createdAt
        self.linkedRepositories = linkedRepositories
        self.referenced = referenced
    }
}

/// What a lifecycle run (purge, retention, gc, soft-delete expiry) reported.
public struct LifecycleRunRecord: Sendable, Equatable {
    public var id: Int64
    public var kind: RunKind
    public var name: String?
    public var dryRun: Bool
    public var startedAt: Date
    public var finishedAt: Date
    /// The report as JSON.
    public var report: String
    public init(id: Int64, kind: RunKind, name: String?, dryRun: Bool, startedAt: Date, finishedAt: Date, report: String) {
        self.id = id
        self.kind = kind
        self.name = name
        self.dryRun = dryRun
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.report = report
    }
}

public struct PurgeScheduleRecord: Sendable, Equatable, Codable {
    public var name: String
    public var cron: String
    public var filters: [String]
    public var ago: String
    public var untagged: Bool
    public var keep: Int
    public var createdAt: Date
    public var lastRunAt: Date?

    public init(name: String, cron: String, filters: [String], ago: String, untagged: Bool, keep: Int, createdAt: Date,
                lastRunAt: Date? = nil) {
        self.name = name
        self.cron = cron
        self.filters = filters
        self.ago = ago
        self.untagged = untagged
        self.keep = keep
        self.createdAt = createdAt
        self.lastRunAt = lastRunAt
    }
}

/// What kind of lifecycle run a report is of. The raw values are what the store keeps, the API
/// filters on (`?kind=`) and reports show.
public enum RunKind: String, Codable, Sendable, CaseIterable {
    case purge
    case retention
    case gc
    case softDelete = "soft-delete"
    case repositoryDelete = "repository-delete"
}

/// Persistence of the lifecycle features: graphs, guarded deletions, the recycle bin, locks,
/// garbage-collection sweeps, usage, run reports and purge schedules.
public protocol LifecycleStore: Sendable {
    func repositoryGraph(_ repository: String) async throws -> RepositoryGraph?
    /// The repository's graph restricted to `digest` and the manifests it lists, without tags
    /// (nil when the repository is unknown): all a quarantine verdict is planned from, read by
    /// key instead of the whole repository for every verdict.
    func repositoryGraph(_ repository: String, around digest: Digest) async throws -> RepositoryGraph?
    /// Loads the graph inside a write transaction, asks `plan` what to change, and applies it with
    /// its events. `plan` must be pure (a planner of the graph it is given): a backend may run the
    /// transaction, and it, again when the database rolled it back (PostgreSQL's retries). Deleted
    /// manifests go to the recycle bin until `softDeleteUntil` when it is set, each with the
    /// reason and tags of its record (`LifecycleChange.records`); a repository's
    /// blob links go with one `blob.delete` event (`<n> blob links; <detail>`).
    func applyLifecycle(repository: String, softDeleteUntil: Date?,
                        plan: @Sendable (RepositoryGraph) throws -> LifecycleChange) async throws -> LifecycleChange?
    /// Repository names with events after `sequence`, and the newest sequence.
    func repositoriesChanged(after sequence: Int64) async throws -> (repositories: [String], latest: Int64)
    /// Repositories holding manifests not live since before `cutoff`.
    func repositoriesWithUnliveManifests(before cutoff: Date) async throws -> [String]
    /// Repositories with content (all, or the one named), in name order.
    func repositorySummaries(named name: String?) async throws -> [RepositorySummary]

    // recycle bin
    /// The repository's recycle-bin entries, in no particular order (the core orders them).
    func deletedManifests(repository: String) async throws -> [DeletedManifest]
    /// Every recycle-bin entry of the repository whose digest is one of `digests` (a digest
    /// deleted several times has several), in no particular order; none for an unknown repository.
    func recycleBinEntries(repository: String, digests: [String]) async throws -> [RecycleBinEntry]
    /// Every recycle-bin entry of the repository whose subject is `subject`, in no particular order.
    func recycleBinEntries(repository: String, subject: String) async throws -> [RecycleBinEntry]
    /// Applies a restore the core planned, as one transaction or not at all. Each entry, in the
    /// plan's order, must still be in this repository's bin, every bin entry of its digest among
    /// `plan.known`, its manifest not stored, and every manifest it lists stored by then (else
    /// `RestoreError.planStale`); every blob it referenced
    /// and its own bytes must be stored (else `RestoreError.childMissing`, nothing restored). Each
    /// comes back with its links, references and quarantine state, with a `restore` event. Each tag
    /// move must find its tag where it was planned from (else `RestoreError.tagConflict`); the tag
    /// then points at `plan.digest` with a `tag.move` event (detail `restore`, or `restore; from
    /// <digest>`), and the manifest it left goes through the same not-live stamping and tag
    /// history (`plan.tagHistoryLimit`) as a push's.
    func applyRestore(repository: String, plan: RestorePlan) async throws
    /// Removes at most `limit` recycle-bin entries that expired before `now`, oldest entry first,
    /// in one transaction; returns them.
    func expireDeletedManifests(now: Date, limit: Int) async throws -> [DeletedManifest]

    // locks
    func locks() async throws -> [LockRecord]
    func setLock(_ lock: LockRecord) async throws

    // garbage collection
    /// Blob links no manifest (live or in the recycle bin) of their repository references, linked before `cutoff`.
    func unreferencedLinks(before cutoff: Date, limit: Int) async throws -> [(repository: String, digest: String)]
    /// Removes the link if it is still unreferenced, with its `blob.delete` event (detail
    /// `EventAction.unreferencedLinkDetail`, so every node's caches drop the link); returns whether it did.
    func removeUnreferencedLink(repository: String, digest: String, before cutoff: Date) async throws -> Bool
    /// Stored digests nothing references (no link, no manifest, no reference), stored before `cutoff`.
    func unreferencedBlobs(before cutoff: Date, limit: Int) async throws -> [StoredBlob]
    /// Removes the blob's row if it is still unreferenced; returns it when removed.
    func removeUnreferencedBlob(_ digest: String, before cutoff: Date) async throws -> StoredBlob?
    func hasBlobRecord(_ digest: String) async throws -> Bool
    /// For a dry run: a stored digest's size, age, the repositories linking it, and whether any
    /// manifest (live or in the recycle bin) is or references it.
    func blobCollectionState(_ digest: String) async throws -> BlobCollectionState?

    // usage and quotas
    func usage(repository: String?) async throws -> UsageRecord?
    /// Bytes of distinct digests stored by repositories a quota covers.
    func quotaUsage(_ quota: QuotaLimit) async throws -> Int64
    /// The quota that linking `digest` (`size` bytes) into `repository` would exceed, by the same
    /// rule the linking transaction applies, read outside it (to refuse before committing bytes).
    func quotaExceeded(_ quotas: [QuotaLimit], repository: String, digest: String, size: Int64) async throws -> QuotaExceeded?

    // reports and schedules
    /// Records a run's report, keeping the newest `keep` reports of its kind (the core's number;
    /// less than one keeps this one); returns its id.
    @discardableResult
    func recordRun(kind: RunKind, name: String?, dryRun: Bool, startedAt: Date, finishedAt: Date, report: String,
                   event: (action: EventAction, detail: String)?, keep: Int) async throws -> Int64
    func runs(kind: RunKind?, name: String?, limit: Int) async throws -> [LifecycleRunRecord]
    func purgeSchedules() async throws -> [PurgeScheduleRecord]
    func createPurgeSchedule(_ schedule: PurgeScheduleRecord) async throws -> Bool
    func deletePurgeSchedule(name: String) async throws -> Bool
    func markPurgeScheduleRun(name: String, at: Date) async throws
}
