import Foundation

/// A package found installed in an image.
public struct InstalledPackage: Sendable, Hashable {
    /// The ecosystem in OSV's spelling ("Debian", "Alpine", "PyPI", "Go", "npm", "Maven", …).
    public var ecosystem: String
    public var name: String
    public var version: String
    /// Debian and Alpine: the source (origin) package the binary package was built from.
    /// Distribution advisories name source packages.
    public var sourceName: String?
    /// Debian: the source package's version when it differs from the binary's (binNMUs).
    public var sourceVersion: String?
    /// The distribution release ("bookworm" or "12", "v3.18" or "3.18"), when known.
    public var release: String?

    public init(ecosystem: String, name: String, version: String, sourceName: String? = nil,
                sourceVersion: String? = nil, release: String? = nil) {
        self.ecosystem = ecosystem; self.name = name; self.version = version
        self.sourceName = sourceName; self.sourceVersion = sourceVersion; self.release = release
    }
}

public struct AdvisoryMatch: Sendable, Hashable {
    public enum Reason: Sendable, Hashable {
        /// The version is inside an affected range.
        case inRange
        /// The version is listed as affected.
        case listed
        /// The advisory has no fix for this package yet: every version is affected.
        case unfixed
    }
    public var advisory: Advisory
    public var affected: AffectedPackage
    public var reason: Reason
    /// The lowest fixed version above the installed one, if the feed names one.
    public var fixedVersion: String?
    /// The most severe severity known for this match (package-specific first, then the record's).
    public var severity: Severity?
}

/// Why a package could not be checked against some advisory.
public struct MatchProblem: Sendable, Hashable, CustomStringConvertible {
    public var advisoryID: String
    public var reason: String
    public var description: String { "\(advisoryID): \(reason)" }
}

public struct MatchResult: Sendable {
    public var matches: [AdvisoryMatch] = []
    public var problems: [MatchProblem] = []
}

/// Advisories indexed by ecosystem and package name, answering "what affects this package".
public struct AdvisoryIndex: Sendable {
    private struct Key: Hashable { let ecosystem: String; let name: String }
    private var entries: [Key: [(advisory: Int, affected: Int)]] = [:]
    public private(set) var advisories: [Advisory] = []

    public init(_ advisories: [Advisory] = []) { add(advisories) }

    public mutating func add(_ list: [Advisory]) {
        for advisory in list where advisory.withdrawn == nil {
            let a = advisories.count
            advisories.append(advisory)
            for (k, affected) in advisory.affected.enumerated() {
                let key = Key(ecosystem: Ecosystem.base(of: affected.ecosystem).lowercased(),
                              name: Self.normalisedName(affected.name, ecosystem: affected.ecosystem))
                entries[key, default: []].append((a, k))
            }
        }
    }

    /// The key an affected package is stored and looked up by: the ecosystem's base name in lower
    /// case and the name as this index compares it.
    public static func lookupKey(ecosystem: String, name: String) -> (ecosystem: String, name: String) {
        (Ecosystem.base(of: ecosystem).lowercased(), normalisedName(name, ecosystem: ecosystem))
    }

    /// The key the advisories that may affect an installed package are stored under (for a
    /// distribution package, its source package).
    public static func lookupKey(for package: InstalledPackage) -> (ecosystem: String, name: String) {
        let base = Ecosystem.base(of: package.ecosystem).lowercased()
        let isDistribution = base == "debian" || base == "alpine" || base == "ubuntu"
        return lookupKey(ecosystem: package.ecosystem, name: isDistribution ? (package.sourceName ?? package.name) : package.name)
    }

    /// Every key advisories for `package` may be stored under: `lookupKey(for:)`, and for an rpm
    /// package also its source package (OSV's Red Hat family names binary packages, other
    /// advisories the source rpm's name).
    public static func lookupKeys(for package: InstalledPackage) -> [(ecosystem: String, name: String)] {
        let first = lookupKey(for: package)
        guard VersionSchemeKind(ecosystem: package.ecosystem) == .rpm, let source = package.sourceName, source != package.name else {
            return [first]
        }
        return [first, lookupKey(ecosystem: package.ecosystem, name: source)]
    }

