import Foundation
import OCIModel
import Tasks

/// How the runner runs steps on this machine.
public struct TaskRunnerConfiguration: Sendable {
    /// Holds each task's storage (`tasks/<task>/storage`, its layer cache) and each run's
    /// directory (`runs/<run id>`).
    public var stateDirectory: String
    /// Where run roots are made; short, as podman refuses a run root over 50 characters.
    public var runRootParent = "/tmp"
    public var buildah = "/usr/bin/buildah"
    public var podman = "/usr/bin/podman"
    /// containers-storage driver: `vfs` works everywhere; `overlay` where the kernel allows it.
    public var storageDriver = "vfs"
    /// podman's `--memory` for `cmd` steps.
    public var memoryLimit = "512m"
    /// How the run's tools reach this registry (the run's `registry`): TLS verified against the
    /// system's roots (and a CA file), or plain HTTP. Never a global `--tls-verify=false`: the
    /// choice is written per registry into the run's `registries.conf` and certificate directory.
    public var registryTransport: RegistryTransport = .verifiedTLS(caFiles: [])
    /// Other registries the run's tools may reach over plain HTTP or unverified TLS (the
    /// operator's `task-insecure-base-registries`); every other registry is verified.
    public var insecureRegistries: Set<String> = []
    /// Runs `buildah bud` in a PID namespace of its own (`unshare --pid --fork --mount-proc`):
    /// chroot isolation gives a build's `RUN` no PID namespace, so a Dockerfile could see every
    /// process of the host and, holding CAP_KILL as root, kill any of them (the server, its
    /// database). With it, an IPC namespace of its own (no `RUN` attaches the host's System V IPC
    /// objects). Needs CAP_SYS_ADMIN, so on by default when the server runs as root.
    public var isolateBuildPIDs = geteuid() == 0
    public var unshare = "/usr/bin/unshare"
    /// Starts each tool of the build sandbox with the capabilities it never uses dropped from its
    /// bounding set (`ToolCommands.sandboxCapabilityDrops`); under `/usr`, which the sandbox shows.
    public var setpriv = "/usr/bin/setpriv"
    /// Directories the build sandbox never shows, even where they lie under a directory it
    /// shows (`/usr`): the server's data directory. The state directory is always hidden (but
    /// for the run's own directories in it).
    public var hiddenDirectories: [String] = []
    /// A build step without network (`network: none`, the default) runs buildah in a network
    /// namespace of its own (`unshare --net`), which needs CAP_SYS_ADMIN: on when the server runs
    /// as root; else such a build is refused and says to ask for `network: host`.
    public var isolateBuildNetwork = geteuid() == 0
    /// Each build step's processes (buildah and its `RUN`s) are put in a memory cgroup of their
    /// own with this limit, in bytes: going over it, the kernel kills one of them and the build
    /// fails. Nil: no limit. Where no writable memory cgroup exists, the run's log says so and
    /// the build runs without the limit.
    public var buildMemoryLimitBytes: Int64? = 2 << 30
    /// Where build steps' memory cgroups are made (inside this process's own memory cgroup).
    public var memoryCgroups: @Sendable () -> MemoryCgroups? = { MemoryCgroups.current() }
    /// Moves a build into its cgroup before it starts (`sh -c 'echo $$ > …/cgroup.procs && exec …'`).
    public var shell = "/bin/sh"
    /// The server's own binary, run for a task's `berth` steps (`Tasks.BerthCommand`); nil: such
    /// steps are refused. On Linux `/proc/self/exe` (`BerthStepEndpoint`'s caller sets it): the
    /// kernel resolves it, in the child that executes it, to the image the server runs, also
    /// after the file was replaced or deleted by an upgrade.
    public var berthExecutable: String?
    /// This server's own listener, which a `berth` step talks to (`BERTH_REGISTRY`, and with TLS
    /// `BERTH_CONNECT_ADDRESS` / `BERTH_CA_FILE` of its environment); never the public URL.
    public var berthEndpoint: BerthStepEndpoint?
    /// Why this server runs no `berth` steps, said in a refused step's reason.
    public var berthUnavailable = "this server runs no berth commands in tasks"
    /// When set, the endpoint (or why there is none) as it is now, in place of `berthEndpoint`
    /// and `berthUnavailable`: the server replaces it when SIGHUP reloads its certificate, whose
    /// names the endpoint's URL is made of.
    public var berthTarget: BerthStepTarget?

