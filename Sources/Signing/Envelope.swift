import Foundation
import OCIModel
import X509

/// The OCI content descriptor of OCIModel (a Notary payload's target and the manifest's layers).
public typealias Descriptor = OCIModel.Descriptor

public enum NotaryMediaType {
    public static let payload = "application/vnd.cncf.notary.payload.v1+json"
    public static let signatureArtifact = "application/vnd.cncf.notary.signature"
    public static let jws = "application/jose+json"
    public static let ociManifest = MediaType.ociManifest
    public static let ociEmpty = MediaType.ociEmpty
    public static let emptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
}

public enum NotaryHeader {
    public static let signingScheme = "io.cncf.notary.signingScheme"
    public static let signingTime = "io.cncf.notary.signingTime"
    public static let authenticSigningTime = "io.cncf.notary.authenticSigningTime"
    public static let expiry = "io.cncf.notary.expiry"
    public static let signingAgent = "io.cncf.notary.signingAgent"
    public static let thumbprintAnnotation = "io.cncf.notary.x509chain.thumbprint#S256"
}

/// `{"targetArtifact": descriptor}`.
public struct NotaryPayload: Codable, Equatable, Sendable {
    public var targetArtifact: Descriptor
    public init(targetArtifact: Descriptor) { self.targetArtifact = targetArtifact }
}

/// The protected (signed) header of a Notary JWS envelope.
public struct ProtectedHeader: Codable, Equatable, Sendable {
    public var alg: String
    public var cty: String
    public var crit: [String]
    public var signingScheme: String
    public var signingTime: String?
    public var authenticSigningTime: String?
    public var expiry: String?

    enum CodingKeys: String, CodingKey {
        case alg, cty, crit
        case signingScheme = "io.cncf.notary.signingScheme"
        case signingTime = "io.cncf.notary.signingTime"
        case authenticSigningTime = "io.cncf.notary.authenticSigningTime"
        case expiry = "io.cncf.notary.expiry"
    }
}

public struct UnprotectedHeader: Codable, Equatable, Sendable {
    public var x5c: [String]
    public var signingAgent: String?

    enum CodingKeys: String, CodingKey {
        case x5c
        case signingAgent = "io.cncf.notary.signingAgent"
    }
}

/// A Notary Project JWS envelope in flattened JSON serialization.
public struct JWSEnvelope: Codable, Equatable, Sendable {
    public var payload: String
    public var protected: String
    public var header: UnprotectedHeader
    public var signature: String

    public static let maxSize = 4 << 20

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// The serialized envelope (the `application/jose+json` blob).
    public func encoded() throws -> Data { try Self.encoder().encode(self) }

