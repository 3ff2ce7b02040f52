import BlobStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryStore

public struct RegistryConfiguration: Sendable {
    /// Blobs up to this size are kept inline in the metadata store: one fsync instead of three.
    public var inlineBlobThreshold: Int = 64 * 1024
    /// Upload sessions untouched for longer than this are removed (seconds).
    public var uploadMaxAge: Double = 24 * 3600
    /// Private upload sessions (an import's partial blobs, `openPrivateUpload`) kept at most: when
    /// a new one would pass it, the oldest go first (`trimPrivateUploads`). Their age is bounded
    /// by `uploadMaxAge`, as every upload's.
    public var privateUploadsMax: Int = 100
    /// Bytes of manifests the read cache may hold.
    public var manifestCacheBytes: Int = 16 * 1024 * 1024
    /// Largest page of tags, repositories or referrers one request returns.
    public var maxPageSize: Int = 10_000
    /// How long a cached read (manifests, tags, blob sizes, locks, settings) is trusted without
    /// hearing from the event feed (seconds): the backstop should the cache-invalidation consumer
    /// fall behind or stop. Another process's change is normally seen within its poll interval.
    public var cacheTTL: Double = 5
    /// How long a cached read is trusted while this process hears the event feed (`FeedWatch`):
    /// every change that appends an event drops the copies it changes within one poll, so this
    /// is the backstop against a write that appends none.
    public var cacheTTLWithFeed: Double = 60
    /// The feed is heard while the cache-invalidation loop's last catch-up began less than this
    /// long ago (seconds); after that, copies fall back to `cacheTTL`.
    public var cacheFeedStaleness: Double = 2
    /// The clock the caches measure `cacheTTL` with (seconds, monotonic); tests step it.
    public var cacheClock: @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }
    /// The wall clock a pull or HEAD touches a link at (garbage collection keeps links touched
    /// within its grace period).
    public var touchClock: @Sendable () -> Date = { Date() }

    public init() {}
}

/// A manifest as a pull returns it: the exact bytes that were pushed.
public struct ManifestContent: Sendable {
    public let digest: Digest
    public let mediaType: String
    public let bytes: ByteBuffer
    public let subject: Digest?
    /// nil (never quarantined), `Pending`, `Passed` or `Failed`.
    public let quarantineState: QuarantineState?
    public let quarantineReason: String?
    /// False for a manifest answered before it is stored (`Registry.unstoredManifest`): its pull
    /// time waits for the fill (`PullTimeRecorder.recordBeforeStored`).
    public var stored: Bool = true
}

public struct UploadStatus: Sendable {
    public let id: String
    public let size: Int64
}

/// The registry domain: push, pull and delete semantics over a blob store and a metadata store.
/// Knows nothing of HTTP; every failure is a `RegistryError`.
public final class Registry: Sendable {
    public let blobs: any BlobStore
    public let metadata: any MetadataStore
    public let configuration: RegistryConfiguration
    let logger: Logger
    let cache: ReadCache
    /// Whether this process hears the event feed: the caches' TTL is longer while it does.
    let feed: FeedWatch
    let policyCache = QuarantinePolicyBox()
    let lifecycle = LifecycleState()
    /// Caches outside the core that hear the events the cache-invalidation consumer applies.
    /// Pulls served through `/v2/`, waiting to be written to the store (`flushPullTimes`).
    public let pullTimes = PullTimeRecorder()
    let eventObservers = NIOLockedValueBox<[@Sendable ([Event]) -> Void]>([])
    /// The settings this server's parts read, by name: each decodes a document as its type.
    let settingTypes = NIOLockedValueBox<[String: @Sendable (Data) throws -> Void]>([:])
    /// Whether private sessions kept by a build before their id namespace may still be in the
    /// blob store (nil: not looked yet). Counted the old way (every upload listed, each owner
    /// read) until a count finds none, then never looked for again by this process.
    let legacyPrivateSessions = NIOLockedValueBox<Bool?>(nil)
    /// The private sessions as last listed for a client's write (`recentPrivateSessions`), and
    /// when; the generation moves when this node changes one (a listing begun before is dropped).
    struct RecentPrivateSessions {
        var generation = 0
        var list: (at: ContinuousClock.Instant, sessions: [PrivateSession])?
    }
    let recentPrivate = NIOLockedValueBox(RecentPrivateSessions())
    /// How old that list may be: a kept partial copy is counted against a client's write within
    /// this long of being made or removed (an import's own checks list afresh).
    static let recentPrivateLifetime: Duration = .seconds(2)

