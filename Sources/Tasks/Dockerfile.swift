import OCIModel

/// The base images of a Dockerfile: what a trigger graph needs to know to rebuild an image
/// when one of the images it is built from changes.
///
/// - Each stage's `FROM` is resolved with the ARGs declared before the first `FROM` (their
///   defaults, overridden by the build's `--build-arg`s), as docker does; `FROM scratch` is no
///   image, and `FROM <earlier stage name>` is that stage, not an image.
/// - The stage built is `target` (`--target`) or the last one. Only the stages it needs (through
///   `FROM <stage>` and `COPY --from=<stage>`) count, as with BuildKit.
/// - The **runtime base** is the image the built stage stands on, following `FROM <stage>`
///   aliases; nil when that chain ends in `scratch`.
/// - The **build-time bases** are every other image those stages use: the `FROM` of the stages
///   off that chain, and the images of `COPY --from=<image>` (in any needed stage), in order of
///   appearance, without repeats.
/// - `RUN --mount` is refused with its line (see `read`): the buildah these servers run lets a
///   RUN mount reach the host.
///
/// Handled: line continuations, the `# escape=` directive, comments, heredocs (their bodies are
/// not instructions), `FROM --platform=…`, `$X`, `${X}`, `${X:-word}`, `${X-word}`, `${X:+word}`,
/// `${X+word}`, and BuildKit's platform ARGs (`TARGETARCH`, …) in `FROM` without a declaration,
/// valued from `buildArgs`. The text is untrusted: it is capped in bytes (`TaskLimits.maxDockerfileBytes`)
/// and stages (`maxStages`), and expansion is capped in depth and length.
public struct DockerfileBases: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        public enum Base: Sendable, Equatable {
            case image(ImageReference)
            /// An earlier stage, by index.
            case stage(Int)
            case scratch
        }

        /// Lower-cased, as docker compares stage names.
        public var name: String?
        public var line: Int
        public var base: Base
        /// Images this stage copies from or mounts.
        public var imagesUsed: [ImageReference] = []
        /// Earlier stages this stage copies from or mounts.
        public var stagesUsed: [Int] = []
    }

    public var stages: [Stage]
    /// The index of the stage that is built.
    public var builtStage: Int
    public var runtimeBase: ImageReference?
    public var buildTimeBases: [ImageReference]

    public init(dockerfile text: String, buildArgs: [String: String] = [:], target: String? = nil,
                limits: TaskLimits = .default) throws(TaskFileError) {
        guard text.utf8.count <= limits.maxDockerfileBytes else {
            throw Self.error(.tooLarge, 0, "\(text.utf8.count) bytes is more than the \(limits.maxDockerfileBytes) bytes a Dockerfile may have")
        }
        var reader = DockerfileReader(buildArgs: buildArgs, limits: limits)
        for instruction in try DockerfileReader.instructions(text) {
            try reader.read(instruction)
        }
        let stages = reader.stages
        guard !stages.isEmpty else { throw Self.error(.missingKey, 0, "no FROM: a Dockerfile has at least one stage") }

        var built = stages.count - 1
        if let target {
            guard let index = stages.firstIndex(where: { $0.name == target.lowercased() }) else {
                throw Self.error(.invalidValue, 0, "target stage \(quoted(target, limit: 64)) is not in the Dockerfile")
            }
            built = index
        }
        // The stages the built one needs.
        var needed = Set<Int>()
        var pending = [built]
        while let s = pending.popLast() {
            guard needed.insert(s).inserted else { continue }
            if case .stage(let b) = stages[s].base { pending.append(b) }
            pending += stages[s].stagesUsed
        }
        // The chain of FROM <stage> from the built stage down to an image or scratch.
        var chain = Set<Int>()
        var runtime: ImageReference?
        var s = built
        while true {
            chain.insert(s)
            switch stages[s].base {
            case .stage(let b): s = b; continue
            case .image(let reference): runtime = reference
            case .scratch: runtime = nil
            }
            break
        }
        var buildTime: [ImageReference] = []
        for index in stages.indices where needed.contains(index) {
            if !chain.contains(index), case .image(let reference) = stages[index].base, !buildTime.contains(reference) {
                buildTime.append(reference)
            }
            for reference in stages[index].imagesUsed where !buildTime.contains(reference) {
                buildTime.append(reference)
            }
        }
        self.stages = stages
        self.builtStage = built
        self.runtimeBase = runtime
        self.buildTimeBases = buildTime
    }

    static func error(_ reason: TaskFileError.Reason, _ line: Int, _ message: String) -> TaskFileError {
        TaskFileError(reason, line: line, message, source: "Dockerfile")
    }
}

