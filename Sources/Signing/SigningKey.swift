import Crypto
import _CryptoExtras
import Foundation
import X509

/// The JWS `alg` values the Notary Project allows, tied to the signing key's type and size.
public enum SignatureAlgorithm: String, Sendable, CaseIterable {
    case es256 = "ES256", es384 = "ES384", es512 = "ES512"
    case ps256 = "PS256", ps384 = "PS384", ps512 = "PS512"

    /// The algorithm a certificate's public key implies (RSA 2048/3072/4096 → PS256/384/512;
    /// ECDSA P-256/384/521 → ES256/384/512), or nil for keys the Notary Project does not allow.
    public init?(publicKey: Certificate.PublicKey) {
        if P256.Signing.PublicKey(publicKey) != nil { self = .es256 }
        else if P384.Signing.PublicKey(publicKey) != nil { self = .es384 }
        else if P521.Signing.PublicKey(publicKey) != nil { self = .es512 }
        else if let rsa = _RSA.Signing.PublicKey(publicKey) {
            switch rsa.keySizeInBits {
            case 2048: self = .ps256
            case 3072: self = .ps384
            case 4096: self = .ps512
            default: return nil
            }
        } else { return nil }
    }

    /// Verifies a JWS signature (raw r||s for ECDSA, PSS for RSA) made with this algorithm.
    public func isValid(signature: Data, for input: Data, publicKey: Certificate.PublicKey) -> Bool {
        switch self {
        case .es256:
            guard let key = P256.Signing.PublicKey(publicKey),
                  let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA256.hash(data: input))
        case .es384:
            guard let key = P384.Signing.PublicKey(publicKey),
                  let sig = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA384.hash(data: input))
        case .es512:
            guard let key = P521.Signing.PublicKey(publicKey),
                  let sig = try? P521.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA512.hash(data: input))
        case .ps256, .ps384, .ps512:
            guard let key = _RSA.Signing.PublicKey(publicKey) else { return false }
            let sig = _RSA.Signing.RSASignature(rawRepresentation: signature)
            switch self {
            case .ps256: return key.isValidSignature(sig, for: SHA256.hash(data: input), padding: .PSS)
            case .ps384: return key.isValidSignature(sig, for: SHA384.hash(data: input), padding: .PSS)
            default: return key.isValidSignature(sig, for: SHA512.hash(data: input), padding: .PSS)
            }
        }
    }
}

/// Where signatures come from. The PEM-file implementation is the only one today; a KMS or
/// HSM-backed provider implements the same two members.
public protocol SigningKeyProvider: Sendable {
    /// The JWS algorithm of the key.
    var algorithm: SignatureAlgorithm { get }
    /// The public half, to check that it matches the signing certificate.
    var publicKey: Certificate.PublicKey { get }
    /// Signs the JWS signing input; returns the signature in JWS form (raw r||s for ECDSA).
    func sign(_ input: Data) async throws -> Data
}

/// A private key in a PEM file (PKCS#8 or SEC1 EC keys P-256/384/521, PKCS#1/PKCS#8 RSA keys).
public struct PEMFileKeyProvider: SigningKeyProvider {
    enum Key: @unchecked Sendable {
        case p256(P256.Signing.PrivateKey)
        case p384(P384.Signing.PrivateKey)
        case p521(P521.Signing.PrivateKey)
        case rsa(_RSA.Signing.PrivateKey)
    }

    let key: Key
    public let algorithm: SignatureAlgorithm

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw SigningError("cannot read the key file \(path)")
        }
        do {
            try self.init(pem: text)
        } catch {
            throw SigningError("\(path): \(error)")
        }
    }

    public init(pem: String) throws {
        if let k = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
            key = .p256(k); algorithm = .es256
        } else if let k = try? P384.Signing.PrivateKey(pemRepresentation: pem) {
            key = .p384(k); algorithm = .es384
        } else if let k = try? P521.Signing.PrivateKey(pemRepresentation: pem) {
            key = .p521(k); algorithm = .es512
        } else if let k = try? _RSA.Signing.PrivateKey(pemRepresentation: pem) {
            switch k.keySizeInBits {
            case 2048: algorithm = .ps256
            case 3072: algorithm = .ps384
            case 4096: algorithm = .ps512
            default: throw SigningError("RSA keys must be 2048, 3072 or 4096 bits")
            }
            key = .rsa(k)
        } else {
            throw SigningError("not a PEM private key of a supported type (ECDSA P-256/P-384/P-521 or RSA)")
        }
    }

    public var publicKey: Certificate.PublicKey {
        switch key {
        case .p256(let k): Certificate.PublicKey(k.publicKey)
        case .p384(let k): Certificate.PublicKey(k.publicKey)
        case .p521(let k): Certificate.PublicKey(k.publicKey)
        case .rsa(let k): Certificate.PublicKey(k.publicKey)
        }
    }

    public func sign(_ input: Data) async throws -> Data {
        switch key {
        case .p256(let k): return try k.signature(for: SHA256.hash(data: input)).rawRepresentation
        case .p384(let k): return try k.signature(for: SHA384.hash(data: input)).rawRepresentation
        case .p521(let k): return try k.signature(for: SHA512.hash(data: input)).rawRepresentation
        case .rsa(let k):
            switch algorithm {
            case .ps256: return try k.signature(for: SHA256.hash(data: input), padding: .PSS).rawRepresentation
            case .ps384: return try k.signature(for: SHA384.hash(data: input), padding: .PSS).rawRepresentation
            default: return try k.signature(for: SHA512.hash(data: input), padding: .PSS).rawRepresentation
            }
        }
    }
}
