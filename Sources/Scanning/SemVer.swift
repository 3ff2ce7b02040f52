/// Semantic Versioning 2.0.0: `MAJOR.MINOR.PATCH[-prerelease][+build]`.
///
/// Pre-release identifiers are compared one by one: numeric ones by value and below
/// alphanumeric ones, alphanumeric ones as ASCII; a version with a pre-release sorts below the
/// same version without, and a longer identifier list wins a tie. Build metadata is accepted
/// and ignored. Numeric identifiers must not have leading zeros.
public struct SemVerScheme: VersionScheme {
    /// When true a leading `v` is accepted (OSV SEMVER ranges and npm tolerate one).
    public var allowsLeadingV: Bool
    public init(allowsLeadingV: Bool = true) { self.allowsLeadingV = allowsLeadingV }
    public var name: String { "semver" }

    public enum Identifier: Comparable, Hashable, Sendable {
        case number(Natural)
        case text(String)
        public static func < (a: Identifier, b: Identifier) -> Bool {
            switch (a, b) {
            case let (.number(x), .number(y)): return x < y
            case let (.text(x), .text(y)): return Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
            case (.number, .text): return true
            case (.text, .number): return false
            }
        }
    }

    public struct Version: Comparable, Hashable, Sendable, CustomStringConvertible {
        public let major: Natural, minor: Natural, patch: Natural
        public let prerelease: [Identifier]
        public let build: [String]
        public let description: String

        public static func == (a: Version, b: Version) -> Bool {
            a.major == b.major && a.minor == b.minor && a.patch == b.patch && a.prerelease == b.prerelease
        }
        public func hash(into h: inout Hasher) { h.combine(major); h.combine(minor); h.combine(patch); h.combine(prerelease) }
        public static func < (a: Version, b: Version) -> Bool {
            if a.major != b.major { return a.major < b.major }
            if a.minor != b.minor { return a.minor < b.minor }
            if a.patch != b.patch { return a.patch < b.patch }
            switch (a.prerelease.isEmpty, b.prerelease.isEmpty) {
            case (true, true), (true, false): return false
            case (false, true): return true
            case (false, false):
                for (x, y) in zip(a.prerelease, b.prerelease) where x != y { return x < y }
                return a.prerelease.count < b.prerelease.count
            }
        }
    }

    public func parse(_ string: String) throws -> Version {
        try parse(string, schemeName: name, requireV: false, allowShortForms: false)
    }

    func parse(_ string: String, schemeName: String, requireV: Bool, allowShortForms: Bool) throws -> Version {
        let bytes = try versionBytes(string, scheme: schemeName)
        func fail(_ reason: String) -> VersionParseError { VersionParseError(scheme: schemeName, input: string, reason: reason) }
        var rest = bytes[...]
        if rest.first == UInt8(ascii: "v") {
            if !(allowsLeadingV || requireV) { throw fail("leading 'v' not allowed") }
            rest = rest.dropFirst()
        } else if requireV {
            throw fail("must start with 'v'")
        }
        var build: [String] = []
        if let plus = rest.firstIndex(of: UInt8(ascii: "+")) {
            build = try identifiers(rest[(plus + 1)...], fail).map { String(decoding: $0, as: UTF8.self) }
            rest = rest[..<plus]
        }
        var prerelease: [Identifier] = []
        if let dash = rest.firstIndex(of: UInt8(ascii: "-")) {
            for id in try identifiers(rest[(dash + 1)...], fail) {
                if id.allSatisfy(isDigit) {
                    if id.count > 1 && id.first == UInt8(ascii: "0") { throw fail("numeric pre-release identifier with a leading zero") }
                    prerelease.append(.number(Natural(id)))
                } else {
                    prerelease.append(.text(String(decoding: id, as: UTF8.self)))
                }
            }
            rest = rest[..<dash]
        }
        let core = rest.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        let shortOK = allowShortForms && prerelease.isEmpty && build.isEmpty
        guard core.count == 3 || (shortOK && (core.count == 1 || core.count == 2)) else {
            throw fail("expected MAJOR.MINOR.PATCH")
        }
        var numbers: [Natural] = []
        for part in core {
            if part.isEmpty || !part.allSatisfy(isDigit) { throw fail("version numbers must be digits") }
            if part.count > 1 && part.first == UInt8(ascii: "0") { throw fail("version number with a leading zero") }
            numbers.append(Natural(part))
        }
        while numbers.count < 3 { numbers.append(.zero) }
        return Version(major: numbers[0], minor: numbers[1], patch: numbers[2], prerelease: prerelease,
                       build: build, description: string)
    }

    private func identifiers(_ s: ArraySlice<UInt8>, _ fail: (String) -> VersionParseError) throws -> [ArraySlice<UInt8>] {
        let ids = s.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for id in ids {
            if id.isEmpty { throw fail("empty identifier") }
            if !id.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) { throw fail("identifiers may contain only [0-9A-Za-z-]") }
        }
        return ids
    }
}

/// Go module versions: semantic versions with a mandatory `v` (`v1.2.3`, `v1.2.3-pre`,
/// `v2.0.0+incompatible`), the shorthand `v1` / `v1.2` Go accepts, and pseudo-versions
/// (`v0.0.0-20191109021931-daa7c04131f5`, `v1.2.4-0.20191109021931-daa7c04131f5`), which are
/// pre-releases and so order by the rules of semver. `+incompatible` is build metadata and does
/// not take part in ordering.
public struct GoVersionScheme: VersionScheme {
    public init() {}
    public var name: String { "go" }
    public typealias Version = SemVerScheme.Version

    public func parse(_ string: String) throws -> Version {
        let v = try SemVerScheme(allowsLeadingV: true).parse(string, schemeName: name, requireV: true, allowShortForms: true)
        if !v.build.isEmpty && v.build != ["incompatible"] {
            throw VersionParseError(scheme: name, input: string, reason: "Go versions allow only '+incompatible' as build metadata")
        }
        return v
    }

    /// The commit time and revision of a pseudo-version, or nil for other versions.
    public static func pseudoVersion(_ v: Version) -> (timestamp: String, revision: String)? {
        // The last two pre-release parts (after the final '-' of the textual form) are
        // "yyyymmddhhmmss-revision" or "0.yyyymmddhhmmss-revision" / "pre.0.yyyymmddhhmmss-revision".
        let text = v.description.split(separator: "+").first.map(String.init) ?? v.description
        let parts = text.split(separator: "-")
        guard parts.count >= 3, let rev = parts.last, rev.count == 12,
              rev.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        let stamp = parts[parts.count - 2].split(separator: ".").last ?? ""
        guard stamp.count == 14, stamp.allSatisfy(\.isASCII), stamp.allSatisfy(\.isNumber) else { return nil }
        return (String(stamp), String(rev))
    }
}