    public init(stateDirectory: String) { self.stateDirectory = stateDirectory }
}

/// How a run's tools (buildah, podman) reach this registry.
public enum RegistryTransport: Sendable, Equatable {
    /// HTTPS with the certificate verified: against the system's roots, and against the PEM
    /// certificates in `caFiles` (only their CERTIFICATE blocks, read when a run starts and
    /// placed in the run's own `certs.d` for this registry only, never trusted for another).
    case verifiedTLS(caFiles: [String])
    /// Plain HTTP (a listener without TLS, or a public URL that says `http://`): this registry
    /// alone is marked `insecure` in the run's `registries.conf`.
    case plainHTTP
}

extension RegistryTransport {
    /// The CERTIFICATE blocks of a PEM text, each with its BEGIN and END lines (a private key or
    /// anything else in the file is left out).
    public static func certificates(inPEM text: String) -> [String] {
        let begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----"
        var blocks: [String] = []
        var rest = text[...]
        while let start = rest.range(of: begin), let stop = rest[start.upperBound...].range(of: end) {
            blocks.append(String(rest[start.lowerBound..<stop.upperBound]) + "\n")
            rest = rest[stop.upperBound...]
        }
        return blocks
    }

    /// The certificates of `files`, in order; throws when one cannot be read or holds none.
    public static func certificates(inFiles files: [String]) throws -> String {
        var all = ""
        for file in files {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw TaskRunError("cannot read the CA file \(file): \(error.localizedDescription)")
            }
            let blocks = certificates(inPEM: text)
            guard !blocks.isEmpty else { throw TaskRunError("the CA file \(file) holds no PEM certificate") }
            all += blocks.joined()
        }
        return all
    }
}

/// The run identity's credentials for the registry, written only to the run's auth file.
public struct PushCredentials: Sendable, CustomStringConvertible {
    public var username: String
    public var password: String
    public init(username: String, password: String) { self.username = username; self.password = password }
    public var description: String { "PushCredentials(\(username), ***)" }
}

/// One run of a parsed task file.
public struct TaskRunRequest: Sendable {
    /// Names the task's storage, so its layer cache is reused by its next run and by no other task.
    public var taskName: String
    public var runID: String
    /// Parsed for this run (variables and values already expanded: `TaskFile.parse`).
    public var taskFile: TaskFile
    /// The run's source: build contexts, Dockerfiles and working directories must lie inside it.
    public var sourceDirectory: String
    /// `host[:port]` of this registry: the only registry a push step may push to.
    public var registry: String
    public var credentials: PushCredentials?

    public init(taskName: String, runID: String, taskFile: TaskFile, sourceDirectory: String, registry: String,
                credentials: PushCredentials?) {
        self.taskName = taskName; self.runID = runID; self.taskFile = taskFile
        self.sourceDirectory = sourceDirectory; self.registry = registry; self.credentials = credentials
    }
}

/// Runs a task file's steps with buildah and podman as child processes (see `ChildProcess`):
/// in plan order, steps whose `when` allows it at the same time, each with its timeout, retries,
/// `ignoreErrors`, env and working directory. The first step that fails (without
/// `ignoreErrors`) fails the run: the steps still running are stopped and the rest skipped, so
/// a push that waits for a failed test never runs. Cancelling the calling task stops every
/// running child and marks the run cancelled.
public struct TaskRunner: Sendable {
    public var configuration: TaskRunnerConfiguration

    public init(configuration: TaskRunnerConfiguration) { self.configuration = configuration }

