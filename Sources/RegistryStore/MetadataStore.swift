import Foundation
import OCIModel

/// A manifest's quarantine state; a manifest never quarantined has none (nil). The raw values are
/// what the store keeps and the API shows.
public enum QuarantineState: String, Codable, Sendable, CaseIterable {
    case pending = "Pending"
    case passed = "Passed"
    case failed = "Failed"

    /// Whether a manifest in `state` (nil: never quarantined) may be pulled by anyone.
    public static func isPullable(_ state: QuarantineState?) -> Bool {
        state == nil || state == .passed
    }
}

/// A stored state or action this build does not know (a row written by a newer version or another
/// backend). Reads that meet one fail with this error rather than guess: a guess could make a
/// quarantined manifest pullable or hide an event from a consumer that must see every one.
public struct UnknownStoredValue: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var value: String
    public init(field: String, value: String) {
        self.field = field
        self.value = value
    }
    public var description: String { "the metadata store holds an unknown \(field) '\(value)' (written by a newer version?)" }
}

/// A manifest as the metadata store keeps it.
public struct ManifestRecord: Sendable, Equatable {
    public var digest: Digest
    public var mediaType: String
    public var size: Int64
    public var artifactType: String?
    public var subject: Digest?
    public var annotations: [String: String]?
    public var createdAt: Date
    /// Quarantine state: nil (never quarantined), `Pending`, `Passed` or `Failed`.
    public var quarantineState: QuarantineState?
    public var quarantineReason: String?

    public init(digest: Digest, mediaType: String, size: Int64, artifactType: String?, subject: Digest?,
                annotations: [String: String]?, createdAt: Date, quarantineState: QuarantineState? = nil, quarantineReason: String? = nil) {
        self.quarantineState = quarantineState
        self.quarantineReason = quarantineReason
        self.digest = digest
        self.mediaType = mediaType
        self.size = size
        self.artifactType = artifactType
        self.subject = subject
        self.annotations = annotations
        self.createdAt = createdAt
    }
}

/// What a manifest push writes, in one transaction: a plan the core made (`ContentPlanner.push`).
/// The store decides nothing in it; it checks the references and the preconditions and applies it.
public struct ManifestPush: Sendable {
    public var repository: String
    /// The manifest as it is stored when it is new. Its `quarantineState` and `quarantineReason`
    /// are the state it starts in (nil: not quarantined): the store writes them as given and, when
    /// there is a state, appends its quarantine event first. A manifest already stored keeps its own.
    public var record: ManifestRecord
    public var bytes: [UInt8]
    public var tag: String?
    /// Where `tag` pointed when the core planned the push (nil: the tag did not exist). The store
    /// moves the tag only while it still points there; otherwise it writes nothing and answers
    /// `.tagConflict` with where the tag points now, for the core to plan again.
    public var expectedTagTarget: Digest?
    /// How many former tags a manifest keeps in its tag history (what a soft-deleted manifest
    /// takes to the recycle bin) when the tag moves away from it. 0 keeps none.
    public var tagHistoryLimit: Int = 0
    /// Blobs that must be linked into the repository.
    public var blobs: [Digest]
    /// Manifests that must already be in the repository.
    public var children: [Digest]
    /// Storage quotas the push must stay within (checked inside the transaction).
    public var quotas: [QuotaLimit] = []

    public init(repository: String, record: ManifestRecord, bytes: [UInt8], tag: String?, blobs: [Digest], children: [Digest]) {
        self.repository = repository
        self.record = record
        self.bytes = bytes
        self.tag = tag
        self.blobs = blobs
        self.children = children
    }
}

public enum ManifestPushResult: Sendable, Equatable {
    case stored(previousTagTarget: Digest?)
    /// References that the repository does not hold (MANIFEST_BLOB_UNKNOWN).
    case missing([Digest])
    /// The tag no longer points where the plan saw it (it points at `current`, nil: gone); nothing
    /// was written.
    case tagConflict(current: Digest?)
}

/// Deleting one tag, as the core planned it (`ContentPlanner.tagDeletion`).
public struct TagDeletion: Sendable, Equatable {
    public var repository: String
    public var tag: String
    /// Where the tag pointed when the core planned the deletion: the store deletes it only while it
    /// still points there.
    public var expectedTarget: Digest
    /// Remove the tag's lock with it.
    public var dropLock: Bool
    /// How many former tags the manifest keeps in its tag history. 0 keeps none.
    public var tagHistoryLimit: Int
    /// The event's detail: `EventAction.cascadeDetail` for a tag that goes because its manifest's
    /// deletion reached it (no write of the tag's own register), nil for a deletion of the tag.
    public var detail: String?

