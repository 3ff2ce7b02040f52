import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The PostgreSQL schema, as numbered migrations. Each applies in one transaction with the row that
/// records it in `berth_schema_migrations`, under a transaction-scoped advisory lock, so several
/// nodes starting at once apply each migration exactly once. A database whose schema is newer than
/// this build knows is refused, never written to.
///
/// Texts compare byte-wise (`COLLATE "C"`, as SQLite does), so listings page in the same order
/// whatever the database's locale. Times are seconds since 1970 (`double precision`), as the SQLite
/// backend keeps them, so both backends answer the same.
enum PostgresMigrations {
    /// Migration `index + 1` is `all[index]`: statements run in order. Append only.
    static let all: [[String]] = [v1, v2, v3, v4, v5, vGeo, v6, v6scanwire, v6scandb, vConsole2, v6cache, v7findings, v7geo2, v6triggit, vImportJobs, v7pulltimes, vRunLogs, vReplConflicts, vSettingRegisters, vDataEndpoint, vAccessRegisters, vEventsByDigest]

    static var latest: Int { all.count }

    /// Key of the advisory lock the migrations are applied under (with the schema's hash).
    static let lockKey: Int32 = 0x6265_7274   // "bert"

    private static let text = "text COLLATE \"C\""

    /// Leases on cluster-once background work (PostgresMetadataStore+Leases.swift).
    static let v3: [String] = [
        """
        CREATE TABLE leases (
            name \(text) PRIMARY KEY,
            holder \(text) NOT NULL,
            token bigint NOT NULL,
            expires_at double precision NOT NULL)
        """,
    ]

    /// State every node shares (PostgresMetadataStore+SharedState.swift): failed logins (keys as
    /// SHA-256 digests), and garbage collection's pins, deletion markers and link touches.
    static let v4: [String] = [
        """
        CREATE TABLE login_failures (
            key \(text) NOT NULL,
            at double precision NOT NULL)
        """,
        "CREATE INDEX login_failures_at ON login_failures(at)",
        "CREATE INDEX login_failures_key ON login_failures(key, at)",
        """
        CREATE TABLE blob_pins (
            digest \(text) NOT NULL,
            holder \(text) NOT NULL,
            expires_at double precision NOT NULL,
            PRIMARY KEY (digest, holder))
        """,
        """
        CREATE TABLE blob_deletions (
            digest \(text) PRIMARY KEY,
            deleter \(text) NOT NULL,
            expires_at double precision NOT NULL)
        """,
        """
        CREATE TABLE link_touches (
            repository \(text) NOT NULL,
            digest \(text) NOT NULL,
            touched_at double precision NOT NULL,
            PRIMARY KEY (repository, digest))
        """,
        "CREATE INDEX link_touches_at ON link_touches(touched_at)",
    ]

    /// Upload state of blob stores that keep it here (`UploadSessionStore`).
    static let v5: [String] = [
        """
        CREATE TABLE upload_sessions (
            id \(text) PRIMARY KEY,
            owner \(text) NOT NULL,
            version bigint NOT NULL,
            state bytea NOT NULL,
            updated_at double precision NOT NULL)
        """,
        "CREATE INDEX upload_sessions_by_update ON upload_sessions(updated_at)",
    ]

    /// Build tasks and their runs (`TaskStore`): JSON documents beside the columns selected on;
    /// run ids come from one counter, so they are never reused.
    static let v6: [String] = [
        "CREATE TABLE tasks (name \(text) PRIMARY KEY, record text NOT NULL)",
        """
        CREATE TABLE task_runs (
            number bigint PRIMARY KEY,
            id \(text) NOT NULL UNIQUE,
            task \(text) NOT NULL,
            status \(text) NOT NULL,
            record text NOT NULL)
        """,
        "CREATE INDEX task_runs_by_task ON task_runs(task, number)",
        "CREATE INDEX task_runs_by_status ON task_runs(status, number)",
        "CREATE TABLE task_run_counter (id integer PRIMARY KEY CHECK (id = 1), last bigint NOT NULL)",
        "INSERT INTO task_run_counter(id, last) VALUES (1, 0)",
    ]

