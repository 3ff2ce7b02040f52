import Access
import Crypto
import Foundation
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import TaskRunner
import Tasks

/// How this server runs build tasks.
public struct TasksConfiguration: Sendable {
    /// Holds the runner's state (`tasks/<task>/storage`, `runs/<id>`), checked-out sources and
    /// uploaded contexts. Inside the data directory, 0700.
    public var stateDirectory: String
    /// `host[:port]` runs push to (this registry, as `$Registry`).
    public var registry: String
    /// The token audience run identities are minted for (the server's service name).
    public var serviceName: String
    /// How runs reach this registry (`registry`): verified TLS (with a CA file besides the
    /// system's roots) or plain HTTP; the runner's setting (`TaskRunnerConfiguration.registryTransport`).
    public var transport: RegistryTransport {
        get { runner.registryTransport }
        set { runner.registryTransport = newValue }
    }
    /// Git contexts are checked against it (loopback only when the operator allows it).
    public var outbound: OutboundPolicy
    /// Runs at the same time on this node.
    public var maxConcurrentRuns = 2
    /// Largest uploaded context (a tar stream).
    public var maxContextBytes = 256 << 20
    /// Most members, and most bytes unpacked, of an uploaded context (checked before tar runs).
    public var maxContextEntries: Int {
        get { checkout.contextLimits.maxEntries }
        set { checkout.contextLimits.maxEntries = newValue }
    }
    public var maxContextUnpackedBytes: Int64 {
        get { checkout.contextLimits.maxBytes }
        set { checkout.contextLimits.maxBytes = newValue }
    }
    /// Default of a task's `timeoutSeconds`, and its ceiling.
    public var defaultTimeoutSeconds = 3600
    public var maxTimeoutSeconds = 6 * 3600
    /// How often the queue looks for runs to start, timers due and cancel requests.
    public var tick: Duration = .milliseconds(500)
    /// The queue's clock for timers and deferred base-image triggers (a test sets its own).
    public var now: @Sendable () -> Date = { Date() }
    /// Base-image triggers of one task within this many seconds are coalesced (the first queues
    /// a run at once, the rest at most one more at the window's end).
    public var baseTriggerWindow: TimeInterval = 5
    /// How often the base-image trigger consumer reads the event log.
    public var baseTriggerPoll: Duration = .milliseconds(200)
    /// The node's name in run records.
    public var node = ProcessInfo.processInfo.hostName + ":" + String(ProcessInfo.processInfo.processIdentifier)
    /// How often the git-commit triggers look at their branches (`git ls-remote`; one node of a cluster).
    public var commitPollInterval: Duration = .seconds(60)
    /// Bytes of disk one run may use: its source, its run directory (temporary files, logs) and
    /// what its task's storage grows by while it runs (layers, containers of its steps). Checked
    /// every `diskCheckInterval`; a run over it is stopped and fails. Nil: no quota.
    public var runDiskQuotaBytes: Int64? = 10 << 30
    public var diskCheckInterval: Duration = .seconds(1)
    /// How often bases in other registries are polled for a new digest (one node of a cluster).
    public var externalBasePollInterval: Duration = .seconds(600)
    /// Registries (`host[:port]`) whose bases are polled over plain HTTP (a loopback or lab
    /// registry the operator names); every other is asked over HTTPS.
    /// Runs' tools reach them over plain HTTP too (the runner's `insecureRegistries`).
    public var insecureBaseRegistries: Set<String> = [] {
        didSet { runner.insecureRegistries = insecureBaseRegistries }
    }
    /// Resolves a base in another registry (`host/repository:tag`) to the digest its tag points
    /// at; nil: `ExternalBasePollService.upstreamDigest` (the registry's API, after the outbound check).
    public var resolveExternalBase: (@Sendable (String) async throws -> String)? = nil
    /// Seals the tasks' push-webhook secrets (shared by every node: `TasksFeature.sharedSealingKey`).
    public var sealingKey = SymmetricKey(size: .bits256)
    /// Reads a manifest of this registry (media type and bytes) by repository and digest: how a
    /// base that is an index is resolved to the manifest of `platform`. Nil: indexes are not looked into.
    public var manifestContent: (@Sendable (String, OCIModel.Digest) async throws -> (mediaType: String, bytes: [UInt8]))? = nil
    /// The platform builds run for (`os/architecture`): this machine's (buildah builds for it).
    public var platform = TasksConfiguration.hostPlatform
    public static var hostPlatform: String {
        #if arch(arm64)
        "linux/arm64"
        #else
        "linux/amd64"
        #endif
    }
    /// The runner's own settings (tools, storage driver, memory limit).
    public var runner: TaskRunnerConfiguration
    public var checkout = SourceCheckout()

