/// RPM versions: `[epoch:]version[-release]`, each part compared with rpm's segment rules.
///
/// Segments are maximal runs of digits or of letters; other characters only separate them.
/// Digit segments compare by value and beat letter segments; letter segments compare as bytes.
/// `~` sorts before everything, even the end of the string (`1.0~rc1 < 1.0`); `^` sorts after
/// the end of the string but before any further segment (`1.0 < 1.0^git1 < 1.0.1`). When all
/// segments agree, the string with segments left over is newer. A missing epoch is 0 and a
/// missing release compares like an empty one.
public struct RpmVersionScheme: VersionScheme {
    public init() {}
    public var name: String { "rpm" }

    public struct Version: Comparable, Hashable, Sendable, CustomStringConvertible {
        public let epoch: Natural
        public let version: [UInt8]
        public let release: [UInt8]
        public let description: String
        public static func == (a: Version, b: Version) -> Bool { RpmVersionScheme.compareEVR(a, b) == 0 }
        public func hash(into h: inout Hasher) { h.combine(epoch) }
        public static func < (a: Version, b: Version) -> Bool { RpmVersionScheme.compareEVR(a, b) < 0 }
    }

    public func parse(_ string: String) throws -> Version {
        let bytes = try versionBytes(string, scheme: name)
        func fail(_ reason: String) -> VersionParseError { VersionParseError(scheme: name, input: string, reason: reason) }
        if let bad = bytes.first(where: { !(isAlnum($0) || "._+~^-:".utf8.contains($0)) }) {
            throw fail("character '\(Character(Unicode.Scalar(bad)))' not allowed")
        }
        var rest = bytes[...]
        var epoch = Natural.zero
        if let colon = rest.firstIndex(of: UInt8(ascii: ":")) {
            let e = rest[..<colon]
            if e.isEmpty || !e.allSatisfy(isDigit) { throw fail("epoch is not a number") }
            if e.count > 10 { throw fail("epoch too large") }
            epoch = Natural(e)
            rest = rest[(colon + 1)...]
            if rest.contains(UInt8(ascii: ":")) { throw fail("more than one ':'") }
        }
        var release: ArraySlice<UInt8> = []
        if let dash = rest.lastIndex(of: UInt8(ascii: "-")) {
            release = rest[(dash + 1)...]
            rest = rest[..<dash]
            if release.isEmpty { throw fail("empty release after '-'") }
            if rest.contains(UInt8(ascii: "-")) { throw fail("version part contains '-'") }
        }
        if rest.isEmpty { throw fail("empty version") }
        if !rest.contains(where: isAlnum) { throw fail("version has no digits or letters") }
        return Version(epoch: epoch, version: Array(rest), release: Array(release), description: string)
    }

    static func compareEVR(_ a: Version, _ b: Version) -> Int {
        if a.epoch != b.epoch { return a.epoch < b.epoch ? -1 : 1 }
        let v = compareSegments(a.version, b.version)
        return v != 0 ? v : compareSegments(a.release, b.release)
    }

    /// rpm's segment comparison of one version or release string.
    static func compareSegments(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a == b { return 0 }
        let tilde = UInt8(ascii: "~"), caret = UInt8(ascii: "^")
        func separator(_ c: UInt8) -> Bool { !isAlnum(c) && c != tilde && c != caret }
        var i = 0, j = 0
        while i < a.count || j < b.count {
            while i < a.count && separator(a[i]) { i += 1 }
            while j < b.count && separator(b[j]) { j += 1 }
            let ca: UInt8? = i < a.count ? a[i] : nil, cb: UInt8? = j < b.count ? b[j] : nil
            if ca == tilde || cb == tilde {
                if ca != tilde { return 1 }
                if cb != tilde { return -1 }
                i += 1; j += 1; continue
            }
            if ca == caret || cb == caret {
                if ca == nil { return -1 }
                if cb == nil { return 1 }
                if ca != caret { return 1 }
                if cb != caret { return -1 }
                i += 1; j += 1; continue
            }
            guard let ca, let cb else { break }
            _ = cb
            let numeric = isDigit(ca)
            let si = i, sj = j
            while i < a.count && (numeric ? isDigit(a[i]) : isAlpha(a[i])) { i += 1 }
            while j < b.count && (numeric ? isDigit(b[j]) : isAlpha(b[j])) { j += 1 }
            if j == sj { return numeric ? 1 : -1 }  // segments of different kinds: numbers win
            let d = numeric ? compareDigits(a[si..<i], b[sj..<j]) : compareBytes(a[si..<i], b[sj..<j])
            if d != 0 { return d }
        }
        let aDone = i >= a.count, bDone = j >= b.count
        if aDone && bDone { return 0 }
        return aDone ? -1 : 1
    }
}
