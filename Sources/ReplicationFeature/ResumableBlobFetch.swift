import Foundation
import Logging
import OCIModel
import RegistryCore
import UpstreamClient

/// Issue 13's "resumable" blob fetches: a blob past the inline limit is copied from the peer
/// through the private upload session of (repository, digest) (`Registry.openPrivateUpload`, the
/// import's machinery: never reachable through `/v2/`, never a blob before `finishUpload`
/// verified it, counted against the quotas and bounded as the import's kept partial copies), so
/// a transfer that breaks goes on from the bytes the session holds with `Range: bytes=N-`
/// (`UpstreamClient.blobPiece`: joined only to a 206 that starts exactly there), within the
/// attempt and, when the attempt fails, at the consumer's next attempt. A 200 (or a range that
/// cannot be joined) starts the blob over from byte 0 in an emptied session; bytes kept by an
/// earlier attempt that fail verification are read once more from byte 0.
extension ReplicationApplier {
    /// At most this many GETs of one blob in one attempt, and this many in a row that add no byte
    /// (as the import's `ImportCopier.maxPieces` and `maxIdlePieces`).
    static let maxBlobPieces = 50
    static let maxIdleBlobPieces = 3

    /// Copies `digest` from the peer into `repository`, resuming a transfer an earlier attempt
    /// left; false when the peer no longer has it. When the session is another copy's right now
    /// (an import of the same blob, a signed read's fetch), the blob is fetched whole as before.
    func fetchBlobResumably(_ repository: RepositoryName, _ digest: Digest, size: Int64?, client: UpstreamClient) async throws -> Bool {
        do {
            return try await copyPieces(repository, digest, size: size, client: client)
        } catch let error as RegistryError where error.status == 409 {
            logger.info("replication: the private session of a blob is busy; fetching it whole",
                        metadata: ["repository": "\(repository.value)", "digest": "\(digest)"])
            return try await fetchBlobWhole(repository, digest, size: size, client: client)
        }
    }

    /// The blob in one GET from byte 0, verified while it streams into `putBlob`.
    func fetchBlobWhole(_ repository: RepositoryName, _ digest: Digest, size: Int64?, client: UpstreamClient) async throws -> Bool {
        do {
            _ = try await client.blob(repository: repository.value, digest: digest, size: size) { stream in
                try await registry.putBlob(repository, digest: digest, contentLength: size, body: stream)
            }
        } catch let e as UpstreamError where e.kind == .notFound {
            return false
        }
        return true
    }

    private func copyPieces(_ repository: RepositoryName, _ digest: Digest, size: Int64?, client: UpstreamClient) async throws -> Bool {
        let opened = try await registry.openPrivateUpload(repository, digest: digest)
        let upload = opened.id
        if opened.size == 0 { try? await registry.trimPrivateUploads(of: repository) }
        var inherited = opened.size
        if inherited > 0 {
            logger.info("replication: a blob resumes from an earlier attempt's bytes",
                        metadata: ["repository": "\(repository.value)", "digest": "\(digest)", "offset": "\(inherited)"])
        }
        /// Empties the session to read the blob from byte 0.
        func restart() async throws {
            // A session another copy is writing now is not emptied under it: its 409 goes up, and
            // the caller fetches the blob whole instead; one already gone is what a restart wants.
            do {
                try await registry.cancelUpload(repository, upload, privately: true)
            } catch let error as RegistryError where error.code == .blobUploadUnknown {}
            _ = try await registry.openPrivateUpload(repository, digest: digest)
            inherited = 0
        }
        /// After a failure: a session holding bytes stays for the next attempt; an empty one goes.
        func keepOrDrop() async {
            let held = (try? await registry.uploadStatus(repository, upload, privately: true).size) ?? 0
            if held == 0 { try? await registry.cancelUpload(repository, upload, privately: true) }
        }
        var pieces = 0
        var idle = 0
        while true {
            pieces += 1
            let offset = try await registry.uploadStatus(repository, upload, privately: true).size
            var current: BlobPiece?
            do {
                _ = try await client.blobPiece(repository: repository.value, digest: digest, size: size, from: offset) { piece in
                    current = piece
                    if offset > 0, piece.start == 0 {
                        // The peer sent the whole blob instead of the range: start over from it.
                        try await restart()
                    }
                    return try await registry.appendUpload(repository, upload, rangeStart: piece.start, privately: true, body: piece)
                }
            } catch let error as UpstreamError where error.kind == .notFound {
                await keepOrDrop()
                return false
            } catch let error as UpstreamError where error.kind == .badAnswer && offset > 0 && current == nil {
                // A range answered in a way that cannot be joined: start over from byte 0.
                try await restart()
                idle += 1
                logger.info("replication: \(error.message); the blob starts over", metadata: ["digest": "\(digest)"])
                guard pieces < Self.maxBlobPieces, idle < Self.maxIdleBlobPieces else { throw error }
                continue
            } catch let error as RegistryError where error.status == 409 {
                // Another copy writes the session now: its bytes are left to it.
                throw error
            } catch {
                let dropped = current?.interruption != nil || (error as? UpstreamError)?.kind == .unreachable
                guard dropped, !Task.isCancelled, !(error is RegistryError) else {
                    await keepOrDrop()
                    throw error
                }
                let held = (try? await registry.uploadStatus(repository, upload, privately: true).size) ?? offset
                let base = (current?.start ?? offset) == 0 ? 0 : offset
                idle = held > base ? 0 : idle + 1
                guard pieces < Self.maxBlobPieces, idle < Self.maxIdleBlobPieces else {
                    await keepOrDrop()
                    throw UpstreamError(.unreachable, "blob \(digest): the peer's connection kept dropping (\(pieces) attempts; "
                                        + "\(held) bytes kept for the next attempt)")
                }
                logger.info("replication: a blob's transfer broke; it goes on from the bytes received",
                            metadata: ["digest": "\(digest)", "offset": "\(held)", "error": "\(String(describing: error).prefix(200))"])
                try await Task.sleep(for: .milliseconds(100 * min(pieces, 10)))
                continue
            }
            do {
                _ = try await registry.finishUpload(repository, upload, digest: digest, expectedSize: size, privately: true)
                return true
            } catch let error as RegistryError where (error.code == .digestInvalid || error.code == .sizeInvalid) && inherited > 0 {
                // Bytes an earlier attempt kept do not verify with this one's (`finishUpload`
                // removed them): read the blob again from byte 0, once.
                logger.info("replication: a blob's kept bytes did not verify; it starts over", metadata: ["digest": "\(digest)"])
                inherited = 0
                _ = try await registry.openPrivateUpload(repository, digest: digest)
            }
        }
    }
}
