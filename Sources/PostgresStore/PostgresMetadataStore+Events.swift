import Foundation
import NIOCore
import OCIModel
import PostgresNIO
import RegistryStore

// MARK: event log

extension PostgresMetadataStore {
    static let eventColumns = """
        seq, at, action, repository, digest, tag, media_type, size, detail, actor, address, request_id, request_host, request_method,
        user_agent, origin_region, hlc_ms, hlc_logical
        """

    /// An event whose action this build does not know fails the read (`UnknownStoredValue`): skipping
    /// it would let a consumer's cursor pass an event it never saw.
    static func event(_ row: Row) throws -> Event {
        let raw = try row.decode("action", String.self)
        guard let action = EventAction(rawValue: raw) else { throw UnknownStoredValue(field: "event action", value: raw) }
        return Event(sequence: try row.decode("seq"), timestamp: try row.date("at"), action: action,
                     repository: try row.decode("repository"), digest: try row.decode("digest"), tag: try row.decode("tag"),
                     mediaType: try row.decode("media_type"), size: try row.decode("size"), detail: try row.decode("detail"),
                     actor: try row.decode("actor"), address: try row.decode("address"), requestID: try row.decode("request_id"),
                     requestHost: try row.decode("request_host"), requestMethod: try row.decode("request_method"),
                     userAgent: try row.decode("user_agent"),
                     stamp: EventStamp(region: try row.decode("origin_region"), milliseconds: try row.decode("hlc_ms"),
                                       logical: try row.decode("hlc_logical")))
    }

    public func events(after: Int64, limit: Int) async throws -> [Event] {
        try await single { tx in
            try await tx.rows("SELECT \(unescaped: Self.eventColumns) FROM events WHERE seq > \(after) ORDER BY seq LIMIT \(limit)")
                .map(Self.event)
        }
    }

    public func events(since: Date, limit: Int) async throws -> [Event] {
        try await single { tx in
            try await tx.rows("""
                SELECT \(unescaped: Self.eventColumns) FROM events WHERE at >= \(since.timeIntervalSince1970) ORDER BY seq LIMIT \(limit)
                """).map(Self.event)
        }
    }

    public func latestEventSequence() async throws -> Int64 {
        try await single { tx in try await tx.value("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", Int64.self) ?? 0 }
    }

    // MARK: event consumers

    private static let consumerColumns = "name, cursor, paused, attempts, next_attempt_at, last_error, updated_at"

    private static func consumer(_ row: Row) throws -> EventConsumerRecord {
        EventConsumerRecord(name: try row.decode("name"), cursor: try row.decode("cursor"), paused: try row.decode("paused"),
                            attempts: try row.decode("attempts"), nextAttemptAt: try row.optionalDate("next_attempt_at"),
                            lastError: try row.decode("last_error"), updatedAt: try row.date("updated_at"))
    }

    public func eventConsumers() async throws -> [EventConsumerRecord] {
        try await single { tx in
            try await tx.rows("SELECT \(unescaped: Self.consumerColumns) FROM event_consumers ORDER BY name").map(Self.consumer)
        }
    }

    public func eventConsumer(named name: String) async throws -> EventConsumerRecord? {
        try await single { tx in
            try await tx.one("SELECT \(unescaped: Self.consumerColumns) FROM event_consumers WHERE name = \(name)").map(Self.consumer)
        }
    }

    public func registerEventConsumer(name: String, start: EventConsumerStart) async throws -> EventConsumerRecord {
        try await write { tx in
            if let row = try await tx.one("SELECT \(unescaped: Self.consumerColumns) FROM event_consumers WHERE name = \(name)") {
                return try Self.consumer(row)
            }
            let cursor: Int64 = switch start {
            case .beginning: 0
            case .end: try await tx.value("SELECT COALESCE(MAX(seq), 0)::bigint FROM events", Int64.self) ?? 0
            case .after(let sequence): sequence
            }
            let now = Self.now()
            try await tx.exec("INSERT INTO event_consumers(name, cursor, updated_at) VALUES (\(name), \(cursor), \(now))")
            return EventConsumerRecord(name: name, cursor: cursor, updatedAt: Date(timeIntervalSince1970: now))
        }
    }

