import Access
import Foundation
import OCIModel
import RegistryCore
import RegistryStore

/// Who content is pulled for.
public struct Puller: Sendable {
    /// The authenticated caller, nil without credentials.
    public var caller: Caller?
    public var address: IPAddress?
    /// An admission review asking on behalf of the workload that will pull the image (the
    /// caller is the webhook's credential, not the puller): nobody's exemption or privilege
    /// passes to it.
    public var forWorkload: Bool

    public init(caller: Caller?, address: IPAddress?, forWorkload: Bool = false) {
        self.caller = caller
        self.address = address
        self.forWorkload = forWorkload
    }

    /// The name exemptions are matched against (content trust's `exempt`); nil for a workload.
    public var exemptionName: String? { forWorkload ? nil : caller?.principal.name }
}

/// A check of pull admission that a feature contributes at composition time (content trust):
/// nil admits the manifest, otherwise the reason it is refused (403 DENIED).
public protocol PullAdmissionCheck: Sendable {
    func refusal(for pull: PullAdmission.Subject) async throws -> String?
    /// The stored setting this check enforces (one of `PullAdmission.enforcedSettings`), if any.
    var enforcedSetting: String? { get }
}

extension PullAdmissionCheck {
    public var enforcedSetting: String? { nil }
}

/// Pull admission: the one chain that decides whether a manifest (or blob) that the caller may
/// read is served. `/v2/` reads and the Kubernetes admission endpoints both go through it, so
/// they cannot disagree. In order:
/// 1. **locks**: a read-disabled lock on the repository, tag or manifest refuses (`Registry`
///    refuses when reading);
/// 2. **quarantine**: content the gate has not passed is decided by `AccessControl.authorize`
///    with the content's state (QuarantineReader and above read past it; a workload never);
/// 3. **checks** given at composition (content trust), each with the last word.
/// Refusals are thrown: `AccessRefusal` from Access, `RegistryError` (403 DENIED) otherwise.
public struct PullAdmission: Sendable {
    public struct Subject: Sendable {
        public let repository: RepositoryName
        public let content: ManifestContent
        public let puller: Puller
        /// The registry's configured service name: the scope signatures are judged under,
        /// never a request's Host header.
        public let host: String
    }

    let registry: Registry
    /// nil only where the distribution layer runs without access control (tests): quarantined
    /// content is then refused to everybody.
    let access: AccessControl?
    let checks: [any PullAdmissionCheck]
    let host: String

    /// Stored settings that a feature's check enforces when they are switched on
    /// (`"enabled": true`): content trust's policy. A server composed without the check would
    /// serve what the stored policy refuses, so it does not start (`requireEnforcement`).
    public static let enforcedSettings = ["content-trust"]

    /// Throws `MissingPullCheck` when a setting of `enforcedSettings` is stored switched on (or
    /// no longer reads: fail closed) and none of `checks` enforces it.
    public static func requireEnforcement(_ registry: Registry, checks: [any PullAdmissionCheck]) async throws {
        let enforced = Set(checks.compactMap(\.enforcedSetting))
        struct Switch: Decodable { let enabled: Bool? }
        for name in enforcedSettings where !enforced.contains(name) {
            guard let document = try await registry.metadata.settingDocument(name) else { continue }
            let on = (try? JSONDecoder().decode(Switch.self, from: document)).map { $0.enabled ?? false } ?? true
            if on { throw MissingPullCheck(setting: name) }
        }
    }

    public init(registry: Registry, access: AccessControl?, checks: [any PullAdmissionCheck], host: String) {
        self.registry = registry
        self.access = access
        self.checks = checks
        self.host = host
    }

    /// The manifest `reference` names, if `puller` may have it; throws the refusal otherwise.
    public func manifest(_ repository: RepositoryName, _ reference: Reference, for puller: Puller) async throws -> ManifestContent {
        let content = try await registry.manifest(repository, reference)            // 1. locks
        try await admit(repository, content, for: puller)
        return content
    }

    /// Steps 2 and 3 for `content` read by the caller: a manifest not stored yet that a content
    /// fallback serves while it fills (`Registry.unstoredManifest`, which asked the locks) goes
    /// through the same quarantine rule and checks as a stored one.
    public func admit(_ repository: RepositoryName, _ content: ManifestContent, for puller: Puller) async throws {
        if !QuarantineState.isPullable(content.quarantineState) {                    // 2. quarantine
            try authorize(puller, repository, .manifest(state: content.quarantineState ?? .pending,
                                                        reason: content.quarantineReason))
        }
        let subject = Subject(repository: repository, content: content, puller: puller, host: host)
        for check in checks {                                                        // 3. content trust, …
            if let reason = try await check.refusal(for: subject) { throw RegistryError(.denied, reason) }
        }
    }

    /// Whether `puller` may read the blob `digest` of `repository`; throws the refusal otherwise.
    public func blob(_ repository: RepositoryName, _ digest: Digest, for puller: Puller) async throws {
        try await registry.checkBlobReadable(repository.value)                        // 1. locks
        if try await registry.blobOnlyInQuarantine(repository, digest) {              // 2. quarantine
            try authorize(puller, repository, .blobOfQuarantinedContent)
        }
    }

    private func authorize(_ puller: Puller, _ repository: RepositoryName, _ quarantine: AccessTarget.Quarantine) throws {
        guard let access else {
            switch quarantine {
            case .manifest(let state, let reason):
                throw RegistryError(.denied, "manifest quarantined (\(state)\(reason.map { ": \($0.prefix(200))" } ?? ""))")
            case .blobOfQuarantinedContent:
                throw RegistryError(.denied, "blob belongs only to quarantined content")
            }
        }
        let request = AccessRequest(caller: puller.caller, address: puller.address, repository: repository.value,
                                    actions: .contentRead, target: AccessTarget(quarantine: quarantine, forWorkload: puller.forWorkload))
        if case .denied(let refusal) = access.authorize(request) { throw refusal }
    }
}

/// A stored setting is switched on that no check of this server's composition enforces.
public struct MissingPullCheck: Error, CustomStringConvertible {
    public let setting: String
    public var description: String {
        "the stored \(setting) setting is enabled but no feature of this server enforces it; refusing to start rather than "
            + "serve what it refuses (compose the server with the feature, or switch the setting off)"
    }
}