    public init(blobs: any BlobStore, metadata: any MetadataStore, configuration: RegistryConfiguration = .init(),
                logger: Logger = Logger(label: "berth.registry")) {
        self.blobs = blobs
        self.metadata = metadata
        self.configuration = configuration
        self.logger = logger
        let feed = FeedWatch(staleness: configuration.cacheFeedStaleness)
        self.feed = feed
        let clock = configuration.cacheClock
        self.cache = ReadCache(manifestBytes: configuration.manifestCacheBytes, ttl: configuration.cacheTTL,
                               ttlWithFeed: configuration.cacheTTLWithFeed,
                               feedIsHeard: { feed.isHeard(now: clock()) }, clock: clock)
        registerSettingType(Self.quarantineKey)
        registerSettingType(Self.retentionKey)
        registerSettingType(Self.softDeleteKey)
        registerSettingType(Self.gcKey)
        registerSettingType(Self.quotasKey)
    }

    // MARK: setting types

    /// Declares a setting a part of this server reads (the core's policies; a feature's own, such
    /// as the scan policy or content trust, when it is composed), so a document arriving from
    /// elsewhere (a peer region) can be checked to read as its type before it is stored.
    /// `check` is what the part's own API requires of a value before storing it.
    public func registerSettingType<Value>(_ key: SettingKey<Value>, check: (@Sendable (Value) throws -> Void)? = nil) {
        settingTypes.withLockedValue {
            $0[key.name] = { document in
                let value = try JSONDecoder().decode(Value.self, from: document)
                try check?(value)
            }
        }
    }

    /// Nil when `document` reads as the setting's type in this build; else why not (no part of
    /// this server reads a setting of that name, or the document does not decode as its type).
    public func settingDocumentProblem(_ name: String, _ document: Data) -> String? {
        guard let decode = settingTypes.withLockedValue({ $0[name] }) else {
            return "no part of this server reads a setting named \(name.prefix(100))"
        }
        do {
            try decode(document)
            return nil
        } catch {
            return "the document is not a valid \(name.prefix(100)) for this build: \(String(describing: error).prefix(300))"
        }
    }

    // MARK: blobs

    /// Size of a blob readable in `repository`.
    public func blobSize(_ repository: RepositoryName, _ digest: Digest) async throws -> Int64 {
        try await checkBlobReadable(repository.value)
        var size: Int64
        if let cached = cache.blobSize(repository.value, digest) {
            size = cached
        } else {
            let generation = cache.generation(repository.value)
            let metadata = self.metadata
            guard let stored = try await cache.miss(repository.value, generation: generation, .blobSize(digest), {
                try await metadata.linkedBlobSize(repository: repository.value, digest: digest)
            }) else {
                throw RegistryError(.blobUnknown, "blob unknown to registry")
            }
            cache.storeBlobSize(repository.value, digest, stored, generation: generation)
            size = stored
        }
        // Garbage collection on any node keeps a link touched within its grace period. When this
        // wrote the touch to the store, the link is read there once more: a collection that
        // removed it just before the touch is seen only there, not in a cache.
        // A touch that cannot be written (the database refuses writes) does not fail the pull:
        // at worst collection then removes the link and the client's manifest push is refused
        // with MANIFEST_BLOB_UNKNOWN, which it answers by sending the blob again.
        // Concurrent requests that find the touch due share its write and that read.
        let due: Double?
        do {
            due = try await touchDue(repository.value, digest)
        } catch {
            logger.warning("could not record a blob touch", metadata: ["repository": "\(repository.value)", "error": "\(error)"])
            due = nil
        }
        if let due {
            switch try await writeTouchAndReadLink(repository.value, digest, at: due) {
            case .refused(let error):
                logger.warning("could not record a blob touch", metadata: ["repository": "\(repository.value)", "error": "\(error)"])
            case .written(let linked):
                guard let stored = linked else {
                    cache.invalidate(repository.value)
                    throw RegistryError(.blobUnknown, "blob unknown to registry")
                }
                size = stored
            }
        }
        return size
    }

