import OCIModel
import RegistryStore

/// The state of what a request reads or writes, as far as authorization depends on it. The HTTP
/// edge and the pull-admission chain report it; `AccessControl.authorize` decides on it.
public struct AccessTarget: Sendable, Equatable {
    public enum Quarantine: Sendable, Equatable {
        /// A manifest the quarantine gate has not passed: its state (`Pending`, `Failed`) and the
        /// gate's reason.
        case manifest(state: QuarantineState, reason: String?)
        /// A blob that only quarantined manifests of the repository use.
        case blobOfQuarantinedContent
    }

    public enum Write: Sendable, Equatable {
        /// Blob uploads and mounts: material of any manifest, referrers included.
        case blobs
        /// A manifest push whose body has not been read yet.
        case manifestUnread
        /// A manifest push, read: whether it is a referrer (has a subject) pushed by digest.
        case manifest(referrerByDigest: Bool)
    }

    /// Set when the content a read returns is quarantined.
    public var quarantine: Quarantine?
    /// Set for pushes: what is pushed.
    public var write: Write?
    /// A catalog listing (the registry-wide request, or one repository's entry in it).
    public var listing: Bool
    /// A management-API request about a repository (locks, quarantine verdicts, usage).
    public var management: Bool
    /// Asked by an admission review on behalf of the workload that will pull the image, not
    /// for the caller's own pull: no caller's privilege to read past quarantine passes to it.
    public var forWorkload: Bool

    public init(quarantine: Quarantine? = nil, write: Write? = nil, listing: Bool = false, management: Bool = false,
                forWorkload: Bool = false) {
        self.quarantine = quarantine
        self.write = write
        self.listing = listing
        self.management = management
        self.forWorkload = forWorkload
    }

    public static let none = AccessTarget()
}

/// One authorization question: who (the caller, nil without credentials), from where, what
/// (actions on a repository, nil for registry-wide actions), and the target's state.
public struct AccessRequest: Sendable, Equatable {
    public var caller: Caller?
    public var address: IPAddress?
    public var repository: String?
    public var actions: Action
    public var target: AccessTarget

    public init(caller: Caller?, address: IPAddress?, repository: String?, actions: Action, target: AccessTarget = .none) {
        self.caller = caller
        self.address = address
        self.repository = repository
        self.actions = actions
        self.target = target
    }

    /// Docker scope string for the challenge of a request without (sufficient) credentials.
    public static func scope(repository: String?, action: Action) -> String {
        guard let repository else {
            return action.isDisjoint(with: [.managementRead, .managementWrite]) ? "registry:catalog:*" : "registry:management:*"
        }
        var verbs: [String] = []
        if !action.isDisjoint(with: [.contentRead, .metadataRead]) { verbs.append("pull") }
        if !action.isDisjoint(with: [.contentWrite, .metadataWrite, .signatureWrite]) { verbs = ["pull", "push"] }
        if action.contains(.contentDelete) { verbs.append("delete") }
        return "repository:\(repository):\(verbs.joined(separator: ","))"
    }
}

/// Why a request is refused, ready for any edge to render: the OCI error code (and so the HTTP
/// status), the reason for the client and, for 401, the Bearer challenge.
public struct AccessRefusal: Sendable, Equatable, Error {
    public struct Challenge: Sendable, Equatable {
        /// The scope to name in `WWW-Authenticate`, nil for none.
        public var scope: String?
        /// A token was presented but lacks what the request needs.
        public var insufficientScope: Bool
    }

    public var code: OCIErrorCode
    public var reason: String
    public var challenge: Challenge?
    /// The caller lacked the rights (worth an audit record), as opposed to the target's state
    /// refusing everybody without a privilege (quarantine) or a signer's push of a non-referrer.
    public var lacksRights: Bool

    public var status: Int { code.defaultStatus }

