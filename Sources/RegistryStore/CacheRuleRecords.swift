import Foundation

/// A pull-through cache rule (issue 17 item 2): repositories matched by `targetRepository` here are
/// filled on a miss from `sourceRepository` upstream. Both are an exact repository (`host/library/redis`
/// and `mirror/redis`) or a prefix ending in `/*` (`host/library/*` and `mirror/*`); the feature
/// checks the grammar, the store only that targets do not overlap.
public struct CacheRuleRecord: Sendable, Codable, Equatable {
    /// The `detail` of the `setting` event every write of a rule or credential set appends (in its
    /// transaction): each node's pull-through cache re-reads its rules when it sees it.
    public static let changeEventDetail = "cache-rules"

    /// 1-64 characters of a-z, 0-9, '-'; unique.
    public var name: String
    /// `HOST[:PORT]/path` or `HOST[:PORT]/path/*`.
    public var sourceRepository: String
    /// A repository name or a `prefix/*` of this registry.
    public var targetRepository: String
    /// The credential set presented upstream (nil: anonymous).
    public var credentialSet: String?
    /// Speak http instead of https upstream.
    public var plainHTTP: Bool
    /// How long a tag pulled through the cache is answered without asking upstream.
    public var tagFreshnessSeconds: Int64
    /// The identity that created the rule (its rights bound what the rule may fill).
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

    /// Whether two target patterns can match one repository: equal exact names, an exact name under
    /// a prefix, or one prefix under the other (`a/*` and `a/b/*`).
    public static func targetsOverlap(_ a: String, _ b: String) -> Bool {
        func prefix(_ p: String) -> String? { p.hasSuffix("/*") ? String(p.dropLast()) : nil }
        switch (prefix(a), prefix(b)) {
        case (nil, nil): return a == b
        case (let pa?, nil): return b.hasPrefix(pa)
        case (nil, let pb?): return a.hasPrefix(pb)
        case (let pa?, let pb?): return pa.hasPrefix(pb) || pb.hasPrefix(pa)
        }
    }
}

/// Credentials presented to an upstream registry by cache rules. The password is sealed (AES-GCM)
/// by the caller; the store never sees it in the clear.
public struct CredentialSetRecord: Sendable, Codable, Equatable {
    /// 1-64 characters of a-z, 0-9, '-'; unique.
    public var name: String
    /// `HOST[:PORT]` the credentials are for; they are sent to no other registry.
    public var loginServer: String
    public var username: String
    public var sealedPassword: Data
    public var createdAt: Date

    public init(name: String, loginServer: String, username: String, sealedPassword: Data, createdAt: Date) {
        self.name = name
        self.loginServer = loginServer
        self.username = username
        self.sealedPassword = sealedPassword
        self.createdAt = createdAt
    }
}

public enum CacheRuleWriteResult: Sendable, Equatable {
    case done
    /// No rule of that name (update).
    case notFound
    /// The name is taken (create).
    case nameTaken
    /// The target overlaps the named rule's target.
    case targetOverlaps(rule: String)
    /// The named credential set does not exist.
    case noSuchCredentialSet
}

public enum CredentialSetDeleteResult: Sendable, Equatable {
    case deleted
    case notFound
    /// Rules still name it (sorted); nothing changed.
    case inUse(rules: [String])
}

/// Persistence of pull-through cache rules and credential sets. Each decision (a name taken, a
/// target overlapping another rule's, a credential set named or in use) is made in the same
/// transaction as the write, so concurrent writers cannot both pass it.
public protocol CacheRuleStore: Sendable {
    /// Every rule, by name.
    func cacheRules() async throws -> [CacheRuleRecord]
    func cacheRule(name: String) async throws -> CacheRuleRecord?
    func createCacheRule(_ record: CacheRuleRecord) async throws -> CacheRuleWriteResult
    /// Changes the given fields (`credentialSet: .some(nil)` removes it; `createdBy` rebinds the
    /// rule to whoever changed it, whose rights its fills then run with); the name stays.
    func updateCacheRule(name: String, sourceRepository: String?, targetRepository: String?, credentialSet: String??, plainHTTP: Bool?,
                         tagFreshnessSeconds: Int64?, createdBy: String?) async throws -> CacheRuleWriteResult
    /// False when there was none.
    func deleteCacheRule(name: String) async throws -> Bool

    /// Every credential set, by name.
    func credentialSets() async throws -> [CredentialSetRecord]
    func credentialSet(name: String) async throws -> CredentialSetRecord?
    /// False, and nothing changes, when the name is taken.
    func createCredentialSet(_ record: CredentialSetRecord) async throws -> Bool
    /// Changes the given fields; false when there is no such set.
    func updateCredentialSet(name: String, loginServer: String?, username: String?, sealedPassword: Data?) async throws -> Bool
    /// Refused while a rule names the set.
    func deleteCredentialSet(name: String) async throws -> CredentialSetDeleteResult
}

extension CacheRuleStore {
    /// The fields given changed, the creator kept.
    public func updateCacheRule(name: String, sourceRepository: String?, targetRepository: String?, credentialSet: String??, plainHTTP: Bool?,
                                tagFreshnessSeconds: Int64?) async throws -> CacheRuleWriteResult {
        try await updateCacheRule(name: name, sourceRepository: sourceRepository, targetRepository: targetRepository, credentialSet: credentialSet,
                                  plainHTTP: plainHTTP, tagFreshnessSeconds: tagFreshnessSeconds, createdBy: nil)
    }
}
