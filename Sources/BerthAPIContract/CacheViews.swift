import Foundation

// Issue 17 item 2's bodies: pull-through cache rules (`/api/v1/cache-rules…`) and the credential
// sets they present upstream (`/api/v1/credential-sets…`), shared by the server's CacheFeature
// and `berth cache-rule` / `berth credential-set`.

/// `POST /api/v1/cache-rules` (name, sourceRepository and targetRepository required) and
/// `PATCH /api/v1/cache-rules/{name}` (only the fields given change; `clearCredentialSet` removes it).
public struct CacheRuleRequest: Codable, Sendable, Equatable {
    public let name: String?
    /// `UPSTREAM_HOST[:PORT]/REPOSITORY` or `UPSTREAM_HOST[:PORT]/PREFIX/*`.
    public let sourceRepository: String?
    /// A repository or `PREFIX/*` of this registry; must not overlap another rule's.
    public let targetRepository: String?
    public let credentialSet: String?
    public let clearCredentialSet: Bool?
    /// Speak http instead of https to the upstream.
    public let plainHTTP: Bool?
    /// How long a tag pulled through the rule is answered without asking upstream (default 300).
    public let tagFreshnessSeconds: Int64?
    public init(name: String? = nil, sourceRepository: String? = nil, targetRepository: String? = nil, credentialSet: String? = nil,
                clearCredentialSet: Bool? = nil, plainHTTP: Bool? = nil, tagFreshnessSeconds: Int64? = nil) {
        self.name = name
        self.sourceRepository = sourceRepository
        self.targetRepository = targetRepository
        self.credentialSet = credentialSet
        self.clearCredentialSet = clearCredentialSet
        self.plainHTTP = plainHTTP
        self.tagFreshnessSeconds = tagFreshnessSeconds
    }
}

public struct CacheRuleView: Codable, Sendable, Equatable {
    public var name: String
    public var sourceRepository: String
    public var targetRepository: String
    public var credentialSet: String?
    public var plainHTTP: Bool
    public var tagFreshnessSeconds: Int64
    public var createdBy: String
    public var createdAt: Date
    public init(name: String, sourceRepository: String, targetRepository: String, credentialSet: String?, plainHTTP: Bool,
                tagFreshnessSeconds: Int64, createdBy: String, createdAt: Date) {
        self.name = name
        self.sourceRepository = sourceRepository
        self.targetRepository = targetRepository
        self.credentialSet = credentialSet
        self.plainHTTP = plainHTTP
        self.tagFreshnessSeconds = tagFreshnessSeconds
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// `POST /api/v1/credential-sets` (every field required) and `PATCH /api/v1/credential-sets/{name}`
/// (only the fields given change; a new loginServer needs the password again).
public struct CredentialSetRequest: Codable, Sendable, Equatable {
    public let name: String?
    /// `HOST[:PORT]` of the upstream registry the credentials are for.
    public let loginServer: String?
    public let username: String?
    /// Stored sealed, never shown again.
    public let password: String?
    public init(name: String? = nil, loginServer: String? = nil, username: String? = nil, password: String? = nil) {
        self.name = name
        self.loginServer = loginServer
        self.username = username
        self.password = password
    }
}

/// A credential set: never its password.
public struct CredentialSetView: Codable, Sendable, Equatable {
    public var name: String
    public var loginServer: String
    public var username: String
    public var createdAt: Date
    public init(name: String, loginServer: String, username: String, createdAt: Date) {
        self.name = name
        self.loginServer = loginServer
        self.username = username
        self.createdAt = createdAt
    }
}
