import Crypto
import Foundation
import Testing
import OCIModel
import X509
@testable import Signing

let target = Descriptor(mediaType: "application/vnd.oci.image.manifest.v1+json",
                        digest: "sha256:" + String(repeating: "ab", count: 32), size: 1234)
let repo = "registry.example:5000/payments/api"

func policy(identity: String = "x509.subject: CN=payments.org, O=Platform", store: String = "ca:payments-ca",
            level: String = "strict", override: [String: String]? = nil) -> TrustPolicyDocument {
    TrustPolicyDocument(trustPolicies: [
        TrustPolicy(name: "payments", registryScopes: [repo],
                    signatureVerification: SignatureVerificationSetting(level: level, override: override),
                    trustStores: [store], trustedIdentities: [identity]),
    ])
}

/// A verifier whose only trust store `ca:payments-ca` holds `trusted`.
func verifier(_ doc: TrustPolicyDocument, trusting trusted: [Certificate]) -> SignatureVerifier {
    SignatureVerifier(policy: doc, trustStore: { ref in
        guard ref.type == "ca", ref.name == "payments-ca" else { throw SigningError("no store \(ref.name)") }
        return trusted
    })
}

func signed(_ material: SigningMaterial, target: Descriptor = target, signingTime: Date = Date(),
            expiry: Date? = nil) async throws -> Data {
    let key = try PEMFileKeyProvider(pem: material.privateKeyPEM)
    let env = try await JWSEnvelope.sign(target: target, key: key, chain: material.chain,
                                         signingTime: signingTime, expiry: expiry)
    return try env.encoded()
}

@Suite struct SigningTests {
    @Test func parsesSubjects() throws {
        let a = try DistinguishedNames.parse("CN=payments.org,O=Platform")
        #expect(a == [NameAttribute(key: "CN", value: "payments.org"), NameAttribute(key: "O", value: "Platform")])
        let b = try DistinguishedNames.parse(#"CN=a\, b , S=WA, C=US"#)
        #expect(b.map(\.key) == ["CN", "ST", "C"])
        #expect(b[0].value == "a, b")
        #expect(throws: SigningError.self) { try DistinguishedNames.parse("XX=1") }
        #expect(throws: SigningError.self) { try DistinguishedNames.parse("CN=a,CN=b") }
        #expect(DistinguishedNames.matches(identity: [NameAttribute(key: "O", value: "Platform")], subject: a))
        #expect(!DistinguishedNames.matches(identity: [NameAttribute(key: "O", value: "Other")], subject: a))
    }

    @Test func createsCertificates() throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        #expect(m.chain.count == 2)
        #expect(CertificateCoding.subject(m.leaf) == "CN=payments.org, O=Platform")
        #expect(try m.leaf.extensions.extendedKeyUsage?.contains(.codeSigning) == true)
        #expect(m.ca!.publicKey.isValidSignature(m.leaf.signature, for: m.leaf))
        let pem = try m.chainPEM()
        #expect(try CertificateCoding.parseCertificates(Data(pem.utf8)).count == 2)
        let single = try SigningCertificates.create(subject: "CN=solo", withCA: false, validity: 60)
        #expect(single.chain.count == 1)
        #expect(single.leaf.notValidAfter.timeIntervalSinceNow <= 61)
    }