    /// Scanning's derived data (`ScanStore`): layer indexes, inventories, packages per inventory.
    static let v6scanwire: [String] = [
        """
        CREATE TABLE scan_layer_indexes (
            digest \(text) PRIMARY KEY,
            format integer NOT NULL,
            cataloger_version \(text) NOT NULL,
            complete boolean NOT NULL,
            document bytea NOT NULL,
            indexed_at double precision NOT NULL)
        """,
        """
        CREATE TABLE scan_inventories (
            manifest \(text) PRIMARY KEY,
            status \(text) NOT NULL,
            layers \(text) NOT NULL,
            cataloger_version \(text) NOT NULL,
            document bytea NOT NULL,
            detail \(text),
            created_at double precision NOT NULL)
        """,
        """
        CREATE TABLE scan_inventory_packages (
            ecosystem \(text) NOT NULL,
            name \(text) NOT NULL,
            manifest \(text) NOT NULL,
            PRIMARY KEY (ecosystem, name, manifest))
        """,
        "CREATE INDEX scan_inventory_packages_by_manifest ON scan_inventory_packages(manifest)",
    ]

    /// Each event's origin region (NULL: this region) and hybrid-logical-clock stamp; the clock
    /// lives on the event counter's row, whose lock every appending transaction holds.
    static let v7geo2: [String] = [
        "ALTER TABLE events ADD COLUMN origin_region \(text)",
        "ALTER TABLE events ADD COLUMN hlc_ms bigint NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN hlc_logical bigint NOT NULL DEFAULT 0",
        "ALTER TABLE event_counter ADD COLUMN hlc_ms bigint NOT NULL DEFAULT 0",
        "ALTER TABLE event_counter ADD COLUMN hlc_logical bigint NOT NULL DEFAULT 0",
    ]

    /// Import jobs, shared by every node (`ImportJobStore`; the job's progress is the feature's JSON).
    static let vImportJobs: [String] = [
        """
        CREATE TABLE import_jobs (
            id \(text) PRIMARY KEY,
            owner \(text) NOT NULL,
            image \(text) NOT NULL,
            state \(text) NOT NULL,
            document bytea NOT NULL,
            node \(text) NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL)
        """,
        "CREATE INDEX import_jobs_by_update ON import_jobs(updated_at)",
    ]

    /// Git-commit triggers (`TaskCommitStore`): the commit last seen per task.
    static let v6triggit: [String] = [
        """
        CREATE TABLE task_commits (
            task \(text) PRIMARY KEY REFERENCES tasks(name) ON DELETE CASCADE,
            branch \(text) NOT NULL,
            commit_id \(text) NOT NULL,
            seen_at double precision NOT NULL)
        """,
    ]

    /// The advisory database (`AdvisoryStore`).
    static let v6scandb: [String] = [
        """
        CREATE TABLE advisory_versions (
            version bigint PRIMARY KEY,
            source \(text) NOT NULL,
            created_at double precision NOT NULL,
            added bigint NOT NULL,
            changed bigint NOT NULL,
            removed bigint NOT NULL)
        """,
        """
        CREATE TABLE advisory_sources (
            source \(text) PRIMARY KEY,
            format \(text) NOT NULL,
            version bigint NOT NULL,
            imported_at double precision,
            checked_at double precision,
            etag \(text),
            last_modified \(text),
            last_error \(text))
        """,
        """
        CREATE TABLE advisories (
            source \(text) NOT NULL,
            id \(text) NOT NULL,
            hash \(text) NOT NULL,
            document bytea NOT NULL,
            version bigint NOT NULL,
            PRIMARY KEY (source, id))
        """,
        """
        CREATE TABLE advisory_packages (
            ecosystem \(text) NOT NULL,
            name \(text) NOT NULL,
            source \(text) NOT NULL,
            id \(text) NOT NULL,
            PRIMARY KEY (ecosystem, name, source, id))
        """,
        "CREATE INDEX advisory_packages_by_record ON advisory_packages(source, id)",
        """
        CREATE TABLE advisory_changes (
            version bigint NOT NULL,
            ecosystem \(text) NOT NULL,
            name \(text) NOT NULL,
            PRIMARY KEY (version, ecosystem, name))
        """,
    ]