    public init(repository: String, tag: String, expectedTarget: Digest, dropLock: Bool, tagHistoryLimit: Int, detail: String? = nil) {
        self.repository = repository
        self.tag = tag
        self.expectedTarget = expectedTarget
        self.dropLock = dropLock
        self.tagHistoryLimit = tagHistoryLimit
        self.detail = detail
    }
}

public enum TagDeletionResult: Sendable, Equatable {
    case deleted
    /// No such repository or tag.
    case unknown
    /// The tag points at `current`, not where the plan saw it; nothing was written.
    case conflict(current: Digest)
}

/// A quarantine verdict on one manifest, as the core planned it (`ContentPlanner.quarantine`),
/// with the manifests whose state follows it.
public struct QuarantineUpdate: Sendable, Equatable {
    /// A manifest that takes the same state with its own reason (an index's quarantined child),
    /// applied only while it is still in the state `from` the plan saw.
    public struct Follower: Sendable, Equatable {
        public var digest: Digest
        public var from: QuarantineState
        public var reason: String?
        public init(digest: Digest, from: QuarantineState, reason: String?) {
            self.digest = digest
            self.from = from
            self.reason = reason
        }
    }

    public var repository: String
    public var digest: Digest
    public var state: QuarantineState
    public var reason: String?
    public var followers: [Follower]

    public init(repository: String, digest: Digest, state: QuarantineState, reason: String?, followers: [Follower]) {
        self.repository = repository
        self.digest = digest
        self.state = state
        self.reason = reason
        self.followers = followers
    }
}

public enum QuarantineUpdateResult: Sendable, Equatable {
    /// Applied, with one quarantine event (for the manifest itself).
    case applied
    case unknownManifest
    /// A follower is gone or no longer in the state the plan saw; nothing was written.
    case conflict
}

/// Who caused a change: recorded with its event, so the event log doubles as the audit trail of
/// writes. Set by the HTTP layer for the duration of a request.
public struct EventOrigin: Sendable, Equatable {
    public var actor: String
    public var address: String
    public var requestID: String?
    public var host: String?
    public var method: String?
    public var userAgent: String?
    /// Set only while applying a change a peer region made (issue 13): its events are stored with
    /// the peer's region and stamp instead of a new local stamp, so they are never sent back.
    public var replicated: EventStamp?

    public init(actor: String, address: String, requestID: String? = nil, host: String? = nil, method: String? = nil,
                userAgent: String? = nil, replicated: EventStamp? = nil) {
        self.replicated = replicated
        self.actor = actor
        self.address = address
        self.requestID = requestID
        self.host = host
        self.method = method
        self.userAgent = userAgent
    }

    @TaskLocal public static var current: EventOrigin?
}

/// One entry of the append-only event log.
public struct Event: Sendable, Equatable {
    public var sequence: Int64
    public var timestamp: Date
    public var action: EventAction
    public var repository: String
    public var digest: String?
    public var tag: String?
    public var mediaType: String?
    public var size: Int64?
    public var detail: String?
    public var actor: String?
    public var address: String?
    public var requestID: String?
    public var requestHost: String?
    public var requestMethod: String?
    public var userAgent: String?
    /// Where the change was made and when, in the order regions agree on (issue 13). Its region is
    /// nil for a change made in this region; a change applied from a peer keeps the peer's region
    /// and stamp. Events appended before stamps existed have the zero stamp.
    public var stamp: EventStamp
    public init(sequence: Int64, timestamp: Date, action: EventAction, repository: String, digest: String?, tag: String?, mediaType: String?, size: Int64?, detail: String?, actor: String?, address: String?, requestID: String?, requestHost: String?, requestMethod: String?, userAgent: String?,
                stamp: EventStamp = EventStamp(region: nil, milliseconds: 0, logical: 0)) {
        self.stamp = stamp
        self.sequence = sequence
        self.timestamp = timestamp
        self.action = action
        self.repository = repository
        self.digest = digest
        self.tag = tag
        self.mediaType = mediaType
        self.size = size
        self.detail = detail
        self.actor = actor
        self.address = address
        self.requestID = requestID
        self.requestHost = requestHost
        self.requestMethod = requestMethod
        self.userAgent = userAgent
    }
}

