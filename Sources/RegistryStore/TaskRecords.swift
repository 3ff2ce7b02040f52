import Foundation
import OCIModel

/// A build task as stored (issue 16): its task file's text, where its source comes from, its
/// triggers and values, and which repositories its runs may push to (the run identity's scope).
public struct TaskRecord: Sendable, Codable, Equatable {
    public var name: String
    /// The task file's text (ACR multi-step format), parsed again for every run.
    public var taskFile: String
    /// `GIT_URL#BRANCH[:DIR]`, or nil when each run is handed an uploaded context.
    public var context: String?
    /// A cron expression (RegistryCore's `CronSchedule`), or nil for no timer trigger.
    public var schedule: String?
    /// `{{.Values.x}}` entries (a values file and `--set`, merged).
    public var values: [String: String]
    /// Seconds a run may take in all.
    public var timeoutSeconds: Int
    /// The repositories the task's push steps name: what its run identity may push to and pull from.
    public var repositories: [String]
    public var enabled: Bool
    /// The subject of the caller that created it.
    public var createdBy: String
    public var createdAt: Date
    /// The event log's last sequence number when it was created: a base-image move at or before
    /// it happened before the task existed and queues nothing (its first run resolves its bases
    /// as they are then). Nil for tasks saved before it was kept.
    public var createdAfterEvent: Int64? = nil
    public var updatedAt: Date
    /// When the timer trigger last queued a run (so each slot fires once across the cluster).
    public var lastScheduledAt: Date?
    /// The git-commit trigger: poll the context's branch and accept its push webhook (nil: off).
    public var commitTriggerEnabled: Bool? = nil
    /// The push webhook's secret, sealed (AES-GCM under the tasks' sealing key, bound to the
    /// task's name); nil when none was made.
    public var gitWebhookSecret: Data? = nil
    /// The base-image trigger (nil: off): `Runtime` (only the image the built stage stands on)
    /// or `All` (build-time bases too). A push that moves one of its bases' tags in this
    /// registry queues a run.
    public var baseImageTrigger: String?
    /// The bases its Dockerfiles declare (this registry's `repository:tag` references): found
    /// from the context when it is saved, then from each run's checkout.
    public var bases: [TaskBaseRecord]?
    /// The bases its Dockerfiles declare in other registries (`host/repository:tag`, Docker Hub's
    /// as `docker.io/…`): polled, since their pushes are not in this registry's event log.
    public var externalBases: [TaskBaseRecord]? = nil
    /// What each external base's tag pointed at when last polled (reference → digest): a poll
    /// that finds another digest queues a run; the first look only records it.
    public var externalBaseDigests: [String: String]? = nil
    /// The `repository:tag`s its push steps name (with `$ID` as `cb0`).
    public var outputs: [String]?
    /// When a base-image trigger last queued a run, and when a trigger coalesced after it is due.
    public var baseTriggeredAt: Date?
    public var baseTriggerDueAt: Date?
    /// The command it was made from (`berth task create --cmd`): its task file is that command's
    /// one-step file (`TaskFile.forCommand`).
    public var command: String? = nil
    /// Repositories its `berth` steps act on (named when it is saved, never by the file): its
    /// runs' identity may push and pull there (`cmd` images are pulled with it), and delete when
    /// the file has `berth` steps.
    public var scope: [String]? = nil

    public init(name: String, taskFile: String, context: String?, schedule: String?, values: [String: String],
                timeoutSeconds: Int, repositories: [String], enabled: Bool = true, createdBy: String,
                createdAt: Date, updatedAt: Date, lastScheduledAt: Date? = nil, baseImageTrigger: String? = nil,
                bases: [TaskBaseRecord]? = nil) {
        self.name = name; self.taskFile = taskFile; self.context = context; self.schedule = schedule
        self.values = values; self.timeoutSeconds = timeoutSeconds; self.repositories = repositories
        self.enabled = enabled; self.createdBy = createdBy; self.createdAt = createdAt; self.updatedAt = updatedAt
        self.lastScheduledAt = lastScheduledAt
        self.baseImageTrigger = baseImageTrigger; self.bases = bases
    }
}

