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
    /// The region that issued the token (issue 13: a token of one region is accepted by its
    /// peers, which verify it with that region's public keys); absent in tokens of older builds
    /// and of a registry without a region name.
    public var rgn: String?

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf.verifyNotBefore()
    }
}

/// Where a region finds the public keys another region signs its tokens with (issue 13): the
/// replication feature asks the peer over its replication credential. nil: not a peer, or no
/// such key (after a bounded refetch).
public protocol PeerTokenKeys: Sendable {
    func publicKeyPEM(region: String, kid: String) async -> String?
}

/// Signs and verifies Berth's own tokens (ES256). The keys are shared key material (sealed in the
/// metadata store, `SharedKeyMaterial`), so a token issued by one node verifies on every node over
/// the same store; a rotation keeps the previous key for verification until every token it signed
/// has expired.
public final class TokenService: Sendable {
    public static let issuer = "berth"
    /// The name of the signing keys in the key material store.
    public static let keyMaterialName = "token-signing-keys"
    public let accessTokenLifetime: TimeInterval
    public let refreshTokenLifetime: TimeInterval
    private let keys: JWTKeyCollection
    private let shared: SharedKeyMaterial
    private let current: NIOLockedValueBox<String>
    /// Key ids this process holds, and when it last read the store for one it did not know.
    private let known: NIOLockedValueBox<(kids: Set<String>, lastReload: Date)>
    private let verified = NIOLockedValueBox<[String: RegistryTokenPayload]>([:])
    /// This region's name (stated in the tokens it issues) and where its peers' keys are found.
    private let regional = NIOLockedValueBox<(region: String?, peers: (any PeerTokenKeys)?)>((nil, nil))

    /// Names this region in the tokens issued from now on, and accepts the access tokens of the
    /// regions `peers` knows, verified with their own public keys.
    public func setRegion(_ region: String, peers: (any PeerTokenKeys)?) {
        regional.withLockedValue { $0 = (region, peers) }
    }

    /// The public halves of this region's signing keys (kid, PEM), the current one first: what a
    /// peer verifies this region's tokens with.
    public func publicKeys() async throws -> [(kid: String, pem: String)] {
        guard let loaded = try await shared.load(Self.keyMaterialName) else { return [] }
        let stored = try Self.decode(loaded.plaintext)
        return try stored.keys.sorted { a, _ in a.kid == stored.current }.map { key in
            (key.kid, try P256.Signing.PrivateKey(pemRepresentation: key.pem).publicKey.pemRepresentation)
        }
    }

    /// The signing keys as stored: the current one and the retired ones still verifying.
    struct StoredKeys: Codable {
        struct Key: Codable { var kid: String; var pem: String; var retiredAt: Date? }
        var current: String
        var keys: [Key]
    }

    /// `keys.json` of a key directory (before the keys were shared).
    struct KeyIndex: Codable {
        struct Retired: Codable { var kid: String; var retiredAt: Date }
        var current: String
        var retired: [Retired]
    }

    private init(keys: JWTKeyCollection, shared: SharedKeyMaterial, stored: StoredKeys,
                 accessLifetime: TimeInterval, refreshLifetime: TimeInterval) {
        self.keys = keys
        self.shared = shared
        self.current = NIOLockedValueBox(stored.current)
        // Never reloaded yet: the first unknown key id is looked up at once, later ones at most once a second.
        self.known = NIOLockedValueBox((Set(stored.keys.map(\.kid)), .distantPast))
        self.accessTokenLifetime = accessLifetime
        self.refreshTokenLifetime = refreshLifetime
    }

    /// Opens the shared signing keys, creating the first one on the first start of the registry.
    /// A key directory of an installation from before the keys were shared (`keys.json` and its
    /// PEM files) is imported instead, so the tokens it issued keep verifying.
    public static func open(shared: SharedKeyMaterial, importing directory: String? = nil, accessLifetime: TimeInterval = 300,
                            refreshLifetime: TimeInterval = 3 * 3600) async throws -> TokenService {
        let loaded = try await shared.loadOrCreate(keyMaterialName) {
            try JSONEncoder().encode(try directory.flatMap(importKeys) ?? newKeys())
        }
        var version = loaded.version
        var stored = try decode(loaded.plaintext)
        // Forget keys whose every token has expired (if another node changed the keys meanwhile,
        // its version is taken as it is).
        let horizon = Date().addingTimeInterval(-max(accessLifetime, refreshLifetime))
        if stored.keys.contains(where: { ($0.retiredAt ?? .distantFuture) < horizon }) {
            var pruned = stored
            pruned.keys.removeAll { ($0.retiredAt ?? .distantFuture) < horizon }
            if try await shared.store(keyMaterialName, try JSONEncoder().encode(pruned), expectedVersion: version) {
                stored = pruned
            } else if let fresh = try await shared.load(keyMaterialName) {
                (version, stored) = (fresh.version, try decode(fresh.plaintext))
            }
        }
        if let directory { removeImported(directory: directory, stored: stored, horizon: horizon) }
        let keys = JWTKeyCollection()
        try await add(stored, to: keys)
        return TokenService(keys: keys, shared: shared, stored: stored, accessLifetime: accessLifetime, refreshLifetime: refreshLifetime)
    }