    /// Parses an envelope; only the four flattened-JWS members are allowed at the top level.
    public static func parse(_ data: Data) throws -> JWSEnvelope {
        guard data.count <= maxSize else { throw SigningError("the signature envelope is larger than 4 MiB") }
        do { try StrictJSON.checkDuplicateKeys(data) } catch { throw SigningError("the signature envelope is refused: \(error)") }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SigningError("the signature envelope is not a JSON object")
        }
        let extra = Set(object.keys).subtracting(["payload", "protected", "header", "signature"])
        guard extra.isEmpty else {
            throw SigningError("the signature envelope has unsupported members: \(extra.sorted().joined(separator: ", "))")
        }
        do {
            return try JSONDecoder().decode(JWSEnvelope.self, from: data)
        } catch {
            throw SigningError("the signature envelope is not a flattened JWS: \(error)")
        }
    }

    /// `ASCII(BASE64URL(protected) || '.' || BASE64URL(payload))`.
    public var signingInput: Data { Data("\(protected).\(payload)".utf8) }

    /// Signs `target` (the descriptor of the manifest being signed).
    public static func sign(target: Descriptor, key: any SigningKeyProvider, chain: [Certificate],
                            signingTime: Date = Date(), expiry: Date? = nil,
                            signingAgent: String = "berth/0.1") async throws -> JWSEnvelope {
        guard let leaf = chain.first else { throw SigningError("the certificate chain is empty") }
        guard leaf.publicKey == key.publicKey else {
            throw SigningError("the signing key does not belong to the first certificate of the chain")
        }
        guard SignatureAlgorithm(publicKey: leaf.publicKey) == key.algorithm else {
            throw SigningError("the certificate's key type is not allowed by the Notary Project")
        }
        var crit = [NotaryHeader.signingScheme]
        if expiry != nil { crit.append(NotaryHeader.expiry) }
        let header = ProtectedHeader(
            alg: key.algorithm.rawValue, cty: NotaryMediaType.payload, crit: crit, signingScheme: "notary.x509",
            signingTime: RFC3339.format(signingTime), authenticSigningTime: nil, expiry: expiry.map(RFC3339.format))
        let payload = NotaryPayload(targetArtifact: Descriptor(mediaType: target.mediaType, digest: target.digest,
                                                               size: target.size, annotations: target.annotations))
        let protected = Base64URL.encode(try encoder().encode(header))
        let payloadText = Base64URL.encode(try encoder().encode(payload))
        let input = Data("\(protected).\(payloadText)".utf8)
        let signature = try await key.sign(input)
        let x5c = try chain.map { Data(try CertificateCoding.der($0)).base64EncodedString() }
        return JWSEnvelope(payload: payloadText, protected: protected,
                           header: UnprotectedHeader(x5c: x5c, signingAgent: signingAgent),
                           signature: Base64URL.encode(signature))
    }

    /// The certificates of `x5c`, leaf first.
    public func certificates() throws -> [Certificate] {
        guard !header.x5c.isEmpty else { throw SigningError("the envelope has no x5c certificate chain") }
        return try header.x5c.enumerated().map { i, text in
            guard let der = Data(base64Encoded: text), let cert = try? Certificate(derEncoded: Array(der)) else {
                throw SigningError("x5c[\(i)] is not a base64 DER certificate")
            }
            return cert
        }
    }

    /// The decoded protected header (raw JSON object too, to check critical headers).
    public func protectedHeader() throws -> (header: ProtectedHeader, raw: [String: Any]) {
        // Two parsers read the header below: with a duplicate key they could see different values.
        guard let data = Base64URL.decode(protected), (try? StrictJSON.checkDuplicateKeys(data)) != nil,
              let raw = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let header = try? JSONDecoder().decode(ProtectedHeader.self, from: data)
        else { throw SigningError("the protected header is not valid base64url JSON with alg, cty, crit and signing scheme") }
        return (header, raw)
    }

    public func decodedPayload() throws -> NotaryPayload {
        guard let data = Base64URL.decode(payload), (try? StrictJSON.checkDuplicateKeys(data)) != nil,
              let p = try? JSONDecoder().decode(NotaryPayload.self, from: data) else {
            throw SigningError("the payload is not a Notary payload ({\"targetArtifact\": descriptor})")
        }
        return p
    }
}

/// The OCI image manifest that stores a signature envelope and points at the signed manifest.
public struct SignatureManifest: Sendable {
    public static let emptyConfig = Data("{}".utf8)

    /// (manifest bytes, envelope bytes). The manifest is what gets `PUT` by digest.
    public static func build(envelope: JWSEnvelope, subject: Descriptor) throws -> (manifest: Data, envelope: Data) {
        let envelopeBytes = try envelope.encoded()
        let thumbprints = try envelope.certificates().map { try CertificateCoding.thumbprint($0) }
        let thumbprintJSON = String(decoding: try JSONEncoder().encode(thumbprints), as: UTF8.self)
        let manifest = Manifest(
            schemaVersion: 2, mediaType: NotaryMediaType.ociManifest, artifactType: NotaryMediaType.signatureArtifact,
            config: Descriptor(mediaType: NotaryMediaType.ociEmpty, digest: NotaryMediaType.emptyDigest, size: 2),
            layers: [Descriptor(mediaType: NotaryMediaType.jws, digest: Digest.compute(envelopeBytes).string,
                                size: Int64(envelopeBytes.count))],
            subject: Descriptor(mediaType: subject.mediaType, digest: subject.digest, size: subject.size),
            annotations: [NotaryHeader.thumbprintAnnotation: thumbprintJSON])
        return (try JWSEnvelope.encoder().encode(manifest), envelopeBytes)
    }

    public struct Manifest: Codable, Sendable {
        public var schemaVersion: Int
        public var mediaType: String?
        public var artifactType: String?
        public var config: Descriptor
        public var layers: [Descriptor]
        public var subject: Descriptor?
        public var annotations: [String: String]?
    }

    /// The envelope layer of a signature manifest.
    public static func envelopeLayer(of manifestData: Data) throws -> Descriptor {
        guard let m = try? JSONDecoder().decode(Manifest.self, from: manifestData) else {
            throw SigningError("the signature manifest is not an OCI image manifest")
        }
        guard let layer = m.layers.first(where: { $0.mediaType == NotaryMediaType.jws }) else {
            throw SigningError("the signature manifest has no \(NotaryMediaType.jws) layer (only JWS envelopes are supported)")
        }
        return layer
    }
}
