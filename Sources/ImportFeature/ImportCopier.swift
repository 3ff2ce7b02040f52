import Foundation
import Logging
import NIOCore
import OCIModel
import RegistryCore
import UpstreamClient

/// Copies one image from an upstream into a repository of this registry, through the registry
/// core as a push does. Order: blobs, then each manifest by digest (children before their
/// index), the referrers, and the tag last, so a failure leaves no tag pointing at a partial
/// image and a re-run skips what is already there (blobs linked to the target repository,
/// manifests stored in it).
struct ImportCopier: Sendable {
    let registry: Registry
    let upstream: UpstreamClient
    let plan: ImportPlan
    let progress: ImportJob
    let log: Logger
    /// How long an import waits for another import copying the same blob into the same
    /// repository while that one's session does not grow; it waits as long as it grows.
    var sharedBlobStall: Duration = .seconds(60)

    /// Index nesting followed, and referrers per subject and levels of referrers copied.
    static let maxDepth = 4
    static let maxReferrers = 100
    static let maxReferrerDepth = 3
    /// Manifests one import may copy in all (indexes, children, referrers): a hostile source's
    /// referrers of referrers of every child would otherwise multiply without end (review).
    static let maxManifests = 1000

    var source: String { plan.sourceRepository }

    func run() async throws -> Digest {
        var chosen = try await upstream.manifest(repository: source, reference: plan.sourceReference)
        if MediaType.isIndex(chosen.mediaType), !plan.allPlatforms {
            // Without --all-platforms an index gives its linux/amd64 image (as `skopeo copy` and
            // `docker pull` on such a host do), tagged by itself.
            let child = try Self.defaultPlatform(chosen.bytes)
            chosen = try await upstream.manifest(repository: source, reference: .digest(child))
        }
        try await checkTag(chosen.digest)
        // The image as a whole (every platform of an index) must fit under the target's quotas
        // before anything of it is stored (`Registry.planCopy`, shared with the pull-through cache;
        // review: an index's children were each checked alone, and together overshot).
        let source = self.source
        let upstream = self.upstream
        var copyPlan = try await registry.planCopy(plan.target, root: CopyPlan.Manifest(digest: chosen.digest, mediaType: chosen.mediaType,
                                                                                        bytes: chosen.bytes),
                                                   maxDepth: Self.maxDepth, maxManifests: Self.maxManifests, invalidStatus: 400) { child in
            let m = try await upstream.manifest(repository: source, reference: .digest(child))
            return CopyPlan.Manifest(digest: m.digest, mediaType: m.mediaType, bytes: m.bytes)
        }
        // The referrers copied with it are part of the image's total (each once), so an import
        // over the quota is refused before anything is stored, not half-way (review).
        if plan.includeReferrers { copyPlan = try await planReferrers(copyPlan) }
        // The partial copies other imports keep under the target's quotas count as used; this
        // import's own (the sessions of the blobs it is about to copy) are in its total already.
        let own = Set(copyPlan.missingBlobs.map { Self.partialID(plan.target, $0) })
        try await registry.checkStorable(plan.target, copyPlan, countingPartialsExcept: own)
        let known = copyPlan.fetched.merging(copyPlan.referrers) { a, _ in a }
            .mapValues { UpstreamManifest(digest: $0.digest, mediaType: $0.mediaType, bytes: $0.bytes) }
        let copied = try await copy(chosen, depth: 0, known: known)
        if plan.includeReferrers {
            for digest in copied { try await copyReferrers(of: digest, depth: 0, known: known) }
        }
        try await checkTag(chosen.digest)
        _ = try await registry.putManifest(plan.target, reference: .tag(plan.tag), bytes: chosen.bytes, contentType: chosen.mediaType)
        return chosen.digest
    }

