import OCIModel

/// The arguments of a `build` step, docker-build style, parsed into a value.
///
/// Accepted: `-t`/`--tag` (repeatable), `-f`/`--file`, `--build-arg NAME=VALUE` (repeatable),
/// `--target STAGE`, `--no-cache`, `--pull`, and exactly one context (`.`, a directory or a URL).
/// A flag's value may follow it or be joined with `=` (`--tag=app:1`). `--push` is refused: a
/// build step never pushes, a `push` step does. Any other option is refused by name, so a
/// file cannot smuggle in `--output`, `--secret`, `--network=host` or the like.
public struct BuildArguments: Sendable, Equatable {
    public var tags: [ImageReference] = []
    /// Relative to the context; nil means `Dockerfile`.
    public var dockerfile: String?
    public var buildArgs: [BuildArgument] = []
    public var target: String?
    public var context: String = ""
    public var noCache = false
    public var pull = false

    public struct BuildArgument: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) { self.name = name; self.value = value }
    }

    /// The build args as a dictionary (names are unique).
    public var buildArgValues: [String: String] {
        Dictionary(buildArgs.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    public init() {}

    /// Parses the argument string; the thrown string is the reason.
    public init(parsing text: String) throws(BuildArgumentsError) {
        let words = try ShellWords.split(text)
        var i = 0
        var contexts: [String] = []
        func value(_ flag: String, _ joined: String?) throws(BuildArgumentsError) -> String {
            if let joined { return joined }
            i += 1
            guard i < words.count else { throw BuildArgumentsError("\(flag) needs a value") }
            return words[i]
        }
        while i < words.count {
            let word = words[i]
            guard word.hasPrefix("-"), word != "-" else {
                if word == "-" { throw BuildArgumentsError("a context read from standard input ('-') is not supported") }
                contexts.append(word)
                i += 1
                continue
            }
            let flag: String, joined: String?
            if word.hasPrefix("--"), let eq = word.firstIndex(of: "=") {
                flag = String(word[..<eq]); joined = String(word[word.index(after: eq)...])
            } else if !word.hasPrefix("--"), word.count > 2 {
                // -tapp:1 or -t=app:1
                flag = String(word.prefix(2))
                let tail = word.dropFirst(2)
                joined = String(tail.hasPrefix("=") ? tail.dropFirst() : tail)
            } else {
                flag = word; joined = nil
            }
            switch flag {
            case "-t", "--tag":
                let raw = try value(flag, joined)
                let reference: ImageReference
                do { reference = try ImageReference(parsing: raw) } catch { throw BuildArgumentsError("\(flag): \(error.message)") }
                guard reference.digest == nil else { throw BuildArgumentsError("\(flag) names a tag, not a digest: \(quoted(raw))") }
                tags.append(reference)
            case "-f", "--file":
                let path = try value(flag, joined)
                guard !path.isEmpty, !path.contains("\0") else { throw BuildArgumentsError("\(flag) needs a file name") }
                guard dockerfile == nil else { throw BuildArgumentsError("\(flag) is given more than once") }
                dockerfile = path
            case "--build-arg":
                let assignment = try value(flag, joined)
                guard let eq = assignment.firstIndex(of: "="), TaskValues.isName(assignment[..<eq]) else {
                    throw BuildArgumentsError("--build-arg takes NAME=VALUE, got \(quoted(assignment))")
                }
                let name = String(assignment[..<eq])
                guard !buildArgs.contains(where: { $0.name == name }) else {
                    throw BuildArgumentsError("--build-arg \(name) is given more than once")
                }
                buildArgs.append(BuildArgument(name: name, value: String(assignment[assignment.index(after: eq)...])))
            case "--target":
                let stage = try value(flag, joined)
                guard Self.isStageName(stage) else { throw BuildArgumentsError("--target \(quoted(stage)) is not a stage name") }
                guard target == nil else { throw BuildArgumentsError("--target is given more than once") }
                target = stage
            case "--no-cache", "--pull":
                guard joined == nil else { throw BuildArgumentsError("\(flag) takes no value") }
                if flag == "--pull" { pull = true } else { noCache = true }
            case "--push":
                throw BuildArgumentsError("a build step never pushes: remove --push and add a push step", refused: true)
            default:
                throw BuildArgumentsError("unsupported build option \(quoted(flag)) (supported: -t/--tag, -f/--file, --build-arg, --target, --no-cache, --pull)")
            }
            i += 1
        }
        guard contexts.count == 1, let context = contexts.first else {
            throw BuildArgumentsError(contexts.isEmpty
                ? "a build needs a context, e.g. '.'"
                : "a build has one context; found \(contexts.count): \(contexts.map { quoted($0, limit: 40) }.joined(separator: ", "))")
        }
        self.context = context
    }

    /// Dockerfile stage names: a letter, then letters, digits, `_`, `.`, `-`.
    static func isStageName(_ s: String) -> Bool {
        guard let first = s.utf8.first, (first >= 0x41 && first <= 0x5a) || (first >= 0x61 && first <= 0x7a),
              s.utf8.count <= 128 else { return false }
        return s.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f || $0 == 0x2e || $0 == 0x2d }
    }
}

public struct BuildArgumentsError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    /// A deliberate refusal (`--push`) rather than a malformed argument.
    public let refused: Bool
    init(_ description: String, refused: Bool = false) { self.description = description; self.refused = refused }
}

/// Splits a command line into words the way a POSIX shell would, without expanding anything:
/// blanks separate words, `'…'` is literal, `"…"` keeps blanks and honours `\"`, `\\`, `\$`,
/// and a backslash outside quotes escapes the next character.
enum ShellWords {
    static func split(_ text: String) throws(BuildArgumentsError) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var scalars = text.unicodeScalars.makeIterator()
        while let c = scalars.next() {
            switch c {
            case " ", "\t", "\n", "\r":
                if inWord { words.append(current); current = ""; inWord = false }
            case "'":
                inWord = true
                var closed = false
                while let d = scalars.next() {
                    if d == "'" { closed = true; break }
                    current.unicodeScalars.append(d)
                }
                guard closed else { throw BuildArgumentsError("a single quote is not closed") }
            case "\"":
                inWord = true
                var closed = false
                while let d = scalars.next() {
                    if d == "\"" { closed = true; break }
                    if d == "\\" {
                        guard let e = scalars.next() else { break }
                        if e != "\"" && e != "\\" && e != "$" { current.unicodeScalars.append(d) }
                        current.unicodeScalars.append(e)
                        continue
                    }
                    current.unicodeScalars.append(d)
                }
                guard closed else { throw BuildArgumentsError("a double quote is not closed") }
            case "\\":
                inWord = true
                guard let d = scalars.next() else { throw BuildArgumentsError("a backslash ends the line") }
                current.unicodeScalars.append(d)
            default:
                inWord = true
                current.unicodeScalars.append(c)
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
