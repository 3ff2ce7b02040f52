import OCIModel
import Yams

extension TaskFile {
    static let topLevelKeys = ["version", "stepTimeout", "env", "secrets", "steps", "workingDirectory"]
    static let stepKeys = ["id", "build", "cmd", "push", "when", "env", "timeout", "workingDirectory", "retries", "ignoreErrors", "network",
                           "entryPoint", "user", "startDelay", "retryDelay"]
    /// Keys of ACR's task files (acr-builder's `Task` and `Step`, v1.1.0) that Berth does not
    /// take, each refused with its line and why (rather than as an unknown key).
    static let unsupportedTopLevelKeys: [String: String] = [
        "totalTimeout": "a run's time limit is the task's --timeout",
        "networks": "a cmd step has no network or the host's (network: none|host); there are no user-defined networks",
        "volumes": "steps share files through the run's source directory; there are no volumes",
        "alias": "aliases are not supported; use variables and --set values",
    ]
    static let unsupportedStepKeys: [String: String] = [
        "isolation": "builds run with chroot isolation and cmd steps with runc, not chosen by the file",
        "cpus": "there is no per-step CPU limit",
        "cache": "a task's layers are cached in its own storage; there is no registry build cache",
        "volumeMounts": "there are no volumes; steps share the run's source directory",
        "expose": "a cmd step's container publishes no ports",
        "ports": "a cmd step's container publishes no ports",
        "exitedWith": "a step waits for the steps in its when to succeed (or fail with ignoreErrors)",
        "exitedWithout": "a step waits for the steps in its when to succeed (or fail with ignoreErrors)",
        "retryOnErrors": "retries apply to every failure of the step",
        "repeat": "a step runs once, plus its retries",
        "keep": "a cmd step's container is removed when it ends",
        "detach": "every step runs to its end; no container is left running in the background",
        "privileged": "a task runs someone else's code: its containers never run privileged",
        "disableWorkingDirectoryOverride": "a step's workingDirectory is never overridden",
        "pull": "a cmd step's image is pulled when missing from the task's storage",
    ]

    /// Parses and checks a task file for one run. Variables are expanded in values (never in
    /// keys) after YAML parsing, so no value can change the file's structure.
    public static func parse(_ bytes: [UInt8], run: RunContext, values: TaskValues = TaskValues(),
                             limits: TaskLimits = .default) throws(TaskFileError) -> TaskFile {
        let root = try SafeYAML.load(bytes, limits: limits, source: "task file")
        var reader = Reader(expander: Expander(run: run, values: values, limits: limits), limits: limits)
        return try reader.taskFile(root)
    }

    public static func parse(_ text: String, run: RunContext, values: TaskValues = TaskValues(),
                             limits: TaskLimits = .default) throws(TaskFileError) -> TaskFile {
        try parse(Array(text.utf8), run: run, values: values, limits: limits)
    }
}

/// Walks the composed YAML, turning each node into the typed value its key calls for.
private struct Reader {
    var expander: Expander
    let limits: TaskLimits

    func line(_ node: Node) -> Int { node.mark?.line ?? 1 }

    func fail(_ reason: TaskFileError.Reason, _ node: Node, _ message: String) -> TaskFileError {
        TaskFileError(reason, line: line(node), message)
    }