    /// Streams `range` of a blob readable in `repository`. A range outside the stored blob is
    /// refused (`RANGE_INVALID`): callers often take the size from a pushed descriptor, which only
    /// its digest binds to the blob, so a descriptor that lies about the size must not reach a slice.
    public func readBlob(_ repository: RepositoryName, _ digest: Digest, range: Range<Int64>,
                         into sink: (ByteBuffer) async throws -> Void) async throws {
        let size = try await blobSize(repository, digest)
        guard range.lowerBound >= 0, range.upperBound <= size else {
            throw RegistryError(.rangeInvalid, "range \(range.lowerBound)..<\(range.upperBound) is outside the blob's \(size) bytes")
        }
        var inline = keepsInline(size: size)
        if !inline { inline = try await blobs.size(of: digest) == nil }
        if inline {
            guard let bytes = try await metadata.inlineContent(digest), range.upperBound <= Int64(bytes.count) else {
                throw RegistryError(.blobUnknown, "blob content missing")
            }
            var buffer = ByteBuffer()
            buffer.writeBytes(bytes[Int(range.lowerBound)..<Int(range.upperBound)])
            try await sink(buffer)
            return
        }
        do {
            try await blobs.read(digest, range: range, into: sink)
        } catch BlobStoreError.blobUnknown {
            throw RegistryError(.blobUnknown, "blob content missing")
        }
    }

    /// Blobs of this size are kept in the metadata store, not as files.
    public func keepsInline(size: Int64) -> Bool {
        size <= Int64(configuration.inlineBlobThreshold)
    }

    /// Where a client that may pull a blob can GET it directly (a presigned URL of the blob store),
    /// or nil to serve it here. Callers have checked the client may read the blob (`blobSize`).
    /// A store that cannot answer now is no reason to fail the pull: the blob is then served here.
    public func blobRedirect(_ digest: Digest, size: Int64) async throws -> String? {
        guard !keepsInline(size: size) else { return nil }
        do {
            return try await blobs.redirectURL(digest)
        } catch {
            logger.warning("no redirect for a blob GET, serving it", metadata: ["digest": "\(digest)", "error": "\(error)"])
            return nil
        }
    }

    /// The blob's file, opened, when the blob store keeps it in a local file and it is not kept
    /// inline; nil otherwise (read it with `readBlob`). `size` is what `blobSize` answered, which
    /// also checked that the caller may read the blob. The caller owns the returned handle.
    public func openBlobFile(_ digest: Digest, size: Int64) async throws -> BlobFile? {
        guard !keepsInline(size: size) else { return nil }
        do {
            guard let file = try await blobs.openFile(digest) else { return nil }
            guard file.size == size else {
                file.close()
                throw RegistryError(.blobUnknown, "blob content missing")
            }
            return file
        } catch BlobStoreError.blobUnknown {
            // Kept inline after all (a blob committed before the threshold changed): stream it.
            if try await metadata.inlineContent(digest) != nil { return nil }
            throw RegistryError(.blobUnknown, "blob content missing")
        }
    }

    /// Starts sending `range` of a blob into `sink` when the blob store streams that way (S3)
    /// and the blob is not kept inline; nil otherwise (read it with `readBlob`). `size` is what
    /// `blobSize` answered (the caller may read the blob). A blob the store does not have is
    /// `blobUnknown` here, before any byte was sent.
    public func startBlobTransfer(_ digest: Digest, size: Int64, range: Range<Int64>,
                                  into sink: any BlobByteSink) async throws -> BlobTransfer? {
        guard !keepsInline(size: size), !range.isEmpty, range.upperBound <= size else { return nil }
        do {
            return try await blobs.startTransfer(digest, range: range, into: sink)
        } catch BlobStoreError.blobUnknown {
            // Kept inline after all (a blob committed before the threshold changed): stream it.
            if try await metadata.inlineContent(digest) != nil { return nil }
            throw RegistryError(.blobUnknown, "blob content missing")
        }
    }

    public func deleteBlob(_ repository: RepositoryName, _ digest: Digest) async throws {
        if let blocker = await LockTable.deleteBlocker(try lockTable().repository(repository.value)) {
            throw RegistryError(.denied, blocker)
        }
        cache.invalidate(repository.value)
        guard try await metadata.unlinkBlob(repository: repository.value, digest: digest) else {
            throw RegistryError(.blobUnknown, "blob unknown to registry")
        }
        cache.invalidate(repository.value)
    }

    /// Links a blob that another repository holds. Returns false when it cannot be mounted.
    public func mountBlob(_ repository: RepositoryName, from: String, _ digest: Digest) async throws -> Bool {
        guard RepositoryName.isValid(from) else { return false }
        try await checkWritable(repository.value)
        do {
            let quotas = try await quotas()
            try await checkPartials(repository.value, digest: digest, quotas: quotas) {
                try await self.metadata.linkedBlobSize(repository: from, digest: digest)
            }
            let mounted = try await metadata.mountBlob(repository: repository.value, from: from, digest: digest, quotas: quotas) != nil
            if mounted, let due = try await touchDue(repository.value, digest) { try await writeTouch(repository.value, digest, at: due) }
            return mounted
        } catch let e as QuotaExceeded {
            throw quotaError(e)
        }
    }

