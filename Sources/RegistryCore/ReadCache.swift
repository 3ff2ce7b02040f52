import NIOConcurrencyHelpers
import OCIModel

/// In-memory read cache for the hot pull path (tag → digest, manifests, blob sizes).
///
/// Every mutation of a repository bumps that repository's generation and drops its entries; a
/// reader records the generation before it reads the database and stores its result only if no
/// mutation happened in between, so a stale read never lands in the cache. Another process's
/// mutations reach it through the event feed (`Registry.applyEvents`); as a backstop a
/// repository's entries are dropped `ttl` seconds after the first of them was stored, or
/// `ttlWithFeed` seconds while the feed is heard (`FeedWatch`) and they were read after this
/// process first caught up with it (their generation is newer than `feedMark`).
/// Concurrent misses of one entry make one store read (`misses`, keyed by the generation).
final class ReadCache: Sendable {
    /// What a miss reads: a repository's entry as of one of its generations.
    struct MissKey: Hashable, Sendable {
        enum Entry: Hashable, Sendable {
            case tag(String), manifest(Digest), blobSize(Digest)
        }
        var repository: String
        var generation: UInt64
        var entry: Entry
    }

    /// The store reads of misses running now, shared by every caller that misses the same entry.
    let misses = SingleFlight<MissKey, any Sendable>()

    private struct RepoEntries {
        var generation: UInt64
        var tags: [String: Digest] = [:]
        var manifests: [Digest: ManifestContent] = [:]
        var blobSizes: [Digest: Int64] = [:]
        /// When the first of these entries was stored (the cache clock), nil while empty.
        var bornAt: Double?
    }

    private struct State {
        var repos: [String: RepoEntries] = [:]
        var manifestBytes = 0
        var entries = 0
        /// The generation of a repository without an entry here. Generations come from one
        /// counter, so no value is handed out twice: a repository's entry can be forgotten (its
        /// generation becomes `floor`, newer than any before it) without a reader that recorded
        /// the old one storing what it read.
        var floor: UInt64 = 0
        var lastIssued: UInt64 = 0
        /// The number of repositories held that starts the next sweep of the empty and expired.
        var sweepAt = ReadCache.minimumSweep
        /// Issued when this process first caught up with the event feed (`feedStarted`): entries
        /// stored under a generation after it were read after that, so the feed covers them.
        var feedMark: UInt64?

        mutating func issue() -> UInt64 {
            lastIssued &+= 1
            return lastIssued
        }

        /// Forgets every entry (the generation of each repository moves on).
        mutating func reset() {
            repos = [:]
            manifestBytes = 0
            entries = 0
            floor = issue()
            sweepAt = ReadCache.minimumSweep
        }
    }

    static let minimumSweep = 1024
    private let state = NIOLockedValueBox(State())
    private let maxManifestBytes: Int
    private let maxEntries = 200_000
    private let ttl: Double
    private let ttlWithFeed: Double
    private let feedIsHeard: @Sendable () -> Bool
    private let clock: @Sendable () -> Double

    init(manifestBytes: Int, ttl: Double = .infinity, ttlWithFeed: Double = .infinity,
         feedIsHeard: @escaping @Sendable () -> Bool = { false }, clock: @escaping @Sendable () -> Double = { 0 }) {
        self.maxManifestBytes = manifestBytes
        self.ttl = ttl
        self.ttlWithFeed = ttlWithFeed
        self.feedIsHeard = feedIsHeard
        self.clock = clock
    }

    /// Called once, when this process first caught up with the event feed: entries read before
    /// keep the short TTL (the feed may never tell of a change made just before it started).
    func feedStarted() {
        state.withLockedValue { s in
            if s.feedMark == nil { s.feedMark = s.issue() }
        }
    }

    /// Whether `e` outlived its TTL at `now`.
    private func expired(_ e: RepoEntries, _ s: State, now: Double) -> Bool {
        guard let born = e.bornAt else { return false }
        let age = now - born
        if age < ttl { return false }
        guard age < ttlWithFeed, let mark = s.feedMark, e.generation > mark else { return true }
        return !feedIsHeard()
    }

    /// A repository's entries, unless they outlived the TTL (then they are dropped here).
    private func fresh(_ s: inout State, _ repo: String) -> RepoEntries? {
        guard let entries = s.repos[repo] else { return nil }
        if expired(entries, s, now: clock()) {
            drop(&s, repo)
            return nil
        }
        return entries
    }