    public func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64) async throws -> Bool {
        // One statement: its WHERE is checked again on the locked row, so of two workers moving the
        // same cursor from the same place, one wins.
        try await single { tx in
            try await tx.count("""
                UPDATE event_consumers SET cursor = \(cursor), attempts = 0, next_attempt_at = NULL, last_error = NULL, updated_at = \(Self.now())
                WHERE name = \(name) AND cursor = \(expected) RETURNING 1
                """) == 1
        }
    }

    public func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date) async throws {
        try await single { tx in
            try await tx.exec("""
                UPDATE event_consumers SET attempts = \(attempts), next_attempt_at = \(nextAttemptAt.timeIntervalSince1970),
                    last_error = \(String(error.prefix(1000))), updated_at = \(Self.now())
                WHERE name = \(name)
                """)
        }
    }

    public func setEventConsumerPaused(name: String, paused: Bool) async throws -> Bool {
        try await single { tx in
            try await tx.count("UPDATE event_consumers SET paused = \(paused), updated_at = \(Self.now()) WHERE name = \(name) RETURNING 1") == 1
        }
    }

    public func deleteEventConsumer(name: String) async throws -> Bool {
        try await single { tx in try await tx.count("DELETE FROM event_consumers WHERE name = \(name) RETURNING 1") == 1 }
    }
}

// MARK: access state and audit

extension PostgresMetadataStore {
    public func loadAccessState() async throws -> (version: Int64, document: Data)? {
        try await single { tx in
            guard let row = try await tx.one("SELECT version, document FROM access_state WHERE id = 1") else { return nil }
            return (version: try row.decode(0, Int64.self), document: try row.decode(1, Data.self))
        }
    }

    public func accessStateVersion() async throws -> Int64? {
        try await single { tx in try await tx.value("SELECT version FROM access_state WHERE id = 1", Int64.self) }
    }

    public func storeAccessState(_ document: Data, expectedVersion: Int64, audit: AuditRecord?,
                                 changes: [AccessRecordChange]) async throws -> Bool {
        let origin = EventOrigin.current
        // Appending events takes the event counter's lock (the log's order); a write without
        // changes does not need it.
        return try await write(serialized: !changes.isEmpty) { tx in
            // The compare-and-swap is one statement on the row (an insert for the first version):
            // of two writers from the same version, one changes a row and the other none.
            let stored: Int
            if expectedVersion == 0 {
                stored = try await tx.count("""
                    INSERT INTO access_state(id, version, document) VALUES (1, 1, \(document)) ON CONFLICT DO NOTHING RETURNING 1
                    """)
            } else {
                stored = try await tx.count("""
                    UPDATE access_state SET version = version + 1, document = \(document)
                    WHERE id = 1 AND version = \(expectedVersion) RETURNING 1
                    """)
            }
            guard stored == 1 else { return false }
            if let audit { try await Self.insertAudit(tx, audit) }
            for change in changes {
                try await Self.appendEvent(tx, origin, .access, "", digest: change.digest, detail: change.detail)
            }
            return true
        }
    }

    private static func insertAudit(_ tx: Tx, _ r: AuditRecord) async throws {
        try await tx.exec("""
            INSERT INTO audit(at, actor, address, action, target, outcome, detail)
            VALUES (\(r.timestamp.timeIntervalSince1970), \(r.actor), \(r.address), \(r.action), \(r.target), \(r.outcome), \(r.detail))
            """)
    }

    public func appendAudit(_ records: [AuditRecord]) async throws {
        guard !records.isEmpty else { return }
        try await write(serialized: false) { tx in
            for r in records { try await Self.insertAudit(tx, r) }
        }
    }