    /// A mapping's entries by key, refusing keys that are not plain strings or not in `known`.
    func entries(_ node: Node, known: [String], unsupported: [String: String] = [:],
                 what: String) throws(TaskFileError) -> [(key: String, keyNode: Node, value: Node)] {
        guard case .mapping(let mapping) = node else {
            throw fail(.wrongType, node, "\(what) must be a mapping of keys to values")
        }
        var out: [(String, Node, Node)] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else { throw fail(.wrongType, key, "a key must be a plain name") }
            let name = SafeYAML.text(of: scalar)
            if let reason = unsupported[name] {
                throw fail(.refused, key, "not supported: \(name) (\(reason))")
            }
            guard known.contains(name) else {
                let hint = EditDistance.closest(to: name, among: known, maxDistance: 2).map { " (did you mean '\($0)'?)" }
                    ?? " (known: \(known.joined(separator: ", ")))"
                throw fail(.unknownKey, key, "unknown key \(quoted(name, limit: 40)) in \(what)" + hint)
            }
            out.append((name, key, value))
        }
        return out
    }

    func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    mutating func string(_ node: Node, _ what: String) throws(TaskFileError) -> String {
        guard case .scalar(let scalar) = node, !isNull(scalar) else {
            throw fail(.wrongType, node, "\(what) must be a string")
        }
        return try expander.expand(SafeYAML.text(of: scalar), line: line(node))
    }

    mutating func integer(_ node: Node, _ what: String, in range: ClosedRange<Int>) throws(TaskFileError) -> Int {
        guard case .scalar(let scalar) = node, !isNull(scalar) else {
            throw fail(.wrongType, node, "\(what) must be a whole number")
        }
        let text = try expander.expand(SafeYAML.text(of: scalar), line: line(node))
        guard !text.isEmpty, text.utf8.count <= 9, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int(text) else {
            throw fail(.wrongType, node, "\(what) must be a whole number, not \(quoted(text, limit: 40))")
        }
        guard range.contains(value) else {
            throw fail(.invalidValue, node, "\(what) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
        }
        return value
    }

    mutating func boolean(_ node: Node, _ what: String) throws(TaskFileError) -> Bool {
        guard case .scalar(let scalar) = node, !isNull(scalar) else {
            throw fail(.wrongType, node, "\(what) must be true or false")
        }
        switch try expander.expand(SafeYAML.text(of: scalar), line: line(node)) {
        case "true": return true
        case "false": return false
        case let other: throw fail(.wrongType, node, "\(what) must be true or false, not \(quoted(other, limit: 40))")
        }
    }

    mutating func strings(_ node: Node, _ what: String) throws(TaskFileError) -> [(String, Node)] {
        guard case .sequence(let sequence) = node else {
            throw fail(.wrongType, node, "\(what) must be a list")
        }
        var out: [(String, Node)] = []
        for item in sequence { out.append((try string(item, "each item of \(what)"), item)) }
        return out
    }

    mutating func environment(_ node: Node, _ what: String) throws(TaskFileError) -> [EnvironmentVariable] {
        var out: [EnvironmentVariable] = []
        for (text, item) in try strings(node, what) {
            guard let eq = text.firstIndex(of: "="), TaskValues.isName(text[..<eq]) else {
                throw fail(.invalidValue, item, "each item of \(what) is NAME=value, not \(quoted(text, limit: 40))")
            }
            let name = String(text[..<eq])
            guard !out.contains(where: { $0.name == name }) else {
                throw fail(.invalidValue, item, "\(what) sets \(name) more than once")
            }
            out.append(EnvironmentVariable(name: name, value: String(text[text.index(after: eq)...])))
        }
        return out
    }

    mutating func taskFile(_ root: Node) throws(TaskFileError) -> TaskFile {
        let top = try entries(root, known: TaskFile.topLevelKeys, unsupported: TaskFile.unsupportedTopLevelKeys, what: "the task file")
        // The version decides how the rest reads, so it is checked first.
        guard let version = top.first(where: { $0.key == "version" }) else {
            throw TaskFileError(.missingKey, line: 1, "missing 'version' (this parser reads version: \(TaskFile.supportedVersion))")
        }
        let versionText = try string(version.value, "version")
        guard versionText == TaskFile.supportedVersion else {
            throw fail(.unsupportedVersion, version.value,
                       "unsupported version \(quoted(versionText, limit: 40)) (supported: \(TaskFile.supportedVersion))")
        }
        var stepTimeout = TaskFile.defaultStepTimeout
        var env: [EnvironmentVariable] = []
        var workingDirectory: String?
        var stepsNode: Node?
        for entry in top {
            switch entry.key {
            case "stepTimeout": stepTimeout = try integer(entry.value, "stepTimeout", in: 1...limits.maxTimeout)
            case "env": env = try environment(entry.value, "env")
            case "workingDirectory": workingDirectory = try directory(entry.value)
            case "secrets":
                throw fail(.refused, entry.keyNode,
                           "'secrets' is not supported: a task file cannot name secrets for Berth to fetch; the credentials a run needs are given to it by Berth")
            case "steps": stepsNode = entry.value
            default: break
            }
        }
        guard let stepsNode else { throw TaskFileError(.missingKey, line: 1, "missing 'steps'") }
        guard case .sequence(let stepNodes) = stepsNode else { throw fail(.wrongType, stepsNode, "steps must be a list") }
        guard !stepNodes.isEmpty else { throw fail(.missingKey, stepsNode, "steps is empty") }
        guard stepNodes.count <= limits.maxSteps else {
            throw fail(.tooManySteps, stepsNode, "\(stepNodes.count) steps is more than the \(limits.maxSteps) a task may have")
        }

        var steps: [Step] = []
        var whenNodes: [String: Node] = [:]
        for (n, node) in stepNodes.enumerated() {
            let (step, whenNode) = try self.step(node, index: n, previous: steps.last?.id, fileEnv: env, stepTimeout: stepTimeout,
                                                 workingDirectory: workingDirectory)
            if let first = steps.first(where: { $0.id == step.id }) {
                throw fail(.duplicateStepID, node, "step id \(quoted(step.id, limit: 64)) is already used by the step on line \(first.line)")
            }
            whenNodes[step.id] = whenNode
            steps.append(step)
        }
        let plan: ExecutionPlan
        do {
            plan = try ExecutionPlan(steps: steps.map { ($0.id, $0.waitsFor) })
        } catch {
            switch error {
            case .duplicateStep(let id):  // checked above; kept for completeness
                throw TaskFileError(.duplicateStepID, line: 1, "step id \(quoted(id, limit: 64)) is used twice")
            case .unknownStep(let id, let missing):
                let at = whenNodes[id].map(line) ?? steps.first { $0.id == id }?.line ?? 1
                throw TaskFileError(.unknownStepID, line: at,
                                    "step \(quoted(id, limit: 64)) waits for \(quoted(missing, limit: 64)), which is no step's id")
            case .cycle(let ids):
                let at = whenNodes[ids[0]].map(line) ?? steps.first { $0.id == ids[0] }?.line ?? 1
                throw TaskFileError(.cycle, line: at, "steps wait for each other in a cycle: \(ids.joined(separator: " → "))")
            }
        }
        return TaskFile(version: versionText, stepTimeout: stepTimeout, env: env, steps: steps, plan: plan)
    }

    mutating func directory(_ node: Node) throws(TaskFileError) -> String {
        let directory = try string(node, "workingDirectory")
        guard !directory.isEmpty, !directory.contains("\0") else {
            throw fail(.invalidValue, node, "workingDirectory must be a directory name")
        }
        return directory
    }

    mutating func step(_ node: Node, index: Int, previous: String?, fileEnv: [EnvironmentVariable],
                       stepTimeout: Int, workingDirectory fileDirectory: String? = nil) throws(TaskFileError) -> (Step, Node?) {
        let fields = try entries(node, known: TaskFile.stepKeys, unsupported: TaskFile.unsupportedStepKeys, what: "a step")
        let actions = fields.filter { ["build", "cmd", "push"].contains($0.key) }
        guard actions.count == 1 else {
            throw fail(actions.isEmpty ? .missingKey : .invalidValue, actions.dropFirst().first?.keyNode ?? node,
                       "a step has exactly one of build, cmd or push; found \(actions.isEmpty ? "none" : actions.map(\.key).joined(separator: " and "))")
        }
        var step = Step(id: "acb_step_\(index)", line: line(node), action: .push([]),
                        waitsFor: previous.map { [$0] } ?? [], env: fileEnv, timeout: stepTimeout,
                        workingDirectory: fileDirectory, retries: 0, ignoreErrors: false)
        var whenNode: Node?
        var networkKey: Node?
        var envNode: Node?
        var ownEnvNames: Set<String> = []
        var cmdOnly: [(String, Node)] = []
        for field in fields {
            switch field.key {
            case "id":
                let id = try string(field.value, "id")
                guard Self.isStepID(id) else {
                    throw fail(.invalidValue, field.value,
                               "a step id is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit; not \(quoted(id, limit: 64))")
                }
                step.id = id
            case "build":
                let text = try string(field.value, "build")
                do {
                    step.action = .build(try BuildArguments(parsing: text))
                } catch {
                    throw fail(error.refused ? .refused : .invalidValue, field.value, "build: \(error)")
                }
            case "cmd":
                let text = try string(field.value, "cmd")
                do {
                    let words = try ShellWords.split(text)
                    if words.first == "berth" {
                        step.action = .berth(try BerthCommand(words: Array(words.dropFirst())))
                    } else {
                        step.action = .cmd(try RunCommand(parsing: text))
                    }
                } catch {
                    throw fail(error.refused ? .refused : .invalidValue, field.value, "cmd: \(error)")
                }
            case "push":
                var references: [ImageReference] = []
                for (text, item) in try strings(field.value, "push") {
                    let reference: ImageReference
                    do { reference = try ImageReference(parsing: text) } catch { throw fail(.invalidValue, item, "push: \(error.message)") }
                    guard reference.digest == nil else {
                        throw fail(.invalidValue, item, "push names a tag to push, not a digest: \(quoted(text))")
                    }
                    references.append(reference)
                }
                guard !references.isEmpty else { throw fail(.invalidValue, field.value, "push lists no image") }
                step.action = .push(references)
            case "when":
                whenNode = field.value
                let ids = try strings(field.value, "when").map(\.0)
                if ids.contains("-") {
                    guard ids.count == 1 else {
                        throw fail(.invalidValue, field.value, "when: [\"-\"] starts the step at once and cannot be combined with step ids")
                    }
                    step.waitsFor = []
                } else {
                    guard !ids.isEmpty else { throw fail(.invalidValue, field.value, "when lists no step; use [\"-\"] to start at once") }
                    step.waitsFor = ids
                }
            case "env":
                envNode = field.value
                let own = try environment(field.value, "env")
                ownEnvNames = Set(own.map(\.name))
                step.env = fileEnv.filter { variable in !own.contains { $0.name == variable.name } } + own
            case "timeout":
                step.timeout = try integer(field.value, "timeout", in: 1...limits.maxTimeout)
            case "workingDirectory":
                step.workingDirectory = try directory(field.value)
            case "entryPoint":
                cmdOnly.append((field.key, field.keyNode))
                step.entryPoint = try string(field.value, "entryPoint")
                guard step.entryPoint?.isEmpty == false, step.entryPoint?.contains("\0") == false else {
                    throw fail(.invalidValue, field.value, "entryPoint must name a program")
                }
            case "user":
                cmdOnly.append((field.key, field.keyNode))
                let user = try string(field.value, "user")
                guard Self.isUser(user) else {
                    throw fail(.invalidValue, field.value, "user is NAME, UID, NAME:GROUP or UID:GID (letters, digits, '_', '.', '-'), not \(quoted(user, limit: 40))")
                }
                step.user = user
            case "startDelay":
                step.startDelay = try integer(field.value, "startDelay", in: 0...limits.maxTimeout)
            case "retryDelay":
                step.retryDelay = try integer(field.value, "retryDelay", in: 0...limits.maxTimeout)
            case "retries":
                step.retries = try integer(field.value, "retries", in: 0...limits.maxRetries)
            case "ignoreErrors":
                step.ignoreErrors = try boolean(field.value, "ignoreErrors")
            case "network":
                networkKey = field.keyNode
                let text = try string(field.value, "network")
                guard let network = StepNetwork(rawValue: text) else {
                    throw fail(.invalidValue, field.value, "network must be none or host, not \(quoted(text, limit: 40))")
                }
                step.network = network
            default:
                break
            }
        }
        if case .berth = step.action, let reserved = step.env.first(where: { BerthCommand.isReservedEnvironmentName($0.name) }) {
            // The line of the step's own env, or of the step when the name comes from the file's env.
            let fromFile = !ownEnvNames.contains(reserved.name)
            throw TaskFileError(.refused, line: envNode.map(line).flatMap { fromFile ? nil : $0 } ?? step.line,
                                "env \(reserved.name) is not passed to a berth step\(fromFile ? " (from the file's env)" : ""): "
                                    + "it runs on the server, whose own values of BERTH_*, PATH, HOME, XDG_*, LD_*, SWIFT_* and the like it keeps")
        }
        if let (name, key) = cmdOnly.first {
            switch step.action {
            case .cmd: break
            default:
                throw fail(.invalidValue, key, "\(name) applies to cmd steps that run an image only")
            }
        }
        if let networkKey {
            switch step.action {
            case .cmd: break
            case .berth:
                throw fail(.invalidValue, networkKey, "network applies to cmd steps that run an image; berth runs on the server and reaches only this registry")
            case .build: break
            case .push:
                throw fail(.invalidValue, networkKey, "network applies to cmd and build steps, not to a push")
            }
        }
        return (step, whenNode)
    }

    /// `name`, `uid`, `name:group`, `uid:gid`: podman's `--user`, one argv entry.
    static func isUser(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), s.utf8.count <= 64 else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && !part.hasPrefix("-") && part.utf8.allSatisfy { b in
                (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x5f || b == 0x2e || b == 0x2d
            }
        }
    }

    static func isStepID(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 64 else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) }
        return alnum(first) && s.utf8.allSatisfy { alnum($0) || $0 == 0x5f || $0 == 0x2e || $0 == 0x2d }
    }
}