    // MARK: uploads

    /// `pushing`: the blob the upload is for, when known (a monolithic push), whose own kept
    /// partial copies in this repository are not counted against it.
    public func startUpload(_ repository: RepositoryName, pushing digest: Digest? = nil) async throws -> UploadStatus {
        try await checkWritable(repository.value)
        try await checkQuotaRoom(repository.value, pushing: digest)
        let id = UUID().uuidString.lowercased()
        try await blobs.createUpload(id: id, owner: repository.value)
        return UploadStatus(id: id, size: 0)
    }

    /// The id namespace of private upload sessions: `openPrivateUpload` mints every private id
    /// with it, and `/v2/` ids (lowercase UUIDs, `startUpload`) never begin with it (a UUID's
    /// first eight characters are hex), so counting private sessions lists only these
    /// (`BlobStore.uploads(idPrefix:)`) and never reads a client's upload. A call without
    /// `privately` naming an id of this namespace is refused before the store is asked.
    public static let privateUploadPrefix = "private-"

    /// The private session of `digest` in `repository`: one per (repository, blob), so whoever
    /// copies that blob there next (an import run again, the replication applier) resumes from
    /// the bytes it holds. Never shown to a client.
    public static func privateUploadID(_ repository: RepositoryName, _ digest: Digest) -> String {
        privateUploadPrefix + legacyPrivateUploadID(repository, digest).prefix(64 - privateUploadPrefix.count)
    }

    /// The id an older build gave that session (no namespace: 64 hex digits). Such sessions are
    /// counted the old way while any exist (`legacyPrivateSessions`), never resumed; the
    /// stale-upload sweep removes them by age.
    static func legacyPrivateUploadID(_ repository: RepositoryName, _ digest: Digest) -> String {
        Digest.compute(Array("berth-import-partial\n\(repository.value)\n\(digest.string)".utf8)).hex
    }

    /// What a private upload session's owner label is: the repository and a mark no repository
    /// name can hold, so `/v2/` (which names the repository only) never reaches it, then the
    /// digest the session is for (so a count can leave out a blob the repository already holds).
    static func uploadOwner(_ repository: RepositoryName, privately: Bool, digest: Digest? = nil) -> String {
        guard privately else { return repository.value }
        return repository.value + "#private" + (digest.map { "#" + $0.string } ?? "")
    }

    /// Whether `owner` (read from the store) is `repository`'s label for a session of that kind.
    static func ownerMatches(_ owner: String, _ repository: RepositoryName, privately: Bool) -> Bool {
        let base = uploadOwner(repository, privately: privately)
        return owner == base || (privately && owner.hasPrefix(base + "#"))
    }

    /// The private upload session of `digest` in `repository` (`privateUploadID`): created empty,
    /// or the existing one with the bytes it holds. Only calls with `privately: true` reach it;
    /// `/v2/` never does, and its bytes become a blob only through `finishUpload`, verified. Age
    /// and count are bounded (`removeStaleUploads`, `trimPrivateUploads`).
    public func openPrivateUpload(_ repository: RepositoryName, digest: Digest) async throws -> UploadStatus {
        try await checkWritable(repository.value)
        let id = Self.privateUploadID(repository, digest)
        let owner = Self.uploadOwner(repository, privately: true, digest: digest)
        for _ in 0..<2 {
            if let current = try await blobs.uploadOwner(id: id) {
                guard current == owner else { throw RegistryError(.blobUploadInvalid, "upload session taken", status: 409) }
                if let size = try await blobs.uploadedSize(id: id) { return UploadStatus(id: id, size: size) }
            }
            try await checkQuotaRoom(repository.value, countingPartials: true)
            do {
                try await blobs.createUpload(id: id, owner: owner)
                privateSessionsChanged()
                return UploadStatus(id: id, size: 0)
            } catch {
                // Created by another run meanwhile: read it again (once).
                if try await blobs.uploadOwner(id: id) == nil { throw error }
            }
        }
        throw RegistryError(.blobUploadInvalid, "upload session busy", status: 409)
    }

