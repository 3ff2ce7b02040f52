import ArgumentParser
import BerthAPIContract
import BerthCredentials
import Foundation
import Tasks

// MARK: - build tasks (issue 16)

/// Formatting and helpers shared by `berth task`, `berth run` and `berth build`.
enum TaskCommands {
    static let columns = [
        Column("name", "name"), Column("enabled", "enabled"), Column("context", compute: { $0["context"]?.asString ?? "(uploaded)" }),
        Column("schedule", compute: { $0["schedule"]?.asString ?? "-" }), Column("repositories", "repositories"),
        Column("timeout", "timeoutSeconds"), Column("created-by", "createdBy"), Column("created", "createdAt"),
    ]

    /// The commit trigger, and the webhook's secret where an answer carries it (shown once).
    static let commitColumns = [
        Column("commit-trigger", "commitTriggerEnabled"),
        Column("git-webhook-secret", compute: { $0["gitWebhookSecret"]?.asString ?? "-" }),
    ]

    static func pushed(_ v: JSONValue) -> String {
        (v["pushed"]?.asArray ?? []).map { "\($0["reference"]?.cell ?? "")@\($0["digest"]?.cell ?? "-")" }.joined(separator: " ")
    }

    static func steps(_ v: JSONValue) -> String {
        (v["steps"]?.asArray ?? []).map { step in
            "\(step["id"]?.cell ?? ""):\(step["status"]?.cell ?? "")" + (step["exitCode"].map { "(\($0.cell))" } ?? "")
        }.joined(separator: " ")
    }

    static let runColumns = [
        Column("run-id", "id"), Column("task", "task"), Column("status", "status"), Column("trigger", "trigger"),
        Column("queued", "queuedAt"), Column("finished", compute: { $0["finishedAt"]?.cell ?? "-" }),
        Column("steps", compute: steps), Column("pushed", compute: pushed), Column("reason", compute: { $0["reason"]?.cell ?? "" }),
    ]

    /// `--set k=v` and `--values FILE`, read by the task file's own grammar (`Tasks.TaskValues`:
    /// a YAML mapping of names to single values, under the task file's limits, refused with its
    /// line; `--set` names checked the same way and winning over the file), as the server reads them.
    static func values(set: [String], file: String?) throws -> [String: String]? {
        var values = TaskValues()
        do {
            if let file {
                guard let bytes = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
                values = try TaskValues(valuesFile: Array(bytes))
            }
            for item in set { try values.set(item) }
        } catch let error as TaskFileError {
            throw ValidationError("\(file.map { $0 + ": " } ?? "")\(error)")
        }
        return file == nil && set.isEmpty ? nil : values.entries
    }

    static func readFile(_ path: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(path)") }
        return text
    }

    /// Queues a run of `task` with `directory`, when given, uploaded as its context (a tar
    /// stream); with `ifDefinition`, only while the task holds that definition.
    static func run(_ c: ManagementClient, task: String, context directory: String?, ifDefinition: String? = nil) async throws -> JSONValue {
        let query = ifDefinition.map { [("ifDefinition", $0)] } ?? []
        if let directory {
            let archive = try ContextArchive.make(directory: directory)
            return try await c.call(.POST, "tasks/" + Fmt.path(task) + "/runs", query: query, contentType: "application/x-tar", body: archive,
                                    answer: TaskRunView.self)
        }
        return try await c.call(.POST, "tasks/" + Fmt.path(task) + "/runs", query: query, answer: TaskRunView.self)
    }

