import NIOCore
import OCIModel

/// Where blob bytes live. Knows nothing of repositories or users: a blob is addressed by its
/// digest, and an upload by an opaque id. Implementations: the filesystem store (default);
/// S3-compatible and encrypting stores plug in behind the same protocol.
public protocol BlobStore: Sendable {
    /// Size of a stored blob, or nil when the store has no such blob.
    func size(of digest: Digest) async throws -> Int64?
    /// Streams `range` of a blob in chunks to `sink`, in order.
    func read(_ digest: Digest, range: Range<Int64>, into sink: (ByteBuffer) async throws -> Void) async throws
    /// Removes a blob's bytes (garbage collection only; never on the request path).
    func delete(_ digest: Digest) async throws
    /// Every digest the store holds, for garbage collection and usage.
    func allDigests() async throws -> [Digest]

    /// Creates the scratch space of a new upload. `owner` is an opaque label the caller reads
    /// back with `uploadOwner` (the registry stores the repository name there).
    func createUpload(id: String, owner: String) async throws
    func uploadOwner(id: String) async throws -> String?
    /// Bytes received so far, or nil for an unknown upload.
    func uploadedSize(id: String) async throws -> Int64?
    /// Appends a request body at `offset`, which must be the current size. Returns the new size.
    /// A body that stops early leaves what arrived in the upload (resumable), never a blob.
    func append<Body: AsyncSequence & Sendable>(id: String, offset: Int64, body: Body, limit: Int64?) async throws -> Int64
        where Body.Element == ByteBuffer
    /// Verifies the upload's digest and size and makes it the blob `expected`, durably.
    /// Returns the blob's size. On a mismatch the upload is left as it was (the caller cancels it).
    func commitUpload(id: String, expected: Digest, expectedSize: Int64?) async throws -> Int64
    /// Reads a small finished upload (at most `limit` bytes) after verifying its digest, without
    /// making it a file blob: the metadata store keeps small blobs inline.
    func readSmallUpload(id: String, expected: Digest, limit: Int) async throws -> [UInt8]?
    /// Drops an upload and its bytes.
    func cancelUpload(id: String) async throws
    /// Uploads not touched since `olderThan` (seconds since 1970), for the janitor.
    func staleUploads(olderThan: Double) async throws -> [String]
    /// Number of uploads in progress.
    func openUploadCount() async throws -> Int
    /// The uploads whose id begins with `idPrefix` (a namespace of ids the caller mints, e.g. the
    /// registry's private sessions), with their owner label, bytes received and last change, in id
    /// order. Found without reading any other upload's owner or state, and without listing the
    /// objects of a remote store (the S3 store asks its session table), so a caller can count its
    /// own namespace on a request path.
    func uploads(idPrefix: String) async throws -> [UploadListing]
    /// The store is usable (for readiness probes).
    func checkHealth() async throws
    /// An open handle on a stored blob's bytes, for stores that keep blobs in local files, so the
    /// server can hand the kernel the file (sendfile) instead of copying it through memory.
    /// Stores without local files return nil and are read through `read`.
    func openFile(_ digest: Digest) async throws -> BlobFile?
    /// A short-lived URL from which a client that may pull the blob can GET its bytes directly
    /// (the S3 store's presigned URLs, when the operator turned them on); nil: serve it here.
    func redirectURL(_ digest: Digest) async throws -> String?
    /// For stores that fetch bytes over the network (S3): starts sending `range` (not empty) of a
    /// blob into `sink`, chunk by chunk on the sink's event loop as they arrive, with no task
    /// switch per chunk, and returns once the source has answered: a missing blob
    /// (`BlobStoreError.blobUnknown`) or a refused request is thrown here, before any byte went
    /// to the sink. Stores that do not stream this way return nil and are read through `read`.
    func startTransfer(_ digest: Digest, range: Range<Int64>, into sink: any BlobByteSink) async throws -> BlobTransfer?
}

/// An upload as `BlobStore.uploads(idPrefix:)` lists it.
public struct UploadListing: Sendable, Equatable {
    public var id: String
    public var owner: String
    /// Bytes received so far.
    public var size: Int64
    /// The last create or append, seconds since 1970.
    public var touchedAt: Double

    public init(id: String, owner: String, size: Int64, touchedAt: Double) {
        self.id = id
        self.owner = owner
        self.size = size
        self.touchedAt = touchedAt
    }
}

extension BlobStore {
    public func openFile(_ digest: Digest) async throws -> BlobFile? { nil }
    public func redirectURL(_ digest: Digest) async throws -> String? { nil }
    public func startTransfer(_ digest: Digest, range: Range<Int64>, into sink: any BlobByteSink) async throws -> BlobTransfer? { nil }
}

/// Where a store's transfer (`startTransfer`) puts a blob's bytes: the HTTP layer's connection.
public protocol BlobByteSink: AnyObject, Sendable {
    /// The loop the store should call `write` on (it may call from elsewhere; the sink then hops).
    var eventLoop: any EventLoop { get }
    /// Takes the next chunk, in order. The future succeeds when the sink can take another (the
    /// store reads no further until then) and fails when the destination is gone.
    func write(_ chunk: ByteBuffer) -> EventLoopFuture<Void>
}

/// A transfer started by `startTransfer`.
public struct BlobTransfer: Sendable {
    /// Succeeds once every byte of the range went to the sink; fails when the source failed or
    /// stopped short, sent more than asked for, or the sink went away.
    public let completion: EventLoopFuture<Void>
    /// Stops the transfer (the client went away); `completion` then fails. Safe to call from any
    /// thread, any number of times, also after completion.
    public let cancel: @Sendable () -> Void

    public init(completion: EventLoopFuture<Void>, cancel: @escaping @Sendable () -> Void) {
        self.completion = completion
        self.cancel = cancel
    }
}

/// A stored blob opened for reading. Whoever receives it owns the descriptor and must close it
/// once (`close()`), after the last read.
public struct BlobFile: Sendable {
    public let handle: NIOFileHandle
    public let size: Int64

    public init(handle: NIOFileHandle, size: Int64) {
        self.handle = handle
        self.size = size
    }

    public func close() {
        try? handle.close()
    }
}

public enum BlobStoreError: Error, Sendable, Equatable {
    case uploadUnknown
    case uploadBusy
    case offsetMismatch(expected: Int64, actual: Int64)
    case digestMismatch(computed: Digest)
    case sizeMismatch(actual: Int64)
    case tooLarge
    case blobUnknown
}