    /// Findings per manifest (`FindingStore`, PostgresMetadataStore+Findings.swift).
    static let v7findings: [String] = [
        """
        CREATE TABLE scan_finding_sets (
            manifest \(text) PRIMARY KEY,
            advisory_version bigint NOT NULL,
            matched_at double precision NOT NULL)
        """,
        """
        CREATE TABLE scan_findings (
            manifest \(text) NOT NULL,
            advisory_id \(text) NOT NULL,
            ecosystem \(text) NOT NULL,
            package \(text) NOT NULL,
            installed_version \(text) NOT NULL,
            source_package \(text),
            fixed_version \(text),
            severity \(text) NOT NULL,
            score double precision,
            fix_state \(text) NOT NULL,
            aliases \(text) NOT NULL,
            PRIMARY KEY (manifest, advisory_id, ecosystem, package, installed_version))
        """,
    ]

    static let v1: [String] = [
        """
        CREATE TABLE repositories (
            id bigserial PRIMARY KEY,
            name \(text) NOT NULL UNIQUE,
            created_at double precision NOT NULL)
        """,
        // One row per stored digest across all repositories (deduplicated). Small blobs and
        // manifests keep their bytes inline; larger blobs live in the blob store.
        """
        CREATE TABLE blobs (
            digest \(text) PRIMARY KEY,
            size bigint NOT NULL,
            inline bytea,
            created_at double precision NOT NULL)
        """,
        """
        CREATE TABLE blob_links (
            repo_id bigint NOT NULL REFERENCES repositories(id),
            digest \(text) NOT NULL,
            created_at double precision NOT NULL,
            PRIMARY KEY (repo_id, digest))
        """,
        "CREATE INDEX blob_links_digest ON blob_links(digest)",
        """
        CREATE TABLE manifests (
            repo_id bigint NOT NULL REFERENCES repositories(id),
            digest \(text) NOT NULL,
            media_type \(text) NOT NULL,
            size bigint NOT NULL,
            artifact_type \(text),
            subject \(text),
            annotations \(text),
            created_at double precision NOT NULL,
            quarantine_state \(text),
            quarantine_reason \(text),
            unlive_since double precision,
            former_tags \(text),
            PRIMARY KEY (repo_id, digest))
        """,
        "CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL",
        "CREATE INDEX manifests_unlive ON manifests(unlive_since) WHERE unlive_since IS NOT NULL",
        "CREATE INDEX manifests_digest ON manifests(digest)",
        "CREATE INDEX manifests_quarantine ON manifests(quarantine_state) WHERE quarantine_state IS NOT NULL",
        // What a manifest references: kind 0 = blob (config/layer), 1 = child manifest.
        """
        CREATE TABLE manifest_refs (
            repo_id bigint NOT NULL,
            parent \(text) NOT NULL,
            child \(text) NOT NULL,
            kind integer NOT NULL,
            PRIMARY KEY (repo_id, parent, kind, child))
        """,
        "CREATE INDEX manifest_refs_child ON manifest_refs(repo_id, child)",
        "CREATE INDEX manifest_refs_by_child ON manifest_refs(child)",
        """
        CREATE TABLE tags (
            repo_id bigint NOT NULL REFERENCES repositories(id),
            name \(text) NOT NULL,
            digest \(text) NOT NULL,
            updated_at double precision NOT NULL,
            PRIMARY KEY (repo_id, name))
        """,
        "CREATE INDEX tags_digest ON tags(repo_id, digest)",
        // The event log. Sequence numbers come from the counter row, whose lock every appending
        // transaction holds until it commits: gap-free in commit order (a sequence would not be).
        "CREATE TABLE event_counter (id integer PRIMARY KEY CHECK (id = 1), last bigint NOT NULL)",
        "INSERT INTO event_counter(id, last) VALUES (1, 0)",
        """
        CREATE TABLE events (
            seq bigint PRIMARY KEY,
            at double precision NOT NULL,
            action \(text) NOT NULL,
            repository \(text) NOT NULL,
            digest \(text),
            tag \(text),
            media_type \(text),
            size bigint,
            detail \(text),
            actor \(text),
            address \(text),
            request_id \(text),
            request_host \(text),
            request_method \(text),
            user_agent \(text))
        """,
        "CREATE INDEX events_at ON events(at)",
        """
        CREATE TABLE event_consumers (
            name \(text) PRIMARY KEY,
            cursor bigint NOT NULL,
            paused boolean NOT NULL DEFAULT false,
            attempts bigint NOT NULL DEFAULT 0,
            next_attempt_at double precision,
            last_error \(text),
            updated_at double precision NOT NULL)
        """,
        """
        CREATE TABLE access_state (
            id integer PRIMARY KEY CHECK (id = 1),
            version bigint NOT NULL,
            document bytea NOT NULL)
        """,
        """
        CREATE TABLE audit (
            seq bigserial PRIMARY KEY,
            at double precision NOT NULL,
            actor \(text) NOT NULL,
            address \(text) NOT NULL,
            action \(text) NOT NULL,
            target \(text) NOT NULL,
            outcome \(text) NOT NULL,
            detail \(text))
        """,
        "CREATE INDEX audit_at ON audit(at)",
        """
        CREATE TABLE webhooks (
            name \(text) PRIMARY KEY,
            uri \(text) NOT NULL,
            actions \(text) NOT NULL,
            scope \(text),
            headers \(text) NOT NULL,
            sealed_secret bytea NOT NULL,
            enabled boolean NOT NULL,
            created_at double precision NOT NULL)
        """,
        """
        CREATE TABLE webhook_deliveries (
            id bigserial PRIMARY KEY,
            webhook \(text) NOT NULL,
            event_seq bigint,
            action \(text) NOT NULL,
            attempt bigint NOT NULL,
            status_code bigint,
            latency_ms double precision NOT NULL,
            error \(text),
            at double precision NOT NULL,
            payload \(text) NOT NULL)
        """,
        "CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries(webhook, id)",
        "CREATE TABLE settings (key \(text) PRIMARY KEY, value \(text) NOT NULL)",
        // The recycle bin: soft-deleted manifests with their tags at deletion, and what they
        // referenced (garbage collection keeps those blobs).
        """
        CREATE TABLE deleted_manifests (
            id bigserial PRIMARY KEY,
            repo_id bigint NOT NULL,
            digest \(text) NOT NULL,
            media_type \(text) NOT NULL,
            size bigint NOT NULL,
            artifact_type \(text),
            subject \(text),
            annotations \(text),
            created_at double precision NOT NULL,
            quarantine_state \(text),
            quarantine_reason \(text),
            deleted_at double precision NOT NULL,
            expires_at double precision NOT NULL,
            tags \(text) NOT NULL,
            reason \(text) NOT NULL)
        """,
        "CREATE INDEX deleted_manifests_repo ON deleted_manifests(repo_id, digest)",
        "CREATE INDEX deleted_manifests_digest ON deleted_manifests(digest)",
        "CREATE INDEX deleted_manifests_expiry ON deleted_manifests(expires_at)",
        """
        CREATE TABLE deleted_refs (
            deleted_id bigint NOT NULL,
            repo_id bigint NOT NULL,
            child \(text) NOT NULL,
            kind integer NOT NULL,
            PRIMARY KEY (deleted_id, kind, child))
        """,
        "CREATE INDEX deleted_refs_child ON deleted_refs(child)",
        "CREATE INDEX deleted_refs_repo_child ON deleted_refs(repo_id, child)",
        // Locks (attributes): kind 0 = repository (key ''), 1 = tag, 2 = manifest digest.
        """
        CREATE TABLE locks (
            repository \(text) NOT NULL,
            kind integer NOT NULL,
            key \(text) NOT NULL,
            read_enabled boolean NOT NULL,
            write_enabled boolean NOT NULL,
            delete_enabled boolean NOT NULL,
            list_enabled boolean NOT NULL,
            PRIMARY KEY (repository, kind, key))
        """,
        """
        CREATE TABLE lifecycle_runs (
            id bigserial PRIMARY KEY,
            kind \(text) NOT NULL,
            name \(text),
            dry_run boolean NOT NULL,
            started_at double precision NOT NULL,
            finished_at double precision NOT NULL,
            report \(text) NOT NULL)
        """,
        "CREATE INDEX lifecycle_runs_kind ON lifecycle_runs(kind, id)",
        """
        CREATE TABLE purge_schedules (
            name \(text) PRIMARY KEY,
            cron \(text) NOT NULL,
            filters \(text) NOT NULL,
            ago \(text) NOT NULL,
            untagged boolean NOT NULL,
            keep bigint NOT NULL,
            created_at double precision NOT NULL,
            last_run_at double precision)
        """,
    ]