    /// Keeps at most `privateUploadsMax - room` private upload sessions per namespace (the first
    /// component of a repository's name, as quotas and namespace owners see tenants): only the
    /// sessions of `repository`'s namespace are counted and trimmed, so one tenant's imports never
    /// evict another's partial copies (nil: every namespace, each against its own limit). Beyond
    /// the limit the oldest go (those idle longer than half the upload max age, then a quarter,
    /// … down to ten minutes). A session touched in the last ten minutes is never removed here
    /// (it may be another job's copy in flight, or the one just opened), so the count can stay
    /// above the limit for that long. Returns how many were removed.
    @discardableResult
    public func trimPrivateUploads(of repository: RepositoryName? = nil, room: Int = 1, now: Date = Date()) async throws -> Int {
        let limit = max(0, configuration.privateUploadsMax - room)
        let wanted = repository.map { Self.namespace(of: $0.value) }
        func privateIDs(olderThan: Double) async throws -> [String: [String]] {
            var out: [String: [String]] = [:]
            for session in try await privateSessions(olderThan: olderThan) where session.id.hasPrefix(Self.privateUploadPrefix) {
                let ns = Self.namespace(of: session.repository)
                if let wanted, ns != wanted { continue }
                out[ns, default: []].append(session.id)
            }
            return out
        }
        var removed = 0
        let floor = 600.0
        for (ns, all) in try await privateIDs(olderThan: now.timeIntervalSince1970 + 86_400) {
            var count = all.count
            guard count > limit else { continue }
            var age = max(floor, configuration.uploadMaxAge / 2)
            while count > limit {
                for id in try await privateIDs(olderThan: now.timeIntervalSince1970 - age)[ns] ?? [] where count > limit {
                    // One a request is writing now is not removed (`uploadBusy`), nor counted.
                    guard (try? await blobs.cancelUpload(id: id)) != nil else { continue }
                    removed += 1
                    count -= 1
                }
                if age <= floor { break }
                age = max(floor, age / 2)
            }
        }
        if removed > 0 {
            privateSessionsChanged()
            logger.info("removed private uploads beyond their limit", metadata: ["count": "\(removed)"])
        }
        return removed
    }

    /// The namespace a repository belongs to: the first component of its name.
    public static func namespace(of repository: String) -> String {
        String(repository.split(separator: "/", maxSplits: 1).first ?? Substring(repository))
    }

    /// A private upload session (an import's partial blob) and the bytes it holds.
    public struct PrivateSession: Sendable, Equatable {
        public let id: String
        public let repository: String
        /// The blob it is for.
        public let digest: Digest?
        public let bytes: Int64
    }

    /// Private upload sessions idle since before `olderThan` (seconds since 1970; the far future
    /// for all), with their repository, blob and size: only the private id namespace is listed
    /// (but for sessions an older build kept: `legacyPrivateSessions`).
    public func privateSessions(olderThan: Double = Date().timeIntervalSince1970 + 86_400) async throws -> [PrivateSession] {
        var out = try await legacyPrivateSessions(olderThan: olderThan)
        for upload in try await blobs.uploads(idPrefix: Self.privateUploadPrefix) where upload.touchedAt < olderThan {
            guard let mark = upload.owner.range(of: "#private") else { continue }
            let rest = upload.owner[mark.upperBound...]
            let digest = rest.hasPrefix("#") ? try? Digest(parsing: String(rest.dropFirst())) : nil
            out.append(PrivateSession(id: upload.id, repository: String(upload.owner[..<mark.lowerBound]), digest: digest,
                                      bytes: upload.size))
        }
        return out
    }

    /// Sessions an older build kept (id of 64 hex digits, owner `<repository>#private`): found the
    /// old way, listing every upload and reading its owner, until a listing finds none; from then
    /// on never again (this build makes none, and the stale-upload sweep removes the old ones
    /// within `uploadMaxAge`). They are counted, never resumed.
    func legacyPrivateSessions(olderThan: Double) async throws -> [PrivateSession] {
        // `olderThan` in the past asks for idle sessions to trim: these are never trimmed.
        guard olderThan > Date().timeIntervalSince1970, legacyPrivateSessions.withLockedValue({ $0 }) != false else { return [] }
        var out: [PrivateSession] = []
        var found = false
        for id in try await blobs.staleUploads(olderThan: Date().timeIntervalSince1970 + 86_400)
        where id.utf8.count == 64 && !id.hasPrefix(Self.privateUploadPrefix) && !id.contains("-") {
            guard let owner = try? await blobs.uploadOwner(id: id), owner.hasSuffix("#private") else { continue }
            found = true
            guard let size = try? await blobs.uploadedSize(id: id) else { continue }
            out.append(PrivateSession(id: id, repository: String(owner.dropLast("#private".count)), digest: nil, bytes: size))
        }
        if !found { legacyPrivateSessions.withLockedValue { $0 = false } }
        return out
    }

