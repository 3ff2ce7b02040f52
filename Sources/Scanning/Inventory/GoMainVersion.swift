import Foundation

/// A Go binary built from a checkout (`go build`, not `go install m@v1.2.3`) records its main
/// module's version as `(devel)`. Syft (v1.18, `parse_go_binary.go`) then guesses it, in this
/// order, and so does Berth, so that the two inventories agree and the main module can be
/// matched against advisories at all:
/// 1. the `-ldflags` build setting: `-X main.version=1.2.3` (or `<module>/...Version=`,
///    `...Tag=`): `v1.2.3`;
/// 2. the first version-like string in the binary between NUL bytes (`\x00` or an invalid UTF-8
///    byte, then `1.2.3`, `v1.2.3-rc1`, `1.1.5+ds1`, then `\x00`): `GoVersionSniffer`, fed as the
///    binary streams past; a guess, as Syft says (it can pick up another string);
/// 3. the VCS build settings: `v0.0.0-<vcs.time>-<vcs.revision, 12>` (a pseudo-version).
enum GoMainVersion {
    static let devel = "(devel)"

    static func guess(ldflags: String?, mainModule: String, sniffed: String?, settings: [String: String]) -> String? {
        if let ldflags, let v = fromLDFlags(ldflags, mainModule: mainModule) { return v }
        if let sniffed { return sniffed.hasPrefix("v") ? sniffed : "v" + sniffed }
        if let revision = settings["vcs.revision"], let time = settings["vcs.time"] {
            return pseudoVersion(revision: revision, time: time)
        }
        return nil
    }

    /// The ldflags read (they come from the binary: bounded, so the search below stays cheap).
    static let maxLDFlags = 4096

    /// Syft's two ldflags patterns (`(main|<module>\/[^\s]*)` then
    /// `\.[a-zA-Z0-9]*([rR]elease)?([gG]it)?([bB]uild)?[vV]er(sion)?=(\S+/)*(?P<version>v?\d+.\d+.\d+[-\w]*)`,
    /// else the same with `([tT]ag)=`), matched by hand with the preferences of Go's regexp
    /// (leftmost start; `main` before the module; the longest `[^\s]*`; the version after the
    /// last `/` first), in time linear to quadratic in the bounded ldflags, never exponential
    /// as a backtracking engine would be on hostile flags. The module path is literal.
    static func fromLDFlags(_ ldflags: String, mainModule: String) -> String? {
        let t = Array(ldflags.utf8.prefix(maxLDFlags))
        let module = Array(mainModule.utf8) + [UInt8(ascii: "/")]
        for suffixes in [["ver", "Ver", "version", "Version"], ["tag", "Tag"]] {
            let keys = suffixes.map { Array($0.utf8) }
            // Whether a `.` at j starts `.<alnum>*<key>=` followed by a version, memoised by j.
            var memo: [Int: String?] = [:]
            func after(dot j: Int) -> String? {
                if let known = memo[j] { return known }
                var result: String?
                if j < t.count, t[j] == UInt8(ascii: ".") {
                    var e = j + 1
                    while e < t.count, isAlnum(t[e]) { e += 1 }
                    let run = t[(j + 1)..<e]
                    if e < t.count, t[e] == UInt8(ascii: "="), keys.contains(where: { run.count >= $0.count && run.suffix($0.count).elementsEqual($0) }) {
                        result = versionAfterEquals(t, e)
                    }
                }
                memo[j] = result
                return result
            }
            for i in t.indices {
                if t[i...].starts(with: "main".utf8), let v = after(dot: i + 4) { return v }
                if t[i...].starts(with: module) {
                    // `[^\s]*` as long as it goes, then shorter: the last `.` that works.
                    var w = i + module.count
                    while w < t.count, !isSpace(t[w]) { w += 1 }
                    var j = w - 1
                    while j >= i + module.count {
                        if t[j] == UInt8(ascii: "."), let v = after(dot: j) { return v }
                        j -= 1
                    }
                }
            }
        }
        return nil
    }

    /// `(\S+/)*` then the version, after the `=` at `e`: after the last `/` of the word first,
    /// then each earlier one, then right after the `=`.
    static func versionAfterEquals(_ t: [UInt8], _ e: Int) -> String? {
        var w = e + 1
        while w < t.count, !isSpace(t[w]) { w += 1 }
        // A "/" ends a group only with at least one byte of the group before it.
        var starts = (min(e + 2, w)..<w).filter { t[$0] == UInt8(ascii: "/") }.map { $0 + 1 }.reversed() as [Int]
        starts.append(e + 1)
        for q in starts {
            if let end = versionEnd(t, q) {
                let v = String(decoding: t[q..<end], as: UTF8.self)
                return v.hasPrefix("v") ? v : "v" + v
            }
        }
        return nil
    }

