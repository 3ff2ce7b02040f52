import Access
import Admission
import HTTPAPI
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryStore
import RegistryCore
import Signing
import X509

/// Registry-side content trust: for repositories matching its patterns, a manifest is served
/// only if a Notary signature valid under the trust policy refers to it (or to an index that
/// lists it). Referrers themselves (the signatures) and exempt identities (the signer, the
/// scanner) pass. Verdicts are cached briefly, and dropped when a manifest is pushed.
public struct ContentTrustConfig: Codable, Sendable, Equatable {
    public var enabled: Bool
    /// Repository patterns (`payments/*`, an exact name, `*`).
    public var repositories: [String]
    public var trustPolicy: TrustPolicyDocument?
    /// `ca:NAME` → PEM certificates.
    public var trustStores: [String: [String]]
    /// Identity or token names that may pull unsigned content.
    public var exempt: [String]

    public init(enabled: Bool = false, repositories: [String] = [], trustPolicy: TrustPolicyDocument? = nil,
                trustStores: [String: [String]] = [:], exempt: [String] = []) {
        self.enabled = enabled
        self.repositories = repositories
        self.trustPolicy = trustPolicy
        self.trustStores = trustStores
        self.exempt = exempt
    }
}

final class ContentTrustGate: Sendable {
    static let settingKey = SettingKey<ContentTrustConfig>("content-trust")
    let registry: Registry
    /// The configuration and when it was loaded (the registry's cache clock): read again after
    /// the cache TTL, or at once when a `content-trust` setting event arrives.
    private let config = NIOLockedValueBox<(value: ContentTrustConfig, at: Double)?>(nil)
    private struct Verdict { let trusted: Bool; let reason: String; let at: Date; let generation: Int }
    private let verdicts = NIOLockedValueBox<[String: Verdict]>([:])
    private let generation = NIOLockedValueBox(0)
    let ttl: TimeInterval = 30

    init(registry: Registry) {
        self.registry = registry
        // Another process's changes: its setting, and pushes or quarantine verdicts that may
        // change a verdict.
        registry.observeEvents { [weak self] events in
            guard let self else { return }
            if events.contains(where: { $0.action == EventAction.setting && $0.detail == Self.settingKey.name }) {
                // A new policy or trust store: verdicts reached under the old one go too.
                self.config.withLockedValue { $0 = nil }
                self.invalidate()
            }
            // (a link garbage collection removed is referenced by no manifest: no verdict rests on it)
            if events.contains(where: { e in
                e.action != EventAction.setting && e.action != EventAction.blobPush
                    && !(e.action == EventAction.blobDelete && e.detail == EventAction.unreferencedLinkDetail)
            }) { self.invalidate() }
        }
    }

    func current() async throws -> ContentTrustConfig {
        let now = registry.configuration.cacheClock()
        if let c = config.withLockedValue({ $0 }), registry.cacheTrusts(loadedAt: c.at, now: now) { return c.value }
        var loaded = ContentTrustConfig()
        for _ in 0..<3 {
            // An invalidation (a setting event, an update) while this read was on its way may
            // mean it read the old policy: install only what was read in one generation.
            let before = verdictGeneration
            loaded = try await registry.metadata.setting(Self.settingKey) ?? ContentTrustConfig()
            let changed = config.withLockedValue { cached -> Bool? in
                guard generation.withLockedValue({ $0 }) == before else { return nil }
                defer { cached = (loaded, now) }
                return cached.map { $0.value != loaded } ?? false
            }
            guard let changed else { continue }
            // Reloaded after the TTL (the event feed stopped) and different: no verdict of the old
            // policy survives it.
            if changed { invalidate() }
            return loaded
        }
        return loaded
    }