    /// The bytes private sessions of repositories `quota` covers hold (partial copies parked by
    /// imports), but for the sessions in `excluding` (an import's own, about to be resumed:
    /// their blobs are counted whole in its plan) and those whose blob their repository already
    /// holds (linked by a push since: the quota's usage counts it, and the session is of no use
    /// any more; removed by whoever copies that blob next, or by the sweep).
    func partialBytes(_ quota: QuotaLimit, in sessions: [PrivateSession], excluding: Set<String> = []) async throws -> Int64 {
        var total: Int64 = 0
        for s in sessions where quota.covers(s.repository) && !excluding.contains(s.id) && s.bytes > 0 {
            if let digest = s.digest, try await metadata.linkedBlobSize(repository: s.repository, digest: digest) != nil { continue }
            total = Self.adding(total, s.bytes)
        }
        return total
    }

    /// Forgets the listed private sessions after this node changed one (so its own imports'
    /// copies count at once; another node's within `recentPrivateLifetime`). A listing begun
    /// before is not kept.
    func privateSessionsChanged() {
        recentPrivate.withLockedValue { $0.generation &+= 1; $0.list = nil }
    }

    /// The private sessions that hold counted bytes (some, and of a blob their repository does
    /// not hold yet: `partialBytes`' rule), listed at most every `recentPrivateLifetime` with
    /// their blobs' state (a client's write asks on every blob under a quota, and then reads
    /// nothing more). A listing that fails counts none (logged): the store's own check still
    /// holds in the write's transaction.
    func recentPrivateSessions() async -> [PrivateSession] {
        let now = ContinuousClock.now
        let (cached, generation) = recentPrivate.withLockedValue { ($0.list, $0.generation) }
        if let cached, now - cached.at < Self.recentPrivateLifetime { return cached.sessions }
        do {
            var counted: [PrivateSession] = []
            for s in try await privateSessions() where s.bytes > 0 {
                if let digest = s.digest, try await metadata.linkedBlobSize(repository: s.repository, digest: digest) != nil { continue }
                counted.append(s)
            }
            recentPrivate.withLockedValue { if $0.generation == generation { $0.list = (now, counted) } }
            return counted
        } catch {
            logger.warning("private upload sessions could not be listed; not counted against quotas", metadata: ["error": "\(error)"])
            return []
        }
    }

    /// `quotas` with the room the kept partial copies (private sessions of interrupted imports)
    /// leave under each, for a client's write of `digest` in `repository`, and the bytes taken
    /// from each: but for the session `excluding` (the one being finished) and the copies of that
    /// very blob in that repository (it is being stored: counting both would count it twice).
    func quotasLessPartials(_ repository: String, digest: Digest?, quotas: [QuotaLimit],
                            excluding: String? = nil) async -> (quotas: [QuotaLimit], partial: [String: Int64]) {
        guard quotas.contains(where: { $0.covers(repository) }) else { return (quotas, [:]) }
        let sessions = await recentPrivateSessions()
        guard !sessions.isEmpty else { return (quotas, [:]) }
        var partial: [String: Int64] = [:]
        let room = quotas.map { q -> QuotaLimit in
            guard q.covers(repository) else { return q }
            var total: Int64 = 0
            for s in sessions where q.covers(s.repository) && s.id != excluding && !(s.repository == repository && s.digest == digest) {
                total = Self.adding(total, s.bytes)
            }
            guard total > 0 else { return q }
            partial[q.name] = total
            var less = q
            less.limitBytes = max(0, q.limitBytes - total)
            return less
        }
        return (room, partial)
    }

    /// A refusal against a quota's room (`quotasLessPartials`), told with the kept partial copies
    /// counted as used under the quota's own limit.
    func withPartials(_ e: QuotaExceeded, _ partial: [String: Int64], quotas: [QuotaLimit]) -> QuotaExceeded {
        guard let bytes = partial[e.quota], let q = quotas.first(where: { $0.name == e.quota }) else { return e }
        return QuotaExceeded(quota: e.quota, limit: q.limitBytes, used: Self.adding(e.used, bytes), needed: e.needed)
    }

