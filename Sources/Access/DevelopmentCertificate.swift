import Crypto
import Foundation
import SwiftASN1
import X509

/// A self-signed certificate for development TLS (`berth certificate create`): P-256, valid for a
/// year, with the given host names and IP addresses as subject alternative names. It is its own
/// trust root, so clients trust it by installing the certificate file (e.g. `skopeo --cert-dir`).
public enum DevelopmentCertificate {
    public static func make(commonName: String, hosts: [String], days: Int = 365,
                            now: Date = Date()) throws -> (certificatePEM: String, privateKeyPEM: String) {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("Berth development certificate")
        }
        var sans: [GeneralName] = []
        for host in hosts {
            if let ip = ipBytes(host) {
                sans.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip))))
            } else {
                sans.append(.dnsName(host))
            }
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectAlternativeNames(sans)
            SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }

    static func ipBytes(_ host: String) -> [UInt8]? {
        guard let address = IPAddress(host) else { return nil }
        return address.isV4 && !host.contains(":") ? Array(address.bytes[12...]) : address.bytes
    }
}

/// The names a server certificate holds for clients to verify: its subject alternative names
/// (DNS names as written, IP addresses in their usual text), read from the first certificate of
/// a PEM file (the leaf of a chain). A certificate without them names nothing (clients no
/// longer read the common name).
public enum CertificateNames {
    public static func leafNames(pem: String) throws -> [String] {
        let documents = try PEMDocument.parseMultiple(pemString: pem).filter { $0.discriminator == "CERTIFICATE" }
        guard let first = documents.first else { return [] }
        let certificate = try Certificate(pemDocument: first)
        var names: [String] = []
        for name in try certificate.extensions.subjectAlternativeNames ?? SubjectAlternativeNames() {
            switch name {
            case .dnsName(let dns): names.append(dns)
            case .ipAddress(let octets): if let text = ipText(Array(octets.bytes)) { names.append(text) }
            default: break
            }
        }
        return names
    }

    static func ipText(_ bytes: [UInt8]) -> String? {
        switch bytes.count {
        case 4: return bytes.map(String.init).joined(separator: ".")
        case 16:
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            return IPAddress(groups.joined(separator: ":"))?.description
        default: return nil
        }
    }
}
