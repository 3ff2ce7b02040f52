import Foundation
import OCIModel
#if canImport(Glibc)
import Glibc
#endif

/// The places a run works in, each its own:
/// - `<state>/tasks/<task>/storage`: the containers-storage root of the task, shared by buildah
///   and podman within a run and kept across the task's runs (its layer cache; never shared
///   with another task);
/// - `<state>/runs/<run id>/` (mode 0700): the generated `containers.conf`, `storage.conf`, `registries.conf`
///   and `policy.json`, the auth file while the run lasts, `logs/run.log`, `digests/`, `home/`,
///   `tmp/`; kept after the run;
/// - the task's run root, `<runRootParent>/berth-task-<16 hex digits of the storage path's
///   SHA-256>` (podman refuses a run root longer than 50 characters): transient state (locks,
///   mounts, exit files). It is the task's, not the run's, because podman's database in the
///   storage records the run root (and its tmp dir) and refuses any other, in `podman run` and
///   in the clean-up process conmon starts after the container ends.
struct RunDirectory {
    let storageRoot: String
    let path: String
    let runRoot: String

    var containersConf: String { path + "/containers.conf" }
    var storageConf: String { path + "/storage.conf" }
    var registriesConf: String { path + "/registries.conf" }
    var policy: String { path + "/policy.json" }
    var authFile: String { path + "/auth.json" }
    /// The auth file of a run without credentials: no entry.
    var emptyAuthFile: String { path + "/no-auth.json" }
    var logFile: String { path + "/logs/run.log" }
    var home: String { path + "/home" }
    var tmp: String { path + "/tmp" }
    /// Where the build sandbox's root is mounted, in the sandbox's own mount namespace (an empty
    /// directory on the host).
    var sandboxRoot: String { path + "/sandbox" }
    func digestFile(step index: Int, reference: Int) -> String { path + "/digests/step\(index)-\(reference)" }

    /// The `containers.conf` every tool of the run reads (CONTAINERS_CONF): podman's default
    /// rlimits fail on these machines, and runc is the runtime that works (crun does not).
    var containersConfText: String {
        """
        [containers]
        default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

        [engine]
        runtime = "runc"
        cgroup_manager = "cgroupfs"
        events_logger = "none"
        tmp_dir = "\(runRoot)/libpod"

        """
    }

    /// The `storage.conf` both tools read (CONTAINERS_STORAGE_CONF): the task's storage and run root.
    func storageConfText(driver: String) -> String {
        """
        [storage]
        driver = "\(driver)"
        graphroot = "\(storageRoot)"
        runroot = "\(runRoot)"

        """
    }

    static func taskStorage(configuration: TaskRunnerConfiguration, taskName: String) -> String {
        configuration.stateDirectory + "/tasks/" + taskName + "/storage"
    }

    static func taskRunRoot(configuration: TaskRunnerConfiguration, taskName: String) -> String {
        let storage = taskStorage(configuration: configuration, taskName: taskName)
        return configuration.runRootParent + "/berth-task-" + Digest.compute(Array(storage.utf8)).hex.prefix(16)
    }