extension TaskRecord {
    /// What its saver set that decides what a run does (its file, values, context, command,
    /// scope, timeout and the repositories it may push to), as a digest; not its triggers'
    /// bookkeeping. `berth run` and `berth build` save their file on a task shared by name
    /// (`quick-run`, `quick-build`) and queue the run only while the task still holds what they
    /// saved: else two callers at once could each run the other's file on their own context.
    public var definitionDigest: String {
        // length-prefixed fields in a fixed order ("-" for absent), entries by their keys' bytes:
        // the same on every node whatever its Foundation's JSON output
        var text = ""
        func field(_ s: String?) { text += s.map { "\($0.utf8.count):\($0)" } ?? "-" }
        func list(_ l: [String]?) {
            guard let l else { text += "-"; return }
            text += "\(l.count)["
            l.forEach(field)
        }
        field(taskFile)
        field(context)
        text += "\(values.count){"
        for (key, value) in values.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            field(key)
            field(value)
        }
        field(String(timeoutSeconds))
        list(repositories)
        field(command)
        list(scope)
        return Digest.compute(Array(text.utf8)).string
    }
}

/// `TaskStore.queueTaskRun(ifDefinition:)`: the task no longer holds the definition the caller saved.
public struct TaskDefinitionChanged: Error, Sendable, Equatable {
    public let task: String
    public init(task: String) { self.task = task }
}

/// A base image a task's build stands on: `repository:tag` in this registry, whether it is the
/// runtime base (the built stage's `FROM`) or a build-time one.
public struct TaskBaseRecord: Sendable, Codable, Equatable, Hashable {
    public var reference: String
    public var runtime: Bool
    public init(reference: String, runtime: Bool) { self.reference = reference; self.runtime = runtime }
}

public enum TaskRunStatus: String, Sendable, Codable, Equatable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// One step of a finished (or running) run as the runner reported it.
public struct TaskRunStepRecord: Sendable, Codable, Equatable {
    public var id: String
    /// `succeeded`, `failed`, `timedOut`, `cancelled`, `skipped`.
    public var status: String
    /// One entry per attempt: `exit code 0`, `timed out`, ...
    public var attempts: [String]
    public var exitCode: Int32?
    public var reason: String?
    public var startedAt: Date?
    public var finishedAt: Date?

    public init(id: String, status: String, attempts: [String], exitCode: Int32?, reason: String?,
                startedAt: Date?, finishedAt: Date?) {
        self.id = id; self.status = status; self.attempts = attempts; self.exitCode = exitCode
        self.reason = reason; self.startedAt = startedAt; self.finishedAt = finishedAt
    }
}

/// An image reference and the digest it is (a push's result, or a base image it resolved to).
public struct TaskRunImageRecord: Sendable, Codable, Equatable {
    public var reference: String
    public var digest: String?
    /// For a base image: true for the runtime base, false for a build-time one (nil: a push).
    public var runtime: Bool?
    /// For a base whose tag points at an index: the platform the run builds for (`linux/amd64`)
    /// and the digest of that platform's manifest in the index, the image the build used.
    public var platform: String? = nil
    public var platformDigest: String? = nil
    public init(reference: String, digest: String?, runtime: Bool? = nil) {
        self.reference = reference; self.digest = digest; self.runtime = runtime
    }
}

/// A run of a task: `cb<n>`, its status and trigger, and what it did.
public struct TaskRunRecord: Sendable, Codable, Equatable {
    /// `cb1`, `cb2`, ... (one sequence for the registry: ids are never reused).
    public var id: String
    public var task: String
    public var status: TaskRunStatus
    /// `manual`, `schedule`, `upload` (berth run / berth build), `commit`.
    public var trigger: String
    public var queuedAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Why it failed or was cancelled.
    public var reason: String?
    public var steps: [TaskRunStepRecord]
    public var pushed: [TaskRunImageRecord]
    public var baseImages: [TaskRunImageRecord]
    /// The node running it (a lease holder's name).
    public var node: String?
    /// A cancel was asked for while it ran: the node running it stops it.
    public var cancelRequested: Bool
    /// Where an uploaded context waits for the run (a path on the node that received it), if any.
    public var uploadedContext: String?
    /// The commit a git-commit trigger queued it for (`$Commit`; the run builds that commit).
    public var commit: String? = nil
    /// The task as it was when the run was queued (its file, values, context, repositories,
    /// timeout), copied by the store in the queueing transaction: the run executes that, so a
    /// change of the task between queue and start (another caller's `berth build` on the shared
    /// quick task, an update) never runs someone else's file on this run's context.
    public var taskAtQueue: TaskRecord? = nil

    public init(id: String, task: String, status: TaskRunStatus, trigger: String, queuedAt: Date,
                startedAt: Date? = nil, finishedAt: Date? = nil, reason: String? = nil, steps: [TaskRunStepRecord] = [],
                pushed: [TaskRunImageRecord] = [], baseImages: [TaskRunImageRecord] = [], node: String? = nil,
                cancelRequested: Bool = false, uploadedContext: String? = nil) {
        self.id = id; self.task = task; self.status = status; self.trigger = trigger; self.queuedAt = queuedAt
        self.startedAt = startedAt; self.finishedAt = finishedAt; self.reason = reason; self.steps = steps
        self.pushed = pushed; self.baseImages = baseImages; self.node = node; self.cancelRequested = cancelRequested
        self.uploadedContext = uploadedContext
    }
}

