import Foundation

// Build tasks (issue 16): `/api/v1/tasks…`.

/// `POST /api/v1/tasks` (all of name and taskFile needed) and `PATCH /api/v1/tasks/{name}` (the
/// fields given change; `context` and `schedule` "" clear them).
public struct TaskRequest: Codable, Sendable, Equatable {
    public var name: String?
    /// The task file's text (ACR multi-step, `version: v1.1.0`).
    public var taskFile: String?
    /// `GIT_URL#BRANCH[:DIR]`; absent: every run is handed an uploaded context.
    public var context: String?
    /// A cron expression (`0 2 * * *`): a timer trigger.
    public var schedule: String?
    /// `{{.Values.x}}` entries.
    public var values: [String: String]?
    /// Seconds a run may take in all (default 3600).
    public var timeoutSeconds: Int?
    public var enabled: Bool?
    /// The git-commit trigger: poll the context's branch and accept pushes at
    /// `POST /api/v1/tasks/{name}/git-webhook`. Turning it on the first time makes the webhook's
    /// secret, shown once in the answer.
    public var commitTriggerEnabled: Bool?
    /// The base-image trigger: on or off (a type given alone turns it on).
    public var baseImageTriggerEnabled: Bool?
    /// `Runtime` (only the built stage's base triggers) or `All` (build-time bases too).
    public var baseImageTriggerType: String?
    /// A command instead of a task file (exactly one of them on create): an image and its
    /// arguments (a one-step `cmd` task, run with podman), or `berth COMMAND …`, Berth's own CLI
    /// run by the server with the run's identity (see `scope`).
    public var cmd: String?
    /// The repositories a task's `berth` steps may act on (push, pull, delete); the caller must
    /// be allowed to push and delete in each. On PATCH, replaces the list ([] clears it).
    public var scope: [String]?
    public init(name: String? = nil, taskFile: String? = nil, context: String? = nil, schedule: String? = nil,
                values: [String: String]? = nil, timeoutSeconds: Int? = nil, enabled: Bool? = nil,
                commitTriggerEnabled: Bool? = nil,
                baseImageTriggerEnabled: Bool? = nil, baseImageTriggerType: String? = nil) {
        self.name = name; self.taskFile = taskFile; self.context = context; self.schedule = schedule
        self.values = values; self.timeoutSeconds = timeoutSeconds; self.enabled = enabled
        self.commitTriggerEnabled = commitTriggerEnabled
        self.baseImageTriggerEnabled = baseImageTriggerEnabled; self.baseImageTriggerType = baseImageTriggerType
    }
}

/// A task as the API shows it.
public struct TaskView: Codable, Sendable, Equatable {
    public var name: String
    public var taskFile: String
    public var context: String?
    public var schedule: String?
    public var values: [String: String]
    public var timeoutSeconds: Int
    /// The repositories its push steps name: what its runs' identity may push to.
    public var repositories: [String]
    public var enabled: Bool
    public var createdBy: String
    public var createdAt: Date
    public var updatedAt: Date
    /// Whether the git-commit trigger is on.
    public var commitTriggerEnabled: Bool = false
    /// The push webhook's secret: only in the answer that made it (shown once, then kept sealed).
    public var gitWebhookSecret: String?
    /// The commit last seen on the context's branch (in `GET /api/v1/tasks/{name}` only).
    public var lastCommit: String?
    /// The base-image trigger's type (`Runtime`, `All`), nil when it is off.
    public var baseImageTriggerType: String?
    /// The bases its Dockerfiles declared when it was saved (`repository:tag` in this registry;
    /// `runtime` false for a build-time base): what triggers it, and what its runs may pull.
    public var baseImages: [TaskRunImageView]?
    /// The command it was made from (`--cmd`), if it was.
    public var cmd: String?
    /// The repositories its `berth` steps may act on.
    public var scope: [String]?
    /// A digest of what decides what a run does (file, values, context, command, scope, timeout,
    /// repositories): `POST .../runs?ifDefinition=` queues a run only while the task holds it.
    public var definition: String?
    public init(name: String, taskFile: String, context: String?, schedule: String?, values: [String: String],
                timeoutSeconds: Int, repositories: [String], enabled: Bool, createdBy: String, createdAt: Date, updatedAt: Date,
                baseImageTriggerType: String? = nil, baseImages: [TaskRunImageView]? = nil) {
        self.name = name; self.taskFile = taskFile; self.context = context; self.schedule = schedule; self.values = values
        self.timeoutSeconds = timeoutSeconds; self.repositories = repositories; self.enabled = enabled
        self.createdBy = createdBy; self.createdAt = createdAt; self.updatedAt = updatedAt
        self.baseImageTriggerType = baseImageTriggerType; self.baseImages = baseImages
    }
}

