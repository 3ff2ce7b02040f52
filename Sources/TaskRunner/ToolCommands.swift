import Foundation
import Tasks

/// The command lines of a run's steps: buildah for `build` and `push`, podman for `cmd`. Every
/// value from the task file is one argv entry of its own (no shell ever sees it), and the
/// environment is the runner's, never the server's or the task's.
struct ToolCommands: Sendable {
    var configuration: TaskRunnerConfiguration
    var directory: RunDirectory
    var hasCredentials: Bool
    /// The run's source (build contexts and Dockerfiles), shown read-only in the build sandbox.
    var source: String? = nil

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
        return sandboxed(ChildCommand(executable: configuration.buildah, arguments: args, environment: environment),
                         network: network)
    }

    /// `command` in the build sandbox when the server runs as root (`isolateBuildPIDs`), and in a
    /// network namespace of its own for `network: .none` (`unshare --net`, root only: a
    /// non-root server refuses such a build before it gets here).
    ///
    /// The sandbox: `unshare` makes PID, IPC and mount namespaces (a `RUN` of chroot isolation
    /// has none of its own: it could see and kill the host's processes and attach the host's
    /// root-owned System V IPC objects; `--kill-child`: the namespace dies with unshare, which
    /// stays in the runner's process group, so a timeout's signals reach it), and `sandboxScript`
    /// builds a root of the run's own in that mount namespace and `pivot_root`s into it before
    /// the tool starts: `/usr` read-only, a few files of `/etc` copied, fresh `/proc`, `/sys`
    /// (read-only), `/tmp`, `/var`, `/run` and a minimal `/dev`, and only this run's directories
    /// (`sandboxMounts`). Chroot isolation is a plain `chroot(2)` inside whatever root buildah
    /// sees: whatever walks out of a `RUN` (a buildah flaw, a capability left) reaches this
    /// root, never the server's data directory, its keys or another task's storage.
    func sandboxed(_ command: ChildCommand, network: StepNetwork, writable: [String] = [], tools: [String] = [],
                   cgroups: Bool = false, drops: [String] = sandboxCapabilityDrops) -> ChildCommand {
        var namespaces: [String] = []
        if configuration.isolateBuildPIDs { namespaces += ["--pid", "--fork", "--mount-proc", "--kill-child", "--ipc"] }
        if network == .none { namespaces = ["--net"] + namespaces }
        guard !namespaces.isEmpty else { return command }
        guard configuration.isolateBuildPIDs else {
            return ChildCommand(executable: configuration.unshare, arguments: namespaces + [command.executable] + command.arguments,
                                environment: command.environment)
        }
        let mounts = sandboxMounts(executables: [command.executable] + tools, writable: writable)
            + (cgroups ? ["cgroup:" + Self.cgroupRoot] : [])
        return ChildCommand(executable: configuration.unshare,
                            arguments: namespaces + [configuration.shell, "-c", Self.sandboxScript, "sh",
                                                     Self.absolute(directory.sandboxRoot), Self.workingDirectory, configuration.setpriv,
                                                     drops.map { "-" + $0 }.joined(separator: ",")]
                                + mounts + ["--", command.executable] + command.arguments,
                            environment: command.environment)
    }

    /// The cgroup hierarchy, shown (writable, with every controller's mount under it) to podman,
    /// whose runc makes each container's cgroups; each v1 hierarchy's `release_agent` (a program
    /// the kernel runs as the host's root) covered by `/dev/null`. Not a boundary against podman
    /// itself, which could move or limit any process's cgroups (the server's too).
    static let cgroupRoot = "/sys/fs/cgroup"

    /// Hidden whenever they are visible (under the shown `/usr`): other software's configuration
    /// and state there.
    static let alwaysHidden = ["/usr/local/etc", "/usr/local/var"]

    /// What the sandbox shows of the host besides its fixed root, as `sandboxScript` arguments
    /// (`mask:`, `ro:` or `rw:` and an absolute path, parents before their children):
    /// - `mask:` the state directory, `hiddenDirectories` (the server's data directory, its
    ///   database, keys and credentials files wherever they lie) and `alwaysHidden`, each by its
    ///   real path: where one would be visible (under `/usr`), an empty directory or `/dev/null`
    ///   covers it;
    /// - `ro:` the run's directory (its generated configuration and auth file), the run's
    ///   source (build contexts, Dockerfiles) and the directory of a tool not under `/usr`;
    /// - `rw:` (without devices) the run's `home` and `tmp`, the task's storage (its layer cache)
    ///   and run root, and `writable` (a push's digest directory); the tools' configuration in
    ///   `home/.config/containers` read-only again.
    func sandboxMounts(executables: [String], writable: [String] = []) -> [String] {
        var entries: [String: String] = [:]
        // Each by its real path only: the script mounts before `pivot_root`, where a link in a
        // path would lead into the host's own tree, not the sandbox's.
        let masks = ([configuration.stateDirectory] + configuration.hiddenDirectories + Self.alwaysHidden).map {
            Confined.realPath($0) ?? $0
        }
        for path in masks { entries[Self.normalized(path)] = "mask" }
        for path in [directory.path] + (source.map { [$0] } ?? []) { entries[Self.normalized(path)] = "ro" }
        for path in executables {
            let dir = Self.normalized((path as NSString).deletingLastPathComponent)
            let real = Confined.realPath(dir) ?? dir
            if !(real == "/usr" || real.hasPrefix("/usr/")), entries[dir] == nil { entries[dir] = "ro" }
        }
        for path in [directory.home, directory.tmp, directory.storageRoot, directory.runRoot] + writable {
            entries[Self.normalized(path)] = "rw"
        }
        // The run's tool configuration in its home (the CA it trusts for this registry,
        // registries.conf.d): what a later push reads, so nothing a build runs may change it.
        entries[Self.normalized(directory.home + "/.config/containers")] = "ro"
        return entries.filter { $0.key.hasPrefix("/") && $0.key != "/" }
            .sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            .map { "\($0.value):\($0.key)" }
    }

    /// The server's working directory, which its children inherit: a relative path of the
    /// configuration (`--data ./berth-data`) means the same inside the sandbox, which binds it
    /// at its absolute path and starts the tool there.
    static var workingDirectory: String { FileManager.default.currentDirectoryPath }

    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: workingDirectory, isDirectory: true)).standardizedFileURL.path
    }

    private static func normalized(_ path: String) -> String {
        var p = absolute(path)
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// Builds the sandbox's root on the tmpfs mounted at `$1` and `pivot_root`s into it, then
    /// runs what follows `--` in the directory `$2` (the server's working directory, as the
    /// tools' relative paths need) through `$3` (setpriv, under `/usr`), its bounding set
    /// without the capabilities `$4` lists (`sandboxCapabilityDrops`). The arguments between are `mask:PATH`, `ro:PATH` and `rw:PATH`
    /// (`sandboxMounts`). A constant script (one line: the runner logs a command line as one
    /// log line); every path is an argv entry, always quoted, never evaluated.
    /// - `/usr` (and `/bin`, `/lib`… as links into it, or bound read-only where they are
    ///   directories) read-only;
    /// - `/etc`: copies of the files a tool reads (users, name resolution, the loader's cache,
    ///   `ssl/openssl.cnf`), copies of the registry configuration of `containers` (search and
    ///   signature configuration, the seccomp profile, `certs.d`, whose client keys for registries
    ///   that ask for them go along; a writable `networks`, where buildah takes its lock) and of
    ///   `docker/certs.d`, and the CA certificates (`ssl/certs`, `ca-certificates`,
    ///   `pki/tls/certs`, `pki/ca-trust`), `alternatives` and `ld.so.conf.d` read-only; no
    ///   `shadow`, no `ssl/private`, no credentials file;
    /// - a `/dev` holding only what a build needs (the character devices every container gets,
    ///   a private `pts`, `shm`, the `fd` links): buildah binds the `/dev` it sees into each
    ///   `RUN`, and the host's would give a `RUN` running as root its block devices;
    /// - `/proc` of the new PID namespace (its `sys` read-only, `sysrq-trigger`, `kcore`, `kmsg`,
    ///   `timer_list` and `keys` masked), `/sys` read-only, and small `/tmp`, `/var` and `/run`
    ///   of its own.
    static let sandboxScript = [
        "set -e",
        #"root=$1"#,
        #"cwd=$2"#,
        #"setpriv=$3"#,
        #"drops=$4"#,
        "shift 4",
        #"mount -t tmpfs -o nosuid,nodev,mode=755,size=16m berth-root "$root""#,
        #"cd "$root""#,
        "mkdir -m 755 usr etc dev proc sys tmp var run .old",
        #"for d in bin sbin lib lib32 lib64 libx32; do if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$d"; elif [ -d "/$d" ]; then mkdir "$d"; mount --bind "/$d" "$d"; mount -o remount,bind,ro,nodev "$d"; fi; done"#,
        "mount --bind /usr usr",
        "mount -o remount,bind,ro,nodev usr",
        #"for f in passwd group hosts resolv.conf nsswitch.conf host.conf gai.conf ld.so.cache ld.so.conf localtime hostname services protocols; do if [ -f "/etc/$f" ]; then cat "/etc/$f" > "etc/$f"; fi; done"#,
        "mkdir -p etc/containers/networks etc/docker etc/ssl",
        #"for f in registries.conf registries.conf.d registries.d policy.json certs.d seccomp.json; do if [ -e "/etc/containers/$f" ]; then cp -a "/etc/containers/$f" "etc/containers/$f"; fi; done"#,
        #"if [ -d /etc/docker/certs.d ]; then cp -a /etc/docker/certs.d etc/docker/certs.d; fi"#,
        #"if [ -f /etc/ssl/openssl.cnf ]; then cat /etc/ssl/openssl.cnf > etc/ssl/openssl.cnf; fi"#,
        #"for d in ssl/certs ca-certificates pki/tls/certs pki/ca-trust alternatives ld.so.conf.d; do if [ -d "/etc/$d" ]; then mkdir -p "etc/$d"; mount --bind "/etc/$d" "etc/$d"; mount -o remount,bind,ro,nodev "etc/$d"; fi; done"#,
        "mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m berth-tmp tmp",
        "mount -t tmpfs -o nosuid,nodev,mode=755,size=64m berth-var var",
        "mkdir -m 1777 var/tmp",
        "mount -t tmpfs -o nosuid,nodev,mode=755,size=16m berth-run run",
        "mount -t proc -o nosuid,nodev,noexec berth-proc proc",
        // The kernel's tunables read-only, and the files that act on the machine masked, as
        // container runtimes do: a write that lands there (core_pattern runs a program as the
        // host's root) changes nothing.
        "mount --bind proc/sys proc/sys",
        "mount -o remount,bind,ro,nosuid,nodev,noexec proc/sys",
        #"for f in sysrq-trigger kcore kmsg timer_list keys; do if [ -e "proc/$f" ]; then mount --bind /dev/null "proc/$f"; fi; done"#,
        "mount -t sysfs -o ro,nosuid,nodev,noexec berth-sys sys",
        "mount -t tmpfs -o nosuid,noexec,mode=755,size=1m berth-dev dev",
        "mknod -m 666 dev/null c 1 3",
        "mknod -m 666 dev/zero c 1 5",
        "mknod -m 666 dev/full c 1 7",
        "mknod -m 666 dev/random c 1 8",
        "mknod -m 666 dev/urandom c 1 9",
        "mknod -m 666 dev/tty c 5 0",
        "mkdir -m 755 dev/pts",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec berth-pts dev/pts",
        "ln -s pts/ptmx dev/ptmx",
        "mkdir -m 1777 dev/shm",
        "mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 berth-shm dev/shm",
        "ln -s /proc/self/fd dev/fd",
        "ln -s /proc/self/fd/0 dev/stdin",
        "ln -s /proc/self/fd/1 dev/stdout",
        "ln -s /proc/self/fd/2 dev/stderr",
        #"while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do case "$1" in mask:/*) p="${1#mask:}"; if [ -L "$root$p" ]; then :; elif [ -d "$root$p" ]; then mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=1m berth-mask "$root$p"; elif [ -e "$root$p" ]; then mount --bind /dev/null "$root$p"; fi;; cgroup:/*) p="${1#cgroup:}"; mount --rbind "$p" "$root$p"; for f in "$root$p"/release_agent "$root$p"/*/release_agent; do if [ -f "$f" ]; then mount --bind /dev/null "$f"; fi; done;; ro:/*) p="${1#ro:}"; mkdir -p "$root$p"; mount --bind "$p" "$root$p"; mount -o remount,bind,ro,nodev "$root$p";; rw:/*) p="${1#rw:}"; mkdir -p "$root$p"; mount --bind "$p" "$root$p"; mount -o remount,bind,nodev "$root$p";; *) echo "berth sandbox: bad mount argument" >&2; exit 2;; esac; shift; done"#,
        #"[ "$1" = "--" ] || { echo "berth sandbox: no command" >&2; exit 2; }"#,
        "shift",
        #"mkdir -p "$root$cwd" 2>/dev/null || true"#,
        "pivot_root . .old",
        "umount -l /.old",
        "rmdir /.old",
        #"cd "$cwd" 2>/dev/null || cd /"#,
        #"exec "$setpriv" --bounding-set "$drops" -- "$@""#,
    ].joined(separator: "; ")

    /// Capabilities no tool of the sandbox (buildah pulling, building, pushing) ever uses, dropped
    /// from its bounding set before it starts (`setpriv`), so neither the tool nor anything it
    /// runs (a `RUN`, a flaw that runs a Dockerfile's code in buildah) can have them: loading
    /// kernel modules, raw I/O and `open_by_handle_at` (`dac_read_search`: how a process walks out
    /// of a mount namespace to any file of the host), the host's network configuration (a build
    /// with `network: host` shares it), clock, reboot, kernel log, BPF, perf, audit control,
    /// immutable files, leases and MAC policy. What buildah needs (mounts, chroot, ownership,
    /// device nodes of a layer) stays.
    static let sandboxCapabilityDrops = [
        "sys_module", "sys_rawio", "dac_read_search", "net_admin", "sys_time", "sys_boot", "syslog", "bpf", "perfmon",
        "audit_control", "linux_immutable", "lease", "mac_admin", "mac_override", "sys_pacct", "sys_tty_config",
        "wake_alarm", "block_suspend",
    ]

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
        sandboxed(ChildCommand(executable: configuration.shell, arguments: ["-c", Self.onBuildCheck, "sh", configuration.buildah, reference],
                               environment: environment), network: .host, tools: [configuration.buildah])
    }

    static let onBuildCheck = #"out=$("$1" inspect --type image --format '{{if .Docker.Config}}{{range .Docker.Config.OnBuild}}x{{end}}{{end}}' "$2") || exit 1; "#
        + #"if [ -n "$out" ]; then echo "the image $2 has ONBUILD triggers, which builds here refuse (buildah would run them without this server reading them)" >&2; exit 1; fi"#

    /// `buildah pull` of an image a build uses, into the task's storage, before the build (which
    /// then pulls nothing): always when the build asks (`--pull`), else when missing.
    func pull(_ reference: String, always: Bool) -> ChildCommand {
        let args = ["pull", "--signature-policy", directory.policy] + registryAccess
            + ["--policy", always ? "always" : "missing", reference]
        // In the sandbox too: the pull unpacks the image's layers (someone else's tar files).
        return sandboxed(ChildCommand(executable: configuration.buildah, arguments: args, environment: environment), network: .host)
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
        // In the sandbox too (the container's own network is podman's `--network`): podman and
        // runc read the task's storage, which a build's `RUN` wrote.
        return podmanSandboxed(ChildCommand(executable: configuration.podman, arguments: args, environment: environment))
    }

    /// podman in the build sandbox: runc makes each container's cgroups (its memory limit), so the
    /// sandbox shows the cgroup hierarchy, and sets up the network namespace of a container
    /// without network (`net_admin`, which buildah's drops leave out).
    func podmanSandboxed(_ command: ChildCommand) -> ChildCommand {
        sandboxed(command, network: .host, cgroups: true, drops: Self.sandboxCapabilityDrops.filter { $0 != "net_admin" })
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

    /// Removes a container a stopped `cmd` step leaves behind: its record in the task's storage (in
    /// the sandbox the PID namespace takes conmon and the container's processes with podman;
    /// without it conmon outlives podman and keeps the container running).
    func removeContainer(_ name: String) -> ChildCommand {
        podmanSandboxed(ChildCommand(executable: configuration.podman,
                                     arguments: podmanGlobal + ["rm", "--force", "--ignore", "--time", "0", name], environment: environment))
    }

    /// Removes buildah's working containers a stopped build leaves behind in the task's storage.
    func removeBuildContainers() -> ChildCommand {
        sandboxed(ChildCommand(executable: configuration.buildah, arguments: ["rm", "--all"], environment: environment), network: .host)
    }

    /// `buildah push` of a local image to the run's registry, with the run's auth file; the
    /// manifest digest the registry stored is written to `digestFile`.
    func push(_ reference: String, digestFile: String) -> ChildCommand {
        let args = ["push", "--signature-policy", directory.policy] + registryAccess
            + ["--digestfile", digestFile, reference, "docker://" + reference]
        // In the sandbox too: it reads the layers a build's `RUN`s wrote.
        return sandboxed(ChildCommand(executable: configuration.buildah, arguments: args, environment: environment), network: .host,
                         writable: [(digestFile as NSString).deletingLastPathComponent])
    }

    private var podmanGlobal: [String] {
        ["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    }
}
