import Access
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import RegistryCore
import RegistryStore
import ServiceLifecycle
import TaskRunner
import Tasks

/// The run queue of build tasks, a feature service: the server runs it under its lease
/// (`service:TaskQueueService`), so one node of a cluster works the queue and fires the timers.
/// Every tick it fires the timer triggers that are due, then starts queued runs (oldest first,
/// one run of a task at a time: `TaskStore.startNextTaskRun`) while fewer than
/// `maxConcurrentRuns` run here. Runs found `running` when it starts were left by a node that
/// stopped (or lost the lease): they are marked failed.
public struct TaskQueueService: Service {
    let tasks: TaskService
    let access: AccessControl

    var store: any TaskStore { tasks.store }
    var configuration: TasksConfiguration { tasks.configuration }
    var logger: Logger { tasks.logger }

    public func run() async throws {
        try? FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        await failInterrupted()
        let active = NIOLockedValueBox(0)
        await withTaskGroup(of: Void.self) { group in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                await fireTimers(now: configuration.now())
                await tasks.fireDeferredBaseTriggers(now: configuration.now())
                while active.withLockedValue({ $0 }) < configuration.maxConcurrentRuns {
                    let next: TaskRunRecord?
                    do {
                        next = try await store.startNextTaskRun(node: configuration.node)
                    } catch {
                        logger.warning("cannot start a queued task run", metadata: ["error": "\(error)"])
                        break
                    }
                    guard let run = next else { break }
                    active.withLockedValue { $0 += 1 }
                    group.addTask {
                        await execute(run)
                        active.withLockedValue { $0 -= 1 }
                    }
                }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: configuration.tick) }
            }
            group.cancelAll()
        }
    }

    /// Runs marked running that no node runs (this service was not running: no node ran them).
    func failInterrupted() async {
        for var run in (try? await store.runningTaskRuns()) ?? [] {
            run.status = .failed
            run.finishedAt = Date()
            run.reason = "interrupted: the server running it stopped"
            _ = try? await store.updateTaskRun(run, expected: .running)
        }
    }

    /// Whether a task's timer is due at `now`: its schedule's next time after the last one it
    /// fired at (or after its creation) has come. Slots missed while no node ran the queue fire once.
    static func timerDue(_ task: TaskRecord, now: Date) -> Bool {
        guard task.enabled, let schedule = task.schedule, let cron = try? CronSchedule(parsing: schedule),
              let next = cron.next(after: task.lastScheduledAt ?? task.createdAt) else { return false }
        return next <= now
    }

    func fireTimers(now: Date) async {
        guard let all = try? await store.tasks() else { return }
        for task in all where Self.timerDue(task, now: now) {
            // Moved first: a failure to queue does not fire it again every tick.
            guard var current = try? await store.task(named: task.name), Self.timerDue(current, now: now) else { continue }
            current.lastScheduledAt = now
            guard (try? await store.updateTask(current)) == true else { continue }
            do {
                let run = try await EventOrigin.$current.withValue(EventOrigin(actor: "schedule", address: "-")) {
                    try await tasks.queue(task.name, trigger: "schedule", uploadedContext: nil)
                }
                logger.info("timer queued a task run", metadata: ["task": "\(task.name)", "run": "\(run.id)"])
            } catch {
                logger.warning("timer could not queue a run", metadata: ["task": "\(task.name)", "error": "\(error)"])
            }
        }
    }

    private enum Stop: Sendable { case timedOut, cancelRequested, diskQuota(used: Int64, quota: Int64) }
    private enum Finish: Sendable { case result(TaskRunResult), refused(String), stop(Stop) }

    /// One run, from its source to its stored result.
    func execute(_ started: TaskRunRecord) async {
        var run = started
        let source = tasks.sourcesDirectory + "/" + run.id
        defer {
            try? FileManager.default.removeItem(atPath: source)
            try? FileManager.default.removeItem(atPath: source + ".home")
            if let upload = run.uploadedContext { try? FileManager.default.removeItem(atPath: upload) }
        }
        let origin = EventOrigin(actor: "task:" + run.task, address: "-")
        do {
            let (result, stop) = try await perform(run, source: source)
            run.steps = result?.steps.map(Self.stepRecord) ?? []
            run.pushed = result?.pushed.map { TaskRunImageRecord(reference: $0.reference, digest: $0.digest) } ?? []
            // Recorded when the run started (perform).
            if let recorded = try? await store.taskRun(id: run.id) { run.baseImages = recorded.baseImages }
            switch (stop, result?.status) {
            case (.timedOut?, _):
                run.status = .failed
                run.reason = "the run exceeded its timeout" + (run.taskAtQueue.map { " of \($0.timeoutSeconds) s" } ?? "")
            case (.cancelRequested?, _):
                run.status = .cancelled
                run.reason = "cancelled"
            case (.diskQuota(let used, let quota)?, _):
                run.status = .failed
                run.reason = RunDiskQuota(limit: quota, paths: [], grows: "", baseline: 0).exceeded(used)
            case (nil, .succeeded?):
                run.status = .succeeded
            case (nil, .failed?):
                run.status = .failed
                run.reason = result?.reason
            case (nil, .cancelled?), (nil, nil):
                run.status = .cancelled
                run.reason = "the server stopped"
            }
            if stop != nil, let why = run.reason {
                // The runner saw only that it was stopped: each step says why.
                for index in run.steps.indices {
                    if run.steps[index].status == StepResult.Status.cancelled.rawValue { run.steps[index].reason = "stopped: " + why }
                    if run.steps[index].status == StepResult.Status.skipped.rawValue { run.steps[index].reason = "not run: " + why }
                }
            }
        } catch {
            run.status = .failed
            run.reason = "\(error)"
        }
        run.finishedAt = Date()
        let recorded = await EventOrigin.$current.withValue(origin) {
            (try? await store.updateTaskRun(run, expected: .running)) ?? false
        }
        if !recorded {
            logger.warning("a task run's result was not recorded (it changed meanwhile)", metadata: ["run": "\(run.id)"])
        }
        logger.info("task run finished", metadata: ["task": "\(run.task)", "run": "\(run.id)", "status": "\(run.status.rawValue)"])
    }

    /// Checks out the source, parses the file for the run, mints the run identity and runs it,
    /// racing the task's timeout and a cancel request.
    private func perform(_ run: TaskRunRecord, source: String) async throws -> (TaskRunResult?, Stop?) {
        // The task must still exist; the run executes it as it was when queued (the store's copy).
        guard let current = try await store.task(named: run.task) else { throw TaskError.notFound("task \(run.task) was deleted") }
        let task = run.taskAtQueue ?? current
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // Measured from before the source is put in place: a clone counts against the quota too.
        let quota = await configuration.runDiskQuotaBytes.asyncMap { limit in
            await RunDiskQuota.start(limit: limit, paths: [source, configuration.runner.runDirectoryPath(run.id)],
                                     grows: configuration.runner.taskStoragePath(task.name))
        }
        var directory = source
        var branch: String?
        var commit: String?
        if let upload = run.uploadedContext {
            try await configuration.checkout.extract(archive: upload, into: source)
        } else if let context = task.context {
            let git = try GitContext(parsing: context)
            let destination: OutboundPolicy.Destination
            do { destination = try await configuration.outbound.check(git.url) } catch {
                throw TaskError.invalid("context refused: \(error.message)")
            }
            let clone = source + "/repo"
            // Cloned from the address just checked (a later answer of the name does not count)
            // and, for a commit trigger's run, at that commit.
            let (checkout, pin, wanted) = (configuration.checkout, try destination.gitPin, run.commit)
            commit = try await RunDiskQuota.bounded(quota, every: configuration.diskCheckInterval) {
                try await checkout.gitClone(url: git.url, branch: git.branch, into: clone, resolve: pin, commit: wanted)
            }
            directory = clone
            if let sub = git.directory {
                // The repository's own links must not lead the context out of it (a `DIR` that
                // is a link to /etc would otherwise become the source the runner confines to).
                let root = URL(fileURLWithPath: clone).resolvingSymlinksInPath().path
                let resolved = URL(fileURLWithPath: clone + "/" + sub).resolvingSymlinksInPath().path
                guard resolved.hasPrefix(root + "/") else {
                    throw TaskError.invalid("the context directory \(sub) leads out of the repository")
                }
                directory = resolved
            }
            branch = git.branch
        } else if !(try tasks.parse(task, runID: run.id).needsContext) {
            // Nothing to build (a `--cmd` task): an empty source.
        } else {
            throw TaskError.invalid("the task has no context and none was uploaded")
        }
        var file = try tasks.parse(task, runID: run.id, branch: branch, commit: commit)
        if task.baseImageTrigger != nil {
            // Built from the base's tag as it is now, not from a copy cached by an earlier run:
            // the digests recorded below are what the build used.
            for index in file.steps.indices {
                if case .build(var arguments) = file.steps[index].action {
                    arguments.pull = true
                    file.steps[index].action = .build(arguments)
                }
            }
        }
        let pushes = try tasks.repositories(of: file)
        if let outside = pushes.first(where: { !task.repositories.contains($0) }) {
            throw TaskError.forbidden("the run pushes to \(outside), which the task did not name when it was saved")
        }
        // Its scope (named when it was saved, never by the file): what its `berth` steps act on
        // (push, pull, delete) and its `cmd` images may be pulled from.
        let commands = file.hasBerthSteps
        let repositories = Array(Set(pushes + (task.scope ?? []))).sorted()
        // The bases its Dockerfiles name, with the digests they resolve to now, recorded before the
        // build pulls them (base-image triggers compare against them).
        let bases = await tasks.resolvedBases(of: file, source: directory)
        if !bases.isEmpty, var current = try await store.taskRun(id: run.id), current.status == .running {
            current.baseImages = bases
            _ = try await store.updateTaskRun(current, expected: .running)
        }
        var credentials: PushCredentials?
        if !repositories.isEmpty {
            // Pull rights on the bases approved when the task was saved (its creator may pull
            // them), never on what the Dockerfile names now.
            let pulls = (task.bases ?? []).compactMap { base -> String? in
                base.reference.lastIndex(of: ":").map { String(base.reference[..<$0]) }
            }
            let identity = RunIdentity(task: task.name, runID: run.id, repositories: repositories,
                                       pullRepositories: Array(Set(pulls)).sorted(),
                                       deadline: Date().addingTimeInterval(Double(task.timeoutSeconds) + 60), commands: commands,
                                       // delete only in its scope (checked against its creator's delete rights),
                                       // never in what its file pushes to (review)
                                       deleteRepositories: task.scope ?? [])
            let (username, password) = try await access.issueRunCredentials(identity, audience: configuration.serviceName)
            credentials = PushCredentials(username: username, password: password)
        }
        let request = TaskRunRequest(taskName: task.name, runID: run.id, taskFile: file, sourceDirectory: directory,
                                     registry: configuration.registry, credentials: credentials)
        let runner = TaskRunner(configuration: configuration.runner)
        let store = self.store
        let tick = configuration.tick
        let timeout = Duration.seconds(task.timeoutSeconds)
        let diskInterval = configuration.diskCheckInterval
        let storedLog = StoredRunLog(store: store, runID: run.id, node: configuration.node, logger: logger)
        let (result, stop, refused) = await withTaskGroup(of: Finish?.self) { group -> (TaskRunResult?, Stop?, String?) in
            group.addTask {
                do { return .result(try await runner.run(request, log: storedLog)) } catch { return .refused("\(error)") }
            }
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return nil }
                return .stop(.timedOut)
            }
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: tick) } catch { return nil }
                    await storedLog.flush()
                    if (try? await store.taskRun(id: run.id))?.cancelRequested == true { return .stop(.cancelRequested) }
                }
                return nil
            }
            if let quota {
                group.addTask {
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: diskInterval) } catch { return nil }
                        let used = await quota.usage()
                        if used > quota.limit { return .stop(.diskQuota(used: used, quota: quota.limit)) }
                    }
                    return nil
                }
            }
            var result: TaskRunResult?
            var stop: Stop?
            var refused: String?
            for await finish in group {
                switch finish {
                case .result(let r): result = r; group.cancelAll()
                case .refused(let reason): refused = reason; group.cancelAll()
                case .stop(let s): if stop == nil { stop = s }; group.cancelAll()
                case nil: break
                }
            }
            return (result, stop, refused)
        }
        await storedLog.flush()
        if let refused, result == nil { throw TaskError.invalid(refused) }
        return (result, stop)
    }

    static func stepRecord(_ step: StepResult) -> TaskRunStepRecord {
        TaskRunStepRecord(id: step.id, status: step.status.rawValue, attempts: step.attempts.map(\.description),
                          exitCode: step.exitCode, reason: step.reason, startedAt: step.started, finishedAt: step.finished)
    }
}

