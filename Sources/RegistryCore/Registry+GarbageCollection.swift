import Foundation
import OCIModel
import RegistryStore

/// What one garbage collection run removed (or, dry, would remove).
public struct GarbageCollectionReport: Codable, Sendable, Equatable {
    public var id: Int64?
    public var kind = "gc"
    public var dryRun: Bool
    public var startedAt: Date
    public var finishedAt: Date
    public var blobsDeleted = 0
    public var bytesReclaimed: Int64 = 0
    public var linksRemoved = 0
    public var uploadsRemoved = 0
    /// Files in the blob store that no record names (left by a crash between commit and link).
    public var orphanFilesRemoved = 0
    /// Digests whose bytes were (would be) deleted; at most 10,000 listed.
    public var digests: [String] = []
}

extension Registry {
    /// Online mark-and-sweep. The mark is the metadata itself: a blob stays while a manifest of
    /// its repository (live, quarantined or in the recycle bin) references it, while a manifest
    /// of that digest exists, or while it is younger than the grace period. Each removal is its
    /// own short transaction that re-checks the condition, so pushes and pulls go on. What other
    /// nodes do is seen through the store (`CollectionGuardStore`): a digest that a push on any
    /// node is committing is pinned and skipped, a blob's bytes are deleted under a marker that
    /// holds off new pins of it, and a link a pull or HEAD touched since the cutoff is kept.
    public func collectGarbage(dryRun: Bool, now: Date = Date()) async throws -> GarbageCollectionReport {
        var report = GarbageCollectionReport(dryRun: dryRun, startedAt: now, finishedAt: now)
        let grace = try await garbageCollectionPolicy().graceSeconds
        let cutoff = now.addingTimeInterval(-grace)
        let touchedSince = cutoff.timeIntervalSince1970
        // A node writes a link's touch at most once per slack: one written that long before the
        // cutoff may stand for a HEAD after it.
        let storeTouchedSince = cutoff.addingTimeInterval(-CollectionGuard.touchSlack(grace: grace))
        let pageSize = 1000

        // Abandoned upload sessions.
        if dryRun {
            report.uploadsRemoved = try await blobs.staleUploads(olderThan: now.timeIntervalSince1970 - configuration.uploadMaxAge).count
        } else {
            report.uploadsRemoved = try await removeStaleUploads(now: now)
        }

        // 1. Links no manifest of their repository references.
        var doomedLinks: [String: Set<String>] = [:]
        var seen: Set<String> = []
        while true {
            let page = try await metadata.unreferencedLinks(before: cutoff, limit: pageSize)
            var progress = false
            for link in page {
                let key = link.repository + "@" + link.digest
                guard seen.insert(key).inserted else { continue }
                progress = true
                guard let digest = try? Digest(parsing: link.digest),
                      !lifecycle.touches.touched(link.repository, digest, since: touchedSince) else { continue }
                if dryRun {
                    doomedLinks[link.digest, default: []].insert(link.repository)
                    report.linksRemoved += 1
                } else if try await metadata.removeUntouchedLink(repository: link.repository, digest: link.digest, before: cutoff,
                                                                 touchedSince: storeTouchedSince) {
                    report.linksRemoved += 1
                    cache.invalidate(link.repository)
                }
            }
            if dryRun || page.count < pageSize || !progress { break }
        }

        // 2. Stored digests nothing references any more.
        var handled: Set<String> = []
        func count(_ digest: String, _ size: Int64) {
            report.blobsDeleted += 1
            report.bytesReclaimed += size
            if report.digests.count < 10_000 { report.digests.append(digest) }
        }
        if dryRun {
            for blob in try await metadata.unreferencedBlobs(before: cutoff, limit: 100_000) { count(blob.digest, blob.size) }
            // Blobs whose last links this run would remove.
            for (digest, repositories) in doomedLinks.sorted(by: { $0.key < $1.key }) {
                if let state = try await metadata.blobCollectionState(digest), !state.referenced, state.createdAt < cutoff,
                   Set(state.linkedRepositories).isSubset(of: repositories) {
                    count(digest, state.size)
                }
            }
        } else {
            while true {
                let page = try await metadata.unreferencedBlobs(before: cutoff, limit: pageSize)
                var progress = false
                for blob in page where handled.insert(blob.digest).inserted {
                    progress = true
                    let digest = try? Digest(parsing: blob.digest)
                    if !blob.inline, digest == nil { continue }
                    let deleter = UUID().uuidString
                    guard let removed = try await metadata.removeUnpinnedBlob(blob.digest, before: cutoff, deleter: deleter,
                                                                              ttl: CollectionGuard.deletionTTL) else { continue }
                    if !removed.inline, let digest {
                        try await deleteBytes(digest, deleter: deleter)
                    }
                    count(removed.digest, removed.size)
                }
                if page.count < pageSize || !progress { break }
            }
        }

        // 3. Files no record names.
        for digest in try await blobs.allDigests() where !handled.contains(digest.string) {
            guard try await !metadata.hasBlobRecord(digest.string) else { continue }
            if dryRun {
                report.orphanFilesRemoved += 1
                count(digest.string, try await blobs.size(of: digest) ?? 0)
                continue
            }
            let deleter = UUID().uuidString
            guard try await metadata.markOrphanDeletion(digest.string, deleter: deleter, ttl: CollectionGuard.deletionTTL) else { continue }
            let size = (try? await blobs.size(of: digest) ?? 0) ?? 0
            try await deleteBytes(digest, deleter: deleter)
            report.orphanFilesRemoved += 1
            count(digest.string, size)
        }

        if !dryRun {
            lifecycle.touches.prune(before: storeTouchedSince.timeIntervalSince1970)
            try await metadata.pruneCollectionGuards(touchedBefore: storeTouchedSince)
        }
        report.finishedAt = Date()
        let summary = "\(report.blobsDeleted) blobs, \(report.bytesReclaimed) bytes reclaimed, \(report.linksRemoved) links removed"
        report.id = try await metadata.recordRun(kind: .gc, name: nil, dryRun: dryRun, startedAt: report.startedAt,
                                                 finishedAt: report.finishedAt,
                                                 report: try Self.reportJSON(report),
                                                 event: dryRun ? nil : (EventAction.gcRun, summary),
                                                 keep: LifecyclePlanner.keptRunReports)
        LifecycleMetrics.run(kind: "gc", dryRun: dryRun, startedAt: report.startedAt, finishedAt: report.finishedAt,
                             blobsDeleted: report.blobsDeleted, bytesReclaimed: report.bytesReclaimed)
        if !dryRun, report.blobsDeleted + report.linksRemoved > 0 {
            logger.info("garbage collection", metadata: ["blobs": "\(report.blobsDeleted)", "bytes": "\(report.bytesReclaimed)",
                                                         "links": "\(report.linksRemoved)"])
        }
        return report
    }

