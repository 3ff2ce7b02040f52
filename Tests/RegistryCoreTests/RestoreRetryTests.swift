import Backends
import Foundation
import OCIModel
import RegistryStore
import Synchronization
import Testing
@testable import RegistryCore

/// A metadata store whose restore (`applyRestore`) refuses with `tagConflict` its first `conflicts` times (as if
/// the tag moved each time between planning and applying), running `beforeConflict` first.
private final class ConflictingRestoreStore: MetadataStore {
    let base: any MetadataStore
    let remaining: Mutex<Int>
    let calls = Mutex(0)
    let beforeConflict = Mutex<(@Sendable () async throws -> Void)?>(nil)

    /// Refuse as a stale plan (the bin changed) instead of a moved tag.
    let stale: Bool

    init(base: any MetadataStore, conflicts: Int, stale: Bool = false) {
        self.base = base
        self.remaining = Mutex(conflicts)
        self.stale = stale
    }

    func applyRestore(repository: String, plan: RestorePlan) async throws {
        calls.withLock { $0 += 1 }
        let conflict = remaining.withLock { n in
            defer { n -= 1 }
            return n > 0
        }
        if conflict {
            if let hook = beforeConflict.withLock({ $0 }) { try await hook() }
            if stale { throw RestoreError.planStale }
            throw RestoreError.tagConflict(tag: plan.tagMoves.first?.tag ?? "", current: plan.tagMoves.first?.expected)
        }
        try await base.applyRestore(repository: repository, plan: plan)
    }
    func recycleBinEntries(repository: String, digests: [String]) async throws -> [RecycleBinEntry] {
        try await base.recycleBinEntries(repository: repository, digests: digests)
    }
    func recycleBinEntries(repository: String, subject: String) async throws -> [RecycleBinEntry] {
        try await base.recycleBinEntries(repository: repository, subject: subject)
    }

