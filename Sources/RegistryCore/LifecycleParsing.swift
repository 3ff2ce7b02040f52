import Foundation
import OCIModel

// Pure parsers for the lifecycle features (purge, retention, schedules, quotas).
// Nothing here touches storage or the clock; every function is deterministic.

/// What every parser in this file throws: a message for a human, naming the bad input.
public struct LifecycleParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }

    public init(_ message: String) { self.message = message }

    /// Input quoted for an error message: see `escaped`.
    static func quote(_ text: some StringProtocol) -> String { "\"\(escaped(text))\"" }

    /// Text for an error message: cut short so a hostile megabyte does not end up in a log line,
    /// and with control characters escaped as `\u{..}` so input cannot forge extra log lines.
    static func escaped(_ text: some StringProtocol, limit: Int = 80) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit { out += "…"; break }
            count += 1
            let v = scalar.value
            if v < 0x20 || (0x7f...0x9f).contains(v) || v == 0x2028 || v == 0x2029 {
                out += "\\u{\(String(v, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

private extension UInt8 {
    var isASCIIDigit: Bool { self >= 0x30 && self <= 0x39 }
    var asciiLowercased: UInt8 { (self >= 0x41 && self <= 0x5a) ? self + 0x20 : self }
}

// MARK: - Durations

/// Durations as the purge CLI takes them: "30d", "1d3h", "2h30m", "90m", "45s", "1d3h15m10s", "0".
/// Units d,h,m,s, each at most once, in that order, non-negative integers; total must fit (cap at 3650 days).
/// Rejects "", "d", "3", "1h1d" (wrong order), "-1d", "1.5d", "1x", overflow like "99999999999999999999d", whitespace.
public enum LifecycleDuration {
    /// The longest duration accepted: 3650 days.
    public static let maximum: TimeInterval = 3650 * 86_400

    private static let units: [(letter: UInt8, seconds: Int64)] = [
        (UInt8(ascii: "d"), 86_400), (UInt8(ascii: "h"), 3_600), (UInt8(ascii: "m"), 60), (UInt8(ascii: "s"), 1),
    ]

    public static func parse(_ text: String) throws(LifecycleParseError) -> TimeInterval {
        func fail(_ why: String) -> LifecycleParseError {
            LifecycleParseError("invalid duration \(LifecycleParseError.quote(text)): \(why) (expected e.g. 30d, 1d3h, 2h30m, 45s or 0)")
        }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw fail("empty") }
        guard bytes.count <= 64 else { throw fail("too long") }
        if bytes == [UInt8(ascii: "0")] { return 0 }

        let cap = Int64(maximum)
        var total: Int64 = 0
        var nextUnit = 0      // index into `units` of the smallest unit still allowed
        var i = 0
        while i < bytes.count {
            // a run of ASCII digits ...
            var value: Int64 = 0
            let start = i
            while i < bytes.count, bytes[i].isASCIIDigit {
                value = value * 10 + Int64(bytes[i] - 0x30)
                // Every unit is at least a second, so a number past the cap is already too big;
                // checking per digit keeps `value` far away from Int64 overflow.
                guard value <= cap else { throw fail("longer than 3650 days") }
                i += 1
            }
            guard i > start else { throw fail("expected a number at offset \(i)") }
            // ... then exactly one unit letter, later in d,h,m,s than any before it
            guard i < bytes.count else { throw fail("number without a unit (d, h, m or s)") }
            let letter = bytes[i]
            guard let u = units.firstIndex(where: { $0.letter == letter }) else {
                throw fail("unknown unit at offset \(i) (use d, h, m or s)")
            }
            guard u >= nextUnit else { throw fail("units must appear at most once, in the order d, h, m, s") }
            nextUnit = u + 1
            i += 1
            let (product, overflow) = value.multipliedReportingOverflow(by: units[u].seconds)
            guard !overflow, product <= cap - total else { throw fail("longer than 3650 days") }
            total += product
        }
        return TimeInterval(total)
    }

    /// Canonical text for a number of seconds: largest units first, zero parts left out,
    /// e.g. 93600 -> "1d2h", 0 -> "0". Fractions of a second are dropped; negative, NaN and
    /// sub-second values give "0". For every whole number of seconds `parse` accepts,
    /// `parse(format(x)) == x`.
    public static func format(_ seconds: TimeInterval) -> String {
        guard seconds.isFinite, seconds >= 1 else { return "0" }
        var rest: Int64 = seconds >= 9.0e18 ? Int64.max : Int64(seconds.rounded(.down))
        var out = ""
        for unit in units {
            let n = rest / unit.seconds
            rest %= unit.seconds
            if n > 0 { out += "\(n)\(Character(UnicodeScalar(unit.letter)))" }
        }
        return out
    }
}

