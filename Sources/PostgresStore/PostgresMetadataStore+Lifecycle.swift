import Foundation
import OCIModel
import PostgresNIO
import RegistryStore

extension PostgresMetadataStore {
    // MARK: quotas

    /// `name LIKE pattern` for the repositories below a quota's prefix.
    private static func likePattern(_ prefix: String) -> String {
        var escaped = ""
        for c in prefix {
            if c == "\\" || c == "%" || c == "_" { escaped.append("\\") }
            escaped.append(c)
        }
        return escaped.hasSuffix("/") ? escaped + "%" : escaped + "/%"
    }

    /// Distinct digests stored by the repositories a quota covers (linked blobs, manifests, and
    /// manifests in the recycle bin), as a query fragment with its values bound. A prefix ending in
    /// "/" covers only what is below it (the exact name is NULL: nothing equals it).
    private static func coveredDigests(_ q: QuotaLimit) -> PostgresQuery {
        let exact: String? = q.prefix.hasSuffix("/") ? nil : q.prefix
        let like = likePattern(q.prefix)
        return """
            SELECT l.digest FROM blob_links l JOIN repositories r ON r.id = l.repo_id
                WHERE r.name = \(exact) OR r.name LIKE \(like) ESCAPE '\\'
            UNION SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
                WHERE r.name = \(exact) OR r.name LIKE \(like) ESCAPE '\\'
            UNION SELECT d.digest FROM deleted_manifests d JOIN repositories r ON r.id = d.repo_id
                WHERE r.name = \(exact) OR r.name LIKE \(like) ESCAPE '\\'
            """
    }

    static func quotaUsage(_ tx: Tx, _ q: QuotaLimit) async throws -> Int64 {
        let covered = coveredDigests(q)
        return try await tx.value(PostgresQuery(unsafeSQL: "SELECT COALESCE(SUM(size), 0)::bigint FROM blobs WHERE digest IN (\(covered.sql))",
                                                binds: covered.binds), Int64.self) ?? 0
    }

    static func checkQuotas(_ tx: Tx, _ quotas: [QuotaLimit], repository: String, digest: String, size: Int64) async throws {
        for q in quotas where q.covers(repository) {
            let covered = coveredDigests(q)
            var binds = covered.binds
            binds.append(digest)
            let counted = try await tx.one(PostgresQuery(
                unsafeSQL: "SELECT 1 FROM (\(covered.sql)) c WHERE c.digest = $\(binds.count)", binds: binds)) != nil
            if counted { continue }
            let used = try await quotaUsage(tx, q)
            if used + size > q.limitBytes {
                throw QuotaExceeded(quota: q.name, limit: q.limitBytes, used: used, needed: size)
            }
        }
    }

    public func quotaUsage(_ quota: QuotaLimit) async throws -> Int64 {
        try await read { tx in try await Self.quotaUsage(tx, quota) }
    }

    public func quotaExceeded(_ quotas: [QuotaLimit], repository: String, digest: String, size: Int64) async throws -> QuotaExceeded? {
        try await read { tx in
            do {
                try await Self.checkQuotas(tx, quotas, repository: repository, digest: digest, size: size)
                return nil
            } catch let exceeded as QuotaExceeded {
                return exceeded
            }
        }
    }

    // MARK: graphs

    /// A manifest losing `tag`, as `TagLoss` says: its history and its not-live stamp, from its
    /// state as this transaction reads it. Every caller is a serialized write (the event counter's
    /// lock), as is every other writer of these columns, so no row lock is taken here: a `FOR
    /// UPDATE` would also wait for (and could deadlock with) a pull-times batch holding the row's
    /// key-share lock through `manifest_pulls`' foreign key.
    static func stampUntagged(_ tx: Tx, _ repo: Int64, _ digest: String, tag: String, historyLimit: Int) async throws {
        guard let row = try await tx.one("""
            SELECT former_tags, unlive_since, EXISTS (SELECT 1 FROM tags WHERE repo_id = \(repo) AND digest = \(digest)) AS tagged
            FROM manifests WHERE repo_id = \(repo) AND digest = \(digest)
            """) else { return }
        let state = TagLoss(formerTags: decodeJSON([String].self, try row.decode("former_tags", String?.self)) ?? [],
                            unliveSince: try row.optionalDate("unlive_since"))
            .losing(tag, limit: historyLimit, tagsLeft: try row.decode("tagged", Bool.self), now: Date())
        try await tx.exec("""
            UPDATE manifests SET former_tags = \(json(state.formerTags)), unlive_since = \(state.unliveSince?.timeIntervalSince1970)
            WHERE repo_id = \(repo) AND digest = \(digest)
            """)
    }