    static func challenge(scope: String?, insufficientScope: Bool, reason: String = "authentication required") -> AccessRefusal {
        AccessRefusal(code: .unauthorized, reason: reason, challenge: Challenge(scope: scope, insufficientScope: insufficientScope),
                      lacksRights: false)
    }

    static func denied(_ reason: String, lacksRights: Bool) -> AccessRefusal {
        AccessRefusal(code: .denied, reason: reason, challenge: nil, lacksRights: lacksRights)
    }
}

/// The answer to an `AccessRequest`.
public enum AccessDecision: Sendable, Equatable {
    case allowed
    case denied(AccessRefusal)

    public var isAllowed: Bool { self == .allowed }
}

extension AccessControl {
    /// The one authorization answer. On top of `decide` (network rules, the principal's grants,
    /// a bearer token's `access` claim) it applies the rules that depend on the target:
    /// - **Signers**: a push needs content/write, or signature/write (ImageSigner) for blobs and
    ///   for manifests that are referrers pushed by digest; an unread manifest body is let
    ///   through to be read and asked about again.
    /// - **Catalog**: a token needs the `registry:catalog` scope; each entry is then listed by
    ///   the principal's own rights, not narrowed by the token's repository scopes.
    /// - **Management**: a management token (`registry:management`) acting on a repository is
    ///   judged by its principal's rights there, not narrowed by its repository scopes.
    /// - **Quarantine**: content the gate has not passed needs quarantine/read as well (the
    ///   QuarantineReader role and above); for a workload (admission) it is never pullable.
    public func authorize(_ request: AccessRequest) -> AccessDecision {
        let s = state
        let target = request.target
        var caller = request.caller
        func decide(_ actions: Action) -> Decision {
            self.decide(in: s, caller: caller, address: request.address, repository: request.repository, action: actions)
        }
        func refusal(_ decision: Decision, _ actions: Action) -> AccessDecision {
            switch decision {
            case .allow: .allowed
            case .challenge(let insufficient):
                .denied(.challenge(scope: AccessRequest.scope(repository: request.repository, action: actions), insufficientScope: insufficient))
            case .deny(let reason): .denied(.denied(reason, lacksRights: true))
            }
        }

        if target.listing, let claims = caller?.tokenAccess {
            guard claims.contains(where: { $0.type == "registry" && $0.name == "catalog" }) else {
                if request.repository != nil { return refusal(.challenge(insufficientScope: true), request.actions) }
                return .denied(.challenge(scope: "registry:catalog:*", insufficientScope: true, reason: "token lacks the catalog scope"))
            }
            // The catalog scope stands for "what the principal may see": its roles decide each entry.
            caller?.tokenAccess = nil
        }
        if target.management, caller?.tokenAccess?.contains(where: { $0.type == "registry" && $0.name == "management" }) == true {
            caller?.tokenAccess = nil
        }

        var held = request.actions
        let base = decide(held)
        if base != .allow {
            guard let write = target.write, held.contains(.contentWrite) else { return refusal(base, held) }
            var signing = held
            signing.remove(.contentWrite)
            signing.insert(.signatureWrite)
            guard decide(signing) == .allow else { return refusal(base, held) }
            if case .manifest(referrerByDigest: false) = write {
                return .denied(.denied("signers may only push referrers (a manifest with a subject, by digest)", lacksRights: false))
            }
            held = signing
        }

        if let quarantine = target.quarantine {
            let pastQuarantine = !target.forWorkload && decide(held.union(.quarantineRead)) == .allow
            if !pastQuarantine {
                switch quarantine {
                case .manifest(let state, let reason):
                    let why = reason.map { ": \($0.prefix(200))" } ?? ""
                    return .denied(.denied("manifest quarantined (\(state.rawValue)\(why))", lacksRights: false))
                case .blobOfQuarantinedContent:
                    return .denied(.denied("blob belongs only to quarantined content", lacksRights: false))
                }
            }
        }
        return .allowed
    }
}