    /// Kept partial copies hold storage, so they count as used for a client's write too: refuses
    /// storing `digest` (`size()` bytes, asked only when a copy is counted; nil: nothing to
    /// refuse) in `repository` when a quota covering it would overflow with them. Counted as the
    /// store counts (a digest the quota holds already needs no room). A check before the write:
    /// the store's own check, in the write's transaction, counts stored content only.
    func checkPartials(_ repository: String, digest: Digest, quotas: [QuotaLimit], excluding: String? = nil,
                       size: () async throws -> Int64?) async throws {
        let (room, partial) = await quotasLessPartials(repository, digest: digest, quotas: quotas, excluding: excluding)
        guard !partial.isEmpty, let bytes = try await size() else { return }
        if let e = try await metadata.quotaExceeded(room.filter { partial[$0.name] != nil }, repository: repository,
                                                   digest: digest.string, size: max(0, bytes)) {
            throw withPartials(e, partial, quotas: quotas)
        }
    }

    private func checkUpload(_ repository: RepositoryName, _ id: String, privately: Bool = false) async throws {
        // An id of the private namespace is never a client's: refused without asking the store.
        guard privately == id.hasPrefix(Self.privateUploadPrefix),
              let owner = try? await blobs.uploadOwner(id: id), Self.ownerMatches(owner, repository, privately: privately) else {
            throw RegistryError(.blobUploadUnknown, "upload unknown to registry")
        }
    }

    public func uploadStatus(_ repository: RepositoryName, _ id: String, privately: Bool = false) async throws -> UploadStatus {
        try await checkUpload(repository, id, privately: privately)
        guard let size = try await blobs.uploadedSize(id: id) else {
            throw RegistryError(.blobUploadUnknown, "upload unknown to registry")
        }
        return UploadStatus(id: id, size: size)
    }

    /// Appends a chunk. `rangeStart`, when the client sent `Content-Range`, must equal the bytes
    /// received so far; an out-of-order or overlapping chunk is refused with 416.
    public func appendUpload<Body: AsyncSequence & Sendable>(_ repository: RepositoryName, _ id: String,
                                                             rangeStart: Int64?, privately: Bool = false,
                                                             body: Body) async throws -> UploadStatus
        where Body.Element == ByteBuffer
    {
        try await checkUpload(repository, id, privately: privately)
        guard let current = try await blobs.uploadedSize(id: id) else {
            throw RegistryError(.blobUploadUnknown, "upload unknown to registry")
        }
        if let rangeStart, rangeStart != current {
            throw map(.offsetMismatch(expected: current, actual: rangeStart))
        }
        defer { if privately { privateSessionsChanged() } }
        do {
            let size = try await blobs.append(id: id, offset: current, body: body, limit: nil)
            return UploadStatus(id: id, size: size)
        } catch let error as BlobStoreError {
            throw map(error)
        }
    }

    /// Completes an upload: verifies the digest (and size), makes the blob durable and links it.
    /// On a mismatch the upload and its bytes are removed and nothing becomes visible.
    public func finishUpload(_ repository: RepositoryName, _ id: String, digest: Digest,
                             expectedSize: Int64? = nil, privately: Bool = false) async throws -> Int64 {
        try await checkUpload(repository, id, privately: privately)
        defer { if privately { privateSessionsChanged() } }
        try await checkWritable(repository.value)
        let quotas = try await quotas()
        do {
            if let small = try await blobs.readSmallUpload(id: id, expected: digest, limit: configuration.inlineBlobThreshold) {
                if let expectedSize, expectedSize != Int64(small.count) {
                    throw BlobStoreError.sizeMismatch(actual: Int64(small.count))
                }
                try await checkPartials(repository.value, digest: digest, quotas: quotas, excluding: id) { Int64(small.count) }
                try await metadata.linkBlob(repository: repository.value, digest: digest, size: Int64(small.count), inline: small,
                                            quotas: quotas)
                try? await blobs.cancelUpload(id: id)
                cache.invalidate(repository.value)
                return Int64(small.count)
            }
            // Refused before the bytes are committed; the store checks again, atomically, when it
            // links the blob.
            if !quotas.isEmpty {
                // One check, with the room the kept partial copies leave.
                let (room, partial) = await quotasLessPartials(repository.value, digest: digest, quotas: quotas, excluding: id)
                if let q = try await metadata.quotaExceeded(room, repository: repository.value, digest: digest.string,
                                                            size: try await blobs.uploadedSize(id: id) ?? 0) {
                    throw withPartials(q, partial, quotas: quotas)
                }
            }
            // Garbage collection, on any node, leaves this digest's bytes alone until the link is
            // committed (an inline blob above has no bytes in the blob store to lose).
            let size = try await withPin(digest) { [blobs, metadata] in
                let size = try await blobs.commitUpload(id: id, expected: digest, expectedSize: expectedSize)
                try await metadata.linkBlob(repository: repository.value, digest: digest, size: size, inline: nil, quotas: quotas)
                return size
            }
            cache.invalidate(repository.value)
            return size
        } catch let e as QuotaExceeded {
            // An import's kept copy stays to be resumed when there is room again.
            if !privately { try? await blobs.cancelUpload(id: id) }
            throw quotaError(e)
        } catch let error as BlobStoreError {
            if case .uploadBusy = error {} else { try? await blobs.cancelUpload(id: id) }
            throw map(error)
        }
    }

