import SQLiteStore
import Crypto
import Foundation
import Testing
import OCIModel
import RegistryStore
@testable import Access

func makeAccess() async throws -> (AccessControl, String) {
    let dir = NSTemporaryDirectory() + "berth-access-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let store = try SQLiteMetadataStore(path: dir + "/metadata.sqlite")
    let access = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
    return (access, dir)
}

let admin = Actor(name: "test", address: "127.0.0.1")
let here = IPAddress("127.0.0.1")

func b64url(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

@Suite struct AccessControlTests {
    @Test func bootstrapCreatesOwnerOnce() async throws {
        let (access, _) = try await makeAccess()
        let generated = try await access.bootstrap(ownerPassword: nil)
        #expect(generated != nil)
        #expect(try await access.bootstrap(ownerPassword: "x") == nil)
        let (p, subject) = try await access.authenticate(username: "owner", password: generated!, address: here, service: "s")
        #expect(subject == "identity:owner" && p.registryActions == .all)
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: "owner", password: "nope", address: here, service: "s")
        }
    }

    @Test func stateSurvivesReopen() async throws {
        let (access, dir) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw-1")
        _ = try await access.putScopeMap(admin, name: "m", description: nil,
                                         entries: [.init(repository: try RepositoryPattern("a/*"), actions: ["content/read"])], create: true)
        let store = try SQLiteMetadataStore(path: dir + "/metadata.sqlite")
        let reopened = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        #expect(reopened.state.scopeMaps["m"] != nil)
        #expect(try await reopened.authenticate(username: "owner", password: "pw-1", address: here, service: "s").subject == "identity:owner")
    }

    @Test func tokensWithTwoPasswordsExpiryAndStatus() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.putScopeMap(admin, name: "pay", description: nil, entries: [
            .init(repository: try RepositoryPattern("payments/*"), actions: ["content/read", "metadata/read"]),
        ], create: true)
        let (_, pw) = try await access.createToken(admin, name: "ci", scopeMap: "pay")
        let (p, _) = try await access.authenticate(username: "ci", password: pw["password1"]!, address: here, service: "s")
        #expect(p.may(.contentRead, on: "payments/api"))
        #expect(!p.may(.contentRead, on: "billing/api"))
        #expect(!p.may(.contentWrite, on: "payments/api"))
        // expire password1 by rewriting it with a past expiry; password2 still works
        try await access.update(audit: AuditRecord(actor: "t", address: "-", action: "x", target: "ci", outcome: "ok")) { s in
            s.tokens["ci"]!.password1!.expiry = Date(timeIntervalSinceNow: -1)
        }
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: "ci", password: pw["password1"]!, address: here, service: "s")
        }
        _ = try await access.authenticate(username: "ci", password: pw["password2"]!, address: here, service: "s")
        _ = try await access.updateToken(admin, name: "ci", enabled: false, scopeMap: nil)
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: "ci", password: pw["password2"]!, address: here, service: "s")
        }
        await #expect(throws: AccessError.self) { try await access.deleteScopeMap(admin, name: "pay") }   // in use
        await #expect(throws: AccessError.self) { try await access.deleteScopeMap(admin, name: "_repositories_pull") }
    }

    @Test func adminUserIsOffUntilEnabled() async throws {
        let (access, _) = try await makeAccess()
        let secret = try await access.generatePassword(admin, token: nil, which: "password1", expiresInDays: 30)
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: "berth", password: secret, address: here, service: "s")
        }
        var change = SettingsChange()
        change.adminUserEnabled = true
        _ = try await access.updateSettings(admin, change)
        #expect(try await access.authenticate(username: "berth", password: secret, address: here, service: "s").subject == "admin")
    }

    @Test func refreshTokensDieWithTheirIdentity() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.createIdentity(admin, name: "dev")
        _ = try await access.assignRole(admin, assignee: "dev", role: "Push", scope: "team/*")
        let dev = try #require(access.current(subject: "identity:dev"))
        let refresh = try await access.issueToken(dev, audience: "svc", type: "refresh", access: nil)
        let (p, _) = try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: here, service: "svc")
        #expect(p.may(.contentWrite, on: "team/x"))
        // wrong audience
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: here, service: "other")
        }
        let accessToken = try await access.issueToken(dev, audience: "svc", type: "access",
                                                      access: [AccessClaim(type: "repository", name: "team/x", actions: ["pull"])])
        #expect(await access.authenticateBearer(accessToken.token, service: "svc", address: here) != nil)
        // a refresh token is not an access token and vice versa
        #expect(await access.authenticateBearer(refresh.token, service: "svc", address: here) == nil)
        _ = try await access.updateIdentity(admin, name: "dev", enabled: false, trustedService: nil)
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: here, service: "svc")
        }
        #expect(await access.authenticateBearer(accessToken.token, service: "svc", address: here) == nil)
        // re-enabling does not revive tokens of the old generation
        _ = try await access.updateIdentity(admin, name: "dev", enabled: true, trustedService: nil)
        #expect(await access.authenticateBearer(accessToken.token, service: "svc", address: here) == nil)
    }

    @Test func forgedTokensAreRejected() async throws {
        let (access, dir) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        let now = Int(Date().timeIntervalSince1970)
        let claims: [String: Any] = ["iss": "berth", "sub": "identity:owner", "aud": ["svc"], "exp": now + 300, "nbf": now - 1,
                                     "iat": now, "jti": "x", "typ": "access", "gen": 0,
                                     "access": [["type": "repository", "name": "a", "actions": ["*"]]]]
        let payload = b64url(try JSONSerialization.data(withJSONObject: claims))
        // alg: none
        let none = b64url(Data(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "." + payload + "."
        #expect(await access.authenticateBearer(none, service: "svc", address: here) == nil)
        // HS256 signed with the public key (algorithm confusion)
        let kid = access.tokens.currentKeyID
        let shared = SharedKeyMaterial(store: try SQLiteMetadataStore(path: dir + "/metadata.sqlite"),
                                       kek: try KeyEncryptionKey.read(path: dir + "/keys/" + KeyEncryptionKey.defaultFile))
        let loaded = try #require(try await shared.load(TokenService.keyMaterialName))
        let pem = try #require(try JSONDecoder().decode(TokenService.StoredKeys.self, from: loaded.plaintext).keys.first { $0.kid == kid }).pem
        let publicPEM = try P256.Signing.PrivateKey(pemRepresentation: pem).publicKey.pemRepresentation
        let header = b64url(Data("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\(kid)\"}".utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data((header + "." + payload).utf8), using: SymmetricKey(data: Data(publicPEM.utf8)))
        let confused = header + "." + payload + "." + b64url(Data(mac))
        #expect(await access.authenticateBearer(confused, service: "svc", address: here) == nil)
        // a genuine token with a flipped payload byte
        let ownerNow = try #require(access.current(subject: "identity:owner"))
        let good = try await access.issueToken(ownerNow, audience: "svc", type: "access", access: [])
        var parts = good.token.split(separator: ".").map(String.init)
        parts[1] = payload
        #expect(await access.authenticateBearer(parts.joined(separator: "."), service: "svc", address: here) == nil)
        #expect(await access.authenticateBearer(good.token, service: "svc", address: here) != nil)
        // expired, not yet valid, wrong issuer (signed by our own key, so only the claims are wrong)
        let expired = try await access.issueToken(ownerNow, audience: "svc", type: "access",
                                                  access: [], now: Date(timeIntervalSinceNow: -3600))
        #expect(await access.authenticateBearer(expired.token, service: "svc", address: here) == nil)
        let future = try await access.issueToken(ownerNow, audience: "svc", type: "access",
                                                 access: [], now: Date(timeIntervalSinceNow: 3600))
        #expect(await access.authenticateBearer(future.token, service: "svc", address: here) == nil)
        #expect(await access.authenticateBearer(good.token, service: "other-service", address: here) == nil)
        #expect(await access.authenticateBearer("not.a.jwt", service: "svc", address: here) == nil)
        #expect(await access.authenticateBearer(String(repeating: "a", count: 100_000), service: "svc", address: here) == nil)
    }

    @Test func keyRotationKeepsOldTokensValid() async throws {
        let (access, dir) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        let before = try await access.issueToken(try #require(access.current(subject: "identity:owner")), audience: "svc",
                                                 type: "access", access: [])
        let oldKid = access.tokens.currentKeyID
        let newKid = try await access.rotateSigningKey(admin)
        #expect(newKid != oldKid)
        #expect(await access.authenticateBearer(before.token, service: "svc", address: here) != nil)
        let store = try SQLiteMetadataStore(path: dir + "/metadata.sqlite")
        let reopened = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        #expect(reopened.tokens.currentKeyID == newKid)
        #expect(await reopened.authenticateBearer(before.token, service: "svc", address: here) != nil)
    }

    @Test func decisions() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.createIdentity(admin, name: "puller")
        _ = try await access.assignRole(admin, assignee: "puller", role: "Pull", scope: "apps/*")
        _ = try await access.createIdentity(admin, name: "scanner", trustedService: true)
        _ = try await access.assignRole(admin, assignee: "scanner", role: "Pull", scope: "*")
        let puller = Caller(principal: access.principal(subject: "identity:puller", generation: nil)!, address: here)
        #expect(access.decide(caller: puller, address: here, repository: "apps/web", action: .contentRead) == .allow)
        #expect(access.decide(caller: puller, address: here, repository: "apps/web", action: .contentWrite)
                == .deny("requested access to the resource is denied"))
        #expect(access.decide(caller: nil, address: here, repository: "apps/web", action: .contentRead) == .challenge(insufficientScope: false))
        // a token narrower than the principal: insufficient scope
        var narrow = puller
        narrow.tokenAccess = [AccessClaim(type: "repository", name: "apps/other", actions: ["pull"])]
        #expect(access.decide(caller: narrow, address: here, repository: "apps/web", action: .contentRead) == .challenge(insufficientScope: true))
        // anonymous pull
        var change = SettingsChange()
        change.anonymousPullEnabled = true
        _ = try await access.updateSettings(admin, change)
        #expect(access.decide(caller: nil, address: here, repository: "x", action: .contentRead) == .allow)
        #expect(access.decide(caller: nil, address: here, repository: "x", action: .contentWrite) == .challenge(insufficientScope: false))
        // network lock-down: public off, a public address is refused with its address named
        change = SettingsChange()
        change.publicNetworkEnabled = false
        _ = try await access.updateSettings(admin, change)
        let outside = IPAddress("203.0.113.9")
        guard case .deny(let reason) = access.decide(caller: puller, address: outside, repository: "apps/web", action: .contentRead) else {
            Issue.record("expected a denial"); return
        }
        #expect(reason.contains("203.0.113.9"))
        #expect(access.decide(caller: puller, address: IPAddress("10.1.1.1"), repository: "apps/web", action: .contentRead) == .allow)
        _ = try await access.addNetworkRule(admin, "203.0.113.0/24")
        #expect(access.decide(caller: puller, address: outside, repository: "apps/web", action: .contentRead) == .allow)
        let scanner = Caller(principal: access.principal(subject: "identity:scanner", generation: nil)!, address: IPAddress("198.51.100.1"))
        #expect(access.decide(caller: scanner, address: IPAddress("198.51.100.1"), repository: "apps/web", action: .contentRead) == .allow)
        change = SettingsChange()
        change.allowTrustedServices = false
        _ = try await access.updateSettings(admin, change)
        #expect(access.decide(caller: scanner, address: IPAddress("198.51.100.1"), repository: "apps/web", action: .contentRead) != .allow)
    }

    @Test func grantedAccessNeverExceedsThePrincipal() async throws {
        let (access, _) = try await makeAccess()
        let p = Principal(kind: .token, name: "t", grants: [Grant(try RepositoryPattern("a/*"), [.contentRead, .metadataRead])])
        let granted = access.grantedAccess(principal: p, requested: [
            ScopeRequest(type: "repository", name: "a/b", actions: ["pull", "push", "delete"]),
            ScopeRequest(type: "repository", name: "c", actions: ["pull"]),
            ScopeRequest(type: "repository", name: "a/c", actions: ["*"]),
            ScopeRequest(type: "registry", name: "management", actions: ["*"]),
        ])
        #expect(granted == [AccessClaim(type: "repository", name: "a/b", actions: ["pull"]),
                            AccessClaim(type: "repository", name: "a/c", actions: ["pull"])])
    }

    @Test func namesAreValidatedAndUnique() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.createIdentity(admin, name: "dup")
        await #expect(throws: AccessError.self) { try await access.createIdentity(admin, name: "dup") }
        await #expect(throws: AccessError.self) { try await access.createToken(admin, name: "dup", scopeMap: "_repositories_pull") }
        await #expect(throws: AccessError.self) { try await access.createIdentity(admin, name: "berth") }
        await #expect(throws: AccessError.self) { try await access.createIdentity(admin, name: "Bad Name") }
        await #expect(throws: AccessError.self) { try await access.assignRole(admin, assignee: "dup", role: "God", scope: "*") }
        await #expect(throws: AccessError.self) {
            try await access.putScopeMap(admin, name: "m", description: nil,
                                         entries: [.init(repository: try RepositoryPattern("*"), actions: ["content/everything"])], create: true)
        }
    }

    @Test func tokensDieWithTheRecordNotTheName() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.createIdentity(admin, name: "victim")
        _ = try await access.assignRole(admin, assignee: "victim", role: "Pull", scope: "team/*")
        let victim = try #require(access.current(subject: "identity:victim"))
        let refresh = try await access.issueToken(victim, audience: "svc", type: "refresh", access: nil)
        let bearer = try await access.issueToken(victim, audience: "svc", type: "access", access: [])
        _ = try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: here, service: "svc")
        // delete, then a new identity of the same name with other rights: same name, same generation (0)
        try await access.deleteIdentity(admin, name: "victim")
        _ = try await access.createIdentity(admin, name: "victim")
        _ = try await access.assignRole(admin, assignee: "victim", role: "Owner", scope: "*")
        let reborn = try #require(access.current(subject: "identity:victim"))
        #expect(reborn.generation == victim.generation && reborn.subjectID != victim.subjectID)
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: here, service: "svc")
        }
        #expect(await access.authenticateBearer(bearer.token, service: "svc", address: here) == nil)
        // tokens of the new identity work
        let fresh = try await access.issueToken(reborn, audience: "svc", type: "access", access: [])
        #expect(await access.authenticateBearer(fresh.token, service: "svc", address: here)?.principal.registryActions == .all)

        // the same for scope-map tokens
        _ = try await access.createToken(admin, name: "ci", scopeMap: "_repositories_pull")
        let ci = try #require(access.current(subject: "token:ci"))
        let ciRefresh = try await access.issueToken(ci, audience: "svc", type: "refresh", access: nil)
        let ciBearer = try await access.issueToken(ci, audience: "svc", type: "access", access: [])
        #expect(await access.authenticateBearer(ciBearer.token, service: "svc", address: here) != nil)
        try await access.deleteToken(admin, name: "ci")
        _ = try await access.createToken(admin, name: "ci", scopeMap: "_repositories_admin")
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: AccessControl.refreshTokenUser, password: ciRefresh.token, address: here, service: "svc")
        }
        #expect(await access.authenticateBearer(ciBearer.token, service: "svc", address: here) == nil)
    }

    @Test func tokensWithoutASubjectIDAreRefused() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        let owner = try #require(access.current(subject: "identity:owner"))
        // what a token issued before subject ids existed looks like: right name and generation, no id
        let legacy = try await access.tokens.issue(subject: "identity:owner", subjectID: nil, audience: "svc", type: "access",
                                                   generation: owner.generation, access: [])
        #expect(await access.authenticateBearer(legacy.token, service: "svc", address: here) == nil)
        let forged = try await access.tokens.issue(subject: "identity:owner", subjectID: UUID().uuidString, audience: "svc",
                                                   type: "access", generation: owner.generation, access: [])
        #expect(await access.authenticateBearer(forged.token, service: "svc", address: here) == nil)
    }

    @Test func recordsWithoutSubjectIDsGetOneOnLoadThatSticks() async throws {
        let (access, dir) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        _ = try await access.createToken(admin, name: "ci", scopeMap: "_repositories_pull")
        // rewrite the stored document as an older Berth wrote it: no subject ids
        let store = try SQLiteMetadataStore(path: dir + "/metadata.sqlite")
        let (version, document) = try #require(try await store.loadAccessState())
        var json = try #require(try JSONSerialization.jsonObject(with: document) as? [String: Any])
        for key in ["identities", "tokens"] {
            var records = try #require(json[key] as? [String: [String: Any]])
            for name in records.keys { records[name]!["subjectID"] = nil }
            json[key] = records
        }
        let legacy = try JSONSerialization.data(withJSONObject: json)
        #expect(try await store.storeAccessState(legacy, expectedVersion: version, audit: nil))
        #expect(!String(decoding: legacy, as: UTF8.self).contains("subjectID"))

        let reopened = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        let ownerID = try #require(reopened.state.identities["owner"]?.subjectID)
        let ciID = try #require(reopened.state.tokens["ci"]?.subjectID)
        #expect(ownerID != ciID)
        // stored, not only given in memory: a second start sees the same ids
        let again = try await AccessControl.open(store: try SQLiteMetadataStore(path: dir + "/metadata.sqlite"), keyDirectory: dir + "/keys")
        #expect(again.state.identities["owner"]?.subjectID == ownerID && again.state.tokens["ci"]?.subjectID == ciID)
        #expect(try await again.audit(since: Date(timeIntervalSinceNow: -60), limit: 100).contains { $0.action == "access.migrate" })
    }
}

