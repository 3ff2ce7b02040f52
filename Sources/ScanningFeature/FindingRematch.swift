import Foundation
import Logging
import OCIModel
import RegistryStore
import Scanning
import ServiceLifecycle

/// Continuous re-match: when the advisory database gets a new version, the stored inventories that
/// hold a package key the change touched (`AdvisoryStore.advisoryPackagesChanged`, joined through
/// `ScanStore.inventories(containing:)`) are matched again from their stored inventory; no layer is
/// read. Each manifest's findings carry the version they were matched against, which is the
/// durable part of the cursor: a manifest already matched at the current version is skipped, so a
/// pass that restarts (a new node took the lease, a restart starting again from 0) redoes nothing.
/// Only images in use are kept current (issue 15 item 6): with `usage` and `rematchDays` > 0
/// (`scan-rematch-days`, default 30), a manifest is matched again only when it was pulled through
/// `/v2/` (in any repository, as recorded by `PullTimeStore`) or pushed within the last
/// `rematchDays` days; the others keep the findings of the version they were matched against (their
/// stored version says so) until a later change touches them after a pull. `rematchDays` 0: every
/// inventory holding a touched key.
public struct FindingRematcher: Sendable {
    public let inventories: any ScanStore
    public let matcher: FindingMatcher
    let pageSize: Int
    /// Judges each re-matched manifest again under the scan policy (nil: no verdicts).
    let gate: ScanGate?
    let usage: (any PullTimeStore)?
    let rematchDays: Int
    let now: @Sendable () -> Date

    public init(inventories: any ScanStore, matcher: FindingMatcher, pageSize: Int = 500, gate: ScanGate? = nil,
                usage: (any PullTimeStore)? = nil, rematchDays: Int = 0, now: @escaping @Sendable () -> Date = { Date() }) {
        self.inventories = inventories
        self.matcher = matcher
        self.pageSize = pageSize
        self.gate = gate
        self.usage = usage
        self.rematchDays = max(0, rematchDays)
        self.now = now
    }

    /// The most manifests a service remembers as skipped while behind (`behind`); past it, one
    /// skipped then is caught up only by a later change that touches it after a pull, or by the
    /// first pass after a restart (which walks every change from version 0).
    public static let maxBehind = 100_000

    /// Re-matches what changed after version `since`; answers the version it brought them to and
    /// how many manifests it matched again.
    public func rematch(since: Int64) async throws -> (version: Int64, rematched: Int) {
        var behind = Set<Digest>()
        return try await rematch(since: since, behind: &behind)
    }

    /// As `rematch(since:)`, adding to `behind` the manifests it skipped because they were not in
    /// use (`rematchDays`): `sweep` matches them again once they are pulled.
    public func rematch(since: Int64, behind: inout Set<Digest>) async throws -> (version: Int64, rematched: Int) {
        let current = try await matcher.advisories.currentAdvisoryVersion()
        guard current > since else { return (since, 0) }
        let keys = try await matcher.advisories.advisoryPackagesChanged(since: since)
        // What each chunk matches again of a manifest current at `since`: only its touched packages.
        let scope = FindingMatcher.RematchScope(since: since, version: current, touched: Set(keys))
        var seen = Set<Digest>()
        var count = 0
        let cutoff = now().addingTimeInterval(-Double(rematchDays) * 86400)
        for key in keys {
            var after: Digest?
            while true {
                try Task.checkCancellation()
                let page = try await inventories.inventories(containing: key, after: after, limit: pageSize)
                if page.isEmpty { break }
                let fresh = page.filter { seen.insert($0).inserted }
                // nil: every one; else those pulled or pushed since the cutoff.
                var inUse: Set<Digest>? = nil
                if let usage, rematchDays > 0, !fresh.isEmpty {
                    inUse = try await usage.manifestsUsed(since: cutoff, among: fresh)
                }
                var candidates: [Digest] = []
                for manifest in fresh {
                    if let inUse, !inUse.contains(manifest) {
                        if behind.count < Self.maxBehind { behind.insert(manifest) }
                        continue
                    }
                    candidates.append(manifest)
                }
                let due = try await load(candidates) { previous in (previous?.advisoryVersion ?? Int64.min) < current }
                count += try await matchAndJudge(due, scope: scope)
                after = page.last
            }
        }
        return (current, count)
    }