// MARK: - Purge filters

/// A purge filter "<repository regex>:<tag regex>". Split at the FIRST ':' (repository names never contain ':').
/// The repository regex must match the WHOLE repository name; the tag regex is searched anywhere in the tag
/// (so "^build-.*" anchors explicitly, ".*" matches all). Each regex at most 256 characters, non-empty repository part;
/// an empty tag part means ".*". Invalid regex -> LifecycleParseError naming the filter.
///
/// Because the split is at the first ':', the repository part cannot itself use a ':' (for example a
/// non-capturing group `(?:a|b)`); write `(a|b)` instead. The tag part may contain ':'.
///
/// Matching uses `LinearRegex` (time linear in the name or tag, whatever the pattern, so `^(a+)+b$` cannot
/// stall a purge); its RE2-like syntax refuses backreferences and lookaround when the filter is parsed.
public struct PurgeFilter: Sendable, Equatable, CustomStringConvertible {
    /// Longest accepted pattern, per part, in Unicode scalars.
    public static let maxPatternLength = 256

    public let repositoryPattern: String
    public let tagPattern: String
    /// The filter as given, e.g. "team/.*:^v1" or "app:" (whose `tagPattern` is ".*").
    public let description: String
    private let repositoryRegex: LinearRegex
    private let tagRegex: LinearRegex

    public init(parsing text: String) throws(LifecycleParseError) {
        let named = LifecycleParseError.quote(text)
        guard text.unicodeScalars.count <= 2 * Self.maxPatternLength + 1 else {
            throw LifecycleParseError("invalid purge filter \(named): longer than \(2 * Self.maxPatternLength + 1) characters")
        }
        guard let colon = text.firstIndex(of: ":") else {
            throw LifecycleParseError("invalid purge filter \(named): expected <repository regex>:<tag regex>")
        }
        let repository = String(text[..<colon])
        let tagPart = String(text[text.index(after: colon)...])
        guard !repository.isEmpty else {
            throw LifecycleParseError("invalid purge filter \(named): the repository regex is empty")
        }
        let tag = tagPart.isEmpty ? ".*" : tagPart
        for (what, pattern) in [("repository", repository), ("tag", tag)]
        where pattern.unicodeScalars.count > Self.maxPatternLength {
            throw LifecycleParseError("invalid purge filter \(named): the \(what) regex is longer than \(Self.maxPatternLength) characters")
        }
        func compile(_ pattern: String, _ what: String) throws(LifecycleParseError) -> LinearRegex {
            do {
                return try LinearRegex(pattern)
            } catch {
                throw LifecycleParseError("invalid purge filter \(named): bad \(what) regex: \(LifecycleParseError.escaped(error.description, limit: 160))")
            }
        }
        repositoryRegex = try compile(repository, "repository")
        tagRegex = try compile(tag, "tag")
        repositoryPattern = repository
        tagPattern = tag
        description = text
    }

    /// Whether the repository regex matches all of `name`.
    public func matchesRepository(_ name: String) -> Bool {
        repositoryRegex.matchesWhole(name)
    }

    /// Whether the tag regex matches somewhere in `tag`.
    public func matchesTag(_ tag: String) -> Bool {
        tagRegex.matchesSomewhere(tag)
    }

    public static func == (l: PurgeFilter, r: PurgeFilter) -> Bool {
        l.description == r.description
    }
}

// MARK: - Cron schedules