    func dailyPushTotals(since: Date, repository: String?) async throws -> [DailyPushTotal] {
        try await base.dailyPushTotals(since: since, repository: repository)
    }
    func recordPulls(_ pulls: [PullRecord]) async throws { try await base.recordPulls(pulls) }
    func pullTimes(repository: String) async throws -> PullTimes { try await base.pullTimes(repository: repository) }
    func manifestsUsed(since: Date, among digests: [Digest]) async throws -> Set<Digest> {
        try await base.manifestsUsed(since: since, among: digests)
    }
    func repositoryExists(_ name: String) async throws -> Bool { try await base.repositoryExists(name) }
    func repositories(after: String?, limit: Int) async throws -> [String] { try await base.repositories(after: after, limit: limit) }
    func manifestHolders(_ manifests: [Digest]) async throws -> [ManifestRef] { try await base.manifestHolders(manifests) }
    func linkedBlobSize(repository: String, digest: Digest) async throws -> Int64? { try await base.linkedBlobSize(repository: repository, digest: digest) }
    func blobSize(_ digest: Digest) async throws -> Int64? { try await base.blobSize(digest) }
    func inlineContent(_ digest: Digest) async throws -> [UInt8]? { try await base.inlineContent(digest) }
    func linkBlob(repository: String, digest: Digest, size: Int64, inline: [UInt8]?, quotas: [QuotaLimit]) async throws { try await base.linkBlob(repository: repository, digest: digest, size: size, inline: inline, quotas: quotas) }
    func mountBlob(repository: String, from: String, digest: Digest, quotas: [QuotaLimit]) async throws -> Int64? { try await base.mountBlob(repository: repository, from: from, digest: digest, quotas: quotas) }
    func unlinkBlob(repository: String, digest: Digest) async throws -> Bool { try await base.unlinkBlob(repository: repository, digest: digest) }
    func putManifest(_ push: ManifestPush) async throws -> ManifestPushResult { try await base.putManifest(push) }
    func manifest(repository: String, digest: Digest) async throws -> ManifestRecord? { try await base.manifest(repository: repository, digest: digest) }
    func tagTarget(repository: String, tag: String) async throws -> Digest? { try await base.tagTarget(repository: repository, tag: tag) }
    func deleteTag(_ deletion: TagDeletion) async throws -> TagDeletionResult { try await base.deleteTag(deletion) }
    func tags(repository: String, after: String?, limit: Int) async throws -> [String]? { try await base.tags(repository: repository, after: after, limit: limit) }
    func tags(repository: String, pointingAt digest: Digest, limit: Int) async throws -> [String] { try await base.tags(repository: repository, pointingAt: digest, limit: limit) }
    func referrers(repository: String, subject: Digest) async throws -> [ManifestRecord] { try await base.referrers(repository: repository, subject: subject) }
    func parents(repository: String, child: Digest) async throws -> [Digest] { try await base.parents(repository: repository, child: child) }
    func applyQuarantine(_ update: QuarantineUpdate) async throws -> QuarantineUpdateResult { try await base.applyQuarantine(update) }
    func quarantineCounts() async throws -> [QuarantineState: Int] { try await base.quarantineCounts() }
    func quarantineSweepSelection(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        try await base.quarantineSweepSelection(sweep, limit: limit)
    }
    func applyQuarantineSweep(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        try await base.applyQuarantineSweep(sweep, limit: limit)
    }
    func blobOnlyInQuarantine(repository: String, digest: Digest) async throws -> Bool { try await base.blobOnlyInQuarantine(repository: repository, digest: digest) }
    func storedBytes() async throws -> Int64 { try await base.storedBytes() }
    func checkHealth() async throws { try await base.checkHealth() }
    func events(after: Int64, limit: Int) async throws -> [Event] { try await base.events(after: after, limit: limit) }
    func events(since: Date, limit: Int) async throws -> [Event] { try await base.events(since: since, limit: limit) }
    func latestEventSequence() async throws -> Int64 { try await base.latestEventSequence() }
    func eventConsumers() async throws -> [EventConsumerRecord] { try await base.eventConsumers() }
    func eventConsumer(named name: String) async throws -> EventConsumerRecord? { try await base.eventConsumer(named: name) }
    func registerEventConsumer(name: String, start: EventConsumerStart) async throws -> EventConsumerRecord { try await base.registerEventConsumer(name: name, start: start) }
    func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64) async throws -> Bool { try await base.advanceEventConsumer(name: name, from: expected, to: cursor) }
    func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date) async throws { try await base.recordEventConsumerFailure(name: name, error: error, attempts: attempts, nextAttemptAt: nextAttemptAt) }
    func setEventConsumerPaused(name: String, paused: Bool) async throws -> Bool { try await base.setEventConsumerPaused(name: name, paused: paused) }
    func deleteEventConsumer(name: String) async throws -> Bool { try await base.deleteEventConsumer(name: name) }
    func repositoryGraph(_ repository: String) async throws -> RepositoryGraph? { try await base.repositoryGraph(repository) }
    func repositoryGraph(_ repository: String, around digest: Digest) async throws -> RepositoryGraph? { try await base.repositoryGraph(repository, around: digest) }
    func applyLifecycle(repository: String, softDeleteUntil: Date?, plan: @Sendable (RepositoryGraph) throws -> LifecycleChange) async throws -> LifecycleChange? { try await base.applyLifecycle(repository: repository, softDeleteUntil: softDeleteUntil, plan: plan) }
    func repositoriesChanged(after sequence: Int64) async throws -> (repositories: [String], latest: Int64) { try await base.repositoriesChanged(after: sequence) }
    func repositoriesWithUnliveManifests(before cutoff: Date) async throws -> [String] { try await base.repositoriesWithUnliveManifests(before: cutoff) }
    func repositorySummaries(named name: String?) async throws -> [RepositorySummary] { try await base.repositorySummaries(named: name) }
    func deletedManifests(repository: String) async throws -> [DeletedManifest] { try await base.deletedManifests(repository: repository) }
    func expireDeletedManifests(now: Date, limit: Int) async throws -> [DeletedManifest] { try await base.expireDeletedManifests(now: now, limit: limit) }
    func locks() async throws -> [LockRecord] { try await base.locks() }
    func setLock(_ lock: LockRecord) async throws { try await base.setLock(lock) }
    func unreferencedLinks(before cutoff: Date, limit: Int) async throws -> [(repository: String, digest: String)] { try await base.unreferencedLinks(before: cutoff, limit: limit) }
    func removeUnreferencedLink(repository: String, digest: String, before cutoff: Date) async throws -> Bool { try await base.removeUnreferencedLink(repository: repository, digest: digest, before: cutoff) }
    func unreferencedBlobs(before cutoff: Date, limit: Int) async throws -> [StoredBlob] { try await base.unreferencedBlobs(before: cutoff, limit: limit) }
    func removeUnreferencedBlob(_ digest: String, before cutoff: Date) async throws -> StoredBlob? { try await base.removeUnreferencedBlob(digest, before: cutoff) }
    func pinBlob(_ digest: String, holder: String, ttl: TimeInterval) async throws -> Bool { try await base.pinBlob(digest, holder: holder, ttl: ttl) }
    func unpinBlob(_ digest: String, holder: String) async throws { try await base.unpinBlob(digest, holder: holder) }
    func removeUnpinnedBlob(_ digest: String, before cutoff: Date, deleter: String, ttl: TimeInterval) async throws -> StoredBlob? {
        try await base.removeUnpinnedBlob(digest, before: cutoff, deleter: deleter, ttl: ttl)
    }
    func markOrphanDeletion(_ digest: String, deleter: String, ttl: TimeInterval) async throws -> Bool { try await base.markOrphanDeletion(digest, deleter: deleter, ttl: ttl) }
    func clearBlobDeletion(_ digest: String, deleter: String) async throws { try await base.clearBlobDeletion(digest, deleter: deleter) }
    func touchLink(repository: String, digest: String, at: Date) async throws { try await base.touchLink(repository: repository, digest: digest, at: at) }
    func removeUntouchedLink(repository: String, digest: String, before cutoff: Date, touchedSince: Date) async throws -> Bool {
        try await base.removeUntouchedLink(repository: repository, digest: digest, before: cutoff, touchedSince: touchedSince)
    }
    func pruneCollectionGuards(touchedBefore: Date) async throws { try await base.pruneCollectionGuards(touchedBefore: touchedBefore) }
    func hasBlobRecord(_ digest: String) async throws -> Bool { try await base.hasBlobRecord(digest) }
    func blobCollectionState(_ digest: String) async throws -> BlobCollectionState? { try await base.blobCollectionState(digest) }
    func usage(repository: String?) async throws -> UsageRecord? { try await base.usage(repository: repository) }
    func quotaUsage(_ quota: QuotaLimit) async throws -> Int64 { try await base.quotaUsage(quota) }
    func quotaExceeded(_ quotas: [QuotaLimit], repository: String, digest: String, size: Int64) async throws -> QuotaExceeded? { try await base.quotaExceeded(quotas, repository: repository, digest: digest, size: size) }
    func recordRun(kind: RunKind, name: String?, dryRun: Bool, startedAt: Date, finishedAt: Date, report: String, event: (action: EventAction, detail: String)?, keep: Int) async throws -> Int64 { try await base.recordRun(kind: kind, name: name, dryRun: dryRun, startedAt: startedAt, finishedAt: finishedAt, report: report, event: event, keep: keep) }
    func runs(kind: RunKind?, name: String?, limit: Int) async throws -> [LifecycleRunRecord] { try await base.runs(kind: kind, name: name, limit: limit) }
    func purgeSchedules() async throws -> [PurgeScheduleRecord] { try await base.purgeSchedules() }
    func createPurgeSchedule(_ schedule: PurgeScheduleRecord) async throws -> Bool { try await base.createPurgeSchedule(schedule) }
    func deletePurgeSchedule(name: String) async throws -> Bool { try await base.deletePurgeSchedule(name: name) }
    func markPurgeScheduleRun(name: String, at: Date) async throws { try await base.markPurgeScheduleRun(name: name, at: at) }
    func settingDocument(_ name: String) async throws -> Data? { try await base.settingDocument(name) }
    func setSettingDocument(_ name: String, _ document: Data) async throws { try await base.setSettingDocument(name, document) }

}

