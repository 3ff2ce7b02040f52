import Foundation
import PostgresNIO
import RegistryStore

// MARK: build tasks and their runs

/// Tasks and runs are kept as JSON documents (the record types' Codable form) beside the columns
/// the store selects on. Changes of a run's status append an event, so they are serialized writes
/// (the event-counter lock): starting the next run and its compare-and-swap are decided under it,
/// and two nodes never start two runs of one task.
extension PostgresMetadataStore {
    static func encode(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    public func tasks() async throws -> [TaskRecord] {
        try await single { tx in
            try await tx.rows("SELECT record FROM tasks ORDER BY name").map { try Self.decode(TaskRecord.self, try $0.decode(0, String.self)) }
        }
    }

    public func task(named name: String) async throws -> TaskRecord? {
        try await single { tx in
            try await tx.value("SELECT record FROM tasks WHERE name = \(name)", String.self).map { try Self.decode(TaskRecord.self, $0) }
        }
    }

    public func createTask(_ record: TaskRecord, markEventLog: Bool) async throws -> TaskRecord? {
        // Marking, the transaction holds the event counter's row lock (a serialized write), so no
        // event is appended between the read and the commit.
        try await write(serialized: markEventLog) { tx in
            var record = record
            if markEventLog {
                record.createdAfterEvent = try await tx.value("SELECT last FROM event_counter WHERE id = 1", Int64.self) ?? 0
            }
            let text = try Self.encode(record)
            let created = try await tx.count("""
                INSERT INTO tasks(name, record) VALUES (\(record.name), \(text)) ON CONFLICT DO NOTHING RETURNING 1
                """) == 1
            return created ? record : nil
        }
    }

    public func updateTask(_ record: TaskRecord) async throws -> Bool {
        let text = try Self.encode(record)
        return try await write(serialized: false) { tx in
            try await tx.count("UPDATE tasks SET record = \(text) WHERE name = \(record.name) RETURNING 1") == 1
        }
    }

    public func deleteTask(named name: String) async throws -> Bool {
        try await write { tx in
            guard try await tx.count("DELETE FROM tasks WHERE name = \(name) RETURNING 1") == 1 else { return false }
            try await tx.exec("DELETE FROM task_runs WHERE task = \(name)")
            return true
        }
    }

    public func queueTaskRun(task: String, trigger: String, uploadedContext: String?, ifDefinition: String?) async throws -> TaskRunRecord? {
        let origin = EventOrigin.current
        return try await write { tx in
            guard try await tx.count("SELECT 1 FROM tasks WHERE name = \(task)") == 1 else { return nil }
            let run = try await Self.insertQueuedRun(tx, origin, TaskRunRecord(id: "", task: task, status: .queued, trigger: trigger,
                                                                               queuedAt: Date(), uploadedContext: uploadedContext))
            // the definition the run will execute (its snapshot, read in this transaction: under
            // READ COMMITTED a separate earlier read could see an older task) is the one checked;
            // refused, the transaction rolls back with its id and event
            if let ifDefinition, run.taskAtQueue?.definitionDigest != ifDefinition { throw TaskDefinitionChanged(task: task) }
            return run
        }
    }

    /// Gives `run` (queued, of an existing task) the next id, stores it and appends its event
    /// (in a serialized write).
    static func insertQueuedRun(_ tx: Tx, _ origin: EventOrigin?, _ queued: TaskRunRecord) async throws -> TaskRunRecord {
        let number = try await tx.value("UPDATE task_run_counter SET last = last + 1 WHERE id = 1 RETURNING last", Int64.self) ?? 1
        var run = queued
        run.id = "cb\(number)"
        run.taskAtQueue = try await tx.value("SELECT record FROM tasks WHERE name = \(run.task)", String.self)
            .map { try decode(TaskRecord.self, $0) }
        let text = try encode(run)
        try await tx.exec("""
            INSERT INTO task_runs(number, id, task, status, record) VALUES (\(number), \(run.id), \(run.task), \(run.status.rawValue), \(text))
            """)
        try await appendEvent(tx, origin, .taskRunQueued, "", detail: run.eventDetail)
        return run
    }

    public func taskRun(id: String) async throws -> TaskRunRecord? {
        try await single { tx in
            try await tx.value("SELECT record FROM task_runs WHERE id = \(id)", String.self).map { try Self.decode(TaskRunRecord.self, $0) }
        }
    }

    public func taskRuns(task: String?, limit: Int) async throws -> [TaskRunRecord] {
        let limit = max(0, limit)
        return try await single { tx in
            let rows: [Row]
            if let task {
                rows = try await tx.rows("SELECT record FROM task_runs WHERE task = \(task) ORDER BY number DESC LIMIT \(limit)")
            } else {
                rows = try await tx.rows("SELECT record FROM task_runs ORDER BY number DESC LIMIT \(limit)")
            }
            return try rows.map { try Self.decode(TaskRunRecord.self, try $0.decode(0, String.self)) }
        }
    }

    public func startNextTaskRun(node: String) async throws -> TaskRunRecord? {
        let origin = EventOrigin.current
        return try await write { tx in
            guard let text = try await tx.value("""
                SELECT r.record FROM task_runs r WHERE r.status = 'queued' AND NOT EXISTS
                    (SELECT 1 FROM task_runs x WHERE x.task = r.task AND x.status = 'running')
                ORDER BY r.number LIMIT 1
                """, String.self) else { return nil }
            var run = try Self.decode(TaskRunRecord.self, text)
            run.status = .running
            run.startedAt = Date()
            run.node = node
            let updated = try Self.encode(run)
            try await tx.exec("UPDATE task_runs SET status = \(run.status.rawValue), record = \(updated) WHERE id = \(run.id)")
            try await Self.appendEvent(tx, origin, .taskRunStarted, "", detail: run.eventDetail)
            return run
        }
    }

    public func updateTaskRun(_ record: TaskRunRecord, expected: TaskRunStatus) async throws -> Bool {
        let origin = EventOrigin.current
        let text = try Self.encode(record)
        return try await write { tx in
            guard try await tx.count("""
                UPDATE task_runs SET status = \(record.status.rawValue), record = \(text)
                WHERE id = \(record.id) AND status = \(expected.rawValue) RETURNING 1
                """) == 1 else { return false }
            if record.status != expected {
                try await Self.appendEvent(tx, origin, record.status.eventAction, "", detail: record.eventDetail)
            }
            return true
        }
    }

    public func runningTaskRuns() async throws -> [TaskRunRecord] {
        try await single { tx in
            try await tx.rows("SELECT record FROM task_runs WHERE status = 'running' ORDER BY number")
                .map { try Self.decode(TaskRunRecord.self, try $0.decode(0, String.self)) }
        }
    }

    public func appendTaskRunLog(id: String, offset: Int64, bytes: [UInt8]) async throws -> Bool {
        try await write(serialized: false) { tx in
            // The run's row locked: two appends of one run are decided one after the other.
            guard try await tx.count("SELECT 1 FROM task_runs WHERE id = \(id) FOR UPDATE") == 1 else { return false }
            let length = try await tx.value("SELECT coalesce(max(\"end\"), 0)::bigint FROM task_run_logs WHERE run_id = \(id)",
                                            Int64.self) ?? 0
            guard length == offset else { return false }
            guard !bytes.isEmpty else { return true }
            let end = offset + Int64(bytes.count)
            try await tx.exec("""
                INSERT INTO task_run_logs(run_id, start, "end", bytes) VALUES (\(id), \(offset), \(end), \(ByteBuffer(bytes: bytes)))
                """)
            return true
        }
    }

    public func taskRunLog(id: String, offset: Int64, limit: Int) async throws -> [UInt8]? {
        let upTo = offset + Int64(max(0, limit))
        return try await single { tx in
            let rows = try await tx.rows("""
                SELECT start, bytes FROM task_run_logs WHERE run_id = \(id) AND "end" > \(offset) AND start < \(upTo) ORDER BY start
                """)
            if rows.isEmpty {
                guard try await tx.count("SELECT 1 FROM task_run_logs WHERE run_id = \(id) LIMIT 1") == 1 else { return nil }
                return []
            }
            let chunks = try rows.map { row in
                (start: try row.decode(0, Int64.self), bytes: Array(try row.decode(1, ByteBuffer.self).readableBytesView))
            }
            return Self.slice(chunks, offset: offset, limit: limit)
        }
    }
}
