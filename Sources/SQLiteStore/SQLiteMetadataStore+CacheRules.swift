import Foundation
import GRDB
import RegistryStore

// MARK: pull-through cache rules and credential sets

extension SQLiteMetadataStore {
    static func cacheRule(_ row: Row) -> CacheRuleRecord {
        CacheRuleRecord(name: row["name"], sourceRepository: row["source_repository"], targetRepository: row["target_repository"],
                        credentialSet: row["credential_set"], plainHTTP: row["plain_http"], tagFreshnessSeconds: row["tag_freshness_seconds"],
                        createdBy: row["created_by"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    static func credentialSet(_ row: Row) -> CredentialSetRecord {
        CredentialSetRecord(name: row["name"], loginServer: row["login_server"], username: row["username"],
                            sealedPassword: row["sealed_password"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    public func cacheRules() async throws -> [CacheRuleRecord] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM cache_rules ORDER BY name").map(Self.cacheRule) }
    }

    public func cacheRule(name: String) async throws -> CacheRuleRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM cache_rules WHERE name = ?", arguments: [name]).map(Self.cacheRule)
        }
    }

    /// The checks a rule write makes, in its transaction: the credential set exists, the target
    /// overlaps no other rule's.
    private static func check(_ db: Database, name: String, target: String, credentialSet: String?) throws -> CacheRuleWriteResult? {
        if let credentialSet,
           try Row.fetchOne(db, sql: "SELECT 1 FROM credential_sets WHERE name = ?", arguments: [credentialSet]) == nil {
            return .noSuchCredentialSet
        }
        for row in try Row.fetchAll(db, sql: "SELECT name, target_repository FROM cache_rules WHERE name <> ? ORDER BY name",
                                    arguments: [name]) {
            let other: String = row["name"]
            if CacheRuleRecord.targetsOverlap(target, row["target_repository"]) { return .targetOverlaps(rule: other) }
        }
        return nil
    }

    public func createCacheRule(_ r: CacheRuleRecord) async throws -> CacheRuleWriteResult {
        let origin = EventOrigin.current
        return try await pool.write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM cache_rules WHERE name = ?", arguments: [r.name]) != nil { return .nameTaken }
            if let refused = try Self.check(db, name: r.name, target: r.targetRepository, credentialSet: r.credentialSet) { return refused }
            try db.execute(sql: """
                INSERT INTO cache_rules(name, source_repository, target_repository, credential_set, plain_http, tag_freshness_seconds,
                                        created_by, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.name, r.sourceRepository, r.targetRepository, r.credentialSet, r.plainHTTP, r.tagFreshnessSeconds,
                                 r.createdBy, r.createdAt.timeIntervalSince1970])
            try Self.appendEvent(db, origin, EventAction.setting, "", detail: CacheRuleRecord.changeEventDetail)
            return .done
        }
    }

    public func updateCacheRule(name: String, sourceRepository: String?, targetRepository: String?, credentialSet: String??, plainHTTP: Bool?,
                                tagFreshnessSeconds: Int64?, createdBy: String?) async throws -> CacheRuleWriteResult {
        let origin = EventOrigin.current
        return try await pool.write { db in
            guard var r = try Row.fetchOne(db, sql: "SELECT * FROM cache_rules WHERE name = ?", arguments: [name]).map(Self.cacheRule)
            else { return .notFound }
            if let sourceRepository { r.sourceRepository = sourceRepository }
            if let targetRepository { r.targetRepository = targetRepository }
            if let credentialSet { r.credentialSet = credentialSet }
            if let plainHTTP { r.plainHTTP = plainHTTP }
            if let tagFreshnessSeconds { r.tagFreshnessSeconds = tagFreshnessSeconds }
            if let createdBy { r.createdBy = createdBy }
            if let refused = try Self.check(db, name: name, target: r.targetRepository, credentialSet: r.credentialSet) { return refused }
            try db.execute(sql: """
                UPDATE cache_rules SET source_repository = ?, target_repository = ?, credential_set = ?, plain_http = ?,
                    tag_freshness_seconds = ?, created_by = ? WHERE name = ?
                """, arguments: [r.sourceRepository, r.targetRepository, r.credentialSet, r.plainHTTP, r.tagFreshnessSeconds, r.createdBy, name])
            try Self.appendEvent(db, origin, EventAction.setting, "", detail: CacheRuleRecord.changeEventDetail)
            return .done
        }
    }

    public func deleteCacheRule(name: String) async throws -> Bool {
        let origin = EventOrigin.current
        return try await pool.write { db in
            try db.execute(sql: "DELETE FROM cache_rules WHERE name = ?", arguments: [name])
            guard db.changesCount == 1 else { return false }
            try Self.appendEvent(db, origin, EventAction.setting, "", detail: CacheRuleRecord.changeEventDetail)
            return true
        }
    }

    public func credentialSets() async throws -> [CredentialSetRecord] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM credential_sets ORDER BY name").map(Self.credentialSet) }
    }

    public func credentialSet(name: String) async throws -> CredentialSetRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM credential_sets WHERE name = ?", arguments: [name]).map(Self.credentialSet)
        }
    }

    public func createCredentialSet(_ c: CredentialSetRecord) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO credential_sets(name, login_server, username, sealed_password, created_at)
                VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING
                """, arguments: [c.name, c.loginServer, c.username, c.sealedPassword, c.createdAt.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func updateCredentialSet(name: String, loginServer: String?, username: String?, sealedPassword: Data?) async throws -> Bool {
        let origin = EventOrigin.current
        return try await pool.write { db in
            try db.execute(sql: """
                UPDATE credential_sets SET login_server = COALESCE(?, login_server), username = COALESCE(?, username),
                    sealed_password = COALESCE(?, sealed_password) WHERE name = ?
                """, arguments: [loginServer, username, sealedPassword, name])
            guard db.changesCount == 1 else { return false }
            // A rule's upstream client holds the set's password: rebuilt on every node.
            try Self.appendEvent(db, origin, EventAction.setting, "", detail: CacheRuleRecord.changeEventDetail)
            return true
        }
    }

    public func deleteCredentialSet(name: String) async throws -> CredentialSetDeleteResult {
        try await pool.write { db in
            let users = try String.fetchAll(db, sql: "SELECT name FROM cache_rules WHERE credential_set = ? ORDER BY name", arguments: [name])
            if !users.isEmpty { return .inUse(rules: users) }
            try db.execute(sql: "DELETE FROM credential_sets WHERE name = ?", arguments: [name])
            return db.changesCount == 1 ? .deleted : .notFound
        }
    }
}