    /// Adds to `start` the referrers `copyReferrers` will copy (of every manifest of the image's
    /// tree, to `maxReferrerDepth` levels; only those that name their subject), each once and
    /// within the plan's `maxManifests`, with their manifests and missing blobs.
    func planReferrers(_ start: CopyPlan) async throws -> CopyPlan {
        var plan = start
        var walked: Set<Digest> = []
        let (source, upstream, target) = (self.source, self.upstream, self.plan.target)
        func fetch(_ digest: Digest) async throws -> CopyPlan.Manifest {
            let m = try await upstream.manifest(repository: source, reference: .digest(digest))
            return CopyPlan.Manifest(digest: m.digest, mediaType: m.mediaType, bytes: m.bytes)
        }
        func walk(_ subject: Digest, depth: Int) async throws {
            guard depth < Self.maxReferrerDepth, walked.insert(subject).inserted else { return }
            let referrers = try await upstream.referrers(repository: source, subject: subject)
            for descriptor in referrers.prefix(Self.maxReferrers) {
                guard let digest = try? Digest(parsing: descriptor.digest) else { continue }
                if plan.referrers[digest] == nil, await !hasManifest(digest) {
                    let manifest = try await fetch(digest)
                    guard (try? ManifestParser.parse(manifest.bytes, contentType: manifest.mediaType))?.subject == subject else { continue }
                    plan.referrers[digest] = manifest
                    plan = try await registry.extendPlan(plan, target, root: manifest, maxDepth: Self.maxDepth,
                                                         maxManifests: Self.maxManifests, invalidStatus: 400, fetch: fetch)
                }
                try await walk(digest, depth: depth + 1)
            }
        }
        for digest in start.tree { try await walk(digest, depth: 0) }
        return plan
    }

    /// An existing tag that points elsewhere is moved only with `force`.
    func checkTag(_ digest: Digest) async throws {
        guard !plan.force, let current = try await Self.currentTag(registry, plan), current != digest else { return }
        throw RegistryError(.denied, "tag \(plan.tag) of \(plan.target) already points to \(current), not \(digest); use force to move it",
                            status: 409)
    }

    /// Copies a manifest and everything it names; returns the digests of the manifests copied
    /// (the children of an index, then the manifest itself).
    func copy(_ manifest: UpstreamManifest, depth: Int, known: [Digest: UpstreamManifest] = [:]) async throws -> [Digest] {
        guard depth <= Self.maxDepth else {
            throw RegistryError(.manifestInvalid, "indexes nested deeper than \(Self.maxDepth) levels", status: 400)
        }
        let parsed = try ManifestParser.parse(manifest.bytes, contentType: manifest.mediaType)
        try progress.countManifest(limit: Self.maxManifests)
        var copied: [Digest] = []
        if parsed.kind == .index {
            for child in parsed.children {
                if await hasManifest(child) {
                    copied.append(child)
                    continue
                }
                let childManifest: UpstreamManifest
                if let fetched = known[child] {
                    childManifest = fetched
                } else {
                    childManifest = try await upstream.manifest(repository: source, reference: .digest(child))
                }
                copied += try await copy(childManifest, depth: depth + 1, known: known)
            }
        } else {
            let sizes = CopyPlan.blobSizes(manifest.bytes)
            for blob in parsed.blobs { try await copyBlob(blob, size: sizes[blob]) }
        }
        if await !hasManifest(manifest.digest) {
            _ = try await registry.putManifest(plan.target, reference: .digest(manifest.digest), bytes: manifest.bytes,
                                               contentType: manifest.mediaType)
            progress.update { $0.manifestsCopied += 1 }
        }
        return copied + [manifest.digest]
    }

    func hasManifest(_ digest: Digest) async -> Bool {
        (try? await registry.manifest(plan.target, .digest(digest))) != nil
    }

