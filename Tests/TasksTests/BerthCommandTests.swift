import Testing
@testable import Tasks

/// `cmd: berth …` steps and the one-step file of `berth task create --cmd`.
@Suite struct BerthCommandTests {
    @Test func aCmdStartingWithBerthRunsBerthsCLIWithTheFilesQuotingAndNoExpansionButItsVariables() throws {
        let file = try Fixture.parse("""
            version: v1.1.0
            steps:
              - id: purge
                cmd: berth purge --filter 'app:.*' --ago 30d --filter "team/x:^build-$ID" --dry-run
              - id: image
                cmd: berthimage:1 echo hi
            """)
        #expect(file.steps[0].action == .berth(BerthCommand(arguments: [
            "purge", "--filter", "app:.*", "--ago", "30d", "--filter", "team/x:^build-cb1", "--dry-run"])))
        // Only the word `berth` itself names Berth's CLI; anything else is an image.
        guard case .cmd(let image) = file.steps[1].action else { Issue.record("not an image cmd"); return }
        #expect(image.image == Fixture.ref("berthimage:1"))
        #expect(file.hasBerthSteps && !file.needsContext)
        // No shell: `$(…)`, `;` and globs are plain words.
        let plain = try Fixture.parse("version: v1.1.0\nsteps:\n  - cmd: berth repository list '$(id)' ';' '*'\n")
        #expect(plain.steps[0].action == .berth(BerthCommand(arguments: ["repository", "list", "$(id)", ";", "*"])))
    }

    struct Refusal: Sendable, CustomTestStringConvertible {
        let yaml: String
        let line: Int
        let says: String
        var testDescription: String { says }
    }

    static let refusals: [Refusal] = [
        // Commands that read or write the server's own files, or would start another server.
        .init(yaml: "  - cmd: berth serve\n", line: 3, says: "a task may run berth purge or repository, not 'serve'"),
        .init(yaml: "  - cmd: berth backup --output /tmp/x\n", line: 3, says: "not 'backup'"),
        .init(yaml: "  - cmd: berth login http://evil\n", line: 3, says: "not 'login'"),
        .init(yaml: "  - cmd: berth task create --name x --cmd 'berth purge'\n", line: 3, says: "not 'task'"),
        .init(yaml: "  - cmd: berth\n", line: 3, says: "berth needs a command"),
        // The run's credentials go to this registry only.
        .init(yaml: "  - cmd: berth purge --registry http://evil.example --filter 'a:.*'\n", line: 3, says: "--registry is refused"),
        .init(yaml: "  - cmd: berth purge --filter 'a:.*' --registry=http://evil.example\n", line: 3, says: "--registry is refused"),
        .init(yaml: "  - cmd: berth purge --filter 'a:.*'\n    network: host\n", line: 4, says: "berth runs on the server"),
    ]

    @Test(arguments: refusals)
    func refuses(_ c: Refusal) throws {
        let error = try #require(Fixture.refusal("version: v1.1.0\nsteps:\n" + c.yaml))
        #expect(error.line == c.line, "\(error)")
        #expect(error.message.contains(c.says), "\(error)")
    }

    @Test(arguments: [
        "berth purge --filter 'app:.*' --ago 30d",
        #"alpine sh -c "echo \"quoted\" \\ back"  "#,
        "berth repository list\nsteps: []",
        "alpine echo '{{.Run.ID}}' # not a comment: x",
        "alpine echo tab\there",
    ])
    func aCommandBecomesAOneStepFileWhoseCmdIsExactlyIt(_ command: String) throws {
        let text = TaskFile.forCommand(command)
        let file = try Fixture.parse(text)
        #expect(file.steps.count == 1 && file.steps[0].id == "cmd")
        // The step's words are the command's own words (variables expanded as in any task file).
        let expanded = command.replacingOccurrences(of: "{{.Run.ID}}", with: "cb1")
        switch file.steps[0].action {
        case .berth(let berth):
            #expect(["berth"] + berth.arguments == (try ShellWords.split(expanded)))
        case .cmd(let run):
            #expect([run.image.description] + run.arguments == [Fixture.ref(try ShellWords.split(expanded)[0]).description]
                     + Array(try ShellWords.split(expanded).dropFirst()))
        default:
            Issue.record("not a cmd step: \(file.steps[0].action)")
        }
    }
}