    /// The distinct lookup keys of installed packages, sorted: what an inventory is indexed by for
    /// the re-match, and what the advisories that may affect it are read by.
    public static func packageKeys(of packages: [InstalledPackage]) -> [(ecosystem: String, name: String)] {
        var seen = Set<String>()
        var keys: [(ecosystem: String, name: String)] = []
        for p in packages {
            for k in lookupKeys(for: p) where seen.insert(k.ecosystem + "\u{0}" + k.name).inserted { keys.append(k) }
        }
        return keys.sorted { ($0.ecosystem, $0.name) < ($1.ecosystem, $1.name) }
    }

    /// PyPI names compare after PEP 503 normalisation; other ecosystems compare exactly.
    static func normalisedName(_ name: String, ecosystem: String) -> String {
        guard Ecosystem.base(of: ecosystem).lowercased() == "pypi" else { return name }
        var out = ""
        var lastWasSeparator = false
        for c in name.lowercased() {
            if c == "-" || c == "_" || c == "." {
                if !lastWasSeparator { out.append("-") }
                lastWasSeparator = true
            } else {
                out.append(c); lastWasSeparator = false
            }
        }
        return out
    }

    /// Debian releases by number and codename, so "Debian:12" advisories match "bookworm".
    static let debianCodenames = ["9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"]

    static func sameRelease(_ a: String, _ b: String, ecosystem: String) -> Bool {
        func norm(_ r: String) -> String {
            var r = r.lowercased()
            switch Ecosystem.base(of: ecosystem).lowercased() {
            case "debian":
                if let name = debianCodenames[r] { r = name }
            case "alpine":
                if r.hasPrefix("v") { r.removeFirst() }
            case "red hat", "rocky linux", "almalinux", "fedora":
                // OSV writes "Rocky Linux:9" and "Red Hat:enterprise_linux:9::appstream"; os-release says "9.3".
                if let number = r.split(separator: ":").first(where: { $0.first?.isNumber == true }) {
                    r = String(number.split(separator: ".").first ?? number)
                }
            case "ubuntu":
                // OSV writes "Ubuntu:22.04:LTS" and "Ubuntu:Pro:18.04:LTS"; os-release says "22.04".
                if let number = r.split(separator: ":").first(where: { $0.first?.isNumber == true }) { r = String(number) }
            default: break
            }
            return r
        }
        return norm(a) == norm(b)
    }

    /// The advisories that affect `package`, by its ecosystem's version rules.
    public func matches(for package: InstalledPackage) -> MatchResult {
        var result = MatchResult()
        let base = Ecosystem.base(of: package.ecosystem).lowercased()
        let isDistribution = base == "debian" || base == "alpine" || base == "ubuntu"
        let name = isDistribution ? (package.sourceName ?? package.name) : package.name
        let version = base == "debian" || base == "ubuntu" ? (package.sourceVersion ?? package.version) : package.version
        var keys = [Key(ecosystem: base, name: Self.normalisedName(name, ecosystem: package.ecosystem))]
        for k in Self.lookupKeys(for: package).dropFirst() { keys.append(Key(ecosystem: k.ecosystem, name: k.name)) }
        // An advisory stored under both the binary and the source name is matched once.
        var candidates: [(Int, Int)] = []
        var seenCandidates = Set<[Int]>()
        for key in keys { for c in entries[key] ?? [] where seenCandidates.insert([c.0, c.1]).inserted { candidates.append(c) } }
        guard let scheme = VersionSchemeKind(ecosystem: package.ecosystem) else {
            if !candidates.isEmpty {
                result.problems.append(MatchProblem(advisoryID: "-", reason: "no version rules for ecosystem \"\(package.ecosystem.prefix(32))\""))
            }
            return result
        }
        do { try scheme.validate(version) } catch {
            result.problems.append(MatchProblem(advisoryID: "-", reason: "installed version: \(error)"))
            return result
        }
        for (a, k) in candidates {
            let advisory = advisories[a], affected = advisory.affected[k]
            if let wanted = affected.release ?? Ecosystem.release(of: affected.ecosystem), let have = package.release,
               !Self.sameRelease(wanted, have, ecosystem: package.ecosystem) {
                continue
            }
            do {
                if let m = try Self.match(version, affected, scheme) {
                    let severity = affected.severity.flatMap { $0.level == .unknown ? nil : $0 }
                        ?? advisory.severities.filter { $0.level != .unknown }.max { $0.level < $1.level }
                        ?? advisory.severities.first ?? affected.severity
                    result.matches.append(AdvisoryMatch(advisory: advisory, affected: affected, reason: m.reason,
                                                        fixedVersion: m.fixed, severity: severity))
                }
            } catch {
                result.problems.append(MatchProblem(advisoryID: advisory.id, reason: "\(error)"))
            }
        }
        return result
    }