/// What an event records. The raw values are what the event log keeps and the API and audit show.
public enum EventAction: String, Codable, Sendable, CaseIterable {
    case blobPush = "blob.push"
    case blobDelete = "blob.delete"
    case manifestPush = "push"
    case manifestDelete = "delete"
    case tagMove = "tag.move"
    case tagDelete = "tag.delete"
    case quarantine = "quarantine"
    /// A registry-wide setting changed (its name is the detail; the repository is empty).
    case setting = "setting"
    case restore = "restore"
    case purgeRun = "purge.run"
    case retentionRun = "retention.run"
    case gcRun = "gc.run"
    case softDeleteExpire = "softdelete.expire"
    case lock = "lock"
    /// A build task's run changed status (`TaskStore`; the repository is empty, the detail is
    /// `<task>/<run id>`).
    case taskRunQueued = "task.run.queued"
    case taskRunStarted = "task.run.started"
    case taskRunSucceeded = "task.run.succeeded"
    case taskRunFailed = "task.run.failed"
    case taskRunCancelled = "task.run.cancelled"
    /// New High or Critical findings appeared on an image (`FindingStore.appendScanEvent`; the
    /// detail is the JSON of `ScanEventDetail`).
    case scan = "scan"
    /// An access record changed (issue 13: identities, scope maps, tokens and the registry-wide
    /// access flags replicate as registers): the detail is `<kind>:<name>`, the digest the SHA-256
    /// of the record's canonical JSON, none for a deletion (a tombstone); the repository is empty.
    /// Never a secret: webhooks deliver nothing for it.
    case access = "access"
    /// A register write recorded without changing content (issue 13): a peer's whose effect is
    /// here already (a push of a manifest stored here), void (a tag move to a manifest deleted
    /// after it), or nothing to undo (a deletion of a manifest never stored here); or a local
    /// push of a manifest stored already, with the tag it names pointing there already (a
    /// `tag.move` mark) or without a tag (a `push` mark). The detail is the action it stands for
    /// (`push`, `delete`, `tag.move`, `tag.delete`), with the write's repository, digest, tag and
    /// stamp: the register then answers as if it had been applied, and peers reading this feed
    /// learn the write too. Nothing but replication consumes it (webhooks, scanning and tasks
    /// ignore it).
    case registerMark = "replication.mark"

    /// Detail of a tag deletion that is part of deleting its manifest.
    public static let cascadeDetail = "with its manifest"
    /// Detail of the `blob.delete` of a link garbage collection removed.
    public static let unreferencedLinkDetail = "garbage collection: no manifest of the repository references it"
}

/// A move of every manifest in one quarantine state to another, registry-wide, as the core
/// planned it (`ContentPlanner.quarantineExisting`, `.releasePending`): the store selects by
/// these values and decides nothing.
public struct QuarantineSweep: Sendable, Equatable {
    /// The state manifests are selected by (nil: never quarantined).
    public var from: QuarantineState?
    /// Whether referrers (manifests with a subject) are selected too.
    public var includeReferrers: Bool
    /// The state they move to (nil: never quarantined) and its reason.
    public var to: QuarantineState?
    public var reason: String?
    /// The detail of the `quarantine` event each moved manifest gets (nil: no event).
    public var eventDetail: String?

    public init(from: QuarantineState?, includeReferrers: Bool, to: QuarantineState?, reason: String?, eventDetail: String?) {
        self.from = from
        self.includeReferrers = includeReferrers
        self.to = to
        self.reason = reason
        self.eventDetail = eventDetail
    }
}

/// A manifest by repository and digest, as a quarantine switch or its dry run lists it.
public struct ManifestRef: Sendable, Codable, Equatable {
    public var repository: String
    public var digest: String
    public init(repository: String, digest: String) {
        self.repository = repository
        self.digest = digest
    }

    /// By repository name, then digest (byte order: names and digests are ASCII).
    public static func inOrder(_ a: ManifestRef, _ b: ManifestRef) -> Bool {
        a.repository != b.repository ? a.repository < b.repository : a.digest < b.digest
    }
}

/// Content metadata: repositories, blob links, manifests, tags, referrers and quarantine states.
/// Every mutation is one transaction that appends its event to the log.
public protocol ContentMetadataStore: Sendable {
    // repositories
    func repositoryExists(_ name: String) async throws -> Bool
    func repositories(after: String?, limit: Int) async throws -> [String]
    /// The repositories that hold each of `manifests` (stored, not in the recycle bin), as
    /// (repository, digest) pairs ordered by repository name then digest: by the manifests' digest
    /// index, so asking about a few manifests never walks every repository (the backends ask
    /// 500 digests per statement, however many are asked).
    func manifestHolders(_ manifests: [Digest]) async throws -> [ManifestRef]

