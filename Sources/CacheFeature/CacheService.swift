import Access
import Crypto
import Foundation
import Logging
import RegistryStore
import UpstreamClient

/// A credential set as the service hands it to the HTTP edge: never its password.
public struct CredentialSet: Sendable, Equatable {
    public var name: String
    public var loginServer: String
    public var username: String
    public var createdAt: Date
}

/// Pull-through cache rules and the credential sets they present upstream (issue 17 item 2):
/// validation, the password sealed (AES-GCM, bound to the set's name) under a key shared by every
/// node, and the rules as the pull path reads them (kept for a few seconds, reloaded after a write).
public final class CacheService: Sendable {
    let store: any CacheRuleStore
    let sealingKey: SymmetricKey
    let policy: OutboundPolicy
    let logger: Logger

    /// How long a tag pulled through a rule is answered without asking upstream, unless the rule says.
    public static let defaultTagFreshnessSeconds: Int64 = 300
    /// At most a day: a longer window is not a cache of the upstream's tags any more.
    public static let maxTagFreshnessSeconds: Int64 = 86_400

    public init(store: any CacheRuleStore, sealingKey: SymmetricKey, policy: OutboundPolicy = OutboundPolicy(),
                logger: Logger = Logger(label: "berth.cache")) {
        self.store = store
        self.sealingKey = sealingKey
        self.policy = policy
        self.logger = logger
    }

    /// The name of the sealing key in the key material store.
    public static let keyMaterialName = "cache-credential-sealing-key"

