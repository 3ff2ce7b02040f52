import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Signing
import Testing
@testable import HTTPAPI

/// `/v2/` pulls and the admission webhook ask the one pull-admission chain: for the same image
/// and the same credentials they give the same answer, with the same reason, in every state.
@Suite struct PullAdmissionConsistencyTests {
    struct ErrorBody: Decodable {
        struct Item: Decodable { let code: String; let message: String }
        let errors: [Item]
    }

    @Test func v2AndAdmissionAgreeInEveryState() async throws {
        let (app, access) = try await makeSecuredApp()
        // the webhook's credentials: may pull everything, nothing more
        let entry = AccessState.ScopeMap.Entry(repository: try RepositoryPattern("*"), actions: ["content/read", "metadata/read"])
        _ = try await access.putScopeMap(testActor, name: "cluster-pull", description: nil, entries: [entry], create: true)
        let (_, pw) = try await access.createToken(testActor, name: "cluster", scopeMap: "cluster-pull")
        let cluster = basic("cluster", pw["password1"]!)
        let material = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        try await app.test(.router) { client in
            let host = try await AdmissionTests().host(client)
            for repo in ["plain/app", "locked/app", "payments/signed", "payments/unsigned"] {
                #expect(try await push(client, repo, tag: "1", auth: owner, seed: repo) == .created)
            }
            let signed = try await client.execute(uri: "/v2/payments/signed/manifests/1", method: .get, headers: owner)
            try await ContentTrustTests().sign(client, "payments/signed", digest: signed.headers[.testDigest]!,
                                               size: signed.body.readableBytes, material: material)
            // content trust for payments/*
            let trust = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                                 body: buf(ContentTrustTests().policy(identity: "CN=payments.org, O=Platform", store: "ca",
                                                                                      caPEM: try CertificateCoding.pem(try #require(material.ca)),
                                                                                      exempt: [])))
            #expect(trust.status == .ok)
            // a read lock on one tag
            #expect(try await client.execute(uri: "/api/v1/repository?name=locked/app&tag=1", method: .patch, headers: owner,
                                             body: buf(Array(#"{"readEnabled":false}"#.utf8))).status == .ok)
            // quarantine: new pushes wait (Pending); one is judged Failed
            #expect(try await client.execute(uri: "/api/v1/quarantine", method: .patch, headers: owner,
                                             body: buf(Array(#"{"enabled":true}"#.utf8))).status == .ok)
            #expect(try await push(client, "gate/pending", tag: "1", auth: owner, seed: "pending") == .created)
            #expect(try await push(client, "gate/failed", tag: "1", auth: owner, seed: "failed") == .created)
            let failed = try await client.execute(uri: "/v2/gate/failed/manifests/1", method: .head, headers: owner).headers[.testDigest]!
            let verdict = #"{"repository":"gate/failed","digest":"\#(failed)","state":"Failed","reason":"CVE-2026-0001"}"#
            #expect(try await client.execute(uri: "/api/v1/quarantine/manifests", method: .patch, headers: owner,
                                             body: buf(Array(verdict.utf8))).status == .ok)

            let expected: [(image: String, admitted: Bool, reason: String)] = [
                ("plain/app:1", true, ""),
                ("payments/signed:1", true, ""),
                ("locked/app:1", false, "is locked"),
                ("gate/pending:1", false, "manifest quarantined (Pending"),
                ("gate/failed:1", false, "manifest quarantined (Failed: CVE-2026-0001)"),
                ("payments/unsigned:1", false, "content trust"),
            ]
            for (image, admitted, reason) in expected {
                let (repo, tag) = (image.split(separator: ":")[0], image.split(separator: ":")[1])
                let pull = try await client.execute(uri: "/v2/\(repo)/manifests/\(tag)", method: .get, headers: cluster)
                let review = try await AdmissionTests().review(client, "/admission/v1/validate",
                                                               podReview(uid: "c", images: ["\(host)/\(image)"]), auth: cluster)
                #expect(review.response.allowed == admitted, "\(image)")
                if admitted {
                    #expect(pull.status == .ok, "\(image)")
                    continue
                }
                #expect(pull.status == .forbidden, "\(image)")
                let message = try JSONDecoder().decode(ErrorBody.self, from: Data(buffer: pull.body)).errors.first
                #expect(message?.code == "DENIED" && message?.message.contains(reason) == true, "\(image): \(String(describing: message))")
                #expect(review.response.status?.message == "Berth refused: \(host)/\(image): \(message?.message ?? "-")", "\(image)")
            }
        }
    }
}