    /// The end of `v?\d+.\d+.\d+[-\w]*` at `q` (`.` any character but a newline, an invalid
    /// UTF-8 byte being one; Go's `\d` and `\w` are ASCII), with a backtracking regexp's
    /// choices: each run of digits as long as it can be. Runs longer than 32 digits are tried at
    /// 32 at most (no version has such a part; it keeps hostile flags cheap).
    static func versionEnd(_ t: [UInt8], _ q: Int) -> Int? {
        let s = q < t.count && t[q] == UInt8(ascii: "v") ? q + 1 : q
        func digits(_ p: Int) -> Int { var n = 0; while p + n < t.count, n < 32, isDigit(t[p + n]) { n += 1 }; return n }
        /// The width of the character at p that `.` matches; 0 for none (the end, a newline).
        func any(_ p: Int) -> Int {
            guard p < t.count, t[p] != 0x0A else { return 0 }
            return t.withUnsafeBufferPointer { GoVersionSniffer.sequenceWidth($0, at: p) }
        }
        let na = digits(s)
        guard na > 0 else { return nil }
        for a in stride(from: na, through: 1, by: -1) {
            let wa = any(s + a)
            guard wa > 0 else { continue }
            let sb = s + a + wa
            for b in stride(from: digits(sb), through: 1, by: -1) {
                let wb = any(sb + b)
                guard wb > 0 else { continue }
                let sc = sb + b + wb
                guard digits(sc) > 0 else { continue }
                var end = sc
                while end < t.count, isAlnum(t[end]) || t[end] == UInt8(ascii: "_") || t[end] == UInt8(ascii: "-") { end += 1 }
                return end
            }
        }
        return nil
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
    /// Go's `\s`: `[\t\n\f\r ]` (no vertical tab).
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0C || c == 0x0D }