    /// Review M2: a manifest a pass skipped because it was not in use keeps findings matched
    /// against an older advisory version; pulled again later, no pass revisits it unless a new
    /// change touches it. The sweep matches again (from the stored inventory) those of `behind`
    /// pulled or pushed within `rematchDays` now (`PullTimeStore.manifestsUsed`, 500 at a time)
    /// whose findings are older than the current version, and drops from `behind` every one it
    /// handled or found deleted. Answers how many it matched again.
    public func sweep(_ behind: inout Set<Digest>) async throws -> Int {
        guard let usage, rematchDays > 0 else {
            behind.removeAll()
            return 0
        }
        guard !behind.isEmpty else { return 0 }
        let current = try await matcher.advisories.currentAdvisoryVersion()
        let cutoff = now().addingTimeInterval(-Double(rematchDays) * 86400)
        let candidates = behind.sorted()
        var count = 0
        var start = 0
        while start < candidates.count {
            try Task.checkCancellation()
            let chunk = Array(candidates[start..<min(candidates.count, start + pageSize)])
            start += pageSize
            let used = try await usage.manifestsUsed(since: cutoff, among: chunk)
            let pulled = chunk.filter { used.contains($0) }
            for manifest in pulled { behind.remove(manifest) }
            let due = try await load(pulled) { previous in previous.map { $0.advisoryVersion < current } ?? false }
            count += try await matchAndJudge(due)
        }
        return count
    }

    /// A manifest to match again, with the findings it had.
    struct Due {
        var manifest: Digest
        var previous: StoredFindings?
        var inventory: ImageInventory
        /// When the inventory was stored.
        var inventoryCreatedAt: Date = .distantPast

        /// Whether the stored findings were matched from this inventory (after it was stored, to
        /// the second `matchedAt` keeps): only then may a re-match keep some of them.
        var findingsFollowInventory: Bool {
            previous.map { $0.matchedAt.timeIntervalSince1970 >= inventoryCreatedAt.timeIntervalSince1970.rounded(.down) } ?? false
        }
    }

    /// The manifests of `candidates` to match again, with their findings and inventories: the
    /// findings of all in one store read, the inventories of those `isDue` accepts (given the
    /// stored findings, nil when never matched) in one more, decoded in parallel (at most
    /// `decodeWidth` at once, off any event loop); those without a matchable inventory (not
    /// complete or partial, or unreadable) are left out. In `candidates`' order.
    func load(_ candidates: [Digest], isDue: (StoredFindings?) -> Bool) async throws -> [Due] {
        guard !candidates.isEmpty else { return [] }
        var previous: [Digest: StoredFindings] = [:]
        for set in try await matcher.store.findings(manifests: candidates) { previous[set.manifest] = set }
        let wanted = candidates.filter { isDue(previous[$0]) }
        guard !wanted.isEmpty else { return [] }
        let stored = try await inventories.inventories(manifests: wanted)
        let decoded = await Self.decode(stored)
        var created: [Digest: Date] = [:]
        for inventory in stored { created[inventory.manifest] = inventory.createdAt }
        return wanted.compactMap { manifest in
            decoded[manifest].map {
                Due(manifest: manifest, previous: previous[manifest], inventory: $0, inventoryCreatedAt: created[manifest] ?? .distantFuture)
            }
        }
    }