    /// Prints the run's log as it grows until the run ends (when `follow`), then its outcome;
    /// exits non-zero unless it succeeded.
    static func follow(_ c: ManagementClient, task: String, run: String, format: OutputFormat) async throws {
        var offset = 0
        while true {
            let view = try await c.value(.GET, "tasks/" + Fmt.path(task) + "/runs/" + Fmt.path(run), answer: TaskRunView.self)
            let data = try await c.text("tasks/" + Fmt.path(task) + "/runs/" + Fmt.path(run) + "/log", query: [("offset", String(offset))])
            if !data.isEmpty {
                offset += data.count
                FileHandle.standardError.write(data)
                continue
            }
            if view.status != "queued" && view.status != "running" {
                Printer.keyValues(try await c.call(.GET, "tasks/" + Fmt.path(task) + "/runs/" + Fmt.path(run), answer: TaskRunView.self),
                                  fields: runColumns, format: format)
                guard view.status == "succeeded" else { throw CLIError("run \(run) \(view.status)" + (view.reason.map { ": \($0)" } ?? "")) }
                return
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}

/// A directory as an uncompressed tar stream (ustar): regular files, directories and symbolic
/// links, at most `limit` bytes in all; anything else is refused.
enum ContextArchive {
    static let limit = 256 << 20

    static func make(directory: String) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("\(directory) is not a directory")
        }
        var out = Data()
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: root) else { throw CLIError("cannot read \(directory)") }
        var entries: [String] = []
        while let next = walker.nextObject() as? String { entries.append(next) }
        for relative in entries.sorted() {
            let path = root + "/" + relative
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o644
            switch attributes[.type] as? FileAttributeType {
            case .typeDirectory?:
                try append(&out, name: relative + "/", type: "5", mode: mode, size: 0, link: "")
            case .typeRegular?:
                guard let content = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
                try append(&out, name: relative, type: "0", mode: mode, size: content.count, link: "")
                out.append(content)
                out.append(Data(count: (512 - content.count % 512) % 512))
            case .typeSymbolicLink?:
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: path)
                try append(&out, name: relative, type: "2", mode: 0o777, size: 0, link: target)
            default:
                throw ValidationError("\(path): only files, directories and symbolic links can be uploaded")
            }
            guard out.count <= limit else { throw ValidationError("the context is larger than \(limit >> 20) MiB") }
        }
        out.append(Data(count: 1024))
        return out
    }

    private static func append(_ out: inout Data, name: String, type: Character, mode: Int, size: Int, link: String) throws {
        var header = [UInt8](repeating: 0, count: 512)
        var nameBytes = Array(name.utf8)
        var prefix: [UInt8] = []
        if nameBytes.count > 100 {
            // ustar: PREFIX/NAME, split at a slash, at most 155 + 100 bytes.
            guard let split = nameBytes.indices.reversed().first(where: {
                nameBytes[$0] == UInt8(ascii: "/") && $0 <= 155 && nameBytes.count - $0 - 1 <= 100 && $0 > 0
            }) else { throw ValidationError("\(name): the path is too long to upload") }
            prefix = Array(nameBytes[..<split])
            nameBytes = Array(nameBytes[(split + 1)...])
        }
        let linkBytes = Array(link.utf8)
        guard linkBytes.count <= 100 else { throw ValidationError("\(name): the link target is too long to upload") }
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { header[offset + i] = b } }
        func octal(_ value: Int, width: Int) -> [UInt8] {
            Array((String(repeating: "0", count: max(0, width - 1 - String(value, radix: 8).count)) + String(value, radix: 8)).utf8) + [0]
        }
        put(nameBytes, at: 0)
        put(octal(mode & 0o777, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        put(octal(size, width: 12), at: 124)
        put(octal(0, width: 12), at: 136)
        put(Array(repeating: UInt8(ascii: " "), count: 8), at: 148)
        header[156] = type.asciiValue ?? UInt8(ascii: "0")
        put(linkBytes, at: 157)
        put(Array("ustar\u{0}00".utf8), at: 257)
        put(prefix, at: 345)
        let checksum = header.reduce(0) { $0 + Int($1) }
        put(Array((String(repeating: "0", count: max(0, 6 - String(checksum, radix: 8).count)) + String(checksum, radix: 8)).utf8) + [0, 0x20], at: 148)
        out.append(contentsOf: header)
    }
}

struct TaskCommandGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task",
        abstract: "Build tasks: multi-step task files (build, test, push) run on the registry's server.",
        discussion: """
            A task runs code as the server's user: creating and running tasks needs the Owner role, and a task \
            may push only to repositories its creator may push to. Each run pushes with its own short-lived \
            identity, limited to those repositories.
            """,
        subcommands: [TaskCreate.self, TaskList.self, TaskShow.self, TaskUpdate.self, TaskDelete.self, TaskRun.self,
                      TaskListRuns.self, TaskLogs.self, TaskCancelRun.self])
}

