import OCIModel

/// Why a task file, a values file, a `--set` assignment or a Dockerfile was refused.
///
/// Every refusal names the input it came from and the 1-based line the problem was found on
/// (0 when the input has no lines, e.g. a `--set` flag), so an author can fix the file without
/// guessing. Messages quote at most a short prefix of the offending text.
public struct TaskFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable, Equatable {
        /// Larger than the byte cap.
        case tooLarge
        /// Not UTF-8, or contains a character this parser reserves.
        case invalidEncoding
        /// Not YAML (or not a Dockerfile) at all.
        case syntax
        /// Nested deeper than the cap.
        case tooDeep
        /// More nodes than the cap once aliases are expanded (billion laughs).
        case tooManyNodes
        case tooManySteps
        case unknownKey
        case missingKey
        case wrongType
        /// The right type, but a value the field does not take.
        case invalidValue
        case unsupportedVersion
        case duplicateStepID
        case unknownStepID
        case cycle
        /// A variable that is unknown, has no value, refers to itself or expands past the cap.
        case variable
        /// A feature that is deliberately refused (`secrets:`, `--push` in a build step).
        case refused
    }

    public let reason: Reason
    /// "task file", "values file", "--set" or "Dockerfile".
    public let source: String
    /// 1-based; 0 when the source has no lines.
    public let line: Int
    public let message: String

    public init(_ reason: Reason, line: Int, _ message: String, source: String = "task file") {
        self.reason = reason
        self.source = source
        self.line = line
        self.message = message
    }

    public var description: String {
        line > 0 ? "\(source), line \(line): \(message)" : "\(source): \(message)"
    }

    /// The error the HTTP layer renders when a client sent the refused input: 413 for a file
    /// over its size cap, 400 for everything else, `UNSUPPORTED` as the management API uses for
    /// bad input, with the source and line in the message.
    public var registryError: RegistryError {
        RegistryError(.unsupported, description, status: reason == .tooLarge ? 413 : 400)
    }
}

/// Quote untrusted text in an error message: at most `limit` characters, control characters escaped.
func quoted(_ text: some StringProtocol, limit: Int = 80) -> String {
    var out = ""
    for ch in text.unicodeScalars.prefix(limit) {
        if ch.value < 0x20 || ch.value == 0x7f { out += ch.escaped(asASCII: true) } else { out.unicodeScalars.append(ch) }
    }
    if text.unicodeScalars.count > limit { out += "…" }
    return "'\(out)'"
}
