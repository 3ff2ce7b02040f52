import Foundation
import Testing
@testable import Scanning

@Suite struct CVSS3Tests {
    // Scores as the FIRST CVSS v3.1 calculator gives them for these vectors.
    @Test(arguments: [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3),
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:C/C:L/I:N/A:N", 2.3),
        ("CVSS:3.1/AV:A/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H", 8.4),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        // Temporal and environmental metrics are accepted; the base score ignores them.
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C/CR:H/MAV:L", 9.8),
        // Metric order is free.
        ("CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N", 9.8),
    ])
    func baseScores(_ c: (String, Double)) throws {
        #expect(try CVSS3.baseScore(c.0) == c.1)
    }

    @Test func roundUpIgnoresFloatingPointNoise() {
        #expect(CVSS3.roundUp(4.000000000000001) == 4.0)
        #expect(CVSS3.roundUp(4.02) == 4.1)
        #expect(CVSS3.roundUp(4.0) == 4.0)
    }

    @Test(arguments: [
        "", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",            // A missing
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:L",    // given twice
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",        // bad value
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1",   // unknown metric
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",       // trailing slash
        "CVSS:3.1/AV:N:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "cvss:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/" + String(repeating: "AV:N/", count: 20_000),
    ])
    func refuses(_ vector: String) {
        #expect(throws: CVSS3.ParseError.self) { try CVSS3.baseScore(vector) }
    }

    @Test func ratings() {
        #expect(Severity.Level(score: 0.0) == .none)
        #expect(Severity.Level(score: 0.1) == .low)
        #expect(Severity.Level(score: 3.9) == .low)
        #expect(Severity.Level(score: 4.0) == .medium)
        #expect(Severity.Level(score: 6.9) == .medium)
        #expect(Severity.Level(score: 7.0) == .high)
        #expect(Severity.Level(score: 8.9) == .high)
        #expect(Severity.Level(score: 9.0) == .critical)
        #expect(Severity.Level(score: 10.0) == .critical)
    }

    @Test func osvSeverityEntries() {
        let v3 = Severity.fromOSV(type: "CVSS_V3", score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H")
        #expect(v3.level == .high && v3.score == 7.5)
        let bad = Severity.fromOSV(type: "CVSS_V3", score: "CVSS:3.1/AV:N")
        #expect(bad.level == .unknown && bad.score == nil)
        // CVSS v4 vectors are kept but not scored by this module.
        let v4 = Severity.fromOSV(type: "CVSS_V4", score: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
        #expect(v4.level == .unknown && v4.vector != nil)
        #expect(Severity.fromOSV(type: "Ubuntu", score: "medium").level == .medium)
    }
}
