/// Debian package versions (Debian Policy §5.6.12): `[epoch:]upstream_version[-debian_revision]`.
///
/// The epoch is a number; the revision is what follows the last hyphen. Upstream and revision
/// are compared alternately by non-digit runs (where `~` sorts before everything, even the end
/// of the string, and letters sort before all other characters) and by digit runs compared as
/// numbers. A missing revision compares like "0".
public struct DpkgVersionScheme: VersionScheme {
    public init() {}
    public var name: String { "dpkg" }

    public struct Version: Comparable, Hashable, Sendable, CustomStringConvertible {
        public let epoch: Natural
        public let upstream: [UInt8]
        public let revision: [UInt8]
        public let description: String

        public static func == (a: Version, b: Version) -> Bool { compareVersions(a, b) == 0 }
        public func hash(into h: inout Hasher) { h.combine(epoch) }  // equal versions share an epoch
        public static func < (a: Version, b: Version) -> Bool { compareVersions(a, b) < 0 }
    }

    public func parse(_ string: String) throws -> Version {
        let bytes = try versionBytes(string, scheme: name)
        func fail(_ reason: String) -> VersionParseError { VersionParseError(scheme: name, input: string, reason: reason) }
        var rest = bytes[...]
        var epoch = Natural.zero
        if let colon = rest.firstIndex(of: UInt8(ascii: ":")) {
            let e = rest[..<colon]
            if e.isEmpty || !e.allSatisfy(isDigit) { throw fail("epoch is not a number") }
            if e.count > 10 { throw fail("epoch too large") }
            epoch = Natural(e)
            rest = rest[(colon + 1)...]
        }
        var revision: ArraySlice<UInt8> = []
        if let dash = rest.lastIndex(of: UInt8(ascii: "-")) {
            revision = rest[(dash + 1)...]
            rest = rest[..<dash]
            if revision.isEmpty { throw fail("empty revision after '-'") }
            if !revision.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "~") }) {
                throw fail("revision may contain only letters, digits and + . ~")
            }
        }
        guard let first = rest.first else { throw fail("empty upstream version") }
        if !isDigit(first) { throw fail("upstream version must start with a digit") }
        if !rest.allSatisfy({ isAlnum($0) || ".+-~:".utf8.contains($0) }) {
            throw fail("upstream version may contain only letters, digits and . + - ~ :")
        }
        return Version(epoch: epoch, upstream: Array(rest), revision: Array(revision), description: string)
    }

    static func compareVersions(_ a: Version, _ b: Version) -> Int {
        if a.epoch != b.epoch { return a.epoch < b.epoch ? -1 : 1 }
        let u = compareFragment(a.upstream, b.upstream)
        return u != 0 ? u : compareFragment(a.revision, b.revision)
    }

    /// Weight of one character in a non-digit run; 0 stands for "end of run".
    private static func weight(_ c: UInt8?) -> Int {
        guard let c, !isDigit(c) else { return 0 }
        if c == UInt8(ascii: "~") { return -1 }
        if isAlpha(c) { return Int(c) }
        return Int(c) + 256
    }

    /// Compares upstream versions or revisions.
    static func compareFragment(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var i = 0, j = 0
        while i < a.count || j < b.count {
            // Non-digit prefix, character by character.
            while (i < a.count && !isDigit(a[i])) || (j < b.count && !isDigit(b[j])) {
                let wa = weight(i < a.count ? a[i] : nil), wb = weight(j < b.count ? b[j] : nil)
                if wa != wb { return wa < wb ? -1 : 1 }
                if i < a.count && !isDigit(a[i]) { i += 1 }
                if j < b.count && !isDigit(b[j]) { j += 1 }
            }
            // Digit runs, by value.
            let si = i, sj = j
            while i < a.count && isDigit(a[i]) { i += 1 }
            while j < b.count && isDigit(b[j]) { j += 1 }
            let d = compareDigits(a[si..<i], b[sj..<j])
            if d != 0 { return d }
        }
        return 0
    }
}
