import Foundation
import OCIModel
import RegistryStore
import Testing

/// Everything a metadata backend implements: the registry metadata, the lifecycle metadata, the
/// access state and audit log, the webhooks with their cursors into the event log, and the event
/// consumers' cursors.
public typealias ConformanceStore = MetadataStore & AccessStateStore & WebhookStore & EventLogStore & KeyMaterialStore & LeaseStore
    & UploadSessionStore & ReplicationStore & ReplicationConflictStore & TaskStore & ScanStore & AdvisoryStore & ConsoleSessionStore & CacheRuleStore & FindingStore
    & TaskCommitStore & ImportJobStore

/// One suite of the metadata store contracts, run against any backend.
///
/// A backend's test target runs every case with a factory that makes a fresh, empty store:
///
///     @Test(arguments: MetadataStoreConformance.cases)
///     func conformance(_ c: MetadataStoreConformance.Case) async throws {
///         try await c.run { try makeEmptyStore() }
///     }
///
/// Each case is one contract (a protocol requirement, an event-log invariant or a race) and gets
/// a store of its own, so cases run in parallel and in any order. Cases assert the behaviour of
/// the protocols as documented on them and as the SQLite backend implements it today.
///
/// Writing a case: `#expect(try …)` compiles only in a case whose closure also has a `try` outside
/// any macro ("errors thrown from here are not handled" otherwise); hoist the call into a `let`.
public enum MetadataStoreConformance {
    public typealias Factory = @Sendable () async throws -> any ConformanceStore

    public struct Case: Sendable, CustomTestStringConvertible, CustomStringConvertible {
        public let name: String
        let body: @Sendable (any ConformanceStore) async throws -> Void

        init(_ name: String, _ body: @escaping @Sendable (any ConformanceStore) async throws -> Void) {
            self.name = name
            self.body = body
        }

        public var description: String { name }
        public var testDescription: String { name }

        /// Runs the case against a fresh store made by `make`.
        public func run(_ make: Factory) async throws {
            try await body(try await make())
        }
    }

    /// Every case of the suite.
    public static var cases: [Case] {
        repositoryCases + blobCases + manifestCases + quarantineCases + lifecycleCases + recycleBinCases + lockCases
            + collectionCases + usageCases + runCases + accessCases + webhookCases + eventLogCases + concurrencyCases
            + eventConsumerCases + keyMaterialCases + leaseCases + roundTripCases + sharedStateCases + uploadSessionCases
            + replicationCases
            + taskCases
            + taskCommitCases
            + scanCases
            + advisoryCases
            + consoleSessionCases
            + importJobCases
            + pullTimeCases
            + cacheRuleCases
            + findingCases
            + eventStampCases
    }
}

// MARK: fixtures shared by the cases

func digest(_ s: String) -> Digest { Digest.compute(Array(s.utf8)) }

/// A manifest push whose bytes (and so digest) are `name`.
func push(_ repo: String, _ name: String, tag: String? = nil, blobs: [Digest] = [], children: [Digest] = [],
          subject: Digest? = nil, artifactType: String? = nil, mediaType: String? = nil,
          createdAt: Date = Date()) -> ManifestPush {
    let bytes = Array(name.utf8)
    let record = ManifestRecord(digest: Digest.compute(bytes),
                                mediaType: mediaType ?? (children.isEmpty ? MediaType.ociManifest : MediaType.ociIndex),
                                size: Int64(bytes.count), artifactType: artifactType, subject: subject,
                                annotations: ["name": name], createdAt: createdAt)
    var p = ManifestPush(repository: repo, record: record, bytes: bytes, tag: tag, blobs: blobs, children: children)
    p.tagHistoryLimit = tagHistoryLimit
    return p
}

/// The tag-history cap the registry plans with (RegistryCore's `ContentPlanner.tagHistoryLimit`).
let tagHistoryLimit = 50

