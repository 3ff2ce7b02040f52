import Foundation
import OCIModel
import X509

/// The result of one validation of one signature.
public struct CheckResult: Sendable, CustomStringConvertible {
    public enum Status: String, Sendable { case passed, failed, skipped }
    public let check: ValidationCheck
    public let action: ValidationAction
    public let status: Status
    public let message: String

    public var description: String {
        switch status {
        case .passed: "\(check.rawValue): passed\(message.isEmpty ? "" : " (\(message))")"
        case .skipped: "\(check.rawValue): skipped\(message.isEmpty ? "" : " (\(message))")"
        case .failed: "\(check.rawValue): FAILED (\(action == .enforce ? "enforced" : "logged")): \(message)"
        }
    }
}

public struct VerificationOutcome: Sendable {
    public let policyName: String
    public let level: VerificationLevel
    public let results: [CheckResult]
    /// Details of the verified signature when integrity held.
    public let signer: String?
    public let signingTime: String?

    /// True when no enforced check failed.
    public var succeeded: Bool { failure == nil }
    /// The enforced check that failed, if any.
    public var failure: CheckResult? { results.first { $0.status == .failed && $0.action == .enforce } }
    public var warnings: [CheckResult] { results.filter { $0.status == .failed && $0.action == .log } }
}

/// Verifies Notary Project JWS signatures against a trust policy and trust stores.
public struct SignatureVerifier: Sendable {
    public let policy: TrustPolicyDocument
    /// Returns the certificates of a named trust store.
    public let trustStore: @Sendable (TrustStoreReference) throws -> [Certificate]

    public init(policy: TrustPolicyDocument, trustStore: @escaping @Sendable (TrustStoreReference) throws -> [Certificate]) {
        self.policy = policy
        self.trustStore = trustStore
    }

    public init(policy: TrustPolicyDocument, store: FileTrustStore) {
        self.init(policy: policy, trustStore: { try store.certificates($0) })
    }

    /// Verifies one envelope for the manifest `digest` in `repository` (`host/repo`).
    /// Throws only when no trust policy applies.
    public func verify(envelope data: Data, repository: String, digest: String, now: Date = Date()) throws -> VerificationOutcome {
        let trustPolicy = try policy.policy(for: repository)
        let level = try trustPolicy.signatureVerification.parsedLevel()
        let actions = try trustPolicy.signatureVerification.actions()
        var results: [CheckResult] = []
        if level == .skip {
            for c in ValidationCheck.allCases {
                results.append(CheckResult(check: c, action: .skip, status: .skipped, message: "level skip"))
            }
            return VerificationOutcome(policyName: trustPolicy.name, level: level, results: results, signer: nil, signingTime: nil)
        }
        func finish(_ signer: String? = nil, _ time: String? = nil) -> VerificationOutcome {
            VerificationOutcome(policyName: trustPolicy.name, level: level, results: results, signer: signer, signingTime: time)
        }
        /// Records a result; returns false when verification must stop (enforced failure).
        func record(_ check: ValidationCheck, _ error: String?, _ note: String = "") -> Bool {
            let action = actions[check] ?? .enforce
            if action == .skip {
                results.append(CheckResult(check: check, action: action, status: .skipped, message: "skipped by policy"))
                return true
            }
            if let error {
                results.append(CheckResult(check: check, action: action, status: .failed, message: error))
                return action != .enforce
            }
            results.append(CheckResult(check: check, action: action, status: .passed, message: note))
            return true
        }

        // Integrity.
        let envelope: JWSEnvelope
        let header: ProtectedHeader
        let chain: [Certificate]
        do {
            envelope = try JWSEnvelope.parse(data)
            (header, chain) = try Self.checkIntegrity(envelope, digest: digest)
        } catch {
            _ = record(.integrity, "\(error)")
            return finish()
        }
        _ = record(.integrity, nil, "signature and targetArtifact \(digest)")
        let leaf = chain[0]
        let signer = CertificateCoding.subject(leaf)

        // Authenticity.
        var authError: String?
        do { try checkAuthenticity(chain: chain, policy: trustPolicy) } catch { authError = "\(error)" }
        guard record(.authenticity, authError, "signed by \(signer)") else { return finish(signer, header.signingTime) }

        // Authentic timestamp: the chain must be valid at the (self-asserted) signing time and,
        // without a trusted timestamp, at verification time too.
        var timeError: String?
        if let t = header.signingTime, let signingTime = RFC3339.parse(t) {
            for (i, cert) in chain.enumerated() {
                let who = i == 0 ? "the signing certificate" : "chain certificate \(i) (\(CertificateCoding.subject(cert)))"
                if signingTime < cert.notValidBefore || signingTime > cert.notValidAfter {
                    timeError = "\(who) was not valid at signing time \(t) (valid \(RFC3339.format(cert.notValidBefore)) to \(RFC3339.format(cert.notValidAfter)))"
                    break
                }
                if now < cert.notValidBefore || now > cert.notValidAfter {
                    timeError = "\(who) is not valid now (valid \(RFC3339.format(cert.notValidBefore)) to \(RFC3339.format(cert.notValidAfter)))"
                    break
                }
            }
        } else {
            timeError = "the signing time is missing or not RFC 3339"
        }
        guard record(.authenticTimestamp, timeError) else { return finish(signer, header.signingTime) }

        // Expiry.
        var expiryError: String?
        var expiryNote = "no expiry set"
        if let e = header.expiry {
            if let expiry = RFC3339.parse(e) {
                if now >= expiry { expiryError = "the signature expired at \(e)" } else { expiryNote = "expires \(e)" }
            } else {
                expiryError = "io.cncf.notary.expiry \(e) is not RFC 3339"
            }
        }
        guard record(.expiry, expiryError, expiryNote) else { return finish(signer, header.signingTime) }

        // Revocation: no OCSP/CRL client yet.
        results.append(CheckResult(check: .revocation, action: actions[.revocation] ?? .enforce, status: .skipped,
                                   message: "revocation checking is not implemented"))
        return finish(signer, header.signingTime)
    }

