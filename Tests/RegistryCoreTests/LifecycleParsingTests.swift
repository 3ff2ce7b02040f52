import Foundation
import OCIModel
import Testing
@testable import RegistryCore

private let utcCalendar: Calendar = {
    var c = Calendar(identifier: .gregorian)
    c.timeZone = TimeZone(identifier: "UTC")!
    return c
}()

/// A UTC instant built through Foundation's calendar, independent of the code under test.
private func utc(_ y: Int, _ mo: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Double = 0) -> Date {
    let whole = utcCalendar.date(from: DateComponents(year: y, month: mo, day: d, hour: h, minute: mi, second: 0))!
    return whole.addingTimeInterval(s)
}

private func cron(_ text: String) throws(LifecycleParseError) -> CronSchedule { try CronSchedule(parsing: text) }

/// Whether parsing fails with a LifecycleParseError (and nothing else).
private func rejects(_ body: () throws(LifecycleParseError) -> Void) -> Bool {
    do { try body(); return false } catch { return !error.message.isEmpty }
}

@Suite struct LifecycleParsingTests {

    // MARK: Durations

    @Test(arguments: [
        ("0", 0.0), ("0s", 0), ("0d0h0m0s", 0), ("30d", 2_592_000), ("1d3h", 97_200), ("2h30m", 9_000),
        ("90m", 5_400), ("45s", 45), ("1d3h15m10s", 98_110), ("001h", 3_600), ("3650d", 315_360_000),
        ("3649d23h59m60s", 315_360_000), ("100000m", 6_000_000), ("1d59s", 86_459),
    ])
    func durationsParse(text: String, seconds: Double) throws {
        #expect(try LifecycleDuration.parse(text) == seconds)
    }

    @Test(arguments: [
        "", "d", "3", "00", "1h1d", "1d1d", "1s1m", "-1d", "+1d", "1.5d", "1,5d", "1x", "1D", "1H", "1dh", "h1", "d1",
        "99999999999999999999d", "9223372036854775807s", "3651d", "3650d1s", "87600h1s", "315360001s",
        " 1d", "1d ", "1 d", "1d\n", "\t1d", "1d\0", "1d2h ", "\u{0661}d", "\u{FF11}d", "1d\u{200B}", "🚀", "1🚀",
        "1e3s", "0x10s", "½d", "1dd", "1d-1h",
    ])
    func durationsReject(text: String) {
        #expect(rejects { () throws(LifecycleParseError) in _ = try LifecycleDuration.parse(text) })
    }

    @Test func durationHostileLengthsAreRejectedQuicklyWithShortMessages() {
        for text in [String(repeating: "1", count: 100_000) + "d", String(repeating: "0", count: 10_000) + "1s",
                     String(repeating: "1d", count: 50_000), String(repeating: "é", count: 10_000)] {
            do {
                _ = try LifecycleDuration.parse(text)
                Issue.record("accepted \(text.prefix(20))…")
            } catch {
                #expect(error.message.count < 300)
                #expect(error.description == error.message)
            }
        }
    }

    @Test func durationErrorsNameTheInput() {
        do {
            _ = try LifecycleDuration.parse("1h1d")
            Issue.record("accepted 1h1d")
        } catch {
            #expect(error.message.contains("\"1h1d\""))
        }
    }

    @Test func errorMessagesEscapeControlCharacters() {
        for text in ["1d\nFAKE LOG LINE", "1d\r\n", "x\u{0}y", "\u{1b}[31mred", "a\u{2028}b"] {
            do {
                _ = try LifecycleDuration.parse(text)
                Issue.record("accepted \(text.debugDescription)")
            } catch {
                #expect(!error.message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x2028 }, "\(error.message.debugDescription)")
                #expect(error.message.contains("\\u{"))
            }
        }
        for text in ["app:\n(", "\n(:x", "app:[\u{7}-\u{1}]", "0 0 * * *\n"] {
            let message: String
            do {
                if text.hasPrefix("0 0") { _ = try CronSchedule(parsing: text) } else { _ = try PurgeFilter(parsing: text) }
                Issue.record("accepted \(text.debugDescription)")
                continue
            } catch {
                message = error.message
            }
            #expect(!message.unicodeScalars.contains { $0.value < 0x20 }, "\(message.debugDescription)")
        }
        #expect(LifecycleParseError.quote("a\nb") == #""a\u{a}b""#)
        #expect(LifecycleParseError.quote("ü🚀") == "\"ü🚀\"")
        #expect(LifecycleParseError.quote(String(repeating: "z", count: 81)) == "\"" + String(repeating: "z", count: 80) + "…\"")
    }

