import AsyncHTTPClient
import Foundation
import JWTKit
import NIOConcurrencyHelpers
import NIOCore

/// Claims Berth reads from a CI job's OIDC ID token.
struct OIDCClaims: JWTPayload {
    var iss: IssuerClaim
    var sub: SubjectClaim
    var aud: AudienceClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iat: IssuedAtClaim?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}

/// Fetches an issuer's signing keys: `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
public protocol JWKSSource: Sendable {
    func jwks(issuer: String) async throws -> JWKS
    /// Refuses an issuer that may never be contacted (when a federated credential names it).
    func checkIssuer(_ issuer: String) async throws
}

extension JWKSSource {
    public func checkIssuer(_ issuer: String) async throws {}
}

/// The real source, over HTTP(S) with a short timeout and a small size cap. Only destinations
/// the outbound policy permits are contacted, and the JWKS must live on the issuer's origin.
public struct HTTPJWKSSource: JWKSSource {
    let policy: OutboundPolicy

    public init(policy: OutboundPolicy = OutboundPolicy()) {
        self.policy = policy
    }

    struct Discovery: Decodable { let issuer: String?; let jwks_uri: String }

    public func checkIssuer(_ issuer: String) async throws {
        try await policy.checkTarget(issuer)
    }

    public func jwks(issuer: String) async throws -> JWKS {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let discovery = try JSONDecoder().decode(Discovery.self, from: try await fetch(base + "/.well-known/openid-configuration"))
        if let advertised = discovery.issuer, advertised != issuer {
            throw OIDCError.issuerMismatch
        }
        guard let issuerOrigin = OutboundPolicy.origin(of: issuer), let jwksOrigin = OutboundPolicy.origin(of: discovery.jwks_uri),
              issuerOrigin == jwksOrigin else {
            throw OIDCError.foreignJWKS(discovery.jwks_uri)
        }
        return try JSONDecoder().decode(JWKS.self, from: try await fetch(discovery.jwks_uri))
    }

    private func fetch(_ url: String) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let (status, body) = try await policy.send(request, timeout: .seconds(5), bodyLimit: 1 << 20)
        guard status == 200 else { throw OIDCError.fetchFailed(url, status) }
        guard let body else { throw OIDCError.fetchFailed(url, status) }
        return Data(body.readableBytesView)
    }
}

enum OIDCError: Error {
    case issuerMismatch
    case fetchFailed(String, Int)
    /// The discovery document names keys on another origin than the issuer's.
    case foreignJWKS(String)
}

/// Verifies OIDC ID tokens against the federated credentials of identities. Only issuers that a
/// federated credential names are ever contacted; their keys are cached and fetched again when a
/// token names a key id the cache does not know (at most once a minute per issuer).
final class OIDCVerifier: Sendable {
    private struct CachedIssuer {
        var keys: JWTKeyCollection
        var kids: Set<String>
        var fetchedAt: Date
    }

    let source: any JWKSSource
    private let cache = NIOLockedValueBox<[String: CachedIssuer]>([:])
    let leeway: TimeInterval = 60

    init(source: any JWKSSource) {
        self.source = source
    }

    /// Returns the token's issuer and subject if the signature, expiry and validity window hold.
    /// Matching against federated credentials (issuer, subject, audience) is the caller's.
    func verify(_ token: String, allowedIssuers: Set<String>) async -> OIDCClaims? {
        guard token.utf8.count < 16_384, let (issuer, kid) = Self.peek(token), allowedIssuers.contains(issuer) else { return nil }
        guard let keys = await keys(issuer: issuer, kid: kid) else { return nil }
        guard let claims = try? await keys.verify(token, as: OIDCClaims.self), claims.iss.value == issuer else { return nil }
        return claims
    }

    private func keys(issuer: String, kid: String?) async -> JWTKeyCollection? {
        let now = Date()
        if let cached = cache.withLockedValue({ $0[issuer] }) {
            let known = kid.map { cached.kids.contains($0) } ?? true
            if known || now.timeIntervalSince(cached.fetchedAt) < 60 { return known ? cached.keys : nil }
        }
        guard let jwks = try? await source.jwks(issuer: issuer) else { return nil }
        let keys = JWTKeyCollection()
        var kids = Set<String>()
        for jwk in jwks.keys {
            // Keys of kinds or uses Berth cannot verify with are skipped, not fatal.
            if (try? await keys.add(jwk: jwk)) != nil, let id = jwk.keyIdentifier?.string { kids.insert(id) }
        }
        cache.withLockedValue { $0[issuer] = CachedIssuer(keys: keys, kids: kids, fetchedAt: now) }
        if let kid, !kids.contains(kid) { return nil }
        return keys
    }

    /// Issuer and key id of a JWT, read before verification only to pick the keys.
    static func peek(_ token: String) -> (issuer: String, kid: String?)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = decode(parts[0]), let payload = decode(parts[1]),
              let issuer = payload["iss"] as? String else { return nil }
        return (issuer, header["kid"] as? String)
    }

    private static func decode(_ part: Substring) -> [String: Any]? {
        var s = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        guard let data = Data(base64Encoded: s) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}
