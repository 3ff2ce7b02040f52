import Foundation
import OCIModel

/// One pull of a manifest through `/v2/` (a GET, not a HEAD), as the registry core collects them
/// in memory and hands them to the store in batches: the manifest's digest, and the tag when it
/// was pulled by tag.
public struct PullRecord: Sendable, Hashable {
    public var repository: String
    public var digest: Digest
    public var tag: String?
    public var at: Date

    public init(repository: String, digest: Digest, tag: String?, at: Date) {
        self.repository = repository
        self.digest = digest
        self.tag = tag
        self.at = at
    }
}

/// When a repository's manifests (by digest string) and tags (by name) were last pulled; a
/// manifest or tag never pulled is absent.
public struct PullTimes: Sendable, Equatable {
    public var manifests: [String: Date]
    public var tags: [String: Date]

    public init(manifests: [String: Date] = [:], tags: [String: Date] = [:]) {
        self.manifests = manifests
        self.tags = tags
    }
}

/// "Last pulled at" per (repository, manifest) and per (repository, tag). Not registry content:
/// writes append no event. A pull time goes with its manifest or tag: deleting either (or the
/// repository's content) drops it.
public protocol PullTimeStore: Sendable {
    /// Records a batch of pulls in one transaction: for each (repository, digest), and for each
    /// (repository, tag) of a pull by tag, keeps the latest time (an older time never replaces a
    /// newer one). Pulls of a repository, manifest or tag that is not stored (any more) are ignored.
    func recordPulls(_ pulls: [PullRecord]) async throws
    /// The pull times of one repository's manifests and tags (empty for an unknown repository).
    func pullTimes(repository: String) async throws -> PullTimes
    /// Of `digests`, those of which a manifest, in any repository, was pulled or pushed at or after `since`.
    func manifestsUsed(since: Date, among digests: [Digest]) async throws -> Set<Digest>
}

extension PullRecord {
    /// The pulls of a batch merged by (repository, digest, tag), each with its latest time, in a
    /// stable order (repository, digest, tag): what a store writes.
    public static func merged(_ pulls: [PullRecord]) -> [PullRecord] {
        struct Key: Hashable { var repository: String; var digest: Digest; var tag: String? }
        var latest: [Key: Date] = [:]
        for p in pulls {
            let key = Key(repository: p.repository, digest: p.digest, tag: p.tag)
            if let t = latest[key], t >= p.at { continue }
            latest[key] = p.at
        }
        return latest.map { PullRecord(repository: $0.key.repository, digest: $0.key.digest, tag: $0.key.tag, at: $0.value) }
            .sorted { ($0.repository, $0.digest.string, $0.tag ?? "") < ($1.repository, $1.digest.string, $1.tag ?? "") }
    }
}
