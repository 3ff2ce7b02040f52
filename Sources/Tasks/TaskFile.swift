import OCIModel

/// A task file in the ACR multi-step format, `version: v1.1.0`, parsed and checked.
///
/// ```yaml
/// version: v1.1.0
/// stepTimeout: 900            # default timeout of every step, seconds (600 when absent)
/// env: [GOFLAGS=-mod=vendor]  # for every step; a step's own env wins by name
/// steps:
///   - id: build
///     build: -t $Registry/app:$ID --build-arg VERSION={{.Values.version}} -f Dockerfile .
///   - id: test
///     cmd: $Registry/app:$ID go test ./...
///     when: [build]           # "-" starts at once; no when: after the previous step
///     timeout: 300
///     retries: 1
///     ignoreErrors: false
///     workingDirectory: /src
///     env: [CI=true]
///     network: host           # cmd and build steps: none (the default) or the host's network
///   - push:
///     - $Registry/app:$ID
/// ```
///
/// What is refused, each with its line: unknown keys, wrong types, a step with none or more than
/// one of `build`/`cmd`/`push`, unknown ids in `when`, duplicate ids, a cycle in `when`, a missing
/// or unsupported `version`, `--push` in a build, a `network` other than `none` or `host` or on a
/// build or push step, more steps, bytes, nesting or (alias-expanded)
/// nodes than `TaskLimits` allows, invalid UTF-8, and variables that are unknown, unset, refer
/// to themselves or expand past the caps (see `Expander` for the variables).
///
/// `secrets:` is refused. In ACR it names key-vault secrets the runner fetches with the task's
/// identity; Berth has no key vault, and a task file (someone else's code) must not be able to
/// name credentials for the runner to fetch. Credentials a task needs (to push to this
/// registry) are given by Berth to the run, never named by the file.
///
/// Steps without an `id` are called `acb_step_<n>` (n counts from 0), as in ACR.
public struct TaskFile: Sendable, Equatable {
    public static let supportedVersion = "v1.1.0"
    public static let defaultStepTimeout = 600

    public var version: String
    /// Seconds; the timeout of steps that do not give their own.
    public var stepTimeout: Int
    public var env: [EnvironmentVariable]
    public var steps: [Step]
    public var plan: ExecutionPlan

    public func step(_ id: String) -> Step? { steps.first { $0.id == id } }

    /// Whether a run needs a context (a source to build): only `build` steps read one.
    public var needsContext: Bool {
        steps.contains { if case .build = $0.action { true } else { false } }
    }

    /// Whether a step runs Berth's own CLI (`cmd: berth …`).
    public var hasBerthSteps: Bool {
        steps.contains { if case .berth = $0.action { true } else { false } }
    }

    /// The one-step task file of `berth task create --cmd COMMAND`: a `cmd` step named `cmd`,
    /// the command a YAML double-quoted scalar (escaped, so nothing in it is read as YAML).
    public static func forCommand(_ command: String) -> String {
        var quotedCommand = "\""
        for scalar in command.unicodeScalars {
            switch scalar {
            case "\"": quotedCommand += "\\\""
            case "\\": quotedCommand += "\\\\"
            case "\n": quotedCommand += "\\n"
            case "\t": quotedCommand += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    let hex = String(scalar.value, radix: 16)
                    quotedCommand += "\\x" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    quotedCommand.unicodeScalars.append(scalar)
                }
            }
        }
        quotedCommand += "\""
        return "version: \(supportedVersion)\nsteps:\n  - id: cmd\n    cmd: \(quotedCommand)\n"
    }
}

public struct EnvironmentVariable: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var value: String
    public init(name: String, value: String) { self.name = name; self.value = value }
    public var description: String { "\(name)=\(value)" }
}

public struct Step: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        case build(BuildArguments)
        case cmd(RunCommand)
        case push([ImageReference])
        /// A `cmd` whose first word is `berth`: Berth's own CLI, run by the server's binary with
        /// the run's identity (see `BerthCommand`).
        case berth(BerthCommand)
    }

    public var id: String
    /// The line the step starts on.
    public var line: Int
    public var action: Action
    /// The steps this one waits for (`when`, or the previous step when `when` is absent).
    public var waitsFor: [String]
    /// The file's env, overridden by the step's own, by name.
    public var env: [EnvironmentVariable]
    /// Seconds.
    public var timeout: Int
    public var workingDirectory: String?
    public var retries: Int
    public var ignoreErrors: Bool
    /// The network of a `cmd` step's container, or of a `build` step's `RUN` instructions
    /// (`network:`, as ACR's step key; none unless the step asks for the host's; push and berth
    /// steps refuse the key).
    public var network: StepNetwork = .none
    /// A `cmd` step's `entryPoint` (podman's `--entrypoint`, one argv entry) and `user` (`--user`).
    public var entryPoint: String?
    public var user: String?
    /// Seconds to wait before the step's first attempt (`startDelay`) and between attempts
    /// (`retryDelay`; 5 s unless given, as ACR waits).
    public var startDelay = 0
    public var retryDelay = Step.defaultRetryDelay
    /// ACR's wait between a step's attempts when the file gives none.
    public static let defaultRetryDelay = 5
}

