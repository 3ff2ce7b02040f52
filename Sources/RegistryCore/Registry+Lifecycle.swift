import Foundation
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore

// Lifecycle: locks, cascade deletes, soft delete and restore, purge, retention, quotas, usage.
// Garbage collection is in Registry+GarbageCollection.swift.

public struct RetentionPolicy: Codable, Sendable, Equatable {
    public var enabled: Bool = false
    public var days: Double = 7
    public var type: String = "UntaggedManifests"
    public init() {}
}

public struct SoftDeletePolicy: Codable, Sendable, Equatable {
    public var enabled: Bool = false
    public var days: Double = 7
    public init() {}
}

public struct GarbageCollectionPolicy: Codable, Sendable, Equatable {
    public var enabled: Bool = true
    public var intervalSeconds: Double = 3600
    /// Blobs and links younger than this are never collected: a push has this long between
    /// uploading its blobs and pushing the manifest that references them.
    public var graceSeconds: Double = 3600
    public init() {}
}

/// A purge, retention pass or repository delete, as reported to the caller and kept as a run.
public struct LifecycleReport: Codable, Sendable, Equatable {
    public var id: Int64?
    public var kind: RunKind
    public var name: String?
    public var dryRun: Bool
    public var startedAt: Date
    public var finishedAt: Date
    public var deletedTags: [LifecycleTagDeletion] = []
    public var deletedManifests: [LifecycleDeletion] = []
    public var skipped: [LifecycleSkip] = []

    // Stored as a run's report and read back into the contract's `LifecycleReportView`, which
    // owns the answer's shape (its `id` and `name` are written even when null); no encoder here.

    mutating func add(_ change: LifecycleChange) {
        deletedTags += change.deleteTags
        deletedManifests += change.deleteManifests
        skipped += change.skipped
    }
}

/// A tag with its lock, as `repository show-tags` lists it.
public struct TagDetail: Codable, Sendable, Equatable {
    public var name: String
    public var digest: String
    public var lastUpdatedAt: Date
    public var attributes: LockAttributes
    /// When it was last pulled by this tag (`/v2/` GETs, as recorded); nil when never.
    public var lastPulledAt: Date? = nil
}

public struct LockAttributes: Codable, Sendable, Equatable {
    public var readEnabled = true
    public var writeEnabled = true
    public var deleteEnabled = true
    public var listEnabled = true
    init(_ lock: LockRecord?) {
        guard let lock else { return }
        readEnabled = lock.readEnabled
        writeEnabled = lock.writeEnabled
        deleteEnabled = lock.deleteEnabled
        listEnabled = lock.listEnabled
    }
}

public struct ManifestDetail: Codable, Sendable, Equatable {
    public var digest: String
    public var mediaType: String
    public var artifactType: String?
    public var size: Int64
    public var createdAt: Date
    public var tags: [String]
    public var subject: String?
    public var live: Bool
    public var unliveSince: Date?
    public var quarantineState: QuarantineState?
    public var attributes: LockAttributes
    /// When it was last pulled from this repository, by tag or digest (as recorded); nil when never.
    public var lastPulledAt: Date? = nil
}

public struct RepositoryDetail: Codable, Sendable, Equatable {
    public var name: String
    public var manifests: Int64
    public var tags: Int64
    public var createdAt: Date
    public var lastUpdatedAt: Date?
    public var attributes: LockAttributes
}

public struct LockChange: Sendable {
    public var readEnabled: Bool?
    public var writeEnabled: Bool?
    public var deleteEnabled: Bool?
    public var listEnabled: Bool?
    public init(readEnabled: Bool? = nil, writeEnabled: Bool? = nil, deleteEnabled: Bool? = nil, listEnabled: Bool? = nil) {
        self.readEnabled = readEnabled
        self.writeEnabled = writeEnabled
        self.deleteEnabled = deleteEnabled
        self.listEnabled = listEnabled
    }
}

public struct QuotaView: Codable, Sendable, Equatable {
    public var name: String
    public var prefix: String
    public var limitBytes: Int64
    public var usedBytes: Int64
    /// Bytes imports' partial copies (private upload sessions) hold under the quota.
    public var partialBytes: Int64 = 0
}

public struct PurgeScheduleView: Codable, Sendable, Equatable {
    public var name: String
    public var cron: String
    public var filters: [String]
    public var ago: String
    public var untagged: Bool
    public var keep: Int
    public var createdAt: Date
    public var lastRunAt: Date?
    public var nextRunAt: Date?
}

/// A lifecycle request that is wrong in itself (HTTP 400) or names something unknown (404).
public enum LifecycleError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalid(String)
    case notFound(String)
    case conflict(String)
    public var description: String {
        switch self {
        case .invalid(let m), .conflict(let m): m
        case .notFound(let m): "\(m) not found"
        }
    }
}

/// In-memory lifecycle state of a registry process.
final class LifecycleState: Sendable {
    let locks = NIOLockedValueBox<LockTable?>(nil)
    let retention = NIOLockedValueBox<RetentionPolicy?>(nil)
    let softDelete = NIOLockedValueBox<SoftDeletePolicy?>(nil)
    let gc = NIOLockedValueBox<GarbageCollectionPolicy?>(nil)
    let quotas = NIOLockedValueBox<[QuotaLimit]?>(nil)
    /// When each cached setting (by name) and the lock table (`locksKey`) were loaded, on the
    /// cache clock: older than the cache TTL, they are read again.
    let loadedAt = NIOLockedValueBox<[String: Double]>([:])
    static let locksKey = "locks"
    let touches = LinkTouches()
    /// Reloads of the settings and the lock table (by name) and touch writes (by link) running
    /// now: when one expires or falls due, every request in flight needs it at once, and they
    /// share one store round trip instead of making one each.
    let reloads = SingleFlight<String, any Sendable>()
    /// Raised whenever a cached setting or the lock table is dropped: a reload that started
    /// before is neither joined by a caller that came after, nor kept.
    private let generation = NIOLockedValueBox<UInt64>(0)
    var reloadGeneration: UInt64 { generation.withLockedValue { $0 } }
    func dropped() { generation.withLockedValue { $0 &+= 1 } }
    /// Runs `write` (a reload keeping what it read) only if nothing was dropped since `expected`,
    /// checked and written under one lock: a drop between the check and the write would
    /// otherwise have the old value kept with a fresh load time (review).
    func keep(ifStill expected: UInt64, _ write: () -> Void) {
        generation.withLockedValue { current in
            if current == expected { write() }
        }
    }
    let touchWrites = SingleFlight<LinkTouches.Link, TouchWrite>()
}

/// A touch of a link that fell due: refused by the store, or written, and the link as read from
/// the store after it (its size, nil when it is gone).
enum TouchWrite: Sendable {
    case refused(String)
    case written(linkedSize: Int64?)
}

