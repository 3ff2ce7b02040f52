import Testing
@testable import Tasks

@Suite struct TaskFileTests {
    @Test func parsesEveryStepKindAndField() throws {
        let file = try Fixture.parse("""
            version: v1.1.0
            stepTimeout: 900
            env: [GOFLAGS=-mod=vendor, CI=false]
            steps:
              - id: build
                build: -t $Registry/app:$ID -t app:latest -f docker/Dockerfile --build-arg VERSION={{.Values.version}} --target final --pull .
              - id: test
                cmd: $Registry/app:$ID go test -run 'Test A' ./...
                env: [CI=true]
                timeout: 300
                retries: 2
                ignoreErrors: true
                workingDirectory: /src
              - push:
                - $Registry/app:$ID
                - {{.Run.Registry}}/app:{{ .Run.Branch }}
            """, values: try values(["version=1.2.3"]))
        #expect(file.version == "v1.1.0")
        #expect(file.stepTimeout == 900)
        #expect(file.env == [EnvironmentVariable(name: "GOFLAGS", value: "-mod=vendor"), EnvironmentVariable(name: "CI", value: "false")])
        #expect(file.steps.map(\.id) == ["build", "test", "acb_step_2"])
        #expect(file.steps.map(\.line) == [5, 7, 14])

        var build = BuildArguments()
        build.tags = [Fixture.ref("berth.example:5000/app:cb1"), Fixture.ref("app:latest")]
        build.dockerfile = "docker/Dockerfile"
        build.buildArgs = [.init(name: "VERSION", value: "1.2.3")]
        build.target = "final"
        build.pull = true
        build.context = "."
        #expect(file.steps[0].action == .build(build))
        #expect(file.steps[0].timeout == 900)
        #expect(file.steps[0].retries == 0)
        // ACR's default wait between attempts.
        #expect(file.steps[0].retryDelay == 5 && file.steps[0].startDelay == 0)
        #expect(file.steps[0].ignoreErrors == false)
        #expect(file.steps[0].env == file.env)

        let test = file.steps[1]
        #expect(test.action == .cmd(RunCommand(image: Fixture.ref("berth.example:5000/app:cb1"),
                                               arguments: ["go", "test", "-run", "Test A", "./..."])))
        #expect(test.env.map(\.description) == ["GOFLAGS=-mod=vendor", "CI=true"])
        #expect(test.timeout == 300)
        #expect(test.retries == 2)
        #expect(test.ignoreErrors)
        #expect(test.workingDirectory == "/src")

        #expect(file.steps[2].action == .push([Fixture.ref("berth.example:5000/app:cb1"), Fixture.ref("berth.example:5000/app:main")]))
        #expect(file.steps[2].timeout == 900)
    }

    /// A `cmd` step has no network unless it asks for the host's; the value may come from a variable.
    @Test func networkIsNoneUnlessACmdStepAsksForTheHosts() throws {
        let file = try Fixture.parse("""
            version: v1.1.0
            steps:
              - id: offline
                cmd: alpine true
              - id: explicit
                cmd: alpine true
                network: none
              - id: online
                network: host
                cmd: alpine wget -q http://example.com/
              - id: valued
                cmd: alpine true
                network: '{{.Values.net}}'
              - build: -t app:1 .
              - build: -t app:2 .
                network: host
              - push: [app:1]
            """, values: try values(["net=host"]))
        // A build's RUN has no network either unless the step asks for the host's.
        #expect(file.steps.map(\.network) == [.none, .none, .host, .host, .none, .host, .none])
    }

    @Test func timeoutDefaultsTo600Seconds() throws {
        let file = try Fixture.parse("version: v1.1.0\nsteps:\n  - cmd: alpine true\n")
        #expect(file.stepTimeout == 600)
        #expect(file.steps[0].timeout == 600)
    }

    struct WhenCase: Sendable, CustomTestStringConvertible {
        let name: String
        let steps: String
        let waitsFor: [[String]]
        let stages: [[String]]
        var testDescription: String { name }
    }

    static let whenCases: [WhenCase] = [
        .init(name: "no when: after the previous step",
              steps: "- {id: a, cmd: x}\n- {id: b, cmd: x}\n- {id: c, cmd: x}",
              waitsFor: [[], ["a"], ["b"]], stages: [["a"], ["b"], ["c"]]),
        .init(name: "'-' starts at once",
              steps: "- {id: a, cmd: x}\n- {id: b, cmd: x, when: ['-']}\n- {id: c, cmd: x, when: ['-']}",
              waitsFor: [[], [], []], stages: [["a", "b", "c"]]),
        .init(name: "fan out and in",
              steps: "- {id: a, cmd: x}\n- {id: b, cmd: x, when: [a]}\n- {id: c, cmd: x, when: [a]}\n- {id: d, cmd: x, when: [b, c]}",
              waitsFor: [[], ["a"], ["a"], ["b", "c"]], stages: [["a"], ["b", "c"], ["d"]]),
        .init(name: "a later step may be waited for",
              steps: "- {id: a, cmd: x, when: [b]}\n- {id: b, cmd: x, when: ['-']}",
              waitsFor: [["b"], []], stages: [["b"], ["a"]]),
    ]

    @Test(arguments: whenCases)
    func whenBuildsThePlan(_ c: WhenCase) throws {
        let file = try Fixture.parse("version: v1.1.0\nsteps:\n" + c.steps.split(separator: "\n").map { "  \($0)" }.joined(separator: "\n"))
        #expect(file.steps.map(\.waitsFor) == c.waitsFor)
        #expect(file.plan.stages == c.stages)
    }

    struct VariableCase: Sendable, CustomTestStringConvertible {
        let text: String
        let expected: String
        var testDescription: String { text }
    }

    static let variableCases: [VariableCase] = [
        .init(text: "$Registry/app:$ID", expected: "berth.example:5000/app:cb1"),
        .init(text: "$Date $Commit $Branch $TaskName", expected: "20261130-020304z abc123 main nightly"),
        .init(text: "{{.Run.ID}}-{{.Run.Registry}}-{{.Run.Date}}-{{.Run.Commit}}-{{.Run.Branch}}-{{.Run.TaskName}}",
              expected: "cb1-berth.example:5000-20261130-020304z-abc123-main-nightly"),
        .init(text: "{{ .Values.name }}/{{.Values.tag}}", expected: "web/v2"),
        .init(text: "{{.Values.ref}}", expected: "berth.example:5000/web:v2"),
        .init(text: "echo $HOME $$ID $IDs ${ID}", expected: "echo $HOME $ID $IDs ${ID}"),
        .init(text: "100$", expected: "100$"),
    ]

    @Test(arguments: variableCases)
    func expandsVariables(_ c: VariableCase) throws {
        var values = try TaskValues(valuesFile: Array("name: web\ntag: v1\nref: $Registry/{{.Values.name}}:{{.Values.tag}}\n".utf8))
        try values.set("tag=v2")
        let file = try Fixture.parse("version: v1.1.0\nsteps:\n  - cmd: 'alpine \(c.text)'\n", values: values)
        guard case .cmd(let command) = file.steps[0].action else { Issue.record("not a cmd"); return }
        #expect(command.arguments.joined(separator: " ") == c.expected)
    }

    @Test func variablesNeverChangeTheStructure() throws {
        // A value that looks like YAML stays one string.
        let values = try values(["tag=a\n  - push: [evil/x:1]", "n=3"])
        let file = try Fixture.parse("version: v1.1.0\nsteps:\n  - cmd: alpine {{.Values.tag}}\n    timeout: {{.Values.n}}\n",
                                     values: values)
        #expect(file.steps.count == 1)
        #expect(file.steps[0].timeout == 3)
        guard case .cmd(let command) = file.steps[0].action else { Issue.record("not a cmd"); return }
        #expect(command.arguments == ["a", "-", "push:", "[evil/x:1]"])
    }

    @Test func aFewAliasesAreFine() throws {
        let file = try Fixture.parse("""
            version: v1.1.0
            env: &common [A=1, B=2]
            steps:
              - {cmd: alpine true, env: *common}
            """)
        #expect(file.steps[0].env.map(\.description) == ["A=1", "B=2"])
    }

    func values(_ assignments: [String]) throws -> TaskValues {
        var values = TaskValues()
        for a in assignments { try values.set(a) }
        return values
    }
}
