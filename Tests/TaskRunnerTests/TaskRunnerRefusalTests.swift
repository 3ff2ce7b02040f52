import Foundation
import Tasks
import XCTest
@testable import TaskRunner

/// What a run refuses before anything runs: paths that leave the source, pushes elsewhere,
/// unsafe names; and the command lines that carry untrusted values as argv entries.
final class TaskRunnerRefusalTests: XCTestCase {
    func run(_ text: String, source: String, runID: String = "r1") async throws -> TaskRunResult {
        let state = try stateDirectory()
        let file = try Support.taskFile(text, runID: runID, registry: "berth.test:5000")
        return try await Support.runner(state: state).run(
            TaskRunRequest(taskName: "refusals", runID: runID, taskFile: file, sourceDirectory: source,
                           registry: "berth.test:5000", credentials: PushCredentials(username: "u", password: "not-in-any-message")))
    }

    func refusal(_ result: TaskRunResult, _ step: String = "acb_step_0") -> String? {
        guard case .refused(let reason) = result.step(step)?.attempts.first else { return nil }
        return reason
    }

    func testAContextOrDockerfileOutsideTheSourceIsRefused() async throws {
        let root = try temporaryDirectory("root")
        let source = root + "/source"
        try FileManager.default.createDirectory(atPath: source + "/sub", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
        try "FROM scratch\n".write(toFile: root + "/outside/Dockerfile", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: source + "/escape", withDestinationPath: root + "/outside")
        try FileManager.default.createSymbolicLink(atPath: source + "/Dockerfile.link", withDestinationPath: root + "/outside/Dockerfile")

        let cases: [(String, String)] = [
            ("build: -t app:1 ../outside", "the build context '../outside' is outside the run's source directory"),
            ("build: -t app:1 escape", "the build context 'escape' is outside the run's source directory"),
            ("build: -t app:1 /", "the build context '/' must be relative to the run's source directory"),
            ("build: -t app:1 https://example.com/repo.git", "the build context 'https://example.com/repo.git' is a URL; a run builds from its own source directory"),
            ("build: -t app:1 -f ../outside/Dockerfile .", "the Dockerfile '../outside/Dockerfile' is outside the run's source directory"),
            ("build: -t app:1 -f Dockerfile.link .", "the Dockerfile 'Dockerfile.link' is outside the run's source directory"),
            ("build: -t app:1 -f ../Dockerfile.link sub", "the Dockerfile '../Dockerfile.link' is outside the run's source directory"),
            ("build: -t app:1 -f missing .", "the Dockerfile 'missing' does not exist in the run's source directory"),
        ]
        for (n, (step, reason)) in cases.enumerated() {
            let result = try await run("version: v1.1.0\nsteps:\n  - \(step)\n", source: source, runID: "r\(n)")
            XCTAssertEqual(result.status, .failed, step)
            XCTAssertEqual(refusal(result), reason, step)
            XCTAssertEqual(result.reason, "step acb_step_0 failed: \(reason)", step)
        }
    }

    func testAPushToAnotherRegistryIsRefused() async throws {
        let source = try temporaryDirectory("src")
        let result = try await run("""
            version: v1.1.0
            steps:
              - push: [$Registry/app:1, other.example/app:1]
            """, source: source)
        XCTAssertEqual(result.status, .failed)
        XCTAssertEqual(refusal(result), "a push goes to this registry only: 'other.example/app:1' does not start with berth.test:5000/")
        XCTAssertEqual(result.pushed, [])
    }

    func testUnsafeNamesAndAReusedRunIDAreRefused() async throws {
        let source = try temporaryDirectory("src")
        let state = try stateDirectory()
        let file = try Support.taskFile("version: v1.1.0\nsteps:\n  - push: [$Registry/app:1]\n", runID: "x", registry: "berth.test")
        let runner = Support.runner(state: state)
        for (task, run) in [("../etc", "r1"), ("ok", "../r1"), ("ok", ""), ("ok", "a/b"), ("-x", "r1")] {
            do {
                _ = try await runner.run(TaskRunRequest(taskName: task, runID: run, taskFile: file, sourceDirectory: source,
                                                        registry: "berth.test", credentials: nil))
                XCTFail("\(task) \(run) accepted")
            } catch let error as TaskRunError {
                XCTAssertTrue(error.description.hasPrefix("invalid "), error.description)
            }
        }
        let request = TaskRunRequest(taskName: "ok", runID: "r1", taskFile: file, sourceDirectory: source,
                                     registry: "berth.test", credentials: nil)
        _ = try await runner.run(request)
        do {
            _ = try await runner.run(request)
            XCTFail("a run id was used twice")
        } catch let error as TaskRunError {
            XCTAssertTrue(error.description.hasPrefix("run r1 already has a directory"), error.description)
        }
    }

    /// Untrusted values reach podman and buildah as single argv entries; the tools' environment
    /// is the runner's alone (no variable of the server's leaks in, the auth file is named by path).
    func testUntrustedValuesAreArgvEntriesAndTheEnvironmentIsTheRunners() throws {
        let directory = RunDirectory(storageRoot: "/s", path: "/run/r1", runRoot: "/tmp/berth-run-x")
        var configuration = TaskRunnerConfiguration(stateDirectory: "/state")
        configuration.memoryLimit = "256m"
        let tools = ToolCommands(configuration: configuration, directory: directory, hasCredentials: true)
        let hostile = "x; touch /tmp/pwned $(id) `id`"
        let command = try RunCommand(parsing: "berth.test/app:1 sh -c 'echo hi'")
        let run = tools.run(command, env: [EnvironmentVariable(name: "EVIL", value: hostile)], workingDirectory: "/work dir",
                            network: .none, name: "c1")
        let podman = [
            "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
            "run", "--rm", "--name", "c1", "--network", "none", "--memory", "256m", "--pull", "missing",
            "--authfile", "/run/r1/auth.json",
            "--env", "EVIL=" + hostile, "--workdir", "/work dir", "berth.test/app:1", "sh", "-c", "echo hi",
        ]
        if tools.configuration.isolateBuildPIDs {
            // As root: podman in the build sandbox too, with the cgroup hierarchy (runc makes the
            // container's memory cgroup) and net_admin (its network namespace), which buildah lacks.
            XCTAssertEqual(run.executable, "/usr/bin/unshare")
            let separator = try XCTUnwrap(run.arguments.firstIndex(of: "--"))
            XCTAssertEqual(Array(run.arguments[(separator + 1)...]), ["/usr/bin/podman"] + podman)
            XCTAssertEqual(run.arguments[separator - 1], "cgroup:/sys/fs/cgroup")
            let drops = try XCTUnwrap(run.arguments.first { $0.hasPrefix("-sys_module,") })
            XCTAssertFalse(drops.contains("net_admin"))
            XCTAssertTrue(drops.contains("-dac_read_search"))
        } else {
            XCTAssertEqual(run.executable, "/usr/bin/podman")
            XCTAssertEqual(run.arguments, podman)
        }
        // Only a step that asks for it gets the host's network.
        let online = tools.run(command, env: [], workingDirectory: nil, network: .host, name: "c2")
        XCTAssertEqual(Array(online.arguments.drop { $0 != "--network" }.prefix(2)), ["--network", "host"])
        XCTAssertEqual(online.arguments.filter { $0 == "--network" }.count, 1)
        XCTAssertEqual(Set(run.environment.keys), ["PATH", "HOME", "TMPDIR", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF",
                                                   "CONTAINERS_STORAGE_CONF",                                                    "BUILDAH_ISOLATION", "REGISTRY_AUTH_FILE"])
        XCTAssertEqual(run.environment["CONTAINERS_CONF"], "/run/r1/containers.conf")
        XCTAssertTrue(directory.containersConfText.contains(#"default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]"#))
        XCTAssertTrue(directory.containersConfText.contains(#"tmp_dir = "/tmp/berth-run-x/libpod""#))
        XCTAssertEqual(directory.storageConfText(driver: "vfs"),
                       "[storage]\ndriver = \"vfs\"\ngraphroot = \"/s\"\nrunroot = \"/tmp/berth-run-x\"\n")

        let arguments = try BuildArguments(parsing: "-t berth.test/app:1 --build-arg 'V=\(hostile)' --target final .")
        let build = tools.build(arguments, context: "/src", dockerfile: "/src/Dockerfile")
        let bud = [
            "bud", "--isolation", "chroot", "--layers", "--signature-policy", "/run/r1/policy.json",
            "--cap-drop", "CAP_SYS_CHROOT", "--cap-drop", "CAP_MKNOD",
            "--authfile", "/run/r1/auth.json", "-f", "/src/Dockerfile",
            "-t", "berth.test/app:1", "--build-arg", "V=" + hostile, "--target", "final", "--pull=never", "/src",
        ]
        if tools.configuration.isolateBuildPIDs {
            // As root: buildah in PID, IPC and mount namespaces of its own, in the build sandbox
            // (a root of its own: only the run's directories of the state directory).
            XCTAssertEqual(build.executable, "/usr/bin/unshare")
            XCTAssertEqual(build.arguments, ["--pid", "--fork", "--mount-proc", "--kill-child", "--ipc", "/bin/sh", "-c", ToolCommands.sandboxScript,
                                             "sh", "/run/r1/sandbox", ToolCommands.workingDirectory, "/usr/bin/setpriv",
                                             ToolCommands.sandboxCapabilityDrops.map { "-" + $0 }.joined(separator: ","),
                                             "ro:/run/r1", "rw:/run/r1/home", "ro:/run/r1/home/.config/containers", "rw:/run/r1/tmp", "rw:/s",
                                             "mask:/state", "rw:/tmp/berth-run-x", "mask:/usr/local/etc", "mask:/usr/local/var",
                                             "--", "/usr/bin/buildah"] + bud)
            XCTAssertFalse(ToolCommands.sandboxScript.contains("eval"))
        } else {
            XCTAssertEqual(build.executable, "/usr/bin/buildah")
            XCTAssertEqual(build.arguments, bud)
        }
        var unisolated = tools
        unisolated.configuration.isolateBuildPIDs = false
        let plain = unisolated.build(arguments, context: "/src", dockerfile: "/src/Dockerfile")
        XCTAssertEqual(plain.executable, "/usr/bin/buildah")
        XCTAssertEqual(plain.arguments, bud)
        let push = tools.push("berth.test/app:1", digestFile: "/run/r1/digests/d")
        XCTAssertEqual(Array(push.arguments.suffix(4)), ["--digestfile", "/run/r1/digests/d", "berth.test/app:1", "docker://berth.test/app:1"])
        XCTAssertFalse(push.arguments.joined(separator: " ").contains("creds"))
    }

    /// A line that carries the run's credentials (a tool echoing them, say) reaches neither the
    /// sink nor the kept log with them.
    func testCredentialsAreMaskedInTheLog() async throws {
        let state = try stateDirectory()
        let sink = CollectingSink()
        let log = try RunLog(path: state + "/run.log", sink: sink, secrets: ["s3cret-pw", "dTpzM2NyZXQtcHc=", ""])
        await log.record(step: "push", .stderr, "auth u:s3cret-pw or Basic dTpzM2NyZXQtcHc= refused")
        await log.close()
        let streamed = await sink.lines
        XCTAssertEqual(streamed.map(\.text), ["auth u:*** or Basic *** refused"])
        let kept = try String(contentsOfFile: state + "/run.log", encoding: .utf8)
        XCTAssertTrue(kept.hasSuffix(" push stderr| auth u:*** or Basic *** refused\n"), kept)
    }

    /// The auth file is private to the run's user and removed after the run; the run root is the
    /// task's (short enough for podman, private), the same for every run of the task.
    func testTheAuthFileIsPrivateAndRemovedAfterTheRun() throws {
        let state = try stateDirectory()
        let directory = try RunDirectory.create(configuration: TaskRunnerConfiguration(stateDirectory: state), taskName: "t", runID: "r", registry: "r:5000")
        let secrets = try directory.writeAuthFile(registry: "berth.test", credentials: PushCredentials(username: "u", password: "s3cret"))
        XCTAssertEqual(secrets, ["s3cret", Data("u:s3cret".utf8).base64EncodedString()])
        let attributes = try FileManager.default.attributesOfItem(atPath: directory.authFile)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        XCTAssertLessThanOrEqual(directory.runRoot.utf8.count, 50)
        let runRoot = try FileManager.default.attributesOfItem(atPath: directory.runRoot)
        XCTAssertEqual((runRoot[.posixPermissions] as? NSNumber)?.intValue, 0o700)
        directory.cleanUp()
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.authFile))
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.path + "/logs"))
        let next = try RunDirectory.create(configuration: TaskRunnerConfiguration(stateDirectory: state), taskName: "t", runID: "r2", registry: "r:5000")
        XCTAssertEqual(next.runRoot, directory.runRoot)
        XCTAssertEqual(next.storageRoot, directory.storageRoot)
        let other = try RunDirectory.create(configuration: TaskRunnerConfiguration(stateDirectory: state), taskName: "u", runID: "r3", registry: "r:5000")
        XCTAssertNotEqual(other.runRoot, directory.runRoot)
        XCTAssertNotEqual(other.storageRoot, directory.storageRoot)
    }

    /// How a run reaches its registry is per registry, never a global switch: plain HTTP only
    /// for this registry when its transport says so (and the operator's insecure registries),
    /// named explicitly when verified so that an insecure shorter prefix cannot cover it; a CA
    /// file is trusted for this registry only, in the run's own home.
    func testRegistryTrustIsWrittenPerRegistry() throws {
        XCTAssertEqual(RunDirectory.registriesConfText(registry: "127.0.0.1:5000", transport: .plainHTTP, insecure: []),
                       "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n\n[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n")
        XCTAssertEqual(RunDirectory.registriesConfText(registry: "registry.example:443", transport: .verifiedTLS(caFiles: []),
                                                       insecure: ["127.0.0.1", "lab:5000", "bad\"\n[[registry]]"]),
                       "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n\n[[registry]]\nlocation = \"registry.example:443\"\ninsecure = false\n"
                       + "\n[[registry]]\nlocation = \"127.0.0.1\"\ninsecure = true\n"
                       + "\n[[registry]]\nlocation = \"lab:5000\"\ninsecure = true\n")

        // A port-less insecure host covers every port of it: each port the run reaches is named
        // (containers-image would match `lab` against `lab:5000` only by an unintended prefix
        // rule); a host named with its port covers that port only; the run's own registry is
        // never made insecure by it.
        XCTAssertEqual(RunDirectory.registriesConfText(registry: "lab:443", transport: .verifiedTLS(caFiles: []),
                                                       insecure: ["lab", "[fd00::1]", "other:5000"],
                                                       reached: ["lab:5000", "LAB:6000", "lab", "lab:443", "[fd00::1]:5000", "other:6000",
                                                                 "laboratory:5000", "docker.io"]),
                       "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n\n[[registry]]\nlocation = \"lab:443\"\ninsecure = false\n"
                       + "\n[[registry]]\nlocation = \"LAB:6000\"\ninsecure = true\n"
                       + "\n[[registry]]\nlocation = \"[fd00::1]\"\ninsecure = true\n"
                       + "\n[[registry]]\nlocation = \"[fd00::1]:5000\"\ninsecure = true\n"
                       + "\n[[registry]]\nlocation = \"lab\"\ninsecure = true\n"
                       + "\n[[registry]]\nlocation = \"lab:5000\"\ninsecure = true\n"
                       + "\n[[registry]]\nlocation = \"other:5000\"\ninsecure = true\n")
        // What a run reaches: its Dockerfiles' images (every stage, `COPY --from`) and its `cmd` images.
        let reachSource = try temporaryDirectory("reach")
        try "FROM lab:5000/base:1 AS b\nFROM scratch\nCOPY --from=lab:7000/tools:1 /x /x\n"
            .write(toFile: reachSource + "/Dockerfile", atomically: true, encoding: .utf8)
        let reachFile = try Support.taskFile("""
            version: v1.1.0
            steps:
              - build: -t $Registry/app:1 .
              - cmd: mirror.test:8080/tools/check:2 true
              - cmd: busybox true
            """, runID: "reach", registry: "berth.test")
        XCTAssertEqual(RunExecution.registriesReached(by: reachFile, source: try XCTUnwrap(Confined.realPath(reachSource))), ["lab:5000", "lab:7000", "mirror.test:8080"])

        let state = try stateDirectory()
        for hostile in ["r\"\ninsecure = true", "../x", "..", "a/b", ""] {
            XCTAssertThrowsError(try RunDirectory.create(configuration: TaskRunnerConfiguration(stateDirectory: state), taskName: "t",
                                                         runID: "bad", registry: hostile), hostile)
        }
        // Only the certificates of each file are copied (a listener's file may hold its key too).
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let second = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
        try pem.write(toFile: state + "/ca.pem", atomically: true, encoding: .utf8)
        try ("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n" + second)
            .write(toFile: state + "/listener.pem", atomically: true, encoding: .utf8)
        var configuration = TaskRunnerConfiguration(stateDirectory: state)
        configuration.registryTransport = .verifiedTLS(caFiles: [state + "/ca.pem", state + "/listener.pem"])
        let directory = try RunDirectory.create(configuration: configuration, taskName: "t", runID: "ca", registry: "proxy.test:8443")
        let placed = directory.home + "/.config/containers/certs.d/proxy.test:8443/ca.crt"
        XCTAssertEqual(try String(contentsOfFile: placed, encoding: .utf8), pem + second)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.home + "/.config/containers/certs.d"), ["proxy.test:8443"])
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: placed)[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        XCTAssertEqual(try String(contentsOfFile: directory.registriesConf, encoding: .utf8),
                       RunDirectory.registriesConfText(registry: "proxy.test:8443", transport: configuration.registryTransport, insecure: []))
        // A CA file that is missing or holds no certificate stops the run before any tool starts.
        try "not a certificate".write(toFile: state + "/junk.pem", atomically: true, encoding: .utf8)
        for file in [state + "/missing.pem", state + "/junk.pem"] {
            configuration.registryTransport = .verifiedTLS(caFiles: [state + "/ca.pem", file])
            XCTAssertThrowsError(try RunDirectory.create(configuration: configuration, taskName: "t", runID: "ca-" + UUID().uuidString.prefix(8),
                                                         registry: "proxy.test:8443"))
        }
    }
}
