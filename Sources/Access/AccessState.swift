import Foundation
import OCIModel

/// Everything access control knows, as one document (see `AccessStateStore`). Secrets are only
/// ever stored as hashes.
public struct AccessState: Codable, Sendable, Equatable {
    public var identities: [String: Identity] = [:]
    public var scopeMaps: [String: ScopeMap] = [:]
    public var tokens: [String: Token] = [:]
    public var admin = Admin()
    public var anonymousPullEnabled = false
    public var network = NetworkPolicy()

    public init() {}

    public struct Identity: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable { case user, servicePrincipal = "service-principal" }
        public var name: String
        public var kind: Kind
        public var passwordHash: String?
        public var enabled: Bool = true
        public var trustedService: Bool = false
        /// Bumped on every credential change, disable or delete: refresh and access tokens that
        /// carry an older generation stop working at once.
        public var generation: Int = 0
        public var roles: [RoleAssignment] = []
        public var federatedCredentials: [FederatedCredential] = []
        public var createdAt: Date
        /// Immutable, never reused (a random UUID given when the identity is created): every token
        /// carries it, so a token of a deleted identity never works for a new one of the same name.
        public var subjectID: String? = nil
    }

    public struct RoleAssignment: Codable, Sendable, Equatable, Hashable {
        public var role: Role
        /// `*` for the whole registry, or a repository pattern.
        public var scope: RepositoryPattern
    }

    public struct FederatedCredential: Codable, Sendable, Equatable {
        public var name: String
        public var issuer: String
        public var subject: String
        public var audiences: [String]
    }

    public struct ScopeMap: Codable, Sendable, Equatable {
        public struct Entry: Codable, Sendable, Equatable {
            public var repository: RepositoryPattern
            public var actions: [String]

            public init(repository: RepositoryPattern, actions: [String]) {
                self.repository = repository
                self.actions = actions
            }
        }
        public var name: String
        public var description: String?
        public var entries: [Entry]
        public var builtIn: Bool = false

        public var grants: [Grant] {
            entries.map { e in Grant(e.repository, e.actions.reduce(into: Action()) { $0.formUnion(Action(scopeMapName: $1) ?? []) }) }
        }
    }

    public struct TokenPassword: Codable, Sendable, Equatable {
        public var hash: String
        public var expiry: Date?
        public var createdAt: Date
    }

    public struct Token: Codable, Sendable, Equatable {
        public var name: String
        public var scopeMap: String
        public var enabled: Bool = true
        public var password1: TokenPassword?
        public var password2: TokenPassword?
        public var generation: Int = 0
        public var createdAt: Date
        /// Immutable, never reused subject id, as for identities.
        public var subjectID: String? = nil
    }

    public struct Admin: Codable, Sendable, Equatable {
        public var enabled = false
        public var password1: TokenPassword?
        public var password2: TokenPassword?
        public var generation = 0
    }

    /// Gives every identity and token that has no subject id yet a fresh one (records written
    /// before subject ids existed, and new records). Returns whether anything changed.
    @discardableResult
    public mutating func assignMissingSubjectIDs() -> Bool {
        var changed = false
        for (name, identity) in identities where identity.subjectID == nil {
            identities[name]!.subjectID = UUID().uuidString
            changed = true
        }
        for (name, token) in tokens where token.subjectID == nil {
            tokens[name]!.subjectID = UUID().uuidString
            changed = true
        }
        return changed
    }

    /// The built-in scope maps every registry has.
    public static let builtInScopeMaps: [ScopeMap] = [
        ScopeMap(name: "_repositories_pull", description: "Pull from every repository",
                 entries: [.init(repository: try! RepositoryPattern("*"), actions: ["content/read", "metadata/read"])], builtIn: true),
        ScopeMap(name: "_repositories_push", description: "Pull and push every repository",
                 entries: [.init(repository: try! RepositoryPattern("*"),
                                 actions: ["content/read", "content/write", "metadata/read", "metadata/write"])], builtIn: true),
        ScopeMap(name: "_repositories_admin", description: "Pull, push and delete in every repository",
                 entries: [.init(repository: try! RepositoryPattern("*"), actions: Action.scopeMapNames.map(\.0))], builtIn: true),
    ]
}