    func update(_ new: ContentTrustConfig) async throws {
        try Self.validate(new)
        // A PUT replaces the whole configuration, so it is also the repair of a stored one that
        // no longer reads (every read of which fails closed): `replacing` logs that, as the other
        // policies' replacing writes do.
        _ = try await registry.replacing({ try await registry.metadata.setting(Self.settingKey) }, default: nil)
        try await registry.metadata.setSetting(Self.settingKey, new)
        // Invalidate first: a reload that read the old policy meanwhile then no longer installs it.
        invalidate()
        config.withLockedValue { $0 = (new, registry.configuration.cacheClock()) }
    }

    /// What a configuration must be to be stored: here (a PUT) or from a peer region.
    static func validate(_ new: ContentTrustConfig) throws {
        if new.enabled {
            guard !new.repositories.isEmpty else { throw ContentTrustError("name at least one repository pattern") }
            guard let policy = new.trustPolicy else { throw ContentTrustError("a trust policy is required") }
            do { try policy.validate() } catch { throw ContentTrustError("trust policy: \(error)") }
            for (name, pems) in new.trustStores {
                _ = try TrustStoreReference(name)
                for pem in pems where (try? CertificateCoding.parseCertificates(Data(pem.utf8)))?.isEmpty ?? true {
                    throw ContentTrustError("trust store \(name) holds something that is not a PEM certificate")
                }
            }
        }
        for pattern in new.repositories {
            do { _ = try RepositoryPattern(pattern) } catch { throw ContentTrustError(error.message) }
        }
    }

    /// Moves on each invalidation: a verdict reached under an older generation is not used.
    var verdictGeneration: Int { generation.withLockedValue { $0 } }

    /// Called on every manifest push: a new signature may change a verdict.
    func invalidate() {
        generation.withLockedValue { $0 += 1 }
        verdicts.withLockedValue { $0.removeAll() }
    }

    /// The access-control grammar (`RepositoryPattern`: a name, `prefix/*` or `*`); patterns are
    /// checked when the configuration is set, so one that does not parse matches nothing.
    static func matches(_ pattern: String, _ repository: String) -> Bool {
        (try? RepositoryPattern(pattern))?.matches(repository) ?? false
    }

    /// Throws DENIED unless the manifest may be served under content trust.
    func admit(_ repository: RepositoryName, _ content: ManifestContent, host: String, caller: String?) async throws {
        // The generation before the policy: a verdict of a policy read before an invalidation is
        // stored under the older generation, so it is never served after it.
        let gen = generation.withLockedValue { $0 }
        let config = try await current()
        guard config.enabled, config.repositories.contains(where: { Self.matches($0, repository.value) }) else { return }
        if content.subject != nil { return }                                 // signatures and other referrers
        if let caller, config.exempt.contains(caller) { return }
        let key = "\(repository.value)@\(content.digest)"
        if let v = verdicts.withLockedValue({ $0[key] }), v.generation == gen, Date().timeIntervalSince(v.at) < ttl {
            if v.trusted { return }
            throw AccessDenied(error: RegistryError(.denied, v.reason))
        }
        // A store read that fails (or a cancelled request) throws here and nothing is cached: an
        // error is not a verdict. It fails closed, as 503 (try again), never as "untrusted".
        let trusted: Bool, reason: String
        do {
            (trusted, reason) = try await evaluate(repository, content.digest, host: host, config: config)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Self.unavailable(error)
        }
        try Task.checkCancellation()
        verdicts.withLockedValue { map in
            if map.count > 10_000 { map.removeAll() }
            map[key] = Verdict(trusted: trusted, reason: reason, at: Date(), generation: gen)
        }
        if !trusted { throw AccessDenied(error: RegistryError(.denied, reason)) }
    }

