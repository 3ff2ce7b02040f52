import Testing
@testable import Tasks

/// A task file is someone else's code: each way of making the parser work too hard is refused
/// with a clear error, and quickly (the caps are checked while reading, not after).
@Suite struct UntrustedInputTests {
    static let header = "version: v1.1.0\nsteps:\n  - cmd: alpine true\n"

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: [UInt8]
        let values: [String]
        let reason: TaskFileError.Reason
        let line: Int
        let says: String
        var testDescription: String { name }

        init(_ name: String, _ text: String, values: [String] = [], _ reason: TaskFileError.Reason, line: Int, _ says: String) {
            self.init(name, Array(text.utf8), values: values, reason, line: line, says)
        }
        init(_ name: String, _ bytes: [UInt8], values: [String] = [], _ reason: TaskFileError.Reason, line: Int, _ says: String) {
            self.name = name
            self.bytes = bytes
            self.values = values
            self.reason = reason
            self.line = line
            self.says = says
        }
    }

    /// Nine levels of nine aliases each: 9^9 (387 million) strings once expanded, from 700 bytes.
    static let billionLaughs: String = {
        var text = "version: v1.1.0\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...9 {
            text += "l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 9).joined(separator: ", ") + "]\n"
        }
        return text + "steps:\n  - cmd: alpine true\n"
    }()

    static let cases: [Case] = [
        .init("huge file", header + "# " + String(repeating: "x", count: 70_000) + "\n",
              .tooLarge, line: 0, "more than the 65536 bytes"),
        .init("deep nesting", header + "env: " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\n",
              .tooDeep, line: 4, "nested more than 16 levels"),
        .init("billion laughs", billionLaughs, .tooManyNodes, line: 6, "more than 10000 YAML nodes once aliases are expanded"),
        .init("aliases nest deeper than the text", "version: v1.1.0\na: &a [[[[[[[[[[x]]]]]]]]]]\nb: [[[[[[[[*a]]]]]]]]\n",
              .tooDeep, line: 3, "nested more than 16 levels"),
        .init("an alias to itself", "version: v1.1.0\na: &a [*a]\n", .syntax, line: 2, "refers to no anchor"),
        .init("too many steps", "version: v1.1.0\nsteps:\n" + String(repeating: "  - cmd: alpine true\n", count: 101),
              .tooManySteps, line: 3, "101 steps is more than the 100"),
        .init("invalid UTF-8", Array("version: v1.1.0\nsteps:\n  - cmd: alpine ".utf8) + [0xC3, 0x28] + Array("\n".utf8),
              .invalidEncoding, line: 3, "not valid UTF-8"),
        .init("a lone continuation byte", [0x80] + Array(header.utf8), .invalidEncoding, line: 1, "not valid UTF-8"),
        .init("UTF-16", Array(header.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }), .syntax, line: 1, "not valid YAML"),
        .init("a control character", Array("version: v1.1.0\nsteps:\n  - cmd: alpine\u{07}\n".utf8), .syntax, line: 3,
              "control characters are not allowed"),
        .init("a reserved noncharacter", Array("version: v1.1.0\nsteps:\n  - cmd: ".utf8) + [0xEF, 0xB7, 0x90],
              .invalidEncoding, line: 3, "U+FDD0 is reserved"),
        .init("a value that contains itself", header + "    workingDirectory: /{{.Values.a}}\n", values: ["a=x{{.Values.a}}"],
              .variable, line: 4, "a value refers to itself: Values.a → Values.a"),
        .init("values that contain each other", header + "    workingDirectory: /{{.Values.a}}\n",
              values: ["a=x{{.Values.b}}", "b=y{{.Values.c}}", "c={{.Values.a}}"],
              .variable, line: 4, "Values.a → Values.b → Values.c → Values.a"),
        .init("a value that doubles past the cap", header + "    workingDirectory: /{{.Values.v0}}\n",
              values: (0..<20).map { "v\($0)={{.Values.v\($0 + 1)}}{{.Values.v\($0 + 1)}}" } + ["v20=xxxxxxxxxxxxxxxx"],
              .variable, line: 4, "expands to more than 16384 bytes"),
        .init("values that add up past the cap", "version: v1.1.0\nsteps:\n" + String(repeating: "  - cmd: alpine {{.Values.big}}\n", count: 70),
              values: ["big=" + String(repeating: "x", count: 16_000)],
              .variable, line: 68, "more than 1048576 bytes in all"),
    ]

    @Test(arguments: cases)
    func refuses(_ c: Case) throws {
        var values = TaskValues()
        for assignment in c.values { try values.set(assignment) }
        do {
            _ = try TaskFile.parse(c.bytes, run: Fixture.run, values: values)
            Issue.record("parsed")
        } catch {
            #expect(error.reason == c.reason, "\(error)")
            #expect(error.line == c.line, "\(error)")
            #expect(error.message.contains(c.says), "\(error)")
        }
    }

    @Test func capsAreSettable() throws {
        var limits = TaskLimits()
        limits.maxSteps = 2
        #expect(Fixture.refusal(Self.header, limits: limits) == nil)
        let error = try #require(Fixture.refusal(Self.header + "  - cmd: x\n  - cmd: y\n", limits: limits))
        #expect(error.reason == .tooManySteps)
    }

    @Test func valuesFilesAreCheckedLikeTaskFiles() throws {
        let cases: [([UInt8], TaskFileError.Reason, Int)] = [
            (Array("a: 1\nb: [x]\n".utf8), .wrongType, 2),
            (Array("a: 1\n9b: x\n".utf8), .invalidValue, 2),
            (Array("- a\n".utf8), .wrongType, 1),
            (Array(Self.billionLaughs.utf8), .tooManyNodes, 6),
            ([0x61, 0x3a, 0x20, 0xff], .invalidEncoding, 1),
            (Array(("a: " + String(repeating: "x", count: 70_000)).utf8), .tooLarge, 0),
        ]
        for (bytes, reason, line) in cases {
            do {
                _ = try TaskValues(valuesFile: bytes)
                Issue.record("parsed \(bytes.prefix(20))")
            } catch {
                #expect(error.reason == reason, "\(error)")
                #expect(error.line == line, "\(error)")
                #expect(error.source == "values file")
            }
        }
        var values = TaskValues()
        #expect(throws: TaskFileError.self) { try values.set("no-equals") }
        #expect(throws: TaskFileError.self) { try values.set("bad-name=1") }
        try values.set("ok=a=b")
        #expect(values.entries["ok"] == "a=b")
    }
}