    /// The whole graph, or (`around`) one manifest and the manifests it lists, without tags.
    static func loadGraph(_ tx: Tx, _ repo: Int64, _ name: String, around: String? = nil) async throws -> RepositoryGraph {
        var manifests: [String: RepositoryGraph.Manifest] = [:]
        let rows = if let around {
            try await tx.rows("""
                SELECT digest, media_type, artifact_type, size, subject, created_at, unlive_since, quarantine_state
                FROM manifests WHERE repo_id = \(repo) AND (digest = \(around) OR digest IN
                    (SELECT child FROM manifest_refs WHERE repo_id = \(repo) AND parent = \(around) AND kind = 1))
                """)
        } else {
            try await tx.rows("""
                SELECT digest, media_type, artifact_type, size, subject, created_at, unlive_since, quarantine_state, former_tags
                FROM manifests WHERE repo_id = \(repo)
                """)
        }
        for row in rows {
            let m = RepositoryGraph.Manifest(digest: try row.decode("digest"), mediaType: try row.decode("media_type"),
                                             artifactType: try row.decode("artifact_type"), size: try row.decode("size"),
                                             subject: try row.decode("subject"), createdAt: try row.date("created_at"),
                                             unliveSince: try row.optionalDate("unlive_since"),
                                             quarantineState: try quarantineState(try row.decode("quarantine_state")),
                                             formerTags: around != nil ? []
                                                 : Self.decodeJSON([String].self, try row.decode("former_tags", String?.self)) ?? [])
            manifests[m.digest] = m
        }
        var children: [String: [String]] = [:]
        let refs = if let around {
            try await tx.rows("SELECT parent, child FROM manifest_refs WHERE repo_id = \(repo) AND parent = \(around) AND kind = 1")
        } else {
            try await tx.rows("SELECT parent, child FROM manifest_refs WHERE repo_id = \(repo) AND kind = 1")
        }
        for row in refs {
            children[try row.decode(0, String.self), default: []].append(try row.decode(1))
        }
        let tags = around != nil ? [] : try await tx.rows("SELECT name, digest, updated_at FROM tags WHERE repo_id = \(repo)").map {
            RepositoryGraph.Tag(name: try $0.decode(0), digest: try $0.decode(1), updatedAt: try $0.date("updated_at"))
        }
        return RepositoryGraph(repository: name, manifests: manifests, children: children, tags: tags)
    }