    func evaluate(_ repository: RepositoryName, _ digest: Digest, host: String, config: ContentTrustConfig) async throws -> (Bool, String) {
        guard let verifier = Self.verifier(config) else { return (false, "content trust: no trust policy configured") }
        var lastFailure = "no signature refers to it"
        // The manifest itself, or an index that lists it (a platform image of a signed index).
        let candidates = [digest] + (try await registry.metadata.parents(repository: repository.value, child: digest))
        for target in candidates {
            // A store that fails while listing, reading a signature or its envelope throws (the
            // caller answers 503): only what the content itself says is a reason not to trust it.
            let list: ReferrerList
            do {
                list = try await registry.referrers(repository, subject: target, artifactType: NotaryMediaType.signatureArtifact,
                                                    limit: 100, last: nil)
            } catch let e as RegistryError where (400..<500).contains(e.status) {
                lastFailure = e.message
                continue
            }
            for signature in list.descriptors {
                do {
                    guard let sigDigest = try? Digest(parsing: signature.digest),
                          let outcome = try await verify(repository, signature: sigDigest, of: target, host: host, verifier: verifier)
                    else { continue }
                    if outcome.succeeded { return (true, "signed by \(outcome.signer ?? "a trusted identity")") }
                    lastFailure = outcome.failure.map { "\($0)" } ?? lastFailure
                } catch let rejected as SignatureRejected {
                    lastFailure = rejected.description
                } catch let e as RegistryError where (400..<500).contains(e.status) {
                    // The signature or its envelope went (deleted meanwhile) or is locked: it does not verify.
                    lastFailure = e.message
                }
            }
        }
        return (false, "content trust: no signature valid under the trust policy for \(repository.value)@\(digest) (\(lastFailure.prefix(300)))")
    }

    /// The verifier of the configured trust policy and stores; nil without a policy.
    static func verifier(_ config: ContentTrustConfig) -> SignatureVerifier? {
        guard let policy = config.trustPolicy else { return nil }
        let stores = config.trustStores
        return SignatureVerifier(policy: policy) { ref in
            (stores["\(ref.type):\(ref.name)"] ?? []).flatMap { (try? CertificateCoding.parseCertificates(Data($0.utf8))) ?? [] }
        }
    }

    /// One signature manifest's envelope verified for `target`; nil when it carries no envelope
    /// of at most 1 MiB.
    func verify(_ repository: RepositoryName, signature: Digest, of target: Digest, host: String,
                verifier: SignatureVerifier) async throws -> VerificationOutcome? {
        let manifest = try await registry.manifest(repository, .digest(signature))
        let layer: Descriptor
        do {
            layer = try SignatureManifest.envelopeLayer(of: Data(manifest.bytes.readableBytesView))
        } catch {
            throw SignatureRejected(description: "\(error)")
        }
        guard let envelopeDigest = try? Digest(parsing: layer.digest), layer.size <= 1 << 20 else { return nil }
        var envelope = Data()
        try await registry.readBlob(repository, envelopeDigest, range: 0..<layer.size) { envelope.append(contentsOf: $0.readableBytesView) }
        do {
            return try verifier.verify(envelope: envelope, repository: "\(host)/\(repository.value)", digest: target.string)
        } catch {
            throw SignatureRejected(description: "\(error)")
        }
    }

    /// What a request is answered when the verdict cannot be reached (the store failed): 503,
    /// try again; the cause is logged by the error renderer, not shown.
    static func unavailable(_ error: any Error) -> RegistryError {
        if let e = error as? RegistryError, e.status >= 500 {
            return RegistryError(.unsupported, "content trust could not be evaluated now: \(e.message); try again", status: 503)
        }
        if let e = error as? RegistryError, (400..<500).contains(e.status) { return e }
        return RegistryError(.unsupported, "content trust could not be evaluated now (storage failed); try again", status: 503)
    }
}

/// Content trust is a check of the pull-admission chain.
extension ContentTrustGate: PullAdmissionCheck {
    var enforcedSetting: String? { Self.settingKey.name }

    func refusal(for pull: PullAdmission.Subject) async throws -> String? {
        do {
            try await admit(pull.repository, pull.content, host: pull.host, caller: pull.puller.exemptionName)
            return nil
        } catch let denied as AccessDenied {
            return denied.error.message
        }
    }
}

/// A signature that does not verify because of what it holds (an envelope that does not parse,
/// or that the verifier refuses): a verdict, unlike a store that fails.
struct SignatureRejected: Error, CustomStringConvertible {
    let description: String
}

struct ContentTrustError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