    /// How runs' tools reach the registry they push to, which is also where their token comes
    /// from (the challenge's realm names the same host):
    /// - with a public URL, its scheme decides: `https` is verified TLS, against the system's
    ///   roots, `task-registry-ca` and the listener's own certificate (when it serves TLS: a
    ///   public URL naming the listener itself works with a self-signed certificate; trusting
    ///   it for a proxy's name grants nothing, its key being the server's); a TLS-terminating
    ///   proxy in front of a plain listener is verified, never reached with the listener's plain
    ///   HTTP carried over to it, which sent the run's credentials to the proxy over unverified
    ///   TLS; `http` is the operator's own choice of plain HTTP;
    /// - else the listener's: TLS verified against `task-registry-ca` and its own certificate
    ///   (`tls-cert`), or plain HTTP.
    public static func runTransport(publicURL: String?, listenerTLS: Bool, listenerCertificate: String?,
                                    caFile: String?) -> RegistryTransport {
        let trusted = [caFile, listenerTLS ? listenerCertificate : nil].compactMap { $0 }
        if let publicURL, let scheme = URL(string: publicURL)?.scheme?.lowercased() {
            return scheme == "http" ? .plainHTTP : .verifiedTLS(caFiles: trusted)
        }
        return listenerTLS ? .verifiedTLS(caFiles: trusted) : .plainHTTP
    }

    /// Checks a `task-registry-ca` file when the server starts (a bad one would fail every run).
    public static func checkRegistryCA(_ file: String) throws {
        _ = try RegistryTransport.certificates(inFiles: [file])
    }

    public init(stateDirectory: String, registry: String, serviceName: String, transport: RegistryTransport, outbound: OutboundPolicy) {
        self.stateDirectory = stateDirectory
        self.registry = registry
        self.serviceName = serviceName
        self.outbound = outbound
        runner = TaskRunnerConfiguration(stateDirectory: stateDirectory)
        runner.registryTransport = transport
    }
}

/// A refusal of the tasks API.
public enum TaskError: Error, Equatable {
    case invalid(String)
    case notFound(String)
    case conflict(String)
    case forbidden(String)
    /// The task no longer holds the definition the caller saved (`queue(ifDefinition:)`).
    case changed(String)
}

/// A task's context: a git URL with its branch and an optional directory in it.
struct GitContext: Equatable {
    var url: String
    var branch: String
    var directory: String?

    /// `GIT_URL#BRANCH[:DIR]`.
    init(parsing text: String) throws(TaskError) {
        guard let hash = text.lastIndex(of: "#") else { throw .invalid("context must be GIT_URL#BRANCH[:DIR]") }
        url = String(text[..<hash])
        let rest = text[text.index(after: hash)...]
        if let colon = rest.firstIndex(of: ":") {
            branch = String(rest[..<colon])
            directory = String(rest[rest.index(after: colon)...])
        } else {
            branch = String(rest)
        }
        guard let scheme = URL(string: url)?.scheme?.lowercased(), scheme == "http" || scheme == "https",
              URL(string: url)?.host?.isEmpty == false else {
            throw .invalid("a git context must be an http(s) URL")
        }
        guard !branch.isEmpty, !branch.hasPrefix("-"), !branch.contains(".."),
              branch.utf8.allSatisfy({ Self.branchByte($0) }) else {
            throw .invalid("invalid branch in context: use letters, digits, '-', '_', '.', '/'")
        }
        if let directory {
            guard !directory.isEmpty, !directory.hasPrefix("/"),
                  !directory.split(separator: "/").contains(where: { $0 == ".." }) else {
                throw .invalid("the context directory must be a relative path inside the repository")
            }
        }
    }

    private static func branchByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
            || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") || c == UInt8(ascii: "/")
    }
}