struct TaskCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a task from a task file, or from one command (--cmd).",
        discussion: """
            Example: berth task create --name app-ci --file acb.yaml --context https://git.example.com/app.git#main --schedule '0 2 * * *'
            A command task: --cmd "IMAGE ARG..." runs an image (podman, no network) as a one-step task; \
            --cmd "berth purge --filter 'app:.*' --ago 30d" runs Berth's own CLI on the server with the run's \
            short-lived identity, which may act only on the --repository names given (you must be allowed to \
            push and delete there). Example: berth task create --name nightly-purge --cmd "berth purge --filter \
            'app:.*' --ago 30d" --repository app --schedule '0 3 * * *'
            """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Task name (letters, digits, '.', '_', '-').") var name: String
    @Option(help: "The task file (ACR multi-step, version v1.1.0).") var file: String?
    @Option(help: "Instead of a task file: one command, 'IMAGE ARG...' or 'berth COMMAND ...' (purge, repository).") var cmd: String?
    @Option(name: .customLong("repository"), help: "A repository a 'berth' command may act on (repeat it): the task's scope.")
    var scope: [String] = []
    @Option(help: "GIT_URL#BRANCH[:DIR]; without it, every run uploads its context.") var context: String?
    @Option(help: "A cron expression: run on this timer.") var schedule: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("A value for {{.Values.KEY}}.", valueName: "key=value")) var set: [String] = []
    @Option(help: "A values file: a YAML mapping of names to single values (`--set` wins).") var values: String?
    @Option(help: "Seconds a run may take in all (default 3600).") var timeout: Int?
    @Option(help: "true: run on every new commit of the context's branch (polled, and its push webhook; the webhook's secret is shown once).")
    var commitTriggerEnabled: Bool?
    @Option(help: "true or false: queue a run when a base image its Dockerfile names moves in this registry.")
    var baseImageTriggerEnabled: Bool?
    @Option(help: "Runtime (only the built stage's base) or All (build-time bases too).") var baseImageTriggerType: String?

    func run() async throws {
        try await runCLI {
            guard (file == nil) != (cmd == nil) else { throw ValidationError("give --file or --cmd (exactly one)") }
            var body = TaskRequest(name: name, taskFile: try file.map(TaskCommands.readFile), context: context, schedule: schedule,
                                   values: try TaskCommands.values(set: set, file: values), timeoutSeconds: timeout,
                                   commitTriggerEnabled: commitTriggerEnabled,
                                   baseImageTriggerEnabled: baseImageTriggerEnabled, baseImageTriggerType: baseImageTriggerType)
            body.cmd = cmd
            body.scope = scope.isEmpty ? nil : scope

            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "tasks", sending: body, answer: TaskView.self),
                              fields: TaskCommands.columns + TaskCommands.commitColumns, format: out.output)
        }
    }
}

struct TaskList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tasks.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "tasks", answer: [TaskView].self), columns: TaskCommands.columns, format: out.output)
        }
    }
}

struct TaskShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a task.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Task name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "tasks/" + Fmt.path(name), answer: TaskView.self),
                              fields: TaskCommands.columns + [Column("commit-trigger", "commitTriggerEnabled"),
                                                              Column("last-commit", compute: { $0["lastCommit"]?.asString ?? "-" }),
                                                              Column("cmd", compute: { $0["cmd"]?.asString ?? "-" }),
                                                              Column("scope", compute: { ($0["scope"]?.asArray ?? []).map(\.cell).joined(separator: ",") }),
                                                              Column("task-file", "taskFile")], format: out.output)
        }
    }
}

struct TaskUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a task.",
                                                    discussion: "--context '' and --schedule '' remove them.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Task name.") var name: String
    @Option(help: "A new task file.") var file: String?
    @Option(help: "A new command instead of the task file: 'IMAGE ARG...' or 'berth COMMAND ...'.") var cmd: String?
    @Option(name: .customLong("repository"), help: "The repositories a 'berth' command may act on (replace all; '' for none).")
    var scope: [String] = []
    @Option(help: "GIT_URL#BRANCH[:DIR] ('' for uploaded contexts).") var context: String?
    @Option(help: "A cron expression ('' for none).") var schedule: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Values (replace all).", valueName: "key=value")) var set: [String] = []
    @Option(help: "A values file: a YAML mapping of names to single values (replaces all values; `--set` wins).") var values: String?
    @Option(help: "Seconds a run may take in all.") var timeout: Int?
    @Option(help: "true or false.") var enabled: Bool?
    @Option(help: "true or false: the git-commit trigger (turned on the first time, it shows the webhook's secret once).")
    var commitTriggerEnabled: Bool?
    @Option(help: "true or false: queue a run when a base image its Dockerfile names moves in this registry.")
    var baseImageTriggerEnabled: Bool?
    @Option(help: "Runtime (only the built stage's base) or All (build-time bases too).") var baseImageTriggerType: String?

    func run() async throws {
        try await runCLI {
            guard file == nil || cmd == nil else { throw ValidationError("give --file or --cmd, not both") }
            var body = TaskRequest(taskFile: try file.map(TaskCommands.readFile), context: context, schedule: schedule,
                                   values: try TaskCommands.values(set: set, file: values), timeoutSeconds: timeout, enabled: enabled,
                                   commitTriggerEnabled: commitTriggerEnabled,
                                   baseImageTriggerEnabled: baseImageTriggerEnabled, baseImageTriggerType: baseImageTriggerType)
            body.cmd = cmd
            body.scope = scope.isEmpty ? nil : scope.filter { !$0.isEmpty }

            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "tasks/" + Fmt.path(name), sending: body, answer: TaskView.self),
                              fields: TaskCommands.columns + TaskCommands.commitColumns, format: out.output)
        }
    }
}