    private func drop(_ s: inout State, _ repo: String) {
        let old = s.repos[repo]
        let freed = old?.manifests.values.reduce(0) { $0 + $1.bytes.readableBytes } ?? 0
        let count = (old?.tags.count ?? 0) + (old?.manifests.count ?? 0) + (old?.blobSizes.count ?? 0)
        s.manifestBytes -= freed
        s.entries -= count
        s.repos[repo] = RepoEntries(generation: s.issue())
        sweepIfDue(&s)
    }

    /// Every mutation leaves its repository an entry (its new generation), so a registry with
    /// many repositories would hold one per repository ever changed: when the table has doubled
    /// since the last sweep, the empty and expired entries go and `floor` moves on.
    private func sweepIfDue(_ s: inout State) {
        guard s.repos.count >= s.sweepAt else { return }
        let now = clock()
        var kept: [String: RepoEntries] = [:]
        var manifestBytes = 0
        var entries = 0
        for (repo, e) in s.repos {
            let count = e.tags.count + e.manifests.count + e.blobSizes.count
            guard count > 0, !expired(e, s, now: now) else { continue }
            kept[repo] = e
            entries += count
            manifestBytes += e.manifests.values.reduce(0) { $0 + $1.bytes.readableBytes }
        }
        s.repos = kept
        s.entries = entries
        s.manifestBytes = manifestBytes
        s.floor = s.issue()
        s.sweepAt = max(Self.minimumSweep, 2 * kept.count)
    }

    func generation(_ repo: String) -> UInt64 {
        state.withLockedValue { $0.repos[repo]?.generation ?? $0.floor }
    }

    func invalidate(_ repo: String) {
        state.withLockedValue { drop(&$0, repo) }
    }

    func invalidateAll() {
        state.withLockedValue { $0.reset() }
    }

    /// Repositories with an entry (tests).
    var repositoriesHeld: Int { state.withLockedValue { $0.repos.count } }

    /// Whether `repo` has an entry, even an empty or expired one (tests).
    func holds(_ repo: String) -> Bool { state.withLockedValue { $0.repos[repo] != nil } }

    func tag(_ repo: String, _ tag: String) -> Digest? {
        state.withLockedValue { fresh(&$0, repo)?.tags[tag] }
    }

    func manifest(_ repo: String, _ digest: Digest) -> ManifestContent? {
        state.withLockedValue { fresh(&$0, repo)?.manifests[digest] }
    }

    func blobSize(_ repo: String, _ digest: Digest) -> Int64? {
        state.withLockedValue { fresh(&$0, repo)?.blobSizes[digest] }
    }

    private func store(_ repo: String, generation: UInt64, bytes: Int = 0, _ body: (inout RepoEntries) -> Bool) {
        state.withLockedValue { s in
            guard (s.repos[repo]?.generation ?? s.floor) == generation else { return }
            if s.entries >= maxEntries || s.manifestBytes + bytes > maxManifestBytes {
                // Simple and bounded: start over rather than track recency. What is being stored
                // is still current (checked above; no generation is handed out twice), so it is
                // kept under the generation it was read at.
                s.reset()
            }
            var entries = s.repos[repo] ?? RepoEntries(generation: generation)
            if body(&entries) {
                if entries.bornAt == nil { entries.bornAt = clock() }
                s.entries += 1
                s.manifestBytes += bytes
            }
            s.repos[repo] = entries
            sweepIfDue(&s)
        }
    }

    func storeTag(_ repo: String, _ tag: String, _ digest: Digest, generation: UInt64) {
        store(repo, generation: generation) { e in
            let isNew = e.tags[tag] == nil
            e.tags[tag] = digest
            return isNew
        }
    }

    func storeManifest(_ repo: String, _ content: ManifestContent, generation: UInt64) {
        guard content.bytes.readableBytes <= maxManifestBytes / 4 else { return }
        store(repo, generation: generation, bytes: content.bytes.readableBytes) { e in
            guard e.manifests[content.digest] == nil else { return false }
            e.manifests[content.digest] = content
            return true
        }
    }

    /// `read`'s result for a missed entry of `repository` as of `generation`: one read for all
    /// the callers that miss it at the same time.
    func miss<V: Sendable>(_ repository: String, generation: UInt64, _ entry: MissKey.Entry,
                           _ read: @escaping @Sendable () async throws -> V) async throws -> V {
        let value = try await misses.value(MissKey(repository: repository, generation: generation, entry: entry)) {
            try await read() as any Sendable
        }
        guard let value = value as? V else { return try await read() }   // one entry, one type: not reached
        return value
    }

    func storeBlobSize(_ repo: String, _ digest: Digest, _ size: Int64, generation: UInt64) {
        store(repo, generation: generation) { e in
            let isNew = e.blobSizes[digest] == nil
            e.blobSizes[digest] = size
            return isNew
        }
    }
}