/// Tasks and runs: validation, the store, and what the API and the queue ask.
public struct TaskService: Sendable {
    let store: any TaskStore & TaskCommitStore
    var commitStore: any TaskCommitStore { store }
    let configuration: TasksConfiguration
    let logger: Logger
    /// Where base images' tags are resolved (nil: base-image triggers are off).
    let images: (any ContentMetadataStore)?

    public init(store: any TaskStore & TaskCommitStore, configuration: TasksConfiguration, logger: Logger,
                images: (any ContentMetadataStore)? = nil) {
        self.store = store
        self.images = images
        self.configuration = configuration
        self.logger = logger
    }

    /// Task names become directory names of the runner: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64.
    static func isValidName(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 64, isAlnum(first) else { return false }
        return s.utf8.allSatisfy { isAlnum($0) || $0 == 0x5f || $0 == 0x2e || $0 == 0x2d }
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
    }

    /// The task file parsed for a run (or, with `cb0`, to check it): refused with its line.
    func parse(_ task: TaskRecord, runID: String, branch: String? = nil, commit: String? = nil) throws(TaskError) -> TaskFile {
        var values = TaskValues()
        do {
            for (key, value) in task.values.sorted(by: { $0.key < $1.key }) { try values.set(key + "=" + value) }
        } catch {
            throw .invalid("values: \(error)")
        }
        let run = RunContext(id: runID, registry: configuration.registry, date: Date(), commit: commit, branch: branch,
                             taskName: task.name)
        do {
            return try TaskFile.parse(task.taskFile, run: run, values: values)
        } catch {
            throw .invalid("\(error)")
        }
    }

    /// The task file of a `--cmd` task; an empty or oversized command is refused.
    static func commandFile(_ command: String) throws(TaskError) -> String {
        guard !command.trimmingCharacters(in: .whitespaces).isEmpty else { throw .invalid("cmd is empty") }
        guard command.utf8.count <= 16 << 10, !command.contains("\0") else { throw .invalid("cmd is too long or holds a NUL byte") }
        return TaskFile.forCommand(command)
    }

    /// The repositories a parsed file's push steps name; a push to another registry is refused.
    func repositories(of file: TaskFile) throws(TaskError) -> [String] {
        var names: [String] = []
        for step in file.steps {
            guard case .push(let references) = step.action else { continue }
            for reference in references {
                guard reference.host == configuration.registry else {
                    throw .invalid("line \(step.line): step \(step.id) pushes to \(reference.host ?? "docker.io"); "
                                   + "a task pushes only to this registry ($Registry, \(configuration.registry))")
                }
                if !names.contains(reference.repository) { names.append(reference.repository) }
            }
        }
        return names
    }

    /// A task as asked: checked (name, file, context, schedule, values, timeout) and its push
    /// repositories found. `mayPush` says whether the caller may push to a repository.
    func validated(_ record: TaskRecord, mayPush: (String) -> Bool, mayPull: (String) -> Bool,
                   mayDelete: (String) -> Bool) async throws(TaskError) -> TaskRecord {
        var record = record
        guard Self.isValidName(record.name) else {
            throw .invalid("task names are 1-64 characters of letters, digits, '.', '_', '-', starting with a letter or digit")
        }
        guard record.taskFile.utf8.count <= TaskLimits.default.maxFileBytes else { throw .invalid("the task file is too large") }
        guard record.values.count <= 100 else { throw .invalid("at most 100 values") }
        if let context = record.context {
            let git = try GitContext(parsing: context)
            do { try await configuration.outbound.checkTarget(git.url) } catch { throw .invalid("context refused: \(error.message)") }
        }
        if record.commitTriggerEnabled == true, record.context == nil {
            throw .invalid("a commit trigger needs a git context (--context GIT_URL#BRANCH)")
        }
        // A git context gives every run a branch and a commit: checked with stand-ins for them.
        let git = record.context.flatMap { try? GitContext(parsing: $0) }
        let file = try parse(record, runID: "cb0", branch: git?.branch, commit: git.map { _ in String(repeating: "0", count: 40) })
        if let schedule = record.schedule {
            do { _ = try CronSchedule(parsing: schedule) } catch { throw .invalid("schedule: \(error)") }
            guard record.context != nil || !file.needsContext else {
                throw .invalid("a schedule needs a git context (--context GIT_URL#BRANCH) for the task's build steps")
            }
        }
        guard record.timeoutSeconds >= 1, record.timeoutSeconds <= configuration.maxTimeoutSeconds else {
            throw .invalid("timeoutSeconds must be 1 to \(configuration.maxTimeoutSeconds)")
        }
        record.repositories = try repositories(of: file)
        for repository in record.repositories where !mayPush(repository) {
            throw .forbidden("you may not push to \(repository), which the task's push steps name")
        }
        // The scope of its `berth` steps: the creator's own push and delete rights, never more.
        if let scope = record.scope {
            guard scope.count <= 100 else { throw .invalid("at most 100 scope repositories") }
            for repository in scope {
                guard RepositoryName.isValid(repository) else { throw .invalid("scope: invalid repository name \(repository)") }
                guard mayPush(repository), mayDelete(repository) else {
                    throw .forbidden("you may not push and delete in \(repository), which the task's scope names")
                }
            }
            record.scope = Array(Set(scope)).sorted()
        }
        if file.hasBerthSteps, (record.scope ?? []).isEmpty {
            throw .invalid("a task that runs berth needs a scope: the repositories it acts on (--repository)")
        }
        try await validateBaseImageTrigger(&record, file: file, mayPull: mayPull)
        return record
    }

