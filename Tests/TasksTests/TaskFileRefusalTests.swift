import Testing
@testable import Tasks

/// Each bad file is refused with its line and a reason that says what is wrong.
@Suite struct TaskFileRefusalTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let yaml: String
        var values: [String] = []
        let reason: TaskFileError.Reason
        let line: Int
        let says: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        .init(name: "missing version", yaml: "steps:\n  - cmd: x\n",
              reason: .missingKey, line: 1, says: "missing 'version'"),
        .init(name: "unsupported version", yaml: "steps:\n  - cmd: x\nversion: v1.0.0\n",
              reason: .unsupportedVersion, line: 3, says: "unsupported version 'v1.0.0'"),
        .init(name: "version is not a string", yaml: "version: [v1.1.0]\nsteps: []\n",
              reason: .wrongType, line: 1, says: "version must be a string"),
        .init(name: "unknown top-level key", yaml: "version: v1.1.0\nsurprise: {}\nsteps:\n  - cmd: x\n",
              reason: .unknownKey, line: 2, says: "unknown key 'surprise'"),
        .init(name: "an ACR key Berth does not take", yaml: "version: v1.1.0\nalias: {}\nsteps:\n  - cmd: x\n",
              reason: .refused, line: 2, says: "not supported: alias ("),
        .init(name: "unknown key written as a template", yaml: "version: v1.1.0\n{{.Values.k}}: x\nsteps:\n  - cmd: x\n",
              reason: .unknownKey, line: 2, says: "unknown key '{{.Values.k}}'"),
        .init(name: "unknown step key", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    superuser: true\n",
              reason: .unknownKey, line: 4, says: "unknown key 'superuser' in a step (known: id, build, cmd"),
        .init(name: "an ACR step key Berth does not take", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    privileged: true\n",
              reason: .refused, line: 4, says: "not supported: privileged ("),
        .init(name: "misspelt step key", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    timout: 5\n",
              reason: .unknownKey, line: 4, says: "unknown key 'timout' in a step (did you mean 'timeout'?)"),
        .init(name: "misspelt key in another case", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    WorkingDir: /\n",
              reason: .unknownKey, line: 4, says: "(known: "),
        .init(name: "key in the wrong case", yaml: "version: v1.1.0\nStepTimeout: 5\nsteps:\n  - cmd: x\n",
              reason: .unknownKey, line: 2, says: "(did you mean 'stepTimeout'?)"),
        .init(name: "not a mapping", yaml: "- version\n", reason: .wrongType, line: 1, says: "must be a mapping"),
        .init(name: "steps is a mapping", yaml: "version: v1.1.0\nsteps:\n  cmd: x\n",
              reason: .wrongType, line: 3, says: "steps must be a list"),
        .init(name: "missing steps", yaml: "version: v1.1.0\n", reason: .missingKey, line: 1, says: "missing 'steps'"),
        .init(name: "no steps", yaml: "version: v1.1.0\nsteps: []\n", reason: .missingKey, line: 2, says: "steps is empty"),
        .init(name: "timeout is text", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    timeout: soon\n",
              reason: .wrongType, line: 4, says: "timeout must be a whole number, not 'soon'"),
        .init(name: "timeout is negative", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    timeout: -5\n",
              reason: .wrongType, line: 4, says: "whole number"),
        .init(name: "timeout is zero", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    timeout: 0\n",
              reason: .invalidValue, line: 4, says: "between 1 and 28800"),
        .init(name: "stepTimeout too long", yaml: "version: v1.1.0\nstepTimeout: 999999\nsteps:\n  - cmd: x\n",
              reason: .invalidValue, line: 2, says: "stepTimeout must be between"),
        .init(name: "retries too many", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    retries: 11\n",
              reason: .invalidValue, line: 4, says: "retries must be between 0 and 10"),
        .init(name: "ignoreErrors is yes", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    ignoreErrors: yes\n",
              reason: .wrongType, line: 4, says: "true or false, not 'yes'"),
        .init(name: "env is a string", yaml: "version: v1.1.0\nenv: A=1\nsteps:\n  - cmd: x\n",
              reason: .wrongType, line: 2, says: "env must be a list"),
        .init(name: "env item without =", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    env:\n      - A=1\n      - B\n",
              reason: .invalidValue, line: 6, says: "NAME=value"),
        .init(name: "env sets a name twice", yaml: "version: v1.1.0\nenv: [A=1, A=2]\nsteps:\n  - cmd: x\n",
              reason: .invalidValue, line: 2, says: "sets A more than once"),
        .init(name: "when is a string", yaml: "version: v1.1.0\nsteps:\n  - id: a\n    cmd: x\n  - cmd: x\n    when: a\n",
              reason: .wrongType, line: 6, says: "when must be a list"),
        .init(name: "unknown step id in when", yaml: "version: v1.1.0\nsteps:\n  - id: a\n    cmd: x\n  - cmd: x\n    when: [a, b]\n",
              reason: .unknownStepID, line: 6, says: "waits for 'b', which is no step's id"),
        .init(name: "'-' with ids", yaml: "version: v1.1.0\nsteps:\n  - id: a\n    cmd: x\n  - cmd: x\n    when: ['-', a]\n",
              reason: .invalidValue, line: 6, says: "cannot be combined"),
        .init(name: "duplicate ids", yaml: "version: v1.1.0\nsteps:\n  - id: a\n    cmd: x\n  - id: a\n    cmd: y\n",
              reason: .duplicateStepID, line: 5, says: "'a' is already used by the step on line 3"),
        .init(name: "explicit id equal to a default id", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n  - id: acb_step_0\n    cmd: y\n",
              reason: .duplicateStepID, line: 4, says: "already used"),
        .init(name: "bad id", yaml: "version: v1.1.0\nsteps:\n  - id: 'a b'\n    cmd: x\n",
              reason: .invalidValue, line: 3, says: "a step id is"),
        .init(name: "cycle", yaml: """
            version: v1.1.0
            steps:
              - id: a
                cmd: x
                when: [c]
              - id: b
                cmd: x
                when: [a]
              - id: c
                cmd: x
                when: [b]
            """, reason: .cycle, line: 5, says: "cycle: a → c → b → a"),
        .init(name: "step waits for itself", yaml: "version: v1.1.0\nsteps:\n  - id: a\n    cmd: x\n    when: [a]\n",
              reason: .cycle, line: 5, says: "cycle: a → a"),
        .init(name: "step with two actions", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    push: [a:1]\n",
              reason: .invalidValue, line: 4, says: "exactly one of build, cmd or push; found cmd and push"),
        .init(name: "step with no action", yaml: "version: v1.1.0\nsteps:\n  - id: a\n",
              reason: .missingKey, line: 3, says: "found none"),
        .init(name: "build pushes", yaml: "version: v1.1.0\nsteps:\n  - build: -t app:1 --push .\n",
              reason: .refused, line: 3, says: "a build step never pushes"),
        .init(name: "build with unknown option", yaml: "version: v1.1.0\nsteps:\n  - build: --network=host -t app:1 .\n",
              reason: .invalidValue, line: 3, says: "unsupported build option '--network'"),
        .init(name: "build without context", yaml: "version: v1.1.0\nsteps:\n  - build: -t app:1\n",
              reason: .invalidValue, line: 3, says: "needs a context"),
        .init(name: "push a digest", yaml: "version: v1.1.0\nsteps:\n  - push:\n    - app@sha256:\(String(repeating: "a", count: 64))\n",
              reason: .invalidValue, line: 4, says: "not a digest"),
        .init(name: "push a bad reference", yaml: "version: v1.1.0\nsteps:\n  - push: [App:1]\n",
              reason: .invalidValue, line: 3, says: "invalid repository name"),
        .init(name: "cmd starts with an option", yaml: "version: v1.1.0\nsteps:\n  - cmd: --privileged alpine\n",
              reason: .invalidValue, line: 3, says: "not an option"),
        .init(name: "network neither none nor host", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    network: bridge\n",
              reason: .invalidValue, line: 4, says: "network must be none or host, not 'bridge'"),
        .init(name: "network given as a container's", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    network: container:berth\n",
              reason: .invalidValue, line: 4, says: "network must be none or host, not 'container:berth'"),
        .init(name: "network in another case", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    network: Host\n",
              reason: .invalidValue, line: 4, says: "network must be none or host, not 'Host'"),
        .init(name: "network as a list", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    network: [host]\n",
              reason: .wrongType, line: 4, says: "network must be a string"),
        .init(name: "network empty", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    network:\n",
              reason: .wrongType, line: 4, says: "network must be a string"),
        .init(name: "network from a value that is not allowed", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    network: '{{.Values.net}}'\n",
              values: ["net=slirp4netns"], reason: .invalidValue, line: 4, says: "not 'slirp4netns'"),
        .init(name: "network of a build that is not none or host", yaml: "version: v1.1.0\nsteps:\n  - build: -t app:1 .\n    network: bridge\n",
              reason: .invalidValue, line: 4, says: "network must be none or host, not 'bridge'"),
        .init(name: "network on a push step", yaml: "version: v1.1.0\nsteps:\n  - push: [app:1]\n    network: host\n",
              reason: .invalidValue, line: 4, says: "network applies to cmd and build steps, not to a push"),
        .init(name: "secrets", yaml: "version: v1.1.0\nsecrets:\n  - id: pw\n    keyvault: https://vault/x\nsteps:\n  - cmd: x\n",
              reason: .refused, line: 2, says: "'secrets' is not supported"),
        .init(name: "unknown run variable", yaml: "version: v1.1.0\nsteps:\n  - cmd: x {{.Run.Secret}}\n",
              reason: .variable, line: 3, says: "unknown run variable '{{.Run.Secret}}'"),
        .init(name: "go template function", yaml: "version: v1.1.0\nsteps:\n  - cmd: x {{ env \"HOME\" }}\n",
              reason: .variable, line: 3, says: "unsupported template"),
        .init(name: "unset value", yaml: "version: v1.1.0\nsteps:\n  - cmd: x {{.Values.missing}}\n",
              reason: .variable, line: 3, says: "no value for {{.Values.missing}}"),
        .init(name: "unclosed template", yaml: "version: v1.1.0\nsteps:\n  - cmd: 'x {{.Values.a'\n",
              reason: .variable, line: 3, says: "not closed"),
        .init(name: "duplicate YAML key", yaml: "version: v1.1.0\nsteps:\n  - cmd: x\n    cmd: y\n",
              reason: .syntax, line: 3, says: "duplicate key 'cmd'"),
        .init(name: "not YAML", yaml: "version: v1.1.0\nsteps: [\n", reason: .syntax, line: 3, says: "not valid YAML"),
        .init(name: "two documents", yaml: "version: v1.1.0\n---\nsteps: []\n", reason: .syntax, line: 2, says: "found a second"),
        .init(name: "empty", yaml: "", reason: .missingKey, line: 1, says: "empty"),
    ]

    @Test(arguments: cases)
    func refuses(_ c: Case) throws {
        var values = TaskValues()
        for value in c.values { try values.set(value) }
        let error = try #require(Fixture.refusal(c.yaml, values: values))
        #expect(error.reason == c.reason, "\(error)")
        #expect(error.line == c.line, "\(error)")
        #expect(error.message.contains(c.says), "\(error)")
        #expect(error.description.hasPrefix("task file, line \(c.line): "))
    }

    @Test func refusalsBecomeClientErrors() throws {
        let bad = try #require(Fixture.refusal("version: v1.1.0\nsteps:\n  - cmd: x\n    timeout: soon\n"))
        #expect(bad.registryError.code == .unsupported)
        #expect(bad.registryError.status == 400)
        #expect(bad.registryError.message == "task file, line 4: timeout must be a whole number, not 'soon'")
        let huge = try #require(Fixture.refusal(String(repeating: "#", count: 70_000)))
        #expect(huge.registryError.status == 413)
    }

    @Test func commitHasNoValueOnAManualRun() throws {
        var run = Fixture.run
        run.commit = nil
        do {
            _ = try Fixture.parse("version: v1.1.0\nsteps:\n  - cmd: x $Commit\n", run: run)
            Issue.record("parsed")
        } catch {
            #expect(error.reason == .variable)
            #expect(error.message == "$Commit has no value for this run")
        }
    }
}
