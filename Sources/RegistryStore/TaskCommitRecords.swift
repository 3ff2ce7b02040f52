import Foundation

/// The commit a task's git-commit trigger last saw on its branch (issue 16 item 4): kept apart
/// from the task's own record, so editing the task never moves it and a restart does not
/// trigger again for a commit already seen.
public struct TaskCommitState: Sendable, Codable, Equatable {
    public var task: String
    public var branch: String
    /// The full object name (40 or 64 hex digits).
    public var commit: String
    public var seenAt: Date

    public init(task: String, branch: String, commit: String, seenAt: Date) {
        self.task = task; self.branch = branch; self.commit = commit; self.seenAt = seenAt
    }
}

/// What `advanceTaskCommit` did: the state now stored and the run it queued, if any.
public struct TaskCommitAdvance: Sendable, Equatable {
    public var state: TaskCommitState
    public var run: TaskRunRecord?
    public init(state: TaskCommitState, run: TaskRunRecord?) { self.state = state; self.run = run }
}

/// Persistence of git-commit triggers. The state is deleted with its task.
public protocol TaskCommitStore: Sendable {
    /// The commit last seen for `task`, nil when none was recorded.
    func taskCommit(task: String) async throws -> TaskCommitState?
    /// In one transaction: when the stored commit of `task` is still `expected` (nil: none is
    /// stored), stores `commit` on `branch` and, when `trigger` is given, queues a run of the
    /// task as `queueTaskRun` does (next `cb<n>`, its `task.run.queued` event) with `commit` and
    /// `branch` in the run. Nil, and nothing changes, when the stored commit is not `expected`
    /// or the task does not exist: two nodes (a poll and a push webhook) never queue one commit twice.
    func advanceTaskCommit(task: String, branch: String, expected: String?, commit: String,
                           trigger: String?) async throws -> TaskCommitAdvance?
}