@Suite struct FailedLoginLimitTests {
    func limited(_ body: () async throws -> Void) async -> Bool {
        do { try await body() } catch AccessError.rateLimited { return true } catch { return false }
        return false
    }

    @Test func garbageRefreshTokensDoNotLockOutOtherRefreshTokens() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        let refresh = try await access.issueToken(try #require(access.current(subject: "identity:owner")), audience: "svc",
                                                  type: "refresh", access: nil)
        let attacker = IPAddress("203.0.113.66"), victim = IPAddress("198.51.100.7")
        for i in 0..<12 {
            await #expect(throws: AccessError.invalidCredentials) {
                try await access.authenticate(username: AccessControl.refreshTokenUser, password: "garbage-\(i)", address: attacker, service: "svc")
            }
        }
        // the well-known name is not locked: a good refresh token works from anywhere
        #expect(try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: victim,
                                              service: "svc").subject == "identity:owner")
        #expect(try await access.authenticate(username: AccessControl.refreshTokenUser, password: refresh.token, address: attacker,
                                              service: "svc").subject == "identity:owner")
        // the same for the OIDC user
        for i in 0..<12 {
            await #expect(throws: AccessError.invalidCredentials) {
                try await access.authenticate(username: AccessControl.oidcTokenUser, password: "garbage-\(i)", address: victim, service: "svc")
            }
        }
        // one token presented over and over is what gets locked
        for _ in 0..<10 {
            _ = try? await access.authenticate(username: AccessControl.refreshTokenUser, password: "same", address: victim, service: "svc")
        }
        #expect(await limited { _ = try await access.authenticate(username: AccessControl.refreshTokenUser, password: "same", address: victim, service: "svc") })
    }

    @Test func aNameIsLockedOnlyForTheAddressesThatFailed() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        let attacker = IPAddress("203.0.113.66"), owner = IPAddress("198.51.100.7")
        for _ in 0..<10 {
            _ = try? await access.authenticate(username: "owner", password: "guess", address: attacker, service: "svc")
        }
        #expect(await limited { _ = try await access.authenticate(username: "owner", password: "pw", address: attacker, service: "svc") })
        #expect(try await access.authenticate(username: "owner", password: "pw", address: owner, service: "svc").subject == "identity:owner")
    }

    @Test func oneAddressSprayingManyNamesIsStopped() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        let sprayer = IPAddress("203.0.113.66")
        for i in 0..<FailureLimiter.perAddress {
            _ = try? await access.authenticate(username: "user\(i)", password: "guess", address: sprayer, service: "svc")
        }
        #expect(await limited { _ = try await access.authenticate(username: "owner", password: "pw", address: sprayer, service: "svc") })
        #expect(try await access.authenticate(username: "owner", password: "pw", address: IPAddress("198.51.100.7"),
                                              service: "svc").subject == "identity:owner")
    }
}