/// How long the shared pins, deletion markers and touches of garbage collection last
/// (`CollectionGuardStore`).
enum CollectionGuard {
    /// A push pins a digest from before it commits the bytes until the blob is linked: a node that
    /// died mid-push keeps the digest from collection for at most this long.
    static let pinTTL: TimeInterval = 900
    /// Collection marks a digest while it deletes the bytes: a node that died mid-deletion keeps
    /// pushes of the digest waiting for at most this long. A delete is given `deleteDeadline`,
    /// far less, so the marker never runs out while its own delete may still be under way.
    static let deletionTTL: TimeInterval = 120
    static let deleteDeadline: TimeInterval = 30
    /// A node writes a touch of one link to the store at most this often (less with a grace
    /// period shorter than twice this: `touchSlack`).
    static let touchInterval: TimeInterval = 5

    /// How long a node goes without writing another touch of a link to the store, under a grace
    /// period of `grace` seconds. Collection keeps links touched in the store up to this long
    /// before its cutoff, so a HEAD whose touch was not written is still covered.
    static func touchSlack(grace: TimeInterval) -> TimeInterval {
        max(0, min(touchInterval, grace / 2))
    }
}

/// When a blob was last found in a repository by a pull or HEAD: a client that was told "this
/// blob exists" will reference it in its next manifest, so garbage collection keeps the link.
/// Kept here for this node's collection, and written to the store (throttled) for every node's.
///
/// One entry per link holds both times under a hash of the link (not its repository name and
/// 64- or 128-character hex string): 24 bytes of key and times, 32 to 64 bytes in the table with
/// its free slots, about a megabyte for 20,000 links (twice that just before a sweep, which also
/// copies the table once). An entry that can no longer matter (its touch older than the grace
/// period and its slack, its write older than any slack) is dropped by a sweep that runs when the
/// table has doubled since the last one, so the cost per touch stays constant.
final class LinkTouches: Sendable {
    struct Link: Hashable, Sendable {
        let repository: String
        let digest: Digest
    }

    /// A link as this table keys it: a 64-bit keyed hash of the repository and the digest
    /// (Swift's `Hasher`, SipHash with a seed drawn at random per process, so a client cannot
    /// aim at another's link; with `SWIFT_DETERMINISTIC_HASHING` set it could make two of its
    /// own links collide, which only affects those). Two links of one key by chance (about one
    /// in 10^11 with 20,000 links held, one in 10^9 at the 200,000 where sweeps get stricter)
    /// would share their times: a touch taken for the other's would skip one store write
    /// (collection could then remove a link a client was just shown, and its manifest push is
    /// refused with MANIFEST_BLOB_UNKNOWN until it sends the blob again), or keep a link one
    /// collection longer.
    private struct Key: Hashable {
        let value: Int

        init(_ repository: String, _ digest: Digest) {
            var hasher = Hasher()
            hasher.combine(repository)
            hasher.combine(digest.algorithm)
            hasher.combine(digest.hex)
            value = hasher.finalize()
        }
    }

    private struct Stamp {
        /// The last touch on this node.
        var touched: Double
        /// When this node last wrote the link's touch to the store (-infinity: never).
        var written: Double
    }

    private struct State {
        var links: [Key: Stamp] = [:]
        /// The table's size that starts the next sweep.
        var sweepAt = LinkTouches.minimumSweep
    }

    static let minimumSweep = 4096
    /// Past this size after a sweep, touches older than `overflowKeep` go too (the store holds them).
    static let overflow = 200_000
    static let overflowKeep: TimeInterval = 600

    private let state = NIOLockedValueBox(State())

    /// Records a touch at `now`; true when the store should be told (this node has not written
    /// one for the link within `slack` seconds). `keep`: how long a touch can matter to this
    /// node's collection (the grace period and its slack).
    func touch(_ repository: String, _ digest: Digest, now: Double, slack: TimeInterval, keep: TimeInterval) -> Bool {
        let key = Key(repository, digest)
        return state.withLockedValue { s in
            if s.links.count >= s.sweepAt { Self.sweep(&s, now: now, keep: keep) }
            let last = s.links[key]?.written ?? -.infinity
            s.links[key] = Stamp(touched: now, written: last)
            return now - last >= slack || now < last
        }
    }

    private static func sweep(_ s: inout State, now: Double, keep: TimeInterval) {
        // A write older than the longest slack no longer holds back another (`touch` would find
        // it due anyway), and a touch older than `keep` is before any cutoff of this grace period.
        func retain(touchedWithin keep: TimeInterval) {
            s.links = s.links.filter { now - $0.value.touched < keep || now - $0.value.written < CollectionGuard.touchInterval }
        }
        retain(touchedWithin: keep)
        if s.links.count > overflow { retain(touchedWithin: min(keep, overflowKeep)) }
        s.sweepAt = max(minimumSweep, 2 * s.links.count)
    }

    /// The store holds the touch of `now`.
    func written(_ repository: String, _ digest: Digest, at now: Double) {
        let key = Key(repository, digest)
        state.withLockedValue { $0.links[key, default: Stamp(touched: -.infinity, written: now)].written = now }
    }

    func touched(_ repository: String, _ digest: Digest, since: Double) -> Bool {
        state.withLockedValue { ($0.links[Key(repository, digest)]?.touched ?? -.infinity) >= since }
    }

    func prune(before: Double) {
        state.withLockedValue { s in
            s.links = s.links.compactMapValues { t in
                let stamp = Stamp(touched: t.touched >= before ? t.touched : -.infinity,
                                  written: t.written >= before ? t.written : -.infinity)
                return stamp.touched == -.infinity && stamp.written == -.infinity ? nil : stamp
            }
            s.sweepAt = max(Self.minimumSweep, 2 * s.links.count)
        }
    }

    /// Links held (tests).
    var count: Int { state.withLockedValue { $0.links.count } }
}

extension Registry {
    /// Touches a link here; the time to write it to the store at, when that is due (at most once
    /// per `CollectionGuard.touchSlack` per link on this node). The caller writes it
    /// (`writeTouch`) before it tells a client the blob exists, and then reads the link from the
    /// store, not a cache, because a collection that removed it just before the touch is seen
    /// only there.
    func touchDue(_ repository: String, _ digest: Digest) async throws -> Double? {
        let now = configuration.touchClock().timeIntervalSince1970
        let grace = try await garbageCollectionPolicy().graceSeconds
        let slack = CollectionGuard.touchSlack(grace: grace)
        return lifecycle.touches.touch(repository, digest, now: now, slack: slack, keep: grace + slack) ? now : nil
    }