    /// Replicas of issue 13 (PostgresMetadataStore+Replication.swift): the credential sealed by the
    /// caller; the progress columns are what the replication consumer last saw.
    static let vGeo: [String] = [
        """
        CREATE TABLE replicas (
            location \(text) PRIMARY KEY,
            endpoint \(text) NOT NULL,
            sealed_credential bytea,
            region_endpoint_enabled boolean NOT NULL,
            created_at double precision NOT NULL,
            peer_sequence bigint,
            peer_sequence_at double precision,
            oldest_pending_at double precision,
            bytes_pending bigint NOT NULL DEFAULT 0,
            last_error text,
            last_error_at double precision)
        """,
    ]

    /// A replica's data endpoint (issue 13 item 4): NULL is its endpoint.
    static let vDataEndpoint: [String] = [
        "ALTER TABLE replicas ADD COLUMN data_endpoint \(text)",
    ]

    /// Key material shared by every node (sealed by the caller; `KeyMaterialStore`).
    static let v2: [String] = [
        """
        CREATE TABLE key_material (
            name \(text) PRIMARY KEY,
            version bigint NOT NULL,
            blob bytea NOT NULL)
        """,
    ]

    /// Brings the schema of `configuration` up to `latest` (applying `migrations`, for the tests),
    /// over one connection of its own. Returns the migrations it applied.
    @discardableResult
    static func migrate(_ configuration: PostgresConfiguration, migrations: [[String]] = all,
                        logger: Logger) async throws -> [Int] {
        let applied = try await withConnection(configuration, logger: logger) { tx in try await migrate(tx, migrations: migrations) }
        if !applied.isEmpty {
            logger.info("metadata schema migrated", metadata: ["applied": "\(applied)", "store": "\(configuration)"])
        }
        return applied
    }