    /// Whether `version` is affected by `affected`, and why.
    static func match(_ version: String, _ affected: AffectedPackage, _ scheme: VersionSchemeKind) throws
        -> (reason: AdvisoryMatch.Reason, fixed: String?)? {
        func cmp(_ a: String, _ b: String) throws -> ComparisonResult { try compare(scheme, a, b) }
        if try affected.versions.contains(where: { try $0 == version || cmp($0, version) == .orderedSame }) {
            return (.listed, try lowestFixedAbove(version, affected, scheme))
        }
        var evaluated = false
        var lastError: (any Error)?
        for range in affected.ranges where range.kind != .git {
            // SEMVER ranges are semantic versions whatever the ecosystem says.
            let rangeScheme: VersionSchemeKind = range.kind == .semver && scheme != .go ? .semver : scheme
            do {
                evaluated = true
                if try inRange(version, range, rangeScheme) {
                    let fixed = try lowestFixedAbove(version, affected, scheme)
                    let bounded = range.events.contains { switch $0 { case .fixed, .lastAffected, .limit: true; default: false } }
                    return (bounded ? .inRange : .unfixed, fixed)
                }
            } catch {
                lastError = error
            }
        }
        if !evaluated && !affected.ranges.isEmpty && affected.versions.isEmpty {
            // Only GIT ranges: commits cannot be compared with a package version here.
            return nil
        }
        if let lastError { throw lastError }
        return nil
    }

    /// OSV's range evaluation: walk the events in version order; `introduced` turns affected on,
    /// `fixed` (at or below the version) and `last_affected` (below the version) turn it off.
    static func inRange(_ version: String, _ range: AffectedRange, _ scheme: VersionSchemeKind) throws -> Bool {
        func cmp(_ a: String, _ b: String) throws -> ComparisonResult { try compare(scheme, a, b) }
        // "introduced: 0" means "from the very beginning"; it sorts before everything.
        var events: [AffectedRange.Event] = []
        for event in range.events {
            if case let .introduced(v) = event, v == "0" { continue }
            events.append(event)
        }
        // Every event's version must parse before sorting, so that the order is consistent.
        for event in events { _ = try cmp(event.version, event.version) }
        events.sort { a, b in (try? cmp(a.version, b.version)) == .orderedAscending }
        var affected = range.events.contains { if case let .introduced(v) = $0 { v == "0" } else { false } }
        for event in events {
            let order = try cmp(version, event.version)
            switch event {
            case .introduced:
                if order != .orderedAscending { affected = true }
            case .fixed, .limit:
                if order != .orderedAscending { affected = false }
            case .lastAffected:
                if order == .orderedDescending { affected = false }
            }
        }
        return affected
    }

    /// Compares by `scheme`, reconciling the leading `v`: OSV writes Go versions in SEMVER
    /// ranges without one, while Go itself always has one.
    static func compare(_ scheme: VersionSchemeKind, _ a: String, _ b: String) throws -> ComparisonResult {
        switch scheme {
        case .go:
            return try scheme.compare(a.hasPrefix("v") ? a : "v" + a, b.hasPrefix("v") ? b : "v" + b)
        case .semver:
            return try scheme.compare(a.hasPrefix("v") ? String(a.dropFirst()) : a, b.hasPrefix("v") ? String(b.dropFirst()) : b)
        default:
            return try scheme.compare(a, b)
        }
    }

    static func lowestFixedAbove(_ version: String, _ affected: AffectedPackage, _ scheme: VersionSchemeKind) throws -> String? {
        var best: String?
        for f in affected.fixedVersions {
            guard (try? compare(scheme, f, version)) == .orderedDescending else { continue }
            if let b = best, (try? compare(scheme, f, b)) != .orderedAscending { continue }
            best = f
        }
        return best
    }
}