    func writeTouch(_ repository: String, _ digest: Digest, at now: Double) async throws {
        try await metadata.touchLink(repository: repository, digest: digest.string, at: Date(timeIntervalSince1970: now))
        lifecycle.touches.written(repository, digest, at: now)
    }

    /// A due touch written, then the link read from the store. The requests that find the same
    /// touch due while it is being written wait for that write and read (one each per link, not
    /// one per request), so none of them answers before the store holds a touch.
    func writeTouchAndReadLink(_ repository: String, _ digest: Digest, at now: Double) async throws -> TouchWrite {
        try await lifecycle.touchWrites.value(LinkTouches.Link(repository: repository, digest: digest)) { [self] in
            do {
                try await writeTouch(repository, digest, at: now)
            } catch {
                return .refused(String(describing: error))
            }
            return .written(linkedSize: try await metadata.linkedBlobSize(repository: repository, digest: digest))
        }
    }

    /// Pins `digest` in the store for a push that is about to commit it, waiting while a
    /// collection deletes its bytes (its marker is cleared when they are gone, or runs out).
    /// Returns the pin's holder, for `unpin`.
    func pin(_ digest: Digest) async throws -> String {
        let holder = UUID().uuidString
        var delay = 5
        while try await !metadata.pinBlob(digest.string, holder: holder, ttl: CollectionGuard.pinTTL) {
            try await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 2, 250)
        }
        return holder
    }

    /// Runs `body` (a commit of `digest`'s bytes and its link) under a pin that is renewed every
    /// third of its time to live, so a commit slower than `pinTTL` (a read-back, a large copy, a
    /// slow store) is never left unpinned. A renewal refused (the pin ran out and a collection
    /// marked the digest meanwhile) fails the commit instead of linking bytes being deleted.
    func withPin<T: Sendable>(_ digest: Digest, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let holder = try await pin(digest)
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body() }
                group.addTask { [metadata] in
                    while true {
                        try await Task.sleep(for: .seconds(CollectionGuard.pinTTL / 3))
                        guard try await metadata.pinBlob(digest.string, holder: holder, ttl: CollectionGuard.pinTTL) else {
                            throw RegistryError(.blobUploadInvalid, "the upload of \(digest) outlasted its pin and the digest is being collected: push it again")
                        }
                    }
                }
                defer { group.cancelAll() }
                while let next = try await group.next() {
                    if let value = next { return value }
                }
                throw CancellationError()
            }
            await unpin(digest, holder: holder)
            return result
        } catch {
            await unpin(digest, holder: holder)
            throw error
        }
    }

    func unpin(_ digest: Digest, holder: String) async {
        do {
            try await metadata.unpinBlob(digest.string, holder: holder)
        } catch {
            // The pin runs out on its own.
            logger.warning("could not remove a blob pin", metadata: ["digest": "\(digest)", "error": "\(error)"])
        }
    }
}

extension Registry {
    static let retentionKey = SettingKey<RetentionPolicy>("retention-policy")
    static let softDeleteKey = SettingKey<SoftDeletePolicy>("soft-delete-policy")
    static let gcKey = SettingKey<GarbageCollectionPolicy>("gc-policy")
    static let quotasKey = SettingKey<[QuotaLimit]>("storage-quotas")

    /// A typed setting, cached in `box` after the first read.
    func setting<T: Codable & Sendable>(_ key: SettingKey<T>, _ box: NIOLockedValueBox<T?>, default value: T) async throws -> T {
        if cacheIsFresh(key.name), let cached = box.withLockedValue({ $0 }) { return cached }
        let (metadata, lifecycle, clock) = (self.metadata, self.lifecycle, configuration.cacheClock)
        let generation = lifecycle.reloadGeneration
        let loaded = try await lifecycle.reloads.value("setting:\(key.name)#\(generation)") {
            let now = clock()
            let loaded = try await metadata.setting(key) ?? value
            lifecycle.keep(ifStill: generation) {
                box.withLockedValue { $0 = loaded }
                lifecycle.loadedAt.withLockedValue { $0[key.name] = now }
            }
            return loaded
        }
        guard let loaded = loaded as? T else { return try await metadata.setting(key) ?? value }   // one name, one type
        return loaded
    }

    /// Whether the cached copy named `name` is still trusted (`cacheTrusts`).
    func cacheIsFresh(_ name: String) -> Bool {
        guard let at = lifecycle.loadedAt.withLockedValue({ $0[name] }) else { return false }
        return cacheTrusts(loadedAt: at, now: configuration.cacheClock())
    }

    func store<T: Codable & Sendable>(_ key: SettingKey<T>, _ box: NIOLockedValueBox<T?>, _ value: T) async throws {
        let now = configuration.cacheClock()
        try await metadata.setSetting(key, value)
        lifecycle.dropped()   // a reload running now does not put the old value back
        box.withLockedValue { $0 = value }
        lifecycle.loadedAt.withLockedValue { $0[key.name] = now }
    }

    /// The current value of a setting about to be replaced. A stored value that no longer reads
    /// as its type (`SettingUnreadable`: a hand-edited database, a downgrade) fails every read,
    /// closed; the write that replaces it must still work, so here it counts as `value` (logged).
    public func replacing<T>(_ read: () async throws -> T, default value: T) async throws -> T {
        do {
            return try await read()
        } catch let unreadable as SettingUnreadable {
            logger.error("replacing an unreadable setting", metadata: ["setting": "\(unreadable.name)", "error": "\(unreadable.reason)"])
            return value
        }
    }

    public func retentionPolicy() async throws -> RetentionPolicy { try await setting(Self.retentionKey, lifecycle.retention, default: .init()) }
    public func softDeletePolicy() async throws -> SoftDeletePolicy { try await setting(Self.softDeleteKey, lifecycle.softDelete, default: .init()) }
    public func garbageCollectionPolicy() async throws -> GarbageCollectionPolicy { try await setting(Self.gcKey, lifecycle.gc, default: .init()) }
    public func quotas() async throws -> [QuotaLimit] { try await setting(Self.quotasKey, lifecycle.quotas, default: []) }

    public func updateRetention(_ p: RetentionPolicy) async throws {
        guard p.type == "UntaggedManifests" else { throw LifecycleError.invalid("retention type must be UntaggedManifests") }
        guard p.days >= 0, p.days <= 365, p.days.isFinite else { throw LifecycleError.invalid("retention days must be 0 to 365") }
        try await store(Self.retentionKey, lifecycle.retention, p)
    }

    public func updateSoftDelete(_ p: SoftDeletePolicy) async throws {
        guard p.days >= 0, p.days <= 90, p.days.isFinite else { throw LifecycleError.invalid("soft-delete days must be 0 to 90") }
        try await store(Self.softDeleteKey, lifecycle.softDelete, p)
    }