    /// Refuses, changing nothing, a database whose schema is not exactly this build's: one that
    /// holds no Berth schema (a mistyped database name), or one at another version (a command of
    /// another version than the nodes'). For commands that must not migrate (`berth recover owner`).
    static func requireCurrent(_ configuration: PostgresConfiguration, migrations: [[String]] = all, logger: Logger) async throws {
        let version = try await withConnection(configuration, logger: logger) { tx -> Int? in
            guard try await tx.value("SELECT to_regclass('berth_schema_migrations') IS NOT NULL", Bool.self) == true else { return nil }
            return try await tx.value("SELECT COALESCE(MAX(version), 0) FROM berth_schema_migrations", Int.self) ?? 0
        }
        guard let version, version > 0 else {
            throw PostgresStoreError("the database \(configuration) holds no Berth registry (no schema): is it the nodes' database?")
        }
        guard version == migrations.count else {
            throw PostgresStoreError("""
                the metadata database has schema version \(version) and this build of Berth \(migrations.count): \
                run this command with the nodes' version of Berth
                """)
        }
    }

    /// One connection of its own for `body`, closed after it.
    private static func withConnection<T: Sendable>(_ configuration: PostgresConfiguration, logger: Logger,
                                                    _ body: (Tx) async throws -> T) async throws -> T {
        try await PostgresStoreError.mapping {
            var config = PostgresConnection.Configuration(host: configuration.host, port: configuration.port,
                                                          username: configuration.username, password: configuration.password,
                                                          database: configuration.database, tls: try connectionTLS(configuration))
            config.options.additionalStartupParameters = PostgresMetadataStore.startupParameters(configuration)
            config.options.connectTimeout = .seconds(10)
            let conn = try await PostgresConnection.connect(configuration: config, id: 0, logger: logger)
            do {
                let value = try await body(Tx(conn: conn, logger: logger))
                try? await conn.close()
                return value
            } catch {
                try? await conn.close()
                throw error
            }
        }
    }