/// Stores `p` and fails the case unless it was stored. Without an explicit `expectedTagTarget`,
/// the push is planned from where its tag points now, as the registry does.
@discardableResult
func store(_ s: any ConformanceStore, _ p: ManifestPush, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Digest? {
    var p = p
    if let tag = p.tag, p.expectedTagTarget == nil { p.expectedTagTarget = try await s.tagTarget(repository: p.repository, tag: tag) }
    let result = try await s.putManifest(p)
    guard case .stored(let previous) = result else {
        Issue.record("push of \(p.record.digest) to \(p.repository) was not stored: \(result)", sourceLocation: sourceLocation)
        return nil
    }
    return previous
}

/// Links blobs named `names` (their digests are of the names) into `repo`.
func link(_ s: any ConformanceStore, _ repo: String, _ names: String..., inline: Bool = false) async throws {
    for n in names {
        try await s.linkBlob(repository: repo, digest: digest(n), size: Int64(n.utf8.count), inline: inline ? Array(n.utf8) : nil)
    }
}

/// An image manifest in `repo` with one layer blob, pushed with the layer linked first.
@discardableResult
func image(_ s: any ConformanceStore, _ repo: String, _ name: String, tag: String? = nil) async throws -> ManifestPush {
    try await link(s, repo, "layer-of-" + name)
    let p = push(repo, name, tag: tag, blobs: [digest("layer-of-" + name)])
    try await store(s, p)
    return p
}

/// The registry's way of deleting manifests: one lifecycle change, with or without the recycle bin.
@discardableResult
func deleteManifests(_ s: any ConformanceStore, _ repo: String, _ digests: [Digest], softDeleteUntil: Date? = nil,
                     reason: String = "requested") async throws -> LifecycleChange? {
    try await s.applyLifecycle(repository: repo, softDeleteUntil: softDeleteUntil) { graph in
        var change = LifecycleChange()
        change.dropLocks = true
        change.tagHistoryLimit = tagHistoryLimit
        for d in digests {
            if let m = graph.manifests[d.string] {
                change.deleteManifests.append(LifecycleDeletion(repository: repo, digest: m.digest, mediaType: m.mediaType, reason: reason))
            }
        }
        // every tag of a deleted manifest goes with it, in name order (the core's deletion rule)
        change.cascadeTags = graph.tags.filter { t in digests.contains { $0.string == t.digest } }.sorted { $0.name < $1.name }
            .map { LifecycleTagDeletion(repository: repo, tag: $0.name, digest: $0.digest) }
        return change
    }
}

/// What each recycle-bin entry of `repos` comes back with in the registry's plans
/// (`RestorePlanning.comesBack`): the state it was deleted in, live, its blobs linked again.
func comesBack(_ s: any ConformanceStore, _ repos: String...) async throws -> [Int64: RestoredState] {
    var out: [Int64: RestoredState] = [:]
    for repo in repos {
        let digests = try await s.deletedManifests(repository: repo).map(\.digest)
        for e in try await s.recycleBinEntries(repository: repo, digests: digests) {
            out[e.entry.id] = RestoredState(quarantineState: e.quarantineState, quarantineReason: e.quarantineReason,
                                            unliveSince: nil, links: e.blobs)
        }
    }
    return out
}

/// Brings back the newest entry (by id) of `d` alone, moving `tags` from where they point now:
/// the simplest plan the registry's restore planner makes.
func restore(_ s: any ConformanceStore, _ repo: String, _ d: Digest, tags: [String] = []) async throws {
    let entries = try await s.recycleBinEntries(repository: repo, digests: [d.string])
    let id = try #require(entries.map(\.entry.id).max())
    var moves: [RestoreTagMove] = []
    for tag in tags { moves.append(RestoreTagMove(tag: tag, expected: try await s.tagTarget(repository: repo, tag: tag)?.string)) }
    try await s.applyRestore(repository: repo, plan: RestorePlan(entries: [id], comesBack: try await comesBack(s, repo), digest: d.string, tagMoves: moves, tagHistoryLimit: tagHistoryLimit,
                                                                 known: Set(entries.map(\.entry.id))))
}

extension ContentMetadataStore {
    /// The registry's way of deleting a tag: planned from where it points now, its lock goes with
    /// it and its manifest remembers it. False when there is no such tag.
    public func deleteTag(repository: String, tag: String) async throws -> Bool {
        guard let target = try await tagTarget(repository: repository, tag: tag) else { return false }
        let plan = TagDeletion(repository: repository, tag: tag, expectedTarget: target, dropLock: true, tagHistoryLimit: tagHistoryLimit)
        return try await deleteTag(plan) == .deleted
    }

    /// A verdict on one manifest alone (no followers). False when the manifest is unknown.
    public func setQuarantine(repository: String, digest: Digest, state: QuarantineState, reason: String?) async throws -> Bool {
        try await applyQuarantine(QuarantineUpdate(repository: repository, digest: digest, state: state, reason: reason, followers: [])) == .applied
    }
}

/// Events appended after `mark` (the newest sequence before the mutation).
func events(_ s: any ConformanceStore, after mark: Int64) async throws -> [Event] {
    try await s.events(after: mark, limit: 10_000)
}

/// The event actions appended by `mutation`, in order.
func actions(_ s: any ConformanceStore, of mutation: () async throws -> Void) async throws -> [EventAction] {
    let mark = try await s.latestEventSequence()
    try await mutation()
    return try await events(s, after: mark).map(\.action)
}

let future = Date().addingTimeInterval(3600 * 24 * 365 * 50)
let past = Date(timeIntervalSince1970: 0)

// Record types without a public initializer are compared through a description.
func describe(_ b: StoredBlob) -> String { "\(b.digest) \(b.size)\(b.inline ? " inline" : "")" }

func describe(_ u: UsageRecord) -> String {
    "\(u.repository ?? "nil"): \(u.bytes) bytes, \(u.blobs) blobs, \(u.manifests) manifests, \(u.tags) tags, "
        + "\(u.repositories.map(String.init) ?? "nil") repositories, \(u.deletedManifests) deleted"
}
