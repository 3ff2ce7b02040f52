import Access
import Backends
import BlobStorage
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Signing
import Testing
@testable import HTTPAPI

/// A blob store whose reads fail while `failing` is set (a disk or bucket that errors), all else
/// passed to `inner`.
final class FailingReadStore: BlobStore, @unchecked Sendable {
    struct StoreDown: Error {}
    let inner: any BlobStore
    let failing = NIOLockedValueBox(false)
    init(inner: any BlobStore) { self.inner = inner }

    func size(of digest: Digest) async throws -> Int64? { try await inner.size(of: digest) }
    func read(_ digest: Digest, range: Range<Int64>, into sink: (ByteBuffer) async throws -> Void) async throws {
        if failing.withLockedValue({ $0 }) { throw StoreDown() }
        try await inner.read(digest, range: range, into: sink)
    }
    func delete(_ digest: Digest) async throws { try await inner.delete(digest) }
    func allDigests() async throws -> [Digest] { try await inner.allDigests() }
    func createUpload(id: String, owner: String) async throws { try await inner.createUpload(id: id, owner: owner) }
    func uploadOwner(id: String) async throws -> String? { try await inner.uploadOwner(id: id) }
    func uploadedSize(id: String) async throws -> Int64? { try await inner.uploadedSize(id: id) }
    func append<Body: AsyncSequence & Sendable>(id: String, offset: Int64, body: Body, limit: Int64?) async throws -> Int64
        where Body.Element == ByteBuffer {
        try await inner.append(id: id, offset: offset, body: body, limit: limit)
    }
    func commitUpload(id: String, expected: Digest, expectedSize: Int64?) async throws -> Int64 {
        try await inner.commitUpload(id: id, expected: expected, expectedSize: expectedSize)
    }
    func readSmallUpload(id: String, expected: Digest, limit: Int) async throws -> [UInt8]? {
        try await inner.readSmallUpload(id: id, expected: expected, limit: limit)
    }
    func cancelUpload(id: String) async throws { try await inner.cancelUpload(id: id) }
    func staleUploads(olderThan: Double) async throws -> [String] { try await inner.staleUploads(olderThan: olderThan) }
    func openUploadCount() async throws -> Int { try await inner.openUploadCount() }
    func checkHealth() async throws { try await inner.checkHealth() }
}

/// Content trust fails closed on a store that fails: the signature's envelope cannot be read, so
/// the pull is answered 503 (try again), not 403 "no valid signature", and that answer is not
/// remembered as a verdict: once the store reads again, the signed manifest is served. A
/// signature that genuinely does not verify is still refused with 403.
@Suite struct ContentTrustStoreFailureTests {
    @Test func aStoreThatFailsWhileVerifyingIs503AndNotCachedAsUntrusted() async throws {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let backends = try Backends.embedded(dataDirectory: dir)
        let blobs = FailingReadStore(inner: backends.blobs)
        var configuration = RegistryConfiguration()
        configuration.inlineBlobThreshold = 0   // the envelope is read from the blob store
        let registry = Registry(blobs: blobs, metadata: backends.metadata, configuration: configuration, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore,
                                                  keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let app = try await BerthServer.makeApplication(registry: registry, access: access, features: standardFeatures(registry),
                                                        host: "127.0.0.1", port: 0, logger: logger)
        let helper = ContentTrustTests()
        let puller = try await helper.identity(access, "puller")
        let material = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let rogue = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "signed", auth: owner, seed: "s") == .created)
            #expect(try await push(client, "payments/api", tag: "rogue", auth: owner, seed: "r") == .created)
            for (tag, by) in [("signed", material), ("rogue", rogue)] {
                let m = try await client.execute(uri: "/v2/payments/api/manifests/\(tag)", method: .get, headers: owner)
                try await helper.sign(client, "payments/api", digest: m.headers[.testDigest]!, size: m.body.readableBytes, material: by)
            }
            let put = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                               body: buf(helper.policy(identity: "CN=payments.org, O=Platform", store: "payments-ca",
                                                                       caPEM: try CertificateCoding.pem(try #require(material.ca)),
                                                                       exempt: [])))
            #expect(put.status == .ok)

            blobs.failing.withLockedValue { $0 = true }
            let failed = try await client.execute(uri: "/v2/payments/api/manifests/signed", method: .get, headers: puller)
            #expect(failed.status == .serviceUnavailable)
            #expect(String(buffer: failed.body).contains("content trust could not be evaluated"))
            blobs.failing.withLockedValue { $0 = false }
            // Not cached as untrusted: served as soon as the store reads again.
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/signed", method: .get, headers: puller).status == .ok)
            // A signature that does not verify is still a verdict: 403.
            let refused = try await client.execute(uri: "/v2/payments/api/manifests/rogue", method: .get, headers: puller)
            #expect(refused.status == .forbidden && errorCode(refused) == "DENIED")
        }
    }
}