    /// A whole blob in one request body. Small bodies are verified in memory and stored inline.
    public func putBlob<Body: AsyncSequence & Sendable>(_ repository: RepositoryName, digest: Digest,
                                                        contentLength: Int64?, body: Body) async throws -> Int64
        where Body.Element == ByteBuffer
    {
        if let contentLength, keepsInline(size: contentLength) {
            try await checkWritable(repository.value)  // before reading the body
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(contentLength))
            for try await chunk in body {
                guard bytes.count + chunk.readableBytes <= Int(contentLength) else {
                    throw RegistryError(.sizeInvalid, "body longer than Content-Length")
                }
                bytes.append(contentsOf: chunk.readableBytesView)
            }
            guard bytes.count == Int(contentLength) else {
                throw RegistryError(.sizeInvalid, "body shorter than Content-Length")
            }
            let computed = Digest.compute(bytes, algorithm: digest.algorithm)
            guard computed == digest else {
                throw RegistryError(.digestInvalid, "digest mismatch: content is \(computed)")
            }
            do {
                let quotas = try await quotas()
                try await checkPartials(repository.value, digest: digest, quotas: quotas) { Int64(bytes.count) }
                try await metadata.linkBlob(repository: repository.value, digest: digest, size: Int64(bytes.count), inline: bytes,
                                            quotas: quotas)
            } catch let e as QuotaExceeded {
                throw quotaError(e)
            }
            cache.invalidate(repository.value)
            return Int64(bytes.count)
        }
        let upload = try await startUpload(repository, pushing: digest)
        do {
            _ = try await appendUpload(repository, upload.id, rangeStart: nil, body: body)
        } catch {
            try? await blobs.cancelUpload(id: upload.id)
            throw error
        }
        return try await finishUpload(repository, upload.id, digest: digest, expectedSize: contentLength)
    }

    public func cancelUpload(_ repository: RepositoryName, _ id: String, privately: Bool = false) async throws {
        try await checkUpload(repository, id, privately: privately)
        do {
            try await blobs.cancelUpload(id: id)
        } catch let error as BlobStoreError {
            // A session a request is writing right now is not cancelled under it (409).
            throw map(error)
        }
        if privately { privateSessionsChanged() }
    }

    /// Removes upload sessions idle for longer than the configured age. Returns how many.
    @discardableResult
    public func removeStaleUploads(now: Date = Date()) async throws -> Int {
        let stale = try await blobs.staleUploads(olderThan: now.timeIntervalSince1970 - configuration.uploadMaxAge)
        var removed = 0
        // One a request is writing now is not stale after all (`uploadBusy`): left, not counted.
        for id in stale where (try? await blobs.cancelUpload(id: id)) != nil { removed += 1 }
        if removed > 0 {
            privateSessionsChanged()
            logger.info("removed abandoned uploads", metadata: ["count": "\(removed)"])
        }
        return removed
    }

    func map(_ error: BlobStoreError) -> RegistryError {
        switch error {
        case .uploadUnknown: RegistryError(.blobUploadUnknown, "upload unknown to registry")
        case .uploadBusy: RegistryError(.blobUploadInvalid, "another request is writing to this upload", status: 409)
        case .offsetMismatch(let expected, let actual):
            // The upload's current Range goes back with the 416, so the client can resume from it.
            RegistryError(.rangeInvalid, "chunk starts at \(actual), upload has \(expected) bytes", status: 416,
                          detail: ["uploadRange": "0-\(max(expected - 1, 0))"])
        case .digestMismatch(let computed): RegistryError(.digestInvalid, "digest mismatch: content is \(computed)")
        case .sizeMismatch(let actual): RegistryError(.sizeInvalid, "size mismatch: content has \(actual) bytes")
        case .tooLarge: RegistryError(.sizeInvalid, "upload too large", status: 413)
        case .blobUnknown: RegistryError(.blobUnknown, "blob unknown to registry")
        }
    }
}
