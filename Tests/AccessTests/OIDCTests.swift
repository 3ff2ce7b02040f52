import SQLiteStore
import Crypto
import Foundation
import JWTKit
import NIOConcurrencyHelpers
import Testing
import OCIModel
import RegistryStore
@testable import Access

/// An in-memory issuer: its JWKS is served by this source, which counts fetches.
final class FakeIssuer: JWKSSource, @unchecked Sendable {
    let issuer = "https://ci.example.test"
    let key = P256.Signing.PrivateKey()
    let kid = "key-1"
    let fetches = NIOLockedValueBox(0)

    func jwks(issuer: String) async throws -> JWKS {
        fetches.withLockedValue { $0 += 1 }
        guard issuer == self.issuer else { throw OIDCError.fetchFailed(issuer, 404) }
        let raw = key.publicKey.rawRepresentation
        let x = b64url(raw.prefix(32)), y = b64url(raw.suffix(32))
        let json = #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"\#(kid)","x":"\#(x)","y":"\#(y)"}]}"#
        return try JSONDecoder().decode(JWKS.self, from: Data(json.utf8))
    }

    func token(sub: String, aud: String, iss: String? = nil, expiresIn: TimeInterval = 300, signer: P256.Signing.PrivateKey? = nil,
               kid: String? = nil) async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: try ES256PrivateKey(backing: signer ?? key), kid: JWKIdentifier(string: kid ?? self.kid))
        let now = Date()
        return try await keys.sign(OIDCClaims(iss: .init(value: iss ?? issuer), sub: .init(value: sub), aud: .init(value: [aud]),
                                              exp: .init(value: now.addingTimeInterval(expiresIn)), nbf: .init(value: now.addingTimeInterval(-5)),
                                              iat: .init(value: now)))
    }
}

@Suite struct OIDCFederationTests {
    func setup() async throws -> (AccessControl, FakeIssuer) {
        let issuer = FakeIssuer()
        let dir = NSTemporaryDirectory() + "berth-oidc-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let access = try await AccessControl.open(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), keyDirectory: dir + "/keys",
                                                  jwksSource: issuer)
        _ = try await access.createIdentity(admin, name: "payments-ci", kind: "service-principal", withPassword: false)
        _ = try await access.assignRole(admin, assignee: "payments-ci", role: "Push", scope: "payments/*")
        _ = try await access.addFederatedCredential(admin, identity: "payments-ci", name: "main", issuer: issuer.issuer,
                                                    subject: "repo:org/payments:ref:refs/heads/main", audiences: ["berth"])
        return (access, issuer)
    }

    func login(_ access: AccessControl, _ token: String) async -> String? {
        try? await access.authenticate(username: AccessControl.oidcTokenUser, password: token, address: here, service: "svc").subject
    }

    @Test func exactSubjectGetsTheIdentity() async throws {
        let (access, issuer) = try await setup()
        let good = try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth")
        #expect(await login(access, good) == "identity:payments-ci")
        #expect(issuer.fetches.withLockedValue { $0 } == 1)
        _ = await login(access, good)
        #expect(issuer.fetches.withLockedValue { $0 } == 1)   // keys are cached
    }

    @Test func anythingElseGetsNothing() async throws {
        let (access, issuer) = try await setup()
        #expect(await login(access, try await issuer.token(sub: "repo:org/payments:ref:refs/heads/feature", aud: "berth")) == nil)
        #expect(await login(access, try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "other")) == nil)
        #expect(await login(access, try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth",
                                                           expiresIn: -120)) == nil)
        // signed by a key the issuer does not publish
        #expect(await login(access, try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth",
                                                           signer: P256.Signing.PrivateKey())) == nil)
        #expect(await login(access, try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth",
                                                           signer: P256.Signing.PrivateKey(), kid: "unknown")) == nil)
        // an issuer no credential names is never contacted
        let before = issuer.fetches.withLockedValue { $0 }
        #expect(await login(access, try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth",
                                                           iss: "https://evil.example.test")) == nil)
        #expect(issuer.fetches.withLockedValue { $0 } == before)
        #expect(await login(access, "garbage") == nil)
    }

    @Test func removingTheCredentialOrDisablingTheIdentityStopsIt() async throws {
        let (access, issuer) = try await setup()
        let good = try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth")
        _ = try await access.updateIdentity(admin, name: "payments-ci", enabled: false, trustedService: nil)
        #expect(await login(access, good) == nil)
        _ = try await access.updateIdentity(admin, name: "payments-ci", enabled: true, trustedService: nil)
        #expect(await login(access, good) == "identity:payments-ci")
        try await access.removeFederatedCredential(admin, identity: "payments-ci", name: "main")
        #expect(await login(access, good) == nil)
    }

    @Test func garbageIDTokensDoNotLockOutKeylessCI() async throws {
        let (access, issuer) = try await setup()
        for i in 0..<12 {
            let wrong = try await issuer.token(sub: "repo:evil/fork:ref:refs/heads/\(i)", aud: "berth")
            await #expect(throws: AccessError.invalidCredentials) {
                try await access.authenticate(username: AccessControl.oidcTokenUser, password: wrong, address: IPAddress("203.0.113.66"),
                                              service: "svc")
            }
        }
        let good = try await issuer.token(sub: "repo:org/payments:ref:refs/heads/main", aud: "berth")
        #expect(await login(access, good) == "identity:payments-ci")
    }
}
