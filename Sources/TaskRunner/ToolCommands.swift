import Tasks

/// The command lines of a run's steps: buildah for `build` and `push`, podman for `cmd`. Every
/// value from the task file is one argv entry of its own (no shell ever sees it), and the
/// environment is the runner's, never the server's or the task's.
struct ToolCommands: Sendable {
    var configuration: TaskRunnerConfiguration
    var directory: RunDirectory
    var hasCredentials: Bool

    var environment: [String: String] {
        var env = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": directory.home,
            "TMPDIR": directory.tmp,
            "CONTAINERS_CONF": directory.containersConf,
            "CONTAINERS_STORAGE_CONF": directory.storageConf,
            "CONTAINERS_REGISTRIES_CONF": directory.registriesConf,
            "BUILDAH_ISOLATION": "chroot",
        ]
        // Without a run identity nothing may be read from the host's own auth files either.
        // (An empty one of the run's: buildah 1.28 fails a pull on /dev/null, which is no JSON.)
        env["REGISTRY_AUTH_FILE"] = hasCredentials ? directory.authFile : directory.emptyAuthFile
        return env
    }

    /// No `--tls-verify`: it would apply to every registry the tool reaches (bases in other
    /// registries too). Which registry is reached over plain HTTP, and which CA verifies this
    /// registry, is in the run's `registries.conf` and its home's `certs.d` (`RunDirectory`).
    private var registryAccess: [String] {
        hasCredentials ? ["--authfile", directory.authFile] : []
    }

    /// `buildah bud` with chroot isolation and `--layers`, so the task's storage keeps every
    /// layer for the next run. `context` and `dockerfile` are real paths inside the source.
    ///
    /// `network: .none` (the default of a build step): buildah runs in a network namespace of its
    /// own (`unshare --net`, only a loopback that is down), so no `RUN` reaches anything, and
    /// it uses only images already in the task's storage (`--pull=never`): the images the
    /// Dockerfile names are pulled before it by `pull` (buildah refuses `--network none` with
    /// chroot isolation, hence the namespace around it).
    func build(_ arguments: BuildArguments, context: String, dockerfile: String, network: StepNetwork = .host) -> ChildCommand {
        var args = ["bud", "--isolation", "chroot", "--layers", "--signature-policy", directory.policy]
            + Self.buildCapabilityDrops + registryAccess + ["-f", dockerfile]
        for tag in arguments.tags { args += ["-t", tag.description] }
        for arg in arguments.buildArgs { args += ["--build-arg", "\(arg.name)=\(arg.value)"] }
        if let target = arguments.target { args += ["--target", target] }
        if arguments.noCache { args.append("--no-cache") }
        // Every image the Dockerfile names is pulled and checked before (`pull`, `refuseOnBuild`):
        // the build uses only those.
        args.append("--pull=never")
        args.append(context)
        var namespaces: [String] = []
        // A PID namespace of the build's own: its `RUN` processes see and can signal only the
        // build's processes (`--kill-child`: the namespace dies with unshare, which stays in the
        // runner's process group, so a timeout's signals reach it).
        // And an IPC namespace of its own: chroot isolation shares the host's, so a `RUN` as root
        // could attach the host's root-owned System V shared memory, semaphores and message queues.
        // (Each `RUN` gets a UTS namespace of its own from buildah.)
        if configuration.isolateBuildPIDs { namespaces += ["--pid", "--fork", "--mount-proc", "--kill-child", "--ipc"] }
        if network == .none { namespaces = ["--net"] + namespaces }
        guard !namespaces.isEmpty else {
            return ChildCommand(executable: configuration.buildah, arguments: args, environment: environment)
        }
        // In that namespace's own mounts (`--mount-proc` makes one, private): a `/dev` of its own,
        // which chroot isolation binds into every `RUN`, so no `RUN` sees the host's disks,
        // `kmsg` or terminals.
        let start = configuration.isolateBuildPIDs ? [configuration.shell, "-c", Self.minimalDevScript, "sh", configuration.buildah]
                                                   : [configuration.buildah]
        return ChildCommand(executable: configuration.unshare, arguments: namespaces + start + args, environment: environment)
    }

    /// Mounts a `/dev` holding only what a build needs (the character devices every container
    /// gets, a private `pts`, `shm`, the `fd` links) over the host's, then runs its arguments.
    /// Buildah's chroot isolation bind-mounts the `/dev` it sees into each `RUN`: the host's
    /// would give a `RUN` running as root its block devices, whatever its capabilities (no
    /// device cgroup), so the whole disk. A constant script; its arguments are argv entries.
    /// One line (the runner logs a command line as one log line).
    static let minimalDevScript = [
        "set -e",
        "mount -t tmpfs -o nosuid,noexec,mode=755,size=1m berth-dev /dev",
        "mknod -m 666 /dev/null c 1 3",
        "mknod -m 666 /dev/zero c 1 5",
        "mknod -m 666 /dev/full c 1 7",
        "mknod -m 666 /dev/random c 1 8",
        "mknod -m 666 /dev/urandom c 1 9",
        "mknod -m 666 /dev/tty c 5 0",
        "mkdir -m 755 /dev/pts",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec berth-pts /dev/pts",
        "ln -s pts/ptmx /dev/ptmx",
        "mkdir -m 1777 /dev/shm",
        "mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 berth-shm /dev/shm",
        "ln -s /proc/self/fd /dev/fd",
        "ln -s /proc/self/fd/0 /dev/stdin",
        "ln -s /proc/self/fd/1 /dev/stdout",
        "ln -s /proc/self/fd/2 /dev/stderr",
        #"exec "$@""#,
    ].joined(separator: "; ")

    /// Capabilities a build's `RUN` never gets. Chroot isolation is a `chroot(2)` (no
    /// `pivot_root`), and as root a `RUN` keeps buildah's default capabilities: with
    /// `CAP_SYS_CHROOT` a second `chroot` into a subdirectory and `..` walks out of it to the
    /// host's root (the server's data directory, its keys, other tasks' storage: found in review,
    /// proved by `test_a_builds_run_cannot_leave_its_root`); with `CAP_MKNOD` it could make a
    /// node of the host's disk (chroot isolation has no device cgroup). With fewer capabilities
    /// than buildah it cannot open `/proc/1/root` either (ptrace access), and a chrooted process
    /// cannot make a user namespace to get them back.
    static let buildCapabilityDrops = ["--cap-drop", "CAP_SYS_CHROOT", "--cap-drop", "CAP_MKNOD"]

    /// Fails when `reference` (pulled into the task's storage) has ONBUILD triggers: buildah runs
    /// a base's triggers as part of the build, unread by the Dockerfile reader, so a base could
    /// carry what a Dockerfile may not (`RUN --mount`: see `Tasks.DockerfileBases`). A constant
    /// script; the tool and the image are argv entries.
    func refuseOnBuild(_ reference: String) -> ChildCommand {
        ChildCommand(executable: configuration.shell, arguments: ["-c", Self.onBuildCheck, "sh", configuration.buildah, reference],
                     environment: environment)
    }

    static let onBuildCheck = #"out=$("$1" inspect --type image --format '{{if .Docker.Config}}{{range .Docker.Config.OnBuild}}x{{end}}{{end}}' "$2") || exit 1; "#
        + #"if [ -n "$out" ]; then echo "the image $2 has ONBUILD triggers, which builds here refuse (buildah would run them without this server reading them)" >&2; exit 1; fi"#

    /// `buildah pull` of an image a build uses, into the task's storage, before the build (which
    /// then pulls nothing): always when the build asks (`--pull`), else when missing.
    func pull(_ reference: String, always: Bool) -> ChildCommand {
        let args = ["pull", "--signature-policy", directory.policy] + registryAccess
            + ["--policy", always ? "always" : "missing", reference]
        return ChildCommand(executable: configuration.buildah, arguments: args, environment: environment)
    }

    /// `command`, its process first moved into a cgroup (so is everything it starts): a shell
    /// writes its own PID to `procs` and execs the command; the path and the command's words are
    /// argv entries, never part of the script.
    func inCgroup(_ command: ChildCommand, procs: String) -> ChildCommand {
        ChildCommand(executable: configuration.shell,
                     arguments: ["-c", #"echo $$ > "$1" && shift && exec "$@""#, "sh", procs, command.executable] + command.arguments,
                     environment: command.environment)
    }

    /// `podman run --rm` with runc, the step's network (none unless its `network:` asks for the
    /// host's), the memory limit, the step's env as `--env NAME=VALUE` entries and its working
    /// directory inside the container.
    func run(_ command: RunCommand, env: [EnvironmentVariable], workingDirectory: String?, network: StepNetwork,
             name: String, entryPoint: String? = nil, user: String? = nil) -> ChildCommand {
        var args = podmanGlobal + ["run", "--rm", "--name", name, "--network", network.rawValue,
                                   "--memory", configuration.memoryLimit, "--pull", "missing"] + registryAccess
        for variable in env { args += ["--env", "\(variable.name)=\(variable.value)"] }
        if let workingDirectory { args += ["--workdir", workingDirectory] }
        if let entryPoint { args += ["--entrypoint", entryPoint] }
        if let user { args += ["--user", user] }
        args.append(command.image.description)
        args += command.arguments
        return ChildCommand(executable: configuration.podman, arguments: args, environment: environment)
    }

    /// Berth's own CLI for a `berth` step: the server's binary with the step's words as argv (no
    /// shell) in `workingDirectory` (inside the run's source), its environment the step's `env`
    /// (names `BerthCommand.isReservedEnvironmentName` refuses never get here: the parser refused
    /// them) and then the runner's own, which nothing of the step's replaces: the listener's
    /// endpoint and the run identity's credentials (`BERTH_REGISTRY`, `BERTH_CONNECT_ADDRESS`,
    /// `BERTH_CA_FILE`, `BERTH_USERNAME`, `BERTH_PASSWORD`: never argv, masked in the log) and a
    /// home of the run's own (no stored login of the server's user is read).
    func berth(_ command: BerthCommand, executable: String, endpoint: BerthStepEndpoint, credentials: PushCredentials,
               env: [EnvironmentVariable] = [], workingDirectory: String? = nil) -> ChildCommand {
        var environment: [String: String] = [:]
        for variable in env where !BerthCommand.isReservedEnvironmentName(variable.name) {
            environment[variable.name] = variable.value
        }
        let own = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": directory.home,
            "XDG_CONFIG_HOME": directory.home + "/.config",
            "TMPDIR": directory.tmp,
            "BERTH_REGISTRY": endpoint.url,
            "BERTH_USERNAME": credentials.username,
            "BERTH_PASSWORD": credentials.password,
        ]
        environment.merge(own) { $1 }
        if let address = endpoint.connectAddress { environment["BERTH_CONNECT_ADDRESS"] = address }
        if let caFile = endpoint.caFile { environment["BERTH_CA_FILE"] = caFile }
        return ChildCommand(executable: executable, arguments: command.arguments, environment: environment,
                            workingDirectory: workingDirectory)
    }

    /// Removes a container a stopped `cmd` step leaves behind (its conmon outlives podman).
    func removeContainer(_ name: String) -> ChildCommand {
        ChildCommand(executable: configuration.podman,
                     arguments: podmanGlobal + ["rm", "--force", "--ignore", "--time", "0", name], environment: environment)
    }

    /// Removes buildah's working containers a stopped build leaves behind in the task's storage.
    func removeBuildContainers() -> ChildCommand {
        ChildCommand(executable: configuration.buildah, arguments: ["rm", "--all"], environment: environment)
    }

    /// `buildah push` of a local image to the run's registry, with the run's auth file; the
    /// manifest digest the registry stored is written to `digestFile`.
    func push(_ reference: String, digestFile: String) -> ChildCommand {
        let args = ["push", "--signature-policy", directory.policy] + registryAccess
            + ["--digestfile", digestFile, reference, "docker://" + reference]
        return ChildCommand(executable: configuration.buildah, arguments: args, environment: environment)
    }

    private var podmanGlobal: [String] {
        ["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    }
}
