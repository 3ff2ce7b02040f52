import Foundation
import GRDB
import OCIModel
import RegistryStore

extension SQLiteMetadataStore {
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

    /// Distinct digests stored by the repositories a quota covers: linked blobs, manifests, and
    /// manifests in the recycle bin.
    private static let coveredDigests = """
        SELECT l.digest FROM blob_links l JOIN repositories r ON r.id = l.repo_id
            WHERE r.name = :exact OR r.name LIKE :like ESCAPE '\\'
        UNION SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
            WHERE r.name = :exact OR r.name LIKE :like ESCAPE '\\'
        UNION SELECT d.digest FROM deleted_manifests d JOIN repositories r ON r.id = d.repo_id
            WHERE r.name = :exact OR r.name LIKE :like ESCAPE '\\'
        """

    private static func quotaArguments(_ q: QuotaLimit) -> StatementArguments {
        ["exact": q.prefix.hasSuffix("/") ? "\u{0}" : q.prefix, "like": likePattern(q.prefix)]
    }

    static func quotaUsage(_ db: Database, _ q: QuotaLimit) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE digest IN (\(coveredDigests))",
                           arguments: quotaArguments(q)) ?? 0
    }

    static func checkQuotas(_ db: Database, _ quotas: [QuotaLimit], repository: String, digest: String, size: Int64) throws {
        for q in quotas where q.covers(repository) {
            var arguments = quotaArguments(q)
            arguments += ["digest": digest]
            let counted = try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM (\(coveredDigests)) WHERE digest = :digest)",
                                            arguments: arguments) ?? false
            if counted { continue }
            let used = try quotaUsage(db, q)
            if used + size > q.limitBytes {
                throw QuotaExceeded(quota: q.name, limit: q.limitBytes, used: used, needed: size)
            }
        }
    }

    public func quotaUsage(_ quota: QuotaLimit) async throws -> Int64 {
        try await pool.read { db in try Self.quotaUsage(db, quota) }
    }

    public func quotaExceeded(_ quotas: [QuotaLimit], repository: String, digest: String, size: Int64) async throws -> QuotaExceeded? {
        try await pool.read { db in
            do {
                try Self.checkQuotas(db, quotas, repository: repository, digest: digest, size: size)
                return nil
            } catch let exceeded as QuotaExceeded {
                return exceeded
            }
        }
    }

    // MARK: graphs

    /// A manifest losing `tag`, as `TagLoss` says: its history and its not-live stamp, from its
    /// state as this transaction reads it.
    static func stampUntagged(_ db: Database, _ repo: Int64, _ digest: String, tag: String, historyLimit: Int) throws {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT former_tags, unlive_since, EXISTS (SELECT 1 FROM tags WHERE repo_id = ? AND digest = ?) AS tagged
            FROM manifests WHERE repo_id = ? AND digest = ?
            """, arguments: [repo, digest, repo, digest]) else { return }
        let former = (row["former_tags"] as String?).flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
        let state = TagLoss(formerTags: former, unliveSince: (row["unlive_since"] as Double?).map(Date.init(timeIntervalSince1970:)))
            .losing(tag, limit: historyLimit, tagsLeft: row["tagged"], now: Date())
        try db.execute(sql: "UPDATE manifests SET former_tags = ?, unlive_since = ? WHERE repo_id = ? AND digest = ?",
                       arguments: [json(state.formerTags), state.unliveSince?.timeIntervalSince1970, repo, digest])
    }

    /// The whole graph, or (`around`) one manifest and the manifests it lists, without tags.
    static func loadGraph(_ db: Database, _ repo: Int64, _ name: String, around: String? = nil) throws -> RepositoryGraph {
        var manifests: [String: RepositoryGraph.Manifest] = [:]
        let columns = "SELECT digest, media_type, artifact_type, size, subject, created_at, unlive_since, quarantine_state, former_tags FROM manifests"
        let rows = if let around {
            try Row.fetchAll(db, sql: columns + """
                 WHERE repo_id = ? AND (digest = ? OR digest IN
                    (SELECT child FROM manifest_refs WHERE repo_id = ? AND parent = ? AND kind = 1))
                """, arguments: [repo, around, repo, around])
        } else {
            try Row.fetchAll(db, sql: columns + " WHERE repo_id = ?", arguments: [repo])
        }
        for row in rows {
            let unlive: Double? = row["unlive_since"]
            let m = RepositoryGraph.Manifest(digest: row["digest"], mediaType: row["media_type"], artifactType: row["artifact_type"],
                                             size: row["size"], subject: row["subject"],
                                             createdAt: Date(timeIntervalSince1970: row["created_at"]),
                                             unliveSince: unlive.map(Date.init(timeIntervalSince1970:)),
                                             quarantineState: try quarantineState(row["quarantine_state"]),
                                             formerTags: around != nil ? [] : (row["former_tags"] as String?).flatMap {
                                                 try? JSONDecoder().decode([String].self, from: Data($0.utf8))
                                             } ?? [])
            manifests[m.digest] = m
        }
        var children: [String: [String]] = [:]
        let refs = if let around {
            try Row.fetchAll(db, sql: "SELECT parent, child FROM manifest_refs WHERE repo_id = ? AND parent = ? AND kind = 1",
                             arguments: [repo, around])
        } else {
            try Row.fetchAll(db, sql: "SELECT parent, child FROM manifest_refs WHERE repo_id = ? AND kind = 1", arguments: [repo])
        }
        for row in refs {
            children[row[0] as String, default: []].append(row[1])
        }
        let tags = around != nil ? [] : try Row.fetchAll(db, sql: "SELECT name, digest, updated_at FROM tags WHERE repo_id = ?", arguments: [repo]).map {
            RepositoryGraph.Tag(name: $0[0], digest: $0[1], updatedAt: Date(timeIntervalSince1970: $0[2]))
        }
        return RepositoryGraph(repository: name, manifests: manifests,
                               children: children, tags: tags)
    }

    public func repositoryGraph(_ repository: String) async throws -> RepositoryGraph? {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return nil }
            return try Self.loadGraph(db, repo, repository)
        }
    }

    public func repositoryGraph(_ repository: String, around digest: Digest) async throws -> RepositoryGraph? {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return nil }
            return try Self.loadGraph(db, repo, repository, around: digest.string)
        }
    }

    public func applyLifecycle(repository: String, softDeleteUntil: Date?,
                               plan: @Sendable (RepositoryGraph) throws -> LifecycleChange) async throws -> LifecycleChange? {
        let origin = EventOrigin.current
        return try await pool.write { db -> LifecycleChange? in
            guard let repo = try Self.repoID(db, repository) else { return nil }
            let graph = try Self.loadGraph(db, repo, repository)
            let change = try plan(graph)
            if change.denied != nil { return change }
            let now = Date().timeIntervalSince1970
            let detail = change.detail
            var removedTags: [String: [String]] = [:]
            for t in change.deleteTags {
                try db.execute(sql: "DELETE FROM tags WHERE repo_id = ? AND name = ? AND digest = ?", arguments: [repo, t.tag, t.digest])
                guard db.changesCount > 0 else { continue }
                removedTags[t.digest, default: []].append(t.tag)
                if change.dropLocks {
                    try db.execute(sql: "DELETE FROM locks WHERE repository = ? AND kind = 1 AND key = ?", arguments: [repository, t.tag])
                }
                try Self.appendEvent(db, origin, EventAction.tagDelete, repository, digest: t.digest, tag: t.tag, detail: detail)
                try Self.stampUntagged(db, repo, t.digest, tag: t.tag, historyLimit: change.tagHistoryLimit)
            }
            for m in change.deleteManifests {
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM manifests WHERE repo_id = ? AND digest = ?",
                                                 arguments: [repo, m.digest]) else { continue }
                var tags: [String] = []
                for t in change.cascadeTags where t.digest == m.digest {
                    try db.execute(sql: "DELETE FROM tags WHERE repo_id = ? AND name = ? AND digest = ?", arguments: [repo, t.tag, m.digest])
                    guard db.changesCount > 0 else { continue }
                    tags.append(t.tag)
                    if change.dropLocks {
                        try db.execute(sql: "DELETE FROM locks WHERE repository = ? AND kind = 1 AND key = ?", arguments: [repository, t.tag])
                    }
                    try Self.appendEvent(db, origin, EventAction.tagDelete, repository, digest: m.digest, tag: t.tag,
                                         detail: EventAction.cascadeDetail)
                }
                if let left = try String.fetchOne(db, sql: "SELECT name FROM tags WHERE repo_id = ? AND digest = ? LIMIT 1",
                                                  arguments: [repo, m.digest]) {
                    throw LifecycleChangeInvalid("deleting \(m.digest) would leave tag \(left) pointing at it")
                }
                let record = change.records[m.digest]
                    ?? LifecycleDeletionRecord(eventDetail: m.reason, binReason: m.reason, binTags: tags + (removedTags[m.digest] ?? []))
                if let until = softDeleteUntil {
                    try db.execute(sql: """
                        INSERT INTO deleted_manifests(repo_id, digest, media_type, size, artifact_type, subject, annotations, created_at,
                                                      quarantine_state, quarantine_reason, deleted_at, expires_at, tags, reason)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, arguments: [repo, m.digest, row["media_type"], row["size"], row["artifact_type"], row["subject"],
                                         row["annotations"], row["created_at"], row["quarantine_state"], row["quarantine_reason"],
                                         now, until.timeIntervalSince1970, Self.json(record.binTags), record.binReason])
                    let id = db.lastInsertedRowID
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO deleted_refs(deleted_id, repo_id, child, kind)
                        SELECT ?, repo_id, child, kind FROM manifest_refs WHERE repo_id = ? AND parent = ?
                        """, arguments: [id, repo, m.digest])
                }
                try db.execute(sql: "DELETE FROM manifest_refs WHERE repo_id = ? AND parent = ?", arguments: [repo, m.digest])
                try db.execute(sql: "DELETE FROM manifests WHERE repo_id = ? AND digest = ?", arguments: [repo, m.digest])
                try Self.dropFindingsIfGone(db, m.digest)
                if change.dropLocks {
                    try db.execute(sql: "DELETE FROM locks WHERE repository = ? AND kind = 2 AND key = ?", arguments: [repository, m.digest])
                }
                try Self.appendEvent(db, origin, EventAction.manifestDelete, repository, digest: m.digest,
                                     mediaType: row["media_type"], size: row["size"], detail: record.eventDetail)
            }
            for (digest, since) in change.unliveUpdates {
                try db.execute(sql: "UPDATE manifests SET unlive_since = ? WHERE repo_id = ? AND digest = ?",
                               arguments: [since?.timeIntervalSince1970, repo, digest])
            }
            if change.unlinkAllBlobs {
                try db.execute(sql: "DELETE FROM blob_links WHERE repo_id = ?", arguments: [repo])
                if db.changesCount > 0 {
                    try Self.appendEvent(db, origin, EventAction.blobDelete, repository,
                                         detail: "\(db.changesCount) blob links" + (detail.map { "; " + $0 } ?? ""))
                }
            }
            return change
        }
    }

    public func repositoriesChanged(after sequence: Int64) async throws -> (repositories: [String], latest: Int64) {
        try await pool.read { db in
            let latest = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM events") ?? 0
            let names = try String.fetchAll(db, sql: """
                SELECT DISTINCT e.repository FROM events e JOIN repositories r ON r.name = e.repository
                WHERE e.seq > ? AND e.seq <= ? ORDER BY e.repository
                """, arguments: [sequence, latest])
            return (names, latest)
        }
    }

    public func repositoriesWithUnliveManifests(before cutoff: Date) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(db, sql: """
                SELECT DISTINCT r.name FROM manifests m JOIN repositories r ON r.id = m.repo_id
                WHERE m.unlive_since IS NOT NULL AND m.unlive_since <= ? ORDER BY r.name
                """, arguments: [cutoff.timeIntervalSince1970])
        }
    }

    public func repositorySummaries(named name: String?) async throws -> [RepositorySummary] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.name, r.created_at,
                       (SELECT COUNT(*) FROM manifests WHERE repo_id = r.id) AS manifests,
                       (SELECT COUNT(*) FROM tags WHERE repo_id = r.id) AS tags,
                       MAX(COALESCE((SELECT MAX(updated_at) FROM tags WHERE repo_id = r.id), 0),
                           COALESCE((SELECT MAX(created_at) FROM manifests WHERE repo_id = r.id), 0)) AS updated
                FROM repositories r
                WHERE (?1 IS NULL OR r.name = ?1)
                  AND (EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id) OR EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id)
                       OR EXISTS (SELECT 1 FROM blob_links WHERE repo_id = r.id))
                ORDER BY r.name
                """, arguments: [name]).map { row in
                let updated: Double = row["updated"]
                return RepositorySummary(name: row["name"], manifests: row["manifests"], tags: row["tags"],
                                         createdAt: Date(timeIntervalSince1970: row["created_at"]),
                                         lastUpdatedAt: updated > 0 ? Date(timeIntervalSince1970: updated) : nil)
            }
        }
    }

    // MARK: recycle bin

    private static func deleted(_ row: Row, repository: String) -> DeletedManifest {
        let tags = (try? JSONDecoder().decode([String].self, from: Data((row["tags"] as String).utf8))) ?? []
        return DeletedManifest(id: row["id"], repository: repository, digest: row["digest"], mediaType: row["media_type"],
                               size: row["size"], deletedAt: Date(timeIntervalSince1970: row["deleted_at"]),
                               expiresAt: Date(timeIntervalSince1970: row["expires_at"]), tags: tags, reason: row["reason"])
    }

    public func deletedManifests(repository: String) async throws -> [DeletedManifest] {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return [] }
            return try Row.fetchAll(db, sql: "SELECT * FROM deleted_manifests WHERE repo_id = ? ORDER BY id", arguments: [repo])
                .map { Self.deleted($0, repository: repository) }
        }
    }

    private static func binEntries(_ db: Database, repository: String, _ rows: [Row]) throws -> [RecycleBinEntry] {
        try rows.map { row in
            let refs = try Row.fetchAll(db, sql: "SELECT child, kind FROM deleted_refs WHERE deleted_id = ? ORDER BY child",
                                        arguments: [row["id"] as Int64])
            return RecycleBinEntry(entry: deleted(row, repository: repository), subject: row["subject"],
                                   manifests: refs.filter { ($0["kind"] as Int) == 1 }.map { $0["child"] },
                                   blobs: refs.filter { ($0["kind"] as Int) == 0 }.map { $0["child"] },
                                   quarantineState: try quarantineState(row["quarantine_state"]),
                                   quarantineReason: row["quarantine_reason"])
        }
    }

    public func recycleBinEntries(repository: String, digests: [String]) async throws -> [RecycleBinEntry] {
        guard !digests.isEmpty else { return [] }
        return try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return [] }
            var rows: [Row] = []
            for chunk in stride(from: 0, to: digests.count, by: 500).map({ Array(digests[$0..<min(digests.count, $0 + 500)]) }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                rows += try Row.fetchAll(db, sql: "SELECT * FROM deleted_manifests WHERE repo_id = ? AND digest IN (\(marks)) ORDER BY id",
                                         arguments: StatementArguments([repo] + chunk))
            }
            return try Self.binEntries(db, repository: repository, rows)
        }
    }

    public func recycleBinEntries(repository: String, subject: String) async throws -> [RecycleBinEntry] {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return [] }
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM deleted_manifests WHERE repo_id = ? AND subject = ? ORDER BY id",
                                        arguments: [repo, subject])
            return try Self.binEntries(db, repository: repository, rows)
        }
    }

    public func applyRestore(repository: String, plan: RestorePlan) async throws {
        let origin = EventOrigin.current
        try await pool.write { db in
            guard let repo = try Self.repoID(db, repository) else { throw RestoreError.planStale }
            let now = Date().timeIntervalSince1970
            func present(_ d: String) throws -> Bool {
                try Bool.fetchOne(db, sql: "SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?", arguments: [repo, d]) ?? false
            }
            for id in plan.entries {
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM deleted_manifests WHERE id = ? AND repo_id = ?",
                                                 arguments: [id, repo]) else { throw RestoreError.planStale }
                let d: String = row["digest"]
                guard try !present(d) else { throw RestoreError.planStale }
                let ids = try Int64.fetchAll(db, sql: "SELECT id FROM deleted_manifests WHERE repo_id = ? AND digest = ?", arguments: [repo, d])
                guard ids.allSatisfy(plan.known.contains) else { throw RestoreError.planStale }
                let refs = try Row.fetchAll(db, sql: "SELECT child, kind FROM deleted_refs WHERE deleted_id = ?", arguments: [id])
                for ref in refs where (ref["kind"] as Int) == 1 {
                    guard try present(ref["child"]) else { throw RestoreError.planStale }
                }
                guard let state = plan.comesBack[id] else { throw RestoreError.planStale }
                for blob in state.links {
                    guard try Bool.fetchOne(db, sql: "SELECT 1 FROM blobs WHERE digest = ?", arguments: [blob]) ?? false else {
                        throw RestoreError.childMissing(blob)
                    }
                    try db.execute(sql: "INSERT OR IGNORE INTO blob_links(repo_id, digest, created_at) VALUES (?, ?, ?)",
                                   arguments: [repo, blob, now])
                }
                guard try Bool.fetchOne(db, sql: "SELECT 1 FROM blobs WHERE digest = ? AND inline IS NOT NULL", arguments: [d]) ?? false else {
                    throw RestoreError.childMissing(d)
                }
                try db.execute(sql: """
                    INSERT INTO manifests(repo_id, digest, media_type, size, artifact_type, subject, annotations, created_at,
                                          quarantine_state, quarantine_reason, unlive_since)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [repo, d, row["media_type"], row["size"], row["artifact_type"], row["subject"], row["annotations"],
                                     row["created_at"], state.quarantineState?.rawValue, state.quarantineReason,
                                     state.unliveSince?.timeIntervalSince1970])
                try db.execute(sql: """
                    INSERT OR IGNORE INTO manifest_refs(repo_id, parent, child, kind) SELECT repo_id, ?, child, kind FROM deleted_refs
                    WHERE deleted_id = ?
                    """, arguments: [d, id])
                try db.execute(sql: "DELETE FROM deleted_refs WHERE deleted_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM deleted_manifests WHERE id = ?", arguments: [id])
                try Self.appendEvent(db, origin, EventAction.restore, repository, digest: d, mediaType: row["media_type"],
                                     size: row["size"])
            }
            guard !plan.tagMoves.isEmpty else { return }
            guard let target = try Row.fetchOne(db, sql: "SELECT media_type, size FROM manifests WHERE repo_id = ? AND digest = ?",
                                                arguments: [repo, plan.digest]) else { throw RestoreError.planStale }
            for move in plan.tagMoves {
                let current = try String.fetchOne(db, sql: "SELECT digest FROM tags WHERE repo_id = ? AND name = ?",
                                                  arguments: [repo, move.tag])
                guard current == move.expected else { throw RestoreError.tagConflict(tag: move.tag, current: current) }
                if current == plan.digest { continue }
                try db.execute(sql: """
                    INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at
                    """, arguments: [repo, move.tag, plan.digest, now])
                try Self.appendEvent(db, origin, EventAction.tagMove, repository, digest: plan.digest, tag: move.tag,
                                     mediaType: target["media_type"], size: target["size"],
                                     detail: current.map { "restore; from \($0)" } ?? "restore")
                if let current { try Self.stampUntagged(db, repo, current, tag: move.tag, historyLimit: plan.tagHistoryLimit) }
            }
        }
    }

    public func expireDeletedManifests(now: Date, limit: Int) async throws -> [DeletedManifest] {
        let origin = EventOrigin.current
        return try await pool.write { db -> [DeletedManifest] in
            let rows = try Row.fetchAll(db, sql: """
                SELECT d.*, r.name AS repository FROM deleted_manifests d JOIN repositories r ON r.id = d.repo_id
                WHERE d.expires_at <= ? ORDER BY d.id LIMIT ?
                """, arguments: [now.timeIntervalSince1970, max(0, limit)])
            var out: [DeletedManifest] = []
            for row in rows {
                let entry = Self.deleted(row, repository: row["repository"])
                try db.execute(sql: "DELETE FROM deleted_refs WHERE deleted_id = ?", arguments: [entry.id])
                try db.execute(sql: "DELETE FROM deleted_manifests WHERE id = ?", arguments: [entry.id])
                try Self.dropFindingsIfGone(db, entry.digest)
                try Self.appendEvent(db, origin, EventAction.softDeleteExpire, entry.repository, digest: entry.digest,
                                     mediaType: entry.mediaType, size: entry.size, detail: "removed for good from the recycle bin")
                out.append(entry)
            }
            return out
        }
    }

    // MARK: locks

    public func locks() async throws -> [LockRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM locks ORDER BY repository, kind, key").map { row in
                let kind: Int = row["kind"]
                let key: String = row["key"]
                return LockRecord(repository: row["repository"], tag: kind == 1 ? key : nil, digest: kind == 2 ? key : nil,
                                  readEnabled: row["read_enabled"], writeEnabled: row["write_enabled"],
                                  deleteEnabled: row["delete_enabled"], listEnabled: row["list_enabled"])
            }
        }
    }

    public func setLock(_ lock: LockRecord) async throws {
        let origin = EventOrigin.current
        try await pool.write { db in
            let kind = lock.tag != nil ? 1 : (lock.digest != nil ? 2 : 0)
            let key = lock.tag ?? lock.digest ?? ""
            if lock.isDefault {
                try db.execute(sql: "DELETE FROM locks WHERE repository = ? AND kind = ? AND key = ?", arguments: [lock.repository, kind, key])
            } else {
                try db.execute(sql: """
                    INSERT INTO locks(repository, kind, key, read_enabled, write_enabled, delete_enabled, list_enabled)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(repository, kind, key) DO UPDATE SET read_enabled = excluded.read_enabled,
                        write_enabled = excluded.write_enabled, delete_enabled = excluded.delete_enabled, list_enabled = excluded.list_enabled
                    """, arguments: [lock.repository, kind, key, lock.readEnabled, lock.writeEnabled, lock.deleteEnabled, lock.listEnabled])
            }
            try Self.appendEvent(db, origin, EventAction.lock, lock.repository, digest: lock.digest, tag: lock.tag,
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
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.name, l.digest FROM blob_links l JOIN repositories r ON r.id = l.repo_id
                WHERE l.created_at < ? AND \(Self.linkUnreferenced) ORDER BY r.name, l.digest LIMIT ?
                """, arguments: [cutoff.timeIntervalSince1970, limit]).map { (repository: $0[0], digest: $0[1]) }
        }
    }

    public func removeUnreferencedLink(repository: String, digest: String, before cutoff: Date) async throws -> Bool {
        let origin = EventOrigin.current
        return try await pool.write { db in
            try Self.removeUnreferencedLink(db, origin, repository: repository, digest: digest, before: cutoff)
        }
    }

    /// Removes the link with its `blob.delete` event (so every node's caches drop it).
    static func removeUnreferencedLink(_ db: Database, _ origin: EventOrigin?, repository: String, digest: String,
                                       before cutoff: Date) throws -> Bool {
        guard let repo = try Self.repoID(db, repository) else { return false }
        try db.execute(sql: """
            DELETE FROM blob_links AS l WHERE l.repo_id = ? AND l.digest = ? AND l.created_at < ? AND \(Self.linkUnreferenced)
            """, arguments: [repo, digest, cutoff.timeIntervalSince1970])
        guard db.changesCount > 0 else { return false }
        try Self.appendEvent(db, origin, EventAction.blobDelete, repository, digest: digest, detail: EventAction.unreferencedLinkDetail)
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
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT b.digest, b.size, b.inline IS NOT NULL FROM blobs b
                WHERE b.created_at < ? AND \(Self.blobUnreferenced) ORDER BY b.digest LIMIT ?
                """, arguments: [cutoff.timeIntervalSince1970, limit]).map {
                StoredBlob(digest: $0[0], size: $0[1], inline: $0[2])
            }
        }
    }

    public func removeUnreferencedBlob(_ digest: String, before cutoff: Date) async throws -> StoredBlob? {
        try await pool.write { db -> StoredBlob? in try Self.removeUnreferencedBlob(db, digest, before: cutoff) }
    }

    static func removeUnreferencedBlob(_ db: Database, _ digest: String, before cutoff: Date) throws -> StoredBlob? {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT b.digest, b.size, b.inline IS NOT NULL FROM blobs b
            WHERE b.digest = ? AND b.created_at < ? AND \(Self.blobUnreferenced)
            """, arguments: [digest, cutoff.timeIntervalSince1970]) else { return nil }
        try db.execute(sql: "DELETE FROM blobs WHERE digest = ?", arguments: [digest])
        return StoredBlob(digest: row[0], size: row[1], inline: row[2])
    }

    public func hasBlobRecord(_ digest: String) async throws -> Bool {
        try await pool.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM blobs WHERE digest = ?", arguments: [digest]) ?? false }
    }

    public func blobCollectionState(_ digest: String) async throws -> BlobCollectionState? {
        try await pool.read { db -> BlobCollectionState? in
            guard let row = try Row.fetchOne(db, sql: "SELECT size, created_at FROM blobs WHERE digest = ?", arguments: [digest]) else {
                return nil
            }
            let repositories = try String.fetchAll(db, sql: """
                SELECT r.name FROM blob_links l JOIN repositories r ON r.id = l.repo_id WHERE l.digest = ?
                """, arguments: [digest])
            let referenced = try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM manifests WHERE digest = :d) OR EXISTS (SELECT 1 FROM deleted_manifests WHERE digest = :d)
                    OR EXISTS (SELECT 1 FROM manifest_refs WHERE child = :d) OR EXISTS (SELECT 1 FROM deleted_refs WHERE child = :d)
                """, arguments: ["d": digest]) ?? true
            return BlobCollectionState(size: row[0], createdAt: Date(timeIntervalSince1970: row[1]), linkedRepositories: repositories,
                                       referenced: referenced)
        }
    }

    // MARK: usage

    public func usage(repository: String?) async throws -> UsageRecord? {
        try await pool.read { db -> UsageRecord? in
            guard let repository else {
                let row = try Row.fetchOne(db, sql: """
                    SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs), (SELECT COUNT(*) FROM blobs),
                           (SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM tags),
                           (SELECT COUNT(*) FROM repositories r WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id)
                               OR EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id) OR EXISTS (SELECT 1 FROM blob_links WHERE repo_id = r.id)),
                           (SELECT COUNT(*) FROM deleted_manifests)
                    """)!
                return UsageRecord(repository: nil, bytes: row[0], blobs: row[1], manifests: row[2], tags: row[3], repositories: row[4],
                                   deletedManifests: row[5])
            }
            guard let repo = try Self.repoID(db, repository) else { return nil }
            let row = try Row.fetchOne(db, sql: """
                WITH d(digest) AS (SELECT digest FROM blob_links WHERE repo_id = :r UNION SELECT digest FROM manifests WHERE repo_id = :r
                                   UNION SELECT digest FROM deleted_manifests WHERE repo_id = :r)
                SELECT (SELECT COALESCE(SUM(b.size), 0) FROM blobs b JOIN d ON d.digest = b.digest),
                       (SELECT COUNT(*) FROM blobs b JOIN d ON d.digest = b.digest),
                       (SELECT COUNT(*) FROM manifests WHERE repo_id = :r), (SELECT COUNT(*) FROM tags WHERE repo_id = :r),
                       (SELECT COUNT(*) FROM deleted_manifests WHERE repo_id = :r)
                """, arguments: ["r": repo])!
            return UsageRecord(repository: repository, bytes: row[0], blobs: row[1], manifests: row[2], tags: row[3], repositories: nil,
                               deletedManifests: row[4])
        }
    }

    // MARK: runs and schedules

    public func recordRun(kind: RunKind, name: String?, dryRun: Bool, startedAt: Date, finishedAt: Date, report: String,
                          event: (action: EventAction, detail: String)?, keep: Int) async throws -> Int64 {
        let origin = EventOrigin.current
        return try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO lifecycle_runs(kind, name, dry_run, started_at, finished_at, report) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [kind.rawValue, name, dryRun, startedAt.timeIntervalSince1970, finishedAt.timeIntervalSince1970, report])
            let id = db.lastInsertedRowID
            try db.execute(sql: """
                DELETE FROM lifecycle_runs WHERE kind = ? AND id <= (
                    SELECT id FROM lifecycle_runs WHERE kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                """, arguments: [kind.rawValue, kind.rawValue, max(1, keep)])
            if let event {
                try Self.appendEvent(db, origin, event.action, name ?? "", detail: "run \(id): \(event.detail)")
            }
            return id
        }
    }

    public func runs(kind: RunKind?, name: String?, limit: Int) async throws -> [LifecycleRunRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM lifecycle_runs WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR name = ?2) ORDER BY id DESC LIMIT ?3
                """, arguments: [kind?.rawValue, name, limit]).map {
                let raw: String = $0["kind"]
                guard let kind = RunKind(rawValue: raw) else { throw UnknownStoredValue(field: "run kind", value: raw) }
                return LifecycleRunRecord(id: $0["id"], kind: kind, name: $0["name"], dryRun: $0["dry_run"],
                                   startedAt: Date(timeIntervalSince1970: $0["started_at"]),
                                   finishedAt: Date(timeIntervalSince1970: $0["finished_at"]), report: $0["report"])
            }
        }
    }

    public func purgeSchedules() async throws -> [PurgeScheduleRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM purge_schedules ORDER BY name").map { row in
                let last: Double? = row["last_run_at"]
                return PurgeScheduleRecord(
                    name: row["name"], cron: row["cron"],
                    filters: (try? JSONDecoder().decode([String].self, from: Data((row["filters"] as String).utf8))) ?? [],
                    ago: row["ago"], untagged: row["untagged"], keep: row["keep"],
                    createdAt: Date(timeIntervalSince1970: row["created_at"]), lastRunAt: last.map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    public func createPurgeSchedule(_ s: PurgeScheduleRecord) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO purge_schedules(name, cron, filters, ago, untagged, keep, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [s.name, s.cron, Self.json(s.filters), s.ago, s.untagged, s.keep, s.createdAt.timeIntervalSince1970])
            return db.changesCount > 0
        }
    }

    public func deletePurgeSchedule(name: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM purge_schedules WHERE name = ?", arguments: [name])
            return db.changesCount > 0
        }
    }

    public func markPurgeScheduleRun(name: String, at: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE purge_schedules SET last_run_at = ? WHERE name = ?", arguments: [at.timeIntervalSince1970, name])
        }
    }
}
