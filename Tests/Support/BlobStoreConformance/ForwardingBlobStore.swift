import BlobStorage
import NIOCore
import OCIModel

/// A test double's base: every `BlobStore` requirement passed to `inner`, so a double overrides
/// only the calls it changes (a read that fails, a transfer by script, a hook after a commit).
///
/// The three optional fast paths (`openFile`, `redirectURL`, `startTransfer`) answer nil here and
/// are not forwarded: a wrapper serves every read through `read` unless it overrides one, so a
/// double that changes `read` is not bypassed by the inner store's file or transfer. They are
/// implemented here, not left to the protocol's defaults, so that a subclass's override is the
/// one the protocol calls.
open class ForwardingBlobStore: BlobStore, @unchecked Sendable {
    public let inner: any BlobStore

    public init(inner: any BlobStore) { self.inner = inner }

    open func size(of digest: Digest) async throws -> Int64? { try await inner.size(of: digest) }
    open func read(_ digest: Digest, range: Range<Int64>, into sink: (ByteBuffer) async throws -> Void) async throws {
        try await inner.read(digest, range: range, into: sink)
    }
    open func delete(_ digest: Digest) async throws { try await inner.delete(digest) }
    open func allDigests() async throws -> [Digest] { try await inner.allDigests() }
    open func createUpload(id: String, owner: String) async throws { try await inner.createUpload(id: id, owner: owner) }
    open func uploadOwner(id: String) async throws -> String? { try await inner.uploadOwner(id: id) }
    open func uploadedSize(id: String) async throws -> Int64? { try await inner.uploadedSize(id: id) }
    open func append<Body: AsyncSequence & Sendable>(id: String, offset: Int64, body: Body, limit: Int64?) async throws -> Int64
        where Body.Element == ByteBuffer {
        try await inner.append(id: id, offset: offset, body: body, limit: limit)
    }
    open func commitUpload(id: String, expected: Digest, expectedSize: Int64?) async throws -> Int64 {
        try await inner.commitUpload(id: id, expected: expected, expectedSize: expectedSize)
    }
    open func readSmallUpload(id: String, expected: Digest, limit: Int) async throws -> [UInt8]? {
        try await inner.readSmallUpload(id: id, expected: expected, limit: limit)
    }
    open func cancelUpload(id: String) async throws { try await inner.cancelUpload(id: id) }
    open func staleUploads(olderThan: Double) async throws -> [String] { try await inner.staleUploads(olderThan: olderThan) }
    open func openUploadCount() async throws -> Int { try await inner.openUploadCount() }
    open func uploads(idPrefix: String) async throws -> [UploadListing] { try await inner.uploads(idPrefix: idPrefix) }
    open func checkHealth() async throws { try await inner.checkHealth() }
    open func openFile(_ digest: Digest) async throws -> BlobFile? { nil }
    open func redirectURL(_ digest: Digest) async throws -> String? { nil }
    open func startTransfer(_ digest: Digest, range: Range<Int64>, into sink: any BlobByteSink) async throws -> BlobTransfer? { nil }
}
