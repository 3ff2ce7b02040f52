import Foundation
import GRDB
import OCIModel
import RegistryStore

/// The embedded metadata store: one SQLite database in WAL mode with `synchronous=FULL`, so a
/// committed transaction is on disk before the request that made it is answered.
public final class SQLiteMetadataStore: MetadataBackend, CountsMetadataRoundTrips {
    let pool: DatabasePool
    /// Every statement started on any of the pool's connections (counted by a trace).
    public let roundTrips: MetadataRoundTrips

    public convenience init(path: String) throws {
        try self.init(path: path, migratingUpTo: nil)
    }

    /// `migratingUpTo` stops at that migration: for tests that stand for a database an older
    /// build left.
    init(path: String, migratingUpTo last: String?) throws {
        let roundTrips = MetadataRoundTrips(backend: "sqlite")
        self.roundTrips = roundTrips
        var config = Configuration()
        config.prepareDatabase { db in
            db.trace(options: .statement) { _ in roundTrips.record() }
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // 512 KiB page cache for the writer, 256 KiB for each of up to eight readers. The
            // hot read path is served from Berth's own cache, and pages SQLite drops are still in
            // the kernel's page cache: a bigger private cache only adds to the resident set
            // (this takes at most 2 MiB, 8 x 256 KiB, off the peak; with the other changes of
            // that step, the listing benchmark's peak fell from 40.6 to 32.4 MiB).
            try db.execute(sql: db.configuration.readonly ? "PRAGMA cache_size = -256" : "PRAGMA cache_size = -512")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        config.busyMode = .timeout(10)
        // Every read here is asynchronous (`try await pool.read`): a task waiting for a reader
        // connection waits off the cooperative pool. A synchronous `pool.read` on a cooperative
        // thread once deadlocked a fresh server on a 2-core machine: both threads waited for a
        // reader while every reader was held by an async read that needed one of those threads to
        // finish. Keep it that way (tests/interop/test_architecture.py checks it). 8 readers, each
        // opened on first demand, cover the server's concurrent reads.
        config.maximumReaderCount = 8
        // The database and its -wal and -shm files (which SQLite creates with the database's
        // mode) are readable by their owner only.
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) {
            _ = fm.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        for file in [path, path + "-wal", path + "-shm"] where fm.fileExists(atPath: file) {
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        }
        pool = try DatabasePool(path: path, configuration: config)
        if let last {
            try Self.migrator.migrate(pool, upTo: last)
        } else {
            try Self.migrator.migrate(pool)
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE repositories (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    created_at REAL NOT NULL
                );
                -- One row per stored digest across all repositories (deduplicated). Small blobs and
                -- manifests keep their bytes inline; larger blobs live in the blob store.
                CREATE TABLE blobs (
                    digest TEXT PRIMARY KEY,
                    size INTEGER NOT NULL,
                    inline BLOB,
                    created_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE blob_links (
                    repo_id INTEGER NOT NULL REFERENCES repositories(id),
                    digest TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    PRIMARY KEY (repo_id, digest)
                ) WITHOUT ROWID;
                CREATE INDEX blob_links_digest ON blob_links(digest);
                CREATE TABLE manifests (
                    repo_id INTEGER NOT NULL REFERENCES repositories(id),
                    digest TEXT NOT NULL,
                    media_type TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    artifact_type TEXT,
                    subject TEXT,
                    annotations TEXT,
                    created_at REAL NOT NULL,
                    PRIMARY KEY (repo_id, digest)
                ) WITHOUT ROWID;
                CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
                -- What a manifest references: kind 0 = blob (config/layer), 1 = child manifest.
                CREATE TABLE manifest_refs (
                    repo_id INTEGER NOT NULL,
                    parent TEXT NOT NULL,
                    child TEXT NOT NULL,
                    kind INTEGER NOT NULL,
                    PRIMARY KEY (repo_id, parent, kind, child)
                ) WITHOUT ROWID;
                CREATE INDEX manifest_refs_child ON manifest_refs(repo_id, child);
                CREATE TABLE tags (
                    repo_id INTEGER NOT NULL REFERENCES repositories(id),
                    name TEXT NOT NULL,
                    digest TEXT NOT NULL,
                    updated_at REAL NOT NULL,
                    PRIMARY KEY (repo_id, name)
                ) WITHOUT ROWID;
                CREATE INDEX tags_digest ON tags(repo_id, digest);
                CREATE TABLE events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    at REAL NOT NULL,
                    action TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    digest TEXT,
                    tag TEXT,
                    media_type TEXT,
                    size INTEGER,
                    detail TEXT
                );
                """)
        }
        m.registerMigration("v2-access") { db in
            try db.execute(sql: """
                CREATE TABLE access_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    version INTEGER NOT NULL,
                    document BLOB NOT NULL
                );
                CREATE TABLE audit (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    at REAL NOT NULL,
                    actor TEXT NOT NULL,
                    address TEXT NOT NULL,
                    action TEXT NOT NULL,
                    target TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    detail TEXT
                );
                CREATE INDEX audit_at ON audit(at);
                """)
        }
        m.registerMigration("v3-event-origin") { db in
            try db.execute(sql: """
                ALTER TABLE events ADD COLUMN actor TEXT;
                ALTER TABLE events ADD COLUMN address TEXT;
                CREATE INDEX events_at ON events(at);
                """)
        }
        m.registerMigration("v4-webhooks") { db in
            try db.execute(sql: """
                ALTER TABLE events ADD COLUMN request_id TEXT;
                ALTER TABLE events ADD COLUMN request_host TEXT;
                ALTER TABLE events ADD COLUMN request_method TEXT;
                ALTER TABLE events ADD COLUMN user_agent TEXT;
                CREATE TABLE webhooks (
                    name TEXT PRIMARY KEY,
                    uri TEXT NOT NULL,
                    actions TEXT NOT NULL,
                    scope TEXT,
                    headers TEXT NOT NULL,
                    sealed_secret BLOB NOT NULL,
                    enabled INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    cursor INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at REAL
                ) WITHOUT ROWID;
                CREATE TABLE webhook_deliveries (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    webhook TEXT NOT NULL,
                    event_seq INTEGER,
                    action TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    status_code INTEGER,
                    latency_ms REAL NOT NULL,
                    error TEXT,
                    at REAL NOT NULL,
                    payload TEXT NOT NULL
                );
                CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries(webhook, id);
                """)
        }
        m.registerMigration("v5-quarantine") { db in
            try db.execute(sql: """
                ALTER TABLE manifests ADD COLUMN quarantine_state TEXT;
                ALTER TABLE manifests ADD COLUMN quarantine_reason TEXT;
                CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v6-lifecycle") { db in
            try db.execute(sql: """
                ALTER TABLE manifests ADD COLUMN unlive_since REAL;
                CREATE INDEX manifests_unlive ON manifests(unlive_since) WHERE unlive_since IS NOT NULL;
                CREATE INDEX manifests_digest ON manifests(digest);
                CREATE INDEX manifest_refs_by_child ON manifest_refs(child);
                -- The recycle bin: soft-deleted manifests with their tags at deletion, and what they referenced
                -- (garbage collection keeps those blobs).
                CREATE TABLE deleted_manifests (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    repo_id INTEGER NOT NULL,
                    digest TEXT NOT NULL,
                    media_type TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    artifact_type TEXT,
                    subject TEXT,
                    annotations TEXT,
                    created_at REAL NOT NULL,
                    quarantine_state TEXT,
                    quarantine_reason TEXT,
                    deleted_at REAL NOT NULL,
                    expires_at REAL NOT NULL,
                    tags TEXT NOT NULL,
                    reason TEXT NOT NULL
                );
                CREATE INDEX deleted_manifests_repo ON deleted_manifests(repo_id, digest);
                CREATE INDEX deleted_manifests_digest ON deleted_manifests(digest);
                CREATE INDEX deleted_manifests_expiry ON deleted_manifests(expires_at);
                CREATE TABLE deleted_refs (
                    deleted_id INTEGER NOT NULL,
                    repo_id INTEGER NOT NULL,
                    child TEXT NOT NULL,
                    kind INTEGER NOT NULL,
                    PRIMARY KEY (deleted_id, kind, child)
                ) WITHOUT ROWID;
                CREATE INDEX deleted_refs_child ON deleted_refs(child);
                CREATE INDEX deleted_refs_repo_child ON deleted_refs(repo_id, child);
                -- Locks (attributes): kind 0 = repository (key ''), 1 = tag, 2 = manifest digest.
                CREATE TABLE locks (
                    repository TEXT NOT NULL,
                    kind INTEGER NOT NULL,
                    key TEXT NOT NULL,
                    read_enabled INTEGER NOT NULL,
                    write_enabled INTEGER NOT NULL,
                    delete_enabled INTEGER NOT NULL,
                    list_enabled INTEGER NOT NULL,
                    PRIMARY KEY (repository, kind, key)
                ) WITHOUT ROWID;
                CREATE TABLE lifecycle_runs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL,
                    name TEXT,
                    dry_run INTEGER NOT NULL,
                    started_at REAL NOT NULL,
                    finished_at REAL NOT NULL,
                    report TEXT NOT NULL
                );
                CREATE INDEX lifecycle_runs_kind ON lifecycle_runs(kind, id);
                CREATE TABLE purge_schedules (
                    name TEXT PRIMARY KEY,
                    cron TEXT NOT NULL,
                    filters TEXT NOT NULL,
                    ago TEXT NOT NULL,
                    untagged INTEGER NOT NULL,
                    keep INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    last_run_at REAL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v7-tag-history") { db in
            try db.execute(sql: "ALTER TABLE manifests ADD COLUMN former_tags TEXT")
        }
        m.registerMigration("v8-event-consumers") { db in
            try db.execute(sql: """
                CREATE TABLE event_consumers (
                    name TEXT PRIMARY KEY,
                    cursor INTEGER NOT NULL,
                    paused INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at REAL,
                    last_error TEXT,
                    updated_at REAL NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v9-webhooks-without-cursor") { db in
            // A webhook's place in the log and its retry state are its event consumer's. A webhook
            // whose consumer never ran (a registry upgraded from before the runner) hands its own
            // cursor over first, so nothing is sent again or skipped; `webhook:<name>` is the
            // consumer's name (`WebhookConsumer.name`). A consumer that exists already keeps the
            // further of the two places: one behind the webhook's cursor would send again what
            // the webhook had sent.
            try db.execute(sql: """
                INSERT INTO event_consumers(name, cursor, updated_at)
                    SELECT 'webhook:' || name, cursor, CAST(strftime('%s', 'now') AS REAL) FROM webhooks WHERE true
                ON CONFLICT(name) DO UPDATE SET cursor = MAX(event_consumers.cursor, excluded.cursor);
                ALTER TABLE webhooks DROP COLUMN cursor;
                ALTER TABLE webhooks DROP COLUMN attempts;
                ALTER TABLE webhooks DROP COLUMN next_attempt_at;
                """)
        }
        m.registerMigration("v10-key-material") { db in
            // Key material shared by every process of the registry, sealed by the caller.
            try db.execute(sql: """
                CREATE TABLE key_material (
                    name TEXT PRIMARY KEY,
                    version INTEGER NOT NULL,
                    blob BLOB NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v11-leases") { db in
            // Leases on cluster-once background work (SQLiteMetadataStore+Leases.swift).
            try db.execute(sql: """
                CREATE TABLE leases (
                    name TEXT PRIMARY KEY,
                    holder TEXT NOT NULL,
                    token INTEGER NOT NULL,
                    expires_at REAL NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v12-shared-state") { db in
            // State every node shares (SQLiteMetadataStore+SharedState.swift): failed logins (keys
            // as SHA-256 digests), and garbage collection's pins, deletion markers and link touches.
            try db.execute(sql: """
                CREATE TABLE login_failures (
                    key TEXT NOT NULL,
                    at REAL NOT NULL
                );
                CREATE INDEX login_failures_at ON login_failures(at);
                CREATE INDEX login_failures_key ON login_failures(key, at);
                CREATE TABLE blob_pins (
                    digest TEXT NOT NULL,
                    holder TEXT NOT NULL,
                    expires_at REAL NOT NULL,
                    PRIMARY KEY (digest, holder)
                ) WITHOUT ROWID;
                CREATE TABLE blob_deletions (
                    digest TEXT PRIMARY KEY,
                    deleter TEXT NOT NULL,
                    expires_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE link_touches (
                    repository TEXT NOT NULL,
                    digest TEXT NOT NULL,
                    touched_at REAL NOT NULL,
                    PRIMARY KEY (repository, digest)
                ) WITHOUT ROWID;
                CREATE INDEX link_touches_at ON link_touches(touched_at);
                """)
        }
        m.registerMigration("v13-upload-sessions") { db in
            // Upload state of blob stores that keep it here (SQLiteMetadataStore+UploadSessions.swift).
            try db.execute(sql: """
                CREATE TABLE upload_sessions (
                    id TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    state BLOB NOT NULL,
                    updated_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX upload_sessions_by_update ON upload_sessions(updated_at);
                """)
        }
        m.registerMigration("v14-geo") { db in
            // Replicas of issue 13 (SQLiteMetadataStore+Replication.swift): the credential sealed by
            // the caller; the progress columns are what the replication consumer last saw.
            try db.execute(sql: """
                CREATE TABLE replicas (
                    location TEXT PRIMARY KEY,
                    endpoint TEXT NOT NULL,
                    sealed_credential BLOB,
                    region_endpoint_enabled INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    peer_sequence INTEGER,
                    peer_sequence_at REAL,
                    oldest_pending_at REAL,
                    bytes_pending INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT,
                    last_error_at REAL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v15-tasks") { db in
            // Build tasks and their runs (SQLiteMetadataStore+Tasks.swift): JSON documents beside
            // the columns selected on; run ids come from one counter, so they are never reused.
            try db.execute(sql: """
                CREATE TABLE tasks (
                    name TEXT PRIMARY KEY,
                    record TEXT NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE task_runs (
                    number INTEGER PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    task TEXT NOT NULL,
                    status TEXT NOT NULL,
                    record TEXT NOT NULL
                );
                CREATE INDEX task_runs_by_task ON task_runs(task, number);
                CREATE INDEX task_runs_by_status ON task_runs(status, number);
                CREATE TABLE task_run_counter (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
                INSERT INTO task_run_counter(id, last) VALUES (1, 0);
                """)
        }
        m.registerMigration("v16-scanwire") { db in
            // Scanning's derived data (SQLiteMetadataStore+Scans.swift): layer indexes once per
            // layer digest, inventories per manifest digest, and the packages each inventory holds.
            try db.execute(sql: """
                CREATE TABLE scan_layer_indexes (
                    digest TEXT PRIMARY KEY,
                    format INTEGER NOT NULL,
                    cataloger_version TEXT NOT NULL,
                    complete INTEGER NOT NULL,
                    document BLOB NOT NULL,
                    indexed_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE scan_inventories (
                    manifest TEXT PRIMARY KEY,
                    status TEXT NOT NULL,
                    layers TEXT NOT NULL,
                    cataloger_version TEXT NOT NULL,
                    document BLOB NOT NULL,
                    detail TEXT,
                    created_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE scan_inventory_packages (
                    ecosystem TEXT NOT NULL,
                    name TEXT NOT NULL,
                    manifest TEXT NOT NULL,
                    PRIMARY KEY (ecosystem, name, manifest)
                ) WITHOUT ROWID;
                CREATE INDEX scan_inventory_packages_by_manifest ON scan_inventory_packages(manifest);
                """)
        }
        m.registerMigration("v17-scandb") { db in
            // The advisory database (SQLiteMetadataStore+Advisories.swift).
            try db.execute(sql: """
                CREATE TABLE advisory_versions (
                    version INTEGER PRIMARY KEY,
                    source TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    added INTEGER NOT NULL,
                    changed INTEGER NOT NULL,
                    removed INTEGER NOT NULL
                );
                CREATE TABLE advisory_sources (
                    source TEXT PRIMARY KEY,
                    format TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    imported_at REAL,
                    checked_at REAL,
                    etag TEXT,
                    last_modified TEXT,
                    last_error TEXT
                ) WITHOUT ROWID;
                CREATE TABLE advisories (
                    source TEXT NOT NULL,
                    id TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    document BLOB NOT NULL,
                    version INTEGER NOT NULL,
                    PRIMARY KEY (source, id)
                ) WITHOUT ROWID;
                CREATE TABLE advisory_packages (
                    ecosystem TEXT NOT NULL,
                    name TEXT NOT NULL,
                    source TEXT NOT NULL,
                    id TEXT NOT NULL,
                    PRIMARY KEY (ecosystem, name, source, id)
                ) WITHOUT ROWID;
                CREATE INDEX advisory_packages_by_record ON advisory_packages(source, id);
                CREATE TABLE advisory_changes (
                    version INTEGER NOT NULL,
                    ecosystem TEXT NOT NULL,
                    name TEXT NOT NULL,
                    PRIMARY KEY (version, ecosystem, name)
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v18-console2") { db in
            // The web console's sessions (SQLiteMetadataStore+ConsoleSessions.swift).
            try db.execute(sql: """
                CREATE TABLE console_sessions (
                    id_hash TEXT PRIMARY KEY,
                    subject TEXT NOT NULL,
                    subject_id TEXT,
                    generation INTEGER NOT NULL,
                    display_name TEXT NOT NULL,
                    csrf TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX console_sessions_by_expiry ON console_sessions(expires_at);
                """)
        }
        m.registerMigration("v19-cache") { db in
            // Pull-through cache rules and their credential sets (SQLiteMetadataStore+CacheRules.swift).
            try db.execute(sql: """
                CREATE TABLE credential_sets (
                    name TEXT PRIMARY KEY,
                    login_server TEXT NOT NULL,
                    username TEXT NOT NULL,
                    sealed_password BLOB NOT NULL,
                    created_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE cache_rules (
                    name TEXT PRIMARY KEY,
                    source_repository TEXT NOT NULL,
                    target_repository TEXT NOT NULL,
                    credential_set TEXT REFERENCES credential_sets(name),
                    plain_http INTEGER NOT NULL,
                    tag_freshness_seconds INTEGER NOT NULL,
                    created_by TEXT NOT NULL,
                    created_at REAL NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v20-findings") { db in
            // Findings per manifest (SQLiteMetadataStore+Findings.swift).
            try db.execute(sql: """
                CREATE TABLE scan_finding_sets (
                    manifest TEXT PRIMARY KEY,
                    advisory_version INTEGER NOT NULL,
                    matched_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE scan_findings (
                    manifest TEXT NOT NULL,
                    advisory_id TEXT NOT NULL,
                    ecosystem TEXT NOT NULL,
                    package TEXT NOT NULL,
                    installed_version TEXT NOT NULL,
                    source_package TEXT,
                    fixed_version TEXT,
                    severity TEXT NOT NULL,
                    score REAL,
                    fix_state TEXT NOT NULL,
                    aliases TEXT NOT NULL,
                    PRIMARY KEY (manifest, advisory_id, ecosystem, package, installed_version)
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v21-geo2") { db in
            // Each event's origin region (NULL: this region) and hybrid-logical-clock stamp, and the
            // clock itself (EventStamps.swift).
            try db.execute(sql: """
                ALTER TABLE events ADD COLUMN origin_region TEXT;
                ALTER TABLE events ADD COLUMN hlc_ms INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE events ADD COLUMN hlc_logical INTEGER NOT NULL DEFAULT 0;
                CREATE TABLE event_clock (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    milliseconds INTEGER NOT NULL,
                    logical INTEGER NOT NULL
                );
                INSERT INTO event_clock(id, milliseconds, logical) VALUES (1, 0, 0);
                """)
        }
        m.registerMigration("v22-triggit") { db in
            // Git-commit triggers: the commit last seen per task (SQLiteMetadataStore+TaskCommits.swift).
            try db.execute(sql: """
                CREATE TABLE task_commits (
                    task TEXT PRIMARY KEY REFERENCES tasks(name) ON DELETE CASCADE,
                    branch TEXT NOT NULL,
                    commit_id TEXT NOT NULL,
                    seen_at REAL NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v23-importjobs") { db in
            // Import jobs, shared by every node (SQLiteMetadataStore+ImportJobs.swift).
            try db.execute(sql: """
                CREATE TABLE import_jobs (
                    id TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    image TEXT NOT NULL,
                    state TEXT NOT NULL,
                    document BLOB NOT NULL,
                    node TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX import_jobs_by_update ON import_jobs(updated_at);
                """)
        }
        m.registerMigration("v24-pulltimes") { db in
            // When each manifest and tag was last pulled (SQLiteMetadataStore+PullTimes.swift);
            // deleting the manifest or tag deletes its row.
            try db.execute(sql: """
                CREATE TABLE manifest_pulls (
                    repo_id INTEGER NOT NULL,
                    digest TEXT NOT NULL,
                    pulled_at REAL NOT NULL,
                    PRIMARY KEY (repo_id, digest),
                    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
                ) WITHOUT ROWID;
                CREATE INDEX manifest_pulls_by_digest ON manifest_pulls(digest, pulled_at);
                CREATE TABLE tag_pulls (
                    repo_id INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    pulled_at REAL NOT NULL,
                    PRIMARY KEY (repo_id, name),
                    FOREIGN KEY (repo_id, name) REFERENCES tags(repo_id, name) ON DELETE CASCADE
                ) WITHOUT ROWID;
                -- at most 20 console sessions per identity: the oldest are found by subject
                CREATE INDEX console_sessions_by_subject ON console_sessions(subject, created_at);
                """)
        }
        m.registerMigration("v25-runlogs") { db in
            // A task run's log in chunks (SQLiteMetadataStore+Tasks.swift), so every node serves it;
            // deleted with its run.
            try db.execute(sql: """
                CREATE TABLE task_run_logs (
                    run_id TEXT NOT NULL REFERENCES task_runs(id) ON DELETE CASCADE,
                    start INTEGER NOT NULL,
                    end INTEGER NOT NULL,
                    bytes BLOB NOT NULL,
                    PRIMARY KEY (run_id, start)
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v26-replication") { db in
            // Issue 13's conflict log and register lookups (SQLiteMetadataStore+Replication.swift):
            // a tag's or lock's writes are found in the event log by repository and tag.
            try db.execute(sql: """
                CREATE INDEX events_by_repository_tag ON events(repository, tag, seq);
                CREATE TABLE replication_conflicts (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    location TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    key TEXT NOT NULL,
                    loser_value TEXT NOT NULL,
                    loser_region TEXT NOT NULL,
                    loser_ms INTEGER NOT NULL,
                    loser_logical INTEGER NOT NULL,
                    winner_value TEXT,
                    winner_region TEXT,
                    winner_ms INTEGER,
                    winner_logical INTEGER,
                    recorded_at REAL NOT NULL,
                    UNIQUE (kind, repository, key, loser_region, loser_ms, loser_logical, loser_value)
                );
                CREATE INDEX replication_conflicts_by_location ON replication_conflicts(location, id);
                """)
        }
        m.registerMigration("v27-setting-registers") { db in
            // A setting's writes (its `setting` events) found by name for replication's register merge.
            try db.execute(sql: "CREATE INDEX events_setting_writes ON events(detail, seq) WHERE action = 'setting'")
        }
        m.registerMigration("v28-data-endpoint") { db in
            // A replica's data endpoint (issue 13 item 4): where its region's clients read blobs; NULL: its endpoint.
            try db.execute(sql: "ALTER TABLE replicas ADD COLUMN data_endpoint TEXT")
        }
        m.registerMigration("v29-access-registers") { db in
            // Access records as registers (issue 13): an access record's writes by its `<kind>:<name>`.
            try db.execute(sql: "CREATE INDEX events_access_writes ON events(detail, seq) WHERE action = 'access'")
        }
        m.registerMigration("v30-events-by-digest") { db in
            // A manifest's presence as a register (replication): its pushes, restores and deletions
            // by (repository, digest), read for every replicated push, tag move and referrer.
            try db.execute(sql: "CREATE INDEX events_by_repository_digest ON events(repository, digest, seq)")
        }
        return m
    }

    // MARK: helpers

    static func repoID(_ db: Database, _ name: String) throws -> Int64? {
        try Int64.fetchOne(db, sql: "SELECT id FROM repositories WHERE name = ?", arguments: [name])
    }

    static func ensureRepo(_ db: Database, _ name: String) throws -> Int64 {
        if let id = try repoID(db, name) { return id }
        try db.execute(sql: "INSERT INTO repositories(name, created_at) VALUES (?, ?)",
                       arguments: [name, Date().timeIntervalSince1970])
        return db.lastInsertedRowID
    }

    static func appendEvent(_ db: Database, _ origin: EventOrigin?, _ action: EventAction, _ repo: String, digest: String? = nil,
                                    tag: String? = nil, mediaType: String? = nil, size: Int64? = nil,
                                    detail: String? = nil) throws {
        let now = Date()
        guard try db.tableExists("event_clock") else {
            // A store opened at an older migration (tests standing for a database an older build
            // left): events without stamps, as that build appended them.
            try db.execute(sql: """
                INSERT INTO events(at, action, repository, digest, tag, media_type, size, detail, actor, address,
                                   request_id, request_host, request_method, user_agent)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [now.timeIntervalSince1970, action.rawValue, repo, digest, tag, mediaType, size, detail,
                                 origin?.actor, origin?.address, origin?.requestID, origin?.host, origin?.method, origin?.userAgent])
            return
        }
        let stamp = try stampEvent(db, at: now, replicated: origin?.replicated)
        try db.execute(sql: """
            INSERT INTO events(at, action, repository, digest, tag, media_type, size, detail, actor, address,
                               request_id, request_host, request_method, user_agent, origin_region, hlc_ms, hlc_logical)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [now.timeIntervalSince1970, action.rawValue, repo, digest, tag, mediaType, size, detail,
                             origin?.actor, origin?.address, origin?.requestID, origin?.host, origin?.method, origin?.userAgent,
                             stamp.region, stamp.milliseconds, stamp.logical])
    }

    /// Moves the database's hybrid logical clock for one appended event (`EventStamp.advance`);
    /// the write transaction is the only writer, so the read and the update cannot interleave.
    private static func stampEvent(_ db: Database, at now: Date, replicated: EventStamp?) throws -> EventStamp {
        let row = try Row.fetchOne(db, sql: "SELECT milliseconds, logical FROM event_clock WHERE id = 1")
        let ms: Int64 = row?["milliseconds"] ?? 0
        let logical: Int64 = row?["logical"] ?? 0
        let last = (milliseconds: ms, logical: logical)
        let next = EventStamp.advance(last: last, physical: Int64((now.timeIntervalSince1970 * 1000).rounded(.down)),
                                      replicated: replicated)
        try db.execute(sql: "UPDATE event_clock SET milliseconds = ?, logical = ? WHERE id = 1",
                       arguments: [next.clock.milliseconds, next.clock.logical])
        return next.stamp
    }

    // MARK: repositories

    public func repositoryExists(_ name: String) async throws -> Bool {
        try await pool.read { db in try Self.repoID(db, name) != nil }
    }

    public func repositories(after: String?, limit: Int) async throws -> [String] {
        try await pool.read { db in
            // A repository whose content was all deleted keeps its row (recycle bin, locks) but is not listed.
            try String.fetchAll(db, sql: """
                SELECT name FROM repositories r WHERE name > ?
                  AND (EXISTS (SELECT 1 FROM tags WHERE repo_id = r.id) OR EXISTS (SELECT 1 FROM manifests WHERE repo_id = r.id)
                       OR EXISTS (SELECT 1 FROM blob_links WHERE repo_id = r.id))
                ORDER BY name LIMIT ?
                """, arguments: [after ?? "", limit])
        }
    }

    public func manifestHolders(_ manifests: [Digest]) async throws -> [ManifestRef] {
        let names = Set(manifests.map(\.string)).sorted()
        guard !names.isEmpty else { return [] }
        return try await pool.read { db in
            var out: [ManifestRef] = []
            var start = 0
            while start < names.count {
                let chunk = Array(names[start..<min(names.count, start + 500)])
                start += 500
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for row in try Row.fetchAll(db, sql: """
                    SELECT r.name AS repository, m.digest AS digest FROM manifests m JOIN repositories r ON r.id = m.repo_id
                    WHERE m.digest IN (\(marks))
                    """, arguments: StatementArguments(chunk)) {
                    out.append(ManifestRef(repository: row["repository"], digest: row["digest"]))
                }
            }
            return out.sorted(by: ManifestRef.inOrder)
        }
    }

    // MARK: blobs

    public func linkedBlobSize(repository: String, digest: Digest) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: """
                SELECT b.size FROM repositories r
                JOIN blob_links l ON l.repo_id = r.id AND l.digest = ?
                JOIN blobs b ON b.digest = l.digest
                WHERE r.name = ?
                """, arguments: [digest.string, repository])
        }
    }

    public func blobSize(_ digest: Digest) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT size FROM blobs WHERE digest = ?", arguments: [digest.string])
        }
    }

    public func inlineContent(_ digest: Digest) async throws -> [UInt8]? {
        try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT inline FROM blobs WHERE digest = ?", arguments: [digest.string])
                .map { [UInt8]($0) }
        }
    }

    public func linkBlob(repository: String, digest: Digest, size: Int64, inline: [UInt8]?, quotas: [QuotaLimit]) async throws {
        let origin = EventOrigin.current
        return try await pool.write { db in
            try Self.checkQuotas(db, quotas, repository: repository, digest: digest.string, size: size)
            let repo = try Self.ensureRepo(db, repository)
            let now = Date().timeIntervalSince1970
            try db.execute(sql: "INSERT OR IGNORE INTO blobs(digest, size, inline, created_at) VALUES (?, ?, ?, ?)",
                           arguments: [digest.string, size, inline.map { Data($0) }, now])
            try db.execute(sql: "INSERT OR IGNORE INTO blob_links(repo_id, digest, created_at) VALUES (?, ?, ?)",
                           arguments: [repo, digest.string, now])
            if db.changesCount > 0 {
                try Self.appendEvent(db, origin, EventAction.blobPush, repository, digest: digest.string, size: size)
            } else {
                // A link made again counts from now (`ContentMetadataStore.linkBlob`).
                try db.execute(sql: "UPDATE blob_links SET created_at = ? WHERE repo_id = ? AND digest = ?",
                               arguments: [now, repo, digest.string])
            }
        }
    }

    public func mountBlob(repository: String, from: String, digest: Digest, quotas: [QuotaLimit]) async throws -> Int64? {
        let origin = EventOrigin.current
        return try await pool.write { db -> Int64? in
            guard let fromID = try Self.repoID(db, from),
                  let size = try Int64.fetchOne(db, sql: """
                    SELECT b.size FROM blob_links l JOIN blobs b ON b.digest = l.digest
                    WHERE l.repo_id = ? AND l.digest = ?
                    """, arguments: [fromID, digest.string])
            else { return nil }
            try Self.checkQuotas(db, quotas, repository: repository, digest: digest.string, size: size)
            let repo = try Self.ensureRepo(db, repository)
            try db.execute(sql: "INSERT OR IGNORE INTO blob_links(repo_id, digest, created_at) VALUES (?, ?, ?)",
                           arguments: [repo, digest.string, Date().timeIntervalSince1970])
            let linked = db.changesCount > 0
            if !linked {
                try db.execute(sql: "UPDATE blob_links SET created_at = ? WHERE repo_id = ? AND digest = ?",
                               arguments: [Date().timeIntervalSince1970, repo, digest.string])
            }
            if linked {
                try Self.appendEvent(db, origin, EventAction.blobPush, repository, digest: digest.string, size: size,
                                     detail: "mounted from \(from)")
            }
            return size
        }
    }

    public func unlinkBlob(repository: String, digest: Digest) async throws -> Bool {
        let origin = EventOrigin.current
        return try await pool.write { db in
            guard let repo = try Self.repoID(db, repository) else { return false }
            try db.execute(sql: "DELETE FROM blob_links WHERE repo_id = ? AND digest = ?", arguments: [repo, digest.string])
            guard db.changesCount > 0 else { return false }
            try Self.appendEvent(db, origin, EventAction.blobDelete, repository, digest: digest.string)
            return true
        }
    }

    // MARK: manifests

    public func putManifest(_ push: ManifestPush) async throws -> ManifestPushResult {
        let origin = EventOrigin.current
        return try await pool.write { db -> ManifestPushResult in
            // References are checked inside the write transaction, so a concurrent delete cannot
            // remove a blob between the check and the commit. A refused push creates nothing, not
            // even its repository (an unknown repository holds no references).
            let existing = try Self.repoID(db, push.repository)
            var missing: [Digest] = []
            for blob in Set(push.blobs) {
                let linked = try existing.flatMap {
                    try Bool.fetchOne(db, sql: "SELECT 1 FROM blob_links WHERE repo_id = ? AND digest = ?", arguments: [$0, blob.string])
                } ?? false
                if !linked { missing.append(blob) }
            }
            for child in Set(push.children) {
                let present = try existing.flatMap {
                    try Bool.fetchOne(db, sql: "SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?", arguments: [$0, child.string])
                } ?? false
                if !present { missing.append(child) }
            }
            if !missing.isEmpty { return .missing(missing.sorted()) }
            // The plan moves the tag from where the core saw it; if it moved since, plan again.
            if let tag = push.tag {
                let current = try existing.flatMap {
                    try String.fetchOne(db, sql: "SELECT digest FROM tags WHERE repo_id = ? AND name = ?", arguments: [$0, tag])
                }
                if current != push.expectedTagTarget?.string {
                    return .tagConflict(current: try current.map { try Digest(parsing: $0) })
                }
            }

            let r = push.record
            try Self.checkQuotas(db, push.quotas, repository: push.repository, digest: r.digest.string, size: r.size)
            let repo = try existing ?? Self.ensureRepo(db, push.repository)
            let now = Date().timeIntervalSince1970
            try db.execute(sql: "INSERT OR IGNORE INTO blobs(digest, size, inline, created_at) VALUES (?, ?, ?, ?)",
                           arguments: [r.digest.string, r.size, Data(push.bytes), now])
            let annotations = try r.annotations.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
            try db.execute(sql: """
                INSERT OR IGNORE INTO manifests(repo_id, digest, media_type, size, artifact_type, subject, annotations, created_at,
                                                quarantine_state, quarantine_reason)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [repo, r.digest.string, r.mediaType, r.size, r.artifactType, r.subject?.string,
                                 annotations, r.createdAt.timeIntervalSince1970, r.quarantineState?.rawValue, r.quarantineReason])
            let isNew = db.changesCount > 0
            if isNew, let state = r.quarantineState {
                try Self.appendEvent(db, origin, EventAction.quarantine, push.repository, digest: r.digest.string, tag: push.tag,
                                     mediaType: r.mediaType, size: r.size, detail: state.rawValue + (r.quarantineReason.map { ": " + $0 } ?? ""))
            }
            if isNew {
                for blob in Set(push.blobs) {
                    try db.execute(sql: "INSERT OR IGNORE INTO manifest_refs(repo_id, parent, child, kind) VALUES (?, ?, ?, 0)",
                                   arguments: [repo, r.digest.string, blob.string])
                }
                for child in Set(push.children) {
                    try db.execute(sql: "INSERT OR IGNORE INTO manifest_refs(repo_id, parent, child, kind) VALUES (?, ?, ?, 1)",
                                   arguments: [repo, r.digest.string, child.string])
                }
                try Self.appendEvent(db, origin, EventAction.manifestPush, push.repository, digest: r.digest.string,
                                     tag: push.tag, mediaType: r.mediaType, size: r.size)
            }
            var previous: Digest?
            var moved = false
            if let tag = push.tag {
                let old = try String.fetchOne(db, sql: "SELECT digest FROM tags WHERE repo_id = ? AND name = ?",
                                              arguments: [repo, tag])
                if old != r.digest.string {
                    moved = true
                    try db.execute(sql: """
                        INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT(repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at
                        """, arguments: [repo, tag, r.digest.string, now])
                    try Self.appendEvent(db, origin, EventAction.tagMove, push.repository, digest: r.digest.string, tag: tag,
                                         mediaType: r.mediaType, size: r.size, detail: old.map { "from \($0)" })
                    if let old { try Self.stampUntagged(db, repo, old, tag: tag, historyLimit: push.tagHistoryLimit) }
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
                try Self.appendEvent(db, origin, EventAction.registerMark, push.repository, digest: r.digest.string,
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

    static func record(_ row: Row) throws -> ManifestRecord? {
        guard let digest = try? Digest(parsing: row["digest"] as String) else { return nil }
        let annotationsJSON: String? = row["annotations"]
        let annotations = annotationsJSON.flatMap {
            try? JSONDecoder().decode([String: String].self, from: Data($0.utf8))
        }
        let subject: String? = row["subject"]
        return ManifestRecord(digest: digest, mediaType: row["media_type"], size: row["size"],
                              artifactType: row["artifact_type"], subject: subject.flatMap { try? Digest(parsing: $0) },
                              annotations: annotations,
                              createdAt: Date(timeIntervalSince1970: row["created_at"]),
                              quarantineState: try quarantineState(row["quarantine_state"]),
                              quarantineReason: row["quarantine_reason"])
    }

    public func manifest(repository: String, digest: Digest) async throws -> ManifestRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT m.* FROM repositories r JOIN manifests m ON m.repo_id = r.id AND m.digest = ?
                WHERE r.name = ?
                """, arguments: [digest.string, repository]).flatMap(Self.record)
        }
    }

    public func tagTarget(repository: String, tag: String) async throws -> Digest? {
        try await pool.read { db in
            try String.fetchOne(db, sql: """
                SELECT t.digest FROM repositories r JOIN tags t ON t.repo_id = r.id AND t.name = ?
                WHERE r.name = ?
                """, arguments: [tag, repository]).flatMap { try? Digest(parsing: $0) }
        }
    }

    public func deleteTag(_ d: TagDeletion) async throws -> TagDeletionResult {
        let origin = EventOrigin.current
        return try await pool.write { db -> TagDeletionResult in
            guard let repo = try Self.repoID(db, d.repository),
                  let digest = try String.fetchOne(db, sql: "SELECT digest FROM tags WHERE repo_id = ? AND name = ?",
                                                   arguments: [repo, d.tag])
            else { return .unknown }
            guard digest == d.expectedTarget.string else { return .conflict(current: try Digest(parsing: digest)) }
            try db.execute(sql: "DELETE FROM tags WHERE repo_id = ? AND name = ?", arguments: [repo, d.tag])
            if d.dropLock {
                try db.execute(sql: "DELETE FROM locks WHERE repository = ? AND kind = 1 AND key = ?", arguments: [d.repository, d.tag])
            }
            try Self.appendEvent(db, origin, EventAction.tagDelete, d.repository, digest: digest, tag: d.tag, detail: d.detail)
            try Self.stampUntagged(db, repo, digest, tag: d.tag, historyLimit: d.tagHistoryLimit)
            return .deleted
        }
    }

    public func tags(repository: String, after: String?, limit: Int) async throws -> [String]? {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return nil }
            return try String.fetchAll(db, sql: "SELECT name FROM tags WHERE repo_id = ? AND name > ? ORDER BY name LIMIT ?",
                                       arguments: [repo, after ?? "", limit])
        }
    }

    public func tags(repository: String, pointingAt digest: Digest, limit: Int) async throws -> [String] {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return [] }
            return try String.fetchAll(db, sql: "SELECT name FROM tags WHERE repo_id = ? AND digest = ? ORDER BY name LIMIT ?",
                                       arguments: [repo, digest.string, max(0, limit)])
        }
    }

    public func referrers(repository: String, subject: Digest) async throws -> [ManifestRecord] {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return [] }
            return try Row.fetchAll(db, sql: """
                SELECT * FROM manifests WHERE repo_id = ? AND subject = ? ORDER BY created_at, digest
                """, arguments: [repo, subject.string]).compactMap(Self.record)
        }
    }

    public func parents(repository: String, child: Digest) async throws -> [Digest] {
        try await pool.read { db in
            guard let repo = try Self.repoID(db, repository) else { return [] }
            return try String.fetchAll(db, sql: "SELECT parent FROM manifest_refs WHERE repo_id = ? AND child = ? AND kind = 1",
                                       arguments: [repo, child.string]).compactMap { try? Digest(parsing: $0) }
        }
    }

    // MARK: events

    /// An event whose action this build does not know fails the read (`UnknownStoredValue`): skipping
    /// it would let a consumer's cursor pass an event it never saw.
    static func event(_ row: Row) throws -> Event {
        let raw: String = row["action"]
        guard let action = EventAction(rawValue: raw) else { throw UnknownStoredValue(field: "event action", value: raw) }
        return Event(sequence: row["seq"], timestamp: Date(timeIntervalSince1970: row["at"]), action: action,
              repository: row["repository"], digest: row["digest"], tag: row["tag"], mediaType: row["media_type"],
              size: row["size"], detail: row["detail"], actor: row["actor"], address: row["address"],
              requestID: row["request_id"], requestHost: row["request_host"], requestMethod: row["request_method"],
              userAgent: row["user_agent"],
              stamp: EventStamp(region: row["origin_region"], milliseconds: row["hlc_ms"] ?? 0, logical: row["hlc_logical"] ?? 0))
    }

    public func events(after: Int64, limit: Int) async throws -> [Event] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [after, limit]).map(Self.event)
        }
    }

    public func events(since: Date, limit: Int) async throws -> [Event] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM events WHERE at >= ? ORDER BY seq LIMIT ?",
                             arguments: [since.timeIntervalSince1970, limit]).map(Self.event)
        }
    }

