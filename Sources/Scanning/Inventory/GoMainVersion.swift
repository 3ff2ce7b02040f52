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

    /// Syft's two ldflags patterns, anchored on `main` or a package of the main module.
    static func fromLDFlags(_ ldflags: String, mainModule: String) -> String? {
        let prefix = "(main|" + mainModule.map { $0 == "/" ? "\\/" : String($0) }.joined() + "\\/[^\\s]*)"
        let patterns = [#"(?m)\.[a-zA-Z0-9]*([rR]elease)?([gG]it)?([bB]uild)?[vV]er(sion)?=(\S+/)*(?<version>v?\d+.\d+.\d+[-\w]*)"#,
                        #"(?m)\.[a-zA-Z0-9]*([tT]ag)=(\S+/)*(?<version>v?\d+.\d+.\d+[-\w]*)"#]
        for pattern in patterns {
            // A module path with regular-expression syntax Syft would read differently: no guess.
            guard let re = try? NSRegularExpression(pattern: prefix + pattern) else { return nil }
            let range = NSRange(ldflags.startIndex..., in: ldflags)
            guard let m = re.firstMatch(in: ldflags, range: range), let r = Range(m.range(withName: "version"), in: ldflags) else { continue }
            let v = String(ldflags[r])
            return v.hasPrefix("v") ? v : "v" + v
        }
        return nil
    }

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
    private(set) var found: String?
    /// Bytes not yet examined (the last `maxMatch` of the stream, whose matches may need what
    /// follows), with the three bytes before them (a continuation byte's lead).
    private var pending: [UInt8] = []
    private var before: [UInt8] = []

    var isDone: Bool { found != nil }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard found == nil else { return }
        pending.append(contentsOf: bytes)
        if pending.count > Self.maxMatch { examine(final: false) }
    }

    /// The end of the binary: what is pending is examined with nothing after it.
    mutating func finish() {
        guard found == nil, !pending.isEmpty else { return }
        examine(final: true)
    }

    private mutating func examine(final: Bool) {
        let buffer = before + pending
        let start = before.count
        let end = final ? buffer.count : buffer.count - Self.maxMatch
        buffer.withUnsafeBufferPointer { b in
            var s = start
            while s < end {
                if let (version, _) = Self.match(b, at: s) { found = version; return }
                s += 1
            }
        }
        guard found == nil else { pending = []; return }
        let consumed = end - start
        let all = buffer
        before = Array(all[max(0, start + consumed - 3)..<(start + consumed)])
        pending = Array(pending[consumed...])
    }

    /// The version matched with its prefix rune at byte `s`, when `s` starts such a rune.
    static func match(_ b: UnsafeBufferPointer<UInt8>, at s: Int) -> (String, Int)? {
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
            if q + w < b.count, b[q + w] == UInt8(ascii: "L"), let v = version(b, at: q + w + 1) { return (v, s) }
        }
        if let v = version(b, at: q) { return (v, s) }
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
