/// Python package versions as PEP 440 defines them, with its normalisation:
/// `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, case-insensitive, an optional leading `v`,
/// alternative spellings (`alpha`, `beta`, `c`, `pre`, `preview`, `rev`, `r`, `-N` for a post
/// release), optional separators (`1.0RC1` == `1.0rc1`, `1.0-1` == `1.0.post1`) and implicit
/// numbers (`1.0a` == `1.0a0`).
///
/// Order: epoch, release (trailing zeros ignored), then dev releases of a release before its
/// pre-releases before the release before its post-releases; a local version sorts after the
/// same public version, its segments compared numbers-above-strings.
public struct PEP440VersionScheme: VersionScheme {
    public init() {}
    public var name: String { "PEP 440" }

    public struct Version: Comparable, Hashable, Sendable, CustomStringConvertible {
        public let epoch: Natural
        public let release: [Natural]
        /// 0 = a, 1 = b, 2 = rc
        public let pre: (kind: Int, number: Natural)?
        public let post: Natural?
        public let dev: Natural?
        public let local: [LocalSegment]?
        public let description: String

        public enum LocalSegment: Comparable, Hashable, Sendable {
            case text(String)
            case number(Natural)
            // Strings sort below numbers.
            public static func < (a: LocalSegment, b: LocalSegment) -> Bool {
                switch (a, b) {
                case let (.text(x), .text(y)): return x < y
                case let (.number(x), .number(y)): return x < y
                case (.text, .number): return true
                case (.number, .text): return false
                }
            }
        }

        /// The release with trailing zeros removed, so 1.0 == 1.0.0.
        var trimmedRelease: ArraySlice<Natural> {
            var r = release[...]
            while let last = r.last, last.isZero, r.count > 1 { r = r.dropLast() }
            return r
        }

        /// The comparison key of the pre-release position: dev-only releases first, then
        /// pre-releases, then none.
        var preKey: (Int, Int, Natural) {
            if let pre { return (1, pre.kind, pre.number) }
            if post == nil && dev != nil { return (0, 0, .zero) }
            return (2, 0, .zero)
        }

        static func compare(_ a: Version, _ b: Version) -> Int {
            if a.epoch != b.epoch { return a.epoch < b.epoch ? -1 : 1 }
            let ra = a.trimmedRelease, rb = b.trimmedRelease
            for k in 0..<max(ra.count, rb.count) {
                let x = k < ra.count ? ra[ra.startIndex + k] : .zero
                let y = k < rb.count ? rb[rb.startIndex + k] : .zero
                if x != y { return x < y ? -1 : 1 }
            }
            let pa = a.preKey, pb = b.preKey
            if pa.0 != pb.0 { return pa.0 < pb.0 ? -1 : 1 }
            if pa.1 != pb.1 { return pa.1 < pb.1 ? -1 : 1 }
            if pa.2 != pb.2 { return pa.2 < pb.2 ? -1 : 1 }
            // No post release sorts first.
            switch (a.post, b.post) {
            case (nil, .some): return -1
            case (.some, nil): return 1
            case let (.some(x), .some(y)) where x != y: return x < y ? -1 : 1
            default: break
            }
            // No dev release sorts last.
            switch (a.dev, b.dev) {
            case (nil, .some): return 1
            case (.some, nil): return -1
            case let (.some(x), .some(y)) where x != y: return x < y ? -1 : 1
            default: break
            }
            switch (a.local, b.local) {
            case (nil, .some): return -1
            case (.some, nil): return 1
            case let (.some(x), .some(y)):
                for (p, q) in zip(x, y) where p != q { return p < q ? -1 : 1 }
                return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
            default: return 0
            }
        }

        public static func == (a: Version, b: Version) -> Bool { compare(a, b) == 0 }
        public func hash(into h: inout Hasher) { h.combine(epoch); h.combine(Array(trimmedRelease)) }
        public static func < (a: Version, b: Version) -> Bool { compare(a, b) < 0 }
    }

