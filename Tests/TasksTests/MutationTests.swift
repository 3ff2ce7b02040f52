import Testing
@testable import Tasks

/// Mangled input is refused or parsed, never a crash or a hang: each test mutates a valid file
/// a few hundred times with a fixed seed (so a failure reproduces) and parses every mutant.
@Suite struct MutationTests {
    /// A small deterministic generator (SplitMix64), so every run sees the same mutants.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let pieces: [[UInt8]] = ["{{", "}}", "{{.Values.v}}", "$ID", "$", "&a ", "*a", "[", "]", "{", "}", ":", "- ", "\n",
                                    "  ", "'", "\"", "\\", "#", "|", ">", "---\n", "\u{FEFF}", "<<EOF\n", "--from=", "${X:-",
                                    "AS ", "when: [a]", "id: a", "--push"].map { Array($0.utf8) } + [[0xff], [0x00], [0xc3]]

    static func mutants(of text: String, seed: UInt64, count: Int) -> [[UInt8]] {
        var rng = Seeded(state: seed)
        let original = Array(text.utf8)
        return (0..<count).map { _ in
            var bytes = original
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0...bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes.insert(contentsOf: pieces.randomElement(using: &rng)!, at: at)
                case 1: if at < bytes.count { bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...8, using: &rng))) }
                default: if at < bytes.count { bytes[at] = UInt8.random(in: 0x20...0x7e, using: &rng) }
                }
            }
            return bytes
        }
    }

    @Test func taskFiles() throws {
        let text = """
            version: v1.1.0
            stepTimeout: 900
            env: [A=1]
            steps:
              - id: a
                build: -t $Registry/app:$ID --build-arg V={{.Values.v}} .
              - id: b
                cmd: $Registry/app:$ID run 'x y'
                when: [a]
                timeout: 60
              - push: ["$Registry/app:$ID"]
                when: ["-"]
            """
        var values = TaskValues()
        try values.set("v={{.Values.w}}1")
        try values.set("w=2")
        #expect((try? Fixture.parse(text, values: values)) != nil)
        var parsed = 0
        for mutant in Self.mutants(of: text, seed: 16, count: 400) {
            if (try? TaskFile.parse(mutant, run: Fixture.run, values: values)) != nil { parsed += 1 }
        }
        // Some mutants (a changed letter in a command) are still valid files.
        #expect(parsed > 0)
    }

    @Test func dockerfiles() throws {
        let text = """
            # escape=\\
            ARG BASE=alpine:3
            FROM golang:1.23 AS build
            RUN go build
            RUN echo hi
            FROM ${BASE} AS final
            COPY --from=build /app /app
            COPY --from=nginx:1 /etc /etc
            """
        #expect((try? DockerfileBases(dockerfile: text)) != nil)
        var parsed = 0
        for mutant in Self.mutants(of: text, seed: 17, count: 400) {
            if (try? DockerfileBases(dockerfile: String(decoding: mutant, as: UTF8.self), target: "final")) != nil { parsed += 1 }
        }
        #expect(parsed > 0)
    }
}