    /// Throws only when the run cannot start (an invalid task name or run id, a run id already
    /// used, no source directory); everything after that is in the result.
    public func run(_ request: TaskRunRequest, log sink: (any TaskLogSink)? = nil) async throws -> TaskRunResult {
        guard Self.isSafeName(request.taskName) else { throw TaskRunError("invalid task name \(Confined.quote(request.taskName))") }
        guard Self.isSafeName(request.runID) else { throw TaskRunError("invalid run id \(Confined.quote(request.runID))") }
        guard let source = Confined.realPath(request.sourceDirectory), Confined.isDirectory(source) else {
            throw TaskRunError("the source directory \(request.sourceDirectory) does not exist")
        }
        let directory = try RunDirectory.create(configuration: configuration, taskName: request.taskName, runID: request.runID,
                                                registry: request.registry,
                                                reached: RunExecution.registriesReached(by: request.taskFile, source: source))
        defer { directory.cleanUp() }
        var secrets: [String] = []
        if let credentials = request.credentials {
            secrets = try directory.writeAuthFile(registry: request.registry, credentials: credentials)
        }
        let log = try RunLog(path: directory.logFile, sink: sink, secrets: secrets)
        let tools = ToolCommands(configuration: configuration, directory: directory,
                                 hasCredentials: request.credentials != nil, source: source)
        let execution = RunExecution(request: request, source: source, directory: directory, tools: tools, log: log)
        let result = await execution.run()
        await log.close()
        return result
    }

    /// Task names and run ids become directory and container names: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64.
    static func isSafeName(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 64, isAlnum(first) else { return false }
        return s.utf8.allSatisfy { isAlnum($0) || $0 == 0x5f || $0 == 0x2e || $0 == 0x2d }
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
    }
}

/// One run in progress.
struct RunExecution: Sendable {
    let request: TaskRunRequest
    let source: String
    let directory: RunDirectory
    let tools: ToolCommands
    let log: RunLog

    var file: TaskFile { request.taskFile }

    func run() async -> TaskRunResult {
        let plan = file.plan
        var results: [String: StepResult] = [:]
        var failure: String?
        await withTaskGroup(of: StepResult.self) { group in
            var completed = Set<String>()   // succeeded, or failed with ignoreErrors
            var started = Set<String>()
            func startReady() {
                guard failure == nil, !Task.isCancelled else { return }
                for id in plan.ready(after: completed) where !started.contains(id) {
                    guard let step = file.step(id), let index = file.steps.firstIndex(of: step) else { continue }
                    started.insert(id)
                    group.addTask { await runStep(step, index: index) }
                }
            }
            startReady()
            while let result = await group.next() {
                results[result.id] = result
                if result.status == .succeeded || result.ignoredFailure {
                    completed.insert(result.id)
                } else if failure == nil, result.status != .cancelled || !Task.isCancelled {
                    failure = "step \(result.id) \(result.status == .timedOut ? "timed out" : "failed")"
                        + (result.reason.map { ": \($0)" } ?? "")
                    group.cancelAll()
                }
                startReady()
            }
        }
        let cancelled = Task.isCancelled
        let steps = file.steps.map { step in
            var result = results[step.id] ?? StepResult(id: step.id, status: .skipped, attempts: [], ignoredFailure: false,
                                                         reason: nil, started: nil, finished: nil, pushed: [])
            // Why a step was stopped or never ran, in its own record (not only in the log).
            let why = cancelled ? "the run was cancelled" : failure
            if let why, result.status == .cancelled { result.reason = "stopped: " + why }
            if let why, result.status == .skipped { result.reason = "not run: " + why }
            return result
        }
        if steps.contains(where: { $0.status == .timedOut || $0.status == .cancelled }) {
            // A build stopped half-way leaves its working container in the task's storage.
            _ = await Self.uncancelled { await ChildProcess.run(tools.removeBuildContainers(), timeout: .seconds(60)) { _, _ in } }
        }
        let status: TaskRunResult.Status = cancelled ? .cancelled : (failure == nil ? .succeeded : .failed)
        await log.record(step: "-", .runner, "run \(status.rawValue)" + ((cancelled ? "the run was cancelled" : failure).map { ": \($0)" } ?? ""))
        return TaskRunResult(runID: request.runID, status: status, reason: cancelled ? "the run was cancelled" : failure,
                             steps: steps, runDirectory: directory.path)
    }