/// Restore under a tag plans again when the store refuses because the tag moved, up to 8 times in
/// all, then answers 429; each new plan checks the locks again.
@Suite struct RestoreRetryTests {
    let repo = try! RepositoryName("team/app")

    private func registry(conflicts: Int, stale: Bool = false) async throws -> (Registry, ConflictingRestoreStore, Digest, Digest) {
        let backends = try Backends.embedded(dataDirectory: NSTemporaryDirectory() + "berth-core-" + UUID().uuidString)
        let store = ConflictingRestoreStore(base: backends.metadata, conflicts: conflicts, stale: stale)
        let r = Registry(blobs: backends.blobs, metadata: store)
        var soft = SoftDeletePolicy()
        soft.enabled = true
        try await r.updateSoftDelete(soft)
        let planner = LifecycleRegistryTests()
        let kept = try await planner.push(r, repo, tag: "t", layer: Array("kept".utf8))
        let deleted = try await planner.push(r, repo, tag: "gone", layer: Array("deleted".utf8))
        try await r.deleteManifest(repo, .digest(deleted))
        return (r, store, kept, deleted)
    }

    @Test func aRestoreRefusedFewerThanEightTimesIsPlannedAgainAndApplied() async throws {
        let (r, store, _, deleted) = try await registry(conflicts: 7)
        let restored = try await r.restoreManifest(repo, digest: deleted, tag: "t")
        #expect(restored.map(\.digest) == [deleted.string])
        #expect(store.calls.withLock { $0 } == 8)
        await #expect(try r.resolve(repo, .tag("t")) == deleted)
    }