    private static func connectionTLS(_ c: PostgresConfiguration) throws -> PostgresConnection.Configuration.TLS {
        switch c.tls {
        case .disable: .disable
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
    }

    private static func migrate(_ tx: Tx, migrations: [[String]]) async throws -> [Int] {
        try await tx.exec("BEGIN")
        do {
            // Several nodes may start at once: one applies, the others wait here and then find
            // nothing left to do.
            try await tx.exec("SELECT pg_advisory_xact_lock(\(lockKey), hashtext(COALESCE(current_schema(), '')))")
            try await tx.exec("""
                CREATE TABLE IF NOT EXISTS berth_schema_migrations (
                    version integer PRIMARY KEY, applied_at double precision NOT NULL)
                """)
            let current = try await tx.value("SELECT COALESCE(MAX(version), 0) FROM berth_schema_migrations", Int.self) ?? 0
            guard current <= migrations.count else {
                throw PostgresStoreError("""
                    the metadata database has schema version \(current), newer than this build of Berth knows \
                    (\(migrations.count)): upgrade Berth; it does not write to a schema it does not know
                    """)
            }
            var applied: [Int] = []
            for version in (current + 1)..<(migrations.count + 1) {
                for statement in migrations[version - 1] {
                    try await tx.exec(PostgresQuery(unsafeSQL: statement))
                }
                try await tx.exec("INSERT INTO berth_schema_migrations(version, applied_at) VALUES (\(version), \(Date().timeIntervalSince1970))")
                applied.append(version)
            }
            try await tx.exec("COMMIT")
            return applied
        } catch {
            try? await tx.exec("ROLLBACK")
            throw error
        }
    }

    /// The web console's sessions (PostgresMetadataStore+ConsoleSessions.swift).
    static let vConsole2: [String] = [
        """
        CREATE TABLE console_sessions (
            id_hash \(text) PRIMARY KEY,
            subject \(text) NOT NULL,
            subject_id \(text),
            generation bigint NOT NULL,
            display_name \(text) NOT NULL,
            csrf \(text) NOT NULL,
            created_at double precision NOT NULL,
            expires_at double precision NOT NULL)
        """,
        "CREATE INDEX console_sessions_by_expiry ON console_sessions(expires_at)",
    ]

    /// Pull-through cache rules and their credential sets (`CacheRuleStore`; the password sealed by the caller).
    static let v6cache: [String] = [
        """
        CREATE TABLE credential_sets (
            name \(text) PRIMARY KEY,
            login_server \(text) NOT NULL,
            username \(text) NOT NULL,
            sealed_password bytea NOT NULL,
            created_at double precision NOT NULL)
        """,
        """
        CREATE TABLE cache_rules (
            name \(text) PRIMARY KEY,
            source_repository \(text) NOT NULL,
            target_repository \(text) NOT NULL,
            credential_set \(text) REFERENCES credential_sets(name),
            plain_http boolean NOT NULL,
            tag_freshness_seconds bigint NOT NULL,
            created_by \(text) NOT NULL,
            created_at double precision NOT NULL)
        """,
    ]

    /// A task run's log in chunks, so every node serves it; deleted with its run.
    static let vRunLogs: [String] = [
        """
        CREATE TABLE task_run_logs (
            run_id \(text) NOT NULL REFERENCES task_runs(id) ON DELETE CASCADE,
            start bigint NOT NULL,
            "end" bigint NOT NULL,
            bytes bytea NOT NULL,
            PRIMARY KEY (run_id, start))
        """,
    ]

    /// Issue 13's conflict log and register lookups (PostgresMetadataStore+Replication.swift): a
    /// tag's or lock's writes are found in the event log by repository and tag.
    static let vReplConflicts: [String] = [
        "CREATE INDEX events_by_repository_tag ON events(repository, tag, seq)",
        """
        CREATE TABLE replication_conflicts (
            id bigserial PRIMARY KEY,
            location \(text) NOT NULL,
            kind \(text) NOT NULL,
            repository \(text) NOT NULL,
            key \(text) NOT NULL,
            loser_value \(text) NOT NULL,
            loser_region \(text) NOT NULL,
            loser_ms bigint NOT NULL,
            loser_logical bigint NOT NULL,
            winner_value text,
            winner_region text,
            winner_ms bigint,
            winner_logical bigint,
            recorded_at double precision NOT NULL,
            UNIQUE (kind, repository, key, loser_region, loser_ms, loser_logical, loser_value))
        """,
        "CREATE INDEX replication_conflicts_by_location ON replication_conflicts(location, id)",
    ]

    /// When each manifest and tag was last pulled (PostgresMetadataStore+PullTimes.swift); deleting
    /// the manifest or tag deletes its row.
    static let v7pulltimes: [String] = [
        """
        CREATE TABLE manifest_pulls (
            repo_id bigint NOT NULL,
            digest \(text) NOT NULL,
            pulled_at double precision NOT NULL,
            PRIMARY KEY (repo_id, digest),
            FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE)
        """,
        "CREATE INDEX manifest_pulls_by_digest ON manifest_pulls(digest, pulled_at)",
        """
        CREATE TABLE tag_pulls (
            repo_id bigint NOT NULL,
            name \(text) NOT NULL,
            pulled_at double precision NOT NULL,
            PRIMARY KEY (repo_id, name),
            FOREIGN KEY (repo_id, name) REFERENCES tags(repo_id, name) ON DELETE CASCADE)
        """,
        // at most 20 console sessions per identity: the oldest are found by subject
        "CREATE INDEX console_sessions_by_subject ON console_sessions(subject, created_at)",
    ]

    /// A setting's writes (its `setting` events) found by name for replication's register merge.
    static let vSettingRegisters: [String] = [
        "CREATE INDEX events_setting_writes ON events(detail, seq) WHERE action = 'setting'",
    ]

    /// An access record's writes (its `access` events, detail `<kind>:<name>`) for replication's register merge.
    static let vAccessRegisters: [String] = [
        "CREATE INDEX events_access_writes ON events(detail, seq) WHERE action = 'access'",
    ]

    /// A manifest's presence as a register (replication): its pushes, restores and deletions by
    /// (repository, digest), read for every replicated push, tag move and referrer.
    static let vEventsByDigest: [String] = [
        "CREATE INDEX events_by_repository_digest ON events(repository, digest, seq)",
    ]
}