    public func storedBytes() async throws -> Int64 {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM blobs") ?? 0 }
    }

    public func checkHealth() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    // MARK: access state and audit

    public func loadAccessState() async throws -> (version: Int64, document: Data)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT version, document FROM access_state WHERE id = 1").map {
                (version: $0["version"] as Int64, document: $0["document"] as Data)
            }
        }
    }

    public func accessStateVersion() async throws -> Int64? {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT version FROM access_state WHERE id = 1") }
    }

    public func storeAccessState(_ document: Data, expectedVersion: Int64, audit: AuditRecord?,
                                 changes: [AccessRecordChange]) async throws -> Bool {
        let origin = EventOrigin.current
        return try await pool.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT version FROM access_state WHERE id = 1") ?? 0
            guard current == expectedVersion else { return false }
            try db.execute(sql: """
                INSERT INTO access_state(id, version, document) VALUES (1, ?, ?)
                ON CONFLICT(id) DO UPDATE SET version = excluded.version, document = excluded.document
                """, arguments: [current + 1, document])
            if let audit { try Self.insertAudit(db, audit) }
            for change in changes {
                try Self.appendEvent(db, origin, EventAction.access, "", digest: change.digest, detail: change.detail)
            }
            return true
        }
    }

    private static func insertAudit(_ db: Database, _ r: AuditRecord) throws {
        try db.execute(sql: """
            INSERT INTO audit(at, actor, address, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [r.timestamp.timeIntervalSince1970, r.actor, r.address, r.action, r.target, r.outcome, r.detail])
    }

    public func appendAudit(_ records: [AuditRecord]) async throws {
        guard !records.isEmpty else { return }
        try await pool.write { db in
            for r in records { try Self.insertAudit(db, r) }
        }
    }

    public func audit(since: Date, limit: Int) async throws -> [AuditRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit WHERE at >= ? ORDER BY seq LIMIT ?",
                             arguments: [since.timeIntervalSince1970, limit]).map {
                AuditRecord(sequence: $0["seq"], timestamp: Date(timeIntervalSince1970: $0["at"]), actor: $0["actor"],
                            address: $0["address"], action: $0["action"], target: $0["target"], outcome: $0["outcome"],
                            detail: $0["detail"])
            }
        }
    }

    // MARK: webhooks

    private static func webhook(_ row: Row) -> WebhookRecord {
        let actions = (try? JSONDecoder().decode([String].self, from: Data((row["actions"] as String).utf8))) ?? []
        let headers = (try? JSONDecoder().decode([String: String].self, from: Data((row["headers"] as String).utf8))) ?? [:]
        return WebhookRecord(name: row["name"], uri: row["uri"], actions: actions, scope: row["scope"], headers: headers,
                             sealedSecret: row["sealed_secret"], enabled: row["enabled"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    static func json(_ value: some Encodable) -> String {
        String(decoding: (try? JSONEncoder().encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }

    public func webhooks() async throws -> [WebhookRecord] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM webhooks ORDER BY name").map(Self.webhook) }
    }

    public func webhook(named name: String) async throws -> WebhookRecord? {
        try await pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM webhooks WHERE name = ?", arguments: [name]).map(Self.webhook) }
    }

    public func createWebhook(_ r: WebhookRecord, consumer: String) async throws -> Bool {
        try await pool.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM webhooks WHERE name = ?", arguments: [r.name]) == nil else { return false }
            try db.execute(sql: """
                INSERT INTO webhooks(name, uri, actions, scope, headers, sealed_secret, enabled, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.name, r.uri, Self.json(r.actions), r.scope, Self.json(r.headers), r.sealedSecret, r.enabled,
                                 r.createdAt.timeIntervalSince1970])
            try Self.restartConsumer(db, consumer)
            // a leftover consumer's pause belonged to the webhook that had the name before
            try db.execute(sql: "UPDATE event_consumers SET paused = 0 WHERE name = ?", arguments: [consumer])
            return true
        }
    }

    /// Moves (or registers) `consumer` to the end of the log: forward only, failure cleared, pause kept.
    private static func restartConsumer(_ db: Database, _ consumer: String) throws {
        let end = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM events") ?? 0
        try db.execute(sql: """
            INSERT INTO event_consumers(name, cursor, updated_at) VALUES (?, ?, ?)
            ON CONFLICT(name) DO UPDATE SET cursor = MAX(cursor, excluded.cursor), attempts = 0, next_attempt_at = NULL,
                last_error = NULL, updated_at = excluded.updated_at
            """, arguments: [consumer, end, Date().timeIntervalSince1970])
    }

    public func updateWebhook(name: String, uri: String?, actions: [String]?, scope: String??, headers: [String: String]?,
                              enabled: Bool?, restartConsumerIfReenabled: String?) async throws -> Bool {
        try await pool.write { db in
            guard let wasEnabled = try Bool.fetchOne(db, sql: "SELECT enabled FROM webhooks WHERE name = ?", arguments: [name]) else {
                return false
            }
            if let uri { try db.execute(sql: "UPDATE webhooks SET uri = ? WHERE name = ?", arguments: [uri, name]) }
            if let actions { try db.execute(sql: "UPDATE webhooks SET actions = ? WHERE name = ?", arguments: [Self.json(actions), name]) }
            if let scope { try db.execute(sql: "UPDATE webhooks SET scope = ? WHERE name = ?", arguments: [scope, name]) }
            if let headers { try db.execute(sql: "UPDATE webhooks SET headers = ? WHERE name = ?", arguments: [Self.json(headers), name]) }
            if let enabled { try db.execute(sql: "UPDATE webhooks SET enabled = ? WHERE name = ?", arguments: [enabled, name]) }
            if enabled == true, !wasEnabled, let consumer = restartConsumerIfReenabled { try Self.restartConsumer(db, consumer) }
            return true
        }
    }

    public func deleteWebhook(name: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM webhooks WHERE name = ?", arguments: [name])
            let removed = db.changesCount > 0
            try db.execute(sql: "DELETE FROM webhook_deliveries WHERE webhook = ?", arguments: [name])
            return removed
        }
    }

    @discardableResult
    public func recordDelivery(_ d: WebhookDelivery, keep: Int) async throws -> Int64 {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO webhook_deliveries(webhook, event_seq, action, attempt, status_code, latency_ms, error, at, payload)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [d.webhook, d.eventSequence, d.action, d.attempt, d.statusCode, d.latencyMilliseconds, d.error,
                                 d.timestamp.timeIntervalSince1970, d.payload])
            let id = db.lastInsertedRowID
            try db.execute(sql: """
                DELETE FROM webhook_deliveries WHERE webhook = ? AND id <= (
                    SELECT id FROM webhook_deliveries WHERE webhook = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
                """, arguments: [d.webhook, d.webhook, max(1, keep)])
            return id
        }
    }

    public func deliveries(webhook: String, limit: Int) async throws -> [WebhookDelivery] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM webhook_deliveries WHERE webhook = ? ORDER BY id DESC LIMIT ?",
                             arguments: [webhook, limit]).map {
                WebhookDelivery(id: $0["id"], webhook: $0["webhook"], eventSequence: $0["event_seq"], action: $0["action"],
                                attempt: $0["attempt"], statusCode: $0["status_code"], latencyMilliseconds: $0["latency_ms"],
                                error: $0["error"], timestamp: Date(timeIntervalSince1970: $0["at"]), payload: $0["payload"])
            }
        }
    }

    public func latestEventSequence() async throws -> Int64 {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM events") ?? 0 }
    }

    // MARK: quarantine and settings

    public func applyQuarantine(_ u: QuarantineUpdate) async throws -> QuarantineUpdateResult {
        let origin = EventOrigin.current
        return try await pool.write { db -> QuarantineUpdateResult in
            guard let repo = try Self.repoID(db, u.repository),
                  let row = try Row.fetchOne(db, sql: "SELECT media_type, size FROM manifests WHERE repo_id = ? AND digest = ?",
                                             arguments: [repo, u.digest.string]) else { return .unknownManifest }
            // Every follower must still be where the plan saw it before anything is written.
            for f in u.followers {
                let current = try String.fetchOne(db, sql: "SELECT quarantine_state FROM manifests WHERE repo_id = ? AND digest = ?",
                                                  arguments: [repo, f.digest.string])
                if current != f.from.rawValue { return .conflict }
            }
            try db.execute(sql: "UPDATE manifests SET quarantine_state = ?, quarantine_reason = ? WHERE repo_id = ? AND digest = ?",
                           arguments: [u.state.rawValue, u.reason, repo, u.digest.string])
            for f in u.followers {
                try db.execute(sql: "UPDATE manifests SET quarantine_state = ?, quarantine_reason = ? WHERE repo_id = ? AND digest = ?",
                               arguments: [u.state.rawValue, f.reason, repo, f.digest.string])
            }
            try Self.appendEvent(db, origin, EventAction.quarantine, u.repository, digest: u.digest.string,
                                 mediaType: row["media_type"], size: row["size"],
                                 detail: u.state.rawValue + (u.reason.map { ": " + $0 } ?? ""))
            return .applied
        }
    }

    public func quarantineCounts() async throws -> [QuarantineState: Int] {
        try await pool.read { db in
            var counts: [QuarantineState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT quarantine_state, COUNT(*) AS n FROM manifests WHERE quarantine_state IS NOT NULL GROUP BY quarantine_state") {
                if let state = try Self.quarantineState(row["quarantine_state"]) { counts[state] = row["n"] }
            }
            return counts
        }
    }

    /// The condition and arguments selecting what `sweep` moves (manifests `m`), written per case
    /// (a plain comparison for a state, `IS NULL` for none), as the PostgreSQL store writes it.
    private static func sweepFilter(_ sweep: QuarantineSweep) -> (sql: String, arguments: StatementArguments) {
        let state = sweep.from == nil ? "m.quarantine_state IS NULL" : "m.quarantine_state = ?"
        return (sweep.includeReferrers ? state : state + " AND m.subject IS NULL",
                sweep.from.map { [$0.rawValue] } ?? [])
    }

    private static func sweepSelection(_ db: Database, _ sweep: QuarantineSweep, limit: Int) throws -> (manifests: [ManifestRef], count: Int) {
        let filter = sweepFilter(sweep)
        let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM manifests m WHERE \(filter.sql)", arguments: filter.arguments) ?? 0
        let refs = try Row.fetchAll(db, sql: """
            SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE \(filter.sql)
            ORDER BY r.name, m.digest LIMIT ?
            """, arguments: filter.arguments + [max(0, limit)]).map { ManifestRef(repository: $0[0], digest: $0[1]) }
        return (refs, count)
    }

    public func quarantineSweepSelection(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        try await pool.read { db in try Self.sweepSelection(db, sweep, limit: limit) }
    }

    public func applyQuarantineSweep(_ sweep: QuarantineSweep, limit: Int) async throws -> (manifests: [ManifestRef], count: Int) {
        let origin = EventOrigin.current
        return try await pool.write { db in
            let listed = try Self.sweepSelection(db, sweep, limit: limit)
            let filter = Self.sweepFilter(sweep)
            if let detail = sweep.eventDetail {
                for row in try Row.fetchAll(db, sql: """
                    SELECT r.name, m.digest, m.media_type, m.size FROM manifests m JOIN repositories r ON r.id = m.repo_id
                    WHERE \(filter.sql) ORDER BY r.name, m.digest
                    """, arguments: filter.arguments) {
                    try Self.appendEvent(db, origin, EventAction.quarantine, row[0], digest: row[1], mediaType: row[2], size: row[3],
                                         detail: detail)
                }
            }
            try db.execute(sql: "UPDATE manifests AS m SET quarantine_state = ?, quarantine_reason = ? WHERE \(filter.sql)",
                           arguments: [sweep.to?.rawValue, sweep.reason] + filter.arguments)
            return (listed.manifests, db.changesCount)
        }
    }

    public func blobOnlyInQuarantine(repository: String, digest: Digest) async throws -> Bool {
        try await pool.read { db in
            // NULL: nothing references it; 1: some referencing manifest is pullable; 0: none is.
            try Int.fetchOne(db, sql: """
                SELECT MAX(m.quarantine_state IS NULL OR m.quarantine_state = 'Passed')
                FROM repositories r
                JOIN manifest_refs mr ON mr.repo_id = r.id AND mr.child = ? AND mr.kind = 0
                JOIN manifests m ON m.repo_id = mr.repo_id AND m.digest = mr.parent
                WHERE r.name = ?
                """, arguments: [digest.string, repository]) == 0
        }
    }

    public func settingDocument(_ name: String) async throws -> Data? {
        try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [name]).map { Data($0.utf8) }
        }
    }

    public func setSettingDocument(_ name: String, _ document: Data) async throws {
        let origin = EventOrigin.current
        let value = String(decoding: document, as: UTF8.self)
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [name, value])
            try Self.appendEvent(db, origin, EventAction.setting, "", digest: Digest.compute(Array(document)).string, detail: name)
        }
    }
}

