import Foundation
import OCIModel
import RegistryCore

/// Whether one signature verifies, for pages that show it (the web console, through the seam
/// `berth serve` hands it): the same verifier, trust policy and trust stores as the pull gate.
public struct SignatureCheck: Sendable, Equatable {
    public var verified: Bool
    /// The signing identity the policy trusted (the certificate's subject), when verified.
    public var signer: String?
    /// Why it does not verify, or which policy accepted it.
    public var detail: String
}

extension ContentTrustFeature {
    /// Verifies the Notary signature manifest `signature` of `repository` against `subject` under
    /// the configured trust policy (whether or not content trust is enforced for the repository).
    /// `host` is the registry's host as clients name it (the policy's scopes are `host/repository`).
    public func checkSignature(_ repository: RepositoryName, subject: Digest, signature: Digest, host: String) async -> SignatureCheck {
        do {
            let config = try await gate.current()
            guard let verifier = ContentTrustGate.verifier(config) else {
                return SignatureCheck(verified: false, signer: nil, detail: "no trust policy is configured")
            }
            guard let outcome = try await gate.verify(repository, signature: signature, of: subject, host: host, verifier: verifier) else {
                return SignatureCheck(verified: false, signer: nil, detail: "the signature carries no envelope of at most 1 MiB")
            }
            if outcome.succeeded {
                return SignatureCheck(verified: true, signer: outcome.signer, detail: "trust policy \(outcome.policyName)")
            }
            return SignatureCheck(verified: false, signer: nil, detail: outcome.failure.map { "\($0)" } ?? "not verified")
        } catch {
            return SignatureCheck(verified: false, signer: nil, detail: "\(error)".prefix(300).description)
        }
    }
}