    /// Runs one step: up to 1 + retries attempts, each within the step's timeout.
    func runStep(_ step: Step, index: Int) async -> StepResult {
        var result = StepResult(id: step.id, status: .failed, attempts: [], ignoredFailure: false, reason: nil,
                                started: Date(), finished: nil, pushed: [])
        attempts: for attempt in 0...step.retries {
            // startDelay before the first attempt, retryDelay before each retry (a stop ends the wait).
            let delay = attempt == 0 ? step.startDelay : step.retryDelay
            if delay > 0, !Task.isCancelled {
                await log.record(step: step.id, .runner, "waiting \(delay) s (\(attempt == 0 ? "startDelay" : "retryDelay"))")
                try? await Task.sleep(for: .seconds(delay))
            }
            if Task.isCancelled { result.attempts.append(.cancelled); result.status = .cancelled; break }
            if attempt > 0 { await log.record(step: step.id, .runner, "retry \(attempt) of \(step.retries)") }
            let outcome = await runAttempt(step, index: index, attempt: attempt, pushed: &result.pushed)
            result.attempts.append(outcome)
            await log.record(step: step.id, .runner, outcome == .timedOut ? "timed out after \(step.timeout) s" : "\(outcome)")
            switch outcome {
            case .exited(0): result.status = .succeeded; break attempts
            case .refused(let reason): result.status = .failed; result.reason = reason; break attempts
            case .cancelled: result.status = .cancelled; break attempts
            case .timedOut: result.status = .timedOut; result.reason = "timed out after \(step.timeout) s"
            case .exited, .killed, .memoryLimit: result.status = .failed; result.reason = "\(outcome)"
            }
        }
        if result.status == .succeeded { result.reason = nil }
        // Said more precisely by the run (which step's failure stopped it, or a cancel).
        if result.status == .cancelled { result.reason = "stopped" }
        if result.status == .failed || result.status == .timedOut, step.ignoreErrors {
            result.ignoredFailure = true
            await log.record(step: step.id, .runner, "failure ignored (ignoreErrors)")
        }
        result.finished = Date()
        return result
    }

    func runAttempt(_ step: Step, index: Int, attempt: Int, pushed: inout [PushedImage]) async -> AttemptOutcome {
        var commands: [(command: ChildCommand, push: (reference: String, digestFile: String)?, container: String?)]
        switch prepare(step, index: index, attempt: attempt) {
        case .failure(let refusal):
            return .refused(refusal.description)
        case .success(let prepared): commands = prepared
        }
        pushed = []
        if case .build = step.action, !tools.configuration.isolateBuildPIDs {
            await log.record(step: step.id, .runner,
                             "no build sandbox (it needs the server to run as root): the build runs as the server's user and sees what it can read")
        }
        guard case .build = step.action, let limit = tools.configuration.buildMemoryLimitBytes, !commands.isEmpty else {
            return await runCommands(commands, step: step, pushed: &pushed)
        }
        // The build's memory cgroup: made before it starts, removed (with anything of the build
        // still in it) after it ends.
        let cgroup: BuildCgroup?
        switch tools.configuration.memoryCgroups().map({ $0.create(name: "berth-build-\(request.runID)-\(index)-\(attempt)", limitBytes: limit) }) {
        case nil:
            cgroup = nil
            await log.record(step: step.id, .runner, "no memory limit for this build: this process has no memory cgroup (/proc/self/cgroup)")
        case .failure(let error)?:
            cgroup = nil
            await log.record(step: step.id, .runner, "no memory limit for this build: \(error)")
        case .success(let group)?:
            cgroup = group
            // The build is the last command (the pulls of a build without network come first).
            commands[commands.count - 1].command = tools.inCgroup(commands[commands.count - 1].command, procs: group.procs)
            await log.record(step: step.id, .runner, "memory limit \(limit) bytes (cgroup \(group.path))")
        }
        var outcome = await runCommands(commands, step: step, pushed: &pushed)
        if let cgroup {
            if outcome != .exited(0), outcome != .timedOut, outcome != .cancelled, let kills = cgroup.oomKills(), kills > 0 {
                await log.record(step: step.id, .runner,
                                 "the build went over its memory limit of \(limit) bytes: the kernel killed \(kills == 1 ? "one of its processes" : "\(kills) of its processes")")
                outcome = .memoryLimit(bytes: limit)
            }
            if let error = await Self.uncancelled({ await cgroup.remove() }) {
                await log.record(step: step.id, .runner, "\(error)")
            }
        }
        return outcome
    }