/// One step of a run.
public struct TaskRunStepView: Codable, Sendable, Equatable {
    public var id: String
    /// `succeeded`, `failed`, `timedOut`, `cancelled`, `skipped`.
    public var status: String
    /// Per attempt: `exit code 0`, `timed out`, …
    public var attempts: [String]
    public var exitCode: Int32?
    public var reason: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    public init(id: String, status: String, attempts: [String], exitCode: Int32?, reason: String?, startedAt: Date?,
                finishedAt: Date?) {
        self.id = id; self.status = status; self.attempts = attempts; self.exitCode = exitCode; self.reason = reason
        self.startedAt = startedAt; self.finishedAt = finishedAt
    }
}

/// An image a run pushed (or a base image it used) and its digest.
public struct TaskRunImageView: Codable, Sendable, Equatable {
    public var reference: String
    public var digest: String?
    /// For a base image: true for the runtime base, false for a build-time one.
    public var runtime: Bool?
    /// For a base whose tag points at an index (`digest`): the platform the run built for and
    /// the digest of that platform's manifest in the index.
    public var platform: String?
    public var platformDigest: String?
    public init(reference: String, digest: String?, runtime: Bool? = nil, platform: String? = nil, platformDigest: String? = nil) {
        self.reference = reference; self.digest = digest; self.runtime = runtime
        self.platform = platform; self.platformDigest = platformDigest
    }
}

/// A run: `cb1`, `cb2`, …
public struct TaskRunView: Codable, Sendable, Equatable {
    public var id: String
    public var task: String
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    public var status: String
    /// `manual`, `schedule`, `upload`, `commit`, `base-image`.
    public var trigger: String
    public var queuedAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var reason: String?
    public var steps: [TaskRunStepView]
    public var pushed: [TaskRunImageView]
    public var baseImages: [TaskRunImageView]
    /// The commit a git-commit trigger queued it for (`$Commit`).
    public var commit: String?
    public init(id: String, task: String, status: String, trigger: String, queuedAt: Date, startedAt: Date?,
                finishedAt: Date?, reason: String?, steps: [TaskRunStepView], pushed: [TaskRunImageView],
                baseImages: [TaskRunImageView]) {
        self.id = id; self.task = task; self.status = status; self.trigger = trigger; self.queuedAt = queuedAt
        self.startedAt = startedAt; self.finishedAt = finishedAt; self.reason = reason; self.steps = steps
        self.pushed = pushed; self.baseImages = baseImages
    }
}

/// The answer to a push webhook (`POST /api/v1/tasks/{name}/git-webhook`) that was verified: the
/// run it queued (202), or why it queued none (200: not a push, another branch, a commit already seen).
public struct GitWebhookAnswer: Codable, Sendable, Equatable {
    public var queued: Bool
    public var run: TaskRunView?
    public var reason: String?
    public init(queued: Bool, run: TaskRunView?, reason: String?) { self.queued = queued; self.run = run; self.reason = reason }
}

/// What Berth reads of a git server's push webhook body (GitHub, Gitea and GitLab all send these;
/// everything else in it is ignored): the ref pushed and the commit it moved to.
public struct GitPushPayload: Codable, Sendable, Equatable {
    /// `refs/heads/BRANCH`.
    public var ref: String?
    /// The full commit name the ref points to now (all zeros: the ref was deleted).
    public var after: String?
    public init(ref: String?, after: String?) { self.ref = ref; self.after = after }
}
