import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Signing
import Testing
@testable import AdmissionFeature
@testable import HTTPAPI

/// AdmissionReview requests shaped as the Kubernetes API server sends them.
func podReview(uid: String, images: [String], initImages: [String] = []) -> [UInt8] {
    let review: [String: Any] = [
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": [
            "uid": uid,
            "kind": ["group": "", "version": "v1", "kind": "Pod"],
            "resource": ["group": "", "version": "v1", "resource": "pods"],
            "requestKind": ["group": "", "version": "v1", "kind": "Pod"],
            "requestResource": ["group": "", "version": "v1", "resource": "pods"],
            "name": "web-1", "namespace": "payments", "operation": "CREATE",
            "userInfo": ["username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]],
            "object": [
                "apiVersion": "v1", "kind": "Pod",
                "metadata": ["name": "web-1", "namespace": "payments"],
                "spec": [
                    "initContainers": initImages.enumerated().map { ["name": "init\($0.offset)", "image": $0.element] },
                    "containers": images.enumerated().map { ["name": "c\($0.offset)", "image": $0.element] },
                ],
            ],
            "oldObject": NSNull(), "dryRun": false,
            "options": ["apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"],
        ],
    ]
    return Array(try! JSONSerialization.data(withJSONObject: review))
}

func deploymentReview(uid: String, image: String) -> [UInt8] {
    let review: [String: Any] = [
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": [
            "uid": uid,
            "kind": ["group": "apps", "version": "v1", "kind": "Deployment"],
            "resource": ["group": "apps", "version": "v1", "resource": "deployments"],
            "name": "api", "namespace": "payments", "operation": "CREATE",
            "object": [
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": "api"],
                "spec": ["replicas": 2, "selector": ["matchLabels": ["app": "api"]],
                         "template": ["metadata": ["labels": ["app": "api"]],
                                      "spec": ["containers": [["name": "api", "image": image]]]]],
            ],
        ],
    ]
    return Array(try! JSONSerialization.data(withJSONObject: review))
}

struct ReviewAnswer: Decodable {
    struct Status: Decodable { let code: Int; let message: String }
    struct Resp: Decodable { let uid: String; let allowed: Bool; let status: Status?; let patch: String?; let patchType: String? }
    let apiVersion: String
    let kind: String
    let response: Resp
}

@Suite struct AdmissionTests {
    func host(_ client: any TestClientProtocol) async throws -> String {
        let challenge = try await client.execute(uri: "/v2/", method: .get).headers[.wwwAuthenticate] ?? ""
        let service = challenge.components(separatedBy: "service=\"").last?.prefix { $0 != "\"" } ?? ""
        return String(service)
    }

    func review(_ client: any TestClientProtocol, _ path: String, _ body: [UInt8], auth: HTTPFields = owner) async throws -> ReviewAnswer {
        var h = auth
        h[.contentType] = "application/json"
        let r = try await client.execute(uri: path, method: .post, headers: h, body: buf(body))
        #expect(r.status == .ok)
        return try JSONDecoder().decode(ReviewAnswer.self, from: Data(buffer: r.body))
    }