    /// Creates the run's directories; a run id that already has a directory is refused.
    static func create(configuration: TaskRunnerConfiguration, taskName: String, runID: String,
                       registry: String, reached: Set<String> = []) throws -> RunDirectory {
        guard isRegistryHost(registry) else { throw TaskRunError("invalid registry \(Confined.quote(registry))") }
        let fm = FileManager.default
        let storage = taskStorage(configuration: configuration, taskName: taskName)
        let runs = configuration.stateDirectory + "/runs"
        try fm.createDirectory(atPath: storage, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try fm.createDirectory(atPath: runs, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = runs + "/" + runID
        guard mkdir(path, 0o700) == 0 else {
            throw TaskRunError(errno == EEXIST ? "run \(runID) already has a directory (\(path))"
                                               : "cannot create the run directory \(path): \(String(cString: strerror(errno)))")
        }
        for sub in ["logs", "digests", "home", "tmp", "sandbox", "home/.config", "home/.config/containers"] {
            try fm.createDirectory(atPath: path + "/" + sub, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
        let runRoot = taskRunRoot(configuration: configuration, taskName: taskName)
        try privateDirectory(runRoot)
        let directory = RunDirectory(storageRoot: storage, path: path, runRoot: runRoot)
        try writePrivate(directory.containersConf, directory.containersConfText)
        try writePrivate(directory.storageConf, directory.storageConfText(driver: configuration.storageDriver))
        try writePrivate(directory.registriesConf, registriesConfText(registry: registry, transport: configuration.registryTransport,
                                                                      insecure: configuration.insecureRegistries, reached: reached))
        if case .verifiedTLS(let caFiles) = configuration.registryTransport, !caFiles.isEmpty {
            try directory.trust(caFiles: caFiles, for: registry)
        }
        try writePrivate(directory.policy, #"{"default":[{"type":"insecureAcceptAnything"}]}"# + "\n")
        try writePrivate(directory.emptyAuthFile, #"{"auths":{}}"# + "\n")
        return directory
    }

    /// The run's `registries.conf` (CONTAINERS_REGISTRIES_CONF): Docker Hub is the one search
    /// registry, so an unqualified `FROM alpine` means `docker.io/library/alpine` as in Docker
    /// and ACR (and as a task's declared bases record it), never a guess among several
    /// registries, and no other short-name alias or search list of the host's; this registry plain HTTP only when
    /// its transport says so, and named explicitly otherwise, so that a shorter insecure prefix
    /// (an operator's `127.0.0.1` among the insecure base registries) never covers it (the
    /// longest matching prefix wins); the operator's insecure registries, and no other.
    ///
    /// An insecure host named without a port means every port of it (as the base poller reads
    /// it). containers-image matches a location `host` against `host:5000/…` only by a prefix
    /// rule its authors call unintended, so each `host:port` of that host the run reaches
    /// (`reached`: its Dockerfiles' images and its `cmd` images) is named as well.
    static func registriesConfText(registry: String, transport: RegistryTransport, insecure: Set<String>,
                                   reached: Set<String> = []) -> String {
        var text = "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n"
        text += "\n[[registry]]\nlocation = \"\(registry)\"\ninsecure = \(transport == .plainHTTP)\n"
        var locations: Set<String> = []
        let own = registry.lowercased()
        for host in insecure where host.lowercased() != own && isRegistryHost(host) {
            locations.insert(host)
            guard hostOnly(host) == host else { continue }
            for other in reached where other.lowercased() != own && isRegistryHost(other)
                && hostOnly(other.lowercased()) == host.lowercased() {
                locations.insert(other)
            }
        }
        for location in locations.sorted() {
            text += "\n[[registry]]\nlocation = \"\(location)\"\ninsecure = true\n"
        }
        return text
    }

    /// `host[:port]` without its port (`[::1]:5000` → `[::1]`).
    static func hostOnly(_ registry: String) -> String {
        if registry.hasPrefix("[") {
            guard let close = registry.firstIndex(of: "]") else { return registry }
            return String(registry[...close])
        }
        return registry.firstIndex(of: ":").map { String(registry[..<$0]) } ?? registry
    }

    /// `host[:port]` as a registries.conf location and a directory name: letters, digits, `.-_:[]`
    /// (no quote, backslash, slash or newline), not `.` or `..`.
    static func isRegistryHost(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 260 && s != "." && s != ".."
            && s.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || ".-_:[]".unicodeScalars.contains($0)) }
    }

    /// Where the run's tools look for the CA certificates of `registry` (containers-certs.d, in
    /// the run's own home, which is their `HOME`): for this registry only.
    func certificateDirectory(for registry: String) -> String { home + "/.config/containers/certs.d/" + registry }

    /// Writes the certificates of `caFiles` (their CERTIFICATE blocks only) to `ca.crt` of this
    /// registry's certificate directory, read now (a certificate reloaded by SIGHUP is the one
    /// the next run trusts).
    func trust(caFiles: [String], for registry: String) throws {
        let pem: String
        do { pem = try RegistryTransport.certificates(inFiles: caFiles) } catch let error as TaskRunError {
            throw TaskRunError("\(error.description) (trusted by runs for \(registry))")
        }
        var path = home
        for part in [".config", "containers", "certs.d", registry] {
            path += "/" + part
            try Self.privateDirectory(path)
        }
        try Self.writePrivate(path + "/ca.crt", pem)
    }

    /// The auth file of the run's push credentials (mode 0600, created exclusively, never
    /// following a link): what buildah and podman read with `--authfile`. Returns the strings
    /// that must never appear in a log.
    func writeAuthFile(registry: String, credentials: PushCredentials) throws -> [String] {
        let encoded = Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()
        let document: [String: Any] = ["auths": [registry: ["auth": encoded]]]
        let data = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
        try Self.writePrivate(authFile, String(decoding: data, as: UTF8.self))
        return [credentials.password, encoded]
    }

    /// Removes what must not outlive the run: the auth file.
    func cleanUp() {
        unlink(authFile)
    }

    /// Creates `path` (mode 0700) or accepts it when it is already a directory of this user's
    /// that only this user can write, and no link.
    static func privateDirectory(_ path: String) throws {
        if mkdir(path, 0o700) == 0 { return }
        guard errno == EEXIST else { throw TaskRunError("cannot create \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR, info.st_uid == geteuid(),
              info.st_mode & 0o022 == 0 else {
            throw TaskRunError("\(path) exists and is not a private directory of this user")
        }
    }

    static func writePrivate(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TaskRunError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TaskRunError("cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
    }
}

/// Paths a task file names (a build context, a Dockerfile, a working directory) are relative to
/// the run's source directory and must stay inside it once every link is followed.
enum Confined {
    /// The real path of `relative` under `root` (itself a real path), or the reason it is refused.
    static func path(_ relative: String, under root: String, what: String) -> Result<String, TaskRunError> {
        guard !relative.isEmpty, !relative.contains("\0") else { return .failure(TaskRunError("\(what) is empty")) }
        guard !relative.hasPrefix("/") else {
            return .failure(TaskRunError("\(what) \(quote(relative)) must be relative to the run's source directory"))
        }
        guard !relative.contains("://"), !relative.hasPrefix("git@") else {
            return .failure(TaskRunError("\(what) \(quote(relative)) is a URL; a run builds from its own source directory"))
        }
        guard let real = realPath(root + "/" + relative) else {
            return .failure(TaskRunError("\(what) \(quote(relative)) does not exist in the run's source directory"))
        }
        guard real == root || real.hasPrefix(root + "/") else {
            return .failure(TaskRunError("\(what) \(quote(relative)) is outside the run's source directory"))
        }
        return .success(real)
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    static func quote(_ s: String) -> String { "'" + String(s.prefix(200)) + (s.count > 200 ? "…" : "") + "'" }
}