    @Test func envelopeShape() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let data = try await signed(m, expiry: Date().addingTimeInterval(3600))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        #expect(Set(json.keys) == ["payload", "protected", "header", "signature"])
        let env = try JWSEnvelope.parse(data)
        let (h, raw) = try env.protectedHeader()
        #expect(h.alg == "ES256")
        #expect(h.cty == "application/vnd.cncf.notary.payload.v1+json")
        #expect(h.crit == ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"])
        #expect(raw["io.cncf.notary.signingScheme"] as? String == "notary.x509")
        #expect(RFC3339.parse(h.signingTime!) != nil)
        #expect(try env.decodedPayload().targetArtifact.digest == target.digest)
        #expect(env.header.x5c.count == 2)
        #expect(Base64URL.decode(env.signature)?.count == 64)  // raw r||s
        let (manifest, blob) = try SignatureManifest.build(envelope: env, subject: target)
        let mj = try JSONSerialization.jsonObject(with: manifest) as! [String: Any]
        #expect(mj["artifactType"] as? String == "application/vnd.cncf.notary.signature")
        #expect((mj["config"] as! [String: Any])["digest"] as? String == NotaryMediaType.emptyDigest)
        #expect(Digest.compute(SignatureManifest.emptyConfig).string == NotaryMediaType.emptyDigest)
        let layer = (mj["layers"] as! [[String: Any]])[0]
        #expect(layer["digest"] as? String == Digest.compute(blob).string)
        let thumbs = (mj["annotations"] as! [String: String])["io.cncf.notary.x509chain.thumbprint#S256"]!
        let list = try JSONDecoder().decode([String].self, from: Data(thumbs.utf8))
        #expect(list == [try CertificateCoding.thumbprint(m.leaf), try CertificateCoding.thumbprint(m.ca!)])
    }

    /// Issue 14: `crit` or `alg` twice in the protected header could be read differently by the two
    /// parsers that look at it; an envelope or payload with a duplicate key is refused outright.
    @Test func duplicateKeysInEnvelopeHeaderOrPayloadAreRefused() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let data = try await signed(m)
        var text = String(decoding: data, as: UTF8.self)
        text = String(text[..<text.lastIndex(of: "}")!])   // up to the closing brace
        #expect(throws: SigningError.self) { try JWSEnvelope.parse(Data((text + #","signature":"x"}"#).utf8)) }

        let env = try JWSEnvelope.parse(data)
        var header = String(decoding: Base64URL.decode(env.protected)!, as: UTF8.self)
        header = String(header[..<header.lastIndex(of: "}")!])
        var twice = env
        twice.protected = Base64URL.encode(Data((header + #","crit":[]}"#).utf8))
        #expect(throws: SigningError.self) { try twice.protectedHeader() }

        var payload = String(decoding: Base64URL.decode(env.payload)!, as: UTF8.self)
        payload = String(payload[..<payload.lastIndex(of: "}")!])
        twice = env
        twice.payload = Base64URL.encode(Data((payload + #","targetArtifact":{}}"#).utf8))
        #expect(throws: SigningError.self) { try twice.decodedPayload() }
        #expect(try env.decodedPayload().targetArtifact.digest == target.digest)
    }

    @Test func roundTrip() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let data = try await signed(m)
        let outcome = try verifier(policy(), trusting: [m.ca!]).verify(envelope: data, repository: repo, digest: target.digest)
        #expect(outcome.succeeded, "\(outcome.results)")
        #expect(outcome.signer == "CN=payments.org, O=Platform")
        // A self-signed leaf trusted directly also works; so does the wildcard identity.
        let solo = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: false)
        let soloOutcome = try verifier(policy(identity: "*"), trusting: [solo.leaf])
            .verify(envelope: try await signed(solo), repository: repo, digest: target.digest)
        #expect(soloOutcome.succeeded, "\(soloOutcome.results)")
    }

    @Test func tamperedPayloadFailsIntegrity() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        var env = try JWSEnvelope.parse(try await signed(m))
        var payload = Base64URL.decode(env.payload)!
        let i = payload.firstIndex(of: UInt8(ascii: "1"))!  // a byte of the size field
        payload[i] = UInt8(ascii: "2")
        env.payload = Base64URL.encode(payload)
        let outcome = try verifier(policy(), trusting: [m.ca!]).verify(envelope: try env.encoded(), repository: repo, digest: target.digest)
        #expect(!outcome.succeeded)
        #expect(outcome.failure?.check == .integrity)
        #expect(outcome.failure?.message.contains("does not verify") == true)
    }

    @Test func untrustedCertificateFailsAuthenticity() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let other = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let outcome = try verifier(policy(), trusting: [other.ca!]).verify(envelope: try await signed(m), repository: repo, digest: target.digest)
        #expect(outcome.failure?.check == .authenticity)
        #expect(outcome.failure?.message.contains("trust store") == true)
        // audit only logs authenticity failures
        let audit = try verifier(policy(level: "audit"), trusting: [other.ca!]).verify(envelope: try await signed(m), repository: repo, digest: target.digest)
        #expect(audit.succeeded)
        #expect(audit.warnings.first?.check == .authenticity)
    }

    @Test func identityMismatchFailsAuthenticity() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let outcome = try verifier(policy(identity: "x509.subject: CN=someone-else.org, O=Platform"), trusting: [m.ca!])
            .verify(envelope: try await signed(m), repository: repo, digest: target.digest)
        #expect(outcome.failure?.check == .authenticity)
        #expect(outcome.failure?.message.contains("not a trusted identity") == true)
        // a partial identity (subset of the subject) matches
        let partial = try verifier(policy(identity: "x509.subject: O=Platform"), trusting: [m.ca!])
            .verify(envelope: try await signed(m), repository: repo, digest: target.digest)
        #expect(partial.succeeded)
    }

    @Test func expiredSignatureFailsExpiry() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let data = try await signed(m, signingTime: Date().addingTimeInterval(-30), expiry: Date().addingTimeInterval(-10))
        let outcome = try verifier(policy(), trusting: [m.ca!]).verify(envelope: data, repository: repo, digest: target.digest)
        #expect(outcome.failure?.check == .expiry)
        let logged = try verifier(policy(override: ["expiry": "log"]), trusting: [m.ca!]).verify(envelope: data, repository: repo, digest: target.digest)
        #expect(logged.succeeded)
        #expect(logged.warnings.map(\.check) == [.expiry])
    }

    @Test func wrongDigestFailsIntegrity() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true)
        let other = "sha256:" + String(repeating: "cd", count: 32)
        let outcome = try verifier(policy(), trusting: [m.ca!]).verify(envelope: try await signed(m), repository: repo, digest: other)
        #expect(outcome.failure?.check == .integrity)
        #expect(outcome.failure?.message.contains("not for \(other)") == true)
    }

    @Test func certificateValidityAtSigningTime() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: true, validity: 3600)
        // signed (claimed) two days ago, before the certificate existed
        let data = try await signed(m, signingTime: Date().addingTimeInterval(-2 * 86_400))
        let outcome = try verifier(policy(), trusting: [m.ca!]).verify(envelope: data, repository: repo, digest: target.digest)
        #expect(outcome.failure?.check == .authenticTimestamp)
        #expect(outcome.failure?.message.contains("signing time") == true)
        // and an expired certificate fails at verification time
        let later = try verifier(policy(), trusting: [m.ca!])
            .verify(envelope: try await signed(m), repository: repo, digest: target.digest, now: Date().addingTimeInterval(7200))
        #expect(later.failure?.check == .authenticTimestamp)
    }

    @Test func policySelectionAndValidation() throws {
        var doc = policy()
        doc.trustPolicies.append(TrustPolicy(name: "global", registryScopes: ["*"],
                                             signatureVerification: .init(level: "permissive"),
                                             trustStores: ["ca:other"], trustedIdentities: ["*"]))
        try doc.validate()
        #expect(try doc.policy(for: repo).name == "payments")
        #expect(try doc.policy(for: "elsewhere/x").name == "global")
        #expect(throws: SigningError.self) { try policy(level: "lenient").validate() }
        #expect(throws: SigningError.self) { try policy(override: ["integrity": "log"]).validate() }
        #expect(throws: SigningError.self) { try policy(identity: "CN=x").validate() }
        #expect(throws: SigningError.self) { try policy().policy(for: "nowhere/x") }
    }

    @Test func unknownCriticalHeaderFails() async throws {
        let m = try SigningCertificates.create(subject: "CN=payments.org,O=Platform", withCA: false)
        let key = try PEMFileKeyProvider(pem: m.privateKeyPEM)
        let header = #"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","crit":["io.cncf.notary.signingScheme","x.unknown"],"io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2026-01-01T00:00:00Z","x.unknown":1}"#
        let payload = try JSONEncoder().encode(NotaryPayload(targetArtifact: target))
        let p = Base64URL.encode(Data(header.utf8)), q = Base64URL.encode(payload)
        let sig = try await key.sign(Data("\(p).\(q)".utf8))
        let env = JWSEnvelope(payload: q, protected: p, header: UnprotectedHeader(x5c: [Data(try CertificateCoding.der(m.leaf)).base64EncodedString()]), signature: Base64URL.encode(sig))
        let outcome = try verifier(policy(identity: "*"), trusting: [m.leaf]).verify(envelope: try env.encoded(), repository: repo, digest: target.digest)
        #expect(outcome.failure?.check == .integrity)
        #expect(outcome.failure?.message.contains("x.unknown") == true)
    }

    @Test func referencesAndDurations() throws {
        let r = try ArtifactReference("127.0.0.1:5000/payments/api@sha256:" + String(repeating: "a", count: 64))
        #expect(r.host == "127.0.0.1:5000")
        #expect(r.repository == "payments/api")
        #expect(r.tag == nil)
        let t = try ArtifactReference("localhost:5000/app:v1")
        #expect(t.tag == "v1" && t.digest == nil)
    }
}