    public func repositoryGraph(_ repository: String) async throws -> RepositoryGraph? {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return nil }
            return try await Self.loadGraph(tx, repo, repository)
        }
    }

    public func repositoryGraph(_ repository: String, around digest: Digest) async throws -> RepositoryGraph? {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return nil }
            return try await Self.loadGraph(tx, repo, repository, around: digest.string)
        }
    }

    public func applyLifecycle(repository: String, softDeleteUntil: Date?,
                               plan: @Sendable (RepositoryGraph) throws -> LifecycleChange) async throws -> LifecycleChange? {
        let origin = EventOrigin.current
        return try await write { tx -> LifecycleChange? in
            guard let repo = try await Self.repoID(tx, repository) else { return nil }
            let graph = try await Self.loadGraph(tx, repo, repository)
            let change = try plan(graph)
            if change.denied != nil { return change }
            let now = Self.now()
            let detail = change.detail
            var removedTags: [String: [String]] = [:]
            for t in change.deleteTags {
                guard try await tx.count("""
                    DELETE FROM tags WHERE repo_id = \(repo) AND name = \(t.tag) AND digest = \(t.digest) RETURNING 1
                    """) > 0 else { continue }
                removedTags[t.digest, default: []].append(t.tag)
                if change.dropLocks {
                    try await tx.exec("DELETE FROM locks WHERE repository = \(repository) AND kind = 1 AND key = \(t.tag)")
                }
                try await Self.appendEvent(tx, origin, .tagDelete, repository, digest: t.digest, tag: t.tag, detail: detail)
                try await Self.stampUntagged(tx, repo, t.digest, tag: t.tag, historyLimit: change.tagHistoryLimit)
            }
            for m in change.deleteManifests {
                guard let row = try await tx.one("""
                    SELECT media_type, size, artifact_type, subject, annotations, created_at, quarantine_state, quarantine_reason
                    FROM manifests WHERE repo_id = \(repo) AND digest = \(m.digest)
                    """) else { continue }
                let mediaType = try row.decode("media_type", String.self)
                let size = try row.decode("size", Int64.self)
                var tags: [String] = []
                for t in change.cascadeTags where t.digest == m.digest {
                    guard try await tx.count("""
                        DELETE FROM tags WHERE repo_id = \(repo) AND name = \(t.tag) AND digest = \(m.digest) RETURNING 1
                        """) > 0 else { continue }
                    tags.append(t.tag)
                    if change.dropLocks {
                        try await tx.exec("DELETE FROM locks WHERE repository = \(repository) AND kind = 1 AND key = \(t.tag)")
                    }
                    try await Self.appendEvent(tx, origin, .tagDelete, repository, digest: m.digest, tag: t.tag, detail: EventAction.cascadeDetail)
                }
                if let left = try await tx.value("SELECT name FROM tags WHERE repo_id = \(repo) AND digest = \(m.digest) LIMIT 1", String.self) {
                    throw LifecycleChangeInvalid("deleting \(m.digest) would leave tag \(left) pointing at it")
                }
                let record = change.records[m.digest]
                    ?? LifecycleDeletionRecord(eventDetail: m.reason, binReason: m.reason, binTags: tags + (removedTags[m.digest] ?? []))
                if let until = softDeleteUntil {
                    let id = try await tx.value("""
                        INSERT INTO deleted_manifests(repo_id, digest, media_type, size, artifact_type, subject, annotations, created_at,
                                                      quarantine_state, quarantine_reason, deleted_at, expires_at, tags, reason)
                        VALUES (\(repo), \(m.digest), \(mediaType), \(size), \(try row.decode("artifact_type", String?.self)),
                                \(try row.decode("subject", String?.self)), \(try row.decode("annotations", String?.self)),
                                \(try row.decode("created_at", Double.self)), \(try row.decode("quarantine_state", String?.self)),
                                \(try row.decode("quarantine_reason", String?.self)), \(now), \(until.timeIntervalSince1970),
                                \(Self.json(record.binTags)), \(record.binReason))
                        RETURNING id
                        """, Int64.self)!
                    try await tx.exec("""
                        INSERT INTO deleted_refs(deleted_id, repo_id, child, kind)
                        SELECT \(id), repo_id, child, kind FROM manifest_refs WHERE repo_id = \(repo) AND parent = \(m.digest)
                        ON CONFLICT DO NOTHING
                        """)
                }
                try await tx.exec("DELETE FROM manifest_refs WHERE repo_id = \(repo) AND parent = \(m.digest)")
                try await tx.exec("DELETE FROM manifests WHERE repo_id = \(repo) AND digest = \(m.digest)")
                try await Self.dropFindingsIfGone(tx, m.digest)
                if change.dropLocks {
                    try await tx.exec("DELETE FROM locks WHERE repository = \(repository) AND kind = 2 AND key = \(m.digest)")
                }
                try await Self.appendEvent(tx, origin, .manifestDelete, repository, digest: m.digest, mediaType: mediaType, size: size,
                                           detail: record.eventDetail)
            }
            for (digest, since) in change.unliveUpdates {
                try await tx.exec("""
                    UPDATE manifests SET unlive_since = \(since?.timeIntervalSince1970) WHERE repo_id = \(repo) AND digest = \(digest)
                    """)
            }
            if change.unlinkAllBlobs {
                let unlinked = try await tx.count("DELETE FROM blob_links WHERE repo_id = \(repo) RETURNING 1")
                if unlinked > 0 {
                    try await Self.appendEvent(tx, origin, .blobDelete, repository,
                                               detail: "\(unlinked) blob links" + (detail.map { "; " + $0 } ?? ""))
                }
            }
            return change
        }
    }

    public func repositoriesChanged(after sequence: Int64) async throws -> (repositories: [String], latest: Int64) {
        try await read { tx in
            let latest = try await tx.value("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", Int64.self) ?? 0
            let names = try await tx.rows("""
                SELECT DISTINCT e.repository FROM events e JOIN repositories r ON r.name = e.repository
                WHERE e.seq > \(sequence) AND e.seq <= \(latest) ORDER BY e.repository
                """).map { try $0.decode(0, String.self) }
            return (names, latest)
        }
    }

    public func repositoriesWithUnliveManifests(before cutoff: Date) async throws -> [String] {
        try await single { tx in
            try await tx.rows("""
                SELECT DISTINCT r.name FROM manifests m JOIN repositories r ON r.id = m.repo_id
                WHERE m.unlive_since IS NOT NULL AND m.unlive_since <= \(cutoff.timeIntervalSince1970) ORDER BY r.name
                """).map { try $0.decode(0, String.self) }
        }
    }

    public func repositorySummaries(named name: String?) async throws -> [RepositorySummary] {
        try await single { tx in
            try await tx.rows("""
                SELECT r.name, r.created_at,
                       (SELECT COUNT(*) FROM manifests WHERE repo_id = r.id) AS manifests,
                       (SELECT COUNT(*) FROM tags WHERE repo_id = r.id) AS tags,
                       GREATEST(COALESCE((SELECT MAX(updated_at) FROM tags WHERE repo_id = r.id), 0),
                                COALESCE((SELECT MAX(created_at) FROM manifests WHERE repo_id = r.id), 0)) AS updated
                FROM repositories r
                WHERE (\(name)::text IS NULL OR r.name = \(name))
                  AND (EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id) OR EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id)
                       OR EXISTS (SELECT 1 FROM blob_links WHERE repo_id = r.id))
                ORDER BY r.name
                """).map { row in
                let updated = try row.decode("updated", Double.self)
                return RepositorySummary(name: try row.decode("name"), manifests: try row.decode("manifests"), tags: try row.decode("tags"),
                                         createdAt: try row.date("created_at"),
                                         lastUpdatedAt: updated > 0 ? Date(timeIntervalSince1970: updated) : nil)
            }
        }
    }

    // MARK: recycle bin

    private static let deletedColumns = "id, digest, media_type, size, deleted_at, expires_at, tags, reason"

    private static func deleted(_ row: Row, repository: String) throws -> DeletedManifest {
        DeletedManifest(id: try row.decode("id"), repository: repository, digest: try row.decode("digest"), mediaType: try row.decode("media_type"),
                        size: try row.decode("size"), deletedAt: try row.date("deleted_at"), expiresAt: try row.date("expires_at"),
                        tags: decodeJSON([String].self, try row.decode("tags", String.self)) ?? [], reason: try row.decode("reason"))
    }

    public func deletedManifests(repository: String) async throws -> [DeletedManifest] {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return [] }
            return try await tx.rows("""
                SELECT \(unescaped: Self.deletedColumns) FROM deleted_manifests WHERE repo_id = \(repo) ORDER BY id
                """).map { try Self.deleted($0, repository: repository) }
        }
    }

    private static let binColumns = "id, digest, media_type, size, deleted_at, expires_at, tags, reason, subject, quarantine_state, quarantine_reason"

    private static func binEntries(_ tx: Tx, repository: String, _ rows: [Row]) async throws -> [RecycleBinEntry] {
        let ids = try rows.map { try $0.decode("id", Int64.self) }
        guard !ids.isEmpty else { return [] }
        // every entry's references in one read
        var refs: [Int64: [(child: String, kind: Int)]] = [:]
        for row in try await tx.rows("""
            SELECT deleted_id, child, kind FROM deleted_refs WHERE deleted_id = ANY(\(ids)::bigint[]) ORDER BY child COLLATE "C"
            """) {
            refs[try row.decode(0, Int64.self), default: []].append((try row.decode(1, String.self), try row.decode(2, Int.self)))
        }
        return try zip(ids, rows).map { id, row in
            let mine = refs[id] ?? []
            return RecycleBinEntry(entry: try deleted(row, repository: repository), subject: try row.decode("subject", String?.self),
                                   manifests: mine.filter { $0.kind == 1 }.map(\.child), blobs: mine.filter { $0.kind == 0 }.map(\.child),
                                   quarantineState: try quarantineState(try row.decode("quarantine_state", String?.self)),
                                   quarantineReason: try row.decode("quarantine_reason", String?.self))
        }
    }

    public func recycleBinEntries(repository: String, digests: [String]) async throws -> [RecycleBinEntry] {
        guard !digests.isEmpty else { return [] }
        return try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return [] }
            let rows = try await tx.rows("""
                SELECT \(unescaped: Self.binColumns) FROM deleted_manifests WHERE repo_id = \(repo) AND digest = ANY(\(digests)::text[]) ORDER BY id
                """)
            return try await Self.binEntries(tx, repository: repository, rows)
        }
    }

    public func recycleBinEntries(repository: String, subject: String) async throws -> [RecycleBinEntry] {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return [] }
            let rows = try await tx.rows("""
                SELECT \(unescaped: Self.binColumns) FROM deleted_manifests WHERE repo_id = \(repo) AND subject = \(subject) ORDER BY id
                """)
            return try await Self.binEntries(tx, repository: repository, rows)
        }
    }

    private static let deletedRowColumns = """
        id, digest, media_type, size, artifact_type, subject, annotations, created_at, quarantine_state, quarantine_reason, deleted_at, tags
        """

    public func applyRestore(repository: String, plan: RestorePlan) async throws {
        let origin = EventOrigin.current
        try await write { tx in
            guard let repo = try await Self.repoID(tx, repository) else { throw RestoreError.planStale }
            let now = Self.now()
            func present(_ d: String) async throws -> Bool {
                try await tx.one("SELECT 1 FROM manifests WHERE repo_id = \(repo) AND digest = \(d)") != nil
            }
            for id in plan.entries {
                guard let row = try await tx.one("""
                    SELECT \(unescaped: Self.deletedRowColumns) FROM deleted_manifests WHERE id = \(id) AND repo_id = \(repo)
                    """) else { throw RestoreError.planStale }
                let d = try row.decode("digest", String.self)
                guard try await !present(d) else { throw RestoreError.planStale }
                let ids = try await tx.rows("SELECT id FROM deleted_manifests WHERE repo_id = \(repo) AND digest = \(d)")
                    .map { try $0.decode(0, Int64.self) }
                guard ids.allSatisfy(plan.known.contains) else { throw RestoreError.planStale }
                let refs = try await tx.rows("SELECT child, kind FROM deleted_refs WHERE deleted_id = \(id)")
                    .map { (child: try $0.decode(0, String.self), kind: try $0.decode(1, Int.self)) }
                for ref in refs where ref.kind == 1 {
                    guard try await present(ref.child) else { throw RestoreError.planStale }
                }
                guard let state = plan.comesBack[id] else { throw RestoreError.planStale }
                for blob in state.links {
                    guard try await tx.one("SELECT 1 FROM blobs WHERE digest = \(blob)") != nil else {
                        throw RestoreError.childMissing(blob)
                    }
                    try await tx.exec("""
                        INSERT INTO blob_links(repo_id, digest, created_at) VALUES (\(repo), \(blob), \(now)) ON CONFLICT DO NOTHING
                        """)
                }
                guard try await tx.one("SELECT 1 FROM blobs WHERE digest = \(d) AND inline IS NOT NULL") != nil else {
                    throw RestoreError.childMissing(d)
                }
                let mediaType = try row.decode("media_type", String.self)
                let size = try row.decode("size", Int64.self)
                try await tx.exec("""
                    INSERT INTO manifests(repo_id, digest, media_type, size, artifact_type, subject, annotations, created_at,
                                          quarantine_state, quarantine_reason, unlive_since)
                    VALUES (\(repo), \(d), \(mediaType), \(size), \(try row.decode("artifact_type", String?.self)),
                            \(try row.decode("subject", String?.self)), \(try row.decode("annotations", String?.self)),
                            \(try row.decode("created_at", Double.self)), \(state.quarantineState?.rawValue),
                            \(state.quarantineReason), \(state.unliveSince?.timeIntervalSince1970))
                    """)
                try await tx.exec("""
                    INSERT INTO manifest_refs(repo_id, parent, child, kind) SELECT repo_id, \(d), child, kind FROM deleted_refs
                    WHERE deleted_id = \(id) ON CONFLICT DO NOTHING
                    """)
                try await tx.exec("DELETE FROM deleted_refs WHERE deleted_id = \(id)")
                try await tx.exec("DELETE FROM deleted_manifests WHERE id = \(id)")
                try await Self.appendEvent(tx, origin, .restore, repository, digest: d, mediaType: mediaType, size: size)
            }
            guard !plan.tagMoves.isEmpty else { return }
            guard let target = try await tx.one("""
                SELECT media_type, size FROM manifests WHERE repo_id = \(repo) AND digest = \(plan.digest)
                """) else { throw RestoreError.planStale }
            let mediaType = try target.decode("media_type", String.self)
            let size = try target.decode("size", Int64.self)
            for move in plan.tagMoves {
                let current = try await tx.value("SELECT digest FROM tags WHERE repo_id = \(repo) AND name = \(move.tag)", String.self)
                guard current == move.expected else { throw RestoreError.tagConflict(tag: move.tag, current: current) }
                if current == plan.digest { continue }
                try await tx.exec("""
                    INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (\(repo), \(move.tag), \(plan.digest), \(now))
                    ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at
                    """)
                try await Self.appendEvent(tx, origin, .tagMove, repository, digest: plan.digest, tag: move.tag, mediaType: mediaType,
                                           size: size, detail: current.map { "restore; from \($0)" } ?? "restore")
                if let current { try await Self.stampUntagged(tx, repo, current, tag: move.tag, historyLimit: plan.tagHistoryLimit) }
            }
        }
    }

    public func expireDeletedManifests(now: Date, limit: Int) async throws -> [DeletedManifest] {
        let origin = EventOrigin.current
        return try await write { tx -> [DeletedManifest] in
            let rows = try await tx.rows("""
                SELECT d.id, d.digest, d.media_type, d.size, d.deleted_at, d.expires_at, d.tags, d.reason, r.name AS repository
                FROM deleted_manifests d JOIN repositories r ON r.id = d.repo_id
                WHERE d.expires_at <= \(now.timeIntervalSince1970) ORDER BY d.id LIMIT \(max(0, limit))
                """)
            var out: [DeletedManifest] = []
            for row in rows {
                let entry = try Self.deleted(row, repository: try row.decode("repository"))
                try await tx.exec("DELETE FROM deleted_refs WHERE deleted_id = \(entry.id)")
                try await tx.exec("DELETE FROM deleted_manifests WHERE id = \(entry.id)")
                try await Self.dropFindingsIfGone(tx, entry.digest)
                try await Self.appendEvent(tx, origin, .softDeleteExpire, entry.repository, digest: entry.digest,
                                           mediaType: entry.mediaType, size: entry.size, detail: "removed for good from the recycle bin")
                out.append(entry)
            }
            return out
        }
    }

    // MARK: locks

    public func locks() async throws -> [LockRecord] {
        try await single { tx in
            try await tx.rows("""
                SELECT repository, kind, key, read_enabled, write_enabled, delete_enabled, list_enabled FROM locks
                ORDER BY repository, kind, key
                """).map { row in
                let kind = try row.decode("kind", Int.self)
                let key = try row.decode("key", String.self)
                return LockRecord(repository: try row.decode("repository"), tag: kind == 1 ? key : nil, digest: kind == 2 ? key : nil,
                                  readEnabled: try row.decode("read_enabled"), writeEnabled: try row.decode("write_enabled"),
                                  deleteEnabled: try row.decode("delete_enabled"), listEnabled: try row.decode("list_enabled"))
            }
        }
    }

    public func setLock(_ lock: LockRecord) async throws {
        let origin = EventOrigin.current
        try await write { tx in
            let kind = lock.tag != nil ? 1 : (lock.digest != nil ? 2 : 0)
            let key = lock.tag ?? lock.digest ?? ""
            if lock.isDefault {
                try await tx.exec("DELETE FROM locks WHERE repository = \(lock.repository) AND kind = \(kind) AND key = \(key)")
            } else {
                try await tx.exec("""
                    INSERT INTO locks(repository, kind, key, read_enabled, write_enabled, delete_enabled, list_enabled)
                    VALUES (\(lock.repository), \(kind), \(key), \(lock.readEnabled), \(lock.writeEnabled), \(lock.deleteEnabled),
                            \(lock.listEnabled))
                    ON CONFLICT (repository, kind, key) DO UPDATE SET read_enabled = excluded.read_enabled,
                        write_enabled = excluded.write_enabled, delete_enabled = excluded.delete_enabled, list_enabled = excluded.list_enabled
                    """)
            }
            try await Self.appendEvent(tx, origin, .lock, lock.repository, digest: lock.digest, tag: lock.tag,
                                       detail: "read=\(lock.readEnabled) write=\(lock.writeEnabled) delete=\(lock.deleteEnabled) list=\(lock.listEnabled)")
        }
    }

    // MARK: garbage collection

    /// A link is referenced when a manifest of its repository, live or in the recycle bin, names the blob.
    private static let linkUnreferenced = """
        NOT EXISTS (SELECT 1 FROM manifest_refs mr WHERE mr.repo_id = l.repo_id AND mr.child = l.digest AND mr.kind = 0)
        AND NOT EXISTS (SELECT 1 FROM deleted_refs dr WHERE dr.repo_id = l.repo_id AND dr.child = l.digest AND dr.kind = 0)
        """

    public func unreferencedLinks(before cutoff: Date, limit: Int) async throws -> [(repository: String, digest: String)] {
        try await single { tx in
            try await tx.rows("""
                SELECT r.name, l.digest FROM blob_links l JOIN repositories r ON r.id = l.repo_id
                WHERE l.created_at < \(cutoff.timeIntervalSince1970) AND \(unescaped: Self.linkUnreferenced)
                ORDER BY r.name, l.digest LIMIT \(limit)
                """).map { (repository: try $0.decode(0, String.self), digest: try $0.decode(1, String.self)) }
        }
    }

    public func removeUnreferencedLink(repository: String, digest: String, before cutoff: Date) async throws -> Bool {
        let origin = EventOrigin.current
        return try await write { tx in
            try await Self.removeUnreferencedLink(tx, origin, repository: repository, digest: digest, before: cutoff)
        }
    }

    /// Removes the link with its `blob.delete` event (so every node's caches drop it).
    static func removeUnreferencedLink(_ tx: Tx, _ origin: EventOrigin?, repository: String, digest: String,
                                       before cutoff: Date) async throws -> Bool {
        guard let repo = try await Self.repoID(tx, repository) else { return false }
        guard try await tx.count("""
            DELETE FROM blob_links AS l WHERE l.repo_id = \(repo) AND l.digest = \(digest)
              AND l.created_at < \(cutoff.timeIntervalSince1970) AND \(unescaped: Self.linkUnreferenced)
            RETURNING 1
            """) > 0 else { return false }
        try await Self.appendEvent(tx, origin, .blobDelete, repository, digest: digest, detail: EventAction.unreferencedLinkDetail)
        return true
    }

    /// A stored digest is referenced by a link, a manifest (live or in the recycle bin) of that
    /// digest, or a manifest (live or in the recycle bin) that names it.
    private static let blobUnreferenced = """
        NOT EXISTS (SELECT 1 FROM blob_links l WHERE l.digest = b.digest)
        AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
        AND NOT EXISTS (SELECT 1 FROM deleted_manifests d WHERE d.digest = b.digest)
        AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest)
        AND NOT EXISTS (SELECT 1 FROM deleted_refs r WHERE r.child = b.digest)
        """

    public func unreferencedBlobs(before cutoff: Date, limit: Int) async throws -> [StoredBlob] {
        try await single { tx in
            try await tx.rows("""
                SELECT b.digest, b.size, b.inline IS NOT NULL FROM blobs b
                WHERE b.created_at < \(cutoff.timeIntervalSince1970) AND \(unescaped: Self.blobUnreferenced) ORDER BY b.digest LIMIT \(limit)
                """).map { StoredBlob(digest: try $0.decode(0), size: try $0.decode(1), inline: try $0.decode(2)) }
        }
    }

    public func removeUnreferencedBlob(_ digest: String, before cutoff: Date) async throws -> StoredBlob? {
        try await write { tx -> StoredBlob? in try await Self.removeUnreferencedBlob(tx, digest, before: cutoff) }
    }

    static func removeUnreferencedBlob(_ tx: Tx, _ digest: String, before cutoff: Date) async throws -> StoredBlob? {
        guard let row = try await tx.one("""
            DELETE FROM blobs b WHERE b.digest = \(digest) AND b.created_at < \(cutoff.timeIntervalSince1970)
              AND \(unescaped: Self.blobUnreferenced)
            RETURNING b.digest, b.size, b.inline IS NOT NULL
            """) else { return nil }
        return StoredBlob(digest: try row.decode(0), size: try row.decode(1), inline: try row.decode(2))
    }

    public func hasBlobRecord(_ digest: String) async throws -> Bool {
        try await single { tx in try await tx.one("SELECT 1 FROM blobs WHERE digest = \(digest)") != nil }
    }

    public func blobCollectionState(_ digest: String) async throws -> BlobCollectionState? {
        try await read { tx -> BlobCollectionState? in
            guard let row = try await tx.one("SELECT size, created_at FROM blobs WHERE digest = \(digest)") else { return nil }
            let repositories = try await tx.rows("""
                SELECT r.name FROM blob_links l JOIN repositories r ON r.id = l.repo_id WHERE l.digest = \(digest)
                """).map { try $0.decode(0, String.self) }
            let referenced = try await tx.value("""
                SELECT EXISTS (SELECT 1 FROM manifests WHERE digest = \(digest)) OR EXISTS (SELECT 1 FROM deleted_manifests WHERE digest = \(digest))
                    OR EXISTS (SELECT 1 FROM manifest_refs WHERE child = \(digest)) OR EXISTS (SELECT 1 FROM deleted_refs WHERE child = \(digest))
                """, Bool.self) ?? true
            return BlobCollectionState(size: try row.decode(0), createdAt: try row.date("created_at"), linkedRepositories: repositories,
                                       referenced: referenced)
        }
    }

    // MARK: usage

    public func usage(repository: String?) async throws -> UsageRecord? {
        try await read { tx -> UsageRecord? in
            guard let repository else {
                let row = try await tx.one("""
                    SELECT (SELECT COALESCE(SUM(size), 0)::bigint FROM blobs), (SELECT COUNT(*) FROM blobs),
                           (SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM tags),
                           (SELECT COUNT(*) FROM repositories r WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id)
                               OR EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id) OR EXISTS (SELECT 1 FROM blob_links WHERE repo_id = r.id)),
                           (SELECT COUNT(*) FROM deleted_manifests)
                    """)!
                return UsageRecord(repository: nil, bytes: try row.decode(0), blobs: try row.decode(1), manifests: try row.decode(2),
                                   tags: try row.decode(3), repositories: try row.decode(4), deletedManifests: try row.decode(5))
            }
            guard let repo = try await Self.repoID(tx, repository) else { return nil }
            let row = try await tx.one("""
                WITH d(digest) AS (SELECT digest FROM blob_links WHERE repo_id = \(repo) UNION SELECT digest FROM manifests WHERE repo_id = \(repo)
                                   UNION SELECT digest FROM deleted_manifests WHERE repo_id = \(repo))
                SELECT (SELECT COALESCE(SUM(b.size), 0)::bigint FROM blobs b JOIN d ON d.digest = b.digest),
                       (SELECT COUNT(*) FROM blobs b JOIN d ON d.digest = b.digest),
                       (SELECT COUNT(*) FROM manifests WHERE repo_id = \(repo)), (SELECT COUNT(*) FROM tags WHERE repo_id = \(repo)),
                       (SELECT COUNT(*) FROM deleted_manifests WHERE repo_id = \(repo))
                """)!
            return UsageRecord(repository: repository, bytes: try row.decode(0), blobs: try row.decode(1), manifests: try row.decode(2),
                               tags: try row.decode(3), repositories: nil, deletedManifests: try row.decode(4))
        }
    }

    // MARK: runs and schedules

    public func recordRun(kind: RunKind, name: String?, dryRun: Bool, startedAt: Date, finishedAt: Date, report: String,
                          event: (action: EventAction, detail: String)?, keep: Int) async throws -> Int64 {
        let origin = EventOrigin.current
        let event = event.map { (action: $0.action, detail: $0.detail) }
        return try await write { tx in
            let id = try await tx.value("""
                INSERT INTO lifecycle_runs(kind, name, dry_run, started_at, finished_at, report)
                VALUES (\(kind.rawValue), \(name), \(dryRun), \(startedAt.timeIntervalSince1970), \(finishedAt.timeIntervalSince1970), \(report))
                RETURNING id
                """, Int64.self)!
            try await tx.exec("""
                DELETE FROM lifecycle_runs WHERE kind = \(kind.rawValue) AND id <= (
                    SELECT id FROM lifecycle_runs WHERE kind = \(kind.rawValue) ORDER BY id DESC LIMIT 1 OFFSET \(max(1, keep)))
                """)
            if let event {
                try await Self.appendEvent(tx, origin, event.action, name ?? "", detail: "run \(id): \(event.detail)")
            }
            return id
        }
    }

    public func runs(kind: RunKind?, name: String?, limit: Int) async throws -> [LifecycleRunRecord] {
        try await single { tx in
            try await tx.rows("""
                SELECT id, kind, name, dry_run, started_at, finished_at, report FROM lifecycle_runs
                WHERE (\(kind?.rawValue)::text IS NULL OR kind = \(kind?.rawValue)) AND (\(name)::text IS NULL OR name = \(name))
                ORDER BY id DESC LIMIT \(limit)
                """).map {
                let raw = try $0.decode("kind", String.self)
                guard let kind = RunKind(rawValue: raw) else { throw UnknownStoredValue(field: "run kind", value: raw) }
                return LifecycleRunRecord(id: try $0.decode("id"), kind: kind, name: try $0.decode("name"), dryRun: try $0.decode("dry_run"),
                                          startedAt: try $0.date("started_at"), finishedAt: try $0.date("finished_at"),
                                          report: try $0.decode("report"))
            }
        }
    }

    public func purgeSchedules() async throws -> [PurgeScheduleRecord] {
        try await single { tx in
            try await tx.rows("""
                SELECT name, cron, filters, ago, untagged, keep, created_at, last_run_at FROM purge_schedules ORDER BY name
                """).map { row in
                PurgeScheduleRecord(name: try row.decode("name"), cron: try row.decode("cron"),
                                    filters: Self.decodeJSON([String].self, try row.decode("filters", String.self)) ?? [],
                                    ago: try row.decode("ago"), untagged: try row.decode("untagged"), keep: try row.decode("keep"),
                                    createdAt: try row.date("created_at"), lastRunAt: try row.optionalDate("last_run_at"))
            }
        }
    }

    public func createPurgeSchedule(_ s: PurgeScheduleRecord) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("""
                INSERT INTO purge_schedules(name, cron, filters, ago, untagged, keep, created_at)
                VALUES (\(s.name), \(s.cron), \(Self.json(s.filters)), \(s.ago), \(s.untagged), \(s.keep), \(s.createdAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING 1
                """) > 0
        }
    }

    public func deletePurgeSchedule(name: String) async throws -> Bool {
        try await write(serialized: false) { tx in
            try await tx.count("DELETE FROM purge_schedules WHERE name = \(name) RETURNING 1") > 0
        }
    }

    public func markPurgeScheduleRun(name: String, at: Date) async throws {
        try await write(serialized: false) { tx in
            try await tx.exec("UPDATE purge_schedules SET last_run_at = \(at.timeIntervalSince1970) WHERE name = \(name)")
        }
    }
}
