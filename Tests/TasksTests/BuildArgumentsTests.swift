import OCIModel
import Testing
@testable import Tasks

@Suite struct BuildArgumentsTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let text: String
        let tags: [String]
        var dockerfile: String? = nil
        var buildArgs: [String] = []
        var target: String? = nil
        let context: String
        var noCache = false
        var pull = false
        var testDescription: String { text }
    }

    static let cases: [Case] = [
        .init(text: ".", tags: [], context: "."),
        .init(text: "-t app:1 .", tags: ["app:1"], context: "."),
        .init(text: "--tag=app:1 -tapp:2 -t=reg.io/app:3 --tag reg.io:5000/team/app .",
              tags: ["app:1", "app:2", "reg.io/app:3", "reg.io:5000/team/app"], context: "."),
        .init(text: "-f docker/Dockerfile.prod -t a:1 src", tags: ["a:1"], dockerfile: "docker/Dockerfile.prod", context: "src"),
        .init(text: "--file=x .", tags: [], dockerfile: "x", context: "."),
        .init(text: "--build-arg A=1 --build-arg=B= --build-arg 'C=two words' --build-arg D=x=y .",
              tags: [], buildArgs: ["A=1", "B=", "C=two words", "D=x=y"], context: "."),
        .init(text: "--target final --no-cache --pull https://example.com/repo.git#main:sub",
              tags: [], target: "final", context: "https://example.com/repo.git#main:sub", noCache: true, pull: true),
        .init(text: "  -t  \"app:1\"\t.  ", tags: ["app:1"], context: "."),
    ]

    @Test(arguments: cases)
    func parses(_ c: Case) throws {
        let parsed = try BuildArguments(parsing: c.text)
        #expect(parsed.tags.map(\.description) == c.tags)
        #expect(parsed.dockerfile == c.dockerfile)
        #expect(parsed.buildArgs.map { "\($0.name)=\($0.value)" } == c.buildArgs)
        #expect(parsed.target == c.target)
        #expect(parsed.context == c.context)
        #expect(parsed.noCache == c.noCache)
        #expect(parsed.pull == c.pull)
    }

    static let refusals: [(String, String)] = [
        ("-t app:1 --push .", "never pushes"),
        ("--push=true .", "never pushes"),
        ("-t app:1 -o type=registry .", "unsupported build option '-o'"),
        ("--secret id=x .", "unsupported build option '--secret'"),
        ("-t", "-t needs a value"),
        ("-t app@sha256:" + String(repeating: "0", count: 64) + " .", "not a digest"),
        ("-t UPPER:1 .", "invalid repository name"),
        ("--build-arg NOVALUE .", "NAME=VALUE"),
        ("--build-arg A=1 --build-arg A=2 .", "more than once"),
        ("--target 'bad name' .", "not a stage name"),
        ("-t app:1", "needs a context"),
        ("a b", "one context; found 2"),
        ("-", "standard input"),
        ("-t 'app:1 .", "single quote is not closed"),
        ("--no-cache=false .", "takes no value"),
        ("-f a --file=b .", "more than once"),
    ]

    @Test(arguments: refusals)
    func refuses(_ text: String, _ says: String) {
        do {
            _ = try BuildArguments(parsing: text)
            Issue.record("parsed")
        } catch {
            #expect(error.description.contains(says), "\(error)")
            #expect(error.refused == says.contains("never pushes"))
        }
    }

    static let references: [(String, String?, String, String?, Bool)] = [
        ("alpine", nil, "alpine", nil, false),
        ("library/alpine:3.20", nil, "library/alpine", "3.20", false),
        ("localhost/app", "localhost", "app", nil, false),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", false),
        ("reg.example.com/a/b/c:latest@sha256:" + String(repeating: "a", count: 64), "reg.example.com", "a/b/c", "latest", true),
        ("app@sha256:" + String(repeating: "b", count: 64), nil, "app", nil, true),
        ("user/app", nil, "user/app", nil, false),
    ]

    @Test(arguments: references)
    func parsesReferences(_ text: String, _ registry: String?, _ repository: String, _ tag: String?, _ hasDigest: Bool) throws {
        let reference = try ImageReference(parsing: text)
        #expect(reference.host == registry)
        #expect(reference.repository == repository)
        #expect(reference.tag == tag)
        #expect((reference.digest != nil) == hasDigest)
        #expect(reference.description == text)
    }

    @Test(arguments: ["", "App", "app:", "app:-x", "reg.io:99999/app", "reg_io.com/app", "app@sha256:zz", "a//b", "/app", "app/"])
    func refusesReferences(_ text: String) {
        #expect(throws: RegistryError.self) { _ = try ImageReference(parsing: text) }
    }

    @Test func cmdSplitsImageAndArguments() throws {
        let command = try RunCommand(parsing: #"bash -c "echo \"hi there\" && ls" 'a b'"#)
        #expect(command.image == Fixture.ref("bash"))
        #expect(command.arguments == ["-c", #"echo "hi there" && ls"#, "a b"])
        #expect(throws: BuildArgumentsError.self) { _ = try RunCommand(parsing: "  ") }
    }
}