struct DockerfileInstruction: Equatable {
    var line: Int
    /// Upper-cased.
    var keyword: String
    var arguments: String
    var escape: Character
}

private struct DockerfileReader {
    let buildArgs: [String: String]
    let limits: TaskLimits
    var stages: [DockerfileBases.Stage] = []
    /// ARGs declared before the first FROM, with their values.
    var global: [String: String] = [:]
    /// ARGs declared in the current stage.
    var scope: [String: String] = [:]

    /// BuildKit's platform ARGs are in the global scope without being declared; their values
    /// depend on the builder, so they come from the build args when the caller gives them.
    static let platformArgs: Set = ["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                                    "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"]

    init(buildArgs: [String: String], limits: TaskLimits) {
        self.buildArgs = buildArgs
        self.limits = limits
        global = buildArgs.filter { Self.platformArgs.contains($0.key) }
    }

    // MARK: - lines to instructions

    static func instructions(_ text: String) throws(TaskFileError) -> [DockerfileInstruction] {
        // Read as buildah 1.28's parser (imagebuilder) reads it, where that decides what runs:
        // lines end at \n (a \r before it dropped: Swift keeps "\r\n" as one Character, so it
        // is replaced first), and every whitespace (\v, \f, \r, Unicode spaces) separates words.
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() where line.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" }) {
            throw DockerfileBases.error(.invalidEncoding, index + 1, "a control character other than a tab is refused in a Dockerfile")
        }
        var escape: Character = "\\"
        var i = 0
        // Parser directives: comment lines `# key=value` at the very top.
        // Only `escape` is a directive to buildah 1.28: any other line, another directive
        // included, ends them (a later `# escape=` is a comment there, so here too).
        while i < lines.count, let directive = Self.directive(lines[i]), directive.key == "escape" {
            guard directive.value == "\\" || directive.value == "`" else {
                throw DockerfileBases.error(.invalidValue, i + 1, "the escape directive takes \\ or `, not \(quoted(directive.value, limit: 10))")
            }
            escape = Character(directive.value)
            i += 1
        }
        func isBlankOrComment(_ line: Substring) -> Bool {
            let t = line.drop { $0.isWhitespace }
            return t.isEmpty || t.hasPrefix("#")
        }
        var out: [DockerfileInstruction] = []
        while i < lines.count {
            if isBlankOrComment(lines[i]) { i += 1; continue }
            let start = i
            var logical = ""
            var current = lines[i]
            while true {
                let trimmed = current.trailingSpacesTrimmed
                if trimmed.last == escape {
                    logical += trimmed.dropLast()
                    i += 1
                    while i < lines.count, isBlankOrComment(lines[i]) { i += 1 }
                    guard i < lines.count else { break }
                    current = lines[i]
                } else {
                    logical += String(current)
                    break
                }
            }
            i += 1
            let body = logical.drop { $0.isWhitespace }
            let keyword = body.prefix { !$0.isWhitespace }
            let arguments = body.dropFirst(keyword.count).drop { $0.isWhitespace }
            let upper = keyword.uppercased()
            // buildah fails on an instruction it does not know; refusing it here keeps this
            // reader from skipping a line buildah would read as part of another.
            guard Self.keywords.contains(upper) else {
                throw DockerfileBases.error(.syntax, start + 1, "\(quoted(String(keyword), limit: 40)) is not a Dockerfile instruction")
            }
            out.append(DockerfileInstruction(line: start + 1, keyword: upper, arguments: String(arguments), escape: escape))
            // Heredocs (RUN/COPY/ADD <<EOF … EOF): buildah 1.28 reads their bodies as
            // instructions, this reader would not, so a Dockerfile with one is refused.
            if ["RUN", "COPY", "ADD"].contains(upper) {
                for word in Self.heredocWords(arguments) {
                    var j = i
                    while j < lines.count {
                        let candidate = word.stripTabs ? lines[j].drop { $0 == "\t" } : lines[j]
                        if candidate == word.word { break }
                        j += 1
                    }
                    // an unterminated "heredoc" was not one (e.g. `$((1<<2))`)
                    if j < lines.count {
                        throw DockerfileBases.error(.refused, start + 1, "heredocs (<<\(word.word)) are refused: the buildah this server runs does not read them")
                    }
                }
            }
        }
        return out
    }