    @Test func validateRefusesQuarantinedUnsignedAndMissingImages() async throws {
        let (app, _) = try await makeSecuredApp()
        let material = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        try await app.test(.router) { client in
            let host = try await host(client)
            #expect(try await push(client, "payments/api", tag: "1", auth: owner, seed: "api") == .created)
            #expect(try await push(client, "payments/worker", tag: "1", auth: owner, seed: "worker") == .created)
            let api = try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: owner)
            try await ContentTrustTests().sign(client, "payments/api", digest: api.headers[.testDigest]!,
                                               size: api.body.readableBytes, material: material)

            // without content trust: existing images pass, a missing one does not, foreign images are not ours to judge
            var answer = try await review(client, "/admission/v1/validate",
                                          podReview(uid: "u-1", images: ["\(host)/payments/api:1", "docker.io/library/busybox:1"]))
            #expect(answer.kind == "AdmissionReview" && answer.response.uid == "u-1" && answer.response.allowed)
            answer = try await review(client, "/admission/v1/validate", podReview(uid: "u-2", images: ["\(host)/payments/nope:1"]))
            #expect(!answer.response.allowed && answer.response.status?.message.contains("payments/nope") == true)

            // with content trust for payments/*: the unsigned worker is refused, the signed api passes
            let put = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                               body: buf(ContentTrustTests().policy(identity: "CN=payments.org, O=Platform", store: "payments-ca",
                                                                                    caPEM: try CertificateCoding.pem(try #require(material.ca)), exempt: [])))
            #expect(put.status == .ok)
            answer = try await review(client, "/admission/v1/validate",
                                      podReview(uid: "u-3", images: ["\(host)/payments/api:1"], initImages: ["\(host)/payments/worker:1"]))
            #expect(!answer.response.allowed)
            let message = answer.response.status?.message ?? ""
            #expect(message.contains("payments/worker:1") && message.contains("content trust") && !message.contains("payments/api:1:"))
            answer = try await review(client, "/admission/v1/validate", deploymentReview(uid: "u-4", image: "\(host)/payments/api:1"))
            #expect(answer.response.allowed && answer.response.uid == "u-4")

            // quarantine refuses too, with the state named
            _ = try await client.execute(uri: "/api/v1/quarantine", method: .patch, headers: owner,
                                         body: buf(Array(#"{"enabled":true}"#.utf8)))
            #expect(try await push(client, "other/app", tag: "1", auth: owner, seed: "q") == .created)
            answer = try await review(client, "/admission/v1/validate", podReview(uid: "u-5", images: ["\(host)/other/app:1"]))
            #expect(!answer.response.allowed && answer.response.status?.message.contains("quarantined") == true)
        }
    }

    @Test func mutatePinsTagsToDigests() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let host = try await host(client)
            #expect(try await push(client, "payments/api", tag: "1", auth: owner, seed: "api") == .created)
            let digest = try await client.execute(uri: "/v2/payments/api/manifests/1", method: .head, headers: owner).headers[.testDigest]!
            let answer = try await review(client, "/admission/v1/mutate", deploymentReview(uid: "m-1", image: "\(host)/payments/api:1"))
            #expect(answer.response.allowed && answer.response.patchType == "JSONPatch")
            let patch = try JSONSerialization.jsonObject(with: Data(base64Encoded: try #require(answer.response.patch))!) as? [[String: String]]
            #expect(patch == [["op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "\(host)/payments/api@\(digest)"]])
            let none = try await review(client, "/admission/v1/mutate", podReview(uid: "m-2", images: ["\(host)/payments/api@\(digest)"]))
            #expect(none.response.allowed && none.response.patch == nil)
            // the webhook needs credentials
            #expect(try await client.execute(uri: "/admission/v1/validate", method: .post,
                                             body: buf(podReview(uid: "x", images: []))).status == .unauthorized)
        }
    }

    @Test func imagesTheCallerMayNotPullAreNotAccessible() async throws {
        let (app, access) = try await makeSecuredApp()
        let entry = AccessState.ScopeMap.Entry(repository: try RepositoryPattern("payments/*"), actions: ["content/read", "metadata/read"])
        _ = try await access.putScopeMap(testActor, name: "payments-pull", description: nil, entries: [entry], create: true)
        let (_, pw) = try await access.createToken(testActor, name: "k8s", scopeMap: "payments-pull")
        let k8s = basic("k8s", pw["password1"]!)
        try await app.test(.router) { client in
            let host = try await host(client)
            #expect(try await push(client, "payments/api", tag: "1", auth: owner, seed: "api") == .created)
            #expect(try await push(client, "billing/secret", tag: "v1", auth: owner, seed: "secret") == .created)

            // what the caller may pull is judged as before
            var answer = try await review(client, "/admission/v1/validate", podReview(uid: "a-1", images: ["\(host)/payments/api:1"]), auth: k8s)
            #expect(answer.response.allowed)
            answer = try await review(client, "/admission/v1/validate", podReview(uid: "a-2", images: ["\(host)/payments/nope:1"]), auth: k8s)
            #expect(!answer.response.allowed && answer.response.status?.message.contains("manifest unknown") == true)

            // elsewhere: an existing image, a missing tag and a missing repository get the same answer
            var messages: [String] = []
            for image in ["billing/secret:v1", "billing/secret:nope", "billing/none:v1"] {
                answer = try await review(client, "/admission/v1/validate", podReview(uid: "a-3", images: ["\(host)/\(image)"]), auth: k8s)
                #expect(!answer.response.allowed)
                messages.append(answer.response.status?.message.replacingOccurrences(of: image, with: "IMAGE") ?? "")
            }
            #expect(messages == Array(repeating: "Berth refused: \(host)/IMAGE: not accessible", count: 3))

            // mutate leaves what the caller may not pull unpatched, and pins the rest
            let secret = try await review(client, "/admission/v1/mutate", deploymentReview(uid: "a-4", image: "\(host)/billing/secret:v1"), auth: k8s)
            #expect(secret.response.allowed && secret.response.patch == nil)
            let own = try await review(client, "/admission/v1/mutate", deploymentReview(uid: "a-5", image: "\(host)/payments/api:1"), auth: k8s)
            #expect(own.response.patch != nil)
            // the owner still gets billing judged and pinned
            answer = try await review(client, "/admission/v1/validate", podReview(uid: "a-6", images: ["\(host)/billing/secret:v1"]))
            #expect(answer.response.allowed)
            let pinned = try await review(client, "/admission/v1/mutate", deploymentReview(uid: "a-7", image: "\(host)/billing/secret:v1"))
            #expect(pinned.response.patch != nil)
        }
    }

    @Test func networkRulesDecideForTheWebhookToo() async throws {
        let (app, access) = try await makeSecuredApp()
        var change = SettingsChange()
        change.publicNetworkEnabled = false
        change.trustedProxies = ["127.0.0.1/32", "::1/128"]
        _ = try await access.updateSettings(testActor, change)
        try await app.test(.live) { client in
            let host = try await host(client)
            #expect(try await push(client, "payments/api", tag: "1", auth: owner, seed: "api") == .created)
            var outside = owner
            outside[.xForwardedFor] = "203.0.113.7"
            let refused = try await review(client, "/admission/v1/validate", podReview(uid: "n-1", images: ["\(host)/payments/api:1"]), auth: outside)
            #expect(!refused.response.allowed && refused.response.status?.message.hasSuffix("payments/api:1: not accessible") == true)
            let pinned = try await review(client, "/admission/v1/mutate", deploymentReview(uid: "n-2", image: "\(host)/payments/api:1"), auth: outside)
            #expect(pinned.response.patch == nil)
            var inside = owner
            inside[.xForwardedFor] = "10.1.2.3"
            #expect(try await review(client, "/admission/v1/validate", podReview(uid: "n-3", images: ["\(host)/payments/api:1"]), auth: inside).response.allowed)
        }
    }
}

/// Which images are this registry's: every spelling a node would pull from it is ours, so none
/// slips past the checks; other registries are not.
@Suite struct AdmissionHostMatchingTests {
    @Test(arguments: [
        "registry.example.com/app:1", "Registry.Example.COM/app:1", "registry.example.com:443/app:1",
        "registry.example.com./app:1", "REGISTRY.example.com:80/app:1",
    ])
    func everySpellingOfOurHostIsOurs(_ image: String) throws {
        let parts = try #require(AdmissionEndpoint.parseImage(image, hosts: ["registry.example.com"]))
        #expect(parts.repository == "app" && parts.tag == "1" && parts.digest == nil)
        #expect(image.hasPrefix(parts.host + "/"))   // pinned as the workload spelled it
    }

    @Test(arguments: ["registry.example.org/app:1", "registry.example.com:5000/app:1", "app:1", "library/app",
                      "example.com/registry.example.com/app"])
    func otherRegistriesAreNotOurs(_ image: String) {
        #expect(AdmissionEndpoint.parseImage(image, hosts: ["registry.example.com"]) == nil)
    }

    @Test func aMalformedReferenceToUsIsStillOursAndCannotName() throws {
        let parts = try #require(AdmissionEndpoint.parseImage("registry.example.com/App:!!", hosts: ["registry.example.com"]))
        #expect(!RepositoryName.isValid(parts.repository))
    }
}
