import Foundation
import Testing
@testable import TaskRunner
import Tasks

/// A task's `berth` steps: the listener they reach (never the public URL), their environment and
/// working directory, and the podman options of ACR's `entryPoint` / `user`.
@Suite struct BerthStepTests {
    @Test func plainHTTPListenersAreReachedAtTheirAddressAWildcardOnLoopback() throws {
        #expect(try BerthStepEndpoint.forListener(host: "0.0.0.0", port: 5000, tls: nil).get()
                == BerthStepEndpoint(url: "http://127.0.0.1:5000"))
        #expect(try BerthStepEndpoint.forListener(host: "::", port: 5000, tls: nil).get() == BerthStepEndpoint(url: "http://127.0.0.1:5000"))
        #expect(try BerthStepEndpoint.forListener(host: "10.1.2.3", port: 443, tls: nil).get() == BerthStepEndpoint(url: "http://10.1.2.3:443"))
        #expect(try BerthStepEndpoint.forListener(host: "::1", port: 8080, tls: nil).get() == BerthStepEndpoint(url: "http://[::1]:8080"))
    }

    @Test func aTLSListenerIsReachedByANameItsCertificateHoldsWithTheCertificateTrusted() throws {
        // The certificate holds the listener's address: the URL names it.
        #expect(try BerthStepEndpoint.forListener(host: "0.0.0.0", port: 5443, tls: ("/c.pem", ["registry.example", "127.0.0.1"])).get()
                == BerthStepEndpoint(url: "https://127.0.0.1:5443", caFile: "/c.pem"))
        #expect(try BerthStepEndpoint.forListener(host: "::1", port: 5443, tls: ("/c.pem", ["::1"])).get()
                == BerthStepEndpoint(url: "https://[::1]:5443", caFile: "/c.pem"))
        // Else its first host name, reached at the listener's address.
        #expect(try BerthStepEndpoint.forListener(host: "0.0.0.0", port: 5443, tls: ("/c.pem", ["10.9.9.9", "Registry.Example"])).get()
                == BerthStepEndpoint(url: "https://registry.example:5443", connectAddress: "127.0.0.1", caFile: "/c.pem"))
        #expect(try BerthStepEndpoint.forListener(host: "192.168.1.5", port: 443, tls: ("/c.pem", ["*.corp.example"])).get()
                == BerthStepEndpoint(url: "https://berth-local.corp.example:443", connectAddress: "192.168.1.5", caFile: "/c.pem"))
        // Nothing to verify against: refused, never unverified.
        let refused = BerthStepEndpoint.forListener(host: "0.0.0.0", port: 5443, tls: ("/c.pem", ["10.9.9.9"]))
        guard case .failure(let error) = refused else { Issue.record("accepted \(refused)"); return }
        #expect(error.description.contains("names neither the listen address 127.0.0.1 nor a host name"))
    }

    func tools() -> ToolCommands {
        ToolCommands(configuration: TaskRunnerConfiguration(stateDirectory: "/state"),
                     directory: RunDirectory(storageRoot: "/s", path: "/run/r1", runRoot: "/tmp/berth-run-x"), hasCredentials: true)
    }

    @Test func aBerthStepGetsItsEnvButNeverOverTheRunnersOwnAndRunsInItsDirectory() throws {
        let endpoint = BerthStepEndpoint(url: "https://registry.example:5443", connectAddress: "127.0.0.1", caFile: "/etc/berth/tls.crt")
        let env = [EnvironmentVariable(name: "PURGE_NOTE", value: "x y"), EnvironmentVariable(name: "TZ", value: "UTC"),
                   // Refused by the parser; were one to get here, the runner's value still wins.
                   EnvironmentVariable(name: "BERTH_REGISTRY", value: "https://evil.example"),
                   EnvironmentVariable(name: "LD_PRELOAD", value: "/src/evil.so")]
        let command = tools().berth(BerthCommand(arguments: ["purge", "--filter", "a:.*"]), executable: "/proc/self/exe",
                                    endpoint: endpoint, credentials: PushCredentials(username: "run-u", password: "run-p"),
                                    env: env, workingDirectory: "/src/sub")
        #expect(command.executable == "/proc/self/exe" && command.arguments == ["purge", "--filter", "a:.*"])
        #expect(command.workingDirectory == "/src/sub")
        #expect(command.environment == [
            "PURGE_NOTE": "x y", "TZ": "UTC",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/run/r1/home",
            "XDG_CONFIG_HOME": "/run/r1/home/.config", "TMPDIR": "/run/r1/tmp",
            "BERTH_REGISTRY": "https://registry.example:5443", "BERTH_CONNECT_ADDRESS": "127.0.0.1", "BERTH_CA_FILE": "/etc/berth/tls.crt",
            "BERTH_USERNAME": "run-u", "BERTH_PASSWORD": "run-p",
        ], "\(command.environment)")
        // Plain HTTP: no TLS variables.
        let plain = tools().berth(BerthCommand(arguments: ["repository", "list"]), executable: "/b",
                                  endpoint: BerthStepEndpoint(url: "http://127.0.0.1:5000"),
                                  credentials: PushCredentials(username: "u", password: "p"))
        #expect(plain.environment["BERTH_CA_FILE"] == nil && plain.environment["BERTH_CONNECT_ADDRESS"] == nil)
        #expect(plain.environment["BERTH_REGISTRY"] == "http://127.0.0.1:5000")
    }

    @Test func entryPointAndUserAreSingleArgvEntriesOfPodman() throws {
        let run = tools().run(try RunCommand(parsing: "berth.test/app:1 -c 'echo hi'"), env: [], workingDirectory: nil, network: .none,
                              name: "c1", entryPoint: "/bin/sh; id", user: "1000:1000")
        let tail = Array(run.arguments.drop { $0 != "--entrypoint" })
        #expect(tail == ["--entrypoint", "/bin/sh; id", "--user", "1000:1000", "berth.test/app:1", "-c", "echo hi"])
    }

    /// A run's `berth` steps (the server's binary, here a stand-in script) get their env and run
    /// in their workingDirectory inside the run's source; one that leaves the source (`..`, an
    /// absolute path, a link out) is refused and nothing runs.
    @Test func aRunsBerthStepsRunInTheirDirectoryWithTheirEnvAndEscapesAreRefused() async throws {
        let base = try Support.temporaryDirectory("berthstep")
        defer { try? FileManager.default.removeItem(atPath: base) }
        let source = base + "/src"
        try FileManager.default.createDirectory(atPath: source + "/sub/deeper", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: source + "/out", withDestinationPath: base)
        let fake = base + "/fake-berth"
        try """
            #!/bin/sh
            echo "cwd $(pwd) note $PURGE_NOTE registry $BERTH_REGISTRY ca $BERTH_CA_FILE args $*"

            """.write(toFile: fake, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake)
        var configuration = TaskRunnerConfiguration(stateDirectory: base + "/state")
        configuration.berthExecutable = fake
        configuration.berthEndpoint = BerthStepEndpoint(url: "https://registry.test:5443", connectAddress: "127.0.0.1", caFile: "/tls/cert.pem")
        let runner = TaskRunner(configuration: configuration)
        func run(_ steps: String, id: String) async throws -> (TaskRunResult, [TaskLogLine]) {
            let file = try Support.taskFile("version: v1.1.0\nsteps:\n" + steps, runID: id, registry: "registry.test:5443")
            let sink = CollectingSink()
            let result = try await runner.run(TaskRunRequest(taskName: "t", runID: id, taskFile: file, sourceDirectory: source,
                                                             registry: "registry.test:5443",
                                                             credentials: PushCredentials(username: "run-user", password: "run-secret-3f9a")), log: sink)
            return (result, await sink.lines)
        }
        let (ok, lines) = try await run("""
              - id: here
                cmd: berth repository list
                env: [PURGE_NOTE=nightly run]
                workingDirectory: sub/deeper
              - id: default
                cmd: berth purge --filter 'a:.*'
                startDelay: 1
            """, id: "r1")
        #expect(ok.status == .succeeded, "\(ok)")
        let real = try #require(Confined.realPath(source))
        let out = lines.filter { $0.stream == .stdout }.map { "\($0.step) \($0.text)" }
        #expect(out == [
            "here cwd \(real)/sub/deeper note nightly run registry https://registry.test:5443 ca /tls/cert.pem args repository list",
            "default cwd \(real) note  registry https://registry.test:5443 ca /tls/cert.pem args purge --filter a:.*",
        ], "\(out)")
        #expect(lines.contains { $0.step == "default" && $0.text == "waiting 1 s (startDelay)" })

        for (directory, says) in [("..", "is outside the run's source directory"), ("/tmp", "must be relative to the run's source directory"),
                                  ("out", "is outside the run's source directory"), ("sub/../..", "is outside the run's source directory"),
                                  ("missing", "does not exist in the run's source directory")] {
            let (refused, refusedLines) = try await run("  - cmd: berth repository list\n    workingDirectory: \"\(directory)\"\n", id: "r2")
            #expect(refused.status == .failed, "\(directory)")
            #expect(refused.steps[0].reason?.contains(says) == true, "\(directory): \(String(describing: refused.steps[0].reason))")
            #expect(!refusedLines.contains { $0.stream == .stdout }, "\(directory) ran")
            try? FileManager.default.removeItem(atPath: base + "/state/runs/r2")
        }
    }

    /// A build without network: buildah in a network namespace of its own, using only images
    /// pulled before it (every stage's, once each); with `network: host` as before.
    @Test func aBuildWithoutNetworkRunsInANetworkNamespaceAfterPullingItsImages() throws {
        var configuration = TaskRunnerConfiguration(stateDirectory: "/state")
        configuration.isolateBuildPIDs = false
        let tools = ToolCommands(configuration: configuration, directory: RunDirectory(storageRoot: "/s", path: "/run/r1", runRoot: "/tmp/x"),
                                 hasCredentials: true)
        let arguments = try BuildArguments(parsing: "-t berth.test/app:1 --pull .")
        let offline = tools.build(arguments, context: "/src", dockerfile: "/src/Dockerfile", network: .none)
        #expect(offline.executable == "/usr/bin/unshare")
        #expect(Array(offline.arguments.prefix(2)) == ["--net", "/usr/bin/buildah"])
        #expect(offline.arguments.contains("--pull=never") && !offline.arguments.contains("--pull-always"))
        var isolated = tools
        isolated.configuration.isolateBuildPIDs = true
        let sandboxed = isolated.build(arguments, context: "/src", dockerfile: "/src/Dockerfile", network: .none).arguments
        #expect(Array(sandboxed.prefix(10))
                == ["--net", "--pid", "--fork", "--mount-proc", "--kill-child", "--ipc", "/bin/sh", "-c", ToolCommands.sandboxScript, "sh"])
        #expect(Array(sandboxed.drop { $0 != "--" }.prefix(2)) == ["--", "/usr/bin/buildah"])
        let online = tools.build(arguments, context: "/src", dockerfile: "/src/Dockerfile", network: .host)
        #expect(online.executable == "/usr/bin/buildah" && online.arguments.contains("--pull=never") && !online.arguments.contains("--pull-always"))
        #expect(tools.pull("berth.test/base:1", always: false).arguments
                == ["pull", "--signature-policy", "/run/r1/policy.json", "--authfile", "/run/r1/auth.json",
                    "--policy", "missing", "berth.test/base:1"])

        let base = try Support.temporaryDirectory("imagesof")
        defer { try? FileManager.default.removeItem(atPath: base) }
        try """
            ARG V=1
            FROM berth.test/tools:$V AS tools
            FROM scratch AS unused
            COPY --from=berth.test/data:2 /d /d
            FROM berth.test/base:1
            COPY --from=tools /t /t
            COPY --from=berth.test/data:2 /d /d

            """.write(toFile: base + "/Dockerfile", atomically: true, encoding: .utf8)
        let images = try RunExecution.imagesOf(dockerfile: base + "/Dockerfile", try BuildArguments(parsing: "--build-arg V=7 -t a:1 ."))
            .get()
        #expect(images == ["berth.test/tools:7", "berth.test/data:2", "berth.test/base:1"])
    }
}