    func create(_ record: TaskRecord, mayPush: (String) -> Bool, mayPull: (String) -> Bool = { _ in false },
                mayDelete: (String) -> Bool = { _ in false }) async throws -> TaskRecord {
        let record = try await validated(record, mayPush: mayPush, mayPull: mayPull, mayDelete: mayDelete)
        guard let stored = try await store.createTask(record, markEventLog: true) else {
            throw TaskError.conflict("task \(record.name) exists")
        }
        return stored
    }

    func get(_ name: String) async throws -> TaskRecord {
        guard let task = try await store.task(named: name) else { throw TaskError.notFound("task \(name)") }
        return task
    }

    func update(_ record: TaskRecord, mayPush: (String) -> Bool, mayPull: (String) -> Bool = { _ in false },
                mayDelete: (String) -> Bool = { _ in false }) async throws -> TaskRecord {
        let record = try await validated(record, mayPush: mayPush, mayPull: mayPull, mayDelete: mayDelete)
        guard try await store.updateTask(record) else { throw TaskError.notFound("task \(record.name)") }
        return record
    }

    func delete(_ name: String) async throws {
        // Any run of the task, not only its newest: an older run may still run while newer ones wait.
        if try await store.runningTaskRuns().contains(where: { $0.task == name }) {
            throw TaskError.conflict("task \(name) has a run in progress; cancel it first")
        }
        let waiting = try await store.taskRuns(task: name, limit: 1000).filter { $0.status == .queued }
        guard try await store.deleteTask(named: name) else { throw TaskError.notFound("task \(name)") }
        // Contexts uploaded for runs that will never start.
        for run in waiting { removeUpload(run) }
    }

    /// Deletes a run's uploaded context (when it is on this node's disk, under the uploads directory).
    func removeUpload(_ run: TaskRunRecord) {
        guard let upload = run.uploadedContext, upload.hasPrefix(uploadsDirectory + "/"), !upload.contains("/../") else { return }
        try? FileManager.default.removeItem(atPath: upload)
    }

    /// Queues a run; `uploadedContext` is the path of an uploaded tar archive. With `ifDefinition`
    /// (a `TaskView.definition` the caller saved), only while the task still holds it.
    func queue(_ name: String, trigger: String, uploadedContext: String?, ifDefinition: String? = nil) async throws -> TaskRunRecord {
        let task = try await get(name)
        // first: a caller whose definition was replaced hears that, not about another's file
        if let ifDefinition, task.definitionDigest != ifDefinition { throw Self.changed(name) }
        guard task.enabled else { throw TaskError.conflict("task \(name) is disabled") }
        let needsContext = try parse(task, runID: "cb0").needsContext
        guard uploadedContext != nil || task.context != nil || !needsContext else {
            throw TaskError.invalid("task \(name) has no context: upload one with the run (berth task run --context DIR)")
        }
        do {
            guard let run = try await store.queueTaskRun(task: name, trigger: trigger, uploadedContext: uploadedContext,
                                                         ifDefinition: ifDefinition) else {
                throw TaskError.notFound("task \(name)")
            }
            return run
        } catch is TaskDefinitionChanged {
            throw Self.changed(name)
        }
    }