    public func audit(since: Date, limit: Int) async throws -> [AuditRecord] {
        try await single { tx in
            try await tx.rows("""
                SELECT seq, at, actor, address, action, target, outcome, detail FROM audit
                WHERE at >= \(since.timeIntervalSince1970) ORDER BY seq LIMIT \(limit)
                """).map {
                AuditRecord(sequence: try $0.decode("seq"), timestamp: try $0.date("at"), actor: try $0.decode("actor"),
                            address: try $0.decode("address"), action: try $0.decode("action"), target: try $0.decode("target"),
                            outcome: try $0.decode("outcome"), detail: try $0.decode("detail"))
            }
        }
    }
}

// MARK: webhooks

extension PostgresMetadataStore {
    private static let webhookColumns = """
        name, uri, actions, scope, headers, sealed_secret, enabled, created_at
        """

    private static func webhook(_ row: Row) throws -> WebhookRecord {
        WebhookRecord(name: try row.decode("name"), uri: try row.decode("uri"),
                      actions: decodeJSON([String].self, try row.decode("actions", String.self)) ?? [],
                      scope: try row.decode("scope"),
                      headers: decodeJSON([String: String].self, try row.decode("headers", String.self)) ?? [:],
                      sealedSecret: try row.decode("sealed_secret"), enabled: try row.decode("enabled"), createdAt: try row.date("created_at"))
    }

    public func webhooks() async throws -> [WebhookRecord] {
        try await single { tx in try await tx.rows("SELECT \(unescaped: Self.webhookColumns) FROM webhooks ORDER BY name").map(Self.webhook) }
    }

    public func webhook(named name: String) async throws -> WebhookRecord? {
        try await single { tx in
            try await tx.one("SELECT \(unescaped: Self.webhookColumns) FROM webhooks WHERE name = \(name)").map(Self.webhook)
        }
    }

    public func createWebhook(_ r: WebhookRecord, consumer: String) async throws -> Bool {
        try await write { tx in
            let created = try await tx.count("""
                INSERT INTO webhooks(name, uri, actions, scope, headers, sealed_secret, enabled, created_at)
                VALUES (\(r.name), \(r.uri), \(Self.json(r.actions)), \(r.scope), \(Self.json(r.headers)), \(r.sealedSecret), \(r.enabled),
                        \(r.createdAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING 1
                """) > 0
            if created {
                try await Self.restartConsumer(tx, consumer)
                // a leftover consumer's pause belonged to the webhook that had the name before
                try await tx.exec("UPDATE event_consumers SET paused = false WHERE name = \(consumer)")
            }
            return created
        }
    }

    /// Moves (or registers) `consumer` to the end of the log: forward only, failure cleared, pause kept.
    /// Runs inside a serialized write, so no event can commit between reading the end and moving there.
    private static func restartConsumer(_ tx: Tx, _ consumer: String) async throws {
        try await tx.exec("""
            INSERT INTO event_consumers(name, cursor, updated_at)
            VALUES (\(consumer), (SELECT COALESCE(MAX(seq), 0) FROM events), \(now()))
            ON CONFLICT (name) DO UPDATE SET cursor = GREATEST(event_consumers.cursor, excluded.cursor), attempts = 0,
                next_attempt_at = NULL, last_error = NULL, updated_at = excluded.updated_at
            """)
    }

    public func updateWebhook(name: String, uri: String?, actions: [String]?, scope: String??, headers: [String: String]?,
                              enabled: Bool?, restartConsumerIfReenabled: String?) async throws -> Bool {
        try await write { tx in
            // Whether this call re-enables the webhook is read here, under the row lock, not from a read before it.
            guard let wasEnabled = try await tx.value("SELECT enabled FROM webhooks WHERE name = \(name) FOR UPDATE", Bool.self)
            else { return false }
            if let uri { try await tx.exec("UPDATE webhooks SET uri = \(uri) WHERE name = \(name)") }
            if let actions { try await tx.exec("UPDATE webhooks SET actions = \(Self.json(actions)) WHERE name = \(name)") }
            if let scope { try await tx.exec("UPDATE webhooks SET scope = \(scope) WHERE name = \(name)") }
            if let headers { try await tx.exec("UPDATE webhooks SET headers = \(Self.json(headers)) WHERE name = \(name)") }
            if let enabled { try await tx.exec("UPDATE webhooks SET enabled = \(enabled) WHERE name = \(name)") }
            if enabled == true, !wasEnabled, let consumer = restartConsumerIfReenabled { try await Self.restartConsumer(tx, consumer) }
            return true
        }
    }

