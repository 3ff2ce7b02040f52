import NIOCore
import OCIModel
import RegistryCore

/// Where a feature (the pull-through cache) fills content a `/v2/` read would miss. It is asked
/// after the caller was authorized to pull the repository and before the read, which then goes
/// through the pull-admission chain (locks, quarantine, the features' checks) as any read does:
/// a fallback only stores, through the registry core as a push (quotas, locks, events). The one
/// read it answers itself is the GET of a whole missing blob (`streamBlob`), asked only after that
/// chain admitted the read, so the client is not kept waiting for the whole fill. It returns at
/// once for a repository it does not cover.
public protocol ContentFallback: Sendable {
    /// Makes `reference` present (and, for a tag, fresh by the feature's rules) in `repository`.
    /// Throws what to answer when it cannot and nothing is stored (an upstream failure with no
    /// cached copy); a cached copy is read when the upstream fails.
    func prepareManifest(_ repository: RepositoryName, _ reference: Reference) async throws
    /// For a read of a manifest that is missing: the manifest as its source has it, when this
    /// fallback serves it before the image is stored (it then fills the image in the background,
    /// and the blob reads that follow stream through `streamBlob`). Nil when it does not (present,
    /// not covered, or it must be stored first): the read then goes through `prepareManifest`.
    /// The answer is judged by the pull-admission chain as a stored manifest is.
    func provisionalManifest(_ repository: RepositoryName, _ reference: Reference) async throws -> ManifestContent?
    /// Makes the blob present in `repository`, the same way.
    func prepareBlob(_ repository: RepositoryName, _ digest: Digest) async throws
    /// For a GET of a whole blob: when the blob is missing and this fallback starts filling it,
    /// the blob's bytes as they arrive, while the same bytes are verified and stored. Nil when it
    /// does not (the blob is present, not covered, already being filled, or of unknown length):
    /// the read then goes through `prepareBlob`. Throws what to answer when the fill failed
    /// before its first byte.
    func streamBlob(_ repository: RepositoryName, _ digest: Digest) async throws -> StreamedBlob?
    /// Why a client may not push into `repository`, nil when it may: a repository the fallback
    /// fills mirrors its upstream, and a client's manifest there would be served as the upstream's
    /// (a tag shadowed until the next refresh, content kept by digest). Asked after authorization,
    /// before a `/v2/` manifest PUT or upload start; the fallback's own fills go through the core.
    func refusesClientWrites(_ repository: RepositoryName) async throws -> String?
}

extension ContentFallback {
    public func provisionalManifest(_ repository: RepositoryName, _ reference: Reference) async throws -> ManifestContent? { nil }
    public func streamBlob(_ repository: RepositoryName, _ digest: Digest) async throws -> StreamedBlob? { nil }
    public func refusesClientWrites(_ repository: RepositoryName) async throws -> String? { nil }
}

/// A blob answered while it is being filled: `size` bytes (the length its source declared), read
/// chunk by chunk from a bounded hand-off. `write` ends only after the last byte, which the
/// source holds back until the whole blob's digest was verified; a fill that fails (a digest
/// mismatch, the source gone) makes `write` throw before it, so the response is cut short and no
/// client takes wrong bytes as complete. Released unread (the response never sent), it lets the
/// fill go on without it.
public final class StreamedBlob: Sendable {
    public let size: Int64
    private let next: @Sendable () async throws -> ByteBuffer?
    private let close: @Sendable () -> Void

    public init(size: Int64, next: @escaping @Sendable () async throws -> ByteBuffer?, close: @escaping @Sendable () -> Void) {
        self.size = size
        self.next = next
        self.close = close
    }

    deinit { close() }

    /// Hands every chunk to `emit` (the response writer); throws when the fill failed, or the
    /// client went away (the fill goes on without it).
    public func write(_ emit: (ByteBuffer) async throws -> Void) async throws {
        defer { close() }
        var written: Int64 = 0
        while let chunk = try await next() {
            written += Int64(chunk.readableBytes)
            try await emit(chunk)
        }
        // The source ended cleanly only when verified; a count that differs is a bug, never a short 200.
        guard written == size else { throw CancellationError() }
    }
}
