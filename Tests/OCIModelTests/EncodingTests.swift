import Foundation
import Testing
@testable import OCIModel

@Suite struct EncodingTests {
    @Test func hexMatchesKnownDigests() {
        #expect(Hex.encode([UInt8]()) == "")
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        let all = Hex.encode((0...255).map(UInt8.init))
        #expect(all.count == 512)
        #expect(all == (0...255).map { String(format: "%02x", $0) }.joined())
    }

    @Test func formatsWholeSecondsInUTC() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        // fractions are cut, not rounded up into the next second
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_795_477_707.999)) == "2026-11-23T23:48:27Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1e15)) == "9999-12-31T23:59:59Z")
        #expect(RFC3339.format(.distantFuture) == "4001-01-01T00:00:00Z")
    }

    @Test func agreesWithFoundationOverFourCenturies() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let date = Date(timeIntervalSince1970: Double(Int64.random(in: -12_000_000_000...12_000_000_000, using: &rng)))
            let text = RFC3339.format(date)
            #expect(text == date.formatted(Date.ISO8601FormatStyle()))
            #expect(RFC3339.parse(text) == date)
        }
    }

    @Test func parsesOffsetsAndFractions() throws {
        #expect(RFC3339.parse("2026-11-23T23:48:27Z")?.timeIntervalSince1970 == 1_795_477_707)
        #expect(RFC3339.parse("2026-11-23T23:48:27+01:00")?.timeIntervalSince1970 == 1_795_474_107)
        let fractional = try #require(RFC3339.parse("2026-11-23T23:48:27.5-02:00"))
        #expect(abs(fractional.timeIntervalSince1970 - 1_795_484_907.5) < 0.001)
        #expect(RFC3339.parse("2026-11-23t23:48:27z")?.timeIntervalSince1970 == 1_795_477_707)
        #expect(RFC3339.parse("2024-02-29T00:00:00Z") != nil)
        #expect(RFC3339.parse("2016-12-31T23:59:60Z") == RFC3339.parse("2016-12-31T23:59:59Z"))
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(RFC3339.parse(RFC3339.format(now)) == now)
    }

    @Test(arguments: [
        "", "garbage", "2026-11-23", "2026-11-23T23:48:27", " 2026-11-23T23:48:27Z", "2026-11-23T23:48:27Z ",
        "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
        "2026-11-23T24:00:00Z", "2026-11-23T23:60:00Z", "2026-11-23T23:48:61Z", "2026-00-10T00:00:00Z",
        "2026-11-00T00:00:00Z", "2026-11-23T23:48:27.Z", "2026-11-23T23:48:27+0100", "2026-11-23T23:48:27+01",
        "2026-11-23 23:48:27Z", "2026/11/23T23:48:27Z", "+2026-11-23T23:48:27Z", "-026-11-23T23:48:27Z", "2026-11-23T23:48:27+25:00",
        "99999-01-01T00:00:00Z", "2026-11-23T23:48:27." + String(repeating: "9", count: 10_000) + "Z",
        "2026-11-23T23:48:27Z\u{0}", "２０２６-11-23T23:48:27Z",
    ])
    func rejectsWhatIsNotATimestamp(_ text: String) {
        #expect(RFC3339.parse(text) == nil)
    }
}
