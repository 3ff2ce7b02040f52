import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import OCIModel
import Testing
@testable import ContentTrustFeature
@testable import HTTPAPI

/// Issue 14: input that different parsers read differently, and client errors that were 500s.
@Suite struct InputValidationTests {
    func message(_ r: TestResponse) -> String { String(buffer: r.body) }

    @Test func manifestWithDuplicateKeysIsRefused() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let config = Array("{}".utf8), layer = Array("L".utf8)
            try await v2.pushBlob("app", config)
            try await v2.pushBlob("app", layer)
            let d = #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(sha256(layer))","size":1}"#
            let manifest = Array(#"""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(sha256(config))","size":2},
             "layers":[],"l\u0061yers":[\#(d)]}
            """#.utf8)
            let put = try await client.execute(uri: "/v2/app/manifests/v1", method: .put,
                                               headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(put.status == .badRequest && errorCode(put) == "MANIFEST_INVALID")
            #expect(message(put).contains(#"duplicate key \"layers\""#))
            #expect(try await client.execute(uri: "/v2/app/manifests/v1", method: .head).status == .notFound)
        }
    }

    @Test func managementAdmissionAndTokenBodiesWithDuplicateKeysAreRefused() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let created = try await client.execute(uri: "/api/v1/identities", method: .post, headers: owner,
                                                   body: buf(Array(#"{"name":"alice","name":"mallory"}"#.utf8)))
            #expect(created.status == .badRequest)
            #expect(message(created).contains(#"duplicate key \"name\""#))
            let list = try await client.execute(uri: "/api/v1/identities", method: .get, headers: owner)
            #expect(list.status == .ok && !message(list).contains("alice") && !message(list).contains("mallory"))

            var review = podReview(uid: "u-1", images: ["example.org/a:1"])
            // {"apiVersion":…,"request":{…},"request":{…}}: a second request object after the first
            review.removeLast()
            review += Array(#","request":{"uid":"u-2"}}"#.utf8)
            var h = owner
            h[.contentType] = "application/json"
            let answer = try await client.execute(uri: "/admission/v1/validate", method: .post, headers: h, body: buf(review))
            #expect(answer.status == .badRequest)
            #expect(message(answer).contains(#"duplicate key \"request\""#))

            var form = owner
            form[.contentType] = "application/x-www-form-urlencoded"
            let twice = try await client.execute(uri: "/oauth2/token", method: .post, headers: form,
                                                 body: buf(Array("grant_type=password&username=owner&password=\(ownerPassword)&username=other".utf8)))
            #expect(twice.status == .badRequest && message(twice).contains("username given twice"))
            let scopes = try await client.execute(uri: "/oauth2/token", method: .post, headers: form,
                                                  body: buf(Array("grant_type=password&username=owner&password=\(ownerPassword)&scope=repository:a:pull&scope=repository:b:pull".utf8)))
            #expect(scopes.status == .ok)
        }
    }

    @Test func getOrHeadByAnImpossibleTagIsManifestUnknown() async throws {
        try await makeApp().test(.router) { client in
            for ref in [".INVALID_MANIFEST_NAME", "-x", String(repeating: "t", count: 129)] {
                let get = try await client.execute(uri: "/v2/app/manifests/\(ref)", method: .get)
                #expect(get.status == .notFound && errorCode(get) == "MANIFEST_UNKNOWN", "\(ref)")
                let head = try await client.execute(uri: "/v2/app/manifests/\(ref)", method: .head)
                #expect(head.status == .notFound, "\(ref)")
            }
            // a push with such a tag is still a bad request, and a malformed digest stays DIGEST_INVALID
            let put = try await client.execute(uri: "/v2/app/manifests/.INVALID_MANIFEST_NAME", method: .put,
                                               headers: [.contentType: MediaType.ociManifest], body: buf(Array("{}".utf8)))
            #expect(put.status == .badRequest && errorCode(put) == "MANIFEST_INVALID")
            let digest = try await client.execute(uri: "/v2/app/manifests/sha256:zz", method: .get)
            #expect(digest.status == .badRequest && errorCode(digest) == "DIGEST_INVALID")
        }
    }

    @Test func impossibleTagsAreAuthorizedBeforeAnswering() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let anonymous = try await client.execute(uri: "/v2/app/manifests/.INVALID_MANIFEST_NAME", method: .get)
            #expect(anonymous.status == .unauthorized)
            let authorized = try await client.execute(uri: "/v2/app/manifests/.INVALID_MANIFEST_NAME", method: .get, headers: owner)
            #expect(authorized.status == .notFound && errorCode(authorized) == "MANIFEST_UNKNOWN")
        }
    }

    @Test func bodyOverTheLimitIsSizeInvalid() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let big = Array(#"{"name":""#.utf8) + Array(repeating: UInt8(ascii: "a"), count: 1 << 20) + Array(#""}"#.utf8)
            let r = try await client.execute(uri: "/api/v1/identities", method: .post, headers: owner, body: buf(big))
            #expect(r.status == .contentTooLarge && errorCode(r) == "SIZE_INVALID")
        }
    }

    @Test func auditSinceTakesTheOneDurationGrammar() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            for ok in ["1h", "1d12h", "2026-01-02T03:04:05Z"] {
                #expect(try await client.execute(uri: "/api/v1/audit?since=\(ok)", method: .get, headers: owner).status == .ok, "\(ok)")
            }
            for bad in ["30", "1.5h", "yesterday"] {
                let r = try await client.execute(uri: "/api/v1/audit?since=\(bad)", method: .get, headers: owner)
                #expect(r.status == .badRequest && message(r).contains("30m"), "\(bad)")
            }
        }
    }

    @Test func admissionReadsImageReferencesWithTheSharedGrammar() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "1", auth: owner) == .created)
            var h = owner
            h[.contentType] = "application/json"
            func allowed(_ images: [String]) async throws -> Bool {
                let r = try await client.execute(uri: "/admission/v1/validate", method: .post, headers: h,
                                                 body: buf(podReview(uid: "u", images: images)))
                #expect(r.status == .ok)
                return try JSONDecoder().decode(ReviewAnswer.self, from: Data(buffer: r.body)).response.allowed
            }
            let host = try await AdmissionTests().host(client)
            let images = ["\(host)/payments/api:1", "\(host)/payments/api", "docker.io/library/nginx:1"]
            let withoutLatest = try await allowed(images)
            #expect(!withoutLatest, "\(host)")   // HOST/payments/api means :latest, which is not there yet
            #expect(try await push(client, "payments/api", tag: "latest", auth: owner) == .created)
            let withLatest = try await allowed(images)
            #expect(withLatest)
            // malformed references to this registry are refused, not waved through as someone else's
            for bad in ["\(host)/Payments/api:1", "\(host)/payments/api@sha256:zz", "\(host)/payments/api:-1"] {
                let ok = try await allowed([bad])
                #expect(!ok, "\(bad)")
            }
        }
    }

    @Test func contentTrustPatternsAreRepositoryPatterns() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            for bad in ["Payments", "payments/*/x", "*/api", ""] {
                let r = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                                 body: buf(Array(#"{"enabled":false,"repositories":["\#(bad)"],"trustStores":{},"exempt":[]}"#.utf8)))
                #expect(r.status == .badRequest && message(r).contains("invalid repository pattern"), "\(bad)")
            }
            let ok = try await client.execute(uri: "/api/v1/content-trust", method: .put, headers: owner,
                                              body: buf(Array(#"{"enabled":false,"repositories":["payments/*","*","a/b"],"trustStores":{},"exempt":[]}"#.utf8)))
            #expect(ok.status == .ok)
        }
        #expect(ContentTrustGate.matches("payments/*", "payments/api/v2"))
        #expect(!ContentTrustGate.matches("payments/*", "payments"))
        #expect(!ContentTrustGate.matches("payments/*", "paymentsx/api"))
        #expect(ContentTrustGate.matches("*", "x"))
        #expect(!ContentTrustGate.matches("Bad", "Bad"))
    }

    @Test func transportErrorsAreTheClientsNotTheServers() {
        let malformed = ErrorRenderer.registryError(for: HTTPParserError.invalidChunkSize)
        #expect(malformed.status == 400)
        let aborted = ErrorRenderer.registryError(for: HTTPParserError.invalidEOFState)
        #expect(aborted.status == 499)
        #expect(ErrorRenderer.registryError(for: ChannelError.eof).status == 499)
        #expect(ErrorRenderer.registryError(for: NIOTooManyBytesError(maxBytes: 10)).status == 413)
        #expect(ErrorRenderer.registryError(for: CocoaError(.fileReadUnknown)).status == 500)
    }
}