    func runCommands(_ commands: [(command: ChildCommand, push: (reference: String, digestFile: String)?, container: String?)],
                     step: Step, pushed: inout [PushedImage]) async -> AttemptOutcome {
        let deadline = ContinuousClock.now + .seconds(step.timeout)
        for (command, push, container) in commands {
            await log.record(step: step.id, .runner, "$ " + ([command.executable] + command.arguments).joined(separator: " "))
            let stepID = step.id
            let outcome = await ChildProcess.run(command, timeout: deadline - ContinuousClock.now) { stream, text in
                await log.record(step: stepID, stream, text)
            }
            if let container, outcome != .exited(0) {
                // conmon keeps a container running after podman is killed.
                let remove = tools.removeContainer(container)
                _ = await Self.uncancelled { await ChildProcess.run(remove, timeout: .seconds(60)) { _, _ in } }
            }
            switch outcome {
            case .exited(0): break
            case .exited(let code): return .exited(code)
            case .signalled(let signal): return .killed(signal: signal)
            case .timedOut: return .timedOut
            case .cancelled: return .cancelled
            case .notStarted(let reason): return .refused(reason)
            }
            if let push {
                guard let text = try? String(contentsOfFile: push.digestFile, encoding: .utf8),
                      let digest = try? Digest(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    return .refused("buildah wrote no digest for \(push.reference)")
                }
                pushed.append(PushedImage(reference: push.reference, digest: digest.string))
                await log.record(step: step.id, .runner, "pushed \(push.reference)@\(digest.string)")
            }
        }
        return .exited(0)
    }

    /// The commands of a step, or why it is refused before anything runs.
    func prepare(_ step: Step, index: Int, attempt: Int)
        -> Result<[(command: ChildCommand, push: (reference: String, digestFile: String)?, container: String?)], TaskRunError> {
        switch step.action {
        case .build(let arguments):
            let context: String, dockerfile: String, images: [String]
            switch Self.buildInputs(step, arguments, source: source) {
            case .failure(let e): return .failure(e)
            case .success(let inputs): (context, dockerfile, images) = inputs
            }
            // No network for RUN (the default) needs a network namespace (root only).
            if step.network == .none, !tools.configuration.isolateBuildNetwork {
                return .failure(TaskRunError("a build without network needs a network namespace of its own, which this server cannot make (it does not run as root); give the step network: host to build with the host's network"))
            }
            // The Dockerfile's images are pulled and checked (no ONBUILD triggers) before the
            // build, which pulls nothing itself.
            return .success(images.map { (tools.pull($0, always: arguments.pull), nil, nil) }
                            + images.map { (tools.refuseOnBuild($0), nil, nil) }
                            + [(tools.build(arguments, context: context, dockerfile: dockerfile, network: step.network), nil, nil)])
        case .cmd(let command):
            let name = "berth-\(request.runID)-\(index)-\(attempt)"
            return .success([(tools.run(command, env: step.env, workingDirectory: step.workingDirectory,
                                          network: step.network, name: name, entryPoint: step.entryPoint, user: step.user), nil, name)])
        case .berth(let command):
            let target = tools.configuration.berthTarget?.current
                ?? (endpoint: tools.configuration.berthEndpoint, unavailable: tools.configuration.berthUnavailable)
            guard let executable = tools.configuration.berthExecutable, let endpoint = target.endpoint else {
                return .failure(TaskRunError(target.unavailable))
            }
            guard let credentials = request.credentials else {
                return .failure(TaskRunError("berth in a task needs the task's scope: name its repositories (--repository) when saving it"))
            }
            // The child's cwd: the step's working directory inside the run's source (escapes
            // refused, after links), else the source itself.
            var directory = source
            if let workingDirectory = step.workingDirectory {
                switch Confined.path(workingDirectory, under: source, what: "workingDirectory") {
                case .failure(let e): return .failure(e)
                case .success(let path):
                    guard Confined.isDirectory(path) else {
                        return .failure(TaskRunError("workingDirectory \(Confined.quote(workingDirectory)) is not a directory"))
                    }
                    directory = path
                }
            }
            return .success([(tools.berth(command, executable: executable, endpoint: endpoint, credentials: credentials,
                                          env: step.env, workingDirectory: directory), nil, nil)])
        case .push(let references):
            var commands: [(command: ChildCommand, push: (reference: String, digestFile: String)?, container: String?)] = []
            for (n, reference) in references.enumerated() {
                guard reference.host == request.registry else {
                    return .failure(TaskRunError("a push goes to this registry only: \(Confined.quote(reference.description)) does not start with \(request.registry)/"))
                }
                guard reference.digest == nil else {
                    return .failure(TaskRunError("a push names a tag, not a digest: \(Confined.quote(reference.description))"))
                }
                let digestFile = directory.digestFile(step: index, reference: n) + "-\(attempt)"
                commands.append((tools.push(reference.description, digestFile: digestFile), (reference.description, digestFile), nil))
            }
            return .success(commands)
        }
    }