    public func deleteWebhook(name: String) async throws -> Bool {
        try await write { tx in
            let removed = try await tx.count("DELETE FROM webhooks WHERE name = \(name) RETURNING 1") > 0
            try await tx.exec("DELETE FROM webhook_deliveries WHERE webhook = \(name)")
            return removed
        }
    }

    @discardableResult
    public func recordDelivery(_ d: WebhookDelivery, keep: Int) async throws -> Int64 {
        try await write(serialized: false) { tx in
            let id = try await tx.value("""
                INSERT INTO webhook_deliveries(webhook, event_seq, action, attempt, status_code, latency_ms, error, at, payload)
                VALUES (\(d.webhook), \(d.eventSequence), \(d.action), \(d.attempt), \(d.statusCode), \(d.latencyMilliseconds), \(d.error),
                        \(d.timestamp.timeIntervalSince1970), \(d.payload))
                RETURNING id
                """, Int64.self)!
            try await tx.exec("""
                DELETE FROM webhook_deliveries WHERE webhook = \(d.webhook) AND id <= (
                    SELECT id FROM webhook_deliveries WHERE webhook = \(d.webhook) ORDER BY id DESC LIMIT 1 OFFSET \(max(1, keep)))
                """)
            return id
        }
    }

    public func deliveries(webhook: String, limit: Int) async throws -> [WebhookDelivery] {
        try await single { tx in
            try await tx.rows("""
                SELECT id, webhook, event_seq, action, attempt, status_code, latency_ms, error, at, payload FROM webhook_deliveries
                WHERE webhook = \(webhook) ORDER BY id DESC LIMIT \(limit)
                """).map {
                WebhookDelivery(id: try $0.decode("id"), webhook: try $0.decode("webhook"), eventSequence: try $0.decode("event_seq"),
                                action: try $0.decode("action"), attempt: try $0.decode("attempt"), statusCode: try $0.decode("status_code"),
                                latencyMilliseconds: try $0.decode("latency_ms"), error: try $0.decode("error"), timestamp: try $0.date("at"),
                                payload: try $0.decode("payload"))
            }
        }
    }
}

// MARK: usage over time

extension PostgresMetadataStore {
    public func dailyPushTotals(since: Date, repository: String?) async throws -> [DailyPushTotal] {
        let at = since.timeIntervalSince1970
        let action = EventAction.manifestPush.rawValue
        return try await single { tx in
            let rows = if let repository {
                try await tx.rows("""
                    SELECT floor(at / 86400)::bigint AS day, count(*)::bigint AS pushes, COALESCE(sum(size), 0)::bigint AS bytes
                    FROM events WHERE at >= \(at) AND action = \(action) AND repository = \(repository) GROUP BY 1 ORDER BY 1
                    """)
            } else {
                try await tx.rows("""
                    SELECT floor(at / 86400)::bigint AS day, count(*)::bigint AS pushes, COALESCE(sum(size), 0)::bigint AS bytes
                    FROM events WHERE at >= \(at) AND action = \(action) GROUP BY 1 ORDER BY 1
                    """)
            }
            return try rows.map { row in
                DailyPushTotal(day: Date(timeIntervalSince1970: Double(try row.decode("day", Int64.self) * 86_400)),
                               pushes: Int(try row.decode("pushes", Int64.self)), bytes: try row.decode("bytes", Int64.self))
            }
        }
    }
}