    public func updateGarbageCollection(_ p: GarbageCollectionPolicy) async throws {
        guard p.intervalSeconds >= 1, p.intervalSeconds <= 30 * 86_400, p.intervalSeconds.isFinite else {
            throw LifecycleError.invalid("gc interval must be 1 s to 30 days")
        }
        guard p.graceSeconds >= 0, p.graceSeconds <= 30 * 86_400, p.graceSeconds.isFinite else {
            throw LifecycleError.invalid("gc grace must be 0 to 30 days")
        }
        try await store(Self.gcKey, lifecycle.gc, p)
    }

    /// Where soft-deleted manifests stay until, when soft delete is on.
    func softDeleteUntil(_ now: Date = Date()) async throws -> Date? {
        let p = try await softDeletePolicy()
        return p.enabled ? now.addingTimeInterval(p.days * 86_400) : nil
    }

    // MARK: quotas

    /// Each quota with the bytes stored under it and, apart, the bytes imports' partial copies
    /// (private upload sessions) hold there, which the quota's checks of imports count too.
    public func quotaViews() async throws -> [QuotaView] {
        var views: [QuotaView] = []
        var sessions: [PrivateSession]?
        for q in try await quotas() {
            let used = try await metadata.quotaUsage(q)
            if sessions == nil { sessions = try await privateSessions() }
            views.append(QuotaView(name: q.name, prefix: q.prefix, limitBytes: q.limitBytes, usedBytes: used,
                                   partialBytes: try await partialBytes(q, in: sessions ?? [])))
        }
        return views
    }

