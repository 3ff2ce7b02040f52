import Foundation
import PostgresNIO
import RegistryStore

// MARK: git-commit triggers (the commit last seen per task)

extension PostgresMetadataStore {
    public func taskCommit(task: String) async throws -> TaskCommitState? {
        try await single { tx in
            guard let row = try await tx.rows("SELECT branch, commit_id, seen_at FROM task_commits WHERE task = \(task)").first else {
                return nil
            }
            return TaskCommitState(task: task, branch: try row.decode(0, String.self), commit: try row.decode(1, String.self),
                                   seenAt: Date(timeIntervalSince1970: try row.decode(2, Double.self)))
        }
    }

    /// A serialized write (it may append an event): the check of the stored commit and the change
    /// are decided under the event-counter lock, so two nodes never both advance from one commit.
    public func advanceTaskCommit(task: String, branch: String, expected: String?, commit: String,
                                  trigger: String?) async throws -> TaskCommitAdvance? {
        let origin = EventOrigin.current
        let now = Date()
        return try await write { tx in
            guard try await tx.count("SELECT 1 FROM tasks WHERE name = \(task) FOR UPDATE") == 1 else { return nil }
            let stored = try await tx.value("SELECT commit_id FROM task_commits WHERE task = \(task)", String.self)
            guard stored == expected else { return nil }
            let seen = now.timeIntervalSince1970
            try await tx.exec("""
                INSERT INTO task_commits(task, branch, commit_id, seen_at) VALUES (\(task), \(branch), \(commit), \(seen))
                ON CONFLICT (task) DO UPDATE SET branch = excluded.branch, commit_id = excluded.commit_id, seen_at = excluded.seen_at
                """)
            var run: TaskRunRecord?
            if let trigger {
                var queued = TaskRunRecord(id: "", task: task, status: .queued, trigger: trigger, queuedAt: now)
                queued.commit = commit
                run = try await Self.insertQueuedRun(tx, origin, queued)
            }
            return TaskCommitAdvance(state: TaskCommitState(task: task, branch: branch, commit: commit, seenAt: now), run: run)
        }
    }
}
