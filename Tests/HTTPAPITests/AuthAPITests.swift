import Backends
import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Testing
@testable import HTTPAPI

let ownerPassword = "owner-test-password"

func makeSecuredApp() async throws -> (some ApplicationProtocol, AccessControl) {
    let (app, access, _) = try await makeSecuredServer()
    return (app, access)
}

/// The embedded registry with access control (the owner bootstrapped with `ownerPassword`) and
/// the standard features, as a test application; the registry too, for tests that reach past HTTP.
/// `leaseHolder`: run the server's cluster-once work under leases in its store, held as that node.
func makeSecuredServer(leaseHolder: String? = nil) async throws -> (app: some ApplicationProtocol, access: AccessControl, registry: Registry) {
    let dir = tempDataDir()
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
    let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir + "/keys")
    _ = try await access.bootstrap(ownerPassword: ownerPassword)
    let leases = leaseHolder.map { LeasedRunner(store: registry.metadata as! any LeaseStore, holder: $0) }
    let app = try await BerthServer.makeApplication(registry: registry, access: access, features: standardFeatures(registry),
                                                    host: "127.0.0.1", port: 0, leases: leases, logger: logger)
    return (app, access, registry)
}

func basic(_ user: String, _ password: String) -> HTTPFields {
    [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
}

let owner = basic("owner", ownerPassword)
let testActor = Actor(name: "test", address: "-")

struct TokenBody: Decodable { let token: String; let access_token: String; let expires_in: Int; let refresh_token: String? }

func token(_ client: any TestClientProtocol, _ auth: HTTPFields, scope: String) async throws -> String {
    let r = try await client.execute(uri: "/oauth2/token?scope=\(scope)", method: .get, headers: auth)
    #expect(r.status == .ok)
    return try JSONDecoder().decode(TokenBody.self, from: Data(buffer: r.body)).token
}

func bearer(_ t: String) -> HTTPFields { [.authorization: "Bearer \(t)"] }

/// Pushes a tiny image with the given credentials; returns the last status.
func push(_ client: any TestClientProtocol, _ repo: String, tag: String, auth: HTTPFields, seed: String = "x") async throws -> HTTPResponse.Status {
    let config = Array("{\"s\":\"\(seed)\"}".utf8)
    var headers = auth
    headers[.contentLength] = String(config.count)
    let blob = try await client.execute(uri: "/v2/\(repo)/blobs/uploads/?digest=\(sha256(config))", method: .post, headers: headers, body: buf(config))
    guard blob.status == .created else { return blob.status }
    let manifest = Array("""
    {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(sha256(config))","size":\(config.count)},"layers":[]}
    """.utf8)
    var mh = auth
    mh[.contentType] = MediaType.ociManifest
    return try await client.execute(uri: "/v2/\(repo)/manifests/\(tag)", method: .put, headers: mh, body: buf(manifest)).status
}

@Suite struct AuthenticationTests {
    @Test func challengesAndTokenFlow() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let base = try await client.execute(uri: "/v2/", method: .get)
            #expect(base.status == .unauthorized && errorCode(base) == "UNAUTHORIZED")
            let challenge = base.headers[.wwwAuthenticate] ?? ""
            #expect(challenge.hasPrefix("Bearer realm=\"http://") && challenge.contains("/oauth2/token\",service=\""))
            let blob = try await client.execute(uri: "/v2/a/b/blobs/\(sha256([1]))", method: .get)
            #expect(blob.status == .unauthorized)
            #expect(blob.headers[.wwwAuthenticate]?.contains("scope=\"repository:a/b:pull\"") == true)

            #expect(try await client.execute(uri: "/v2/", method: .get, headers: owner).status == .ok)
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: basic("owner", "wrong")).status == .unauthorized)

            let t = try await token(client, owner, scope: "repository:a/b:pull,push")
            #expect(try await push(client, "a/b", tag: "v1", auth: bearer(t)) == .created)
            #expect(try await client.execute(uri: "/v2/a/b/manifests/v1", method: .get, headers: bearer(t)).status == .ok)
            let other = try await client.execute(uri: "/v2/other/tags/list", method: .get, headers: bearer(t))
            #expect(other.status == .unauthorized)
            #expect(other.headers[.wwwAuthenticate]?.contains("error=\"insufficient_scope\"") == true)
            let pullOnly = try await token(client, owner, scope: "repository:a/b:pull")
            let denied = try await client.execute(uri: "/v2/a/b/blobs/uploads/", method: .post, headers: bearer(pullOnly))
            #expect(denied.status == .unauthorized && denied.headers[.wwwAuthenticate]?.contains("insufficient_scope") == true)
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: bearer("garbage")).status == .unauthorized)
        }
    }

    @Test func passwordAndRefreshGrants() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let form = "grant_type=password&username=owner&password=\(ownerPassword)&scope=repository%3Ar%3Apull%2Cpush&access_type=offline"
            let r = try await client.execute(uri: "/oauth2/token", method: .post,
                                             headers: [.contentType: "application/x-www-form-urlencoded"], body: buf(Array(form.utf8)))
            #expect(r.status == .ok)
            let body = try JSONDecoder().decode(TokenBody.self, from: Data(buffer: r.body))
            #expect(body.token == body.access_token && body.expires_in == 300)
            let refresh = try #require(body.refresh_token)
            let r2 = try await client.execute(uri: "/oauth2/token", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                              body: buf(Array("grant_type=refresh_token&refresh_token=\(refresh)&scope=repository:r:pull,push".utf8)))
            let fresh = try JSONDecoder().decode(TokenBody.self, from: Data(buffer: r2.body))
            #expect(try await push(client, "r", tag: "t", auth: bearer(fresh.token)) == .created)
            // the refresh token works as a password for the well-known user too (docker's identity token)
            #expect(try await client.execute(uri: "/v2/r/tags/list", method: .get,
                                             headers: basic(AccessControl.refreshTokenUser, refresh)).status == .ok)
            let bad = try await client.execute(uri: "/oauth2/token", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                               body: buf(Array("grant_type=refresh_token&refresh_token=forged".utf8)))
            #expect(bad.status == .unauthorized)
            let unknownGrant = try await client.execute(uri: "/oauth2/token", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                        body: buf(Array("grant_type=client_credentials".utf8)))
            #expect(unknownGrant.status == .badRequest)
        }
    }

    @Test func tokensOfADeletedIdentityOrTokenDoNotWorkForItsNamesake() async throws {
        let (app, access) = try await makeSecuredApp()
        let (_, victimPassword) = try await access.createIdentity(testActor, name: "victim")
        _ = try await access.assignRole(testActor, assignee: "victim", role: "Pull", scope: "team/*")
        let (_, ciPasswords) = try await access.createToken(testActor, name: "ci", scopeMap: "_repositories_pull")
        try await app.test(.router) { client in
            func offline(_ auth: HTTPFields) async throws -> TokenBody {
                let r = try await client.execute(uri: "/oauth2/token?scope=repository:team/x:pull&offline_token=true",
                                                 method: .get, headers: auth)
                #expect(r.status == .ok)
                return try JSONDecoder().decode(TokenBody.self, from: Data(buffer: r.body))
            }
            let victim = try await offline(basic("victim", try #require(victimPassword)))
            let ci = try await offline(basic("ci", try #require(ciPasswords["password1"])))
            for old in [victim, ci] {
                #expect(try await client.execute(uri: "/v2/", method: .get, headers: bearer(old.token)).status == .ok)
            }
            // both go, and come back under the same names with more rights
            try await access.deleteIdentity(testActor, name: "victim")
            _ = try await access.createIdentity(testActor, name: "victim")
            _ = try await access.assignRole(testActor, assignee: "victim", role: "Owner", scope: "*")
            try await access.deleteToken(testActor, name: "ci")
            _ = try await access.createToken(testActor, name: "ci", scopeMap: "_repositories_admin")
            for old in [victim, ci] {
                let form = "grant_type=refresh_token&refresh_token=\(try #require(old.refresh_token))&scope=repository:team/x:pull,push,delete"
                let refreshed = try await client.execute(uri: "/oauth2/token", method: .post,
                                                         headers: [.contentType: "application/x-www-form-urlencoded"],
                                                         body: buf(Array(form.utf8)))
                #expect(refreshed.status == .unauthorized)
                #expect(try await client.execute(uri: "/v2/", method: .get, headers: bearer(old.token)).status == .unauthorized)
                #expect(try await client.execute(uri: "/v2/", method: .get,
                                                 headers: basic(AccessControl.refreshTokenUser, try #require(old.refresh_token))).status
                        == .unauthorized)
            }
        }
    }

    @Test func garbageRefreshTokensDoNotLockOutEveryRefreshGrant() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let form = [.contentType: "application/x-www-form-urlencoded"] as HTTPFields
            let login = try await client.execute(uri: "/oauth2/token", method: .post, headers: form, body: buf(Array(
                "grant_type=password&username=owner&password=\(ownerPassword)&access_type=offline".utf8)))
            let refresh = try #require(try JSONDecoder().decode(TokenBody.self, from: Data(buffer: login.body)).refresh_token)
            for i in 0..<12 {
                let bad = try await client.execute(uri: "/oauth2/token", method: .post, headers: form,
                                                   body: buf(Array("grant_type=refresh_token&refresh_token=garbage\(i)".utf8)))
                #expect(bad.status == .unauthorized)
                #expect(try await client.execute(uri: "/v2/", method: .get,
                                                 headers: basic(AccessControl.refreshTokenUser, "garbage\(i)")).status == .unauthorized)
            }
            let good = try await client.execute(uri: "/oauth2/token", method: .post, headers: form,
                                                body: buf(Array("grant_type=refresh_token&refresh_token=\(refresh)".utf8)))
            #expect(good.status == .ok)
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: basic(AccessControl.refreshTokenUser, refresh)).status == .ok)
        }
    }

    @Test func tokenAudienceIsTheConfiguredServiceNeverTheHostHeader() async throws {
        // listening on 127.0.0.1:0, reached as "localhost" (the test client's Host)
        let (app, access) = try await makeSecuredApp()
        let configured = "127.0.0.1:0"
        try await app.test(.router) { client in
            let challenge = try await client.execute(uri: "/v2/", method: .get).headers[.wwwAuthenticate] ?? ""
            #expect(challenge.contains("service=\"\(configured)\""))
            #expect(challenge.contains("realm=\"http://localhost/oauth2/token\""))   // the realm still follows the request
            // a token asked for the service the Host header names is still only for the configured one
            let r = try await client.execute(uri: "/oauth2/token?service=localhost&scope=repository:a/b:pull", method: .get, headers: owner)
            #expect(r.status == .ok)
            let issued = try JSONDecoder().decode(TokenBody.self, from: Data(buffer: r.body)).token
            let claims = String(issued.split(separator: ".")[1])
            let padded = claims.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                + String(repeating: "=", count: (4 - claims.count % 4) % 4)
            struct Audience: Decodable { let aud: String }
            #expect(try JSONDecoder().decode(Audience.self, from: try #require(Data(base64Encoded: padded))).aud == configured)
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: bearer(issued)).status == .ok)
            // a genuine token for the service named by the Host header is refused
            let foreign = try await access.issueToken(try #require(access.current(subject: "identity:owner")), audience: "localhost",
                                                      type: "access", access: [])
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: bearer(foreign.token)).status == .unauthorized)
        }
    }

    @Test func serviceNameComesFromConfiguration() {
        #expect(AuthGate.serviceName(configured: "berth.internal", publicURL: "https://registry.example.com", listen: ("0.0.0.0", 5000))
                == "berth.internal")
        #expect(AuthGate.serviceName(configured: nil, publicURL: "https://registry.example.com", listen: ("0.0.0.0", 5000))
                == "registry.example.com")
        #expect(AuthGate.serviceName(configured: nil, publicURL: "https://registry.example.com:8443/", listen: nil) == "registry.example.com:8443")
        #expect(AuthGate.serviceName(configured: nil, publicURL: nil, listen: ("10.0.0.5", 5000)) == "10.0.0.5:5000")
        #expect(AuthGate.serviceName(configured: nil, publicURL: nil, listen: ("::1", 5000)) == "[::1]:5000")
        #expect(AuthGate.validServiceName("registry.example.com:5000"))
        for bad in ["", "a b", "a\"b", "a\\b", String(repeating: "a", count: 256), "é"] {
            #expect(!AuthGate.validServiceName(bad))
        }
    }

    @Test func failedLoginsAreRateLimited() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            for _ in 0..<10 {
                #expect(try await client.execute(uri: "/v2/", method: .get, headers: basic("owner", "nope")).status == .unauthorized)
            }
            let limited = try await client.execute(uri: "/v2/", method: .get, headers: basic("owner", "nope"))
            #expect(limited.status == .tooManyRequests && errorCode(limited) == "TOOMANYREQUESTS")
            #expect(Int(limited.headers[HTTPField.Name("Retry-After")!] ?? "") ?? 0 > 0)
            // even the right password waits: the name is locked for the window
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: owner).status == .tooManyRequests)
        }
    }
}