    private static func decode(_ plaintext: Data) throws -> StoredKeys {
        do {
            let stored = try JSONDecoder().decode(StoredKeys.self, from: plaintext)
            guard stored.keys.contains(where: { $0.kid == stored.current }) else {
                throw KeyMaterialError("the current signing key is missing")
            }
            return stored
        } catch {
            throw KeyMaterialError("the stored token signing keys are unreadable: \(error)")
        }
    }

    private static func add(_ stored: StoredKeys, to keys: JWTKeyCollection) async throws {
        for key in stored.keys {
            await keys.add(ecdsa: try ES256PrivateKey(pem: key.pem), kid: JWKIdentifier(string: key.kid))
        }
    }

    private static func newKey() -> StoredKeys.Key {
        let key = P256.Signing.PrivateKey()
        let kid = String(Data(SHA256.hash(data: key.publicKey.derRepresentation)).base64URLEncodedString().prefix(16))
        return StoredKeys.Key(kid: kid, pem: key.pemRepresentation, retiredAt: nil)
    }

    private static func newKeys() -> StoredKeys {
        let key = newKey()
        return StoredKeys(current: key.kid, keys: [key])
    }

    /// The keys of a key directory written before the keys were shared, or nil when it has none.
    static func importKeys(directory: String) throws -> StoredKeys? {
        guard let data = FileManager.default.contents(atPath: directory + "/keys.json") else { return nil }
        let index: KeyIndex
        do { index = try JSONDecoder().decode(KeyIndex.self, from: data) } catch {
            throw KeyMaterialError("cannot import \(directory)/keys.json: \(error)")
        }
        func pem(_ kid: String) -> String? { try? String(contentsOfFile: "\(directory)/\(kid).pem", encoding: .utf8) }
        guard let current = pem(index.current) else {
            throw KeyMaterialError("cannot import the signing key \(index.current) named by \(directory)/keys.json")
        }
        return StoredKeys(current: index.current, keys: [.init(kid: index.current, pem: current, retiredAt: nil)]
            + index.retired.compactMap { r in pem(r.kid).map { .init(kid: r.kid, pem: $0, retiredAt: r.retiredAt) } })
    }

    /// Removes the key files of an installation from before the keys were shared once the stored
    /// keys hold every one of them that can still verify a token: the private keys then live only
    /// sealed in the metadata store, not also in the clear on one node's disk. Files whose keys the
    /// store does not hold (another registry's keys) are left alone.
    static func removeImported(directory: String, stored: StoredKeys, horizon: Date) {
        guard let imported = try? importKeys(directory: directory) else { return }
        let held = Dictionary(stored.keys.map { ($0.kid, $0.pem) }, uniquingKeysWith: { a, _ in a })
        let safe = imported.keys.allSatisfy { key in
            held[key.kid] == key.pem || (key.retiredAt ?? .distantFuture) < horizon
        }
        guard safe, held[imported.current] == imported.keys.first(where: { $0.kid == imported.current })?.pem else { return }
        let fm = FileManager.default
        for key in imported.keys where !key.kid.contains("/") {   // only the files keys.json named: others are not ours
            try? fm.removeItem(atPath: directory + "/" + key.kid + ".pem")
        }
        try? fm.removeItem(atPath: directory + "/keys.json")
    }

    /// Makes a new key the signing key of every node; the old one keeps verifying until its tokens
    /// expire. A compare-and-swap: a rotation made meanwhile by another node is kept, not overwritten.
    public func rotate() async throws -> String {
        while true {
            guard let loaded = try await shared.load(Self.keyMaterialName) else {
                throw KeyMaterialError("the token signing keys are missing from the metadata store")
            }
            var stored = try Self.decode(loaded.plaintext)
            let key = Self.newKey()
            for i in stored.keys.indices where stored.keys[i].kid == stored.current { stored.keys[i].retiredAt = Date() }
            stored.keys.append(key)
            stored.current = key.kid
            if try await shared.store(Self.keyMaterialName, try JSONEncoder().encode(stored), expectedVersion: loaded.version) {
                try await adopt(stored)
                return key.kid
            }
        }
    }

    /// Takes keys read from the store: verifies with each, signs with the current one.
    private func adopt(_ stored: StoredKeys) async throws {
        let fresh = stored.keys.filter { !known.withLockedValue { $0.kids }.contains($0.kid) }
        try await Self.add(StoredKeys(current: stored.current, keys: fresh), to: keys)
        known.withLockedValue { $0.kids.formUnion(fresh.map(\.kid)) }
        current.withLockedValue { $0 = stored.current }
    }