    public func createQuota(_ q: QuotaLimit) async throws -> QuotaView {
        guard !q.name.isEmpty, q.name.count <= 64, q.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw LifecycleError.invalid("quota name must be 1-64 letters, digits, - or _")
        }
        let trimmed = q.prefix.hasSuffix("/") ? String(q.prefix.dropLast()) : q.prefix
        guard RepositoryName.isValid(trimmed) else { throw LifecycleError.invalid("quota prefix must be a repository name or a path ending in /") }
        guard q.limitBytes > 0 else { throw LifecycleError.invalid("quota limit must be positive") }
        var all = try await replacing(quotas, default: [])
        guard !all.contains(where: { $0.name == q.name }) else { throw LifecycleError.conflict("quota \(q.name) already exists") }
        all.append(q)
        try await store(Self.quotasKey, lifecycle.quotas, all)
        let used = try await metadata.quotaUsage(q)
        let partial = try await partialBytes(q, in: try await privateSessions())
        return QuotaView(name: q.name, prefix: q.prefix, limitBytes: q.limitBytes, usedBytes: used, partialBytes: partial)
    }

    public func deleteQuota(name: String) async throws {
        var all = try await replacing(quotas, default: [])
        guard all.contains(where: { $0.name == name }) else { throw LifecycleError.notFound("quota \(name)") }
        all.removeAll { $0.name == name }
        try await store(Self.quotasKey, lifecycle.quotas, all)
    }

    /// A quota covering `repository` that is already full refuses a new upload up front; the
    /// bytes the private sessions under the quota hold (imports' kept partial copies) count as
    /// used, listed afresh with `countingPartials` (a new private session), else from the list
    /// of a moment ago (`recentPrivateSessions`: a client's upload).
    func checkQuotaRoom(_ repository: String, countingPartials: Bool = false, pushing digest: Digest? = nil) async throws {
        var sessions: [PrivateSession]?
        let quotas = try await quotas()
        // A client's upload counts them too, from a list at most a moment old (not its own blob's).
        let partial = countingPartials || !quotas.contains(where: { $0.covers(repository) }) ? [:]
            : await quotasLessPartials(repository, digest: digest, quotas: quotas).partial
        for q in quotas where q.covers(repository) {
            var used = Self.adding(try await metadata.quotaUsage(q), partial[q.name] ?? 0)
            if countingPartials {
                if sessions == nil { sessions = try await privateSessions() }
                used = Self.adding(used, try await partialBytes(q, in: sessions ?? []))
            }
            if used >= q.limitBytes { throw quotaError(QuotaExceeded(quota: q.name, limit: q.limitBytes, used: used, needed: 0)) }
        }
    }

    static func adding(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int64.max : sum
    }

    /// Whether a blob of `size` bytes (nil: unknown) could be stored in `repository` now: not
    /// write-locked, and no quota covering it that it would overflow (counted as new bytes: a
    /// blob the quota already holds elsewhere may be refused here and stored by a push). For a
    /// writer that must answer before it has the bytes (the pull-through cache's streamed fill:
    /// a refusal after the response began could only cut it short).
    /// With `countingPartialsExcept` (an import), the bytes the private sessions under each
    /// quota hold count as used, but for the sessions named (the import's own, which it resumes).
    public func checkBlobStorable(_ repository: RepositoryName, size: Int64?, countingPartialsExcept own: Set<String>? = nil) async throws {
        try await checkWritable(repository.value)
        var sessions: [PrivateSession]?
        for q in try await quotas() where q.covers(repository.value) {
            var used = try await metadata.quotaUsage(q)
            if let own {
                if sessions == nil { sessions = try await privateSessions() }
                used = Self.adding(used, try await partialBytes(q, in: sessions ?? [], excluding: own))
            }
            let needed = max(0, size ?? 0)
            if used >= q.limitBytes || needed > q.limitBytes - used {
                throw quotaError(QuotaExceeded(quota: q.name, limit: q.limitBytes, used: used, needed: needed))
            }
        }
    }

    func quotaError(_ e: QuotaExceeded) -> RegistryError {
        RegistryError(.denied, e.description)
    }

    // MARK: locks

    public func lockTable() async throws -> LockTable {
        if cacheIsFresh(LifecycleState.locksKey), let cached = lifecycle.locks.withLockedValue({ $0 }) { return cached }
        let (metadata, lifecycle, clock) = (self.metadata, self.lifecycle, configuration.cacheClock)
        let generation = lifecycle.reloadGeneration
        let table = try await lifecycle.reloads.value("\(LifecycleState.locksKey)#\(generation)") {
            let now = clock()
            let table = await LockTable(try metadata.locks())
            lifecycle.keep(ifStill: generation) {
                lifecycle.locks.withLockedValue { $0 = table }
                lifecycle.loadedAt.withLockedValue { $0[LifecycleState.locksKey] = now }
            }
            return table
        }
        guard let table = table as? LockTable else { return await LockTable(try metadata.locks()) }   // not reached
        return table
    }

    func reloadLocks() {
        lifecycle.dropped()
        lifecycle.locks.withLockedValue { $0 = nil }
    }

    private func denied(_ message: String) -> RegistryError { RegistryError(.denied, message) }

    /// Pushing into `repository` (blobs, mounts, manifests).
    func checkWritable(_ repository: String) async throws {
        let locks = try await lockTable()
        guard !locks.isEmpty, let lock = locks.repository(repository), !lock.writeEnabled else { return }
        throw denied(LockTable.describe(lock, "write-enabled"))
    }

    /// Pulling a blob from `repository`.
    public func checkBlobReadable(_ repository: String) async throws {
        let locks = try await lockTable()
        guard !locks.isEmpty, let lock = locks.repository(repository), !lock.readEnabled else { return }
        throw denied(LockTable.describe(lock, "read-enabled"))
    }

    /// Pulling a manifest by `tag` or digest.
    func checkManifestReadable(_ repository: String, tag: String?, digest: Digest) async throws {
        let locks = try await lockTable()
        guard !locks.isEmpty else { return }
        for lock in [locks.repository(repository), tag.flatMap { locks.tag(repository, $0) }, locks.manifest(repository, digest.string)] {
            if let lock, !lock.readEnabled { throw denied(LockTable.describe(lock, "read-enabled")) }
        }
    }

    /// Moving `tag` from its current target to `digest`.
    func checkTagMove(_ repository: String, tag: String, to digest: Digest) async throws {
        guard try await !lockTable().isEmpty else { return }
        try await checkTagMove(repository, tag: tag, from: try await metadata.tagTarget(repository: repository, tag: tag), to: digest)
    }

    /// Moving `tag` from `current` (nil: a new tag) to `digest`.
    func checkTagMove(_ repository: String, tag: String, from current: Digest?, to digest: Digest) async throws {
        let locks = try await lockTable()
        guard !locks.isEmpty, let current, current != digest else { return }
        for lock in [locks.tag(repository, tag), locks.manifest(repository, current.string)] {
            if let lock, !lock.writeEnabled { throw denied(LockTable.describe(lock, "write-enabled")) }
        }
    }

    /// A tag write's precondition: the tag points at `target` (nil: it is absent).
    public struct TagPrecondition: Sendable, Equatable {
        public var target: Digest?
        public init(target: Digest?) { self.target = target }
    }

    /// A tag changed between a caller's read and its write under a `TagPrecondition`: nothing was
    /// written.
    public struct TagMovedMeanwhile: Error, Sendable, Equatable, CustomStringConvertible {
        public var tag: String
        public var description: String { "tag \(tag) kept moving while a peer's write to it was applied; retried later" }
    }

    /// A tag that kept moving while a change to it was planned again and again.
    func tagBusy(_ tag: String) -> RegistryError {
        RegistryError(.tooManyRequests, "tag \(tag) is being changed concurrently; retry", status: 429)
    }

    /// Tags hidden from listings (list-enabled false), and whether the repository is.
    public func listHidden(_ repository: String) async throws -> (repository: Bool, tags: Set<String>) {
        let locks = try await lockTable()
        guard let entry = locks.repositories[repository] else { return (false, []) }
        return (entry.repository.map { !$0.listEnabled } ?? false, Set(entry.tags.values.filter { !$0.listEnabled }.compactMap(\.tag)))
    }

    public func lockView(_ repository: RepositoryName, tag: String?, digest: Digest?) async throws -> LockRecord {
        let locks = try await lockTable()
        let lock = tag.map { locks.tag(repository.value, $0) } ?? digest.map { locks.manifest(repository.value, $0.string) }
            ?? locks.repository(repository.value)
        let a = LockAttributes(lock)
        return LockRecord(repository: repository.value, tag: tag, digest: digest?.string, readEnabled: a.readEnabled,
                          writeEnabled: a.writeEnabled, deleteEnabled: a.deleteEnabled, listEnabled: a.listEnabled)
    }

    /// Sets attributes of a repository, or of one tag or manifest in it.
    public func updateLock(_ repository: RepositoryName, tag: String?, digest: Digest?, _ change: LockChange) async throws -> LockRecord {
        guard try await metadata.repositoryExists(repository.value) else { throw LifecycleError.notFound("repository \(repository.value)") }
        if let tag, try await metadata.tagTarget(repository: repository.value, tag: tag) == nil {
            throw LifecycleError.notFound("tag \(tag) in \(repository.value)")
        }
        if let digest, try await metadata.manifest(repository: repository.value, digest: digest) == nil {
            throw LifecycleError.notFound("manifest \(digest) in \(repository.value)")
        }
        var lock = try await lockView(repository, tag: tag, digest: digest)
        if let v = change.readEnabled { lock.readEnabled = v }
        if let v = change.writeEnabled { lock.writeEnabled = v }
        if let v = change.deleteEnabled { lock.deleteEnabled = v }
        if let v = change.listEnabled { lock.listEnabled = v }
        try await metadata.setLock(lock)
        reloadLocks()
        cache.invalidate(repository.value)
        return lock
    }

    // MARK: deletes

    /// Deleting by tag removes the tag only; deleting by digest removes the manifest, its tags, its
    /// referrers and the index children nothing else keeps (to the recycle bin when soft delete
    /// is on). Locks and live indexes that still list the manifest refuse it.
    /// `tagDetail` is the event's detail of a deletion by tag (`EventAction.cascadeDetail`: the
    /// replication consumer removing a tag whose manifest a peer's deletion took).
    /// `dependents: false` deletes by digest the manifest and its tags only, never a referrer or an
    /// index child: the replication consumer applying a peer's deletion, whose own cascade is in
    /// its feed as deletions with their own stamps (a referrer pushed here after that deletion was
    /// made must not go with it under the deletion's stamp).
    /// `ifTagTarget` (a deletion by tag only): the tag is deleted only while it points where the
    /// caller read it pointing (none: absent); otherwise `TagMovedMeanwhile` is thrown and nothing
    /// changes (the replication consumer decides again: a client's newer write must not go).
    public func deleteManifest(_ repository: RepositoryName, _ reference: Reference, tagDetail: String? = nil,
                               dependents: Bool = true, ifTagTarget: TagPrecondition? = nil) async throws {
        cache.invalidate(repository.value)
        defer { cache.invalidate(repository.value) }
        switch reference {
        case .tag(let tag):
            let found = try await metadata.tagTarget(repository: repository.value, tag: tag)
            if let ifTagTarget, ifTagTarget.target != found { throw TagMovedMeanwhile(tag: tag) }
            guard var target = found else {
                throw RegistryError(.manifestUnknown, "manifest unknown: tag \(tag) not found")
            }
            for attempt in 1...ContentPlanner.attempts {
                if let blocker = try await lockTable().tagDeletionBlocker(repository.value, tag: tag, digest: target.string) {
                    throw denied(blocker)
                }
                var deletion = ContentPlanner.tagDeletion(repository: repository.value, tag: tag, target: target)
                deletion.detail = tagDetail
                switch try await metadata.deleteTag(deletion) {
                case .deleted:
                    reloadLocks()
                    return
                case .unknown:
                    throw RegistryError(.manifestUnknown, "manifest unknown: tag \(tag) not found")
                case .conflict(let current):
                    if ifTagTarget != nil { throw TagMovedMeanwhile(tag: tag) }
                    // The tag moved after the locks were checked: check them again for where it points now.
                    guard attempt < ContentPlanner.attempts else { throw tagBusy(tag) }
                    target = current
                }
            }
        case .digest(let digest):
            let locks = try await lockTable()
            let softUntil = try await softDeleteUntil()
            let change = try await metadata.applyLifecycle(repository: repository.value, softDeleteUntil: softUntil) { graph in
                ContentPlanner.withDeletionRules(Liveness.cascade(graph, target: digest.string, locks: locks, dependents: dependents),
                                                 graph: graph, reason: "api", softDeleted: softUntil != nil)
            }
            guard let change else { throw RegistryError(.manifestUnknown, "manifest unknown to registry") }
            if let message = change.denied { throw denied(message) }
            guard change.deleteManifests.contains(where: { $0.digest == digest.string }) else {
                throw RegistryError(.manifestUnknown, "manifest unknown to registry")
            }
            reloadLocks()
        }
    }

    /// Deletes every tag and manifest of a repository (locked ones stay and are reported).
    public func deleteRepository(_ repository: RepositoryName) async throws -> LifecycleReport {
        let started = Date()
        let locks = try await lockTable()
        let softUntil = try await softDeleteUntil()
        guard let change = try await metadata.applyLifecycle(repository: repository.value, softDeleteUntil: softUntil, plan: { graph in
            var c = LifecyclePlanner.deleteRepository(graph, locks: locks)
            c.detail = "repository delete"
            return ContentPlanner.withDeletionRules(c, graph: graph, reason: "repository delete", softDeleted: softUntil != nil)
        }) else { throw LifecycleError.notFound("repository \(repository.value)") }
        cache.invalidate(repository.value)
        reloadLocks()
        if let message = change.denied { throw denied(message) }
        var report = LifecycleReport(kind: .repositoryDelete, name: repository.value, dryRun: false, startedAt: started, finishedAt: Date())
        report.add(change)
        return report
    }

    // MARK: recycle bin

    /// The repository's recycle bin, newest deletion first.
    public func deletedManifests(_ repository: RepositoryName) async throws -> [DeletedManifest] {
        try await metadata.deletedManifests(repository: repository.value).sorted(by: RestorePlanning.newestFirst)
    }

    /// Brings a soft-deleted manifest back with identical bytes and digest (and the index
    /// children and referrers deleted with it), under `tag` or its former tags, by the rules of
    /// `RestorePlanning`. A named tag is moved as a push moves it: its locks checked from where it
    /// points now. A plan whose state moved before it applied is planned again.
    public func restoreManifest(_ repository: RepositoryName, digest: Digest, tag: String?) async throws -> [RestoredManifest] {
        if let tag {
            guard Tag.isValid(tag) else { throw LifecycleError.invalid("invalid tag \(tag)") }
            try await checkWritable(repository.value)
        }
        let reads = RestorePlanning.Reads.store(metadata, repository: repository.value)
        // Planned or found while applying: a manifest the restore needs is gone for good.
        func missing(_ d: String) -> LifecycleError { .conflict("cannot restore \(digest): \(d) is no longer stored") }
        for attempt in 1...ContentPlanner.attempts {
            // The named tag's locks first, as a push checks them: a locked tag is refused before
            // anything else is said about the restore.
            var checked: Digest?
            let locked = try await !lockTable().isEmpty
            if let tag, locked {
                checked = try await metadata.tagTarget(repository: repository.value, tag: tag)
                try await checkTagMove(repository.value, tag: tag, from: checked, to: digest)
            }
            let outcome: RestorePlanning.Outcome
            do {
                outcome = try await RestorePlanning.plan(digest: digest.string, tags: tag.map { [$0] },
                                                         tagHistoryLimit: ContentPlanner.tagHistoryLimit, reads: reads)
            } catch RestorePlanning.Failure.notInRecycleBin {
                throw LifecycleError.notFound("manifest \(digest) in the recycle bin of \(repository.value)")
            } catch RestorePlanning.Failure.childMissing(let d) {
                throw missing(d)
            }
            if let tag, locked, outcome.tagTargets[tag] != checked?.string {   // it moved between the two reads
                try await checkTagMove(repository.value, tag: tag, from: outcome.tagTargets[tag].flatMap { try? Digest(parsing: $0) },
                                       to: digest)
            }
            do {
                try await metadata.applyRestore(repository: repository.value, plan: outcome.plan)
                cache.invalidate(repository.value)
                return outcome.restored
            } catch RestoreError.childMissing(let d) {
                throw missing(d)
            } catch RestoreError.tagConflict(let moved, _) {
                guard attempt < ContentPlanner.attempts else { throw tagBusy(moved) }
            } catch RestoreError.planStale {
                guard attempt < ContentPlanner.attempts else { break }
            }
        }
        throw RegistryError(.tooManyRequests, "the recycle bin of \(repository.value) is being changed concurrently; retry", status: 429)
    }

    /// Removes recycle-bin entries past their expiry for good.
    @discardableResult
    public func expireSoftDeleted(now: Date = Date()) async throws -> Int {
        let expired = try await metadata.expireDeletedManifests(now: now, limit: LifecyclePlanner.expiryBatch)
        if !expired.isEmpty {
            logger.info("recycle bin entries expired", metadata: ["count": "\(expired.count)"])
            let report = expired.map { LifecycleDeletion(repository: $0.repository, digest: $0.digest, mediaType: $0.mediaType, reason: "expired") }
            var r = LifecycleReport(kind: .softDelete, name: nil, dryRun: false, startedAt: now, finishedAt: Date())
            r.deletedManifests = report
            _ = try await recordRun(&r, event: nil)
        }
        return expired.count
    }

    // MARK: purge and retention

    /// Every repository name, in lexical order.
    func allRepositories() async throws -> [String] {
        var out: [String] = []
        var cursor: String?
        while true {
            let page = try await metadata.repositories(after: cursor, limit: 1000)
            out += page
            guard page.count == 1000, let last = page.last else { return out }
            cursor = last
        }
    }

    /// Run reports are kept as the JSON the API answers with.
    static func reportJSON(_ report: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    func recordRun(_ report: inout LifecycleReport, event: (action: EventAction, detail: String)?) async throws -> Int64 {
        let id = try await metadata.recordRun(kind: report.kind, name: report.name, dryRun: report.dryRun, startedAt: report.startedAt,
                                              finishedAt: report.finishedAt, report: try Self.reportJSON(report), event: event,
                                              keep: LifecyclePlanner.keptRunReports)
        report.id = id
        LifecycleMetrics.run(kind: report.kind.rawValue, dryRun: report.dryRun, startedAt: report.startedAt, finishedAt: report.finishedAt,
                             manifestsDeleted: report.deletedManifests.count)
        return id
    }

    /// The repositories a purge with `options` would look at (those its filters match).
    public func purgeRepositories(_ options: PurgeOptions) async throws -> [String] {
        try await allRepositories().filter { repo in options.filters.contains(where: { $0.matchesRepository(repo) }) }
    }

    /// `only`: the purge touches no repository outside it (a caller judged per repository).
    public func purge(_ options: PurgeOptions, dryRun: Bool, name: String? = nil, now: Date = Date(),
                      only: Set<String>? = nil) async throws -> LifecycleReport {
        var report = LifecycleReport(kind: .purge, name: name, dryRun: dryRun, startedAt: now, finishedAt: now)
        let locks = try await lockTable()
        let grace = try await garbageCollectionPolicy().graceSeconds
        let softUntil = try await softDeleteUntil(now)
        let detail = "purge" + (name.map { " schedule \($0)" } ?? "")
        for repo in try await allRepositories() where options.filters.contains(where: { $0.matchesRepository(repo) }) {
            if let only, !only.contains(repo) { continue }
            if dryRun {
                guard let graph = try await metadata.repositoryGraph(repo) else { continue }
                report.add(LifecyclePlanner.purge(graph, options, locks: locks, now: now, grace: grace))
            } else {
                let change = try await metadata.applyLifecycle(repository: repo, softDeleteUntil: softUntil) { graph in
                    var c = LifecyclePlanner.purge(graph, options, locks: locks, now: now, grace: grace)
                    c.detail = detail
                    return ContentPlanner.withDeletionRules(c, graph: graph, reason: "purge", softDeleted: softUntil != nil)
                }
                if let change { report.add(change) }
                cache.invalidate(repo)
            }
        }
        if !dryRun { reloadLocks() }
        report.finishedAt = Date()
        let summary = "\(report.deletedTags.count) tags, \(report.deletedManifests.count) manifests deleted, \(report.skipped.count) skipped"
        _ = try await recordRun(&report, event: dryRun ? nil : (EventAction.purgeRun, summary))
        return report
    }

    /// One retention pass over the repositories whose manifests are due (not live for longer than
    /// the policy's days). Repositories that changed are handled as the changes happen, by the
    /// retention event consumer (`RetentionConsumer`); `force` (an operator's "run now") also
    /// handles the changes that consumer has not reached yet, whether or not retention is enabled.
    @discardableResult
    public func runRetention(now: Date = Date(), force: Bool = false) async throws -> LifecycleReport? {
        let policy = try await retentionPolicy()
        guard policy.enabled || force else { return nil }
        var repositories = await Set(try metadata.repositoriesWithUnliveManifests(before: now.addingTimeInterval(-policy.days * 86_400)))
        var advance: (consumers: any EventLogStore, from: Int64, to: Int64)?
        if force {
            let consumers: any EventLogStore = metadata
            let record = try await consumers.registerEventConsumer(name: RetentionConsumer.name, start: .beginning)
            let (changed, latest) = try await metadata.repositoriesChanged(after: record.cursor)
            repositories.formUnion(changed)
            // A paused consumer keeps its place, also across an operator's "run now".
            if latest > record.cursor, !record.paused { advance = (consumers, record.cursor, latest) }
        }
        var report = try await retain(repositories: repositories, policy: policy, now: now)
        if let advance {
            _ = try await advance.consumers.advanceEventConsumer(name: RetentionConsumer.name, from: advance.from, to: advance.to)
        }
        if !report.deletedManifests.isEmpty || force {
            _ = try await recordRun(&report, event: (EventAction.retentionRun, "\(report.deletedManifests.count) manifests deleted"))
        }
        return report
    }

    /// Retention on these repositories: refreshes when manifests stopped being live, and deletes
    /// those not live for longer than the policy's days.
    func retain(repositories: Set<String>, policy: RetentionPolicy, now: Date) async throws -> LifecycleReport {
        var report = LifecycleReport(kind: .retention, name: nil, dryRun: false, startedAt: now, finishedAt: now)
        let locks = try await lockTable()
        let grace = try await garbageCollectionPolicy().graceSeconds
        let softUntil = try await softDeleteUntil(now)
        for repo in repositories.sorted() {
            let change = try await metadata.applyLifecycle(repository: repo, softDeleteUntil: softUntil) { graph in
                var c = LifecyclePlanner.retention(graph, days: policy.days, locks: locks, now: now, grace: grace, delete: true)
                c.detail = "retention"
                return ContentPlanner.withDeletionRules(c, graph: graph, reason: "retention", softDeleted: softUntil != nil)
            }
            if let change, !change.deleteManifests.isEmpty {
                report.add(change)
                cache.invalidate(repo)
            } else if let change { report.skipped += change.skipped }
        }
        if !report.deletedManifests.isEmpty { reloadLocks() }
        report.finishedAt = Date()
        return report
    }

    // MARK: schedules

    public func purgeScheduleViews(now: Date = Date()) async throws -> [PurgeScheduleView] {
        try await metadata.purgeSchedules().map { s in
            PurgeScheduleView(name: s.name, cron: s.cron, filters: s.filters, ago: s.ago, untagged: s.untagged, keep: s.keep,
                              createdAt: s.createdAt, lastRunAt: s.lastRunAt,
                              nextRunAt: (try? CronSchedule(parsing: s.cron))?.next(after: max(now, s.lastRunAt ?? s.createdAt)))
        }
    }

    public static func purgeOptions(filters: [String], ago: String, untagged: Bool, keep: Int) throws -> PurgeOptions {
        guard !filters.isEmpty, filters.count <= 100 else { throw LifecycleError.invalid("give 1 to 100 filters") }
        guard keep >= 0, keep <= 1_000_000 else { throw LifecycleError.invalid("keep must be 0 or more") }
        do {
            return PurgeOptions(filters: try filters.map { try PurgeFilter(parsing: $0) }, ago: try LifecycleDuration.parse(ago),
                                untagged: untagged, keep: keep)
        } catch {
            throw LifecycleError.invalid("\(error)")
        }
    }

    public func createPurgeSchedule(name: String, cron: String, filters: [String], ago: String, untagged: Bool, keep: Int) async throws -> PurgeScheduleView {
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw LifecycleError.invalid("schedule name must be 1-64 letters, digits, - or _")
        }
        _ = try Self.purgeOptions(filters: filters, ago: ago, untagged: untagged, keep: keep)
        do { _ = try CronSchedule(parsing: cron) } catch { throw LifecycleError.invalid("\(error)") }
        let record = PurgeScheduleRecord(name: name, cron: cron, filters: filters, ago: ago, untagged: untagged, keep: keep, createdAt: Date())
        guard try await metadata.createPurgeSchedule(record) else { throw LifecycleError.conflict("purge schedule \(name) already exists") }
        return try await purgeScheduleViews().first { $0.name == name }!
    }

    public func deletePurgeSchedule(name: String) async throws {
        guard try await metadata.deletePurgeSchedule(name: name) else { throw LifecycleError.notFound("purge schedule \(name)") }
    }

    /// Runs every purge schedule whose next time has come.
    public func runDueSchedules(now: Date = Date()) async throws {
        for s in try await metadata.purgeSchedules() {
            guard let cron = try? CronSchedule(parsing: s.cron), let next = cron.next(after: s.lastRunAt ?? s.createdAt), next <= now else {
                continue
            }
            try await metadata.markPurgeScheduleRun(name: s.name, at: now)
            do {
                let options = try Self.purgeOptions(filters: s.filters, ago: s.ago, untagged: s.untagged, keep: s.keep)
                let report = try await purge(options, dryRun: false, name: s.name, now: now)
                logger.info("scheduled purge ran", metadata: ["schedule": "\(s.name)", "tags": "\(report.deletedTags.count)",
                                                              "manifests": "\(report.deletedManifests.count)"])
            } catch {
                logger.warning("scheduled purge failed", metadata: ["schedule": "\(s.name)", "error": "\(error)"])
            }
        }
    }

    /// Run reports, newest first; a `kind` that names no kind of run matches none.
    public func runs(kind: String?, name: String?, limit: Int) async throws -> [LifecycleRunRecord] {
        guard let kind else { return try await metadata.runs(kind: nil, name: name, limit: limit) }
        guard let known = RunKind(rawValue: kind) else { return [] }
        return try await metadata.runs(kind: known, name: name, limit: limit)
    }

    // MARK: listings

    public func repositoryDetails() async throws -> [RepositoryDetail] {
        let locks = try await lockTable()
        return try await metadata.repositorySummaries(named: nil).map {
            RepositoryDetail(name: $0.name, manifests: $0.manifests, tags: $0.tags, createdAt: $0.createdAt, lastUpdatedAt: $0.lastUpdatedAt,
                             attributes: LockAttributes(locks.repository($0.name)))
        }
    }

    public func repositoryDetail(_ repository: RepositoryName) async throws -> RepositoryDetail {
        guard let d = try await metadata.repositorySummaries(named: repository.value).first else {
            throw LifecycleError.notFound("repository \(repository.value)")
        }
        return await RepositoryDetail(name: d.name, manifests: d.manifests, tags: d.tags, createdAt: d.createdAt, lastUpdatedAt: d.lastUpdatedAt,
                                attributes: LockAttributes(try lockTable().repository(d.name)))
    }

    public func tagDetails(_ repository: RepositoryName, orderBy: String) async throws -> [TagDetail] {
        guard let g = try await metadata.repositoryGraph(repository.value) else { throw LifecycleError.notFound("repository \(repository.value)") }
        let locks = try await lockTable()
        var tags = g.tags
        switch orderBy {
        case "time_desc": tags.sort { ($0.updatedAt, $0.name) > ($1.updatedAt, $1.name) }
        case "time_asc": tags.sort { ($0.updatedAt, $0.name) < ($1.updatedAt, $1.name) }
        case "name_asc", "": tags.sort { $0.name < $1.name }
        default: throw LifecycleError.invalid("orderby must be time_desc, time_asc or name_asc")
        }
        let pulls = try await metadata.pullTimes(repository: repository.value)
        return tags.map { TagDetail(name: $0.name, digest: $0.digest, lastUpdatedAt: $0.updatedAt,
                                    attributes: LockAttributes(locks.tag(repository.value, $0.name)), lastPulledAt: pulls.tags[$0.name]) }
    }

    public func manifestDetails(_ repository: RepositoryName) async throws -> [ManifestDetail] {
        guard let g = try await metadata.repositoryGraph(repository.value) else { throw LifecycleError.notFound("repository \(repository.value)") }
        let locks = try await lockTable()
        let live = Liveness.live(g, locked: locks.lockedManifests(repository.value))
        let tagsOf = Dictionary(grouping: g.tags, by: \.digest).mapValues { $0.map(\.name).sorted() }
        let pulls = try await metadata.pullTimes(repository: repository.value)
        return g.manifests.values.sorted { ($0.createdAt, $0.digest) > ($1.createdAt, $1.digest) }.map { m in
            ManifestDetail(digest: m.digest, mediaType: m.mediaType, artifactType: m.artifactType, size: m.size, createdAt: m.createdAt,
                           tags: tagsOf[m.digest] ?? [], subject: m.subject, live: live.contains(m.digest),
                           unliveSince: live.contains(m.digest) ? nil : m.unliveSince, quarantineState: m.quarantineState,
                           attributes: LockAttributes(locks.manifest(repository.value, m.digest)), lastPulledAt: pulls.manifests[m.digest])
        }
    }

    public func usage(repository: RepositoryName?) async throws -> UsageRecord {
        guard let u = try await metadata.usage(repository: repository?.value) else {
            throw LifecycleError.notFound("repository \(repository?.value ?? "")")
        }
        return u
    }
}