@Suite struct AuthorizationTests {
    @Test func scopeMapTokensAreLeastPrivilege() async throws {
        let (app, access) = try await makeSecuredApp()
        let entry = AccessState.ScopeMap.Entry(repository: try RepositoryPattern("payments/*"), actions: ["content/read", "metadata/read"])
        _ = try await access.putScopeMap(testActor, name: "payments-pull", description: nil, entries: [entry], create: true)
        let (_, pw) = try await access.createToken(testActor, name: "ci", scopeMap: "payments-pull")
        let ci = basic("ci", pw["password1"]!)
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "1", auth: owner) == .created)
            #expect(try await push(client, "billing/api", tag: "1", auth: owner) == .created)
            #expect(try await client.execute(uri: "/v2/payments/api/manifests/1", method: .get, headers: ci).status == .ok)
            let billing = try await client.execute(uri: "/v2/billing/api/manifests/1", method: .get, headers: ci)
            #expect(billing.status == .forbidden && errorCode(billing) == "DENIED")
            let pushed = try await client.execute(uri: "/v2/payments/api/blobs/uploads/", method: .post, headers: ci)
            #expect(pushed.status == .forbidden && errorCode(pushed) == "DENIED")
            let del = try await client.execute(uri: "/v2/payments/api/manifests/1", method: .delete, headers: ci)
            #expect(del.status == .forbidden)
            // the catalog shows only what the caller may read
            struct Catalog: Decodable { let repositories: [String] }
            let mine = try JSONDecoder().decode(Catalog.self, from: Data(buffer: try await client.execute(uri: "/v2/_catalog", method: .get, headers: ci).body))
            #expect(mine.repositories == ["payments/api"])
            let all = try JSONDecoder().decode(Catalog.self, from: Data(buffer: try await client.execute(uri: "/v2/_catalog", method: .get, headers: owner).body))
            #expect(all.repositories == ["billing/api", "payments/api"])
            // a token for the catalog scope lists by the principal's rights
            let t = try await token(client, ci, scope: "registry:catalog:*")
            let viaToken = try JSONDecoder().decode(Catalog.self, from: Data(buffer: try await client.execute(uri: "/v2/_catalog", method: .get, headers: bearer(t)).body))
            #expect(viaToken.repositories == ["payments/api"])
            // the token endpoint never grants more than the map allows
            let narrow = try await token(client, ci, scope: "repository:payments/api:pull,push,delete")
            #expect(try await client.execute(uri: "/v2/payments/api/blobs/uploads/", method: .post, headers: bearer(narrow)).status != .accepted)
        }
    }

    @Test func mountNeedsReadAccessToTheSource() async throws {
        let (app, access) = try await makeSecuredApp()
        _ = try await access.createIdentity(testActor, name: "dev", withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: "dev")
        _ = try await access.assignRole(testActor, assignee: "dev", role: "Push", scope: "dev/*")
        let dev = basic("dev", password)
        try await app.test(.router) { client in
            let secret = Array(repeating: UInt8(7), count: 100)
            var h = owner
            h[.contentLength] = "100"
            _ = try await client.execute(uri: "/v2/secret/repo/blobs/uploads/?digest=\(sha256(secret))", method: .post, headers: h, body: buf(secret))
            let mount = try await client.execute(uri: "/v2/dev/x/blobs/uploads/?mount=\(sha256(secret))&from=secret/repo", method: .post, headers: dev)
            #expect(mount.status == .accepted)   // fell back to an upload session: nothing leaked
            #expect(try await client.execute(uri: "/v2/dev/x/blobs/\(sha256(secret))", method: .head, headers: dev).status == .notFound)
            let ownerMount = try await client.execute(uri: "/v2/dev/x/blobs/uploads/?mount=\(sha256(secret))&from=secret/repo", method: .post, headers: owner)
            #expect(ownerMount.status == .created)
        }
    }

    @Test func signersPushReferrersOnly() async throws {
        let (app, access) = try await makeSecuredApp()
        _ = try await access.createIdentity(testActor, name: "signer", withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: "signer")
        _ = try await access.assignRole(testActor, assignee: "signer", role: "ImageSigner", scope: "apps/*")
        let signer = basic("signer", password)
        try await app.test(.router) { client in
            let v2 = V2(client: client)
            #expect(try await push(client, "apps/web", tag: "1", auth: owner) == .created)
            let subject = try await client.execute(uri: "/v2/apps/web/manifests/1", method: .get, headers: owner)
            let subjectDigest = subject.headers[.testDigest]!
            // blobs may be uploaded, a plain image may not be pushed
            #expect(try await push(client, "apps/web", tag: "2", auth: signer, seed: "y") == .forbidden)
            let signature = v2.imageManifest(config: Array("{\"s\":\"y\"}".utf8), layers: [], subject: (subjectDigest, subject.body.readableBytes),
                                             artifactType: "application/vnd.cncf.notary.signature")
            var h = signer
            h[.contentType] = MediaType.ociManifest
            let put = try await client.execute(uri: "/v2/apps/web/manifests/\(sha256(signature))", method: .put, headers: h, body: buf(signature))
            #expect(put.status == .created)
            let byTag = try await client.execute(uri: "/v2/apps/web/manifests/sig", method: .put, headers: h, body: buf(signature))
            #expect(byTag.status == .forbidden)
        }
    }

    @Test func anonymousPullIsOffUntilEnabled() async throws {
        let (app, access) = try await makeSecuredApp()
        try await app.test(.router) { client in
            #expect(try await push(client, "pub/x", tag: "1", auth: owner) == .created)
            #expect(try await client.execute(uri: "/v2/pub/x/manifests/1", method: .get).status == .unauthorized)
            #expect(try await client.execute(uri: "/oauth2/token?scope=repository:pub/x:pull", method: .get).status == .unauthorized)
            var change = SettingsChange()
            change.anonymousPullEnabled = true
            _ = try await access.updateSettings(testActor, change)
            #expect(try await client.execute(uri: "/v2/pub/x/manifests/1", method: .get).status == .ok)
            let t = try await token(client, [:], scope: "repository:pub/x:pull,push")
            #expect(try await client.execute(uri: "/v2/pub/x/manifests/1", method: .get, headers: bearer(t)).status == .ok)
            #expect(try await push(client, "pub/x", tag: "2", auth: bearer(t)) == .unauthorized)
            #expect(try await push(client, "pub/x", tag: "2", auth: [:]) == .unauthorized)
        }
    }
}

