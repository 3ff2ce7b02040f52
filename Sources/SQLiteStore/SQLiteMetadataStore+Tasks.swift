import Foundation
import GRDB
import RegistryStore

// MARK: build tasks and their runs

/// Tasks and runs are kept as JSON documents (the record types' Codable form) beside the columns
/// the store selects on; a run's status column and its document change together.
extension SQLiteMetadataStore {
    static func encode(_ value: some Encodable) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    public func tasks() async throws -> [TaskRecord] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT record FROM tasks ORDER BY name").map { try Self.decode(TaskRecord.self, $0) }
        }
    }

    public func task(named name: String) async throws -> TaskRecord? {
        try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT record FROM tasks WHERE name = ?", arguments: [name])
                .map { try Self.decode(TaskRecord.self, $0) }
        }
    }

    public func createTask(_ record: TaskRecord, markEventLog: Bool) async throws -> TaskRecord? {
        try await pool.write { db in
            var record = record
            // One writer at a time: nothing is appended between this read and the insert.
            if markEventLog { record.createdAfterEvent = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM events") ?? 0 }
            try db.execute(sql: "INSERT INTO tasks(name, record) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                           arguments: [record.name, try Self.encode(record)])
            return db.changesCount == 1 ? record : nil
        }
    }

    public func updateTask(_ record: TaskRecord) async throws -> Bool {
        let text = try Self.encode(record)
        return try await pool.write { db in
            try db.execute(sql: "UPDATE tasks SET record = ? WHERE name = ?", arguments: [text, record.name])
            return db.changesCount == 1
        }
    }

    public func deleteTask(named name: String) async throws -> Bool {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM tasks WHERE name = ?", arguments: [name])
            guard db.changesCount == 1 else { return false }
            try db.execute(sql: "DELETE FROM task_runs WHERE task = ?", arguments: [name])
            return true
        }
    }

    public func queueTaskRun(task: String, trigger: String, uploadedContext: String?, ifDefinition: String?) async throws -> TaskRunRecord? {
        let origin = EventOrigin.current
        return try await pool.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM tasks WHERE name = ?", arguments: [task]) != nil else { return nil }
            let run = try Self.insertQueuedRun(db, origin, TaskRunRecord(id: "", task: task, status: .queued, trigger: trigger,
                                                                         queuedAt: Date(), uploadedContext: uploadedContext))
            // the definition the run will execute (its snapshot) is the one checked; refused, the
            // transaction rolls back with its id and event
            if let ifDefinition, run.taskAtQueue?.definitionDigest != ifDefinition { throw TaskDefinitionChanged(task: task) }
            return run
        }
    }

    /// Gives `run` (queued, of an existing task) the next id, stores it and appends its event.
    static func insertQueuedRun(_ db: Database, _ origin: EventOrigin?, _ queued: TaskRunRecord) throws -> TaskRunRecord {
        try db.execute(sql: "UPDATE task_run_counter SET last = last + 1 WHERE id = 1")
        let number = try Int64.fetchOne(db, sql: "SELECT last FROM task_run_counter WHERE id = 1") ?? 1
        var run = queued
        run.id = "cb\(number)"
        run.taskAtQueue = try String.fetchOne(db, sql: "SELECT record FROM tasks WHERE name = ?", arguments: [run.task])
            .map { try decode(TaskRecord.self, $0) }
        try db.execute(sql: "INSERT INTO task_runs(number, id, task, status, record) VALUES (?, ?, ?, ?, ?)",
                       arguments: [number, run.id, run.task, run.status.rawValue, try encode(run)])
        try appendEvent(db, origin, .taskRunQueued, "", detail: run.eventDetail)
        return run
    }

    public func taskRun(id: String) async throws -> TaskRunRecord? {
        try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT record FROM task_runs WHERE id = ?", arguments: [id])
                .map { try Self.decode(TaskRunRecord.self, $0) }
        }
    }

    public func taskRuns(task: String?, limit: Int) async throws -> [TaskRunRecord] {
        try await pool.read { db in
            let rows: [String]
            if let task {
                rows = try String.fetchAll(db, sql: "SELECT record FROM task_runs WHERE task = ? ORDER BY number DESC LIMIT ?",
                                           arguments: [task, max(0, limit)])
            } else {
                rows = try String.fetchAll(db, sql: "SELECT record FROM task_runs ORDER BY number DESC LIMIT ?",
                                           arguments: [max(0, limit)])
            }
            return try rows.map { try Self.decode(TaskRunRecord.self, $0) }
        }
    }

    public func startNextTaskRun(node: String) async throws -> TaskRunRecord? {
        let origin = EventOrigin.current
        return try await pool.write { db in
            guard let text = try String.fetchOne(db, sql: """
                SELECT r.record FROM task_runs r WHERE r.status = 'queued' AND NOT EXISTS
                    (SELECT 1 FROM task_runs x WHERE x.task = r.task AND x.status = 'running')
                ORDER BY r.number LIMIT 1
                """) else { return nil }
            var run = try Self.decode(TaskRunRecord.self, text)
            run.status = .running
            run.startedAt = Date()
            run.node = node
            try db.execute(sql: "UPDATE task_runs SET status = ?, record = ? WHERE id = ?",
                           arguments: [run.status.rawValue, try Self.encode(run), run.id])
            try Self.appendEvent(db, origin, .taskRunStarted, "", detail: run.eventDetail)
            return run
        }
    }

    public func updateTaskRun(_ record: TaskRunRecord, expected: TaskRunStatus) async throws -> Bool {
        let origin = EventOrigin.current
        let text = try Self.encode(record)
        return try await pool.write { db in
            try db.execute(sql: "UPDATE task_runs SET status = ?, record = ? WHERE id = ? AND status = ?",
                           arguments: [record.status.rawValue, text, record.id, expected.rawValue])
            guard db.changesCount == 1 else { return false }
            if record.status != expected {
                try Self.appendEvent(db, origin, record.status.eventAction, "", detail: record.eventDetail)
            }
            return true
        }
    }

    public func runningTaskRuns() async throws -> [TaskRunRecord] {
        try await pool.read { db in
            try String.fetchAll(db, sql: "SELECT record FROM task_runs WHERE status = 'running' ORDER BY number")
                .map { try Self.decode(TaskRunRecord.self, $0) }
        }
    }

    public func appendTaskRunLog(id: String, offset: Int64, bytes: [UInt8]) async throws -> Bool {
        try await pool.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM task_runs WHERE id = ?", arguments: [id]) != nil else { return false }
            let length = try Int64.fetchOne(db, sql: "SELECT coalesce(max(end), 0) FROM task_run_logs WHERE run_id = ?",
                                            arguments: [id]) ?? 0
            guard length == offset else { return false }
            guard !bytes.isEmpty else { return true }
            try db.execute(sql: "INSERT INTO task_run_logs(run_id, start, end, bytes) VALUES (?, ?, ?, ?)",
                           arguments: [id, offset, offset + Int64(bytes.count), Data(bytes)])
            return true
        }
    }

    public func taskRunLog(id: String, offset: Int64, limit: Int) async throws -> [UInt8]? {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT start, bytes FROM task_run_logs WHERE run_id = ? AND end > ? AND start < ? ORDER BY start
                """, arguments: [id, offset, offset + Int64(max(0, limit))])
            if rows.isEmpty {
                guard try Bool.fetchOne(db, sql: "SELECT 1 FROM task_run_logs WHERE run_id = ? LIMIT 1", arguments: [id]) != nil else {
                    return nil
                }
                return []
            }
            let chunks = rows.map { (start: $0["start"] as Int64, bytes: [UInt8]($0["bytes"] as Data)) }
            return Self.slice(chunks, offset: offset, limit: limit)
        }
    }
}