    /// A blob already linked to the target repository is not fetched again, nor counted in the
    /// bytes to copy (review: counted in `bytesTotal` but never in `bytesCopied`, a resumed
    /// import's progress bar never reached its end).
    func copyBlob(_ digest: Digest, size: Int64?) async throws {
        if (try? await registry.blobSize(plan.target, digest)) != nil {
            // A partial copy an earlier run kept of it is of no use any more.
            if let size, !registry.keepsInline(size: size) {
                try? await registry.cancelUpload(plan.target, Self.partialID(plan.target, digest), privately: true)
            }
            progress.update {
                $0.blobsSeen += 1
                $0.blobsSkipped += 1
            }
            return
        }
        progress.update {
            $0.blobsSeen += 1
            $0.bytesTotal += size ?? 0
        }
        let job = progress
        if let size, registry.keepsInline(size: size) {
            // A small blob, kept in the metadata store: fetched whole, hashed while it streams.
            _ = try await upstream.blob(repository: source, digest: digest, size: size) { stream in
                try await registry.putBlob(plan.target, digest: digest, contentLength: size,
                                           body: CountingStream(inner: stream) { n in job.update { $0.bytesCopied += Int64(n) } })
            }
        } else if try await copySharing(digest, size: size) == .copiedByAnother {
            progress.update {
                $0.blobsSkipped += 1
                $0.bytesTotal -= size ?? 0
            }
            return
        }
        progress.update { $0.blobsCopied += 1 }
    }

    /// Another import is writing the blob's session into the same repository right now (the
    /// same layer in two images imported at once): its bytes are its own.
    struct AnotherImportCopies: Error {}

    enum SharedCopy { case copied, copiedByAnother }

    /// Whether `error` says another import holds the blob's session: met while writing it (a
    /// 409, or a 416 when it appended between this one's look at the session and its write), when
    /// opening it (`Registry.openPrivateUpload`'s 409), or the session gone under this one.
    static func isShared(_ error: any Error) -> Bool {
        if error is AnotherImportCopies { return true }
        guard let error = error as? RegistryError else { return false }
        return (error.status == 409 && error.code == .blobUploadInvalid) || error.code == .rangeInvalid
            || error.code == .blobUploadUnknown
    }

    /// `copyResumable`, waiting for another import that copies the same blob into the same
    /// repository at the same time (they share its session, `partialID`): the blob it stores is
    /// this import's too (`copiedByAnother`); when it fails instead, this one resumes from the
    /// bytes it kept. While it waits it only looks at the session and the repository. Gives up
    /// with a 409 only when that session stops growing for `sharedBlobStall`. A session that
    /// vanished under this import (the other stored the blob, or dropped the session) is looked at
    /// the same way. Review (issue 17): two imports of images sharing a layer into one repository
    /// failed one of them with a 409 at once.
    func copySharing(_ digest: Digest, size: Int64?) async throws -> SharedCopy {
        let upload = Self.partialID(plan.target, digest)
        var held: Int64 = -1
        // When the other import last showed it was alive: its session grew, or a try of this
        // one found the session being written (a store may keep the size it shows only at part
        // boundaries: S3's, every 16 MiB).
        var alive = ContinuousClock.now
        var attempts = 0
        var last: (any Error)?
        while true {
            let counted = progress.view
            func forget() {
                // What this attempt counted (a resume's inherited bytes, a resume) is the other import's.
                progress.update {
                    $0.bytesCopied = counted.bytesCopied
                    $0.blobResumes = counted.blobResumes
                    $0.blobRestarts = counted.blobRestarts
                }
            }
            do {
                try await copyResumable(digest, size: size)
                return .copied
            } catch {
                // The other may have stored the blob from the shared session meanwhile (this one
                // then finds the session gone): it is this import's too.
                if !(error is CancellationError), (try? await registry.blobSize(plan.target, digest)) != nil {
                    forget()
                    return .copiedByAnother
                }
                guard Self.isShared(error) else { throw error }
                forget()
                last = error
                if error is AnotherImportCopies { alive = .now }
            }
            if attempts == 0 { log.info("import: another import is copying \(digest) into \(plan.target); waiting for it") }
            attempts += 1
            // Wait by looking only (no request to the source, no write): until the blob is stored,
            // or the session is gone or has not grown for a while (the other may have failed:
            // this one then tries again, and a writer still there sends it back here). Bounded:
            // `sharedBlobStall` without a sign of life, or `maxSharedAttempts` tries.
            var quiet = 0
            while true {
                if ContinuousClock.now - alive > sharedBlobStall || attempts >= Self.maxSharedAttempts {
                    throw RegistryError(.blobUploadInvalid, "blob \(digest) of \(plan.target): another import is copying it and has made "
                                        + "no progress for \(sharedBlobStall), or its session kept failing (\(attempts) tries; last: "
                                        + "\(String(describing: last.map { "\($0)" } ?? "-").prefix(200))); run this import again later "
                                        + "(it resumes from what is kept)", status: 409)
                }
                try await Task.sleep(for: .milliseconds(500))
                if (try? await registry.blobSize(plan.target, digest)) != nil { return .copiedByAnother }
                guard let now = try? await registry.uploadStatus(plan.target, upload, privately: true).size else { break }
                if now != held {
                    held = now
                    alive = .now
                    quiet = 0
                } else {
                    quiet += 1
                    if quiet >= min(4 * attempts, 20) { break }
                }
            }
        }
    }

