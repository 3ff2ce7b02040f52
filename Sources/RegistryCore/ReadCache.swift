import NIOConcurrencyHelpers
import OCIModel

/// In-memory read cache for the hot pull path (tag → digest, manifests, blob sizes).
///
/// Every mutation of a repository bumps that repository's generation and drops its entries; a
/// reader records the generation before it reads the database and stores its result only if no
/// mutation happened in between, so a stale read never lands in the cache.
final class ReadCache: Sendable {
    private struct RepoEntries {
        var generation: UInt64 = 0
        var tags: [String: Digest] = [:]
        var manifests: [Digest: ManifestContent] = [:]
        var blobSizes: [Digest: Int64] = [:]
    }

    private struct State {
        var repos: [String: RepoEntries] = [:]
        var manifestBytes = 0
        var entries = 0
    }

    private let state = NIOLockedValueBox(State())
    private let maxManifestBytes: Int
    private let maxEntries = 200_000

    init(manifestBytes: Int) {
        self.maxManifestBytes = manifestBytes
    }

    func generation(_ repo: String) -> UInt64 {
        state.withLockedValue { $0.repos[repo]?.generation ?? 0 }
    }

    func invalidate(_ repo: String) {
        state.withLockedValue { s in
            let old = s.repos[repo]
            let freed = old?.manifests.values.reduce(0) { $0 + $1.bytes.readableBytes } ?? 0
            let count = (old?.tags.count ?? 0) + (old?.manifests.count ?? 0) + (old?.blobSizes.count ?? 0)
            s.manifestBytes -= freed
            s.entries -= count
            s.repos[repo] = RepoEntries(generation: (old?.generation ?? 0) &+ 1)
        }
    }

    func invalidateAll() {
        state.withLockedValue { s in
            let generations = s.repos.mapValues { RepoEntries(generation: $0.generation &+ 1) }
            s = State(repos: generations)
        }
    }

    func tag(_ repo: String, _ tag: String) -> Digest? {
        state.withLockedValue { $0.repos[repo]?.tags[tag] }
    }

    func manifest(_ repo: String, _ digest: Digest) -> ManifestContent? {
        state.withLockedValue { $0.repos[repo]?.manifests[digest] }
    }

    func blobSize(_ repo: String, _ digest: Digest) -> Int64? {
        state.withLockedValue { $0.repos[repo]?.blobSizes[digest] }
    }

    private func store(_ repo: String, generation: UInt64, bytes: Int = 0, _ body: (inout RepoEntries) -> Bool) {
        state.withLockedValue { s in
            if s.entries >= maxEntries || s.manifestBytes + bytes > maxManifestBytes {
                // Simple and bounded: start over rather than track recency.
                let generations = s.repos.mapValues { RepoEntries(generation: $0.generation) }
                s = State(repos: generations)
            }
            var entries = s.repos[repo] ?? RepoEntries()
            guard entries.generation == generation else { return }
            if body(&entries) {
                s.entries += 1
                s.manifestBytes += bytes
            }
            s.repos[repo] = entries
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

    func storeBlobSize(_ repo: String, _ digest: Digest, _ size: Int64, generation: UInt64) {
        store(repo, generation: generation) { e in
            let isNew = e.blobSizes[digest] == nil
            e.blobSizes[digest] = size
            return isNew
        }
    }
}