    @Test(arguments: [
        (0.0, "0"), (93_600, "1d2h"), (59, "59s"), (60, "1m"), (3_600, "1h"), (5_400, "1h30m"), (86_400, "1d"),
        (98_110, "1d3h15m10s"), (90_061, "1d1h1m1s"), (315_360_000, "3650d"), (0.9, "0"), (61.7, "1m1s"),
        (-5, "0"), (.nan, "0"), (.infinity, "0"), (-.infinity, "0"), (86_401, "1d1s"),
    ])
    func durationsFormat(seconds: Double, text: String) {
        #expect(LifecycleDuration.format(seconds) == text)
    }

    @Test func durationFormatOfHugeValuesDoesNotTrap() {
        #expect(LifecycleDuration.format(1e300).hasSuffix("s"))
        #expect(LifecycleDuration.format(Double(Int64.max)).hasPrefix("106751991167300d"))
        // beyond the cap: format still describes it, parse refuses it
        #expect(rejects { () throws(LifecycleParseError) in _ = try LifecycleDuration.parse(LifecycleDuration.format(3_651 * 86_400)) })
    }

    @Test func durationsRoundTripThroughFormat() throws {
        var rng = SystemRandomNumberGenerator()
        var values: [Int] = [0, 1, 59, 60, 61, 3_599, 3_600, 3_601, 86_399, 86_400, 86_401, 315_359_999, 315_360_000]
        for _ in 0..<2_000 { values.append(Int.random(in: 0...315_360_000, using: &rng)) }
        for v in values {
            let text = LifecycleDuration.format(TimeInterval(v))
            #expect(try LifecycleDuration.parse(text) == TimeInterval(v), "\(v) -> \(text)")
        }
        // and non-canonical text comes back canonical
        for (given, canonical) in [("90m", "1h30m"), ("48h", "2d"), ("0d0s", "0"), ("3600s", "1h"), ("1d0h30m", "1d30m")] {
            #expect(LifecycleDuration.format(try LifecycleDuration.parse(given)) == canonical)
        }
    }

    // MARK: Purge filters

    @Test func purgeFilterSplitsAtTheFirstColonAndAnchorsOnlyTheRepository() throws {
        let f = try PurgeFilter(parsing: "team/.*:^v1")
        #expect(f.repositoryPattern == "team/.*")
        #expect(f.tagPattern == "^v1")
        #expect(f.description == "team/.*:^v1")
        #expect(f.matchesRepository("team/app"))
        #expect(f.matchesRepository("team/app/sub"))
        #expect(!f.matchesRepository("other/team/app"))   // whole-name match: no implicit prefix
        #expect(!f.matchesRepository("team"))
        #expect(f.matchesTag("v1"))
        #expect(f.matchesTag("v1.2.3"))
        #expect(!f.matchesTag("xv1"))
        #expect(!f.matchesTag("V1"))

        let exact = try PurgeFilter(parsing: "app:rc")
        #expect(exact.matchesRepository("app"))
        #expect(!exact.matchesRepository("myapp"))
        #expect(!exact.matchesRepository("app2"))
        #expect(!exact.matchesRepository("team/app"))
        #expect(exact.matchesTag("v1-rc2"))                 // tag regex is searched, not anchored
        #expect(exact.matchesTag("rc"))
        #expect(!exact.matchesTag("v1"))

        let anchored = try PurgeFilter(parsing: "app:^build-.*$")
        #expect(anchored.matchesTag("build-42"))
        #expect(!anchored.matchesTag("x-build-42"))

        let colons = try PurgeFilter(parsing: "a:b:c")
        #expect(colons.repositoryPattern == "a")
        #expect(colons.tagPattern == "b:c")
        #expect(colons.matchesTag("xb:cx"))
    }