/// Retention as an event consumer: every repository that changes is looked at (its manifests'
/// "not live since" clocks refreshed, and those past the policy deleted) from a durable cursor.
/// While retention is disabled the cursor stays where it is, so enabling it later looks at every
/// repository that changed in between.
public struct RetentionConsumer: EventConsumer {
    public static let name = "retention"
    public var name: String { Self.name }
    public var start: EventConsumerStart { .beginning }
    let registry: Registry

    public init(registry: Registry) { self.registry = registry }

    public func isActive() async throws -> Bool { try await registry.retentionPolicy().enabled }

    public func handle(_ events: [Event]) async throws {
        let policy = try await registry.retentionPolicy()
        let now = Date()
        // Blob links decide nothing retention keeps or deletes: their events (pushes, and
        // garbage collection's removals) start no pass.
        let changed = Set(events.filter { $0.action != .blobPush && $0.action != .blobDelete }.map(\.repository).filter { !$0.isEmpty })
        guard !changed.isEmpty else { return }
        var report = try await registry.retain(repositories: changed, policy: policy, now: now)
        if !report.deletedManifests.isEmpty {
            _ = try await registry.recordRun(&report, event: (EventAction.retentionRun,
                                                              "\(report.deletedManifests.count) manifests deleted"))
        }
    }
}