    /// Every image a Dockerfile's stages are built from or copy from (`Tasks.DockerfileBases`,
    /// every stage: buildah may build stages the target does not need), in order, once each.
    /// A build step's context and Dockerfile (real paths inside the run's source) and the
    /// images its Dockerfile names, or why the step is refused.
    static func buildInputs(_ step: Step, _ arguments: BuildArguments, source: String)
        -> Result<(context: String, dockerfile: String, images: [String]), TaskRunError> {
        var base = source
        if let workingDirectory = step.workingDirectory {
            switch Confined.path(workingDirectory, under: source, what: "workingDirectory") {
            case .failure(let e): return .failure(e)
            case .success(let path): base = path
            }
        }
        let context: String
        switch Confined.path(arguments.context, under: base, what: "the build context") {
        case .failure(let e): return .failure(e)
        case .success(let path): context = path
        }
        guard context == source || context.hasPrefix(source + "/"), Confined.isDirectory(context) else {
            return .failure(TaskRunError("the build context \(Confined.quote(arguments.context)) is not a directory inside the run's source"))
        }
        let dockerfile: String
        switch Confined.path(arguments.dockerfile ?? "Dockerfile", under: context, what: "the Dockerfile") {
        case .failure(let e): return .failure(e)
        case .success(let path): dockerfile = path
        }
        // buildah runs a `.in` Dockerfile through cpp first (`#include` of any file, read as
        // root): what it builds is not the file this runner reads.
        guard !dockerfile.lowercased().hasSuffix(".in") else {
            return .failure(TaskRunError("a Dockerfile named *.in is refused: buildah would run it through the C preprocessor"))
        }
        // Every build's Dockerfile is read first (`Tasks.DockerfileBases`): what it may not do
        // (`RUN --mount`) fails the step with its line before buildah sees it.
        return imagesOf(dockerfile: dockerfile, arguments).map { (context, dockerfile, $0) }
    }

    /// The registries (`host[:port]`) a run's steps will reach besides the run's own: every
    /// image its `cmd` steps run and its Dockerfiles name (a step refused later adds nothing).
    static func registriesReached(by file: TaskFile, source: String) -> Set<String> {
        var hosts: Set<String> = []
        for step in file.steps {
            switch step.action {
            case .cmd(let command):
                if let host = command.image.host { hosts.insert(host) }
            case .build(let arguments):
                guard case .success(let inputs) = buildInputs(step, arguments, source: source) else { continue }
                for image in inputs.images {
                    if let host = (try? ImageReference(parsing: image))?.host { hosts.insert(host) }
                }
            default: continue
            }
        }
        return hosts
    }

    static func imagesOf(dockerfile: String, _ arguments: BuildArguments) -> Result<[String], TaskRunError> {
        guard let data = FileManager.default.contents(atPath: dockerfile), let text = String(data: data, encoding: .utf8) else {
            return .failure(TaskRunError("cannot read the Dockerfile"))
        }
        var buildArgs: [String: String] = [:]
        for arg in arguments.buildArgs { buildArgs[arg.name] = arg.value }
        do {
            let bases = try DockerfileBases(dockerfile: text, buildArgs: buildArgs, target: arguments.target)
            var images: [String] = []
            for stage in bases.stages {
                if case .image(let reference) = stage.base, !images.contains(reference.description) { images.append(reference.description) }
                for reference in stage.imagesUsed where !images.contains(reference.description) { images.append(reference.description) }
            }
            return .success(images)
        } catch {
            return .failure(TaskRunError("the Dockerfile: \(error)"))
        }
    }

    /// Runs `body` in a task the caller's cancellation does not reach: clean-up after a stop.
    static func uncancelled<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
        await Task.detached { await body() }.value
    }
}
