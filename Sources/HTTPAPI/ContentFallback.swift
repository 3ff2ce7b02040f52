import OCIModel

/// Where a feature (the pull-through cache) fills content a `/v2/` read would miss. It is asked
/// after the caller was authorized to pull the repository and before the read, which then goes
/// through the pull-admission chain (locks, quarantine, the features' checks) as any read does:
/// a fallback only stores, through the registry core as a push (quotas, locks, events), and never
/// answers a read itself. It returns at once for a repository it does not cover.
public protocol ContentFallback: Sendable {
    /// Makes `reference` present (and, for a tag, fresh by the feature's rules) in `repository`.
    /// Throws what to answer when it cannot and nothing is stored (an upstream failure with no
    /// cached copy); a cached copy is read when the upstream fails.
    func prepareManifest(_ repository: RepositoryName, _ reference: Reference) async throws
    /// Makes the blob present in `repository`, the same way.
    func prepareBlob(_ repository: RepositoryName, _ digest: Digest) async throws
    /// Why a client may not push into `repository`, nil when it may: a repository the fallback
    /// fills mirrors its upstream, and a client's manifest there would be served as the upstream's
    /// (a tag shadowed until the next refresh, content kept by digest). Asked after authorization,
    /// before a `/v2/` manifest PUT or upload start; the fallback's own fills go through the core.
    func refusesClientWrites(_ repository: RepositoryName) async throws -> String?
}

extension ContentFallback {
    public func refusesClientWrites(_ repository: RepositoryName) async throws -> String? { nil }
}