    /// `golang.org/x/mod/module.PseudoVersion` with no earlier tag: `v0.0.0-YYYYMMDDHHMMSS-rev12`
    /// (a time that does not parse is the zero time, as in Syft).
    static func pseudoVersion(revision: String, time: String) -> String {
        let formatter = ISO8601DateFormatter()
        var stamp = "00010101000000"
        if let date = formatter.date(from: time) ?? { formatter.formatOptions.insert(.withFractionalSeconds); return formatter.date(from: time) }() {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            stamp = String(format: "%04d%02d%02d%02d%02d%02d", c.year ?? 1, c.month ?? 1, c.day ?? 1, c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
        }
        return "v0.0.0-\(stamp)-\(String(revision.prefix(12)))"
    }

    /// A build setting's value as `debug.BuildInfo` writes it: quoted (a Go string literal) when
    /// it holds spaces, quotes or control characters.
    static func unquote(_ value: String) -> String {
        guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else { return value }
        var out = "", escaped = false
        for c in value.dropFirst().dropLast() {
            if escaped {
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                default: out.append(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}

/// Finds, as a binary streams past, the first match of Syft's
/// `(\x00|\x{FFFD})(.L)?(?P<version>v?(\d+\.\d+\.\d+[-\w]*[+\w]*))\x00` over the binary read as a
/// Go string: its runes decoded from the start, an invalid UTF-8 byte being U+FFFD. A match
/// longer than `maxMatch` bytes is not seen. Holds at most `maxMatch` bytes between chunks.
struct GoVersionSniffer {
    static let maxMatch = 256
    /// Bytes kept past the last position examined: the longest match that may start there.
    static let lookahead = maxMatch + 8
    /// Bytes gathered before a pass over them, so each byte is copied about once.
    static let batch = 64 << 10
    /// `batch` but in tests, which make the passes small to reach their boundaries.
    let batchSize: Int
    init(batchSize: Int = GoVersionSniffer.batch) { self.batchSize = max(1, batchSize) }
    private(set) var found: String?
    /// Up to 3 bytes already examined (a continuation byte's lead), then those not yet examined.
    private var buffer: [UInt8] = []
    private var examined = 0

    var isDone: Bool { found != nil }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard found == nil else { return }
        buffer.append(contentsOf: bytes)
        if buffer.count - examined >= batchSize + Self.lookahead { examine(final: false) }
    }

    /// The end of the binary: what is pending is examined with nothing after it.
    mutating func finish() {
        guard found == nil, buffer.count > examined else { return }
        examine(final: true)
    }

    private mutating func examine(final: Bool) {
        let end = final ? buffer.count : buffer.count - Self.lookahead
        let from = examined
        var hit: String?
        buffer.withUnsafeBufferPointer { b in
            // A match starts at most 8 bytes before its version's first byte (a digit or "v"):
            // only those bytes are looked at closely, the smallest start winning.
            var best: (start: Int, version: String)?
            var p = from + 1
            let last = min(b.count, end + 8)
            while p < last {
                if let best, p > best.start + 8 { break }
                let c = b[p]
                if c &- 0x30 < 10 || c == UInt8(ascii: "v") {
                    // Where a match whose version begins at p may start, smallest first: before
                    // an "L" (the (.L) form: a prefix, then a rune of 1-4 bytes), at a U+FFFD
                    // 3 bytes before, or right before.
                    func tried(_ s: Int) -> Bool {
                        guard s >= from, s < end, s < (best?.start ?? Int.max), let version = Self.match(b, at: s) else { return false }
                        best = (s, version)
                        return true
                    }
                    var done = false
                    if p >= 3, b[p - 1] == UInt8(ascii: "L") {
                        var s = max(0, p - 8)
                        while s <= p - 3, !done { done = tried(s); s += 1 }
                    } else if p >= 3, b[p - 3] == 0xEF {
                        done = tried(p - 3)
                    }
                    if !done, b[p - 1] == 0 || b[p - 1] >= 0x80 { _ = tried(p - 1) }
                }
                p += 1
            }
            hit = best?.version
        }
        if let hit {
            found = hit
            buffer = []
            return
        }
        let drop = max(0, end - 3)
        buffer.removeFirst(drop)
        examined = end - drop
    }

    /// The version matched with its prefix rune at byte `s`, when `s` starts such a rune.
    static func match(_ b: UnsafeBufferPointer<UInt8>, at s: Int) -> String? {
        let x = b[s]
        let width: Int
        if x == 0 {
            width = 1
        } else if x < 0x80 {
            return nil
        } else if x < 0xC0 {
            // A continuation byte is U+FFFD unless a valid sequence begun up to 3 bytes before
            // covers it (lead bytes always begin a rune, so that sequence's start is a boundary).
            for k in 1...3 where s - k >= 0 {
                let y = b[s - k]
                if y < 0x80 { break }
                if y >= 0xC0 {
                    if sequenceWidth(b, at: s - k) > k { return nil }
                    break
                }
            }
            width = 1
        } else {
            let w = sequenceWidth(b, at: s)
            if w == 1 {
                width = 1 // an invalid sequence: U+FFFD of one byte
            } else if w == 3, b[s] == 0xEF, b[s + 1] == 0xBF, b[s + 2] == 0xBD {
                width = 3 // U+FFFD itself
            } else {
                return nil
            }
        }
        let q = s + width
        // (.L)? first: any rune but a newline, then "L".
        if q < b.count, b[q] != 0x0A {
            let w = max(1, sequenceWidth(b, at: q))
            if q + w < b.count, b[q + w] == UInt8(ascii: "L"), let v = version(b, at: q + w + 1) { return v }
        }
        if let v = version(b, at: q) { return v }
        return nil
    }

    /// `v?\d+\.\d+\.\d+[-\w]*[+\w]*` then a NUL byte, at `r`.
    static func version(_ b: UnsafeBufferPointer<UInt8>, at r: Int) -> String? {
        var p = r
        let limit = min(b.count, r + maxMatch)
        func digits() -> Bool {
            let from = p
            while p < limit, isDigit(b[p]) { p += 1 }
            return p > from
        }
        if p < limit, b[p] == UInt8(ascii: "v") { p += 1 }
        guard digits(), p < limit, b[p] == UInt8(ascii: "."), { p += 1; return digits() }(),
              p < limit, b[p] == UInt8(ascii: "."), { p += 1; return digits() }() else { return nil }
        while p < limit, isWord(b[p]) || b[p] == UInt8(ascii: "-") { p += 1 }
        while p < limit, isWord(b[p]) || b[p] == UInt8(ascii: "+") { p += 1 }
        guard p < limit, b[p] == 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(rebasing: b[r..<p]), as: UTF8.self)
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isWord(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7A) || c == 0x5F }

    /// The width of the valid UTF-8 sequence at `i` (Go's `utf8.DecodeRune`), 1 when invalid
    /// or cut short by the buffer's end.
    static func sequenceWidth(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        let x = b[i]
        if x < 0x80 { return 1 }
        let n: Int, lo: UInt8, hi: UInt8
        switch x {
        case 0xC2...0xDF: n = 2; lo = 0x80; hi = 0xBF
        case 0xE0: n = 3; lo = 0xA0; hi = 0xBF
        case 0xE1...0xEC, 0xEE...0xEF: n = 3; lo = 0x80; hi = 0xBF
        case 0xED: n = 3; lo = 0x80; hi = 0x9F
        case 0xF0: n = 4; lo = 0x90; hi = 0xBF
        case 0xF1...0xF3: n = 4; lo = 0x80; hi = 0xBF
        case 0xF4: n = 4; lo = 0x80; hi = 0x8F
        default: return 1
        }
        guard i + n <= b.count, b[i + 1] >= lo, b[i + 1] <= hi else { return 1 }
        for k in 2..<n where b[i + k] < 0x80 || b[i + k] > 0xBF { return 1 }
        return n
    }
}
