import Access
import BerthAPIContract
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import OCIModel
import RegistryCore
import RegistryStore
import ServiceLifecycle

/// Build tasks as a feature (issue 16): `/api/v1/tasks…` behind the management check (reading
/// needs management/read, anything else management/write: the Owner role), and the run queue
/// (`TaskQueueService`). A task runs code as the server's user: only those who may manage the
/// registry may create or run one, and a task may only push to repositories its creator may push
/// to. Each run pushes with its own short-lived identity (`Access.RunIdentity`).
public struct TasksFeature: RegistryFeature {
    let tasks: TaskService
    let access: AccessControl
    let events: (any EventLogStore)?

    /// `registry` (this registry's metadata and event log) turns base-image triggers on.
    public init(store: any TaskStore & TaskCommitStore, access: AccessControl, configuration: TasksConfiguration, logger: Logger,
                registry: (any ContentMetadataStore & EventLogStore)? = nil) {
        tasks = TaskService(store: store, configuration: configuration, logger: logger, images: registry)
        self.access = access
        events = registry
    }

    /// The runner of the base-image trigger consumer (tests step it); nil without a registry.
    public func baseImageTriggerRunner() -> EventConsumerRunner? {
        events.map {
            EventConsumerRunner(consumer: BaseImageTriggerConsumer(tasks: tasks), store: $0, batchSize: 200,
                                logger: tasks.logger)
        }
    }