    @Test func purgeFilterEmptyTagPartMeansEverything() throws {
        let f = try PurgeFilter(parsing: "library/.*:")
        #expect(f.tagPattern == ".*")
        #expect(f.description == "library/.*:")
        for tag in ["", "latest", "v1.0", "a-b_c"] { #expect(f.matchesTag(tag)) }
        #expect(f.matchesRepository("library/ubuntu"))
        #expect(!f.matchesRepository("ubuntu"))
        #expect(try PurgeFilter(parsing: ".*:.*").matchesTag(""))
        #expect(try PurgeFilter(parsing: ".*:.*").matchesRepository("any/thing"))
    }

    @Test func purgeFilterEqualityFollowsTheText() throws {
        #expect(try PurgeFilter(parsing: "a:b") == PurgeFilter(parsing: "a:b"))
        #expect(try PurgeFilter(parsing: "a:b") != PurgeFilter(parsing: "a:c"))
        #expect(try PurgeFilter(parsing: "a:") != PurgeFilter(parsing: "a:.*"))
    }

    @Test(arguments: [
        "", ":", ":.*", "no-colon", "repo", "(:x", "app:(", "app:)", "app:[", "app:[z-a]", "app:a{2,1}", "app:\\",
        "app:(?<n>a)\\k<m>", "app:a**", "app:(?", "app:\\p{NotAProperty}", "[:x", "*:x", "app:+", "app:?",
        "app:(?P<>x)", "app:\\1",
    ])
    func purgeFiltersReject(text: String) {
        do {
            _ = try PurgeFilter(parsing: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.message.contains("purge filter"))
            #expect(error.message.contains("\"\(text)\""), "the error names the filter: \(error.message)")
        }
    }

    @Test func purgeFilterPatternLengthIsCapped() throws {
        let ok = String(repeating: "a", count: 256)
        let long = String(repeating: "a", count: 257)
        #expect(try PurgeFilter(parsing: "\(ok):\(ok)").matchesRepository(ok))
        #expect(rejects { () throws(LifecycleParseError) in _ = try PurgeFilter(parsing: "\(long):x") })
        #expect(rejects { () throws(LifecycleParseError) in _ = try PurgeFilter(parsing: "x:\(long)") })
        // a megabyte of input is refused up front, with a short message
        do {
            _ = try PurgeFilter(parsing: String(repeating: "(", count: 1_000_000) + ":x")
            Issue.record("accepted a megabyte")
        } catch {
            #expect(error.message.count < 300)
        }
    }

    @Test func purgeFilterUnicodePatternsAreDeterministic() throws {
        let f = try PurgeFilter(parsing: "ñ+/🚀:é$")
        #expect(f.matchesRepository("ññ/🚀"))
        #expect(!f.matchesRepository("n/🚀"))
        #expect(f.matchesTag("café"))
        #expect(!f.matchesTag("cafe"))
        // unicode in the input to match against a plain pattern
        let plain = try PurgeFilter(parsing: "[a-z/]+:^v[0-9]+$")
        #expect(!plain.matchesRepository("tëam/app"))
        #expect(!plain.matchesTag("v١"))
        #expect(!plain.matchesRepository(""))
        #expect(!plain.matchesTag(String(repeating: "x", count: 10_000)))
    }

    /// (filter, a repository it matches, one it does not, a tag it matches, one it does not):
    /// the repository pattern must match the whole name, the tag pattern anywhere in the tag.
    @Test(arguments: [
        ("(a+)+:(x*)*y", "aaa", "aab", "xxy", "xx"),
        ("(.*)*:((a|a)*)*$", "team/app", nil, "ab", nil),
        ("(a|aa)+:(a|a?)+b", "aaa", "b", "ab", "aa"),
        ("((((((((((x))))))))))+:.*", "xxx", "y", "v1", nil),
        ("(a*)*:(?:(?:a*)*)*c", "aa", "b", "c", "aa"),
        ("a{0,255}:a{1,256}", "aaa", "b", "a", "b"),
    ] as [(String, String, String?, String, String?)])
    func catastrophicLookingPatternsParseDeterministically(
        text: String, repository: String, otherRepository: String?, tag: String, otherTag: String?
    ) throws {
        let a = try PurgeFilter(parsing: text)
        let b = try PurgeFilter(parsing: text)
        #expect(a == b)
        #expect(a.description == text)
        // only tiny inputs: this checks wiring, not the engine's worst case
        #expect(a.matchesRepository(repository))
        if let otherRepository { #expect(!a.matchesRepository(otherRepository)) }
        #expect(a.matchesTag(tag))
        if let otherTag { #expect(!a.matchesTag(otherTag)) }
    }

    @Test func purgeFiltersMatchConcurrently() async throws {
        let filter = try PurgeFilter(parsing: "team/.*:^v[0-9]+$")
        let hits = await withTaskGroup(of: Int.self) { group in
            for i in 0..<16 {
                group.addTask {
                    var n = 0
                    for j in 0..<200 where filter.matchesRepository("team/app\(i)") && filter.matchesTag("v\(j)") { n += 1 }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        #expect(hits == 16 * 200)
    }

    // MARK: Cron schedules

    @Test(arguments: [
        "* * * * *", "0 0 * * *", "*/15 * * * *", "0 9-17 * * mon-fri", "0 0 1 jan,JUL *", "5,10,55 * * * *",
        "10-20/5 * * * *", "0 0 29 2 *", "0 0 30 2 *", "0 0 * * 7", "0 0 * * 0-7", "59 23 31 12 *", "*/60 * * * *",
        "0 0 * * SUN", "0 0 * * Sat", "0 0 1 DEC *", "0 0 1 dec-DEC *", "@hourly", "@daily", "@midnight", "@weekly",
        "@monthly", "@yearly", "@annually", "@DAILY", "  0   0 * *\t*  ", "00 000 01 01 0", "0-59 0-23 1-31 1-12 0-7",
        "*/1 */24 */31 */12 */7",
    ])
    func cronParses(text: String) throws {
        let c = try cron(text)
        #expect(c.description == text)
        #expect(try cron(text) == c)
    }

    @Test(arguments: [
        "", "   ", "\t", "* * * *", "* * * * * *", "0 0 * * * extra", "60 * * * *", "* 24 * * *", "* * 0 * *",
        "* * 32 * *", "* * * 0 *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "*/61 * * * *", "* */25 * * *",
        "5-1 * * * *", "1-2-3 * * * *", "a * * * *", "jan * * * *", "* * * mon *", "* * * * jan", "* * * * sunday",
        "* * * january *", "1,,2 * * * *", ",1 * * * *", "1, * * * *", "*/ * * * *", "/5 * * * *", "5/10 * * * *",
        "*/5/2 * * * *", "-1 * * * *", "1- * * * *", "99999999999999999999 * * * *", "*/99999999999999 * * * *",
        "0 0 * * sat-sun", "0 0 * dec-jan *", "@reboot", "@", "@daily extra", "@ daily", "daily", "\u{0663} * * * *",
        "\u{FF0A} * * * *", "* * * * *\n", "*\n* * * *", "0 0 * * * ;rm -rf /", "? * * * *", "L * * * *",
        "* * * * 1#2", "* * * * 5L", "0x1 * * * *", "1.5 * * * *", "+1 * * * *", "* * * * *\u{0}", "🚀 * * * *",
        "0 0 * * mon-", "0 0 * * -fri",
    ])
    func cronRejects(text: String) {
        do {
            _ = try cron(text)
            Issue.record("accepted \(text.debugDescription)")
        } catch {
            #expect(error.message.contains("cron expression"), "\(error.message)")
        }
    }

    @Test func cronLengthIsCapped() throws {
        let padded256 = "* * * * *" + String(repeating: " ", count: 256 - 9)
        #expect(padded256.utf8.count == 256)
        _ = try cron(padded256)
        #expect(rejects { () throws(LifecycleParseError) in _ = try CronSchedule(parsing: padded256 + " ") })
        let longList = (0..<100).map(String.init).joined(separator: ",") + " * * * *"
        #expect(rejects { () throws(LifecycleParseError) in _ = try CronSchedule(parsing: longList) })
        do {
            _ = try CronSchedule(parsing: String(repeating: "*", count: 1_000_000))
            Issue.record("accepted a megabyte")
        } catch {
            #expect(error.message.count < 300)
        }
    }

    @Test func cronNextIsStrictlyAfterWithSecondsZeroed() throws {
        let c = try cron("*/15 * * * *")
        #expect(c.next(after: utc(2025, 6, 1, 10, 7, 30)) == utc(2025, 6, 1, 10, 15))
        #expect(c.next(after: utc(2025, 6, 1, 10, 15)) == utc(2025, 6, 1, 10, 30))
        #expect(c.next(after: utc(2025, 6, 1, 10, 14, 59.999)) == utc(2025, 6, 1, 10, 15))
        #expect(c.next(after: utc(2025, 6, 1, 23, 45)) == utc(2025, 6, 2, 0, 0))
        let every = try cron("* * * * *")
        #expect(every.next(after: utc(2025, 6, 1, 10, 0)) == utc(2025, 6, 1, 10, 1))
        #expect(every.next(after: utc(2025, 6, 1, 10, 0, 0.5)) == utc(2025, 6, 1, 10, 1))
        #expect(every.next(after: utc(1969, 12, 31, 23, 59, 30)) == utc(1970, 1, 1))   // before the epoch
        #expect(every.next(after: utc(1900, 3, 1, 12, 0, 1)) == utc(1900, 3, 1, 12, 1))
    }

    @Test func cronFebruary29FindsTheNextLeapYear() throws {
        let c = try cron("0 0 29 2 *")
        #expect(c.next(after: utc(2025, 3, 1)) == utc(2028, 2, 29))
        #expect(c.next(after: utc(2028, 2, 29)) == utc(2032, 2, 29))
        #expect(c.next(after: utc(2028, 2, 28, 23, 59, 59)) == utc(2028, 2, 29))
        // 2100 is not a leap year, so from 2097 the next Feb 29 is in 2104: beyond the 5-year horizon
        #expect(c.next(after: utc(2097, 3, 1)) == nil)
        #expect(c.next(after: utc(2099, 3, 1)) == utc(2104, 2, 29))
        // 2000 was one (divisible by 400)
        #expect(c.next(after: utc(1997, 1, 1)) == utc(2000, 2, 29))
    }

    @Test func cronImpossibleDatesGiveNil() throws {
        for text in ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4 *", "0 0 31 6,9,11 *", "0 0 30,31 feb *"] {
            #expect(try cron(text).next(after: utc(2025, 1, 1)) == nil, "\(text)")
        }
        // but with a weekday as well, the OR rule makes it possible
        #expect(try cron("0 0 30 2 mon").next(after: utc(2025, 1, 1)) == utc(2025, 2, 3))
    }

    @Test func cronDayOfMonthOrDayOfWeek() throws {
        // 2025-01-01 is a Wednesday; Jan 3 a Friday; Jan 13 a Monday
        let c = try cron("0 12 13 * fri")
        #expect(c.next(after: utc(2025, 1, 1)) == utc(2025, 1, 3, 12))
        #expect(c.next(after: utc(2025, 1, 3, 12)) == utc(2025, 1, 10, 12))
        #expect(c.next(after: utc(2025, 1, 10, 12)) == utc(2025, 1, 13, 12))
        #expect(c.next(after: utc(2025, 1, 13, 12)) == utc(2025, 1, 17, 12))
        // only one restricted: that one decides
        #expect(try cron("0 12 13 * *").next(after: utc(2025, 1, 1)) == utc(2025, 1, 13, 12))
        #expect(try cron("0 12 * * fri").next(after: utc(2025, 1, 1)) == utc(2025, 1, 3, 12))
        // "*/10" restricts (only a bare "*" does not): days 1, 11, 21, 31 OR Mondays
        let stepped = try cron("0 0 */10 * mon")
        #expect(stepped.next(after: utc(2025, 1, 1)) == utc(2025, 1, 6))
        #expect(stepped.next(after: utc(2025, 1, 6)) == utc(2025, 1, 11))
        #expect(stepped.next(after: utc(2025, 1, 11)) == utc(2025, 1, 13))
        // a day-of-week range covering every day still counts as restricted, so every day matches
        #expect(try cron("0 0 15 * 0-7").next(after: utc(2025, 1, 1)) == utc(2025, 1, 2))
    }

    @Test func cronStepsRangesListsAndNames() throws {
        let minutes = try cron("10-20/5 * * * *")
        #expect(minutes.next(after: utc(2025, 1, 1, 0, 0)) == utc(2025, 1, 1, 0, 10))
        #expect(minutes.next(after: utc(2025, 1, 1, 0, 10)) == utc(2025, 1, 1, 0, 15))
        #expect(minutes.next(after: utc(2025, 1, 1, 0, 20)) == utc(2025, 1, 1, 1, 10))
        let hours = try cron("0 9-17/4 * * *")
        #expect(hours.next(after: utc(2025, 1, 1, 9)) == utc(2025, 1, 1, 13))
        #expect(hours.next(after: utc(2025, 1, 1, 13)) == utc(2025, 1, 1, 17))
        #expect(hours.next(after: utc(2025, 1, 1, 17)) == utc(2025, 1, 2, 9))
        let list = try cron("5,10,55 * * * *")
        #expect(list.next(after: utc(2025, 1, 1, 0, 10)) == utc(2025, 1, 1, 0, 55))
        #expect(list.next(after: utc(2025, 1, 1, 0, 55)) == utc(2025, 1, 1, 1, 5))
        // weekdays by name, case-insensitive; 2025-01-04 is a Saturday
        let weekdays = try cron("30 8 * * MON-fri")
        #expect(weekdays.next(after: utc(2025, 1, 3, 9)) == utc(2025, 1, 6, 8, 30))
        // months by name
        let halfYearly = try cron("0 0 1 jan,JUL *")
        #expect(halfYearly.next(after: utc(2025, 1, 1)) == utc(2025, 7, 1))
        #expect(halfYearly.next(after: utc(2025, 7, 1)) == utc(2026, 1, 1))
        // Sunday as 0, 7 and sun
        let start = utc(2025, 1, 1)
        let sundays = try ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * SUN"].map { try cron($0).next(after: start) }
        #expect(sundays.allSatisfy { $0 == utc(2025, 1, 5) })
        #expect(try cron("0 0 * * 5-7").next(after: utc(2025, 1, 4, 1)) == utc(2025, 1, 5))
        // */60 is minute 0 only
        #expect(try cron("*/60 * * * *").next(after: utc(2025, 1, 1, 0, 1)) == utc(2025, 1, 1, 1, 0))
    }

    @Test func cronMonthAndYearRollover() throws {
        #expect(try cron("0 0 1 1 *").next(after: utc(2025, 12, 31, 23, 59)) == utc(2026, 1, 1))
        #expect(try cron("59 23 31 12 *").next(after: utc(2025, 12, 31, 23, 59)) == utc(2026, 12, 31, 23, 59))
        #expect(try cron("59 23 31 12 *").next(after: utc(2025, 12, 31, 23, 58, 59)) == utc(2025, 12, 31, 23, 59))
        #expect(try cron("0 0 31 * *").next(after: utc(2025, 1, 31, 1)) == utc(2025, 3, 31))
        #expect(try cron("0 0 * 2 *").next(after: utc(2025, 3, 1)) == utc(2026, 2, 1))
        #expect(try cron("* * * * *").next(after: utc(2025, 12, 31, 23, 59, 59)) == utc(2026, 1, 1))
    }

    @Test func cronMacrosExpand() throws {
        let start = utc(2025, 1, 15, 10, 30)   // a Wednesday
        #expect(try cron("@hourly").next(after: start) == utc(2025, 1, 15, 11))
        #expect(try cron("@daily").next(after: start) == utc(2025, 1, 16))
        #expect(try cron("@midnight").next(after: start) == utc(2025, 1, 16))
        #expect(try cron("@weekly").next(after: start) == utc(2025, 1, 19))
        #expect(try cron("@monthly").next(after: start) == utc(2025, 2, 1))
        #expect(try cron("@yearly").next(after: start) == utc(2026, 1, 1))
        #expect(try cron("@annually").next(after: start) == utc(2026, 1, 1))
        #expect(try cron("@Daily").next(after: start) == cron("0 0 * * *").next(after: start))
        #expect(try cron("@daily").description == "@daily")
    }

    @Test func cronNextRejectsUnrepresentableDates() throws {
        let c = try cron("* * * * *")
        #expect(c.next(after: Date(timeIntervalSince1970: 1e12)) == nil)
        #expect(c.next(after: Date(timeIntervalSince1970: -1e12)) == nil)
        #expect(c.next(after: .distantFuture) == Date.distantFuture.addingTimeInterval(60))   // 4001-01-01 still works
        #expect(c.next(after: Date(timeIntervalSince1970: .infinity)) == nil)
        #expect(c.next(after: Date(timeIntervalSince1970: .nan)) == nil)
        #expect(c.next(after: Date(timeIntervalSince1970: -1e18)) == nil)
    }

    @Test func cronCalendarArithmeticAgreesWithFoundation() {
        // from 1614 (Foundation switches to the Julian calendar before October 1582) to 2517
        var day: Int64 = -130_000
        while day < 200_000 {
            let date = Date(timeIntervalSince1970: TimeInterval(day) * 86_400)
            let c = utcCalendar.dateComponents([.year, .month, .day, .weekday], from: date)
            let mine = GregorianDays.civil(fromDays: day)
            #expect(Int(mine.year) == c.year! && mine.month == c.month! && mine.day == c.day!, "day \(day)")
            #expect(GregorianDays.weekday(fromDays: day) == c.weekday! - 1, "day \(day)")
            #expect(GregorianDays.days(year: mine.year, month: mine.month, day: mine.day) == day)
            day += 37   // coprime with 7 and with month lengths, so weekdays and month ends are all visited
        }
    }

    /// Reference answer: walks whole days with Foundation's calendar, then every allowed hour and minute.
    private func referenceNext(_ c: CronSchedule, after date: Date) -> Date? {
        var day = utcCalendar.startOfDay(for: date)
        for _ in 0...Int(CronSchedule.horizonDays) {
            let parts = utcCalendar.dateComponents([.month, .day, .weekday], from: day)
            if c.months & (1 << UInt64(parts.month!)) != 0,
               c.matchesDay(dayOfMonth: parts.day!, dayOfWeek: parts.weekday! - 1) {
                for h in 0..<24 where c.hours & (1 << UInt64(h)) != 0 {
                    for m in 0..<60 where c.minutes & (1 << UInt64(m)) != 0 {
                        let t = day.addingTimeInterval(TimeInterval(h * 3600 + m * 60))
                        if t > date { return t }
                    }
                }
            }
            day = utcCalendar.date(byAdding: .day, value: 1, to: day)!
        }
        return nil
    }

    @Test func cronNextAgreesWithAFoundationCalendarWalk() throws {
        let expressions = [
            "* * * * *", "*/7 */5 * * *", "0 0 1 * *", "15 3 * * 1-5", "0 12 13 * fri", "0 0 */3 * sun",
            "30 23 28-31 * *", "0 0 29 2 *", "5 4 * jan,jun sat", "0,30 9-17 1,15 * 1", "59 23 31 dec *",
            "0 6 * * 6,0", "*/20 1 1-7 * mon",
        ]
        var rng = SystemRandomNumberGenerator()
        for text in expressions {
            let c = try cron(text)
            var starts = [utc(2025, 1, 1), utc(2024, 2, 28, 23, 59, 30), utc(2025, 12, 31, 23, 59), utc(1999, 12, 31, 23, 30)]
            for _ in 0..<6 {
                starts.append(Date(timeIntervalSince1970: Double.random(in: 0...4_102_444_800, using: &rng)))
            }
            for start in starts {
                #expect(c.next(after: start) == referenceNext(c, after: start), "\(text) after \(start)")
            }
        }
    }

    @Test func cronNextSkipsAheadInsteadOfWalkingMinutes() throws {
        // each of these scans years of days; a minute-by-minute walk would take ~2.6 million steps per call
        let never = try cron("0 0 30 2 *")
        let rare = try cron("59 23 29 2 *")
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for i in 0..<200 {
                let start = utc(2001, 1, 1).addingTimeInterval(TimeInterval(i) * 86_400)
                #expect(never.next(after: start) == nil)
                #expect(rare.next(after: start) != nil)
            }
        }
        #expect(elapsed < .seconds(5))
    }

    @Test func cronSchedulesCrossConcurrencyDomains() async throws {
        let c = try cron("0 */6 * * *")
        let start = utc(2025, 1, 1)
        let results = await withTaskGroup(of: Date?.self) { group in
            for _ in 0..<8 { group.addTask { c.next(after: start) } }
            return await group.reduce(into: [Date?]()) { $0.append($1) }
        }
        #expect(results.count == 8)
        #expect(results.allSatisfy { $0 == utc(2025, 1, 1, 6) })
    }

    // MARK: Byte sizes

    @Test(arguments: [
        ("1000", Int64(1000)), ("1", 1), ("512KiB", 524_288), ("10MiB", 10_485_760), ("1GiB", 1_073_741_824),
        ("2TiB", 2_199_023_255_552), ("1KB", 1_000), ("5GB", 5_000_000_000), ("1TB", 1_000_000_000_000), ("3MB", 3_000_000),
        ("1K", 1_024), ("1M", 1_048_576), ("1G", 1_073_741_824), ("1T", 1_099_511_627_776), ("1kib", 1_024),
        ("1gB", 1_000_000_000), ("1mIb", 1_048_576), ("1k", 1_024), ("10 MiB", 10_485_760), ("7B", 7), ("7 b", 7),
        ("0001KiB", 1_024), ("9223372036854775807", Int64.max), ("8388607TiB", 8_388_607 << 40),
        ("9223372036854775807B", Int64.max),
    ])
    func byteSizesParse(text: String, bytes: Int64) throws {
        #expect(try ByteSize.parse(text) == bytes)
    }

    @Test(arguments: [
        "", " ", "0", "0KiB", "000", "-1", "+1", "1.5GiB", "1,5GiB", "GiB", "KiB1", "1 ", " 1", "1  MiB", "1MiB ",
        "1PiB", "1EiB", "1XB", "1KiBB", "1Ki B", "1iB", "9223372036854775808", "99999999999999999999999",
        "8388608TiB", "9223372036854775807K", "10000000TB", "\u{FF11}GiB", "1GiB\0", "1\u{212A}iB", "1 \u{00A0}MiB",
        "1\tMiB", "1\nMiB", "1e9", "0x10", "1_000", "🚀", "1🚀",
    ])
    func byteSizesReject(text: String) {
        #expect(rejects { () throws(LifecycleParseError) in _ = try ByteSize.parse(text) })
    }

    @Test func byteSizeHostileLengths() {
        for text in [String(repeating: "9", count: 1_000_000), String(repeating: "0", count: 63) + "1",
                     String(repeating: "0", count: 100) + "1"] {
            do {
                let v = try ByteSize.parse(text)
                #expect(text.utf8.count <= 64 && v == 1, "accepted a \(text.utf8.count)-byte size")
            } catch {
                #expect(error.message.count < 300)
            }
        }
    }

    @Test(arguments: [
        (Int64(512), "512 B"), (0, "0 B"), (1, "1 B"), (1_023, "1023 B"), (1_024, "1 KiB"), (1_536, "1.5 KiB"),
        (1_610_612_736, "1.5 GiB"), (1_073_741_824, "1 GiB"), (1_048_575, "1 MiB"), (1_048_576, "1 MiB"),
        (10 << 40, "10 TiB"), (5_000_000_000, "4.7 GiB"), (1 << 50, "1 PiB"), (Int64.max, "8 EiB"),
        (-1_536, "-1.5 KiB"), (Int64.min, "-8 EiB"), (-1, "-1 B"), (1_126, "1.1 KiB"), (1_075, "1 KiB"),
    ])
    func byteSizesFormat(bytes: Int64, text: String) {
        #expect(ByteSize.format(bytes) == text)
    }

    @Test func byteSizeFormatOfWholeUnitsParsesBack() throws {
        for (value, unit) in [(1, "KiB"), (512, "KiB"), (10, "MiB"), (3, "GiB"), (2, "TiB")] {
            let text = ByteSize.format(try ByteSize.parse("\(value)\(unit)"))
            #expect(text == "\(value) \(unit)")
            #expect(try ByteSize.parse(text) == ByteSize.parse("\(value)\(unit)"))
        }
    }
}

@Suite struct PurgeFilterLinearTimeTests {
    /// Issue 14: a filter `^(a+)+b$` over tags of 24 a's ran for minutes in the backtracking engine.
    @Test func pathologicalFiltersFinish() throws {
        let f = try PurgeFilter(parsing: "^(a+)+b$:^(a+)+b$")
        let name = String(repeating: "a", count: 255)
        #expect(!f.matchesRepository(name))
        #expect(!f.matchesTag(String(repeating: "a", count: 128)))
        #expect(f.matchesTag(String(repeating: "a", count: 127) + "b"))
    }

    @Test func unsupportedSyntaxIsRefusedWithTheReason() {
        for (text, reason) in [("app:(a)\\1", "backreferences"), ("app:(?=v)", "lookaround"), ("(?!x):.*", "lookaround")] {
            do {
                _ = try PurgeFilter(parsing: text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains(reason), "\(error.message)")
            }
        }
    }
}

@Suite struct OneDurationGrammarTests {
    /// Issue 11: `berth purge --ago 30` was read as 30 seconds by the CLI's own parser.
    @Test func aNumberWithoutAUnitIsRefusedNamingTheForms() {
        for text in ["30", "1d30", "7"] {
            do {
                _ = try LifecycleDuration.parse(text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains("without a unit"), "\(error.message)")
                #expect(error.message.contains("30d") && error.message.contains("45s"), "\(error.message)")
            }
        }
        #expect((try? LifecycleDuration.parse("0")) == 0)
        #expect((try? LifecycleDuration.parse("365d")) == 365 * 86_400)
    }
}
