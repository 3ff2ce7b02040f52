import Access
import Backends
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Signing
import Testing
@testable import HTTPAPI

@Suite struct ContentTrustTests {
    func identity(_ access: AccessControl, _ name: String) async throws -> HTTPFields {
        _ = try await access.createIdentity(testActor, name: name, withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: name)
        _ = try await access.assignRole(testActor, assignee: name, role: "Pull", scope: "*")
        return basic(name, password)
    }

    /// Signs `repo@digest` as a Notation signature pushed by the owner.
    func sign(_ client: any TestClientProtocol, _ repo: String, digest: String, size: Int, material: SigningMaterial) async throws {
        let key = try PEMFileKeyProvider(pem: material.privateKeyPEM)
        let target = Descriptor(mediaType: MediaType.ociManifest, digest: digest, size: Int64(size))
        let envelope = try await JWSEnvelope.sign(target: target, key: key, chain: material.chain)
        let (manifest, envelopeBytes) = try SignatureManifest.build(envelope: envelope, subject: target)
        for blob in [Array("{}".utf8), Array(envelopeBytes)] {
            var h = owner
            h[.contentLength] = String(blob.count)
            #expect(try await client.execute(uri: "/v2/\(repo)/blobs/uploads/?digest=\(sha256(blob))", method: .post, headers: h,
                                             body: buf(blob)).status == .created)
        }
        var h = owner
        h[.contentType] = MediaType.ociManifest
        let put = try await client.execute(uri: "/v2/\(repo)/manifests/\(sha256(Array(manifest)))", method: .put, headers: h,
                                           body: buf(Array(manifest)))
        #expect(put.status == .created)
    }

    func policy(identity: String, store: String, caPEM: String, exempt: [String]) -> [UInt8] {
        let config: [String: Any] = [
            "enabled": true, "repositories": ["payments/*"], "exempt": exempt,
            "trustStores": ["ca:\(store)": [caPEM]],
            "trustPolicy": ["version": "1.0", "trustPolicies": [[
                "name": "payments", "registryScopes": ["*"], "signatureVerification": ["level": "strict"],
                "trustStores": ["ca:\(store)"], "trustedIdentities": ["x509.subject: \(identity)"],
            ]]],
        ]
        return Array(try! JSONSerialization.data(withJSONObject: config))
    }

    @Test func unsignedContentIsRefusedSignedIsServed() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller")
        let signer = try await identity(access, "signer")
        let material = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let caPEM = try CertificateCoding.pem(try #require(material.ca))
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "signed", auth: owner, seed: "s") == .created)
            #expect(try await push(client, "payments/api", tag: "unsigned", auth: owner, seed: "u") == .created)
            #expect(try await push(client, "billing/api", tag: "1", auth: owner, seed: "b") == .created)
            let signed = try await client.execute(uri: "/v2/payments/api/manifests/signed", method: .get, headers: owner)
            try await sign(client, "payments/api", digest: signed.headers[.testDigest]!, size: signed.body.readableBytes, material: material)

            let put = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                               body: buf(policy(identity: "CN=payments.org, O=Platform", store: "payments-ca",
                                                                caPEM: caPEM, exempt: ["signer"])))
            #expect(put.status == .ok)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/signed", method: .get, headers: puller).status == .ok)
            let refused = try await client.execute(uri: "/v2/payments/api/manifests/unsigned", method: .get, headers: puller)
            #expect(refused.status == .forbidden && errorCode(refused) == "DENIED")
            #expect(String(buffer: refused.body).contains("content trust"))
            // outside the configured repositories, and for exempt identities, nothing changes
            #expect(try await client.execute(uri: "/v2/billing/api/manifests/1", method: .get, headers: puller).status == .ok)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/unsigned", method: .get, headers: signer).status == .ok)
            // signing it now makes it pullable (verdicts are dropped on push)
            let unsigned = try await client.execute(uri: "/v2/payments/api/manifests/unsigned", method: .get, headers: owner)
            #expect(unsigned.status == .forbidden)   // the owner is not exempt either
            let raw = try await client.execute(uri: "/v2/payments/api/manifests/unsigned", method: .get, headers: signer)
            try await sign(client, "payments/api", digest: raw.headers[.testDigest]!, size: raw.body.readableBytes, material: material)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/unsigned", method: .get, headers: puller).status == .ok)
        }
    }

    @Test func aSignatureFromTheWrongSignerIsNotEnough() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller")
        let trusted = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let rogue = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)   // same name, other CA
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "1", auth: owner, seed: "x") == .created)
            let m = try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: owner)
            try await sign(client, "payments/api", digest: m.headers[.testDigest]!, size: m.body.readableBytes, material: rogue)
            let put = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                               body: buf(policy(identity: "CN=payments.org, O=Platform", store: "payments-ca",
                                                                caPEM: try CertificateCoding.pem(try #require(trusted.ca)), exempt: [])))
            #expect(put.status == .ok)
            let refused = try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: puller)
            #expect(refused.status == .forbidden)
            #expect(String(buffer: refused.body).contains("authenticity"))
            let bad = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                               body: buf(Array(#"{"enabled":true,"repositories":["payments/*"],"trustStores":{},"exempt":[]}"#.utf8)))
            #expect(bad.status == .badRequest)
        }
    }

    @Test func anUnreadableStoredPolicyFailsClosedAndAPutRepairsIt() async throws {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let app = try await BerthServer.makeApplication(registry: registry, access: access, features: standardFeatures(registry),
                                                  host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "1", auth: owner) == .created)
            // a hand-edited database, a downgrade: the stored policy no longer reads
            try await registry.metadata.setSettingDocument("content-trust", Data(#"{"enabled": "#.utf8))
            #expect(try await client.execute(uri: "/api/v1/content-trust", method: .get, headers: owner).status != .ok)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: owner).status != .ok)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: owner).status != .ok)
            let put = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                               body: buf(Array(#"{"enabled":false,"repositories":[],"trustStores":{},"exempt":[]}"#.utf8)))
            #expect(put.status == .ok)
            #expect(String(buffer: put.body).contains(#""enabled":false"#))
            #expect(try await client.execute(uri: "/api/v1/content-trust", method: .get, headers: owner).status == .ok)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: owner).status == .ok)
        }
    }
}