    /// Tries of one blob while it is shared with another import (each may ask the source once).
    static let maxSharedAttempts = 40

    /// Pieces one blob's copy may take: the first request, then resumes and restarts. A piece
    /// that brings no byte is a failure; `maxIdlePieces` of those in a row end the copy.
    static let maxPieces = 50
    static let maxIdlePieces = 3

    /// The id of the private upload session that holds the partial copy of `digest` for
    /// `repository`: derived from both, so a re-run of the import (or another import of the same
    /// blob into the same repository, by a caller who may push there) finds it again. The session
    /// is private (`Registry.openPrivateUpload`): `/v2/` never reaches it, whatever the id.
    static func partialID(_ repository: RepositoryName, _ digest: Digest) -> String {
        Registry.privateUploadID(repository, digest)
    }

    /// Copies a blob through a private upload session of the target repository, keyed by the
    /// repository and the blob's digest (`partialID`; its id is never shown). When the source's
    /// connection drops while the blob streams, the copy goes on from the bytes the session holds
    /// with a `Range` request; a source that answers it with the whole blob (or a range that does
    /// not match) is read again from byte 0 into an emptied session. When the copy fails, a
    /// session that holds bytes is kept (not if the bytes failed verification): a re-run of the
    /// import resumes the blob from them, with `Range`, as the next piece would have, forced or
    /// not: a forced import never discards a session, which may be another running import's
    /// (review: `--force` cancelled it under that import's feet); when one is being written, it
    /// fails with the same 409 as any other. Kept sessions are bounded per namespace
    /// (`Registry.trimPrivateUploads(of:)` when one is made, `removeStaleUploads` by age). The digest and size are verified over the whole
    /// when the session is completed, before the blob is linked: a mismatch stores nothing (and
    /// when the bytes came in part from an earlier run, the blob is read once more from byte 0).
    func copyResumable(_ digest: Digest, size: Int64?) async throws {
        let target = plan.target
        let upload = Self.partialID(target, digest)
        var inherited = try await open(digest)
        if inherited > 0 {
            // Counted as copied (the first piece, asked from there, counts the resume).
            progress.update { $0.bytesCopied += inherited }
            log.info("import: \(digest) resumes at byte \(inherited), from an earlier run's partial copy")
        }
        while true {
            try await copyPieces(digest, size: size, into: upload)
            let held = (try? await registry.uploadStatus(target, upload, privately: true).size) ?? 0
            do {
                _ = try await registry.finishUpload(target, upload, digest: digest, expectedSize: size, privately: true)
                return
            } catch let error as RegistryError where error.code == .digestInvalid || error.code == .sizeInvalid {
                // The session is gone with its bytes (`finishUpload` removes it on a mismatch).
                guard inherited > 0 else {
                    throw UpstreamError(.digestMismatch, "blob \(digest) was served with other content: \(error.message)")
                }
                // Bytes an earlier run kept do not verify with this run's: read the blob again, once.
                log.info("import: \(digest): the partial copy of an earlier run did not verify; starting it over")
                progress.update {
                    $0.bytesCopied -= held
                    $0.blobRestarts = ($0.blobRestarts ?? 0) + 1
                }
                inherited = 0
                _ = try await open(digest)
            } catch let error as RegistryError where error.status == 409 && error.code == .blobUploadInvalid {
                // Another import writes the session now: its bytes are left to it.
                throw AnotherImportCopies()
            } catch {
                try? await keepOrDrop(upload, error)
                throw error
            }
        }
    }

