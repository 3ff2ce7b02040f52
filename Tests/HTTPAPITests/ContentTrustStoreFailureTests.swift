import Access
import Backends
import BlobStorage
import BlobStoreConformance
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
final class FailingReadStore: ForwardingBlobStore, @unchecked Sendable {
    struct StoreDown: Error {}
    let failing = NIOLockedValueBox(false)

    override func read(_ digest: Digest, range: Range<Int64>, into sink: (ByteBuffer) async throws -> Void) async throws {
        if failing.withLockedValue({ $0 }) { throw StoreDown() }
        try await inner.read(digest, range: range, into: sink)
    }
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