    static func changed(_ name: String) -> TaskError {
        .changed("task \(name) changed since it was saved for this run (another `berth run` or `berth build` with the same --name?)")
    }

    func run(_ task: String, _ id: String) async throws -> TaskRunRecord {
        guard let run = try await store.taskRun(id: id), run.task == task else { throw TaskError.notFound("run \(id) of task \(task)") }
        return run
    }

    /// A queued run is cancelled at once; a running one is asked to stop (the node running it
    /// stops it within a tick). A finished one is refused.
    func cancel(_ task: String, _ id: String) async throws -> TaskRunRecord {
        for _ in 0..<5 {
            var run = try await run(task, id)
            switch run.status {
            case .queued:
                run.status = .cancelled
                run.finishedAt = Date()
                run.reason = "cancelled before it started"
                if try await store.updateTaskRun(run, expected: .queued) {
                    removeUpload(run)   // it will never start: nothing else removes it
                    return run
                }
            case .running:
                run.cancelRequested = true
                if try await store.updateTaskRun(run, expected: .running) { return run }
            case .succeeded, .failed, .cancelled:
                throw TaskError.conflict("run \(id) has finished (\(run.status.rawValue))")
            }
        }
        throw TaskError.conflict("run \(id) changed while it was being cancelled; try again")
    }

    /// The run's log file (`runs/<id>/logs/run.log` of the runner's state).
    func logPath(_ id: String) -> String {
        configuration.runner.stateDirectory + "/runs/" + id + "/logs/run.log"
    }

    var uploadsDirectory: String { configuration.stateDirectory + "/uploads" }
    var sourcesDirectory: String { configuration.stateDirectory + "/sources" }
}

extension TaskError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalid(let m), .conflict(let m), .forbidden(let m), .changed(let m): m
        case .notFound(let m): "\(m) not found"
        }
    }
}

extension TasksConfiguration {
    /// Points a task's `berth` steps at this server's own listener (`BerthStepEndpoint.forListener`:
    /// loopback for a wildcard address; with TLS a name the certificate holds, reached at the
    /// listener, the certificate file trusted) and runs them with `executable`. Returns why
    /// berth steps are off when the certificate names nothing a client could verify.
    public mutating func runBerthSteps(executable: String?, listenHost: String, port: Int,
                                       tls: (certificateFile: String, names: [String])?) -> String? {
        runner.berthExecutable = executable
        let (endpoint, unavailable, refused) = Self.berthStepEndpoint(listenHost: listenHost, port: port, tls: tls)
        runner.berthEndpoint = endpoint
        runner.berthUnavailable = unavailable
        if let target = runner.berthTarget {
            target.set(endpoint: endpoint, unavailable: unavailable)
        } else {
            runner.berthTarget = BerthStepTarget(endpoint: endpoint, unavailable: unavailable)
        }
        return refused
    }

    /// After a reload of the TLS certificate (SIGHUP): the endpoint made again from the names the
    /// certificate holds now, for every run that starts a `berth` step from here on (each copy
    /// of this configuration shares `runner.berthTarget`). Returns why berth steps are off, if so.
    public func refreshBerthSteps(listenHost: String, port: Int, tls: (certificateFile: String, names: [String])?) -> String? {
        let (endpoint, unavailable, refused) = Self.berthStepEndpoint(listenHost: listenHost, port: port, tls: tls)
        runner.berthTarget?.set(endpoint: endpoint, unavailable: unavailable)
        return refused
    }

    static func berthStepEndpoint(listenHost: String, port: Int, tls: (certificateFile: String, names: [String])?)
        -> (BerthStepEndpoint?, String, String?) {
        switch BerthStepEndpoint.forListener(host: listenHost, port: port, tls: tls) {
        case .success(let endpoint):
            return (endpoint, "this server runs no berth commands in tasks", nil)
        case .failure(let error):
            return (nil, "this server runs no berth commands in tasks: \(error)", error.description)
        }
    }
}