    @Test func aRestoreRefusedEightTimesIs429AndRestoresNothing() async throws {
        let (r, store, kept, deleted) = try await registry(conflicts: 8)
        do {
            _ = try await r.restoreManifest(repo, digest: deleted, tag: "t")
            Issue.record("the restore went through")
        } catch let e as RegistryError {
            #expect(e.status == 429)
        }
        #expect(store.calls.withLock { $0 } == 8)
        await #expect(try r.resolve(repo, .tag("t")) == kept)
        await #expect(try r.deletedManifests(repo).map(\.digest) == [deleted.string])
    }

    @Test func aTagThatMovedOntoALockedManifestIsNotRestoredOver() async throws {
        let (r, store, kept, deleted) = try await registry(conflicts: 1)
        let repo = repo
        // between the first plan and its application the tag's target gets write-locked
        store.beforeConflict.withLock { $0 = { _ = try await r.updateLock(repo, tag: nil, digest: kept, LockChange(writeEnabled: false)) } }
        do {
            _ = try await r.restoreManifest(repo, digest: deleted, tag: "t")
            Issue.record("the restore went through")
        } catch let e as RegistryError {
            #expect(e.status == 403)
        }
        #expect(store.calls.withLock { $0 } == 1)
        await #expect(try r.resolve(repo, .tag("t")) == kept)
        await #expect(try r.deletedManifests(repo).map(\.digest) == [deleted.string])
    }

    @Test func aStalePlanIsPlannedAgainFromTheBinAsItIsThen() async throws {
        let (r, store, _, deleted) = try await registry(conflicts: 1, stale: true)
        let repo = repo
        // between the first plan and its application the manifest is pushed again and deleted
        // again: the entry planned is gone, the bin holds a newer one
        store.beforeConflict.withLock { $0 = {
            _ = try await r.restoreManifest(repo, digest: deleted, tag: nil)
            try await r.deleteManifest(repo, .digest(deleted))
        } }
        let restored = try await r.restoreManifest(repo, digest: deleted, tag: nil)
        #expect(restored.map(\.digest) == [deleted.string])
        await #expect(try r.resolve(repo, .digest(deleted)) == deleted)
        await #expect(try r.deletedManifests(repo).isEmpty)
    }

    @Test func aPlanStaleEightTimesIs429() async throws {
        let (r, store, _, deleted) = try await registry(conflicts: 8, stale: true)
        do {
            _ = try await r.restoreManifest(repo, digest: deleted, tag: nil)
            Issue.record("the restore went through")
        } catch let e as RegistryError {
            #expect(e.status == 429)
        }
        #expect(store.calls.withLock { $0 } == 8)
        await #expect(try r.deletedManifests(repo).map(\.digest) == [deleted.string])
    }
}