struct TaskDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a task and its runs.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Task name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "tasks/" + Fmt.path(name))
            Printer.write("Deleted task \(name)\n")
        }
    }
}

struct TaskRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Queue a run of a task; with --wait, print its log and exit non-zero unless it succeeds.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Task name.") var name: String
    @Option(help: "A local directory to upload as the run's context (instead of the task's git context).") var context: String?
    @Flag(help: "Wait for the run, printing its log to standard error.") var wait = false

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let run = try await TaskCommands.run(c, task: name, context: context)
            if wait, let id = run["id"]?.asString {
                try await TaskCommands.follow(c, task: name, run: id, format: out.output)
            } else {
                Printer.keyValues(run, fields: TaskCommands.runColumns, format: out.output)
            }
        }
    }
}

struct TaskListRuns: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list-runs", abstract: "List a task's runs, newest first, with the digests they pushed.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Task name.") var name: String
    @Option(help: "How many runs (default 50).") var limit: Int?

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let query = limit.map { [("limit", String($0))] } ?? []
            Printer.rows(try await c.call(.GET, "tasks/" + Fmt.path(name) + "/runs", query: query, answer: [TaskRunView].self),
                         columns: TaskCommands.runColumns, format: out.output)
        }
    }
}

struct TaskLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a run's log.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Task name.") var name: String
    @Option(help: "The run (cb1, cb2, ...).") var runId: String
    @Flag(help: "Keep printing until the run ends.") var follow = false

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let path = "tasks/" + Fmt.path(name) + "/runs/" + Fmt.path(runId)
            var offset = 0
            while true {
                let data = try await c.text(path + "/log", query: [("offset", String(offset))])
                offset += data.count
                FileHandle.standardOutput.write(data)
                guard follow else { return }
                if data.isEmpty {
                    let view = try await c.value(.GET, path, answer: TaskRunView.self)
                    if view.status != "queued" && view.status != "running" {
                        let rest = try await c.text(path + "/log", query: [("offset", String(offset))])
                        FileHandle.standardOutput.write(rest)
                        return
                    }
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
        }
    }
}

struct TaskCancelRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel-run", abstract: "Cancel a queued or running run.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Task name.") var name: String
    @Option(help: "The run (cb1, cb2, ...).") var runId: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "tasks/" + Fmt.path(name) + "/runs/" + Fmt.path(runId) + "/cancel",
                                               answer: TaskRunView.self), fields: TaskCommands.runColumns, format: out.output)
        }
    }
}