    /// The instructions buildah 1.28 knows.
    static let keywords: Set<String> = ["FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                                        "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"]

    static func directive(_ line: Substring) -> (key: String, value: String)? {
        guard line.hasPrefix("#") else { return nil }
        let body = line.dropFirst().trimmingSpaces
        guard let eq = body.firstIndex(of: "=") else { return nil }
        let key = body[..<eq].trimmingSpaces.lowercased()
        guard !key.isEmpty, key.allSatisfy({ $0.isLetter }) else { return nil }
        return (key, String(body[body.index(after: eq)...].trimmingSpaces))
    }

    static func heredocWords(_ arguments: Substring) -> [(word: String, stripTabs: Bool)] {
        var words: [(String, Bool)] = []
        var rest = arguments[...]
        while let range = rest.range(of: "<<") {
            var after = rest[range.upperBound...]
            let strip = after.hasPrefix("-")
            if strip { after = after.dropFirst() }
            var quote: Character?
            if let q = after.first, q == "\"" || q == "'" { quote = q; after = after.dropFirst() }
            let word = after.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            if !word.isEmpty, word.first?.isLetter == true || word.first == "_" {
                after = after.dropFirst(word.count)
                if let quote {
                    if after.first == quote { words.append((String(word), strip)); after = after.dropFirst() }
                } else {
                    words.append((String(word), strip))
                }
            }
            rest = after
        }
        return words
    }

    // MARK: - instructions

    mutating func read(_ instruction: DockerfileInstruction) throws(TaskFileError) {
        switch instruction.keyword {
        case "FROM":
            try from(instruction)
        case "ARG":
            try arg(instruction)
        case "COPY":
            guard !stages.isEmpty else { throw outsideStage(instruction) }
            for word in try words(instruction) where word.hasPrefix("--from=") {
                try use(String(word.dropFirst(7)), instruction)
            }
        case "RUN":
            guard !stages.isEmpty else { throw outsideStage(instruction) }
            // Refused whole: the buildah these servers run (Debian's 1.28) lets a `type=cache`
            // mount with an `id` of `../..` (CVE-2024-9675) or a `type=bind` through a stage's
            // link (CVE-2024-1753) mount the host's root into the build, read-write (shown on
            // this machine). Any spelling of the flag, so no parse of its options can differ
            // from buildah's.
            try Self.refuseRunFlags(instruction.arguments, line: instruction.line)
        case "ONBUILD":
            guard !stages.isEmpty else { throw outsideStage(instruction) }
            let inner = instruction.arguments.drop { $0.isWhitespace }
            let keyword = inner.prefix { !$0.isWhitespace }
            if keyword.uppercased() == "RUN" {
                try Self.refuseRunFlags(String(inner.dropFirst(keyword.count)), line: instruction.line)
            }
        default:
            guard !stages.isEmpty else { throw outsideStage(instruction) }
        }
    }

    /// Every RUN flag is refused (buildah 1.28 takes only `--mount`): the installed buildah lets
    /// a `type=cache` mount with an `id` of `../..` (CVE-2024-9675) or a `type=bind` through a
    /// stage's link (CVE-2024-1753) mount the host's root into the build, read-write (shown on
    /// this machine). Any argument starting with `-` counts, however the flag is then spelled
    /// (quotes, escapes, `$VAR`s buildah expands in flags).
    static func refuseRunFlags(_ arguments: String, line: Int) throws(TaskFileError) {
        let rest = arguments.drop { $0.isWhitespace }
        guard rest.first == "-" else { return }
        let flag = rest.prefix { !$0.isWhitespace }
        throw DockerfileBases.error(.refused, line,
                                    "RUN \(quoted(String(flag), limit: 40)) is refused: the buildah this server runs lets a RUN mount reach the host's files (CVE-2024-9675, CVE-2024-1753)")
    }

    func outsideStage(_ instruction: DockerfileInstruction) -> TaskFileError {
        DockerfileBases.error(.syntax, instruction.line,
                              "\(quoted(instruction.keyword, limit: 20)) comes before the first FROM; only ARG may")
    }

    func words(_ instruction: DockerfileInstruction) throws(TaskFileError) -> [String] {
        // Only the leading flags matter here; the command itself may hold any quoting.
        var flags: [String] = []
        for word in instruction.arguments.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard word.hasPrefix("--") else { break }
            flags.append(String(word))
        }
        return flags
    }