    /// Deletes a digest's bytes under the deletion marker of `deleter`, then clears it so pushes
    /// of the digest go on (also when the delete failed: the bytes are then an orphan file for the
    /// next run, and a push may store them again).
    private func deleteBytes(_ digest: Digest, deleter: String) async throws {
        do {
            // Bounded well inside the marker's time to live: a delete still under way when the
            // marker ran out could remove bytes a push stored again after it.
            try await withThrowingTaskGroup(of: Void.self) { [blobs] group in
                group.addTask { try await blobs.delete(digest) }
                group.addTask {
                    try await Task.sleep(for: .seconds(CollectionGuard.deleteDeadline))
                    throw DeleteDeadlineExceeded(digest: digest)
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch {
            try? await metadata.clearBlobDeletion(digest.string, deleter: deleter)
            throw error
        }
        try await metadata.clearBlobDeletion(digest.string, deleter: deleter)
    }
}

/// A collection's delete of a digest's bytes outlasted `CollectionGuard.deleteDeadline`: the run
/// stops (its marker runs out on its own; the bytes are an orphan file for a later run).
struct DeleteDeadlineExceeded: Error, CustomStringConvertible {
    let digest: Digest
    var description: String {
        "deleting the bytes of \(digest) took longer than \(Int(CollectionGuard.deleteDeadline)) s"
    }
}
