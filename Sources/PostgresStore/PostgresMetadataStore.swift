import Foundation
import Logging
import NIOCore
import NIOSSL
import OCIModel
import PostgresNIO
import RegistryStore
import ServiceLifecycle

/// The PostgreSQL metadata backend: every store of `MetadataBackend` in one database, with the
/// same answers as the embedded SQLite backend.
///
/// - Every write that appends events runs in one transaction that first locks the event counter
///   row. That row lock serializes those writers until they commit, as SQLite's single writer
///   does, so each sees the state the previous one committed (the compare-and-swap answers are the
///   same) and the event log is gap-free in commit order: a sequence number is taken from the
///   counter inside the transaction, and no later number can commit before an earlier one.
/// - Reads that take several statements run in one REPEATABLE READ snapshot.
/// - Every value is a bound parameter; text the server cannot store (a NUL character) is refused
///   with a `PostgresStoreError`.
///
/// The store owns a `PostgresClient` whose connection pool runs in a task of its own from `open`
/// until `close()`. As a ServiceLifecycle `Service`, `run()` waits for the graceful shutdown and
/// then closes it: `berth serve` lists the store after the HTTP server, so the server drains first.
public final class PostgresMetadataStore: MetadataBackend, CountsMetadataRoundTrips, Service, CustomStringConvertible {
    let client: PostgresClient
    let logger: Logger
    let configuration: PostgresConfiguration
    /// Every statement sent (`Tx.rows`, the one place that talks to the database).
    public let roundTrips = MetadataRoundTrips(backend: "postgres")
    private let runner: Task<Void, Never>

