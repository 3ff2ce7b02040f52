import BlobStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel

/// Content-addressed blobs in an S3-compatible bucket:
///
///     <prefix>/blobs/sha256/ab/abcdef…           immutable blobs, written only after verification
///     <prefix>/uploads/<id>/state                 an upload's state (JSON; see `UploadState`)
///     <prefix>/uploads/<id>/tail-<n>              its bytes past the last full part (< one part)
///     <prefix>/uploads/<id>/data                  the multipart upload's object, once completed
///
/// An upload is one S3 multipart upload (started with its first full part). Appended bytes are
/// gathered into parts of `partSize`; what does not fill a part is kept as the tail object, so a
/// chunked push of small PATCHes still works and nothing larger than one part is ever held in
/// memory. The state object records the multipart upload id, the parts and their ETags, and the
/// tail, so any node can continue any upload; committed parts are never sent again.
///
/// Digests: the node that appends keeps a live hasher in memory. If the committing node has one
/// that covers every byte, the digest is checked before anything is assembled; otherwise (a
/// restart, another node, a sha512 digest) the upload is assembled into `data` and read back to
/// hash it. Either way a blob appears under `blobs/` only by a server-side copy of verified bytes.
///
/// Upload state lives in the bucket for now; the plan is to move it into the metadata store so
/// that appends from two nodes are serialised by a transaction. Until then two nodes appending to
/// the same upload at the same moment are not excluded (one process is: `uploadBusy`).
public final class S3BlobStore: BlobStore {
    public let client: S3Client
    /// Without leading or trailing '/': "" or "a/b".
    public let prefix: String
    public let partSize: Int
    let logger: Logger
    private let live = NIOLockedValueBox<[String: Live]>([:])

    /// S3's smallest part but the last.
    public static let minimumPartSize = 5 << 20
    public static let defaultPartSize = 16 << 20
    /// S3's largest single PUT or CopyObject.
    static let maxSingleCopy: Int64 = 5 << 30

    struct Live {
        /// Covers the first `hashedSize` bytes of the upload, if not nil.
        var hasher: DigestHasher?
        var hashedSize: Int64
        var busy: Bool
        /// The `token` of the state this process last wrote: the hasher is used only while the
        /// stored state is still that one (no other node has written the upload since).
        var token: String? = nil
    }

    /// What is stored under `uploads/<id>/state`.
    struct UploadState: Codable, Equatable {
        struct Part: Codable, Equatable {
            var number: Int
            var etag: String
            var size: Int64
        }

        var owner: String
        /// The S3 multipart upload, once the first part was sent.
        var multipartID: String?
        var parts: [Part] = []
        /// The tail object's name under the upload, and its size. A new name for every change, so
        /// a state never points to a tail written after it.
        var tail: String?
        var tailSize: Int64 = 0
        /// The multipart upload was completed into `data` (to hash it) and the bytes were not the
        /// expected ones; `data` now holds the first `stagedSize` bytes.
        var stagedSize: Int64?
        var generation: Int = 0
        /// New at every append that changes the upload, so a node can tell whether the stored
        /// state is the one it wrote; it also names the tail object, so two nodes appending at
        /// once never write the same tail.
        var token: String?

        var size: Int64 { (stagedSize ?? 0) + parts.reduce(0) { $0 + $1.size } + tailSize }
    }

