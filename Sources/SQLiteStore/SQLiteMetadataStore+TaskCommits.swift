import Foundation
import GRDB
import RegistryStore

// MARK: git-commit triggers (the commit last seen per task)

extension SQLiteMetadataStore {
    public func taskCommit(task: String) async throws -> TaskCommitState? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT branch, commit_id, seen_at FROM task_commits WHERE task = ?", arguments: [task])
                .map { TaskCommitState(task: task, branch: $0[0], commit: $0[1], seenAt: Date(timeIntervalSince1970: $0[2])) }
        }
    }

    public func advanceTaskCommit(task: String, branch: String, expected: String?, commit: String,
                                  trigger: String?) async throws -> TaskCommitAdvance? {
        let origin = EventOrigin.current
        let now = Date()
        return try await pool.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM tasks WHERE name = ?", arguments: [task]) != nil else { return nil }
            let stored = try String.fetchOne(db, sql: "SELECT commit_id FROM task_commits WHERE task = ?", arguments: [task])
            guard stored == expected else { return nil }
            try db.execute(sql: """
                INSERT INTO task_commits(task, branch, commit_id, seen_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(task) DO UPDATE SET branch = excluded.branch, commit_id = excluded.commit_id, seen_at = excluded.seen_at
                """, arguments: [task, branch, commit, now.timeIntervalSince1970])
            var run: TaskRunRecord?
            if let trigger {
                var queued = TaskRunRecord(id: "", task: task, status: .queued, trigger: trigger, queuedAt: now)
                queued.commit = commit
                run = try Self.insertQueuedRun(db, origin, queued)
            }
            return TaskCommitAdvance(state: TaskCommitState(task: task, branch: branch, commit: commit, seenAt: now), run: run)
        }
    }
}