@Suite struct ManagementAPITests {
    @Test func ownerManagesReaderReadsOthersAreRefused() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            #expect(try await client.execute(uri: "/api/v1/identities", method: .get).status == .unauthorized)
            let created = try await client.execute(uri: "/api/v1/identities", method: .post, headers: owner,
                                                   body: buf(Array(#"{"name":"auditor"}"#.utf8)))
            #expect(created.status == .created)
            struct Created: Decodable { let password: String }
            let password = try JSONDecoder().decode(Created.self, from: Data(buffer: created.body)).password
            let auditor = basic("auditor", password)
            #expect(try await client.execute(uri: "/api/v1/identities", method: .get, headers: auditor).status == .forbidden)
            let assign = try await client.execute(uri: "/api/v1/role-assignments", method: .post, headers: owner,
                                                  body: buf(Array(#"{"assignee":"auditor","role":"Reader","scope":"*"}"#.utf8)))
            #expect(assign.status == .created)
            let list = try await client.execute(uri: "/api/v1/identities", method: .get, headers: auditor)
            #expect(list.status == .ok)
            let text = String(buffer: list.body)
            #expect(text.contains("\"auditor\"") && !text.contains("$2") && !text.contains(password))
            #expect(try await client.execute(uri: "/api/v1/registry", method: .patch, headers: auditor,
                                             body: buf(Array(#"{"adminUserEnabled":true}"#.utf8))).status == .forbidden)
            let bad = try await client.execute(uri: "/api/v1/scope-maps", method: .post, headers: owner, body: buf(Array("{not json".utf8)))
            #expect(bad.status == .badRequest)
            let unknown = try await client.execute(uri: "/api/v1/tokens/nope", method: .get, headers: owner)
            #expect(unknown.status == .notFound)
            #expect(try await push(client, "audited/repo", tag: "v1", auth: owner) == .created)
            let audit = String(buffer: try await client.execute(uri: "/api/v1/audit?since=1h", method: .get, headers: owner).body)
            #expect(audit.contains("identity.create") && audit.contains("role.assign") && audit.contains("denied"))
            // content writes carry who made them
            struct Record: Decodable { let actor: String; let action: String; let target: String }
            let records = try JSONDecoder().decode([Record].self, from: Data(audit.utf8))
            #expect(records.contains { $0.action == "push" && $0.actor == "identity:owner" && $0.target.hasPrefix("audited/repo:v1@sha256:") })
        }
    }
}

extension ManagementAPITests {
    @Test func theLastOwnerCannotRemoveItself() async throws {
        let (app, access) = try await makeSecuredApp()
        try await app.test(.router) { client in
            for (method, uri, body) in [(HTTPRequest.Method.delete, "/api/v1/role-assignments?assignee=owner&role=Owner&scope=*", ""),
                                        (.patch, "/api/v1/identities/owner", #"{"enabled":false}"#),
                                        (.delete, "/api/v1/identities/owner", "")] {
                let r = try await client.execute(uri: uri, method: method, headers: owner, body: buf(Array(body.utf8)))
                struct Envelope: Decodable { struct E: Decodable { let code: String; let message: String }; let error: E }
                let answer = try JSONDecoder().decode(Envelope.self, from: Data(buffer: r.body))
                #expect(r.status == .conflict && answer.error.code == "CONFLICT", "\(method) \(uri)")
                #expect(answer.error.message.contains("Owner on *"))
            }
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: owner).status == .ok)
            #expect(access.state.identities["owner"]?.roles.map(\.role) == [.owner])
        }
    }
}

@Suite struct NetworkLockdownTests {
    @Test func forwardedAddressesFromTrustedProxiesAreJudged() async throws {
        let (app, access) = try await makeSecuredApp()
        var change = SettingsChange()
        change.publicNetworkEnabled = false
        change.trustedProxies = ["127.0.0.1/32", "::1/128"]
        _ = try await access.updateSettings(testActor, change)
        _ = try await access.createIdentity(testActor, name: "scanner", trustedService: true, withPassword: false)
        let scannerPassword = try await access.resetIdentityPassword(testActor, name: "scanner")
        _ = try await access.assignRole(testActor, assignee: "scanner", role: "Pull", scope: "*")
        try await app.test(.live) { client in
            var outside = owner
            outside[.xForwardedFor] = "203.0.113.7"
            let refused = try await client.execute(uri: "/v2/", method: .get, headers: outside)
            #expect(refused.status == .forbidden && errorCode(refused) == "DENIED")
            #expect(String(buffer: refused.body).contains("203.0.113.7"))
            var inside = owner
            inside[.xForwardedFor] = "10.1.2.3"
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: inside).status == .ok)
            var trusted = basic("scanner", scannerPassword)
            trusted[.xForwardedFor] = "198.51.100.9"
            #expect(try await client.execute(uri: "/v2/_catalog", method: .get, headers: trusted).status == .ok)
            _ = try await access.addNetworkRule(testActor, "203.0.113.0/24")
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: outside).status == .ok)
            // a change that would shut out the caller's own address is refused
            let lockout = try await client.execute(uri: "/api/v1/registry", method: .patch, headers: outside,
                                                   body: buf(Array(#"{"networkDefaultAction":"Deny"}"#.utf8)))
            #expect(lockout.status == .ok)   // 203.0.113.7 has its own rule, so Deny does not block it
            let refusedChange = try await client.execute(uri: "/api/v1/network-rules?ipAddress=203.0.113.0/24", method: .delete, headers: outside)
            #expect(refusedChange.status == .conflict)
            #expect(try await client.execute(uri: "/v2/", method: .get, headers: outside).status == .ok)
        }
    }
}