    public var services: [any Service] {
        [TaskQueueService(tasks: tasks, access: access), CommitPollService(tasks: tasks), ExternalBasePollService(tasks: tasks)]
            + (baseImageTriggerRunner().map { [BaseImageTriggerService(runner: $0, poll: tasks.configuration.baseTriggerPoll)] } ?? [])
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let tasks = self.tasks
        let server = routes.server
        let api = routes.management
        @Sendable func mayPush(_ request: Request, _ context: BerthRequestContext) async throws -> @Sendable (String) -> Bool {
            // Judged by the caller's own rights: the management token it presents is scoped to
            // the management API, not to repositories.
            let caller = try await server.caller(request, context).map { Caller(principal: $0.principal, address: $0.address) }
            return { repository in
                server.allows(caller, request, context, repository: repository, action: [.contentWrite, .metadataWrite])
            }
        }
        @Sendable func mayDelete(_ request: Request, _ context: BerthRequestContext) async throws -> @Sendable (String) -> Bool {
            let caller = try await server.caller(request, context).map { Caller(principal: $0.principal, address: $0.address) }
            return { repository in
                server.allows(caller, request, context, repository: repository, action: [.contentDelete, .metadataWrite])
            }
        }
        @Sendable func mayPull(_ request: Request, _ context: BerthRequestContext) async throws -> @Sendable (String) -> Bool {
            let caller = try await server.caller(request, context).map { Caller(principal: $0.principal, address: $0.address) }
            return { repository in
                server.allows(caller, request, context, repository: repository, action: [.contentRead, .metadataRead])
            }
        }
        /// `baseImageTriggerEnabled` / `baseImageTriggerType` of a request onto the stored setting.
        @Sendable func baseImageTrigger(_ body: TaskRequest, current: String?) -> String? {
            switch (body.baseImageTriggerEnabled, body.baseImageTriggerType) {
            case (false?, _): nil
            case (_, let type?): type
            case (true?, nil): current ?? BaseImageTriggerType.runtime.rawValue
            case (nil, nil): current
            }
        }
        @Sendable func origin(_ context: BerthRequestContext) -> EventOrigin {
            EventOrigin(actor: context.managementActor?.name ?? "anonymous", address: context.managementActor?.address ?? "-")
        }

        api.get("tasks") { _, _ in
            server.json(try await tasks.store.tasks().map(TaskView.init))
        }
        api.post("tasks") { request, context in
            let body = try await server.decode(TaskRequest.self, request)
            let now = Date()
            if body.cmd != nil, body.taskFile != nil { throw TaskError.invalid("give a task file or a command (cmd), not both") }
            var record = TaskRecord(
                name: body.name ?? "", taskFile: try body.cmd.map(TaskService.commandFile) ?? body.taskFile ?? "", context: body.context.flatMap { $0.isEmpty ? nil : $0 },
                schedule: body.schedule.flatMap { $0.isEmpty ? nil : $0 }, values: body.values ?? [:],
                timeoutSeconds: body.timeoutSeconds ?? tasks.configuration.defaultTimeoutSeconds, repositories: [],
                enabled: body.enabled ?? true, createdBy: context.managementActor?.name ?? "anonymous", createdAt: now, updatedAt: now,
                baseImageTrigger: baseImageTrigger(body, current: nil))
            record.command = body.cmd
            record.scope = body.scope.flatMap { $0.isEmpty ? nil : $0 }
            var asked = record
            let secret = try tasks.setCommitTrigger(&asked, enabled: body.commitTriggerEnabled)
            let created = try await tasks.create(asked, mayPush: try await mayPush(request, context),
                                                 mayPull: try await mayPull(request, context),
                                                 mayDelete: try await mayDelete(request, context))
            var view = TaskView(created)
            view.gitWebhookSecret = secret
            return server.json(view, status: .created)
        }
        api.get("tasks/:name") { _, context in
            let task = try await tasks.get(try context.parameters.require("name"))
            var view = TaskView(task)
            view.lastCommit = try await tasks.commitStore.taskCommit(task: task.name)?.commit
            return server.json(view)
        }
        api.patch("tasks/:name") { request, context in
            let body = try await server.decode(TaskRequest.self, request)
            var record = try await tasks.get(try context.parameters.require("name"))
            if let name = body.name, name != record.name { throw TaskError.invalid("a task cannot be renamed") }
            if body.cmd != nil, body.taskFile != nil { throw TaskError.invalid("give a task file or a command (cmd), not both") }
            if let file = body.taskFile { record.taskFile = file; record.command = nil }
            if let command = body.cmd { record.taskFile = try TaskService.commandFile(command); record.command = command }
            if let scope = body.scope { record.scope = scope.isEmpty ? nil : scope }
            if let value = body.context { record.context = value.isEmpty ? nil : value }
            if let value = body.schedule {
                record.schedule = value.isEmpty ? nil : value
                record.lastScheduledAt = Date()
            }
            if let values = body.values { record.values = values }
            if let timeout = body.timeoutSeconds { record.timeoutSeconds = timeout }
            if let enabled = body.enabled { record.enabled = enabled }
            let secret = try tasks.setCommitTrigger(&record, enabled: body.commitTriggerEnabled)
            record.baseImageTrigger = baseImageTrigger(body, current: record.baseImageTrigger)
            if record.baseImageTrigger == nil {
                record.bases = nil
                record.externalBases = nil
                record.externalBaseDigests = nil
            }
            record.updatedAt = Date()
            var view = TaskView(try await tasks.update(record, mayPush: try await mayPush(request, context),
                                                       mayPull: try await mayPull(request, context),
                                                       mayDelete: try await mayDelete(request, context)))
            view.gitWebhookSecret = secret
            return server.json(view)
        }
        api.delete("tasks/:name") { _, context in
            try await tasks.delete(try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        // A run: without a body, of the task's own context; with a tar stream
        // (`Content-Type: application/octet-stream` or `application/x-tar`), of that context.
        api.post("tasks/:name/runs") { request, context in
            let name = try context.parameters.require("name")
            let task = try await tasks.get(name)
            // a task's `definition` as saved: the run is queued only while the task holds it
            // (checked again when it is queued; refused here before a context is received)
            let definition = request.uri.queryParameters["ifDefinition"].map(String.init)
            if let definition {
                guard definition.hasPrefix("sha256:"), (try? Digest(parsing: definition)) != nil else {
                    throw TaskError.invalid("ifDefinition takes a task's definition (sha256:...)")
                }
                if task.definitionDigest != definition { throw TaskService.changed(name) }
            }
            var upload: String?
            let type = request.headers[.contentType] ?? ""
            if type.hasPrefix("application/x-tar") || type.hasPrefix("application/octet-stream") {
                upload = try await Self.receiveContext(request, into: tasks.uploadsDirectory,
                                                       limit: tasks.configuration.maxContextBytes)
            }
            do {
                let run = try await EventOrigin.$current.withValue(origin(context)) {
                    try await tasks.queue(name, trigger: upload == nil ? "manual" : "upload", uploadedContext: upload,
                                          ifDefinition: definition)
                }
                return server.json(TaskRunView(run), status: .accepted)
            } catch {
                if let upload { try? FileManager.default.removeItem(atPath: upload) }
                throw error
            }
        }
        api.get("tasks/:name/runs") { request, context in
            let name = try context.parameters.require("name")
            _ = try await tasks.get(name)
            let limit = min(try server.queryInt(request, "limit") ?? 50, 1000)
            return server.json(try await tasks.store.taskRuns(task: name, limit: limit).map(TaskRunView.init))
        }
        api.get("tasks/:name/runs/:id") { _, context in
            server.json(TaskRunView(try await tasks.run(try context.parameters.require("name"), try context.parameters.require("id"))))
        }
        api.post("tasks/:name/runs/:id/cancel") { _, context in
            let (name, id) = (try context.parameters.require("name"), try context.parameters.require("id"))
            let run = try await EventOrigin.$current.withValue(origin(context)) { try await tasks.cancel(name, id) }
            return server.json(TaskRunView(run))
        }
        Self.addGitWebhookRoute(to: routes, tasks: tasks)
        // The run's log from byte `offset` (at most 4 MiB), as text; `X-Berth-Run-Status` says
        // whether more may come (`queued`, `running`) and `X-Berth-Log-Offset` where to go on.
        api.get("tasks/:name/runs/:id/log") { request, context in
            let run = try await tasks.run(try context.parameters.require("name"), try context.parameters.require("id"))
            let offset = max(0, try server.queryInt(request, "offset") ?? 0)
            let bytes = try await tasks.runLog(run.id, offset: Int64(offset), limit: 4 << 20)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; charset=utf-8"
            headers[.cacheControl] = "no-store"
            headers[HTTPField.Name("X-Berth-Run-Status")!] = run.status.rawValue
            headers[HTTPField.Name("X-Berth-Log-Offset")!] = String(offset + bytes.count)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }

    /// Writes an uploaded context (a tar stream) to a file of its own under `directory`, refused
    /// (413) past `limit` bytes. File writes run on NIO's thread pool.
    static func receiveContext(_ request: Request, into directory: String, limit: Int) async throws -> String {
        let path = directory + "/" + UUID().uuidString + ".tar"
        let handle = try await NIOThreadPool.singleton.runIfActive { () -> FileHandle in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
                  let handle = FileHandle(forWritingAtPath: path) else {
                throw TaskError.invalid("cannot store the uploaded context")
            }
            return handle
        }
        var total = 0
        do {
            for try await buffer in request.body {
                total += buffer.readableBytes
                guard total <= limit else {
                    throw ManagementError(status: .contentTooLarge, code: "TOO_LARGE",
                                          message: "the uploaded context is larger than \(limit) bytes")
                }
                let data = Data(buffer.readableBytesView)
                try await NIOThreadPool.singleton.runIfActive { try handle.write(contentsOf: data) }
            }
            try await NIOThreadPool.singleton.runIfActive { try handle.close() }
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        guard total > 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw TaskError.invalid("the uploaded context is empty")
        }
        return path
    }
}

/// Task errors in the management API's envelope.
extension TaskError: ManagementErrorConvertible {
    public var managementError: ManagementError {
        switch self {
        case .invalid(let m): ManagementError(status: .badRequest, code: "INVALID", message: m)
        case .notFound: ManagementError(status: .notFound, code: "NOT_FOUND", message: description)
        case .conflict(let m): ManagementError(status: .conflict, code: "CONFLICT", message: m)
        case .forbidden(let m): ManagementError(status: .forbidden, code: "DENIED", message: m)
        case .changed(let m): ManagementError(status: .conflict, code: "TASK_CHANGED", message: m)
        }
    }
}

// The HTTP edge: records mapped into the management API's contract.

extension TaskView {
    init(_ r: TaskRecord) {
        self.init(name: r.name, taskFile: r.taskFile, context: r.context, schedule: r.schedule, values: r.values,
                  timeoutSeconds: r.timeoutSeconds, repositories: r.repositories, enabled: r.enabled, createdBy: r.createdBy,
                  createdAt: r.createdAt, updatedAt: r.updatedAt, baseImageTriggerType: r.baseImageTrigger,
                  baseImages: r.bases.map { local in
                      // bases in other registries by their full reference, with the digest last polled
                      local.map { TaskRunImageView(reference: $0.reference, digest: nil, runtime: $0.runtime) }
                          + (r.externalBases ?? []).map {
                              TaskRunImageView(reference: $0.reference, digest: r.externalBaseDigests?[$0.reference], runtime: $0.runtime)
                          }
                  })
        commitTriggerEnabled = r.commitTriggerEnabled ?? false
        cmd = r.command
        scope = r.scope
        definition = r.definitionDigest
    }
}

extension TaskRunView {
    init(_ r: TaskRunRecord) {
        self.init(id: r.id, task: r.task, status: r.status.rawValue, trigger: r.trigger, queuedAt: r.queuedAt,
                  startedAt: r.startedAt, finishedAt: r.finishedAt, reason: r.reason,
                  steps: r.steps.map {
                      TaskRunStepView(id: $0.id, status: $0.status, attempts: $0.attempts, exitCode: $0.exitCode, reason: $0.reason,
                                      startedAt: $0.startedAt, finishedAt: $0.finishedAt)
                  },
                  pushed: r.pushed.map { TaskRunImageView(reference: $0.reference, digest: $0.digest) },
                  baseImages: r.baseImages.map {
                      TaskRunImageView(reference: $0.reference, digest: $0.digest, runtime: $0.runtime, platform: $0.platform,
                                       platformDigest: $0.platformDigest)
                  })
        commit = r.commit
    }
}