    /// Opens the blob's private session (trimming the kept ones when it is new); the bytes it holds.
    func open(_ digest: Digest) async throws -> Int64 {
        let status = try await registry.openPrivateUpload(plan.target, digest: digest)
        if status.size == 0 { try? await registry.trimPrivateUploads(of: plan.target) }
        return status.size
    }

    /// After a failure: a session holding bytes stays for a re-run; an empty one goes.
    func keepOrDrop(_ upload: String, _ error: any Error) async throws {
        let held = (try? await registry.uploadStatus(plan.target, upload, privately: true).size) ?? 0
        if held > 0 {
            log.info("import: kept \(held) bytes of a partial blob for a re-run", metadata: ["error": "\(String(describing: error).prefix(200))"])
        } else {
            try await registry.cancelUpload(plan.target, upload, privately: true)
        }
    }

    /// Streams the blob's missing bytes into the session, piece by piece, until the source's
    /// answer ends whole; a dropped connection is resumed, a range that cannot be joined restarts.
    func copyPieces(_ digest: Digest, size: Int64?, into upload: String) async throws {
        let target = plan.target
        let job = progress
        var pieces = 0
        var idle = 0
        do {
            while true {
                pieces += 1
                let offset = try await registry.uploadStatus(target, upload, privately: true).size
                // A session that holds the whole blob already (kept by a run refused on a quota,
                // or written by another import that has not committed it yet): nothing to fetch,
                // `finishUpload` verifies it (review: the source's empty range answer led to a
                // restart that emptied it).
                if let size, offset == size { return }
                var current: BlobPiece?
                // Where the session's bytes of this piece begin: `offset`, or 0 once restarted
                // (review: a restart followed by another drop took `offset` off the count twice).
                var base = offset
                do {
                    _ = try await upstream.blobPiece(repository: source, digest: digest, size: size, from: offset) { piece in
                        current = piece
                        if offset > 0 {
                            if piece.start == 0 {
                                // The source ignored the range: what the session holds goes, and the
                                // copy starts over from this answer's first byte.
                                try await restart(digest, dropping: offset)
                                base = 0
                                log.info("import: the source sent \(digest) whole again instead of a range; starting it over")
                            } else {
                                job.update { $0.blobResumes = ($0.blobResumes ?? 0) + 1 }
                                log.info("import: \(digest) resumes at byte \(offset)")
                            }
                        }
                        return try await registry.appendUpload(target, upload, rangeStart: piece.start, privately: true,
                                                               body: CountingStream(inner: piece) { n in job.update { $0.bytesCopied += Int64(n) } })
                    }
                    return
                } catch let error as UpstreamError where error.kind == .badAnswer && offset > 0 && current == nil {
                    // A range answered in a way that cannot be joined: start over from byte 0.
                    try await restart(digest, dropping: offset)
                    log.info("import: \(digest): \(error.message); starting it over")
                    idle += 1
                } catch {
                    // Only a dropped or unreachable source is tried again; anything else (a wrong
                    // length, the quota, a write lock) ends the copy.
                    let dropped = current?.interruption != nil || (error as? UpstreamError)?.kind == .unreachable
                    guard dropped, !Task.isCancelled else { throw error }
                    // What the session kept of this piece is where the next piece starts (the
                    // progress counted every byte read: the ones it did not keep are taken back).
                    let kept = (try await registry.uploadStatus(target, upload, privately: true).size) - base
                    if let current { job.update { $0.bytesCopied += kept - current.bytesRead } }
                    idle = kept > 0 ? 0 : idle + 1
                    log.info("import: \(digest): \((error as? UpstreamError)?.message ?? "\(error)")")
                }
                guard pieces < Self.maxPieces, idle < Self.maxIdlePieces else {
                    throw UpstreamError(.unreachable, "blob \(digest): the source's connection kept dropping (\(pieces) attempts)")
                }
                try await Task.sleep(for: .milliseconds(100 * min(pieces, 10)))
            }
        } catch let error as RegistryError where error.status == 409 && error.code == .blobUploadInvalid {
            // Another import writes this blob's session now (the same blob into the same
            // repository): its bytes are left to it, and this import waits (`copySharing`).
            throw AnotherImportCopies()
        } catch {
            try? await keepOrDrop(upload, error)
            throw error
        }
    }

