import Foundation

/// The version-ordering rules an ecosystem uses.
public enum VersionSchemeKind: String, Sendable, Hashable, CaseIterable {
    case dpkg, apk, rpm, pep440, semver, go, maven

    /// Maps an ecosystem name as OSV spells it ("Debian", "Debian:12", "Alpine:v3.18", "PyPI",
    /// "Go", "npm", "Maven", "crates.io", "Red Hat", "Rocky Linux", …) to its rules, or nil
    /// for ecosystems this module does not order.
    public init?(ecosystem: String) {
        let base = Ecosystem.base(of: ecosystem).lowercased()
        switch base {
        case "debian", "ubuntu": self = .dpkg
        case "alpine", "wolfi", "chainguard": self = .apk
        case "red hat", "rocky linux", "almalinux", "fedora", "opensuse", "suse", "mageia", "openeuler", "azure linux": self = .rpm
        case "pypi": self = .pep440
        case "go": self = .go
        case "npm", "crates.io": self = .semver
        case "maven": self = .maven
        default: return nil
        }
    }

    /// Compares two version strings by these rules.
    public func compare(_ a: String, _ b: String) throws -> ComparisonResult {
        switch self {
        case .dpkg: return try DpkgVersionScheme().compare(a, b)
        case .apk: return try ApkVersionScheme().compare(a, b)
        case .rpm: return try RpmVersionScheme().compare(a, b)
        case .pep440: return try PEP440VersionScheme().compare(a, b)
        case .semver: return try SemVerScheme().compare(a, b)
        case .go: return try GoVersionScheme().compare(a, b)
        case .maven: return try MavenVersionScheme().compare(a, b)
        }
    }

    /// Checks that a version string parses by these rules.
    public func validate(_ a: String) throws {
        switch self {
        case .dpkg: _ = try DpkgVersionScheme().parse(a)
        case .apk: _ = try ApkVersionScheme().parse(a)
        case .rpm: _ = try RpmVersionScheme().parse(a)
        case .pep440: _ = try PEP440VersionScheme().parse(a)
        case .semver: _ = try SemVerScheme().parse(a)
        case .go: _ = try GoVersionScheme().parse(a)
        case .maven: _ = try MavenVersionScheme().parse(a)
        }
    }
}

public enum Ecosystem {
    /// "Debian:12" → "Debian".
    public static func base(of ecosystem: String) -> String {
        String(ecosystem.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }
    /// "Debian:12" → "12"; nil when the ecosystem names no release.
    public static func release(of ecosystem: String) -> String? {
        let parts = ecosystem.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[1].isEmpty ? String(parts[1]) : nil
    }
}