/// Five-field cron expressions, evaluated in UTC: minute hour day-of-month month day-of-week.
/// Fields support *, numbers, ranges a-b, steps */n and a-b/n, lists a,b,c; day-of-week 0-7 (0 and 7 = Sunday);
/// month 1-12; also the names jan..dec and sun..sat (case-insensitive) and the macros @hourly @daily @midnight @weekly @monthly @yearly @annually.
/// Standard cron rule: when both day-of-month and day-of-week are restricted (not *), a day matches if EITHER matches.
/// Rejects out-of-range values, step 0, reversed ranges, wrong field counts, garbage, over-long input (> 256 chars).
///
/// Details: fields are separated by spaces or tabs (leading and trailing ones are ignored). A field counts as
/// unrestricted only when it is exactly `*`; `*/2` restricts. A single value with a step (`5/10`) is rejected —
/// write `5-59/10`. A step may be at most the width of its field. Names work in ranges and lists
/// (`mon-fri`, `jan,jul`) but a range may not wrap (`sat-sun` is reversed; write `sat,sun`). Dates are
/// proleptic Gregorian in UTC, so there is no daylight-saving time.
public struct CronSchedule: Sendable, Equatable, CustomStringConvertible {
    /// Longest accepted expression, in UTF-8 bytes.
    public static let maxLength = 256
    /// How far `next(after:)` looks ahead: 5 years of days (one of them a leap day).
    static let horizonDays: Int64 = 5 * 365 + 1

    private let text: String
    // bit n set = value n allowed
    let minutes: UInt64        // 0...59
    let hours: UInt64          // 0...23
    let daysOfMonth: UInt64    // 1...31
    let months: UInt64         // 1...12
    let daysOfWeek: UInt64     // 0...6, Sunday = 0
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    public var description: String { text }

    private static let macros: [String: String] = [
        "@hourly": "0 * * * *",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@weekly": "0 0 * * 0",
        "@monthly": "0 0 1 * *",
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
    ]

    private static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    private struct Field {
        let name: String
        let min: Int
        let max: Int
        /// `names[i]` stands for the value `nameBase + i`.
        let names: [String]
        let nameBase: Int
    }

    private static let fields: [Field] = [
        Field(name: "minute", min: 0, max: 59, names: [], nameBase: 0),
        Field(name: "hour", min: 0, max: 23, names: [], nameBase: 0),
        Field(name: "day-of-month", min: 1, max: 31, names: [], nameBase: 0),
        Field(name: "month", min: 1, max: 12, names: monthNames, nameBase: 1),
        Field(name: "day-of-week", min: 0, max: 7, names: dayNames, nameBase: 0),
    ]

    public init(parsing text: String) throws(LifecycleParseError) {
        let named = LifecycleParseError.quote(text)
        func fail(_ why: String) -> LifecycleParseError {
            LifecycleParseError("invalid cron expression \(named): \(why)")
        }
        guard text.utf8.count <= Self.maxLength else { throw fail("longer than \(Self.maxLength) characters") }
        // Work on bytes: everything valid is ASCII, so any other byte is simply garbage.
        var bytes = Array(text.utf8)
        let isBlank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        while let f = bytes.first, isBlank(f) { bytes.removeFirst() }
        while let l = bytes.last, isBlank(l) { bytes.removeLast() }
        guard !bytes.isEmpty else { throw fail("empty") }

        if bytes.first == UInt8(ascii: "@") {
            let macro = String(decoding: bytes.map(\.asciiLowercased), as: UTF8.self)
            guard let expansion = Self.macros[macro] else {
                throw fail("unknown macro (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually)")
            }
            bytes = Array(expansion.utf8)
        }

        let parts = bytes.split(whereSeparator: isBlank)
        guard parts.count == 5 else { throw fail("expected 5 fields (minute hour day-of-month month day-of-week), found \(parts.count)") }

        var sets: [UInt64] = []
        for (field, part) in zip(Self.fields, parts) {
            do {
                sets.append(try Self.parseField(Array(part), field))
            } catch {
                throw fail("\(field.name) field \(LifecycleParseError.quote(String(decoding: part, as: UTF8.self))): \(error.message)")
            }
        }
        // Sunday may be written 0 or 7; fold bit 7 onto bit 0.
        var dow = sets[4]
        if dow & (1 << 7) != 0 { dow = (dow | 1) & ~(1 << 7) }

        self.text = text
        minutes = sets[0]
        hours = sets[1]
        daysOfMonth = sets[2]
        months = sets[3]
        daysOfWeek = dow
        dayOfMonthRestricted = !parts[2].elementsEqual("*".utf8)
        dayOfWeekRestricted = !parts[4].elementsEqual("*".utf8)
    }