    /// The key that seals credential set passwords, shared by every node of the registry (created once).
    public static func sharedSealingKey(_ shared: SharedKeyMaterial) async throws -> SymmetricKey {
        let loaded = try await shared.loadOrCreate(keyMaterialName) { SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) } }
        guard loaded.plaintext.count == 32 else { throw KeyMaterialError("the stored cache sealing key is not 32 bytes") }
        return SymmetricKey(data: loaded.plaintext)
    }

    // MARK: sealing

    static let sealedFormat: UInt8 = 1

    static func context(_ name: String) -> Data { Data("berth-credential-set:\(name.utf8.count):\(name):password".utf8) }

    func seal(_ password: String, name: String) throws -> Data {
        let box = try AES.GCM.seal(Data(password.utf8), using: sealingKey, authenticating: Self.context(name))
        return Data([Self.sealedFormat]) + box.combined!
    }

    /// The credentials of a set in the clear, for the upstream client only.
    func credentials(_ name: String) async throws -> (loginServer: String, credentials: UpstreamCredentials) {
        guard let r = try await store.credentialSet(name: name) else { throw CacheError.notFound("credential set \(name)") }
        guard r.sealedPassword.first == Self.sealedFormat, let box = try? AES.GCM.SealedBox(combined: r.sealedPassword.dropFirst()),
              let plain = try? AES.GCM.open(box, using: sealingKey, authenticating: Self.context(name)) else {
            throw CacheError.invalid("the stored password of credential set \(name) does not open with this registry's key")
        }
        return (r.loginServer, UpstreamCredentials(username: r.username, password: String(decoding: plain, as: UTF8.self)))
    }

    // MARK: validation

    static func validate(name: String, what: String) throws(CacheError) {
        guard !name.isEmpty, name.utf8.count <= 64, name.first != "-",
              name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d })
        else { throw .invalid("a \(what) name is 1-64 characters of a-z, 0-9 and '-' (e.g. docker-hub)") }
    }

    static func validate(freshness: Int64) throws(CacheError) {
        guard freshness >= 0, freshness <= maxTagFreshnessSeconds else {
            throw .invalid("tagFreshnessSeconds must be 0-\(maxTagFreshnessSeconds)")
        }
    }

    static func validate(username: String, password: String?) throws(CacheError) {
        guard !username.isEmpty, username.utf8.count <= 256, !username.contains(":"),
              !username.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
            throw .invalid("username must be 1-256 characters without ':' or control characters")
        }
        if let password {
            guard !password.isEmpty, password.utf8.count <= 4096, !password.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
                throw .invalid("password must be 1-4096 characters without control characters")
            }
        }
    }

    static func loginServer(_ raw: String) throws(CacheError) -> String {
        let lower = raw.lowercased()
        guard CacheRulePattern.hostIsValid(lower) else { throw .invalid("loginServer must be HOST[:PORT] (e.g. registry.example)") }
        return lower
    }

    /// The upstream must be a destination the outbound policy allows (loopback and private
    /// addresses only when the operator allows them).
    func checkUpstream(_ pattern: CacheRulePattern, plainHTTP: Bool) async throws(CacheError) {
        do {
            try await policy.checkTarget((plainHTTP ? "http://" : "https://") + pattern.registry + "/v2/")
        } catch {
            throw .invalid("upstream refused: \(error.message)")
        }
    }

    static func result(_ r: CacheRuleWriteResult, rule: String, set: String?) throws(CacheError) {
        switch r {
        case .done: return
        case .notFound: throw .notFound("cache rule \(rule)")
        case .nameTaken: throw .conflict("cache rule \(rule) exists")
        case .targetOverlaps(let other): throw .conflict("the target overlaps the target of cache rule \(other)")
        case .noSuchCredentialSet: throw .invalid("credential set \(set ?? "") does not exist")
        }
    }

    // MARK: rules

    public func rules() async throws -> [CacheRuleRecord] { try await store.cacheRules() }

    public func rule(_ name: String) async throws -> CacheRuleRecord {
        guard let r = try await store.cacheRule(name: name) else { throw CacheError.notFound("cache rule \(name)") }
        return r
    }

    public func createRule(name: String, source: String, target: String, credentialSet: String?, plainHTTP: Bool,
                           tagFreshnessSeconds: Int64?, createdBy: String) async throws -> CacheRuleRecord {
        try Self.validate(name: name, what: "cache rule")
        let pattern = try CacheRulePattern(source: source, target: target)
        let freshness = tagFreshnessSeconds ?? Self.defaultTagFreshnessSeconds
        try Self.validate(freshness: freshness)
        if let credentialSet { try await checkCredentialSet(credentialSet, for: pattern) }
        try await checkUpstream(pattern, plainHTTP: plainHTTP)
        let record = CacheRuleRecord(name: name, sourceRepository: pattern.source, targetRepository: pattern.target, credentialSet: credentialSet,
                                     plainHTTP: plainHTTP, tagFreshnessSeconds: freshness, createdBy: createdBy, createdAt: Date())
        try Self.result(try await store.createCacheRule(record), rule: name, set: credentialSet)
        logger.info("cache rule created", metadata: ["rule": "\(name)", "source": "\(pattern.source)", "target": "\(pattern.target)"])
        return try await rule(name)
    }

    /// Changes a rule. A change by anybody but the principal the rule runs as (`createdBy`)
    /// rebinds it to the one who made the change: the rule's fills then run with that principal's
    /// rights (Push on the repository filled, asked at every fill as for a new rule), never with
    /// the former creator's (review: a PATCH could point a rule at a target only its creator may
    /// fill). Returns the rule and the principal it ran as before, when it was rebound.
    public func updateRule(name: String, source: String?, target: String?, credentialSet: String?, clearCredentialSet: Bool,
                           plainHTTP: Bool?, tagFreshnessSeconds: Int64?, by actor: String) async throws -> (rule: CacheRuleRecord, reboundFrom: String?) {
        if credentialSet != nil, clearCredentialSet { throw CacheError.invalid("credentialSet and clearCredentialSet exclude each other") }
        let current = try await rule(name)
        let pattern = try CacheRulePattern(source: source ?? current.sourceRepository, target: target ?? current.targetRepository)
        if let tagFreshnessSeconds { try Self.validate(freshness: tagFreshnessSeconds) }
        let set = clearCredentialSet ? nil : (credentialSet ?? current.credentialSet)
        if let set { try await checkCredentialSet(set, for: pattern) }
        try await checkUpstream(pattern, plainHTTP: plainHTTP ?? current.plainHTTP)
        let setChange: String?? = if let credentialSet { .some(credentialSet) } else if clearCredentialSet { .some(nil) } else { nil }
        try Self.result(try await store.updateCacheRule(name: name, sourceRepository: source.map { _ in pattern.source },
                                                        targetRepository: target.map { _ in pattern.target }, credentialSet: setChange,
                                                        plainHTTP: plainHTTP, tagFreshnessSeconds: tagFreshnessSeconds,
                                                        createdBy: actor == current.createdBy ? nil : actor),
                        rule: name, set: credentialSet)
        let reboundFrom = actor == current.createdBy ? nil : current.createdBy
        logger.info("cache rule updated", metadata: ["rule": "\(name)", "by": "\(actor)", "reboundFrom": "\(reboundFrom ?? "-")"])
        return (try await rule(name), reboundFrom)
    }

    public func deleteRule(_ name: String) async throws {
        guard try await store.deleteCacheRule(name: name) else { throw CacheError.notFound("cache rule \(name)") }
        logger.info("cache rule deleted", metadata: ["rule": "\(name)"])
    }

    /// A rule's credential set must be for the rule's upstream: a password is never sent to
    /// another registry than the one it was given for.
    func checkCredentialSet(_ name: String, for pattern: CacheRulePattern) async throws {
        guard let set = try await store.credentialSet(name: name) else { throw CacheError.invalid("credential set \(name) does not exist") }
        guard set.loginServer == pattern.registry else {
            throw CacheError.invalid("credential set \(name) is for \(set.loginServer), not the rule's upstream \(pattern.registry)")
        }
    }

    // MARK: credential sets

    static func view(_ r: CredentialSetRecord) -> CredentialSet {
        CredentialSet(name: r.name, loginServer: r.loginServer, username: r.username, createdAt: r.createdAt)
    }

    public func credentialSets() async throws -> [CredentialSet] { try await store.credentialSets().map(Self.view) }

    public func credentialSet(_ name: String) async throws -> CredentialSet {
        guard let r = try await store.credentialSet(name: name) else { throw CacheError.notFound("credential set \(name)") }
        return Self.view(r)
    }

    public func createCredentialSet(name: String, loginServer: String, username: String, password: String) async throws -> CredentialSet {
        try Self.validate(name: name, what: "credential set")
        let server = try Self.loginServer(loginServer)
        try Self.validate(username: username, password: password)
        let record = CredentialSetRecord(name: name, loginServer: server, username: username, sealedPassword: try seal(password, name: name),
                                         createdAt: Date())
        guard try await store.createCredentialSet(record) else { throw CacheError.conflict("credential set \(name) exists") }
        logger.info("credential set created", metadata: ["set": "\(name)", "loginServer": "\(server)"])
        return try await credentialSet(name)
    }

    /// A new login server needs the password again: it was given for one registry.
    public func updateCredentialSet(name: String, loginServer: String?, username: String?, password: String?) async throws -> CredentialSet {
        let server = try loginServer.map { s throws(CacheError) in try Self.loginServer(s) }
        if let username { try Self.validate(username: username, password: password) } else if let password {
            try Self.validate(username: "x", password: password)
        }
        let current = try await credentialSet(name)
        if let server, server != current.loginServer {
            if password == nil { throw CacheError.invalid("a new loginServer needs the password again") }
            let users = try await store.cacheRules().filter { $0.credentialSet == name }.map(\.name)
            if !users.isEmpty { throw CacheError.conflict("credential set \(name) is used by cache rules \(users.joined(separator: ", ")) of another upstream") }
        }
        guard try await store.updateCredentialSet(name: name, loginServer: server, username: username,
                                                  sealedPassword: try password.map { try seal($0, name: name) }) else {
            throw CacheError.notFound("credential set \(name)")
        }
        return try await credentialSet(name)
    }

    public func deleteCredentialSet(_ name: String) async throws {
        switch try await store.deleteCredentialSet(name: name) {
        case .deleted: logger.info("credential set deleted", metadata: ["set": "\(name)"])
        case .notFound: throw CacheError.notFound("credential set \(name)")
        case .inUse(let rules): throw CacheError.conflict("credential set \(name) is used by cache rules \(rules.joined(separator: ", "))")
        }
    }
}