    // blobs
    /// Size of a blob linked into `repository`, or nil.
    func linkedBlobSize(repository: String, digest: Digest) async throws -> Int64?
    /// Size of a blob the registry holds in any repository (for cross-repository mounts), or nil.
    func blobSize(_ digest: Digest) async throws -> Int64?
    /// Bytes of a blob kept inline (small blobs and manifests), or nil when it lives in the blob store.
    func inlineContent(_ digest: Digest) async throws -> [UInt8]?
    /// Records a verified blob and links it into `repository`. `inline` holds the bytes of a small
    /// blob kept in the metadata store instead of the blob store.
    /// A link's time is when it was last made: linking again (no second event) sets it to now, so
    /// the core's grace period, which spares links younger than it (`unreferencedLinks(before:)`),
    /// restarts for a blob pushed again while its manifest is on the way.
    /// Throws `QuotaExceeded` (and links nothing) when a covering quota would be exceeded.
    func linkBlob(repository: String, digest: Digest, size: Int64, inline: [UInt8]?, quotas: [QuotaLimit]) async throws
    /// Links a blob from `from` into `repository` when `from` holds it. Returns its size, or nil.
    /// A link that exists is made again, as `linkBlob` does.
    func mountBlob(repository: String, from: String, digest: Digest, quotas: [QuotaLimit]) async throws -> Int64?
    func unlinkBlob(repository: String, digest: Digest) async throws -> Bool

    // manifests and tags
    func putManifest(_ push: ManifestPush) async throws -> ManifestPushResult
    func manifest(repository: String, digest: Digest) async throws -> ManifestRecord?
    func tagTarget(repository: String, tag: String) async throws -> Digest?
    /// Deletes a tag as planned, with its tag.delete event, when it still points where the plan saw it.
    func deleteTag(_ deletion: TagDeletion) async throws -> TagDeletionResult
    /// Tags of a repository in lexical order, or nil when the repository is unknown.
    func tags(repository: String, after: String?, limit: Int) async throws -> [String]?
    /// Tags of `repository` that point at `digest`, in lexical order, at most `limit` (an index
    /// lookup: scanning names an image's tags in its events without reading the whole repository).
    func tags(repository: String, pointingAt digest: Digest, limit: Int) async throws -> [String]
    func referrers(repository: String, subject: Digest) async throws -> [ManifestRecord]
    /// Indexes in `repository` that list `child`.
    func parents(repository: String, child: Digest) async throws -> [Digest]

    // quarantine
    /// Sets a manifest's quarantine state and its followers' as planned, with one quarantine event.
    func applyQuarantine(_ update: QuarantineUpdate) async throws -> QuarantineUpdateResult
    /// How many manifests are in each quarantine state (`Pending`, `Passed`, `Failed`).
    func quarantineCounts() async throws -> [QuarantineState: Int]
    /// The manifests `sweep` selects: the first `limit` by repository then digest (byte order),
    /// and how many there are.
    func quarantineSweepSelection(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int)
    /// Moves every manifest `sweep` selects to its state and reason, each with its event when the
    /// sweep names one, in one transaction; returns the first `limit` of them (as
    /// `quarantineSweepSelection` lists them) and how many moved.
    func applyQuarantineSweep(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int)
    /// Whether manifests of `repository` reference the blob (as config or layer) and every one of
    /// them is quarantined (`Pending` or `Failed`). False when none references it.
    func blobOnlyInQuarantine(repository: String, digest: Digest) async throws -> Bool
    /// Bytes of every distinct stored digest (after deduplication).
    func storedBytes() async throws -> Int64

    func checkHealth() async throws
}

extension ContentMetadataStore {
    public func linkBlob(repository: String, digest: Digest, size: Int64, inline: [UInt8]?) async throws {
        try await linkBlob(repository: repository, digest: digest, size: size, inline: inline, quotas: [])
    }

    public func mountBlob(repository: String, from: String, digest: Digest) async throws -> Int64? {
        try await mountBlob(repository: repository, from: from, digest: digest, quotas: [])
    }
}

/// Everything the registry core keeps about content, its history and its lifecycle. A backend (the
/// embedded SQLite one, PostgreSQL next) implements this and the stores of `MetadataBackend`.
public protocol MetadataStore: ContentMetadataStore, EventLogStore, LifecycleStore, SettingsStore, CollectionGuardStore,
    PullTimeStore, PushTotalsStore {}

/// One database holding every kind of metadata: what a backend target provides and the composition
/// root hands, piece by piece, to the core and the features.
public protocol MetadataBackend: MetadataStore, AccessStateStore, WebhookStore, KeyMaterialStore, LeaseStore,
    UploadSessionStore, ReplicationStore, ReplicationConflictStore, TaskStore, ScanStore, AdvisoryStore, ConsoleSessionStore, CacheRuleStore, FindingStore,
    TaskCommitStore, ImportJobStore {}