    /// One field: a comma-separated list of `*`, `n`, `a-b`, `*/s`, `a-b/s`.
    private static func parseField(_ bytes: [UInt8], _ field: Field) throws(LifecycleParseError) -> UInt64 {
        var set: UInt64 = 0
        for item in bytes.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw LifecycleParseError("empty list element") }
            let pieces = item.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw LifecycleParseError("more than one '/'") }
            let base = pieces[0]
            var step = 1
            if pieces.count == 2 {
                let stepText = pieces[1]
                guard !stepText.isEmpty, stepText.allSatisfy(\.isASCIIDigit) else {
                    throw LifecycleParseError("the step must be a number")
                }
                let width = field.max - field.min + 1
                guard stepText.count <= 3, let s = Int(String(decoding: stepText, as: UTF8.self)), s >= 1, s <= width else {
                    throw LifecycleParseError("the step must be between 1 and \(width)")
                }
                step = s
            }
            let low: Int, high: Int
            if base.elementsEqual("*".utf8) {
                low = field.min
                // for day-of-week, * is 0-6: 7 would only repeat Sunday
                high = field.names == dayNames ? 6 : field.max
            } else if let dash = base.firstIndex(of: UInt8(ascii: "-")) {
                low = try value(base[base.startIndex..<dash], field)
                high = try value(base[(dash + 1)..<base.endIndex], field)
                guard low <= high else { throw LifecycleParseError("reversed range \(low)-\(high)") }
            } else {
                guard pieces.count == 1 else {
                    throw LifecycleParseError("a step needs * or a range before it (e.g. */\(step) or a-b/\(step))")
                }
                low = try value(base, field)
                high = low
            }
            var v = low
            while v <= high {
                set |= 1 << UInt64(v)
                v += step
            }
        }
        return set
    }

    /// A number in range, or a three-letter name where the field has names.
    private static func value(_ bytes: ArraySlice<UInt8>, _ field: Field) throws(LifecycleParseError) -> Int {
        guard !bytes.isEmpty else { throw LifecycleParseError("missing value") }
        if bytes.allSatisfy(\.isASCIIDigit) {
            guard bytes.count <= 4, let n = Int(String(decoding: bytes, as: UTF8.self)), n >= field.min, n <= field.max else {
                throw LifecycleParseError("value out of range \(field.min)-\(field.max)")
            }
            return n
        }
        let word = String(decoding: bytes.map(\.asciiLowercased), as: UTF8.self)
        if let i = field.names.firstIndex(of: word) { return field.nameBase + i }
        if field.names.isEmpty {
            throw LifecycleParseError("not a number")
        }
        throw LifecycleParseError("not a number or name (\(field.names.first!)..\(field.names.last!))")
    }

    /// Whether the schedule fires on the given calendar day.
    func matchesDay(dayOfMonth: Int, dayOfWeek: Int) -> Bool {
        let domHit = daysOfMonth & (1 << UInt64(dayOfMonth)) != 0
        let dowHit = daysOfWeek & (1 << UInt64(dayOfWeek)) != 0
        // Cron's rule: with both fields restricted either one suffices; otherwise the unrestricted one
        // matches every day, so requiring both is the same as checking the restricted one.
        return dayOfMonthRestricted && dayOfWeekRestricted ? (domHit || dowHit) : (domHit && dowHit)
    }

    /// The first matching minute strictly after `date` (seconds zeroed); nil if none within 5 years (e.g. "0 0 30 2 *").
    ///
    /// Walks day by day (skipping whole months that cannot match), and inside a matching day finds the
    /// hour and minute with bit masks, so the worst case is about 1,800 cheap iterations.
    public func next(after date: Date) -> Date? {
        let t = date.timeIntervalSince1970
        // Stay well inside years 1...9999, where the calendar arithmetic below is exact and Int64-safe.
        guard t.isFinite, t > -62_000_000_000, t < 253_000_000_000 else { return nil }
        let startMinute = Int64((t / 60).rounded(.down)) + 1
        var day = GregorianDays.floorDiv(startMinute, 1440)
        var minuteOfDay = Int(startMinute - day * 1440)
        let lastDay = day + Self.horizonDays

        while day <= lastDay {
            let (y, m, d) = GregorianDays.civil(fromDays: day)
            if months & (1 << UInt64(m)) == 0 {
                day = m == 12 ? GregorianDays.days(year: y + 1, month: 1, day: 1) : GregorianDays.days(year: y, month: m + 1, day: 1)
                minuteOfDay = 0
                continue
            }
            if matchesDay(dayOfMonth: d, dayOfWeek: GregorianDays.weekday(fromDays: day)),
               let minute = firstMinute(from: minuteOfDay) {
                return Date(timeIntervalSince1970: TimeInterval((day * 1440 + Int64(minute)) * 60))
            }
            day += 1
            minuteOfDay = 0
        }
        return nil
    }

    /// The first allowed minute of a day at or after `from` (minutes since midnight), if any.
    private func firstMinute(from: Int) -> Int? {
        var hour = from / 60
        var minuteFloor = from % 60
        while hour < 24 {
            if hours & (1 << UInt64(hour)) != 0 {
                let allowed = minutes & (UInt64.max << UInt64(minuteFloor))
                if allowed != 0 { return hour * 60 + allowed.trailingZeroBitCount }
            }
            hour += 1
            minuteFloor = 0
        }
        return nil
    }
}

