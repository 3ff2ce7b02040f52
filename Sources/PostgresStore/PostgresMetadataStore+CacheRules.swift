import Foundation
import PostgresNIO
import RegistryStore

// MARK: pull-through cache rules and credential sets

/// Rule writes decide from what they read (a name, a target overlapping another rule's, a set
/// named), so they are serialized writes; credential set writes are single statements.
extension PostgresMetadataStore {
    private static let ruleColumns =
        "name, source_repository, target_repository, credential_set, plain_http, tag_freshness_seconds, created_by, created_at"
    private static let setColumns = "name, login_server, username, sealed_password, created_at"

    private static func cacheRule(_ row: Row) throws -> CacheRuleRecord {
        CacheRuleRecord(name: try row.decode("name"), sourceRepository: try row.decode("source_repository"),
                        targetRepository: try row.decode("target_repository"), credentialSet: try row.decode("credential_set", String?.self),
                        plainHTTP: try row.decode("plain_http"), tagFreshnessSeconds: try row.decode("tag_freshness_seconds"),
                        createdBy: try row.decode("created_by"), createdAt: try row.date("created_at"))
    }

    private static func credentialSet(_ row: Row) throws -> CredentialSetRecord {
        CredentialSetRecord(name: try row.decode("name"), loginServer: try row.decode("login_server"), username: try row.decode("username"),
                            sealedPassword: try row.decode("sealed_password"), createdAt: try row.date("created_at"))
    }

    public func cacheRules() async throws -> [CacheRuleRecord] {
        try await single { tx in
            try await tx.rows("SELECT \(unescaped: Self.ruleColumns) FROM cache_rules ORDER BY name").map(Self.cacheRule)
        }
    }

    public func cacheRule(name: String) async throws -> CacheRuleRecord? {
        try await single { tx in
            try await tx.one("SELECT \(unescaped: Self.ruleColumns) FROM cache_rules WHERE name = \(name)").map(Self.cacheRule)
        }
    }

    private static func check(_ tx: Tx, name: String, target: String, credentialSet: String?) async throws -> CacheRuleWriteResult? {
        if let credentialSet, try await tx.one("SELECT 1 FROM credential_sets WHERE name = \(credentialSet)") == nil {
            return .noSuchCredentialSet
        }
        for row in try await tx.rows("SELECT name, target_repository FROM cache_rules WHERE name <> \(name) ORDER BY name") {
            let other: String = try row.decode("name")
            if CacheRuleRecord.targetsOverlap(target, try row.decode("target_repository")) { return .targetOverlaps(rule: other) }
        }
        return nil
    }

    public func createCacheRule(_ r: CacheRuleRecord) async throws -> CacheRuleWriteResult {
        let origin = EventOrigin.current
        return try await write { tx in
            if try await tx.one("SELECT 1 FROM cache_rules WHERE name = \(r.name)") != nil { return .nameTaken }
            if let refused = try await Self.check(tx, name: r.name, target: r.targetRepository, credentialSet: r.credentialSet) { return refused }
            try await tx.exec("""
                INSERT INTO cache_rules(\(unescaped: Self.ruleColumns))
                VALUES (\(r.name), \(r.sourceRepository), \(r.targetRepository), \(r.credentialSet), \(r.plainHTTP), \(r.tagFreshnessSeconds),
                        \(r.createdBy), \(r.createdAt.timeIntervalSince1970))
                """)
            try await Self.appendEvent(tx, origin, .setting, "", detail: CacheRuleRecord.changeEventDetail)
            return .done
        }
    }

    public func updateCacheRule(name: String, sourceRepository: String?, targetRepository: String?, credentialSet: String??, plainHTTP: Bool?,
                                tagFreshnessSeconds: Int64?, createdBy: String?) async throws -> CacheRuleWriteResult {
        let origin = EventOrigin.current
        return try await write { tx in
            guard var r = try await tx.one("SELECT \(unescaped: Self.ruleColumns) FROM cache_rules WHERE name = \(name)").map(Self.cacheRule)
            else { return .notFound }
            if let sourceRepository { r.sourceRepository = sourceRepository }
            if let targetRepository { r.targetRepository = targetRepository }
            if let credentialSet { r.credentialSet = credentialSet }
            if let plainHTTP { r.plainHTTP = plainHTTP }
            if let tagFreshnessSeconds { r.tagFreshnessSeconds = tagFreshnessSeconds }
            if let createdBy { r.createdBy = createdBy }
            if let refused = try await Self.check(tx, name: name, target: r.targetRepository, credentialSet: r.credentialSet) { return refused }
            try await tx.exec("""
                UPDATE cache_rules SET source_repository = \(r.sourceRepository), target_repository = \(r.targetRepository),
                    credential_set = \(r.credentialSet), plain_http = \(r.plainHTTP), tag_freshness_seconds = \(r.tagFreshnessSeconds),
                    created_by = \(r.createdBy)
                WHERE name = \(name)
                """)
            try await Self.appendEvent(tx, origin, .setting, "", detail: CacheRuleRecord.changeEventDetail)
            return .done
        }
    }

    public func deleteCacheRule(name: String) async throws -> Bool {
        let origin = EventOrigin.current
        return try await write { tx in
            guard try await tx.count("DELETE FROM cache_rules WHERE name = \(name) RETURNING 1") == 1 else { return false }
            try await Self.appendEvent(tx, origin, .setting, "", detail: CacheRuleRecord.changeEventDetail)
            return true
        }
    }

    public func credentialSets() async throws -> [CredentialSetRecord] {
        try await single { tx in
            try await tx.rows("SELECT \(unescaped: Self.setColumns) FROM credential_sets ORDER BY name").map(Self.credentialSet)
        }
    }

    public func credentialSet(name: String) async throws -> CredentialSetRecord? {
        try await single { tx in
            try await tx.one("SELECT \(unescaped: Self.setColumns) FROM credential_sets WHERE name = \(name)").map(Self.credentialSet)
        }
    }

    public func createCredentialSet(_ c: CredentialSetRecord) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO credential_sets(\(unescaped: Self.setColumns))
                VALUES (\(c.name), \(c.loginServer), \(c.username), \(c.sealedPassword), \(c.createdAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
        }
    }

    public func updateCredentialSet(name: String, loginServer: String?, username: String?, sealedPassword: Data?) async throws -> Bool {
        let origin = EventOrigin.current
        return try await write { tx in
            guard try await tx.count("""
                UPDATE credential_sets SET login_server = COALESCE(\(loginServer), login_server), username = COALESCE(\(username), username),
                    sealed_password = COALESCE(\(sealedPassword), sealed_password)
                WHERE name = \(name) RETURNING 1
                """) == 1 else { return false }
            // A rule's upstream client holds the set's password: rebuilt on every node.
            try await Self.appendEvent(tx, origin, .setting, "", detail: CacheRuleRecord.changeEventDetail)
            return true
        }
    }

    public func deleteCredentialSet(name: String) async throws -> CredentialSetDeleteResult {
        // Serialized with rule writes, so a rule cannot start naming the set between the check and the delete.
        try await write { tx in
            let users = try await tx.rows("SELECT name FROM cache_rules WHERE credential_set = \(name) ORDER BY name")
                .map { try $0.decode("name", String.self) }
            if !users.isEmpty { return .inUse(rules: users) }
            return try await tx.count("DELETE FROM credential_sets WHERE name = \(name) RETURNING 1") == 1 ? .deleted : .notFound
        }
    }
}