    public init(client: S3Client, prefix: String, partSize: Int = S3BlobStore.defaultPartSize,
                logger: Logger = Logger(label: "berth.s3")) throws(S3Error) {
        let trimmed = prefix.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
        guard trimmed.utf8.count <= 512, !trimmed.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }),
              trimmed.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        else { throw .invalidConfiguration("prefix '\(prefix)' must be printable, at most 512 bytes, without '.' or '..' segments") }
        guard partSize >= Self.minimumPartSize, partSize <= (1 << 30) else {
            throw .invalidConfiguration("part size must be between 5 MiB and 1 GiB")
        }
        self.client = client
        self.prefix = trimmed
        self.partSize = partSize
        self.logger = logger
    }

    // MARK: keys

    func key(_ rest: String) -> String { prefix.isEmpty ? rest : prefix + "/" + rest }

    func blobKey(_ d: Digest) -> String { key("blobs/\(d.algorithm.rawValue)/\(d.hex.prefix(2))/\(d.hex)") }

    var blobsPrefix: String { key("blobs/") }
    var uploadsPrefix: String { key("uploads/") }

    func uploadPrefix(_ id: String) -> String { key("uploads/\(id)/") }
    func stateKey(_ id: String) -> String { uploadPrefix(id) + "state" }
    func dataKey(_ id: String) -> String { uploadPrefix(id) + "data" }

    /// The registry's ids are lowercase UUIDs; anything else is unknown, never a key.
    static func valid(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || $0 == 0x2D }
    }

    // MARK: blobs

    public func size(of digest: Digest) async throws -> Int64? {
        try await client.headObject(blobKey(digest))?.size
    }

    public func read(_ digest: Digest, range: Range<Int64>, into sink: (ByteBuffer) async throws -> Void) async throws {
        guard !range.isEmpty else {
            guard try await client.headObject(blobKey(digest)) != nil else { throw BlobStoreError.blobUnknown }
            return
        }
        do {
            try await client.getObject(blobKey(digest), range: range, into: sink)
        } catch S3Error.notFound {
            throw BlobStoreError.blobUnknown
        } catch S3Error.service(416, _, _) {
            throw BlobStoreError.blobUnknown // the range lies past the blob's end
        }
    }

    public func delete(_ digest: Digest) async throws {
        try await client.deleteObject(blobKey(digest))
    }

    public func allDigests() async throws -> [Digest] {
        let base = blobsPrefix
        return try await client.listObjects(prefix: base).compactMap { object -> Digest? in
            let parts = object.key.dropFirst(base.count).split(separator: "/")
            guard parts.count == 3, parts[2].hasPrefix(parts[1]) else { return nil }
            return try? Digest(parsing: "\(parts[0]):\(parts[2])")
        }
    }

    public func checkHealth() async throws {
        try await client.headBucket()
    }

    // MARK: upload state

    func loadState(_ id: String) async throws -> UploadState? {
        guard let bytes = try await client.getObject(stateKey(id), limit: 4 << 20) else { return nil }
        do {
            return try JSONDecoder().decode(UploadState.self, from: Data(bytes))
        } catch {
            throw S3Error.malformedResponse("upload state of \(id) is unreadable: \(error)")
        }
    }

    func saveState(_ id: String, _ state: UploadState, new: Bool = false) async throws {
        let data = try JSONEncoder().encode(state)
        try await client.putObject(stateKey(id), body: ByteBuffer(bytes: data), ifNoneMatch: new)
    }

    /// Takes the upload for this process's exclusive use.
    private func acquire(_ id: String) throws -> Live? {
        try live.withLockedValue { map in
            if var l = map[id] {
                if l.busy { throw BlobStoreError.uploadBusy }
                l.busy = true
                map[id] = l
                return l
            }
            map[id] = Live(hasher: nil, hashedSize: -1, busy: true)
            return nil
        }
    }

    /// Gives the upload back, with the hasher that is valid now (nil: none is) for the state
    /// whose token is `token`.
    private func release(_ id: String, hasher: DigestHasher?, size: Int64, token: String? = nil, forget: Bool = false) {
        live.withLockedValue { map in
            map[id] = forget ? nil : Live(hasher: hasher, hashedSize: hasher == nil ? -1 : size, busy: false, token: token)
        }
    }

    /// The live hasher, if it covers exactly the stored state's bytes.
    private func hasher(_ held: Live?, for state: UploadState) -> DigestHasher? {
        guard let held, held.hashedSize == state.size, held.token == state.token else { return nil }
        return held.hasher
    }

    /// Starts the live hasher of a new upload (createUpload does this after storing its state).
    func markCreated(_ id: String, token: String?) {
        live.withLockedValue { $0[id] = Live(hasher: DigestHasher(.sha256), hashedSize: 0, busy: false, token: token) }
    }

    /// The live hasher of an upload and how many bytes it covers (tests).
    func liveHash(_ id: String) -> (hasher: DigestHasher?, size: Int64)? {
        live.withLockedValue { $0[id].map { ($0.hasher, $0.hashedSize) } }
    }

    // MARK: uploads

    public func createUpload(id: String, owner: String) async throws {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        let token = UUID().uuidString.lowercased()
        do {
            if try await client.headObject(stateKey(id)) != nil { throw S3StorageError.uploadExists }
            try await saveState(id, UploadState(owner: owner, token: token), new: true)
        } catch S3Error.preconditionFailed {
            throw S3StorageError.uploadExists
        }
        markCreated(id, token: token)
    }

    public func uploadOwner(id: String) async throws -> String? {
        guard Self.valid(id) else { return nil }
        return try await loadState(id)?.owner
    }

    public func uploadedSize(id: String) async throws -> Int64? {
        guard Self.valid(id) else { return nil }
        return try await loadState(id)?.size
    }

    public func append<Body: AsyncSequence & Sendable>(id: String, offset: Int64, body: Body, limit: Int64?) async throws -> Int64
        where Body.Element == ByteBuffer
    {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        let held = try acquire(id)
        var hasher: DigestHasher?
        var state: UploadState
        do {
            guard let loaded = try await loadState(id) else {
                release(id, hasher: nil, size: 0, forget: true)
                throw BlobStoreError.uploadUnknown
            }
            state = loaded
            guard state.size == offset else {
                throw BlobStoreError.offsetMismatch(expected: state.size, actual: offset)
            }
            hasher = self.hasher(held, for: state)
            if state.stagedSize != nil { try await unstage(id, &state) }
        } catch {
            if case BlobStoreError.uploadUnknown = error { throw error }
            release(id, hasher: held?.hasher, size: held?.hashedSize ?? -1, token: held?.token)
            throw error
        }

        // What does not fill a part yet: the stored tail, then the body's bytes. Invariant from
        // here on: the parts in `state` plus `pending` are exactly the upload's first `size` bytes,
        // and `hasher` (if any) has hashed exactly those; so whatever fails, storing `pending` as
        // the tail keeps bytes and hash in step.
        var pending = ByteBuffer()
        var size = state.size
        let before = state
        if let tail = state.tail, state.tailSize > 0 {
            do {
                guard let bytes = try await client.getObject(uploadPrefix(id) + tail, limit: partSize + 1),
                      Int64(bytes.count) == state.tailSize
                else { throw S3Error.malformedResponse("the tail of upload \(id) is missing or of the wrong size") }
                pending.writeBytes(bytes)
            } catch {
                release(id, hasher: hasher, size: state.size, token: state.token)
                throw error
            }
        }
        do {
            for try await var chunk in body {
                if let limit, size + Int64(chunk.readableBytes) > limit { throw BlobStoreError.tooLarge }
                while chunk.readableBytes > 0 {
                    if pending.readableBytes >= partSize { try await sendPart(id, &state, &pending) }
                    let take = min(partSize - pending.readableBytes, chunk.readableBytes)
                    var slice = chunk.readSlice(length: take)!
                    slice.withUnsafeReadableBytes { hasher?.update(bufferPointer: $0) }
                    size += Int64(take)
                    pending.writeBuffer(&slice)
                }
                if pending.readableBytes >= partSize { try await sendPart(id, &state, &pending) }
            }
        } catch {
            // Keep what arrived (the client may resume from the new size), then report the failure.
            do {
                try await storeTail(id, &state, pending, previous: before)
                release(id, hasher: hasher, size: state.size, token: state.token)
            } catch {
                release(id, hasher: nil, size: 0)
            }
            throw error
        }
        do {
            try await storeTail(id, &state, pending, previous: before)
        } catch {
            release(id, hasher: nil, size: 0)
            throw error
        }
        release(id, hasher: hasher, size: state.size, token: state.token)
        return state.size
    }

    /// Sends the first `partSize` bytes of `pending` as the next part.
    private func sendPart(_ id: String, _ state: inout UploadState, _ pending: inout ByteBuffer) async throws {
        if state.multipartID == nil {
            state.multipartID = try await client.createMultipartUpload(dataKey(id))
            // Record the multipart upload at once, so a cancel or the sweeper can abort it.
            state.generation += 1
            try await saveState(id, state)
        }
        let number = (state.parts.last?.number ?? 0) + 1
        // The bytes leave `pending` only once the store has them.
        let part = pending.getSlice(at: pending.readerIndex, length: partSize)!
        let etag = try await client.uploadPart(dataKey(id), uploadID: state.multipartID!, number: number, body: part)
        pending.moveReaderIndex(forwardBy: partSize)
        state.parts.append(.init(number: number, etag: etag, size: Int64(part.readableBytes)))
        // The old tail's bytes are now in a part.
        state.tailSize = 0
        state.tail = nil
        pending.discardReadBytes()
    }

    /// Writes `pending` as the new tail (under a new name) and then the state that points to it;
    /// removes the tail the previous state pointed to.
    private func storeTail(_ id: String, _ state: inout UploadState, _ pending: ByteBuffer, previous: UploadState) async throws {
        guard state != previous || pending.readableBytes != Int(previous.tailSize) else { return }
        state.generation += 1
        state.token = UUID().uuidString.lowercased()
        if pending.readableBytes > 0 {
            let name = "tail-\(state.token!)"
            try await client.putObject(uploadPrefix(id) + name, body: pending)
            state.tail = name
            state.tailSize = Int64(pending.readableBytes)
        } else {
            state.tail = nil
            state.tailSize = 0
        }
        try await saveState(id, state)
        if let old = previous.tail, old != state.tail {
            try? await client.deleteObject(uploadPrefix(id) + old)
        }
    }

    /// An upload whose completed bytes were refused continues: its `data` object becomes the first
    /// part of a new multipart upload, copied inside the store (it is at least one part long).
    private func unstage(_ id: String, _ state: inout UploadState) async throws {
        guard let staged = state.stagedSize else { return }
        let upload = try await client.createMultipartUpload(dataKey(id))
        state.multipartID = upload
        state.generation += 1
        try await saveState(id, state)
        let etag = try await client.uploadPartCopy(dataKey(id), uploadID: upload, number: 1, source: dataKey(id))
        state.parts = [.init(number: 1, etag: etag, size: staged)]
        state.stagedSize = nil
        state.generation += 1
        try await saveState(id, state)
    }

    /// Assembles the upload's bytes into one object and returns its key: the tail alone (its
    /// name is never written twice), nil for the empty upload, or `data`, which another request
    /// could complete again: then also the ETag our completion gave it (nil when it was completed
    /// before), which every later read and copy of it is conditional on.
    private func assemble(_ id: String, _ state: inout UploadState) async throws -> (key: String?, etag: String?) {
        if state.stagedSize != nil { return (dataKey(id), nil) }
        guard let upload = state.multipartID, !state.parts.isEmpty else {
            return (state.tail.map { uploadPrefix(id) + $0 }, nil)
        }
        var parts = state.parts
        if let tail = state.tail, state.tailSize > 0 {
            guard let bytes = try await client.getObject(uploadPrefix(id) + tail, limit: partSize + 1) else {
                throw S3Error.malformedResponse("the tail of upload \(id) is missing")
            }
            let number = parts.last!.number + 1
            let etag = try await client.uploadPart(dataKey(id), uploadID: upload, number: number, body: ByteBuffer(bytes: bytes))
            parts.append(.init(number: number, etag: etag, size: Int64(bytes.count)))
        }
        let etag = try await client.completeMultipartUpload(dataKey(id), uploadID: upload, parts: parts.map { ($0.number, $0.etag) })
        let total = state.size
        let previousTail = state.tail
        state.parts = []
        state.multipartID = nil
        state.tail = nil
        state.tailSize = 0
        state.stagedSize = total
        state.generation += 1
        try await saveState(id, state)
        if let previousTail { try? await client.deleteObject(uploadPrefix(id) + previousTail) }
        return (dataKey(id), etag)
    }

    /// Hashes an object by reading it back; returns the digest and the ETag of what was read.
    private func hash(_ key: String?, etag: String?, algorithm: Digest.Algorithm) async throws -> (Digest, String?) {
        var hasher = DigestHasher(algorithm)
        guard let key, let head = try await client.headObject(key) else { return (hasher.finalize(), nil) }
        let pinned = etag ?? head.etag
        if head.size > 0 {
            try await client.getObject(key, range: 0..<head.size, ifMatch: pinned) { buffer in
                buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            }
        }
        return (hasher.finalize(), pinned)
    }

    public func commitUpload(id: String, expected: Digest, expectedSize: Int64?) async throws -> Int64 {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        let held = try acquire(id)
        var state: UploadState
        do {
            guard let loaded = try await loadState(id) else {
                release(id, hasher: nil, size: 0, forget: true)
                throw BlobStoreError.uploadUnknown
            }
            state = loaded
        } catch {
            if case BlobStoreError.uploadUnknown = error { throw error }
            release(id, hasher: held?.hasher, size: held?.hashedSize ?? -1, token: held?.token)
            throw error
        }
        let size = state.size
        let liveHasher = hasher(held, for: state).flatMap { $0.algorithm == expected.algorithm ? $0 : nil }
        do {
            var verified = false
            // A `data` object completed before this request is read back whatever the hasher says.
            let wasStaged = state.stagedSize != nil
            if let liveHasher, !wasStaged {
                let computed = liveHasher.finalize()
                guard computed == expected else { throw BlobStoreError.digestMismatch(computed: computed) }
                verified = true
            }
            if let expectedSize, expectedSize != size { throw BlobStoreError.sizeMismatch(actual: size) }
            var (source, etag) = try await assemble(id, &state)
            // The hasher vouches for `data` only if the copy can be pinned to our completion.
            if verified, source == dataKey(id), etag == nil { verified = false }
            if !verified {
                let computed: Digest
                (computed, etag) = try await hash(source, etag: etag, algorithm: expected.algorithm)
                guard computed == expected else { throw BlobStoreError.digestMismatch(computed: computed) }
            }
            let target = blobKey(expected)
            if try await client.headObject(target) == nil {
                if let source {
                    try await copy(from: source, to: target, size: size, ifMatch: etag)
                } else {
                    try await client.putObject(target, body: ByteBuffer())
                }
            }
            try await removeUpload(id, state: state, thorough: false)
        } catch S3Error.preconditionFailed {
            // Another request completed this upload's bytes anew while we read or copied them.
            release(id, hasher: nil, size: 0)
            throw BlobStoreError.uploadBusy
        } catch {
            release(id, hasher: liveHasher == nil ? nil : held?.hasher, size: size, token: state.token)
            throw error
        }
        release(id, hasher: nil, size: 0, forget: true)
        return size
    }

    /// A server-side copy; past S3's 5 GiB limit for one copy, part by part.
    private func copy(from source: String, to target: String, size: Int64, ifMatch etag: String?) async throws {
        guard size > Self.maxSingleCopy else {
            try await client.copyObject(from: source, to: target, ifMatch: etag)
            return
        }
        let upload = try await client.createMultipartUpload(target)
        do {
            var parts: [(number: Int, etag: String)] = []
            let step = Int64(1) << 30
            var at: Int64 = 0
            while at < size {
                let end = min(at + step, size)
                let number = parts.count + 1
                parts.append((number, try await client.uploadPartCopy(target, uploadID: upload, number: number, source: source,
                                                                   range: at..<end, ifMatch: etag)))
                at = end
            }
            try await client.completeMultipartUpload(target, uploadID: upload, parts: parts)
        } catch {
            try? await client.abortMultipartUpload(target, uploadID: upload)
            throw error
        }
    }

    public func readSmallUpload(id: String, expected: Digest, limit: Int) async throws -> [UInt8]? {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        guard let state = try await loadState(id), state.size <= Int64(limit),
              state.parts.isEmpty, state.stagedSize == nil
        else { return nil }
        var bytes: [UInt8] = []
        if let tail = state.tail, state.tailSize > 0 {
            guard let stored = try await client.getObject(uploadPrefix(id) + tail, limit: limit + 1), stored.count == Int(state.tailSize) else {
                return nil
            }
            bytes = stored
        }
        let computed = Digest.compute(bytes, algorithm: expected.algorithm)
        guard computed == expected else { throw BlobStoreError.digestMismatch(computed: computed) }
        return bytes
    }

    /// Removes an upload, its state last. `thorough` (cancel, the sweeper) also aborts multipart
    /// uploads and deletes objects its state does not know (left by a crash between writing them
    /// and recording them); after a commit the state names everything there is, and what a crash
    /// left behind is found by `staleUploads` later.
    private func removeUpload(_ id: String, state: UploadState?, thorough: Bool) async throws {
        if let upload = state?.multipartID { try await client.abortMultipartUpload(dataKey(id), uploadID: upload) }
        if thorough {
            for orphan in try await client.listMultipartUploads(prefix: uploadPrefix(id)) where orphan.uploadID != state?.multipartID {
                try await client.abortMultipartUpload(orphan.key, uploadID: orphan.uploadID)
            }
            for object in try await client.listObjects(prefix: uploadPrefix(id)) where object.key != stateKey(id) {
                try await client.deleteObject(object.key)
            }
        } else {
            if let tail = state?.tail { try await client.deleteObject(uploadPrefix(id) + tail) }
            if state?.stagedSize != nil { try await client.deleteObject(dataKey(id)) }
        }
        try await client.deleteObject(stateKey(id))
    }

    public func cancelUpload(id: String) async throws {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        live.withLockedValue { _ = $0.removeValue(forKey: id) }
        try await removeUpload(id, state: try await loadState(id), thorough: true)
    }

    public func staleUploads(olderThan: Double) async throws -> [String] {
        let base = uploadsPrefix
        func uploadID(_ key: String) -> String? {
            let rest = key.dropFirst(base.count)
            guard let slash = rest.firstIndex(of: "/") else { return nil }
            let id = String(rest[..<slash])
            return Self.valid(id) ? id : nil
        }
        // The newest change of each upload: its state is rewritten on every append.
        var touched: [String: Double] = [:]
        var hasState: Set<String> = []
        for object in try await client.listObjects(prefix: base) {
            guard let id = uploadID(object.key) else { continue }
            touched[id] = max(touched[id] ?? 0, object.lastModified)
            if object.key == stateKey(id) { hasState.insert(id) }
        }
        // Multipart uploads whose upload has no state left (a crash between the two) count too.
        for upload in try await client.listMultipartUploads(prefix: base) {
            guard let id = uploadID(upload.key), !hasState.contains(id) else { continue }
            touched[id] = max(touched[id] ?? 0, upload.initiated)
        }
        return touched.filter { $0.value < olderThan }.map(\.key).sorted()
    }

    public func openUploadCount() async throws -> Int {
        try await client.listObjects(prefix: uploadsPrefix).filter { $0.key.hasSuffix("/state") }.count
    }
}

public enum S3StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// createUpload with an id that already has an upload.
    case uploadExists

    public var description: String {
        switch self {
        case .uploadExists: return "an upload with this id exists"
        }
    }
}