// MARK: - Byte sizes

/// Byte sizes for quotas: "1000", "512KiB", "10MiB", "1GiB", "2TiB", also "KB","MB","GB","TB" (decimal) and "K","M","G","T" (binary); case-insensitive units; must be > 0 and fit in Int64.
///
/// The number is a whole number of ASCII digits; "B" is accepted as a unit meaning bytes, and one space
/// may separate number and unit ("10 MiB"). Fractions ("1.5GiB"), signs and surrounding whitespace are rejected.
public enum ByteSize {
    private static let units: [String: Int64] = [
        "": 1, "b": 1,
        "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
        "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
        "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000, "tb": 1_000_000_000_000,
    ]

    public static func parse(_ text: String) throws(LifecycleParseError) -> Int64 {
        func fail(_ why: String) -> LifecycleParseError {
            LifecycleParseError("invalid size \(LifecycleParseError.quote(text)): \(why) (expected e.g. 1000, 512KiB, 10MiB, 1GiB, 5GB)")
        }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw fail("empty") }
        guard bytes.count <= 64 else { throw fail("too long") }
        var i = 0
        var value: Int64 = 0
        while i < bytes.count, bytes[i].isASCIIDigit {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int64(bytes[i] - 0x30))
            guard !o1, !o2 else { throw fail("too large") }
            value = sum
            i += 1
        }
        guard i > 0 else { throw fail("must start with a number") }
        let spaced = i < bytes.count && bytes[i] == 0x20
        if spaced { i += 1 }
        let unitText = String(decoding: bytes[i...].map(\.asciiLowercased), as: UTF8.self)
        guard let multiplier = units[unitText], !(spaced && unitText.isEmpty) else {
            throw fail("unknown unit")
        }
        let (total, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw fail("too large") }
        guard total > 0 else { throw fail("must be greater than zero") }
        return total
    }

    /// Human-readable binary units with at most one decimal: 512 -> "512 B", 1536 -> "1.5 KiB",
    /// 1610612736 -> "1.5 GiB", 1073741824 -> "1 GiB". Negative values get a leading "-".
    public static func format(_ bytes: Int64) -> String {
        let magnitude = bytes.magnitude
        let sign = bytes < 0 ? "-" : ""
        if magnitude < 1024 { return "\(sign)\(magnitude) B" }
        let names = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var index = 0
        var unit: UInt64 = 1024
        while index < names.count - 1, magnitude >= unit << 10 { unit <<= 10; index += 1 }
        // tenths of a unit, rounded half up, in integers: magnitude * 10 / unit without overflowing
        var tenths = (magnitude / unit) * 10 + ((magnitude % unit) * 10 + unit / 2) / unit
        if tenths >= 10240, index < names.count - 1 {
            // 1023.96 KiB rounds to 1024.0: say 1 MiB instead
            index += 1
            unit <<= 10
            tenths = (magnitude / unit) * 10 + ((magnitude % unit) * 10 + unit / 2) / unit
        }
        let whole = tenths / 10, fraction = tenths % 10
        return fraction == 0 ? "\(sign)\(whole) \(names[index])" : "\(sign)\(whole).\(fraction) \(names[index])"
    }
}