/// A run's disk quota: the bytes under its own paths, plus what its task's storage grew by since
/// the run started (the layer cache the task's runs share was there before). A watchdog, not a
/// filesystem quota: a run may overshoot by what it writes between two checks.
struct RunDiskQuota: Sendable {
    let limit: Int64
    let paths: [String]
    let grows: String
    let baseline: Int64

    static func start(limit: Int64, paths: [String], grows: String) async -> RunDiskQuota {
        let baseline = (try? await NIOThreadPool.singleton.runIfActive { DiskUsage.allocatedBytes(under: grows) }) ?? 0
        return RunDiskQuota(limit: limit, paths: paths, grows: grows, baseline: baseline)
    }

    /// `body` (a clone), stopped and failed when the run's disk use passes `quota` meanwhile.
    static func bounded<T: Sendable>(_ quota: RunDiskQuota?, every interval: Duration,
                                     _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let quota else { return try await body() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while true {
                    try await Task.sleep(for: interval)
                    let used = await quota.usage()
                    if used > quota.limit { throw TaskError.invalid(quota.exceeded(used)) }
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw CancellationError() }
            return value
        }
    }

    func exceeded(_ used: Int64) -> String {
        "the run used \(used) bytes of disk, more than its quota of \(limit) bytes (task-run-disk-quota-bytes)"
    }

    /// Walked on NIO's thread pool, never on an event loop.
    func usage() async -> Int64 {
        let (paths, grows, baseline) = (self.paths, self.grows, self.baseline)
        return (try? await NIOThreadPool.singleton.runIfActive {
            paths.reduce(Int64(0)) { $0 + DiskUsage.allocatedBytes(under: $1) }
                + max(0, DiskUsage.allocatedBytes(under: grows) - baseline)
        }) ?? 0
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