    /// A token signed with a key this process does not know (another node rotated): read the keys
    /// again, at most once a second whatever tokens arrive.
    private func reloadIfUnknown(_ token: String) async -> Bool {
        guard let header = token.split(separator: ".").first,
              let json = Data(base64URLEncoded: String(header)),
              let kid = (try? JSONDecoder().decode([String: String?].self, from: json))?["kid"] ?? nil else { return false }
        let now = Date()
        let due = known.withLockedValue { state -> Bool in
            guard !state.kids.contains(kid), now.timeIntervalSince(state.lastReload) >= 1 else { return false }
            state.lastReload = now
            return true
        }
        guard due, let loaded = try? await shared.load(Self.keyMaterialName), let stored = try? Self.decode(loaded.plaintext),
              stored.keys.contains(where: { $0.kid == kid }) else { return false }
        return (try? await adopt(stored)) != nil
    }

    public var currentKeyID: String { current.withLockedValue { $0 } }

    public func issue(subject: String, subjectID: String?, audience: String, type: String, generation: Int,
                      access: [AccessClaim]?, now: Date = Date(),
                      lifetime: TimeInterval? = nil) async throws -> (token: String, expiresIn: Int) {
        let lifetime = lifetime ?? (type == "refresh" ? refreshTokenLifetime : accessTokenLifetime)
        // Whole seconds: verifiers with integer time claims (RFC 7519 NumericDate) read them too.
        let now = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let payload = RegistryTokenPayload(
            iss: .init(value: Self.issuer), sub: .init(value: subject), aud: .init(value: [audience]),
            exp: .init(value: now.addingTimeInterval(lifetime)), nbf: .init(value: now.addingTimeInterval(-1)),
            iat: .init(value: now), jti: .init(value: UUID().uuidString), typ: type, gen: generation, sid: subjectID,
            access: access, rgn: regional.withLockedValue { $0.region })
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
        guard token.utf8.count < 16_384 else { return nil }
        var checked = try? await keys.verify(token, as: RegistryTokenPayload.self)
        if checked == nil, await reloadIfUnknown(token) {
            checked = try? await keys.verify(token, as: RegistryTokenPayload.self)
        }
        // A peer region's access and refresh tokens (a client whose DNS moved between regions
        // keeps both); run tokens stay with the region whose task issued them.
        var peer = false
        if checked == nil, type == "access" || type == "refresh" {
            checked = await verifyPeer(token, type: type)
            peer = checked != nil
        }
        guard let payload = checked,
              payload.iss.value == Self.issuer, payload.aud.value.contains(audience), payload.typ == type
        else { return nil }
        // A peer's token is verified again at each use (its keys are cached by the replication
        // feature): removing the replica, or its key, stops its tokens at once.
        if peer { return payload }
        verified.withLockedValue { cache in
            if cache.count > 50_000 { cache = cache.filter { $0.value.exp.value > now } }
            if cache.count > 50_000 { cache.removeAll() }
            cache[token] = payload
        }
        return payload
    }
}

extension TokenService {
    /// An access or refresh token another region issued: verified with that region's key of that key id
    /// only (a key of one region never verifies a token naming another), and the signed `rgn`
    /// must be that region, never this one. Issuer, audience, type and validity are checked by
    /// the caller as for this region's tokens.
    private func verifyPeer(_ token: String, type: String) async -> RegistryTokenPayload? {
        let (local, peers) = regional.withLockedValue { ($0.region, $0.peers) }
        guard let local, let peers else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Data(base64URLEncoded: String(parts[0])), let body = Data(base64URLEncoded: String(parts[1])),
              let kid = (try? JSONDecoder().decode([String: String?].self, from: header))?["kid"] ?? nil,
              let claimed = try? JSONDecoder().decode(RegionClaim.self, from: body), let region = claimed.rgn,
              region != local, !region.isEmpty, region.utf8.count <= 64, kid.utf8.count <= 128,
              let pem = await peers.publicKeyPEM(region: region, kid: kid),
              let key = try? ES256PublicKey(pem: pem) else { return nil }
        let collection = JWTKeyCollection()
        await collection.add(ecdsa: key, kid: JWKIdentifier(string: kid))
        guard let payload = try? await collection.verify(token, as: RegistryTokenPayload.self), payload.rgn == region else { return nil }
        // Only subjects whose records replicate, judged here against this region's copy of them
        // (subject id and generation): not a peer's admin user (each region's own, its generation
        // counter unrelated) nor a peer's task run (its rights are in its subject; no record of
        // the run exists here).
        let subject = payload.sub.value
        guard subject.hasPrefix("identity:") || subject.hasPrefix("token:") || (subject == "anonymous" && type == "access") else { return nil }
        return payload
    }

    /// The region that signed `token` when it is a peer region's (its signed `rgn` names another
    /// region than this one); nil for this region's own tokens. Read after `verify` accepted it.
    public func peerRegion(of token: String) -> String? {
        let local = regional.withLockedValue { $0.region }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard let local, parts.count == 3, let body = Data(base64URLEncoded: String(parts[1])),
              let region = (try? JSONDecoder().decode(RegionClaim.self, from: body))?.rgn, region != local else { return nil }
        return region
    }

    private struct RegionClaim: Decodable { var rgn: String? }
}

extension Data {
    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }

    func base64URLEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