/// Persistence of tasks and their runs. Every change of a run's status is one transaction that
/// appends its event (`task.run.queued`, `.started`, `.succeeded`, `.failed`, `.cancelled`; the
/// repository empty, the detail `<task>/<run id>`), with the origin of the request behind it.
public protocol TaskStore: Sendable {
    /// Tasks by name.
    func tasks() async throws -> [TaskRecord]
    func task(named: String) async throws -> TaskRecord?
    /// Stores a new task; nil, and nothing changes, when the name is taken. With `markEventLog`,
    /// the stored record's `createdAfterEvent` is the event log's last sequence number read in the
    /// inserting transaction, in order with every event append (an event numbered after it was
    /// appended after the task existed).
    func createTask(_ record: TaskRecord, markEventLog: Bool) async throws -> TaskRecord?
    /// Replaces the task of that name; false when there is none.
    func updateTask(_ record: TaskRecord) async throws -> Bool
    /// Deletes the task and its runs; false when there is none.
    func deleteTask(named: String) async throws -> Bool
    /// Queues a run of `task` with the next id of the registry's sequence (`cb<n>`) and its
    /// `task.run.queued` event; nil when the task does not exist. With `ifDefinition`, only while
    /// the task's `definitionDigest` is that one, checked in the queueing transaction: else
    /// `TaskDefinitionChanged` is thrown and nothing changes.
    func queueTaskRun(task: String, trigger: String, uploadedContext: String?, ifDefinition: String?) async throws -> TaskRunRecord?
    func taskRun(id: String) async throws -> TaskRunRecord?
    /// Runs of `task` (nil: of every task), newest first, at most `limit`.
    func taskRuns(task: String?, limit: Int) async throws -> [TaskRunRecord]
    /// Starts the oldest queued run whose task has no running run (runs of one task go one at a
    /// time, in the order they were queued): marks it running on `node` with its
    /// `task.run.started` event. Nil when none can start.
    func startNextTaskRun(node: String) async throws -> TaskRunRecord?
    /// Writes `record` when the stored run still has `expected` status (compare-and-swap); a
    /// change of status appends that status's event. False, and nothing changes, otherwise.
    func updateTaskRun(_ record: TaskRunRecord, expected: TaskRunStatus) async throws -> Bool
    /// Runs that are `running` (to resume or fail after a node stopped).
    func runningTaskRuns() async throws -> [TaskRunRecord]
    /// Appends `bytes` to the stored log of run `id` when `offset` is the log's current length
    /// (so a retried append is never written twice); false, and nothing changes, otherwise or
    /// when the run does not exist. The log goes with its run.
    func appendTaskRunLog(id: String, offset: Int64, bytes: [UInt8]) async throws -> Bool
    /// The stored log of run `id` from byte `offset`, at most `limit` bytes (empty past its
    /// end); nil when nothing was stored for the run.
    func taskRunLog(id: String, offset: Int64, limit: Int) async throws -> [UInt8]?
}

extension TaskStore {
    public func queueTaskRun(task: String, trigger: String, uploadedContext: String?) async throws -> TaskRunRecord? {
        try await queueTaskRun(task: task, trigger: trigger, uploadedContext: uploadedContext, ifDefinition: nil)
    }

    /// Stitches stored chunks `(start, bytes)` (ordered, contiguous) into `[offset, offset+limit)`.
    public static func slice(_ chunks: [(start: Int64, bytes: [UInt8])], offset: Int64, limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        for chunk in chunks {
            let end = chunk.start + Int64(chunk.bytes.count)
            guard end > offset else { continue }
            let from = Int(max(0, offset - chunk.start))
            out.append(contentsOf: chunk.bytes[from...])
            if out.count >= limit { break }
        }
        return Array(out.prefix(limit))
    }
}

extension TaskRunRecord {
    /// The event detail of a run: `<task>/<run id>`.
    public var eventDetail: String { task + "/" + id }
}

extension TaskRunStatus {
    /// The event a change to this status appends.
    public var eventAction: EventAction {
        switch self {
        case .queued: .taskRunQueued
        case .running: .taskRunStarted
        case .succeeded: .taskRunSucceeded
        case .failed: .taskRunFailed
        case .cancelled: .taskRunCancelled
        }
    }
}

extension TaskStore {
    /// Stores a new task as given; false, and nothing changes, when the name is taken.
    public func createTask(_ record: TaskRecord) async throws -> Bool {
        try await createTask(record, markEventLog: false) != nil
    }
}
