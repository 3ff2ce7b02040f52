import Crypto
import Foundation
import JWTKit
import NIOConcurrencyHelpers

/// One entry of the standard `access` claim of a registry token.
public struct AccessClaim: Codable, Sendable, Hashable {
    public var type: String
    public var name: String
    public var actions: [String]

    public init(type: String, name: String, actions: [String]) {
        self.type = type
        self.name = name
        self.actions = actions
    }
}

/// The payload of Berth's access and refresh tokens.
public struct RegistryTokenPayload: JWTPayload, Equatable {
    public var iss: IssuerClaim
    public var sub: SubjectClaim
    public var aud: AudienceClaim
    public var exp: ExpirationClaim
    public var nbf: NotBeforeClaim
    public var iat: IssuedAtClaim
    public var jti: IDClaim
    /// "access" or "refresh".
    public var typ: String
    /// Credential generation of the subject when the token was issued.
    public var gen: Int
    /// The immutable id of the identity or token the subject named when the token was issued
    /// (absent for the admin user and anonymous): a token never outlives the record it was issued to.
    public var sid: String?
    public var access: [AccessClaim]?

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf.verifyNotBefore()
    }
}

/// Signs and verifies Berth's own tokens (ES256). Keys live in `<data>/keys`; a rotation keeps the
/// previous key for verification until every token it signed has expired.
public final class TokenService: Sendable {
    public static let issuer = "berth"
    public let accessTokenLifetime: TimeInterval
    public let refreshTokenLifetime: TimeInterval
    private let keys: JWTKeyCollection
    private let directory: String
    private let current: NIOLockedValueBox<String>
    private let verified = NIOLockedValueBox<[String: RegistryTokenPayload]>([:])

    struct KeyIndex: Codable {
        struct Retired: Codable { var kid: String; var retiredAt: Date }
        var current: String
        var retired: [Retired]
    }

    private init(keys: JWTKeyCollection, directory: String, current: String, accessLifetime: TimeInterval, refreshLifetime: TimeInterval) {
        self.keys = keys
        self.directory = directory
        self.current = NIOLockedValueBox(current)
        self.accessTokenLifetime = accessLifetime
        self.refreshTokenLifetime = refreshLifetime
    }

    /// Opens the key directory, creating the first signing key on first start.
    public static func open(directory: String, accessLifetime: TimeInterval = 300,
                            refreshLifetime: TimeInterval = 3 * 3600) async throws -> TokenService {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let indexPath = directory + "/keys.json"
        var index: KeyIndex
        if let data = fm.contents(atPath: indexPath) {
            index = try JSONDecoder().decode(KeyIndex.self, from: data)
        } else {
            let kid = try writeNewKey(directory: directory)
            index = KeyIndex(current: kid, retired: [])
            try writeIndex(index, to: indexPath)
        }
        // Forget keys whose every token has expired.
        let horizon = Date().addingTimeInterval(-max(accessLifetime, refreshLifetime))
        let expired = index.retired.filter { $0.retiredAt < horizon }
        if !expired.isEmpty {
            index.retired.removeAll { $0.retiredAt < horizon }
            try writeIndex(index, to: indexPath)
            for old in expired { try? fm.removeItem(atPath: "\(directory)/\(old.kid).pem") }
        }
        let keys = JWTKeyCollection()
        for kid in [index.current] + index.retired.map(\.kid) {
            let pem = try String(contentsOfFile: "\(directory)/\(kid).pem", encoding: .utf8)
            await keys.add(ecdsa: try ES256PrivateKey(pem: pem), kid: JWKIdentifier(string: kid))
        }
        return TokenService(keys: keys, directory: directory, current: index.current,
                            accessLifetime: accessLifetime, refreshLifetime: refreshLifetime)
    }

    private static func writeNewKey(directory: String) throws -> String {
        let key = P256.Signing.PrivateKey()
        let kid = String(Data(SHA256.hash(data: key.publicKey.derRepresentation)).base64URLEncodedString().prefix(16))
        let path = "\(directory)/\(kid).pem"
        guard FileManager.default.createFile(atPath: path, contents: Data(key.pemRepresentation.utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return kid
    }

    private static func writeIndex(_ index: KeyIndex, to path: String) throws {
        try JSONEncoder().encode(index).write(to: URL(fileURLWithPath: path), options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }

    /// Makes a new key the signing key; the old one keeps verifying until its tokens expire.
    public func rotate() async throws -> String {
        let kid = try Self.writeNewKey(directory: directory)
        let pem = try String(contentsOfFile: "\(directory)/\(kid).pem", encoding: .utf8)
        await keys.add(ecdsa: try ES256PrivateKey(pem: pem), kid: JWKIdentifier(string: kid))
        let indexPath = directory + "/keys.json"
        var index = try JSONDecoder().decode(KeyIndex.self, from: Data(contentsOf: URL(fileURLWithPath: indexPath)))
        index.retired.append(.init(kid: index.current, retiredAt: Date()))
        index.current = kid
        try Self.writeIndex(index, to: indexPath)
        current.withLockedValue { $0 = kid }
        return kid
    }

    public var currentKeyID: String { current.withLockedValue { $0 } }

    public func issue(subject: String, subjectID: String?, audience: String, type: String, generation: Int,
                      access: [AccessClaim]?, now: Date = Date()) async throws -> (token: String, expiresIn: Int) {
        let lifetime = type == "refresh" ? refreshTokenLifetime : accessTokenLifetime
        // Whole seconds: verifiers with integer time claims (RFC 7519 NumericDate) read them too.
        let now = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let payload = RegistryTokenPayload(
            iss: .init(value: Self.issuer), sub: .init(value: subject), aud: .init(value: [audience]),
            exp: .init(value: now.addingTimeInterval(lifetime)), nbf: .init(value: now.addingTimeInterval(-1)),
            iat: .init(value: now), jti: .init(value: UUID().uuidString), typ: type, gen: generation, sid: subjectID,
            access: access)
        var header = JWTHeader()
        header.typ = "JWT"
        let token = try await keys.sign(payload, kid: JWKIdentifier(string: currentKeyID), header: header)
        return (token, Int(lifetime))
    }

    /// Verifies signature, issuer, audience, type and validity window. Verified tokens are cached
    /// until they expire, so a token costs one signature check however often it is used.
    public func verify(_ token: String, audience: String, type: String) async -> RegistryTokenPayload? {
        let now = Date()
        if let hit = verified.withLockedValue({ $0[token] }) {
            guard hit.exp.value > now, hit.aud.value.contains(audience), hit.typ == type else { return nil }
            return hit
        }
        guard token.utf8.count < 16_384,
              let payload = try? await keys.verify(token, as: RegistryTokenPayload.self),
              payload.iss.value == Self.issuer, payload.aud.value.contains(audience), payload.typ == type
        else { return nil }
        verified.withLockedValue { cache in
            if cache.count > 50_000 { cache = cache.filter { $0.value.exp.value > now } }
            if cache.count > 50_000 { cache.removeAll() }
            cache[token] = payload
        }
        return payload
    }
}

extension Data {
    func base64URLEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
