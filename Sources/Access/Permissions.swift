import OCIModel

/// What a request wants to do to a repository (or to the registry), in the vocabulary of scope
/// maps plus the few actions that only roles grant.
public struct Action: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let contentRead = Action(rawValue: 1 << 0)
    public static let contentWrite = Action(rawValue: 1 << 1)
    public static let contentDelete = Action(rawValue: 1 << 2)
    public static let metadataRead = Action(rawValue: 1 << 3)
    public static let metadataWrite = Action(rawValue: 1 << 4)
    /// Push referrers (signatures, attestations) only: the ImageSigner role.
    public static let signatureWrite = Action(rawValue: 1 << 5)
    public static let quarantineRead = Action(rawValue: 1 << 6)
    public static let quarantineWrite = Action(rawValue: 1 << 7)
    /// Read settings, identities, tokens, audit (management API).
    public static let managementRead = Action(rawValue: 1 << 8)
    /// Change settings, identities, tokens (management API).
    public static let managementWrite = Action(rawValue: 1 << 9)
    /// Read the event log as a peer region does (`/api/v1/replication/events`, issue 13): the
    /// Replicator role, granted registry-wide.
    public static let replicationRead = Action(rawValue: 1 << 10)

    public static let all = Action(rawValue: (1 << 11) - 1)

    /// The actions a scope map may name, by their wire names.
    public static let scopeMapNames: [(String, Action)] = [
        ("content/read", .contentRead), ("content/write", .contentWrite), ("content/delete", .contentDelete),
        ("metadata/read", .metadataRead), ("metadata/write", .metadataWrite),
    ]

    static let allNames: [(String, Action)] = scopeMapNames + [
        ("signature/write", .signatureWrite), ("quarantine/read", .quarantineRead), ("quarantine/write", .quarantineWrite),
        ("management/read", .managementRead), ("management/write", .managementWrite),
        ("replication/read", .replicationRead),
    ]

    public init?(scopeMapName: String) {
        guard let hit = Action.scopeMapNames.first(where: { $0.0 == scopeMapName }) else { return nil }
        self = hit.1
    }

    public var names: [String] { Action.allNames.filter { contains($0.1) }.map(\.0) }
    public var description: String { names.joined(separator: ",") }
}

/// Built-in roles and what each may do.
public enum Role: String, CaseIterable, Sendable, Codable {
    case pull = "Pull"
    case push = "Push"
    case delete = "Delete"
    case imageSigner = "ImageSigner"
    case quarantineReader = "QuarantineReader"
    case quarantineWriter = "QuarantineWriter"
    case reader = "Reader"
    case owner = "Owner"
    /// A peer region's service identity: reads content and the event log (assign it on `*`).
    case replicator = "Replicator"

    public var actions: Action {
        switch self {
        case .pull: [.contentRead, .metadataRead]
        case .push: [.contentRead, .metadataRead, .contentWrite, .metadataWrite]
        case .delete: [.contentDelete]
        case .imageSigner: [.contentRead, .metadataRead, .signatureWrite]
        case .quarantineReader: [.contentRead, .metadataRead, .quarantineRead]
        case .quarantineWriter: [.contentRead, .metadataRead, .quarantineRead, .quarantineWrite]
        case .reader: [.contentRead, .metadataRead, .managementRead]
        case .owner: .all
        case .replicator: [.contentRead, .metadataRead, .quarantineRead, .replicationRead]
        }
    }

    /// Case-insensitive lookup, so `--role pull` works as well as `--role Pull`.
    public init?(named name: String) {
        guard let r = Role.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else { return nil }
        self = r
    }
}

/// A repository pattern of a scope map or role assignment: an exact repository name, `prefix/*`
/// (every repository below `prefix/`, at any depth), or `*` (every repository).
public struct RepositoryPattern: Hashable, Sendable, CustomStringConvertible, Codable {
    public let value: String

    public init(_ raw: String) throws(RegistryError) {
        if raw == "*" {
            value = raw
        } else if raw.hasSuffix("/*") {
            guard RepositoryName.isValid(String(raw.dropLast(2))) else {
                throw RegistryError(.nameInvalid, "invalid repository pattern \(raw.prefix(120))")
            }
            value = raw
        } else {
            guard RepositoryName.isValid(raw) else {
                throw RegistryError(.nameInvalid, "invalid repository pattern \(raw.prefix(120)): use a name, prefix/* or *")
            }
            value = raw
        }
    }

    public func matches(_ repository: String) -> Bool {
        if value == "*" { return true }
        if value.hasSuffix("/*") {
            let prefix = value.dropLast(1)   // keeps the slash
            return repository.hasPrefix(prefix) && repository.count > prefix.count
        }
        return value == repository
    }

    public var description: String { value }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        try self.init(raw)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}

/// One line of a scope map or one role assignment, resolved: these actions on these repositories.
public struct Grant: Hashable, Sendable {
    public let pattern: RepositoryPattern
    public let actions: Action

    public init(_ pattern: RepositoryPattern, _ actions: Action) {
        self.pattern = pattern
        self.actions = actions
    }
}

/// Who is asking, with everything they may do, resolved once at authentication.
public struct Principal: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable {
        case anonymous, identity, token, admin
    }

    public let kind: Kind
    public let name: String
    public let grants: [Grant]
    /// Registry-wide actions (management, catalog of everything).
    public let registryActions: Action
    /// Identities marked as trusted services pass the network firewall once authenticated.
    public let isTrustedService: Bool
    /// May hold a `registry:management` token without management rights: the management API's
    /// endpoints judged per repository then judge it by its grants (a task run's `berth` steps).
    public let managementByGrants: Bool

    public init(kind: Kind, name: String, grants: [Grant], registryActions: Action = [], isTrustedService: Bool = false,
                managementByGrants: Bool = false) {
        self.managementByGrants = managementByGrants
        self.kind = kind
        self.name = name
        self.grants = grants
        self.registryActions = registryActions
        self.isTrustedService = isTrustedService
    }

    public static let anonymous = Principal(kind: .anonymous, name: "anonymous", grants: [])

    /// Grants add up: the union of every grant whose pattern matches.
    public func actions(on repository: String) -> Action {
        grants.reduce(into: Action()) { acc, g in if g.pattern.matches(repository) { acc.formUnion(g.actions) } }
    }

    public func may(_ action: Action, on repository: String) -> Bool {
        actions(on: repository).isSuperset(of: action)
    }
}
