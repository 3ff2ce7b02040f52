import BlobStorage
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryStore

/// Content-addressed blobs in an S3-compatible bucket:
///
///     <prefix>/blobs/sha256/ab/abcdef…           immutable blobs, written only after verification
///     <prefix>/uploads/<id>/tail-<token>          an upload's bytes past the last full part (< one part)
///     <prefix>/uploads/<id>/data                  the multipart upload's object, once completed
///
/// An upload is one S3 multipart upload (started with its first full part). Appended bytes are
/// gathered into parts of `partSize`; what does not fill a part is kept as the tail object, so a
/// chunked push of small PATCHes still works and nothing larger than one part is ever held in
/// memory. The upload's state (`UploadState`: the multipart upload id, the parts and their ETags,
/// the tail with its SHA-256, the hash state after the last part) is an upload session in the
/// metadata store (`UploadSessionStore`), so any node continues any upload and committed parts are
/// never sent again. Every change of it is a compare-and-swap on the session's version: of two
/// nodes appending to one upload at once, one wins and the other's request is refused as out of
/// order (`offsetMismatch` with the current size: 416 and the current Range), its bytes never
/// recorded. A part number is reserved in the session before the part is sent, so the loser never
/// overwrites a part the winner recorded.
///
/// Digests: the node that appends keeps a live hasher in memory, valid while the session's
/// version is the one it wrote. A commit with one that covers every byte checks the digest before
/// anything is assembled; a commit on another node (or after a restart) continues the SHA-256 from
/// the state saved in the session at the last part boundary over the tail (read back, checked
/// against its recorded SHA-256), so it need not read the parts back; without either (a sha512
/// digest, a state that does not match) the upload is assembled into `data` and read back to hash
/// it. Either way a blob appears under `blobs/` only by a server-side copy of verified bytes,
/// conditional on the ETag of what was verified.
public final class S3BlobStore: BlobStore {
    public let client: S3Client
    /// Without leading or trailing '/': "" or "a/b".
    public let prefix: String
    public let partSize: Int
    /// Where upload state lives (the registry's metadata store).
    let sessions: any UploadSessionStore
    /// Lifetime in seconds of the presigned URLs blob GETs are redirected to; nil: no redirects.
    public let redirectTTL: Int?
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
        /// The session version and state token this process last wrote: the hasher is used only
        /// while the stored session is still that one (no other node has written the upload since;
        /// the token tells a session created again under the same id from the one it replaced).
        var version: Int64? = nil
        var token: String? = nil
    }

    /// An upload's state, kept (JSON) as its session's state in the metadata store.
    struct UploadState: Codable, Equatable {
        struct Part: Codable, Equatable {
            var number: Int
            var etag: String
            var size: Int64
        }

        /// The S3 multipart upload, once the first part was sent.
        var multipartID: String?
        var parts: [Part] = []
        /// The highest part number reserved so far (a part is reserved before it is sent, so a
        /// node that loses a race never overwrites a part another recorded).
        var lastPartNumber: Int = 0
        /// The tail object's name under the upload, its size, SHA-256 (hex) and ETag. A new name
        /// for every change, so a state never points to a tail written after it.
        var tail: String?
        var tailSize: Int64 = 0
        var tailSHA256: String?
        var tailETag: String?
        /// The multipart upload was completed into `data` (to hash it) and the bytes were not the
        /// expected ones; `data` now holds the first `stagedSize` bytes.
        var stagedSize: Int64?
        /// New at every append that changes the upload; names the tail object, so two nodes
        /// appending at once never write the same tail.
        var token: String?
        /// The SHA-256 state after the bytes of `parts` (`ResumableSHA256.export`, base64), if
        /// known; it covers exactly `partsSize` bytes or it is not used.
        var hashState: String?

        var partsSize: Int64 { parts.reduce(0) { $0 + $1.size } }

        /// No tail: its bytes went into a part, or there are none.
        mutating func clearTail() {
            tail = nil
            tailSize = 0
            tailSHA256 = nil
            tailETag = nil
        }
        var size: Int64 { (stagedSize ?? 0) + partsSize + tailSize }
    }

    public init(client: S3Client, prefix: String, sessions: any UploadSessionStore, partSize: Int = S3BlobStore.defaultPartSize,
                redirectTTL: Int? = nil, logger: Logger = Logger(label: "berth.s3")) throws(S3Error) {
        if let redirectTTL, !(1...3600).contains(redirectTTL) {
            throw .invalidConfiguration("the lifetime of presigned blob URLs must be between 1 and 3600 seconds")
        }
        self.redirectTTL = redirectTTL
        guard partSize >= Self.minimumPartSize, partSize <= (1 << 30) else {
            throw .invalidConfiguration("part size must be between 5 MiB and 1 GiB")
        }
        self.client = client
        self.prefix = try Self.normalized(prefix: prefix)
        self.partSize = partSize
        self.sessions = sessions
        self.logger = logger
    }

    /// The prefix without leading, trailing or doubled '/'; refused when it is not printable, longer
    /// than 512 bytes or has '.' or '..' segments.
    public static func normalized(prefix: String) throws(S3Error) -> String {
        let trimmed = prefix.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
        guard trimmed.utf8.count <= 512, !trimmed.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }),
              trimmed.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        else { throw .invalidConfiguration("prefix '\(prefix)' must be printable, at most 512 bytes, without '.' or '..' segments") }
        return trimmed
    }

    // MARK: keys

    func key(_ rest: String) -> String { prefix.isEmpty ? rest : prefix + "/" + rest }

    func blobKey(_ d: Digest) -> String { key("blobs/\(d.algorithm.rawValue)/\(d.hex.prefix(2))/\(d.hex)") }

    var blobsPrefix: String { key("blobs/") }
    var uploadsPrefix: String { key("uploads/") }

    func uploadPrefix(_ id: String) -> String { key("uploads/\(id)/") }
    func dataKey(_ id: String) -> String { uploadPrefix(id) + "data" }

    /// The registry's ids are lowercase UUIDs (or a lowercase prefix and hex: its private
    /// sessions); anything else is unknown, never a key.
    static func valid(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }
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

    /// Streams the range straight into the sink (the HTTP layer's connection), see
    /// `S3Client.startGetObject`. No HEAD first: a missing object is the GET's 404.
    public func startTransfer(_ digest: Digest, range: Range<Int64>, into sink: any BlobByteSink) async throws -> BlobTransfer? {
        guard !range.isEmpty else { return nil }
        do {
            return try await client.startGetObject(blobKey(digest), range: range, into: sink)
        } catch S3Error.notFound {
            throw BlobStoreError.blobUnknown
        } catch S3Error.service(416, _, _) {
            throw BlobStoreError.blobUnknown // the range lies past the blob's end
        }
    }

    /// A presigned GET of the blob, valid for `redirectTTL` seconds, when redirects are on and the
    /// bucket has the blob (one kept inline in the metadata store has no object).
    public func redirectURL(_ digest: Digest) async throws -> String? {
        guard let redirectTTL, try await client.headObject(blobKey(digest)) != nil else { return nil }
        return client.presignedGetURL(blobKey(digest), expires: redirectTTL)
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

    /// A session as this store reads it: its state and the version that state has.
    struct Loaded {
        var state: UploadState
        var version: Int64
        var owner: String
    }

    /// Another request changed the session since it was read (its compare-and-swap lost).
    struct SessionConflict: Error {}

    func loadState(_ id: String) async throws -> Loaded? {
        guard let session = try await sessions.uploadSession(id: id) else { return nil }
        do {
            return Loaded(state: try JSONDecoder().decode(UploadState.self, from: Data(session.state)), version: session.version,
                          owner: session.owner)
        } catch {
            throw S3StorageError.stateUnreadable
        }
    }

    static func encode(_ state: UploadState) throws -> [UInt8] {
        [UInt8](try JSONEncoder().encode(state))
    }

    /// Writes `state` if the session is still at `version`, which becomes the new version;
    /// throws `SessionConflict` (nothing written) otherwise.
    func saveState(_ id: String, _ state: UploadState, version: inout Int64) async throws {
        guard let next = try await sessions.updateUploadSession(id: id, expectedVersion: version, state: try Self.encode(state)) else {
            throw SessionConflict()
        }
        version = next
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

    /// Gives the upload back, with the hasher that is valid now (nil: none is) for the session at
    /// `version`.
    private func release(_ id: String, hasher: DigestHasher?, size: Int64, version: Int64? = nil, token: String? = nil,
                         forget: Bool = false) {
        live.withLockedValue { map in
            map[id] = forget ? nil : Live(hasher: hasher, hashedSize: hasher == nil ? -1 : size, busy: false, version: version,
                                          token: token)
        }
    }

    /// The live hasher, if it covers exactly the stored session's bytes.
    private func hasher(_ held: Live?, for loaded: Loaded) -> DigestHasher? {
        guard let held, held.hashedSize == loaded.state.size, held.version == loaded.version, held.token == loaded.state.token
        else { return nil }
        return held.hasher
    }

    /// Starts the live hasher of a new upload (createUpload does this after storing its state).
    func markCreated(_ id: String, version: Int64, token: String?) {
        live.withLockedValue { $0[id] = Live(hasher: DigestHasher(.sha256), hashedSize: 0, busy: false, version: version, token: token) }
    }

    /// The live hasher of an upload and how many bytes it covers (tests).
    func liveHash(_ id: String) -> (hasher: DigestHasher?, size: Int64)? {
        live.withLockedValue { $0[id].map { ($0.hasher, $0.hashedSize) } }
    }

    /// The SHA-256 after the bytes of the state's parts, restored from the saved state; nil when
    /// there is none or it does not cover exactly those bytes (then it is not trusted).
    func resumableHash(_ state: UploadState) -> ResumableSHA256? {
        if state.parts.isEmpty, state.stagedSize == nil { return try? ResumableSHA256() }
        guard state.stagedSize == nil, let saved = state.hashState.flatMap({ Data(base64Encoded: $0) }) else { return nil }
        do {
            return try ResumableSHA256(restoring: [UInt8](saved), covering: state.partsSize)
        } catch {
            logger.warning("the saved hash state of an upload does not match it; its bytes will be read back",
                           metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// The tail's bytes, read back and checked against the size and SHA-256 its state recorded.
    func readTail(_ id: String, _ state: UploadState) async throws -> [UInt8] {
        guard let tail = state.tail, state.tailSize > 0 else { return [] }
        guard let bytes = try await client.getObject(uploadPrefix(id) + tail, limit: partSize + 1), Int64(bytes.count) == state.tailSize
        else { throw S3StorageError.tailAltered }
        guard let expected = state.tailSHA256, sha256Hex(bytes) == expected else {
            throw S3StorageError.tailAltered
        }
        return bytes
    }

    // MARK: uploads

    public func createUpload(id: String, owner: String) async throws {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        let state = UploadState(token: UUID().uuidString.lowercased())
        guard try await sessions.createUploadSession(id: id, owner: owner, state: try Self.encode(state)) else {
            throw S3StorageError.uploadExists
        }
        markCreated(id, version: 1, token: state.token)
    }

    public func uploadOwner(id: String) async throws -> String? {
        guard Self.valid(id) else { return nil }
        return try await sessions.uploadSession(id: id)?.owner
    }

    public func uploadedSize(id: String) async throws -> Int64? {
        guard Self.valid(id) else { return nil }
        return try await loadState(id)?.state.size
    }

    /// What a request that lost a race for the session is told: the upload's size now, as an
    /// out-of-order chunk (416 with the current Range), or unknown when it is gone.
    /// The answer to a lost compare-and-swap: the session as it now stands (a failure to read it
    /// is thrown as it is, not reported as an unknown upload the client would start again).
    private func conflict(_ id: String, offset: Int64) async throws -> BlobStoreError {
        guard let current = try await loadState(id) else { return .uploadUnknown }
        return .offsetMismatch(expected: current.state.size, actual: offset)
    }

    public func append<Body: AsyncSequence & Sendable>(id: String, offset: Int64, body: Body, limit: Int64?) async throws -> Int64
        where Body.Element == ByteBuffer
    {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        let held = try acquire(id)
        var hasher: DigestHasher?
        var state: UploadState
        var version: Int64
        do {
            guard let loaded = try await loadState(id) else {
                release(id, hasher: nil, size: 0, forget: true)
                throw BlobStoreError.uploadUnknown
            }
            state = loaded.state
            version = loaded.version
            guard state.size == offset else {
                throw BlobStoreError.offsetMismatch(expected: state.size, actual: offset)
            }
            hasher = self.hasher(held, for: loaded)
            if state.stagedSize != nil { try await unstage(id, &state, &version) }
        } catch {
            if case BlobStoreError.uploadUnknown = error { throw error }
            release(id, hasher: held?.hasher, size: held?.hashedSize ?? -1, version: held?.version, token: held?.token)
            if error is SessionConflict { throw try await conflict(id, offset: offset) }
            throw error
        }

        // What does not fill a part yet: the stored tail, then the body's bytes. Invariant from
        // here on: the parts in `state` plus `pending` are exactly the upload's first `size` bytes,
        // `hasher` (if any) has hashed exactly those and `resumable` (if any) the parts; so
        // whatever fails, storing `pending` as the tail keeps bytes and hashes in step.
        var pending = ByteBuffer()
        var size = state.size
        let before = state
        var resumable = resumableHash(state)
        do {
            let bytes = try await readTail(id, state)
            pending.writeBytes(bytes)
        } catch {
            release(id, hasher: hasher, size: state.size, version: version, token: state.token)
            throw error
        }
        do {
            for try await var chunk in body {
                if let limit, size + Int64(chunk.readableBytes) > limit { throw BlobStoreError.tooLarge }
                while chunk.readableBytes > 0 {
                    if pending.readableBytes >= partSize { try await sendPart(id, &state, &version, &pending, &resumable) }
                    let take = min(partSize - pending.readableBytes, chunk.readableBytes)
                    var slice = chunk.readSlice(length: take)!
                    slice.withUnsafeReadableBytes { hasher?.update(bufferPointer: $0) }
                    size += Int64(take)
                    pending.writeBuffer(&slice)
                }
                if pending.readableBytes >= partSize { try await sendPart(id, &state, &version, &pending, &resumable) }
            }
        } catch is SessionConflict {
            // Another request changed the upload since this one read it: nothing of this request is
            // recorded (a part it sent is under a number no state names), and it is told the size now.
            release(id, hasher: nil, size: 0)
            throw try await conflict(id, offset: offset)
        } catch {
            // Keep what arrived (the client may resume from the new size), then report the failure.
            do {
                try await storeTail(id, &state, &version, pending, previous: before)
                release(id, hasher: hasher, size: state.size, version: version, token: state.token)
            } catch {
                release(id, hasher: nil, size: 0)
            }
            throw error
        }
        do {
            try await storeTail(id, &state, &version, pending, previous: before)
        } catch {
            release(id, hasher: nil, size: 0)
            if error is SessionConflict { throw try await conflict(id, offset: offset) }
            throw error
        }
        release(id, hasher: hasher, size: state.size, version: version, token: state.token)
        return state.size
    }

    /// Sends the first `partSize` bytes of `pending` as the next part, its number reserved in the
    /// session first (with the multipart upload, when this is the first part, so a cancel or the
    /// sweeper can abort it).
    private func sendPart(_ id: String, _ state: inout UploadState, _ version: inout Int64, _ pending: inout ByteBuffer,
                          _ resumable: inout ResumableSHA256?) async throws {
        var created: String?
        if state.multipartID == nil {
            created = try await client.createMultipartUpload(dataKey(id))
            state.multipartID = created
        }
        let number = max(state.lastPartNumber, state.parts.last?.number ?? 0) + 1
        state.lastPartNumber = number
        do {
            try await saveState(id, state, version: &version)
        } catch let conflict as SessionConflict {
            // Another request won: the multipart upload this one started is nobody's.
            if let created { try? await client.abortMultipartUpload(dataKey(id), uploadID: created) }
            throw conflict
        }
        // The bytes leave `pending` only once the store has them.
        let part = pending.getSlice(at: pending.readerIndex, length: partSize)!
        let etag = try await client.uploadPart(dataKey(id), uploadID: state.multipartID!, number: number, body: part)
        pending.moveReaderIndex(forwardBy: partSize)
        state.parts.append(.init(number: number, etag: etag, size: Int64(part.readableBytes)))
        if resumable != nil {
            part.withUnsafeReadableBytes { resumable!.update($0) }
            state.hashState = Data(resumable!.export()).base64EncodedString()
        } else {
            state.hashState = nil
        }
        // The old tail's bytes are now in a part.
        state.clearTail()
        pending.discardReadBytes()
    }

    /// Writes `pending` as the new tail (under a new name) and then the state that points to it;
    /// removes the tail the previous state pointed to.
    private func storeTail(_ id: String, _ state: inout UploadState, _ version: inout Int64, _ pending: ByteBuffer,
                           previous: UploadState) async throws {
        guard state != previous || pending.readableBytes != Int(previous.tailSize) else { return }
        state.token = UUID().uuidString.lowercased()
        var written: String?
        if pending.readableBytes > 0 {
            let name = "tail-\(state.token!)"
            let etag = try await client.putObject(uploadPrefix(id) + name, body: pending)
            written = name
            state.tail = name
            state.tailSize = Int64(pending.readableBytes)
            state.tailSHA256 = pending.withUnsafeReadableBytes { sha256Hex($0) }
            state.tailETag = etag.isEmpty ? nil : etag
        } else {
            state.clearTail()
        }
        do {
            try await saveState(id, state, version: &version)
        } catch {
            if let written { try? await client.deleteObject(uploadPrefix(id) + written) }
            throw error
        }
        if let old = previous.tail, old != state.tail {
            try? await client.deleteObject(uploadPrefix(id) + old)
        }
    }

    /// An upload whose completed bytes were refused continues: its `data` object becomes the first
    /// part of a new multipart upload, copied inside the store (it is at least one part long).
    private func unstage(_ id: String, _ state: inout UploadState, _ version: inout Int64) async throws {
        guard let staged = state.stagedSize else { return }
        let upload = try await client.createMultipartUpload(dataKey(id))
        state.multipartID = upload
        state.lastPartNumber = 1
        try await saveState(id, state, version: &version)
        let etag = try await client.uploadPartCopy(dataKey(id), uploadID: upload, number: 1, source: dataKey(id))
        state.parts = [.init(number: 1, etag: etag, size: staged)]
        state.stagedSize = nil
        state.hashState = nil
        try await saveState(id, state, version: &version)
    }

    /// Assembles the upload's bytes into one object and returns its key and the ETag that every
    /// later read and copy of it is conditional on: the tail alone (its name is never written
    /// twice; its recorded ETag), nil for the empty upload, or `data`, which another request could
    /// complete again: then the ETag of our completion (or, when the store's answer has none, of
    /// the object right after it, whose size must be the upload's), nil when it was completed before.
    private func assemble(_ id: String, _ state: inout UploadState, _ version: inout Int64,
                          tail: [UInt8]?) async throws -> (key: String?, etag: String?) {
        if state.stagedSize != nil { return (dataKey(id), nil) }
        guard let upload = state.multipartID, !state.parts.isEmpty else {
            return (state.tail.map { uploadPrefix(id) + $0 }, state.tailETag)
        }
        var parts = state.parts
        if state.tailSize > 0 {
            let bytes = if let tail { tail } else { try await readTail(id, state) }
            let number = max(state.lastPartNumber, parts.last!.number) + 1
            let etag = try await client.uploadPart(dataKey(id), uploadID: upload, number: number, body: ByteBuffer(bytes: bytes))
            parts.append(.init(number: number, etag: etag, size: Int64(bytes.count)))
        }
        var etag = try await client.completeMultipartUpload(dataKey(id), uploadID: upload, parts: parts.map { ($0.number, $0.etag) })
        let total = state.size
        if etag == nil, let head = try await client.headObject(dataKey(id)), head.size == total, !head.etag.isEmpty {
            etag = head.etag
        }
        let previousTail = state.tail
        state.parts = []
        state.multipartID = nil
        state.clearTail()
        state.hashState = nil
        state.stagedSize = total
        try await saveState(id, state, version: &version)
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
        let loaded: Loaded
        do {
            guard let found = try await loadState(id) else {
                release(id, hasher: nil, size: 0, forget: true)
                throw BlobStoreError.uploadUnknown
            }
            loaded = found
        } catch {
            if case BlobStoreError.uploadUnknown = error { throw error }
            release(id, hasher: held?.hasher, size: held?.hashedSize ?? -1, version: held?.version, token: held?.token)
            throw error
        }
        var state = loaded.state
        var version = loaded.version
        let size = state.size
        let liveHasher = hasher(held, for: loaded).flatMap { $0.algorithm == expected.algorithm ? $0 : nil }
        // The assembled object is the tail object itself (an upload smaller than a part).
        var sourceIsTail = false
        do {
            var verified = false
            var tail: [UInt8]?
            // A `data` object completed before this request is read back whatever the hashers say.
            let wasStaged = state.stagedSize != nil
            if let liveHasher, !wasStaged {
                let computed = liveHasher.finalize()
                guard computed == expected else { throw BlobStoreError.digestMismatch(computed: computed) }
                verified = true
            } else if !wasStaged, expected.algorithm == .sha256, !state.parts.isEmpty, var resumable = resumableHash(state) {
                // Another node appended the parts: continue the SHA-256 saved at the last part
                // boundary over the tail. A mismatch is not trusted either way: the bytes are read back.
                let bytes = try await readTail(id, state)
                resumable.update(bytes)
                tail = bytes
                verified = resumable.finalize() == expected
            }
            if let expectedSize, expectedSize != size { throw BlobStoreError.sizeMismatch(actual: size) }
            let unassembled = state
            var (source, etag) = try await assemble(id, &state, &version, tail: tail)
            sourceIsTail = source != nil && source != dataKey(id)
            // The hashers vouch for the assembled object only if the copy can be pinned to it.
            if verified, source != nil, etag == nil { verified = false }
            if !verified {
                let computed: Digest
                if sourceIsTail, etag != nil {
                    // Checked against the SHA-256 recorded when it was written, the copy pinned to its ETag.
                    computed = Digest.compute(try await readTail(id, unassembled), algorithm: expected.algorithm)
                } else {
                    (computed, etag) = try await hash(source, etag: etag, algorithm: expected.algorithm)
                }
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
            release(id, hasher: nil, size: 0)
            // The tail object changed since it was written (its name is never written twice), or
            // another request completed this upload's bytes anew while we read or copied them.
            throw sourceIsTail ? S3StorageError.tailAltered : BlobStoreError.uploadBusy
        } catch is SessionConflict {
            release(id, hasher: nil, size: 0)
            throw BlobStoreError.uploadBusy
        } catch {
            release(id, hasher: liveHasher == nil ? nil : held?.hasher, size: size, version: version, token: state.token)
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
        guard let state = try await loadState(id)?.state, state.size <= Int64(limit),
              state.parts.isEmpty, state.stagedSize == nil
        else { return nil }
        let bytes = try await readTail(id, state)
        let computed = Digest.compute(bytes, algorithm: expected.algorithm)
        guard computed == expected else { throw BlobStoreError.digestMismatch(computed: computed) }
        return bytes
    }

    /// Removes an upload, its session last. `thorough` (cancel, the sweeper) also aborts multipart
    /// uploads and deletes objects its state does not know (left by a crash between writing them
    /// and recording them); after a commit the state names everything there is, and what a crash
    /// left behind is found by `staleUploads` later.
    private func removeUpload(_ id: String, state: UploadState?, thorough: Bool) async throws {
        if let upload = state?.multipartID { try await client.abortMultipartUpload(dataKey(id), uploadID: upload) }
        if thorough {
            for orphan in try await client.listMultipartUploads(prefix: uploadPrefix(id)) where orphan.uploadID != state?.multipartID {
                try await client.abortMultipartUpload(orphan.key, uploadID: orphan.uploadID)
            }
            for object in try await client.listObjects(prefix: uploadPrefix(id)) {
                try await client.deleteObject(object.key)
            }
        } else {
            if let tail = state?.tail { try await client.deleteObject(uploadPrefix(id) + tail) }
            if state?.stagedSize != nil { try await client.deleteObject(dataKey(id)) }
        }
        try await sessions.deleteUploadSession(id: id)
    }

    public func cancelUpload(id: String) async throws {
        guard Self.valid(id) else { throw BlobStoreError.uploadUnknown }
        // Never under a request of this node that is writing or committing it (as the
        // filesystem store); another node's finds the session gone by its version.
        try live.withLockedValue { map in
            if map[id]?.busy == true { throw BlobStoreError.uploadBusy }
            map[id] = nil
        }
        // A session that cannot be read is still removed with everything under its prefix.
        let state = try? await loadState(id)?.state
        try await removeUpload(id, state: state, thorough: true)
    }

    public func staleUploads(olderThan: Double) async throws -> [String] {
        // Sessions idle that long, by the store's clock (every append updates the session).
        var stale = Set(try await sessions.idleUploadSessions(for: max(0, Date().timeIntervalSince1970 - olderThan)))
        // Objects and multipart uploads of uploads without a session (a crash between cancelling
        // or committing and removing them), by their own age.
        let base = uploadsPrefix
        func uploadID(_ key: String) -> String? {
            let rest = key.dropFirst(base.count)
            guard let slash = rest.firstIndex(of: "/") else { return nil }
            let id = String(rest[..<slash])
            return Self.valid(id) ? id : nil
        }
        var touched: [String: Double] = [:]
        for object in try await client.listObjects(prefix: base) {
            guard let id = uploadID(object.key) else { continue }
            touched[id] = max(touched[id] ?? 0, object.lastModified)
        }
        for upload in try await client.listMultipartUploads(prefix: base) {
            guard let id = uploadID(upload.key) else { continue }
            touched[id] = max(touched[id] ?? 0, upload.initiated)
        }
        for (id, time) in touched where time < olderThan && !stale.contains(id) {
            if try await sessions.uploadSession(id: id) == nil { stale.insert(id) }
        }
        return stale.sorted()
    }

    public func openUploadCount() async throws -> Int {
        try await sessions.uploadSessionCount()
    }

    /// From the session table alone (no listing of the bucket); a session whose state this build
    /// cannot read is left out.
    public func uploads(idPrefix: String) async throws -> [UploadListing] {
        try await sessions.uploadSessions(idPrefix: idPrefix).compactMap { session in
            guard Self.valid(session.id), let state = try? JSONDecoder().decode(UploadState.self, from: Data(session.state)) else {
                return nil
            }
            return UploadListing(id: session.id, owner: session.owner, size: state.size,
                                 touchedAt: session.updatedAt.timeIntervalSince1970)
        }
    }
}

public enum S3StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// createUpload with an id that already has an upload.
    case uploadExists
    /// An upload's tail object is missing or its bytes are not those its state recorded (changed
    /// in the bucket): the upload cannot be continued or committed.
    case tailAltered
    /// An upload's session holds a state this build cannot read.
    case stateUnreadable

    public var description: String {
        switch self {
        case .uploadExists: return "an upload with this id exists"
        case .tailAltered: return "the upload's tail object in the bucket is missing or not the bytes that were written; the upload must be started again"
        case .stateUnreadable: return "the upload's state in the metadata store is unreadable"
        }
    }
}
