import Testing
@testable import Tasks

/// ACR v1.1.0 keys Berth takes (`workingDirectory` at the top, `entryPoint`, `user`,
/// `startDelay`, `retryDelay`), the ones it refuses by name with why, and the environment a
/// `berth` step may not be given (issue 16: berth steps honour env and workingDirectory).
@Suite struct CompatibilityKeyTests {
    @Test func supportedKeysAreRead() throws {
        let file = try Fixture.parse("""
            version: v1.1.0
            workingDirectory: src
            steps:
              - id: test
                cmd: $Registry/app:1 go test ./...
                entryPoint: /bin/sh
                user: "1000:1000"
                startDelay: 2
                retryDelay: 3
                retries: 1
              - id: other
                cmd: $Registry/app:1 true
                workingDirectory: /elsewhere
            """)
        let test = try #require(file.step("test"))
        #expect(test.entryPoint == "/bin/sh" && test.user == "1000:1000" && test.startDelay == 2 && test.retryDelay == 3)
        // The file's workingDirectory is every step's unless the step gives its own.
        #expect(test.workingDirectory == "src")
        #expect(file.step("other")?.workingDirectory == "/elsewhere")
        #expect(file.step("other")?.entryPoint == nil && file.step("other")?.startDelay == 0)
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        let yaml: String
        let line: Int
        let says: String
        var testDescription: String { says }
    }

    static let refusals: [Refusal] = [
        .init(yaml: "totalTimeout: 60\nsteps:\n  - cmd: a/b:1 true\n", line: 2, says: "not supported: totalTimeout (a run's time limit is the task's --timeout)"),
        .init(yaml: "networks:\n  - name: n\nsteps:\n  - cmd: a/b:1 true\n", line: 2, says: "not supported: networks ("),
        .init(yaml: "volumes: []\nsteps:\n  - cmd: a/b:1 true\n", line: 2, says: "not supported: volumes ("),
        .init(yaml: "alias: {}\nsteps:\n  - cmd: a/b:1 true\n", line: 2, says: "not supported: alias ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    privileged: true\n", line: 4, says: "not supported: privileged (a task runs someone else's code"),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    detach: true\n", line: 4, says: "not supported: detach ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    keep: true\n", line: 4, says: "not supported: keep ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    ports: [\"80:80\"]\n", line: 4, says: "not supported: ports ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    expose: [\"80\"]\n", line: 4, says: "not supported: expose ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    repeat: 2\n", line: 4, says: "not supported: repeat ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    isolation: hyperv\n", line: 4, says: "not supported: isolation ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    disableWorkingDirectoryOverride: true\n", line: 4, says: "not supported: disableWorkingDirectoryOverride ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    volumeMounts: []\n", line: 4, says: "not supported: volumeMounts ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    exitedWith: [0]\n", line: 4, says: "not supported: exitedWith ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    pull: true\n", line: 4, says: "not supported: pull ("),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    cpus: \"2\"\n", line: 4, says: "not supported: cpus ("),
        // Still an unknown key, with a hint.
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    entrypoint: sh\n", line: 4, says: "unknown key 'entrypoint' in a step (did you mean 'entryPoint'?)"),
        // entryPoint and user are a cmd step's.
        .init(yaml: "steps:\n  - build: -t a/b:1 .\n    entryPoint: /bin/sh\n", line: 4, says: "entryPoint applies to cmd steps that run an image only"),
        .init(yaml: "steps:\n  - cmd: berth purge --filter 'a:.*'\n    user: root\n", line: 4, says: "user applies to cmd steps that run an image only"),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    user: \"--privileged\"\n", line: 4, says: "user is NAME, UID"),
        .init(yaml: "steps:\n  - cmd: a/b:1 true\n    startDelay: -1\n", line: 4, says: "startDelay must be a whole number"),
        // A berth step's environment keeps the run identity, the registry and the host's loader.
        .init(yaml: "steps:\n  - cmd: berth purge --filter 'a:.*'\n    env: [A=1, BERTH_PASSWORD=x]\n", line: 4,
              says: "env BERTH_PASSWORD is not passed to a berth step: it runs on the server"),
        .init(yaml: "steps:\n  - cmd: berth purge --filter 'a:.*'\n    env: [BERTH_REGISTRY=https://evil.example]\n", line: 4,
              says: "env BERTH_REGISTRY is not passed to a berth step"),
        .init(yaml: "steps:\n  - cmd: berth purge --filter 'a:.*'\n    env: [berth_username=x]\n", line: 4, says: "env berth_username is not passed"),
        .init(yaml: "steps:\n  - cmd: berth purge --filter 'a:.*'\n    env: [LD_PRELOAD=/src/evil.so]\n", line: 4, says: "env LD_PRELOAD is not passed"),
        .init(yaml: "steps:\n  - cmd: berth purge --filter 'a:.*'\n    env: [SWIFT_BACKTRACE=enable=yes]\n", line: 4, says: "env SWIFT_BACKTRACE is not passed"),
        .init(yaml: "env: [HOME=/root]\nsteps:\n  - cmd: a/b:1 true\n  - cmd: berth purge --filter 'a:.*'\n", line: 5,
              says: "env HOME is not passed to a berth step (from the file's env)"),
    ]

    @Test(arguments: refusals)
    func refuses(_ c: Refusal) throws {
        let error = try #require(Fixture.refusal("version: v1.1.0\n" + c.yaml))
        #expect(error.line == c.line, "\(error)")
        #expect(error.message.contains(c.says), "\(error)")
    }

    @Test func aBerthStepTakesOtherEnvAndAnImageStepAnyEnv() throws {
        let file = try Fixture.parse("""
            version: v1.1.0
            env: [TZ=UTC, NO_COLOR=0]
            steps:
              - id: image
                cmd: a/b:1 true
                env: [PATH=/opt/bin, LD_LIBRARY_PATH=/x, BERTH_PASSWORD=inside-a-container]
              - id: purge
                cmd: berth purge --filter 'a:.*'
                env: [NO_COLOR=1, PURGE_NOTE=nightly]
            """)
        #expect(file.step("purge")?.env.map(\.description) == ["TZ=UTC", "NO_COLOR=1", "PURGE_NOTE=nightly"])
        // Inside a container these change nothing of the host: an image step takes them.
        #expect(file.step("image")?.env.map(\.name) == ["TZ", "NO_COLOR", "PATH", "LD_LIBRARY_PATH", "BERTH_PASSWORD"])
    }

    @Test(arguments: ["BERTH_X", "Berth_Registry", "PATH", "HOME", "TMPDIR", "XDG_CONFIG_HOME", "LD_PRELOAD", "LD_LIBRARY_PATH",
                      "GLIBC_TUNABLES", "MALLOC_CHECK_", "SWIFT_BACKTRACE", "SSL_CERT_FILE", "GCONV_PATH", "HOSTALIASES", "https_proxy"])
    func reservedNames(_ name: String) { #expect(BerthCommand.isReservedEnvironmentName(name)) }

    @Test(arguments: ["TZ", "NO_COLOR", "LANG", "PURGE_NOTE", "MY_BERTH", "PATHS"])
    func passedNames(_ name: String) { #expect(!BerthCommand.isReservedEnvironmentName(name)) }
}
