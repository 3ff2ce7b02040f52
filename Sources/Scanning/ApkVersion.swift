/// Alpine package versions: `number{.number}...{letter}{_suffix{number}}...{~hash}{-rN}`.
///
/// Numbers compare by value, except that a component after the first that starts with `0`
/// compares as a decimal fraction (more leading zeros sort lower). A letter directly after the
/// numbers sorts above none. Suffixes `_alpha _beta _pre _rc` sort below no suffix, and
/// `_cvs _svn _git _hg _p` above it; each may carry a number. `-rN` is the package revision,
/// and a version without one sorts below `-r0`. A `~hash` (commit id) is accepted and does
/// not take part in ordering.
public struct ApkVersionScheme: VersionScheme {
    public init() {}
    public var name: String { "apk" }

    static let preSuffixes = ["alpha", "beta", "pre", "rc"]
    static let postSuffixes = ["cvs", "svn", "git", "hg", "p"]

    /// The kinds of token in the order the format allows them; a version that has run out of
    /// one kind meets the other's next kind, and the lower kind then means "more version".
    enum Kind: Int, Comparable {
        case fraction = 0, number, letter, suffix, suffixNumber, revision, end
        static func < (a: Kind, b: Kind) -> Bool { a.rawValue < b.rawValue }
    }

    enum Value: Comparable, Hashable {
        /// A leading-zero run of this length (compares below every plain number).
        case zeros(Int)
        case natural(Natural)
        case small(Int)

        static func < (a: Value, b: Value) -> Bool {
            switch (a, b) {
            case let (.zeros(x), .zeros(y)): return x > y
            case (.zeros, _): return true
            case (_, .zeros): return false
            case let (.natural(x), .natural(y)): return x < y
            case let (.small(x), .small(y)): return x < y
            case let (.small(x), .natural(y)): return x < 0 || Natural(Array(String(x).utf8)) < y
            case let (.natural(x), .small(y)): return y >= 0 && x < Natural(Array(String(y).utf8))
            }
        }
    }

    struct Token: Hashable { let kind: Kind; let value: Value }

    public struct Version: Comparable, Hashable, Sendable, CustomStringConvertible {
        let tokens: [Token]
        public let description: String
        public static func == (a: Version, b: Version) -> Bool { ApkVersionScheme.compareTokens(a.tokens, b.tokens) == 0 }
        public func hash(into h: inout Hasher) { h.combine(tokens.first) }
        public static func < (a: Version, b: Version) -> Bool { ApkVersionScheme.compareTokens(a.tokens, b.tokens) < 0 }
    }

    public func parse(_ string: String) throws -> Version {
        let s = try versionBytes(string, scheme: name)
        func fail(_ reason: String) -> VersionParseError { VersionParseError(scheme: name, input: string, reason: reason) }
        var tokens: [Token] = []
        var i = 0
        func digits() -> ArraySlice<UInt8> {
            let start = i
            while i < s.count && isDigit(s[i]) { i += 1 }
            return s[start..<i]
        }
        // Numbers.
        let first = digits()
        if first.isEmpty { throw fail("must start with a digit") }
        tokens.append(Token(kind: .number, value: .natural(Natural(first))))
        while i < s.count && s[i] == UInt8(ascii: ".") {
            i += 1
            if i < s.count && s[i] == UInt8(ascii: "0") {
                var zeros = 0
                while i < s.count && s[i] == UInt8(ascii: "0") { zeros += 1; i += 1 }
                tokens.append(Token(kind: .fraction, value: .zeros(zeros)))
                // Digits after the zeros, or a following component, continue as a number
                // ("1.01" > "1.0.1", both above "1.001"); a letter or suffix does not.
                if i < s.count && (isDigit(s[i]) || s[i] == UInt8(ascii: ".")) {
                    tokens.append(Token(kind: .number, value: .natural(Natural(digits()))))
                }
            } else {
                let d = digits()
                if d.isEmpty { throw fail("'.' must be followed by a number") }
                tokens.append(Token(kind: .fraction, value: .natural(Natural(d))))
            }
        }
        // Letter.
        if i < s.count && s[i] >= UInt8(ascii: "a") && s[i] <= UInt8(ascii: "z") {
            tokens.append(Token(kind: .letter, value: .small(Int(s[i]))))
            i += 1
        }
        // Suffixes.
        while i < s.count && s[i] == UInt8(ascii: "_") {
            i += 1
            let start = i
            while i < s.count && s[i] >= UInt8(ascii: "a") && s[i] <= UInt8(ascii: "z") { i += 1 }
            let word = String(decoding: s[start..<i], as: UTF8.self)
            let value: Int
            if let p = Self.preSuffixes.firstIndex(of: word) {
                value = p - Self.preSuffixes.count
            } else if let p = Self.postSuffixes.firstIndex(of: word) {
                value = p
            } else {
                throw fail("unknown suffix \"_\(word.prefix(16))\"")
            }
            tokens.append(Token(kind: .suffix, value: .small(value)))
            let n = digits()
            if !n.isEmpty { tokens.append(Token(kind: .suffixNumber, value: .natural(Natural(n)))) }
        }
        // Commit hash.
        if i < s.count && s[i] == UInt8(ascii: "~") {
            i += 1
            let start = i
            while i < s.count && (isDigit(s[i]) || (s[i] >= UInt8(ascii: "a") && s[i] <= UInt8(ascii: "f"))) { i += 1 }
            if i == start { throw fail("'~' must be followed by a hexadecimal commit id") }
        }
        // Revision.
        if i < s.count && s[i] == UInt8(ascii: "-") {
            guard i + 1 < s.count, s[i + 1] == UInt8(ascii: "r") else { throw fail("'-' must start a revision '-rN'") }
            i += 2
            let n = digits()
            if n.isEmpty { throw fail("revision '-r' needs a number") }
            tokens.append(Token(kind: .revision, value: .natural(Natural(n))))
        }
        if i != s.count { throw fail("unexpected character '\(Character(Unicode.Scalar(s[i])))'") }
        tokens.append(Token(kind: .end, value: .small(0)))
        return Version(tokens: tokens, description: string)
    }

    static func compareTokens(_ a: [Token], _ b: [Token]) -> Int {
        var k = 0
        while true {
            let x = a[k], y = b[k]
            if x.kind != y.kind {
                // One version goes on where the other does not. A pre-release suffix makes the
                // longer version lower; otherwise the earlier kind is "more version".
                if x.kind == .suffix, case let .small(v) = x.value, v < 0 { return -1 }
                if y.kind == .suffix, case let .small(v) = y.value, v < 0 { return 1 }
                return x.kind < y.kind ? 1 : -1
            }
            if x.value != y.value { return x.value < y.value ? -1 : 1 }
            if x.kind == .end { return 0 }
            k += 1
        }
    }
}