    mutating func from(_ instruction: DockerfileInstruction) throws(TaskFileError) {
        guard stages.count < limits.maxStages else {
            throw DockerfileBases.error(.tooManySteps, instruction.line, "more than \(limits.maxStages) stages")
        }
        let words = instruction.arguments.split(whereSeparator: { $0 == " " || $0 == "\t" }).drop { $0.hasPrefix("--") }
        let parts = Array(words)
        var name: String?
        if parts.count == 3, parts[1].lowercased() == "as" {
            name = parts[2].lowercased()
            guard BuildArguments.isStageName(name!) else {
                throw DockerfileBases.error(.invalidValue, instruction.line, "\(quoted(parts[2], limit: 64)) is not a stage name")
            }
            guard !stages.contains(where: { $0.name == name }) else {
                throw DockerfileBases.error(.invalidValue, instruction.line, "stage name \(quoted(parts[2], limit: 64)) is used twice")
            }
        } else if parts.count != 1 {
            throw DockerfileBases.error(.syntax, instruction.line, "FROM takes an image and optionally AS <name>")
        }
        let image = try expand(String(parts[0]), global, instruction)
        let base: DockerfileBases.Stage.Base
        if image.lowercased() == "scratch" {
            base = .scratch
        } else if let index = stages.firstIndex(where: { $0.name == image.lowercased() }) {
            base = .stage(index)
        } else {
            base = .image(try reference(image, instruction))
        }
        stages.append(DockerfileBases.Stage(name: name, line: instruction.line, base: base))
        scope = [:]
    }

    mutating func arg(_ instruction: DockerfileInstruction) throws(TaskFileError) {
        let declarations: [String]
        do { declarations = try ShellWords.split(instruction.arguments) } catch {
            throw DockerfileBases.error(.syntax, instruction.line, "ARG: \(error)")
        }
        for declaration in declarations {
            let name: String, fallback: String?
            if let eq = declaration.firstIndex(of: "=") {
                name = String(declaration[..<eq])
                fallback = String(declaration[declaration.index(after: eq)...])
            } else {
                name = declaration
                fallback = nil
            }
            guard TaskValues.isName(name) else {
                throw DockerfileBases.error(.invalidValue, instruction.line, "\(quoted(name, limit: 64)) is not an ARG name")
            }
            if stages.isEmpty {
                if let value = buildArgs[name] {
                    global[name] = value
                } else if let fallback {
                    global[name] = try expand(fallback, global, instruction)
                } else {
                    global[name] = ""
                }
            } else if let value = buildArgs[name] {
                scope[name] = value
            } else if let fallback {
                scope[name] = try expand(fallback, scope, instruction)
            } else if let value = global[name] {
                scope[name] = value
            }
        }
    }

    /// `COPY --from=`: an earlier stage (by name or index) or an image.
    mutating func use(_ raw: String, _ instruction: DockerfileInstruction) throws(TaskFileError) {
        let value = try expand(raw, scope, instruction)
        let current = stages.count - 1
        if let index = Int(value), value.allSatisfy(\.isNumber) {
            guard index < current else {
                throw DockerfileBases.error(.invalidValue, instruction.line, "stage \(index) is not an earlier stage")
            }
            stages[current].stagesUsed.append(index)
        } else if let index = stages[..<current].firstIndex(where: { $0.name == value.lowercased() }) {
            stages[current].stagesUsed.append(index)
        } else {
            let reference = try reference(value, instruction)
            if !stages[current].imagesUsed.contains(reference) { stages[current].imagesUsed.append(reference) }
        }
    }

