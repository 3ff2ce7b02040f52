import Foundation

/// Lower-case hexadecimal text of bytes (digests, secret hashes, HMACs).
///
/// Written out by hand rather than with `String(format:)`: that goes through CoreFoundation's
/// formatter once per byte, which is slow on hot paths (token and password checks) and pulls
/// CoreFoundation code into the server's resident set.
public enum Hex {
    private static let table = Array("0123456789abcdef".utf8)

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(table[Int(b >> 4)])
            out.append(table[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// RFC 3339 timestamps (`2026-01-02T03:04:05Z`), as tokens, signatures and the management API
/// write and read them.
///
/// Plain arithmetic on the proleptic Gregorian calendar, with no `Calendar` or `TimeZone`:
/// `ISO8601DateFormatter` is CoreFoundation over ICU, and its first use loads ICU's calendar,
/// number-format and time-zone name data (about 3 MiB of the server's resident memory) for a
/// fixed format that needs none of it. `Date.ISO8601FormatStyle` avoids ICU but parses leniently
/// (it accepts trailing text and rolls `02-30` over into March).
public enum RFC3339 {
    /// Whole seconds (fractions are cut), in UTC with `Z`. Years outside 0000...9999 are clamped.
    public static func format(_ date: Date) -> String {
        let minSeconds = -62_167_219_200.0  // 0000-01-01T00:00:00Z
        let maxSeconds = 253_402_300_799.0  // 9999-12-31T23:59:59Z
        let seconds = Int64(min(max(date.timeIntervalSince1970.rounded(.down), minSeconds), maxSeconds))
        let days = GregorianDays.floorDiv(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = GregorianDays.civil(fromDays: days)
        var out = [UInt8]()
        out.reserveCapacity(20)
        func put(_ value: Int64, _ width: Int) {
            var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width)
            var v = value
            for i in stride(from: width - 1, through: 0, by: -1) {
                digits[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
            out += digits
        }
        put(year, 4); out.append(UInt8(ascii: "-")); put(Int64(month), 2); out.append(UInt8(ascii: "-")); put(Int64(day), 2)
        out.append(UInt8(ascii: "T"))
        put(secondOfDay / 3600, 2); out.append(UInt8(ascii: ":"))
        put(secondOfDay / 60 % 60, 2); out.append(UInt8(ascii: ":"))
        put(secondOfDay % 60, 2); out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    /// `date-time` of RFC 3339 section 5.6: `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z` or
    /// `+HH:MM`/`-HH:MM` (`t` and `z` may be lower case). Every field is range-checked, a leap
    /// second (`:60`) counts as the second before it. Anything else is nil.
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8.prefix(65))
        guard b.count >= 20, b.count <= 64 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int64? {
            var v: Int64 = 0
            for i in from..<from + count {
                guard b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int64(b[i] - UInt8(ascii: "0"))
            }
            return v
        }
        guard let year = number(0, 4), b[4] == UInt8(ascii: "-"), let month = number(5, 2), b[7] == UInt8(ascii: "-"),
              let day = number(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
              let hour = number(11, 2), b[13] == UInt8(ascii: ":"), let minute = number(14, 2),
              b[16] == UInt8(ascii: ":"), let second = number(17, 2) else { return nil }
        guard (1...12).contains(month), day >= 1, day <= GregorianDays.daysIn(month: Int(month), year: year),
              hour <= 23, minute <= 59, second <= 60 else { return nil }
        var i = 19
        var fraction = 0.0
        if b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let first = i
            while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
                fraction += Double(b[i] - UInt8(ascii: "0")) * scale
                scale /= 10
                i += 1
            }
            guard i > first else { return nil }
        }
        var offset: Int64 = 0
        guard i < b.count else { return nil }
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            guard i + 6 == b.count, let oh = number(i + 1, 2), b[i + 3] == UInt8(ascii: ":"),
                  let om = number(i + 4, 2), oh <= 23, om <= 59 else { return nil }
            offset = (oh * 60 + om) * 60 * (b[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let day0 = GregorianDays.days(year: year, month: Int(month), day: Int(day))
        let seconds = day0 * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }
}