/// The network a `cmd` step's container or a build's `RUN` gets: none (the default), or the
/// host's, which reaches whatever the server's host can (only when the task file asks, step by
/// step).
public enum StepNetwork: String, Sendable, Equatable, CaseIterable {
    case none
    case host
}

/// A `cmd` step whose command starts with the word `berth` (as ACR's `acr purge` names its own
/// CLI): Berth's CLI, run as a child process of the server's own binary, never through a shell,
/// with the words split by the task file's quoting rules (`ShellWords`: no expansion). Its only
/// credential is the run's identity (in the child's environment, never in argv or the log), so
/// it can do no more than the task's scope allows. Only commands that act on repositories
/// through the registry's API are allowed (`allowedCommands`); `--registry` (which would send
/// the run's credentials elsewhere) is refused.
public struct BerthCommand: Sendable, Equatable {
    /// The CLI's commands a task may run: they talk to the registry's API only, and read or
    /// write no local file.
    public static let allowedCommands: Set<String> = ["purge", "repository"]
    /// Environment names a `berth` step's `env` may not set (refused when the file is parsed,
    /// with the line): the step runs the server's own binary on the host, not in a container,
    /// so its environment is the runner's where it matters. Refused: every `BERTH_` name (the
    /// run identity's `BERTH_USERNAME`/`BERTH_PASSWORD`, `BERTH_REGISTRY` and the listener's
    /// `BERTH_CONNECT_ADDRESS`/`BERTH_CA_FILE`, and any the CLI reads later), the runner's own
    /// (`PATH`, `HOME`, `TMPDIR`, `XDG_*`), and what changes how the host runs or links the
    /// binary or resolves names (`LD_*`, `GLIBC_*`, `MALLOC_*`, `SWIFT_*` (the backtracer can run
    /// a program), `SSL_*`, `GCONV_PATH`, `LOCPATH`, `NLSPATH`, `HOSTALIASES`, `RES_OPTIONS`,
    /// `LOCALDOMAIN`, `TZDIR`, proxies). Everything else is passed as given.
    public static func isReservedEnvironmentName(_ name: String) -> Bool {
        let upper = name.uppercased()
        let prefixes = ["BERTH_", "LD_", "GLIBC_", "MALLOC_", "SWIFT_", "XDG_", "SSL_"]
        let names: Set<String> = ["PATH", "HOME", "TMPDIR", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
                                  "LOCALDOMAIN", "TZDIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "IFS", "ENV", "BASH_ENV"]
        return names.contains(upper) || prefixes.contains { upper.hasPrefix($0) }
    }

    /// The words after `berth`.
    public var arguments: [String]
    public init(arguments: [String]) { self.arguments = arguments }

    /// `words` without the leading `berth`; the thrown error is the reason.
    public init(words: [String]) throws(BuildArgumentsError) {
        guard let command = words.first else {
            throw BuildArgumentsError("berth needs a command (\(Self.allowedCommands.sorted().joined(separator: ", ")))")
        }
        guard Self.allowedCommands.contains(command) else {
            throw BuildArgumentsError("a task may run berth \(Self.allowedCommands.sorted().joined(separator: " or ")), not \(quoted(command, limit: 40))", refused: true)
        }
        for word in words where word == "--registry" || word.hasPrefix("--registry=") {
            throw BuildArgumentsError("berth in a task talks to this registry only: --registry is refused", refused: true)
        }
        for word in words where word.contains("\0") {
            throw BuildArgumentsError("a berth argument cannot hold a NUL byte")
        }
        arguments = words
    }
}

/// A `cmd` step: run `image` with `arguments`.
public struct RunCommand: Sendable, Equatable {
    public var image: ImageReference
    public var arguments: [String]
    public init(image: ImageReference, arguments: [String]) { self.image = image; self.arguments = arguments }

    /// Parses `image arg…` (shell-style words); the thrown error is the reason.
    public init(parsing text: String) throws(BuildArgumentsError) {
        let words = try ShellWords.split(text)
        guard let first = words.first else { throw BuildArgumentsError("cmd needs an image to run") }
        guard !first.hasPrefix("-") else {
            throw BuildArgumentsError("cmd starts with the image to run, not an option (\(quoted(first, limit: 40)))")
        }
        do { image = try ImageReference(parsing: first) } catch { throw BuildArgumentsError(error.message) }
        arguments = Array(words.dropFirst())
    }
}