    func reference(_ text: String, _ instruction: DockerfileInstruction) throws(TaskFileError) -> ImageReference {
        guard !text.isEmpty else {
            throw DockerfileBases.error(.invalidValue, instruction.line, "\(instruction.keyword) names an empty image (is an ARG without a value?)")
        }
        do { return try ImageReference(parsing: text) } catch {
            throw DockerfileBases.error(.invalidValue, instruction.line, "\(instruction.keyword): \(error.message)")
        }
    }

    // MARK: - variables

    func expand(_ text: String, _ variables: [String: String], _ instruction: DockerfileInstruction) throws(TaskFileError) -> String {
        var out = ""
        try expand(Array(text), variables, instruction, depth: 0, into: &out)
        return out
    }

    private func expand(_ chars: [Character], _ variables: [String: String], _ instruction: DockerfileInstruction,
                        depth: Int, into out: inout String) throws(TaskFileError) {
        guard depth <= 8 else {
            throw DockerfileBases.error(.variable, instruction.line, "variables nested more than 8 deep")
        }
        func isNameChar(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber || c == "_") }
        var i = 0
        while i < chars.count {
            guard out.utf8.count <= 4096 else {
                throw DockerfileBases.error(.variable, instruction.line, "a value expands to more than 4096 bytes")
            }
            let c = chars[i]
            if c == instruction.escape, i + 1 < chars.count, chars[i + 1] == "$" {
                out.append("$"); i += 2; continue
            }
            guard c == "$", i + 1 < chars.count else { out.append(c); i += 1; continue }
            if chars[i + 1] == "{" {
                // find the matching brace
                var j = i + 2, open = 1
                while j < chars.count {
                    if chars[j] == "{" { open += 1 } else if chars[j] == "}" { open -= 1; if open == 0 { break } }
                    j += 1
                }
                guard j < chars.count else {
                    throw DockerfileBases.error(.variable, instruction.line, "'${' is not closed by '}'")
                }
                let inner = Array(chars[(i + 2)..<j])
                let name = String(inner.prefix(while: isNameChar))
                let modifier = inner.dropFirst(name.count)
                guard !name.isEmpty else {
                    throw DockerfileBases.error(.variable, instruction.line, "'${' needs a variable name")
                }
                let value = variables[name]
                if modifier.isEmpty {
                    out += value ?? ""
                } else {
                    let colon = modifier.first == ":"
                    let op = colon ? modifier.dropFirst().first : modifier.first
                    let word = Array(modifier.dropFirst(colon ? 2 : 1))
                    let isSet = colon ? !(value ?? "").isEmpty : value != nil
                    switch op {
                    case "-":
                        if isSet { out += value ?? "" } else { try expand(word, variables, instruction, depth: depth + 1, into: &out) }
                    case "+":
                        if isSet { try expand(word, variables, instruction, depth: depth + 1, into: &out) }
                    default:
                        throw DockerfileBases.error(.variable, instruction.line,
                                                    "unsupported substitution \(quoted("${" + String(inner) + "}", limit: 40)) (supported: ${X}, ${X:-word}, ${X:+word})")
                    }
                }
                i = j + 1
                continue
            }
            let name = String(chars[(i + 1)...].prefix(while: isNameChar))
            if name.isEmpty { out.append("$"); i += 1; continue }
            out += variables[name] ?? ""
            i += 1 + name.count
        }
        guard out.utf8.count <= 4096 else {
            throw DockerfileBases.error(.variable, instruction.line, "a value expands to more than 4096 bytes")
        }
    }
}

private extension Substring {
    var trimmingSpaces: Substring { trailingSpacesTrimmed.drop { $0 == " " || $0 == "\t" } }
    var trailingSpacesTrimmed: Substring {
        var s = self
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}