// MARK: event consumers

extension SQLiteMetadataStore {
    static func consumer(_ row: Row) -> EventConsumerRecord {
        EventConsumerRecord(name: row["name"], cursor: row["cursor"], paused: (row["paused"] as Int64) != 0,
                            attempts: row["attempts"],
                            nextAttemptAt: (row["next_attempt_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                            lastError: row["last_error"], updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }

    public func eventConsumers() async throws -> [EventConsumerRecord] {
        try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM event_consumers ORDER BY name").map(Self.consumer) }
    }

    public func eventConsumer(named name: String) async throws -> EventConsumerRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM event_consumers WHERE name = ?", arguments: [name]).map(Self.consumer)
        }
    }

    public func registerEventConsumer(name: String, start: EventConsumerStart) async throws -> EventConsumerRecord {
        try await pool.write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM event_consumers WHERE name = ?", arguments: [name]) {
                return Self.consumer(row)
            }
            let cursor: Int64 = switch start {
            case .beginning: 0
            case .end: try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM events") ?? 0
            case .after(let sequence): sequence
            }
            let now = Date()
            try db.execute(sql: "INSERT INTO event_consumers(name, cursor, updated_at) VALUES (?, ?, ?)",
                           arguments: [name, cursor, now.timeIntervalSince1970])
            return EventConsumerRecord(name: name, cursor: cursor, updatedAt: Date(timeIntervalSince1970: now.timeIntervalSince1970))
        }
    }