    public func parse(_ string: String) throws -> Version {
        let raw = string.trimmingCharacters(in: .whitespaces)
        let s = try versionBytes(raw, scheme: name).map(lower)
        func fail(_ reason: String) -> VersionParseError { VersionParseError(scheme: name, input: string, reason: reason) }
        var i = 0
        func digits() -> ArraySlice<UInt8> {
            let start = i
            while i < s.count && isDigit(s[i]) { i += 1 }
            return s[start..<i]
        }
        func isSeparator(_ c: UInt8) -> Bool { c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") }
        /// Matches one of `words` at `at` (longest first); returns its index and length.
        func word(_ words: [String], at: Int) -> (Int, Int)? {
            var best: (Int, Int)?
            for (n, w) in words.enumerated() {
                let u = Array(w.utf8)
                if at + u.count <= s.count, Array(s[at..<(at + u.count)]) == u, u.count > (best?.1 ?? 0) { best = (n, u.count) }
            }
            return best
        }
        /// An optional separator, a keyword, an optional separator and an optional number.
        func labelled(_ words: [String]) -> (Int, Natural, Bool)? {
            var k = i
            if k < s.count && isSeparator(s[k]) { k += 1 }
            guard let (n, len) = word(words, at: k) else { return nil }
            k += len
            // Do not split a longer word ("rev" must not be read as "r" + "ev").
            if k < s.count && isAlpha(s[k]) { return nil }
            var m = k
            if m < s.count && isSeparator(s[m]) { m += 1 }
            let start = m
            while m < s.count && isDigit(s[m]) { m += 1 }
            if m > start { i = m; return (n, Natural(s[start..<m]), true) }
            i = k
            return (n, .zero, false)
        }

        if i < s.count && s[i] == UInt8(ascii: "v") { i += 1 }
        var epoch = Natural.zero
        let firstRun = digits()
        if firstRun.isEmpty { throw fail("must start with a number") }
        var release: [Natural] = []
        if i < s.count && s[i] == UInt8(ascii: "!") {
            epoch = Natural(firstRun)
            i += 1
            let r = digits()
            if r.isEmpty { throw fail("epoch must be followed by a release number") }
            release.append(Natural(r))
        } else {
            release.append(Natural(firstRun))
        }
        while i + 1 < s.count && s[i] == UInt8(ascii: ".") && isDigit(s[i + 1]) {
            i += 1
            release.append(Natural(digits()))
        }
        var pre: (Int, Natural)?
        let preWords = ["a", "alpha", "b", "beta", "c", "rc", "pre", "preview"]
        let preKind = [0, 0, 1, 1, 2, 2, 2, 2]
        if let (n, number, _) = labelled(preWords) { pre = (preKind[n], number) }
        var post: Natural?
        if i + 1 < s.count && s[i] == UInt8(ascii: "-") && isDigit(s[i + 1]) {
            i += 1
            post = Natural(digits())
        } else if let (_, number, _) = labelled(["post", "rev", "r"]) {
            post = number
        }
        var dev: Natural?
        if let (_, number, _) = labelled(["dev"]) { dev = number }
        var local: [Version.LocalSegment]?
        if i < s.count && s[i] == UInt8(ascii: "+") {
            i += 1
            var segments: [Version.LocalSegment] = []
            while true {
                let start = i
                while i < s.count && isAlnum(s[i]) { i += 1 }
                if i == start { throw fail("empty local version segment") }
                let seg = s[start..<i]
                segments.append(seg.allSatisfy(isDigit) ? .number(Natural(seg)) : .text(String(decoding: seg, as: UTF8.self)))
                if i < s.count && isSeparator(s[i]) { i += 1 } else { break }
            }
            local = segments
        }
        if i != s.count { throw fail("unexpected text at offset \(i)") }
        return Version(epoch: epoch, release: release, pre: pre.map { (kind: $0.0, number: $0.1) }, post: post,
                       dev: dev, local: local, description: string)
    }
}
