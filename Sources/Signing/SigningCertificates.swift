import Crypto
import Foundation
import OCIModel
import SwiftASN1
import X509

/// Certificate helpers shared by signing and verification.
public enum CertificateCoding {
    public static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    public static func pem(_ certificate: Certificate) throws -> String {
        try certificate.serializeAsPEM().pemString
    }

    /// Every certificate in a PEM file (any number of CERTIFICATE blocks) or a single DER certificate.
    public static func parseCertificates(_ data: Data) throws -> [Certificate] {
        if let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN") {
            let documents = try PEMDocument.parseMultiple(pemString: text)
            let certs = try documents.filter { $0.discriminator == "CERTIFICATE" }.map { try Certificate(pemDocument: $0) }
            guard !certs.isEmpty else { throw SigningError("no CERTIFICATE block in the PEM data") }
            return certs
        }
        return [try Certificate(derEncoded: Array(data))]
    }

    /// Lower-case hex SHA-256 of the certificate's DER encoding.
    public static func thumbprint(_ certificate: Certificate) throws -> String {
        Hex.encode(SHA256.hash(data: try der(certificate)))
    }

    public static func subject(_ certificate: Certificate) -> String {
        DistinguishedNames.format(DistinguishedNames.attributes(of: certificate.subject))
    }
}

/// A freshly created signing identity: the private key and the chain (leaf first).
public struct SigningMaterial: Sendable {
    public let privateKeyPEM: String
    public let leaf: Certificate
    public let ca: Certificate?
    public let caPrivateKeyPEM: String?

    public var chain: [Certificate] { [leaf] + (ca.map { [$0] } ?? []) }

    /// PEM of the chain, leaf first (the `PREFIX.crt` file).
    public func chainPEM() throws -> String {
        try chain.map { try CertificateCoding.pem($0) }.joined(separator: "\n") + "\n"
    }
}

/// Creates Notary-Project-compliant signing certificates: P-256 keys, a leaf with the
/// code-signing extended key usage, either self-signed or issued by a new CA.
public enum SigningCertificates {
    public static func create(subject: String, withCA: Bool, validity: TimeInterval = 365 * 86_400,
                              now: Date = Date()) throws -> SigningMaterial {
        let attributes = try DistinguishedNames.parse(subject)
        guard attributes.contains(where: { $0.key == "CN" }) else {
            throw SigningError("the subject needs a common name (CN=...)")
        }
        guard validity > 0 else { throw SigningError("the validity must be positive") }
        let leafName = try DistinguishedNames.distinguishedName(attributes)
        let notBefore = now.addingTimeInterval(-60)
        let notAfter = now.addingTimeInterval(validity)
        let leafKey = P256.Signing.PrivateKey()
        let leafPublic = Certificate.PublicKey(leafKey.publicKey)

        if !withCA {
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.codeSigning])
                SubjectKeyIdentifier(hash: leafPublic)
            }
            let leaf = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: leafPublic,
                notValidBefore: notBefore, notValidAfter: notAfter, issuer: leafName, subject: leafName,
                signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
                issuerPrivateKey: Certificate.PrivateKey(leafKey))
            return SigningMaterial(privateKeyPEM: leafKey.pemRepresentation, leaf: leaf, ca: nil, caPrivateKeyPEM: nil)
        }

        let caKey = P256.Signing.PrivateKey()
        let caPublic = Certificate.PublicKey(caKey.publicKey)
        let cn = attributes.first(where: { $0.key == "CN" })!.value
        let caAttributes = attributes.map { $0.key == "CN" ? NameAttribute(key: "CN", value: "\(cn) Signing CA") : $0 }
        let caName = try DistinguishedNames.distinguishedName(caAttributes)
        let caExtensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: caPublic)
        }
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: caPublic,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256, extensions: caExtensions,
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        let leafExtensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.codeSigning])
            SubjectKeyIdentifier(hash: leafPublic)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: caPublic).keyIdentifier)
        }
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: leafPublic,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: caName, subject: leafName,
            signatureAlgorithm: .ecdsaWithSHA256, extensions: leafExtensions,
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        return SigningMaterial(privateKeyPEM: leafKey.pemRepresentation, leaf: leaf, ca: ca,
                               caPrivateKeyPEM: caKey.pemRepresentation)
    }
}