/// Saves `taskFile` as task `name` (created, or its file and values replaced) and runs it on
/// `context`. On a shared default name (`shared`) the whole task is set as this run needs it (its
/// timeout, default 3600, and scope, default none; enabled; no schedule and no triggers), so no
/// setting an earlier caller gave it carries over; on a task of the caller's own naming only the
/// timeout and scope given are, and its other settings stay. The run is queued only while the
/// task holds what was saved (its `definition`):
/// another caller's `berth run` or `berth build` with the same name in between (the default names
/// are shared) would otherwise run their file on this context. Saved and queued again then, after
/// a short random pause, at most five times.
private func runUploaded(_ c: ManagementClient, name: String, shared: Bool, taskFile: String, values: [String: String]?,
                         context: String, timeout: Int?, scope: [String], format: OutputFormat) async throws {
    let attempts = 5
    for attempt in 1... {
        if attempt > 1 { try await Task.sleep(for: .milliseconds(Int.random(in: 200...1000) * (attempt - 1))) }
        let last = attempt == attempts
        let saved: JSONValue
        var replacing = TaskRequest(taskFile: taskFile, context: "", values: values ?? [:], timeoutSeconds: timeout)
        replacing.scope = scope.isEmpty ? nil : scope
        if shared {
            replacing.timeoutSeconds = timeout ?? 3600
            replacing.scope = scope
            replacing.enabled = true
            replacing.schedule = ""
            replacing.commitTriggerEnabled = false
            replacing.baseImageTriggerEnabled = false
        }
        do {
            saved = try await c.call(.PATCH, "tasks/" + Fmt.path(name), sending: replacing, answer: TaskView.self)
        } catch let e as RegistryAPIError where e.status == 404 {
            var creating = TaskRequest(name: name, taskFile: taskFile, values: values, timeoutSeconds: timeout)
            creating.scope = scope.isEmpty ? nil : scope
            do {
                saved = try await c.call(.POST, "tasks", sending: creating, answer: TaskView.self)
            } catch let e as RegistryAPIError where e.status == 409 && e.code == "CONFLICT" && !last {
                continue   // made by another caller since: saved over on the next attempt
            }
        }
        let run: JSONValue
        do {
            run = try await TaskCommands.run(c, task: name, context: context, ifDefinition: saved["definition"]?.asString)
        } catch let e as RegistryAPIError where e.code == "TASK_CHANGED" && !last {
            continue
        }
        guard let id = run["id"]?.asString else { throw CLIError("the registry did not name the run") }
        try await TaskCommands.follow(c, task: name, run: id, format: format)
        return
    }
}

struct RunTaskFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a task file on the registry's server with a local directory as its context.",
        discussion: "Example: berth run -f acb.yaml . (saved as task --name, default 'quick-run'; its log is printed as it runs)")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: .shortAndLong, help: "The task file.") var file: String
    static let sharedName = "quick-run"
    @Option(help: "The task to save it as (the default is shared: each run sets all of it).") var name = sharedName
    @Option(name: .customLong("set"), help: ArgumentHelp("A value for {{.Values.KEY}}.", valueName: "key=value")) var set: [String] = []
    @Option(help: "A values file: a YAML mapping of names to single values (`--set` wins).") var values: String?
    @Option(help: "Seconds the run may take in all (default 3600 on the shared task).") var timeout: Int?
    @Option(name: .customLong("repository"),
            help: "A repository of this registry the run may pull from, push to and (with 'berth' commands) act on (repeat it): its scope.")
    var scope: [String] = []
    @Argument(help: "The context directory.") var context: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await runUploaded(c, name: name, shared: name == Self.sharedName, taskFile: try TaskCommands.readFile(file),
                                  values: try TaskCommands.values(set: set, file: values), context: context,
                                  timeout: timeout, scope: scope, format: out.output)
        }
    }
}

struct BuildImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Build a local directory's Dockerfile on the registry's server and push it.",
        discussion: "Example: berth build -t app:{{.Run.ID}} . (a one-step build and push; saved as task --name, default 'quick-build')")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: .shortAndLong, help: "REPOSITORY:TAG in this registry ({{.Run.ID}} and $ID allowed).") var tag: String
    @Option(name: .shortAndLong, help: "The Dockerfile, relative to the context.") var file = "Dockerfile"
    static let sharedName = "quick-build"
    @Option(help: "The task to save it as (the default is shared: each build sets all of it).") var name = sharedName
    @Option(help: "Seconds the build and push may take in all (default 3600 on the shared task).") var timeout: Int?
    @Option(name: .customLong("repository"),
            help: "A repository of this registry the build may pull from (a private FROM) besides the one it pushes to (repeat it).")
    var scope: [String] = []
    @Argument(help: "The context directory.") var context: String

    func run() async throws {
        try await runCLI {
            let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyz0123456789._-/:{}$ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            guard !tag.isEmpty, tag.unicodeScalars.allSatisfy(allowed.contains), !tag.hasPrefix("-") else {
                throw ValidationError("-t takes REPOSITORY:TAG, e.g. app:{{.Run.ID}}")
            }
            guard !file.isEmpty, !file.contains(" "), !file.hasPrefix("-") else { throw ValidationError("invalid Dockerfile path \(file)") }
            let taskFile = """
                version: v1.1.0
                steps:
                  - id: build
                    build: -t $Registry/\(tag) -f \(file) .
                  - id: push
                    push: ["$Registry/\(tag)"]

                """
            let c = try await ManagementClient.connect(client)
            try await runUploaded(c, name: name, shared: name == Self.sharedName, taskFile: taskFile, values: nil, context: context,
                                  timeout: timeout, scope: scope, format: out.output)
        }
    }
}