@Suite struct LastOwnerTests {
    @Test func theLastEnabledOwnerCannotBeRemovedDisabledOrDeleted() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        // the admin user does not count as a way to manage the registry
        var change = SettingsChange()
        change.adminUserEnabled = true
        _ = try await access.updateSettings(admin, change)
        for attempt in [
            { try await access.removeRole(admin, assignee: "owner", role: "Owner", scope: "*") },
            { _ = try await access.updateIdentity(admin, name: "owner", enabled: false, trustedService: nil) },
            { try await access.deleteIdentity(admin, name: "owner") },
        ] as [() async throws -> Void] {
            do {
                try await attempt()
                Issue.record("the last owner was removed")
            } catch AccessError.conflict(let message) {
                #expect(message.contains("Owner") && message.contains("*"))
            }
        }
        #expect(AccessControl.enabledOwners(access.state) == ["owner"])
        // Owner on a repository pattern, or a disabled identity, does not keep the registry manageable
        _ = try await access.createIdentity(admin, name: "partial")
        _ = try await access.assignRole(admin, assignee: "partial", role: "Owner", scope: "team/*")
        _ = try await access.createIdentity(admin, name: "dormant")
        _ = try await access.assignRole(admin, assignee: "dormant", role: "Owner", scope: "*")
        _ = try await access.updateIdentity(admin, name: "dormant", enabled: false, trustedService: nil)
        await #expect(throws: AccessError.self) { try await access.deleteIdentity(admin, name: "owner") }
        // with a second enabled Owner on *, the first may go
        _ = try await access.updateIdentity(admin, name: "dormant", enabled: true, trustedService: nil)
        try await access.removeRole(admin, assignee: "owner", role: "Owner", scope: "*")
        try await access.deleteIdentity(admin, name: "owner")
        await #expect(throws: AccessError.self) {
            try await access.removeRole(admin, assignee: "dormant", role: "Owner", scope: "*")
        }
        // other changes to the last owner are fine
        _ = try await access.updateIdentity(admin, name: "dormant", enabled: nil, trustedService: true)
        _ = try await access.resetIdentityPassword(admin, name: "dormant")
    }

    @Test func recoverOwnerReEnablesOrCreatesAnOwner() async throws {
        let (access, _) = try await makeAccess()
        _ = try await access.bootstrap(ownerPassword: "pw")
        // an owner that lost its role by a direct state edit, disabled
        try await access.update(audit: AuditRecord(actor: "t", address: "-", action: "x", target: "owner", outcome: "ok")) { s in
            s.identities["owner"]!.roles = []
            s.identities["owner"]!.enabled = false
        }
        let oldID = access.state.identities["owner"]?.subjectID
        let password = try await access.recoverOwner(admin, name: "owner")
        let (p, _) = try await access.authenticate(username: "owner", password: password, address: here, service: "s")
        #expect(p.registryActions == .all)
        #expect(access.state.identities["owner"]?.subjectID == oldID)
        await #expect(throws: AccessError.invalidCredentials) {
            try await access.authenticate(username: "owner", password: "pw", address: here, service: "s")
        }
        let second = try await access.recoverOwner(admin, name: "rescue")
        #expect(try await access.authenticate(username: "rescue", password: second, address: here, service: "s").principal.registryActions == .all)
        #expect(AccessControl.enabledOwners(access.state) == ["owner", "rescue"])
        _ = try await access.createToken(admin, name: "ci", scopeMap: "_repositories_pull")
        await #expect(throws: AccessError.self) { try await access.recoverOwner(admin, name: "ci") }
        await #expect(throws: AccessError.self) { try await access.recoverOwner(admin, name: "berth") }
        await #expect(throws: AccessError.self) { try await access.recoverOwner(admin, name: "Bad Name") }
        let records = try await access.audit(since: Date(timeIntervalSinceNow: -60), limit: 100)
        #expect(records.filter { $0.action == "identity.recover-owner" }.map(\.target) == ["owner", "rescue"])
    }
}