    /// Parses and checks the envelope's own consistency and signature; returns the header and x5c chain.
    static func checkIntegrity(_ envelope: JWSEnvelope, digest: String) throws -> (ProtectedHeader, [Certificate]) {
        let (header, raw) = try envelope.protectedHeader()
        guard header.cty == NotaryMediaType.payload else {
            throw SigningError("unsupported content type \(header.cty) (expected \(NotaryMediaType.payload))")
        }
        guard header.signingScheme == "notary.x509" else {
            throw SigningError("signing scheme \(header.signingScheme) is not supported (only notary.x509)")
        }
        guard header.crit.contains(NotaryHeader.signingScheme) else {
            throw SigningError("crit does not list \(NotaryHeader.signingScheme)")
        }
        let understood: Set<String> = [NotaryHeader.signingScheme, NotaryHeader.expiry]
        for name in header.crit {
            guard understood.contains(name) else { throw SigningError("unsupported critical header \(name)") }
            guard raw[name] != nil else { throw SigningError("critical header \(name) is missing") }
        }
        if header.expiry != nil, !header.crit.contains(NotaryHeader.expiry) {
            throw SigningError("\(NotaryHeader.expiry) is present but not listed in crit")
        }
        guard header.signingTime != nil else { throw SigningError("\(NotaryHeader.signingTime) is missing") }
        let chain = try envelope.certificates()
        guard let alg = SignatureAlgorithm(rawValue: header.alg) else {
            throw SigningError("alg \(header.alg) is not allowed")
        }
        guard SignatureAlgorithm(publicKey: chain[0].publicKey) == alg else {
            throw SigningError("alg \(header.alg) does not match the signing certificate's key")
        }
        guard let signature = Base64URL.decode(envelope.signature) else {
            throw SigningError("the signature is not base64url")
        }
        guard alg.isValid(signature: signature, for: envelope.signingInput, publicKey: chain[0].publicKey) else {
            throw SigningError("the signature does not verify with the signing certificate's key (envelope altered or corrupted)")
        }
        let payload = try envelope.decodedPayload()
        guard payload.targetArtifact.digest == digest else {
            throw SigningError("the signature is for \(payload.targetArtifact.digest), not for \(digest)")
        }
        return (header, chain)
    }

    func checkAuthenticity(chain: [Certificate], policy: TrustPolicy) throws {
        let leaf = chain[0]
        // Certificate requirements: a code-signing leaf, CA certificates above it.
        if let eku = try? leaf.extensions.extendedKeyUsage {
            guard eku.contains(.codeSigning) else {
                throw SigningError("the signing certificate lacks the code-signing extended key usage")
            }
        }
        if let ku = try? leaf.extensions.keyUsage, !ku.digitalSignature {
            throw SigningError("the signing certificate's key usage does not allow digital signatures")
        }
        if chain.count > 1, case .some(.isCertificateAuthority) = try? leaf.extensions.basicConstraints {
            throw SigningError("the signing certificate is a CA certificate")
        }
        for i in 0..<(chain.count - 1) {
            let (child, parent) = (chain[i], chain[i + 1])
            guard child.issuer == parent.subject, parent.publicKey.isValidSignature(child.signature, for: child) else {
                throw SigningError("x5c is not a certificate chain: certificate \(i) is not issued by certificate \(i + 1)")
            }
            guard case .some(.isCertificateAuthority) = try? parent.extensions.basicConstraints else {
                throw SigningError("x5c certificate \(i + 1) (\(CertificateCoding.subject(parent))) is not a CA certificate")
            }
        }
        let root = chain[chain.count - 1]
        guard root.issuer == root.subject, root.publicKey.isValidSignature(root.signature, for: root) else {
            throw SigningError("x5c does not end with a self-signed root certificate")
        }
        // Trust store: some certificate of the chain must be in a named store of the policy.
        var trusted: [[UInt8]] = []
        var storeErrors: [String] = []
        for name in policy.trustStores {
            let ref = try TrustStoreReference(name)
            guard ref.type == "ca" || ref.type == "signingAuthority" else { continue }
            do {
                trusted += try trustStore(ref).map { try CertificateCoding.der($0) }
            } catch {
                storeErrors.append("\(error)")
            }
        }
        let chainDER = try chain.map { try CertificateCoding.der($0) }
        guard chainDER.contains(where: { trusted.contains($0) }) else {
            let stores = policy.trustStores.joined(separator: ", ")
            let extra = storeErrors.isEmpty ? "" : " (\(storeErrors.joined(separator: "; ")))"
            throw SigningError("the certificate chain of \(CertificateCoding.subject(leaf)) does not lead to a certificate in trust store(s) \(stores)\(extra)")
        }
        // Trusted identity.
        if let identities = try policy.identities() {
            let subject = DistinguishedNames.attributes(of: leaf.subject)
            guard identities.contains(where: { DistinguishedNames.matches(identity: $0, subject: subject) }) else {
                throw SigningError("signing identity \(DistinguishedNames.format(subject)) is not a trusted identity of policy \(policy.name)")
            }
        }
    }
}