    /// Most inventories decoded at once (gunzip and JSON: CPU only).
    static let decodeWidth = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))

    /// The matchable ones of `stored` (complete or partial, readable), decoded in parallel.
    static func decode(_ stored: [StoredInventory]) async -> [Digest: ImageInventory] {
        let matchable = stored.filter { $0.status == .complete || $0.status == .partial }
        return await withTaskGroup(of: (Digest, ImageInventory?).self) { group in
            var out: [Digest: ImageInventory] = [:]
            var next = 0
            func start(_ group: inout TaskGroup<(Digest, ImageInventory?)>) {
                let item = matchable[next]
                next += 1
                group.addTask { (item.manifest, try? ScanDocument.decode(ImageInventory.self, item.document)) }
            }
            while next < min(decodeWidth, matchable.count) { start(&group) }
            while let (manifest, inventory) = await group.next() {
                if let inventory { out[manifest] = inventory }
                if next < matchable.count { start(&group) }
            }
            return out
        }
    }

    /// Matches a page in chunks of `matchChunk` (each one advisory read, one index, one write:
    /// `FindingMatcher.rematch(_:scope:)`, which rewrites only the findings that changed and moves
    /// the others to the new version; with a `scope`, a manifest current at its `since` has only
    /// its touched packages matched), each chunk's `scan` events and verdicts given by the gate
    /// (the repositories holding the chunk's manifests read by digest, none when there is nothing
    /// to announce or judge) before the next. Answers how many it matched.
    /// At most this many manifests are matched and committed before their verdicts are given:
    /// findings stored at the current version are skipped by the next pass, so a failure between
    /// the commit and the verdicts (a lost lease, a restart) leaves at most this many without
    /// theirs, and one write transaction holds at most this many manifests' findings (review).
    static let matchChunk = 50

    func matchAndJudge(_ due: [Due], scope: FindingMatcher.RematchScope? = nil) async throws -> Int {
        var start = 0
        while start < due.count {
            try Task.checkCancellation()
            let chunk = Array(due[start..<min(due.count, start + Self.matchChunk)])
            start += Self.matchChunk
            var chunkScope = scope
            chunkScope?.whole = Set(chunk.filter { !$0.findingsFollowInventory }.map(\.manifest))
            let matched = try await matcher.rematch(chunk.map { ($0.manifest, $0.inventory, $0.previous) }, scope: chunkScope)
            try await gate?.rematched(zip(chunk, matched).map { item, result in
                ScanGate.Rematched(digest: item.manifest, previous: item.previous, current: result.findings)
            })
        }
        return due.count
    }
}

/// Runs the re-match with the server, as a feature service (so leased: `service:FindingRematchService`,
/// one node of a cluster). It polls the database version; its in-memory cursor starts at 0, and
/// the findings' own versions make the first pass after a start cheap (see `FindingRematcher`).
public struct FindingRematchService: Service {
    let rematcher: FindingRematcher
    let poll: Duration
    let logger: Logger

    public init(rematcher: FindingRematcher, poll: Duration, logger: Logger) {
        self.rematcher = rematcher
        self.poll = poll
        self.logger = logger
    }

    public func run() async throws {
        var since: Int64 = 0
        // Manifests skipped while not in use, swept once they are pulled (`FindingRematcher.sweep`).
        var behind = Set<Digest>()
        var warned = false
        // The sweep asks the pull times of every remembered manifest: at most every 30 s.
        let sweepEvery = Duration.seconds(30)
        var lastSweep: ContinuousClock.Instant?
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let started = ContinuousClock.now
                let (version, rematched) = try await rematcher.rematch(since: since, behind: &behind)
                if rematched > 0 {
                    let took = ContinuousClock.now - started
                    let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
                    logger.info("findings re-matched", metadata: ["advisoryVersion": "\(version)", "manifests": "\(rematched)",
                                                                  "seconds": "\(String(format: "%.3f", seconds))"])
                }
                since = version
                if behind.count >= FindingRematcher.maxBehind, !warned {
                    warned = true
                    logger.warning("too many images behind the advisory database to remember; those over the bound catch up after a restart",
                                   metadata: ["bound": "\(FindingRematcher.maxBehind)"])
                }
                var swept = 0
                if !behind.isEmpty, lastSweep.map({ ContinuousClock.now - $0 >= sweepEvery }) ?? true {
                    lastSweep = ContinuousClock.now
                    swept = try await rematcher.sweep(&behind)
                }
                if swept > 0 {
                    logger.info("findings of images pulled again re-matched", metadata: ["advisoryVersion": "\(version)", "manifests": "\(swept)"])
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("re-match failed; retried", metadata: ["error": "\(String(describing: error).prefix(300))"])
            }
            try? await Task.sleep(for: poll)
        }
    }
}