    public func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE event_consumers SET cursor = ?, attempts = 0, next_attempt_at = NULL, last_error = NULL, updated_at = ?
                WHERE name = ? AND cursor = ?
                """, arguments: [cursor, Date().timeIntervalSince1970, name, expected])
            return db.changesCount == 1
        }
    }

    public func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE event_consumers SET attempts = ?, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE name = ?
                """, arguments: [attempts, nextAttemptAt.timeIntervalSince1970, String(error.prefix(1000)),
                                 Date().timeIntervalSince1970, name])
        }
    }

    public func setEventConsumerPaused(name: String, paused: Bool) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "UPDATE event_consumers SET paused = ?, updated_at = ? WHERE name = ?",
                           arguments: [paused ? 1 : 0, Date().timeIntervalSince1970, name])
            return db.changesCount == 1
        }
    }

    public func deleteEventConsumer(name: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM event_consumers WHERE name = ?", arguments: [name])
            return db.changesCount == 1
        }
    }
}

// MARK: usage over time

extension SQLiteMetadataStore {
    public func dailyPushTotals(since: Date, repository: String?) async throws -> [DailyPushTotal] {
        try await pool.read { db in
            var sql = """
                SELECT CAST(at / 86400 AS INTEGER) AS day, COUNT(*) AS pushes, COALESCE(SUM(size), 0) AS bytes
                FROM events WHERE at >= ? AND action = ?
                """
            var arguments: StatementArguments = [since.timeIntervalSince1970, EventAction.manifestPush.rawValue]
            if let repository {
                sql += " AND repository = ?"
                arguments += [repository]
            }
            sql += " GROUP BY day ORDER BY day"
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                DailyPushTotal(day: Date(timeIntervalSince1970: Double((row["day"] as Int64) * 86_400)), pushes: row["pushes"],
                               bytes: row["bytes"])
            }
        }
    }
}