    private init(client: PostgresClient, configuration: PostgresConfiguration, logger: Logger) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
        runner = Task { await client.run() }
    }

    public var description: String { "PostgreSQL metadata store at \(configuration)" }

    /// Connects, brings the schema up to date (or refuses a schema newer than this build) and
    /// starts the connection pool. `migrate` false: changes no schema, and refuses a database
    /// whose schema is not this build's (`PostgresMigrations.requireCurrent`).
    public static func open(_ configuration: PostgresConfiguration, migrate: Bool = true,
                            logger: Logger = Logger(label: "berth.postgres")) async throws -> PostgresMetadataStore {
        if migrate {
            try await PostgresMigrations.migrate(configuration, logger: logger)
        } else {
            try await PostgresMigrations.requireCurrent(configuration, logger: logger)
        }
        var config = PostgresClient.Configuration(host: configuration.host, port: configuration.port, username: configuration.username,
                                                  password: configuration.password, database: configuration.database,
                                                  tls: try clientTLS(configuration))
        config.options.additionalStartupParameters = startupParameters(configuration)
        config.options.maximumConnections = max(1, configuration.maximumConnections)
        config.options.minimumConnections = 0
        config.options.connectTimeout = .seconds(10)
        // The pool's own chatter (among it a warning when the first lease comes before its run
        // task has started, which is harmless) stays out of the log below errors.
        var background = logger
        background.logLevel = .error
        let client = PostgresClient(configuration: config, backgroundLogger: background)
        return PostgresMetadataStore(client: client, configuration: configuration, logger: logger)
    }

    /// Waits for the graceful shutdown of the service group, then closes the pool.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// Closes the connection pool; queries after it fail.
    public func close() async {
        runner.cancel()
        await runner.value
    }

    static func clientTLS(_ c: PostgresConfiguration) throws -> PostgresClient.Configuration.TLS {
        switch c.tls {
        case .disable: .disable
        case .require: .require(.makeClientConfiguration())
        }
    }

    static func startupParameters(_ c: PostgresConfiguration) -> [(String, String)] {
        var parameters = [("application_name", "berth")]
        if let schema = c.schema { parameters.append(("search_path", schema)) }
        return parameters
    }

    // MARK: transactions

    /// One connection outside any explicit transaction (a single statement).
    func single<T: Sendable>(_ body: (Tx) async throws -> T) async throws -> T {
        try await PostgresStoreError.mapping {
            try await client.withConnection { conn in try await body(Tx(conn: conn, logger: logger, roundTrips: roundTrips)) }
        }
    }

    /// A consistent snapshot for reads of several statements.
    func read<T: Sendable>(_ body: @Sendable (Tx) async throws -> T) async throws -> T {
        try await transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", serialized: false, body)
    }

    /// A write transaction. `serialized` (every write that appends an event or decides from what it
    /// read) first takes the event counter's row lock: see the type's documentation.
    func write<T: Sendable>(serialized: Bool = true, _ body: @Sendable (Tx) async throws -> T) async throws -> T {
        try await transaction("BEGIN", serialized: serialized, body)
    }

    /// SQLSTATEs after which PostgreSQL has rolled the whole transaction back and the statement
    /// may succeed when run again: a deadlock it broke (`40P01`, this transaction chosen as the
    /// victim) and a serialization failure (`40001`).
    static let retryableStates: Set<String> = ["40P01", "40001"]
    /// Attempts of one transaction before its failure is the caller's.
    static let transactionAttempts = 4

    /// Whether a failed attempt of a transaction may be run again from its start: the database
    /// asked for it, and nothing of the attempt is left (the failed statement ends it, and the
    /// `ROLLBACK` after it, or the connection's close, leaves nothing committed). An attempt's
    /// errors come mapped (`PostgresStoreError.mapping`), with the server's SQLSTATE.
    static func isRetryable(_ error: any Error) -> Bool {
        (error as? PostgresStoreError)?.sqlState.map(retryableStates.contains) ?? false
    }

    /// Runs `body` in a transaction, again (at most `transactionAttempts` in all, after a short
    /// random pause that grows) when PostgreSQL rolled it back with a retryable SQLSTATE. Safe
    /// because a body is `@Sendable`: it captures no mutable state of its caller (the compiler
    /// checks it), and every body here only talks to the database through its `Tx`, so a rolled-back
    /// attempt leaves no trace and the next starts from the state then committed.
    private func transaction<T: Sendable>(_ begin: String, serialized: Bool, _ body: @Sendable (Tx) async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await attemptTransaction(begin, serialized: serialized, body)
            } catch where attempt < Self.transactionAttempts && Self.isRetryable(error) {
                roundTrips.recordRetry()
                logger.debug("metadata transaction rolled back by the database, run again",
                             metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(Int.random(in: 5...20) * attempt))
                attempt += 1
            }
        }
    }

    private func attemptTransaction<T: Sendable>(_ begin: String, serialized: Bool, _ body: @Sendable (Tx) async throws -> T) async throws -> T {
        try await PostgresStoreError.mapping {
            try await client.withConnection { conn in
                let tx = Tx(conn: conn, logger: logger, roundTrips: roundTrips)
                try await tx.exec(PostgresQuery(unsafeSQL: begin))
                do {
                    if serialized { try await tx.exec("SELECT last FROM event_counter WHERE id = 1 FOR UPDATE") }
                    let value = try await body(tx)
                    try await tx.exec("COMMIT")
                    return value
                } catch {
                    // A connection that cannot roll back goes, rather than back to the pool with a
                    // transaction still open on it.
                    do { try await tx.exec("ROLLBACK") } catch { try? await conn.close() }
                    throw error
                }
            }
        }
    }

    // MARK: helpers

    static func repoID(_ tx: Tx, _ name: String) async throws -> Int64? {
        try await tx.value("SELECT id FROM repositories WHERE name = \(name)", Int64.self)
    }

    static func ensureRepo(_ tx: Tx, _ name: String) async throws -> Int64 {
        if let id = try await repoID(tx, name) { return id }
        return try await tx.value("INSERT INTO repositories(name, created_at) VALUES (\(name), \(now())) RETURNING id", Int64.self)!
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Appends an event with the next sequence number of the counter (whose row lock the
    /// transaction holds from its start).
    static func appendEvent(_ tx: Tx, _ origin: EventOrigin?, _ action: EventAction, _ repo: String, digest: String? = nil,
                            tag: String? = nil, mediaType: String? = nil, size: Int64? = nil, detail: String? = nil) async throws {
        // The clock moves on the counter's row (EventStamp.advance, in SQL: SET reads the old values).
        let at = now()
        let physical = Int64((at * 1000).rounded(.down))
        let r = origin?.replicated
        try await tx.exec("""
            WITH n AS (UPDATE event_counter SET last = last + 1,
                           hlc_logical = CASE WHEN \(r == nil)::boolean THEN (CASE WHEN \(physical) > hlc_ms THEN 0 ELSE hlc_logical + 1 END)
                                              WHEN \(r?.milliseconds ?? 0) > hlc_ms THEN \(r?.logical ?? 0)
                                              WHEN \(r?.milliseconds ?? 0) = hlc_ms THEN GREATEST(hlc_logical, \(r?.logical ?? 0))
                                              ELSE hlc_logical END,
                           hlc_ms = GREATEST(hlc_ms, \(r == nil ? physical : r?.milliseconds ?? 0))
                       WHERE id = 1 RETURNING last, hlc_ms, hlc_logical)
            INSERT INTO events(seq, at, action, repository, digest, tag, media_type, size, detail, actor, address,
                               request_id, request_host, request_method, user_agent, origin_region, hlc_ms, hlc_logical)
            SELECT n.last, \(at), \(action.rawValue), \(repo), \(digest), \(tag), \(mediaType), \(size), \(detail),
                   \(origin?.actor), \(origin?.address), \(origin?.requestID), \(origin?.host), \(origin?.method), \(origin?.userAgent),
                   \(r?.region), COALESCE(\(r?.milliseconds)::bigint, n.hlc_ms), COALESCE(\(r?.logical)::bigint, n.hlc_logical)
            FROM n
            """)
    }

    static func json(_ value: some Encodable) -> String {
        String(decoding: (try? JSONEncoder().encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String?) -> T? {
        text.flatMap { try? JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }

    // MARK: repositories

    public func repositoryExists(_ name: String) async throws -> Bool {
        try await single { tx in try await Self.repoID(tx, name) != nil }
    }

    public func repositories(after: String?, limit: Int) async throws -> [String] {
        try await single { tx in
            // A repository whose content was all deleted keeps its row (recycle bin, locks) but is not listed.
            try await tx.rows("""
                SELECT name FROM repositories r WHERE name > \(after ?? "")
                  AND (EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id) OR EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id)
                       OR EXISTS (SELECT 1 FROM blob_links WHERE repo_id = r.id))
                ORDER BY name LIMIT \(limit)
                """).map { try $0.decode(0, String.self) }
        }
    }

    public func manifestHolders(_ manifests: [Digest]) async throws -> [ManifestRef] {
        let names = Set(manifests.map(\.string)).sorted()
        guard !names.isEmpty else { return [] }
        return try await read { tx in
            var out: [ManifestRef] = []
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + 500)])
                start += 500
                for row in try await tx.rows("""
                    SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
                    WHERE m.digest = ANY(\(chunk)::text[])
                    """) {
                    out.append(ManifestRef(repository: try row.decode(0, String.self), digest: try row.decode(1, String.self)))
                }
            }
            return out.sorted(by: ManifestRef.inOrder)
        }
    }

    // MARK: blobs

    public func linkedBlobSize(repository: String, digest: Digest) async throws -> Int64? {
        try await single { tx in
            try await tx.value("""
                SELECT b.size FROM repositories r
                JOIN blob_links l ON l.repo_id = r.id AND l.digest = \(digest.string)
                JOIN blobs b ON b.digest = l.digest
                WHERE r.name = \(repository)
                """, Int64.self)
        }
    }

    public func blobSize(_ digest: Digest) async throws -> Int64? {
        try await single { tx in try await tx.value("SELECT size FROM blobs WHERE digest = \(digest.string)", Int64.self) }
    }

    public func inlineContent(_ digest: Digest) async throws -> [UInt8]? {
        try await single { tx in
            try await tx.one("SELECT inline FROM blobs WHERE digest = \(digest.string)")?.decode(0, ByteBuffer?.self).map { Array($0.readableBytesView) }
        }
    }

    public func linkBlob(repository: String, digest: Digest, size: Int64, inline: [UInt8]?, quotas: [QuotaLimit]) async throws {
        let origin = EventOrigin.current
        try await write { tx in
            try await Self.checkQuotas(tx, quotas, repository: repository, digest: digest.string, size: size)
            let repo = try await Self.ensureRepo(tx, repository)
            let now = Self.now()
            try await tx.exec("""
                INSERT INTO blobs(digest, size, inline, created_at) VALUES (\(digest.string), \(size), \(inline.map { ByteBuffer(bytes: $0) }), \(now))
                ON CONFLICT DO NOTHING
                """)
            let linked = try await tx.count("""
                INSERT INTO blob_links(repo_id, digest, created_at) VALUES (\(repo), \(digest.string), \(now))
                ON CONFLICT DO NOTHING RETURNING 1
                """)
            if linked > 0 {
                try await Self.appendEvent(tx, origin, .blobPush, repository, digest: digest.string, size: size)
            } else {
                // A link made again counts from now (`ContentMetadataStore.linkBlob`).
                try await tx.exec("UPDATE blob_links SET created_at = \(now) WHERE repo_id = \(repo) AND digest = \(digest.string)")
            }
        }
    }

    public func mountBlob(repository: String, from: String, digest: Digest, quotas: [QuotaLimit]) async throws -> Int64? {
        let origin = EventOrigin.current
        return try await write { tx -> Int64? in
            guard let fromID = try await Self.repoID(tx, from),
                  let size = try await tx.value("""
                    SELECT b.size FROM blob_links l JOIN blobs b ON b.digest = l.digest
                    WHERE l.repo_id = \(fromID) AND l.digest = \(digest.string)
                    """, Int64.self)
            else { return nil }
            try await Self.checkQuotas(tx, quotas, repository: repository, digest: digest.string, size: size)
            let repo = try await Self.ensureRepo(tx, repository)
            let linked = try await tx.count("""
                INSERT INTO blob_links(repo_id, digest, created_at) VALUES (\(repo), \(digest.string), \(Self.now()))
                ON CONFLICT DO NOTHING RETURNING 1
                """) > 0
            if linked {
                try await Self.appendEvent(tx, origin, .blobPush, repository, digest: digest.string, size: size,
                                           detail: "mounted from \(from)")
            } else {
                try await tx.exec("UPDATE blob_links SET created_at = \(Self.now()) WHERE repo_id = \(repo) AND digest = \(digest.string)")
            }
            return size
        }
    }

    public func unlinkBlob(repository: String, digest: Digest) async throws -> Bool {
        let origin = EventOrigin.current
        return try await write { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return false }
            guard try await tx.count("DELETE FROM blob_links WHERE repo_id = \(repo) AND digest = \(digest.string) RETURNING 1") > 0 else {
                return false
            }
            try await Self.appendEvent(tx, origin, .blobDelete, repository, digest: digest.string)
            return true
        }
    }

    // MARK: manifests

    public func putManifest(_ push: ManifestPush) async throws -> ManifestPushResult {
        let origin = EventOrigin.current
        return try await write { tx -> ManifestPushResult in
            // References are checked inside the serialized write transaction, so a concurrent
            // delete cannot remove a blob between the check and the commit. A refused push creates
            // nothing, not even its repository.
            let existing = try await Self.repoID(tx, push.repository)
            var missing: [Digest] = []
            for blob in Set(push.blobs) {
                var linked = false
                if let existing {
                    linked = try await tx.one("SELECT 1 FROM blob_links WHERE repo_id = \(existing) AND digest = \(blob.string)") != nil
                }
                if !linked { missing.append(blob) }
            }
            for child in Set(push.children) {
                var present = false
                if let existing {
                    present = try await tx.one("SELECT 1 FROM manifests WHERE repo_id = \(existing) AND digest = \(child.string)") != nil
                }
                if !present { missing.append(child) }
            }
            if !missing.isEmpty { return .missing(missing.sorted()) }
            if let tag = push.tag {
                var current: String?
                if let existing {
                    current = try await tx.value("SELECT digest FROM tags WHERE repo_id = \(existing) AND name = \(tag)", String.self)
                }
                if current != push.expectedTagTarget?.string {
                    return .tagConflict(current: try current.map { try Digest(parsing: $0) })
                }
            }

            let r = push.record
            try await Self.checkQuotas(tx, push.quotas, repository: push.repository, digest: r.digest.string, size: r.size)
            let repo = try await Self.ensureRepo(tx, push.repository)
            let now = Self.now()
            try await tx.exec("""
                INSERT INTO blobs(digest, size, inline, created_at) VALUES (\(r.digest.string), \(r.size), \(ByteBuffer(bytes: push.bytes)), \(now))
                ON CONFLICT DO NOTHING
                """)
            let annotations = try r.annotations.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            let isNew = try await tx.count("""
                INSERT INTO manifests(repo_id, digest, media_type, size, artifact_type, subject, annotations, created_at,
                                      quarantine_state, quarantine_reason)
                VALUES (\(repo), \(r.digest.string), \(r.mediaType), \(r.size), \(r.artifactType), \(r.subject?.string),
                        \(annotations), \(r.createdAt.timeIntervalSince1970), \(r.quarantineState?.rawValue), \(r.quarantineReason))
                ON CONFLICT DO NOTHING RETURNING 1
                """) > 0
            if isNew, let state = r.quarantineState {
                try await Self.appendEvent(tx, origin, .quarantine, push.repository, digest: r.digest.string, tag: push.tag,
                                           mediaType: r.mediaType, size: r.size,
                                           detail: state.rawValue + (r.quarantineReason.map { ": " + $0 } ?? ""))
            }
            if isNew {
                for blob in Set(push.blobs) {
                    try await tx.exec("""
                        INSERT INTO manifest_refs(repo_id, parent, child, kind) VALUES (\(repo), \(r.digest.string), \(blob.string), 0)
                        ON CONFLICT DO NOTHING
                        """)
                }
                for child in Set(push.children) {
                    try await tx.exec("""
                        INSERT INTO manifest_refs(repo_id, parent, child, kind) VALUES (\(repo), \(r.digest.string), \(child.string), 1)
                        ON CONFLICT DO NOTHING
                        """)
                }
                try await Self.appendEvent(tx, origin, .manifestPush, push.repository, digest: r.digest.string, tag: push.tag,
                                           mediaType: r.mediaType, size: r.size)
            }
            var previous: Digest?
            var moved = false
            if let tag = push.tag {
                let old = try await tx.value("SELECT digest FROM tags WHERE repo_id = \(repo) AND name = \(tag)", String.self)
                if old != r.digest.string {
                    moved = true
                    try await tx.exec("""
                        INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (\(repo), \(tag), \(r.digest.string), \(now))
                        ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at
                        """)
                    try await Self.appendEvent(tx, origin, .tagMove, push.repository, digest: r.digest.string, tag: tag,
                                               mediaType: r.mediaType, size: r.size, detail: old.map { "from \($0)" })
                    if let old { try await Self.stampUntagged(tx, repo, old, tag: tag, historyLimit: push.tagHistoryLimit) }
                    previous = old.flatMap { try? Digest(parsing: $0) }
                }
            }
            // A push of a manifest already stored that moves no tag appends no push or tag event,
            // but it is still a write (issue 13), recorded as a mark: of the tag it names, which
            // points here already (the client's tag write must win over a peer's concurrent move
            // stamped before it, as in every region; without its own stamp the tag's older write
            // lost to it silently: found reading a partition test failure); a tag mark
            // counts as the manifest's presence too. Without a tag, of the manifest's presence, so
            // a peer region's deletion older than it does not remove it. A peer's write applied
            // here records its own.
            if !isNew, !moved, origin?.replicated == nil {
                try await Self.appendEvent(tx, origin, .registerMark, push.repository, digest: r.digest.string,
                                           tag: push.tag, detail: (push.tag == nil ? EventAction.manifestPush : EventAction.tagMove).rawValue)
            }
            return .stored(previousTagTarget: previous)
        }
    }

    /// A stored state this build does not know is an error (`UnknownStoredValue`), never a guess.
    static func quarantineState(_ raw: String?) throws -> QuarantineState? {
        guard let raw else { return nil }
        guard let state = QuarantineState(rawValue: raw) else { throw UnknownStoredValue(field: "quarantine state", value: raw) }
        return state
    }

    static let manifestColumns = """
        digest, media_type, size, artifact_type, subject, annotations, created_at, quarantine_state, quarantine_reason
        """

    static func record(_ row: Row) throws -> ManifestRecord? {
        guard let digest = try? Digest(parsing: try row.decode("digest", String.self)) else { return nil }
        let annotations = decodeJSON([String: String].self, try row.decode("annotations", String?.self))
        let subject = try row.decode("subject", String?.self)
        return ManifestRecord(digest: digest, mediaType: try row.decode("media_type"), size: try row.decode("size"),
                              artifactType: try row.decode("artifact_type"), subject: subject.flatMap { try? Digest(parsing: $0) },
                              annotations: annotations, createdAt: try row.date("created_at"),
                              quarantineState: try quarantineState(try row.decode("quarantine_state")),
                              quarantineReason: try row.decode("quarantine_reason"))
    }

    public func manifest(repository: String, digest: Digest) async throws -> ManifestRecord? {
        try await single { tx in
            try await tx.one("""
                SELECT m.digest, m.media_type, m.size, m.artifact_type, m.subject, m.annotations, m.created_at, m.quarantine_state,
                       m.quarantine_reason
                FROM repositories r JOIN manifests m ON m.repo_id = r.id AND m.digest = \(digest.string)
                WHERE r.name = \(repository)
                """).flatMap(Self.record)
        }
    }

    public func tagTarget(repository: String, tag: String) async throws -> Digest? {
        try await single { tx in
            try await tx.value("""
                SELECT t.digest FROM repositories r JOIN tags t ON t.repo_id = r.id AND t.name = \(tag)
                WHERE r.name = \(repository)
                """, String.self).flatMap { try? Digest(parsing: $0) }
        }
    }

    public func deleteTag(_ d: TagDeletion) async throws -> TagDeletionResult {
        let origin = EventOrigin.current
        return try await write { tx -> TagDeletionResult in
            guard let repo = try await Self.repoID(tx, d.repository),
                  let digest = try await tx.value("SELECT digest FROM tags WHERE repo_id = \(repo) AND name = \(d.tag)", String.self)
            else { return .unknown }
            guard digest == d.expectedTarget.string else { return .conflict(current: try Digest(parsing: digest)) }
            try await tx.exec("DELETE FROM tags WHERE repo_id = \(repo) AND name = \(d.tag)")
            if d.dropLock {
                try await tx.exec("DELETE FROM locks WHERE repository = \(d.repository) AND kind = 1 AND key = \(d.tag)")
            }
            try await Self.appendEvent(tx, origin, .tagDelete, d.repository, digest: digest, tag: d.tag, detail: d.detail)
            try await Self.stampUntagged(tx, repo, digest, tag: d.tag, historyLimit: d.tagHistoryLimit)
            return .deleted
        }
    }

    public func tags(repository: String, after: String?, limit: Int) async throws -> [String]? {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return nil }
            return try await tx.rows("SELECT name FROM tags WHERE repo_id = \(repo) AND name > \(after ?? "") ORDER BY name LIMIT \(limit)")
                .map { try $0.decode(0, String.self) }
        }
    }

    public func tags(repository: String, pointingAt digest: Digest, limit: Int) async throws -> [String] {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return [] }
            return try await tx.rows("""
                SELECT name FROM tags WHERE repo_id = \(repo) AND digest = \(digest.string) ORDER BY name LIMIT \(max(0, limit))
                """).map { try $0.decode(0, String.self) }
        }
    }

    public func referrers(repository: String, subject: Digest) async throws -> [ManifestRecord] {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return [] }
            return try await tx.rows("""
                SELECT \(unescaped: Self.manifestColumns) FROM manifests WHERE repo_id = \(repo) AND subject = \(subject.string)
                ORDER BY created_at, digest
                """).compactMap(Self.record)
        }
    }

    public func parents(repository: String, child: Digest) async throws -> [Digest] {
        try await read { tx in
            guard let repo = try await Self.repoID(tx, repository) else { return [] }
            return try await tx.rows("SELECT parent FROM manifest_refs WHERE repo_id = \(repo) AND child = \(child.string) AND kind = 1")
                .compactMap { try? Digest(parsing: try $0.decode(0, String.self)) }
        }
    }

    public func storedBytes() async throws -> Int64 {
        try await single { tx in try await tx.value("SELECT COALESCE(SUM(size), 0)::bigint FROM blobs", Int64.self) ?? 0 }
    }

    public func checkHealth() async throws {
        _ = try await single { tx in try await tx.value("SELECT 1::bigint", Int64.self) }
    }

    // MARK: quarantine

    public func applyQuarantine(_ u: QuarantineUpdate) async throws -> QuarantineUpdateResult {
        let origin = EventOrigin.current
        return try await write { tx -> QuarantineUpdateResult in
            guard let repo = try await Self.repoID(tx, u.repository),
                  let row = try await tx.one("SELECT media_type, size FROM manifests WHERE repo_id = \(repo) AND digest = \(u.digest.string)")
            else { return .unknownManifest }
            // Every follower must still be where the plan saw it before anything is written.
            for f in u.followers {
                guard let current = try await tx.one("""
                    SELECT quarantine_state FROM manifests WHERE repo_id = \(repo) AND digest = \(f.digest.string)
                    """), try current.decode(0, String?.self) == f.from.rawValue else { return .conflict }
            }
            try await tx.exec("""
                UPDATE manifests SET quarantine_state = \(u.state.rawValue), quarantine_reason = \(u.reason)
                WHERE repo_id = \(repo) AND digest = \(u.digest.string)
                """)
            for f in u.followers {
                try await tx.exec("""
                    UPDATE manifests SET quarantine_state = \(u.state.rawValue), quarantine_reason = \(f.reason)
                    WHERE repo_id = \(repo) AND digest = \(f.digest.string)
                    """)
            }
            try await Self.appendEvent(tx, origin, .quarantine, u.repository, digest: u.digest.string,
                                       mediaType: try row.decode("media_type"), size: try row.decode("size"),
                                       detail: u.state.rawValue + (u.reason.map { ": " + $0 } ?? ""))
            return .applied
        }
    }

    public func quarantineCounts() async throws -> [QuarantineState: Int] {
        try await single { tx in
            var counts: [QuarantineState: Int] = [:]
            for row in try await tx.rows("""
                SELECT quarantine_state, COUNT(*) FROM manifests WHERE quarantine_state IS NOT NULL GROUP BY quarantine_state
                """) {
                if let state = try Self.quarantineState(try row.decode(0, String.self)) { counts[state] = try row.decode(1, Int.self) }
            }
            return counts
        }
    }

    /// The condition selecting what `sweep` moves (manifests `m`), written per case so the
    /// partial index on `quarantine_state` serves a sweep from a state (`IS NOT DISTINCT FROM`
    /// would not use it). States are the enum's fixed names, never client text.
    private static func sweepCondition(_ sweep: QuarantineSweep) -> String {
        let state = sweep.from.map { "m.quarantine_state = '\($0.rawValue)'" } ?? "m.quarantine_state IS NULL"
        return sweep.includeReferrers ? state : state + " AND m.subject IS NULL"
    }

    private static func sweepSelection(_ tx: Tx, _ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        let condition = sweepCondition(sweep)
        let count = try await tx.value("SELECT COUNT(*) FROM manifests m WHERE \(unescaped: condition)", Int.self) ?? 0
        let refs = try await tx.rows("""
            SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE \(unescaped: condition)
            ORDER BY r.name, m.digest LIMIT \(max(0, limit))
            """).map { ManifestRef(repository: try $0.decode(0), digest: try $0.decode(1)) }
        return (refs, count)
    }

    public func quarantineSweepSelection(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        try await read { tx in try await Self.sweepSelection(tx, sweep, limit: limit) }
    }

    public func applyQuarantineSweep(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        let origin = EventOrigin.current
        return try await write { tx in
            let listed = try await Self.sweepSelection(tx, sweep, limit: limit)
            let condition = Self.sweepCondition(sweep)
            if let detail = sweep.eventDetail {
                for row in try await tx.rows("""
                    SELECT r.name, m.digest, m.media_type, m.size FROM manifests m JOIN repositories r ON r.id = m.repo_id
                    WHERE \(unescaped: condition) ORDER BY r.name, m.digest
                    """) {
                    try await Self.appendEvent(tx, origin, .quarantine, try row.decode(0), digest: try row.decode(1),
                                               mediaType: try row.decode(2), size: try row.decode(3), detail: detail)
                }
            }
            let count = try await tx.count("""
                UPDATE manifests AS m SET quarantine_state = \(sweep.to?.rawValue), quarantine_reason = \(sweep.reason)
                WHERE \(unescaped: condition) RETURNING 1
                """)
            return (listed.manifests, count)
        }
    }

    public func blobOnlyInQuarantine(repository: String, digest: Digest) async throws -> Bool {
        try await single { tx in
            // NULL: nothing references it; true: some referencing manifest is pullable; false: none is.
            try await tx.one("""
                SELECT bool_or(m.quarantine_state IS NULL OR m.quarantine_state = 'Passed')
                FROM repositories r
                JOIN manifest_refs mr ON mr.repo_id = r.id AND mr.child = \(digest.string) AND mr.kind = 0
                JOIN manifests m ON m.repo_id = mr.repo_id AND m.digest = mr.parent
                WHERE r.name = \(repository)
                """)?.decode(0, Bool?.self) == false
        }
    }

    // MARK: settings

    public func settingDocument(_ name: String) async throws -> Data? {
        try await single { tx in
            try await tx.value("SELECT value FROM settings WHERE key = \(name)", String.self).map { Data($0.utf8) }
        }
    }

    public func setSettingDocument(_ name: String, _ document: Data) async throws {
        let origin = EventOrigin.current
        let value = String(decoding: document, as: UTF8.self)
        try await write { tx in
            try await tx.exec("""
                INSERT INTO settings(key, value) VALUES (\(name), \(value)) ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            try await Self.appendEvent(tx, origin, .setting, "", digest: Digest.compute(Array(document)).string, detail: name)
        }
    }
}

// MARK: rows and statements

/// A row read whole, its columns by name or position.
struct Row: Sendable {
    let raw: PostgresRandomAccessRow

    func decode<T: PostgresDecodable>(_ column: String, _ type: T.Type = T.self) throws -> T {
        try raw[column].decode(T.self, context: .default)
    }

    func decode<T: PostgresDecodable>(_ index: Int, _ type: T.Type = T.self) throws -> T {
        try raw[index].decode(T.self, context: .default)
    }

    func date(_ column: String) throws -> Date { Date(timeIntervalSince1970: try decode(column, Double.self)) }
    func optionalDate(_ column: String) throws -> Date? { try decode(column, Double?.self).map(Date.init(timeIntervalSince1970:)) }
}

/// Statements on one connection (inside a transaction or not).
struct Tx {
    let conn: PostgresConnection
    let logger: Logger
    /// The store's count of statements sent (nil for the migrations' own connection).
    var roundTrips: MetadataRoundTrips? = nil

    func rows(_ query: PostgresQuery) async throws -> [Row] {
        roundTrips?.record()
        return try await PostgresStoreError.mapping {
            try await conn.query(query, logger: logger).collect().map { Row(raw: $0.makeRandomAccess()) }
        }
    }

    func one(_ query: PostgresQuery) async throws -> Row? { try await rows(query).first }

    func exec(_ query: PostgresQuery) async throws { _ = try await rows(query) }

    /// The rows a statement returned (a `RETURNING 1` makes it the rows it changed).
    func count(_ query: PostgresQuery) async throws -> Int { try await rows(query).count }

    /// The first column of the first row; nil when there is no row or the value is NULL.
    func value<T: PostgresDecodable>(_ query: PostgresQuery, _ type: T.Type) async throws -> T? {
        guard let row = try await one(query), row.raw[0].bytes != nil else { return nil }
        return try row.decode(0, T.self)
    }
}

extension PostgresStoreError {
    /// Runs `body`, turning the driver's errors into a `PostgresStoreError` that says what went
    /// wrong without quoting the statement or its values.
    static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PSQLError {
            throw PostgresStoreError(error)
        } catch let error as PostgresDecodingError {
            throw PostgresStoreError("PostgreSQL returned a value of an unexpected type in column '\(error.columnName)'")
        }
    }

    init(_ error: PSQLError) {
        let state = error.serverInfo?[.sqlState]
        let message = error.serverInfo?[.message]
        switch state {
        case "22021", "22P05":
            self.init("text the metadata store cannot keep (a NUL character or an invalid byte sequence)", sqlState: state)
        case let state?:
            self.init("PostgreSQL refused a statement: \(message ?? "error") (SQLSTATE \(state))", sqlState: state)
        case nil:
            self.init("PostgreSQL is not reachable or the connection failed: \(error.code)"
                      + (error.underlying.map { " (\($0))" } ?? ""))
        }
    }
}