    /// Empties the session (its bytes go, and so does their count) to read the blob from byte 0.
    func restart(_ digest: Digest, dropping held: Int64) async throws {
        // A session another import is writing now is not emptied under it: this one waits
        // (`copySharing`); one already gone is what a restart wants.
        do {
            try await registry.cancelUpload(plan.target, Self.partialID(plan.target, digest), privately: true)
        } catch let error as RegistryError where error.code == .blobUploadUnknown {
        } catch let error where Self.isShared(error) {
            throw AnotherImportCopies()
        }
        _ = try await registry.openPrivateUpload(plan.target, digest: digest)
        progress.update {
            $0.bytesCopied -= held
            $0.blobRestarts = ($0.blobRestarts ?? 0) + 1
        }
    }

    func copyReferrers(of subject: Digest, depth: Int, known: [Digest: UpstreamManifest] = [:]) async throws {
        guard depth < Self.maxReferrerDepth else { return }
        let referrers = try await upstream.referrers(repository: source, subject: subject)
        for descriptor in referrers.prefix(Self.maxReferrers) {
            guard let digest = try? Digest(parsing: descriptor.digest) else { continue }
            if await !hasManifest(digest) {
                let manifest: UpstreamManifest
                if let planned = known[digest] {
                    manifest = planned
                } else {
                    manifest = try await upstream.manifest(repository: source, reference: .digest(digest))
                }
                // Only what names this subject is its referrer: the source's list is not trusted.
                guard (try? ManifestParser.parse(manifest.bytes, contentType: manifest.mediaType))?.subject == subject else { continue }
                _ = try await copy(manifest, depth: 0, known: known)
                progress.update { $0.referrersCopied += 1 }
            }
            try await copyReferrers(of: digest, depth: depth + 1, known: known)
        }
    }

    /// What the tag points to now, nil when it does not exist; any other failure of the store is
    /// an error, never taken for "no tag" (which would move it without force; review).
    static func currentTag(_ registry: Registry, _ plan: ImportPlan) async throws -> Digest? {
        do {
            return try await registry.resolve(plan.target, .tag(plan.tag))
        } catch let e as RegistryError where e.code == .manifestUnknown || e.code == .nameUnknown {
            return nil
        }
    }

    /// The linux/amd64 image of an index.
    static func defaultPlatform(_ bytes: [UInt8]) throws -> Digest {
        struct Index: Decodable { var manifests: [Descriptor] }
        guard let index = try? JSONDecoder().decode(Index.self, from: Data(bytes)) else {
            throw RegistryError(.manifestInvalid, "the source's index cannot be read", status: 502)
        }
        for entry in index.manifests where entry.platform?.os == "linux" && entry.platform?.architecture == "amd64" {
            if let digest = try? Digest(parsing: entry.digest) { return digest }
        }
        throw RegistryError(.manifestUnknown, "the source's index has no linux/amd64 image; import it with all platforms", status: 404)
    }
}

/// A byte stream that reports each chunk's size as it passes.
struct CountingStream<Inner: AsyncSequence & Sendable>: AsyncSequence, Sendable where Inner.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let inner: Inner
    let count: @Sendable (Int) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        var inner: Inner.AsyncIterator
        let count: @Sendable (Int) -> Void
        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await inner.next() else { return nil }
            count(chunk.readableBytes)
            return chunk
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inner: inner.makeAsyncIterator(), count: count) }
}
