import Foundation
import Testing
@testable import Scanning

/// Checks `lower < higher` by `scheme`, in both directions, and that neither equals the other.
func expectOrdered<S: VersionScheme>(_ scheme: S, _ lower: String, _ higher: String,
                                     sourceLocation: SourceLocation = #_sourceLocation) throws {
    let a = try scheme.parse(lower), b = try scheme.parse(higher)
    #expect(a < b, "\(lower) < \(higher)", sourceLocation: sourceLocation)
    #expect(!(b < a), "not \(higher) < \(lower)", sourceLocation: sourceLocation)
    #expect(a != b, sourceLocation: sourceLocation)
}

func expectEqual<S: VersionScheme>(_ scheme: S, _ x: String, _ y: String,
                                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let a = try scheme.parse(x), b = try scheme.parse(y)
    #expect(a == b, "\(x) == \(y)", sourceLocation: sourceLocation)
    #expect(!(a < b) && !(b < a), "\(x) ~ \(y)", sourceLocation: sourceLocation)
}

/// Every chain is strictly increasing, so every pair in it is checked, not just neighbours.
func expectChain<S: VersionScheme>(_ scheme: S, _ chain: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
    for i in chain.indices {
        for j in chain.indices where i < j { try expectOrdered(scheme, chain[i], chain[j], sourceLocation: sourceLocation) }
    }
}

func expectRefused<S: VersionScheme>(_ scheme: S, _ input: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(throws: VersionParseError.self, "\(input.prefix(40)) is refused", sourceLocation: sourceLocation) { try scheme.parse(input) }
}

@Suite struct DpkgVersionTests {
    let s = DpkgVersionScheme()

    @Test(arguments: [
        ("1.0~rc1", "1.0"),                   // ~ sorts before the end of the string
        ("1.0~rc1-1", "1.0-1"),
        ("1.0-1~bpo12+1", "1.0-1"),           // backport revisions sort below the original
        ("2.0", "1:1.0"),                     // the epoch wins
        ("1:0.1", "2:0.0"),
        ("1.2.3-1", "1.2.3-1+deb12u1"),       // stable updates sort above the release
        ("2.36-9", "2.36-9+deb12u4"),
        ("2.36-9+deb12u3", "2.36-9+deb12u4"),
        ("2.36-9+deb12u9", "2.36-9+deb12u10"),
        ("2.36-9+deb12u4", "2.36-10"),
        ("7.88.1-10+deb12u5", "7.88.1-10+deb12u7"),
        ("1.9", "1.10"),                      // digit runs are numbers
        ("0.9-1", "0.10-1"),
        ("1.0", "1.0a"),
        ("1.0a", "1.0+"),                     // letters sort before other characters
        ("1.0a", "1.0.1"),
        ("1.0-1", "1.0-1.1"),
        ("1.0", "1.0-0.1"),
        ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
        ("1." + String(repeating: "9", count: 30), "1.1" + String(repeating: "0", count: 30)),  // beyond 64 bits
    ])
    func orders(_ pair: (String, String)) throws { try expectOrdered(s, pair.0, pair.1) }

    @Test func policyTildeExample() throws {
        // Debian Policy 5.6.12: "~~" < "~~a" < "~" < "" < "a".
        try expectChain(s, ["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"])
    }

    @Test(arguments: [("1.0", "1.0-0"), ("0:1.0", "1.0"), ("1.01", "1.1"), ("1.0-00", "1.0-0"), ("00:1.0", "1.0")])
    func equal(_ pair: (String, String)) throws { try expectEqual(s, pair.0, pair.1) }

    @Test func readsParts() throws {
        let v = try s.parse("1:2.36-9+deb12u4")
        #expect(v.epoch == Natural(1))
        #expect(String(decoding: v.upstream, as: UTF8.self) == "2.36")
        #expect(String(decoding: v.revision, as: UTF8.self) == "9+deb12u4")
        // The revision is after the last hyphen; upstream may contain hyphens.
        let w = try s.parse("1.0-beta-2")
        #expect(String(decoding: w.upstream, as: UTF8.self) == "1.0-beta")
    }

    @Test(arguments: ["", "a1.0", "1.0-", ":1.0", "x:1.0", "1:", "-1", "1.0 ", "1.0-1_2", "1.0_1-1",
                      "1.0\u{0}", "１.0", "99999999999:1.0", "1:-1", "1.0-ü", "1.0-1:2"])
    func refuses(_ input: String) { expectRefused(s, input) }
}

@Suite struct ApkVersionTests {
    let s = ApkVersionScheme()

    @Test func suffixOrder() throws {
        try expectChain(s, ["1.2.3_alpha", "1.2.3_beta", "1.2.3_pre", "1.2.3_rc", "1.2.3", "1.2.3_cvs", "1.2.3_svn",
                            "1.2.3_git", "1.2.3_hg", "1.2.3_p1"])
    }

    @Test(arguments: [
        ("1.2.3_rc1-r0", "1.2.3-r0"),
        ("1.2.3_rc1", "1.2.3_rc2"),
        ("1.2_rc9", "1.2"),
        ("1.2_p1", "1.2_p2"),
        ("1.2.3_rc1", "1.2.3_rc1_p1"),
        ("1.2.3-r0", "1.2.3-r1"),
        ("1.2.3-r9", "1.2.3-r10"),
        ("1.2", "1.2-r0"),
        ("1.2", "1.2a"),                      // a letter after the numbers sorts above none
        ("1.2a", "1.2b"),
        ("1.2z", "1.2.1"),
        ("1.2.3", "1.2.10"),
        ("1.9", "1.10"),
        ("1.001", "1.01"),                    // leading zeros: decimal fractions
        ("1.0.1", "1.01"),
        ("1.0", "1.0.1"),
        ("3.0.12-r0", "3.1.4-r0"),
        ("3.1.4-r0", "3.1.4-r1"),
        ("1.36.1-r1", "1.36.1-r2"),
        ("2." + String(repeating: "9", count: 40), "3.0"),
    ])
    func orders(_ pair: (String, String)) throws { try expectOrdered(s, pair.0, pair.1) }

    @Test(arguments: [("1.2.3~abc123-r0", "1.2.3-r0"), ("1.2.3", "1.2.3"), ("1.02", "1.02")])
    func equal(_ pair: (String, String)) throws { try expectEqual(s, pair.0, pair.1) }

    @Test(arguments: ["", "r1", "a1.0", "1.2.3-1", "1.2.3_foo", "1.2.3-r", "1.2.3_rc1-r0x", "1..2", "1.2A", "1.2.",
                      "-r0", "1.2.3~", "1.2.3~xyz", "1.2ab", "1.2.3-r1-r2", "1.2.3 ", "1.2.3_rc1a"])
    func refuses(_ input: String) { expectRefused(s, input) }
}

@Suite struct RpmVersionTests {
    let s = RpmVersionScheme()

    @Test(arguments: [
        ("1.0", "1.0.1"),
        ("1.0~rc1", "1.0"),                   // ~ sorts before the end
        ("1.0~rc1", "1.0~rc2"),
        ("1.0~~", "1.0~"),
        ("1.0~rc1", "1.0~rc1^git1"),
        ("1.0~rc1^git1", "1.0"),
        ("1.0", "1.0^git1"),                  // ^ sorts after the end ...
        ("1.0^git1", "1.0.1"),                // ... but before another segment
        ("1.0^git1", "1.0^git2"),
        ("1.9", "1.10"),
        ("1.a", "1.1"),                       // numbers beat letters
        ("1.0a", "1.0b"),
        ("2.0", "1:1.0"),
        ("1.0-1", "1.0-2"),
        ("1.0-1.el9", "1.0-1.el9_1"),
        ("1.0-9.el8", "1.0-10.el8"),
        ("5.14.0-362.8.1.el9_3", "5.14.0-362.13.1.el9_3"),
        ("3.0.7-24.el9", "1:3.0.7-25.el9"),
        ("1." + String(repeating: "9", count: 40), "1.1" + String(repeating: "0", count: 40)),
    ])
    func orders(_ pair: (String, String)) throws { try expectOrdered(s, pair.0, pair.1) }

    @Test(arguments: [("1.0", "1_0"), ("0:1.0-1", "1.0-1"), ("1.01", "1.1"), ("1.0", "1.0.")])
    func equal(_ pair: (String, String)) throws { try expectEqual(s, pair.0, pair.1) }

    @Test(arguments: ["", "1.0-", ":1.0", "a:1.0", "1:2:3", "1.0-1-2", "1.0 ", "1.0/2", "~", "-1", "1.0-ä"])
    func refuses(_ input: String) { expectRefused(s, input) }
}

@Suite struct PEP440VersionTests {
    let s = PEP440VersionScheme()

    @Test func specOrder() throws {
        // The order PEP 440's "Summary of permitted suffixes and relative ordering" describes.
        try expectChain(s, ["1.0.dev456", "1.0a1", "1.0a2.dev456", "1.0a12.dev456", "1.0a12", "1.0b1.dev456",
                            "1.0b2", "1.0b2.post345.dev456", "1.0b2.post345", "1.0rc1.dev456", "1.0rc1", "1.0",
                            "1.0+abc.5", "1.0+abc.7", "1.0+5", "1.0.post456.dev34", "1.0.post456", "1.0.15", "1.1.dev1"])
    }

    @Test(arguments: [
        ("2.0", "1!0.1"),                     // epochs first
        ("1.9", "1.10"),
        ("1.0.post1", "1.0.1"),
        ("1.0.dev1", "1.0.dev2"),
        ("1.0+1", "1.0+1.0"),
        ("1.0+abc", "1.0+1"),                 // numeric local segments beat strings
        ("1.0a1.dev1", "1.0a1"),
        ("1.0rc1", "1.0.post0"),
        ("1." + String(repeating: "9", count: 40), "2"),
    ])
    func orders(_ pair: (String, String)) throws { try expectOrdered(s, pair.0, pair.1) }

    @Test(arguments: [
        ("1.0RC1", "1.0rc1"), ("1.0-1", "1.0.post1"), ("1.0", "1.0.0"), ("1.0a", "1.0a0"), ("1.0alpha1", "1.0a1"),
        ("1.0c1", "1.0rc1"), ("1.0-preview-2", "1.0rc2"), ("1.0.pre2", "1.0rc2"), ("v1.0", "1.0"),
        ("1.0.rev3", "1.0.post3"), ("1.0-r3", "1.0.post3"), ("1.0-dev", "1.0.dev0"), ("0!1.0", "1.0"),
        (" 1.0 ", "1.0"), ("1.0+ubuntu-1", "1.0+ubuntu.1"), ("1.0.POST1", "1.0.post1"), ("01.0", "1.0"),
        ("1.0_beta_2", "1.0b2"), ("1.0post", "1.0.post0"),
    ])
    func normalises(_ pair: (String, String)) throws { try expectEqual(s, pair.0, pair.1) }

    @Test(arguments: ["", "abc", "1.0abc", "1.0+", "1.0+.a", "1..0", "1.0-", "!1.0", "1.0.post1.post2", "1.0a1a2",
                      "1.0 dev", "1.0+a..b", "1.0.dev1.post1", "1.0a1b2", "1!", "1.0+ä"])
    func refuses(_ input: String) { expectRefused(s, input) }
}

@Suite struct SemVerAndGoTests {
    let s = SemVerScheme()
    let go = GoVersionScheme()

    @Test func specOrder() throws {
        // The precedence example of Semantic Versioning 2.0.0, section 11.
        try expectChain(s, ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                            "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1"])
    }

    @Test(arguments: [("1.0.0-1", "1.0.0-a"), ("1.0.0-a.b", "1.0.0-a-b"), ("1.0.0-9", "1.0.0-10"), ("0.9.99", "0.10.0")])
    func orders(_ pair: (String, String)) throws { try expectOrdered(s, pair.0, pair.1) }

    @Test(arguments: [("1.0.0+build.1", "1.0.0+build.2"), ("1.0.0-rc.1+b", "1.0.0-rc.1"), ("v1.0.0", "1.0.0")])
    func equal(_ pair: (String, String)) throws { try expectEqual(s, pair.0, pair.1) }

    @Test(arguments: ["1", "1.0", "01.0.0", "1.00.0", "1.0.0-01", "1.0.0-", "1.0.0+", "1.0.0-a..b", "1.0.0-a_b", "1.0.0.0",
                      "a.b.c", "1.0.0 ", "-1.0.0", "1.0.0+a+b", ""])
    func refuses(_ input: String) { expectRefused(s, input) }

    @Test func strictModeRefusesLeadingV() {
        expectRefused(SemVerScheme(allowsLeadingV: false), "v1.0.0")
    }

    @Test func goOrder() throws {
        try expectChain(go, ["v0.0.0-20191109021931-daa7c04131f5", "v0.0.0-20200101000000-aaaaaaaaaaaa", "v0.0.1",
                             "v1", "v1.0.1", "v1.2.3", "v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4-pre",
                             "v1.2.4-pre.0.20191109021931-daa7c04131f5", "v1.2.4", "v1.9.9", "v2.0.0+incompatible",
                             "v2.0.1+incompatible"])
    }

    @Test(arguments: [("v2.0.0+incompatible", "v2.0.0"), ("v1", "v1.0.0"), ("v1.2", "v1.2.0")])
    func goEqual(_ pair: (String, String)) throws { try expectEqual(go, pair.0, pair.1) }

    @Test(arguments: ["1.2.3", "v1.2.3+build", "v1.2.3-", "v01.2.3", "vv1.2.3", "v1.2.3.4", "v1.2-pre", "V1.2.3", "v"])
    func goRefuses(_ input: String) { expectRefused(go, input) }

    @Test func pseudoVersions() throws {
        let p = GoVersionScheme.pseudoVersion(try go.parse("v0.0.0-20191109021931-daa7c04131f5"))
        #expect(p?.timestamp == "20191109021931" && p?.revision == "daa7c04131f5")
        let q = GoVersionScheme.pseudoVersion(try go.parse("v1.2.4-0.20191109021931-daa7c04131f5"))
        #expect(q?.timestamp == "20191109021931" && q?.revision == "daa7c04131f5")
        #expect(GoVersionScheme.pseudoVersion(try go.parse("v1.2.4-pre")) == nil)
        #expect(GoVersionScheme.pseudoVersion(try go.parse("v1.2.4")) == nil)
    }
}

@Suite struct MavenVersionTests {
    let s = MavenVersionScheme()

    @Test func qualifierOrder() throws {
        try expectChain(s, ["1.0-alpha", "1.0-beta", "1.0-milestone", "1.0-rc", "1.0-snapshot", "1.0", "1.0-sp",
                            "1.0-foo", "1.0.1"])
    }

    @Test(arguments: [
        ("1.0-alpha1", "1.0-alpha2"),
        ("1.0-m1", "1.0-rc1"),
        ("1.0-RC1", "1.0"),
        ("1.0-SNAPSHOT", "1.0"),
        ("1.9", "1.10"),
        ("2.0", "2.0.1-SNAPSHOT"),
        ("1.0-sp", "1.0-sp1"),
        ("1", "1.0.0.1"),
        ("1.0-alpha-1", "1.0-alpha-2"),
        ("1." + String(repeating: "9", count: 40), "2"),
    ])
    func orders(_ pair: (String, String)) throws { try expectOrdered(s, pair.0, pair.1) }

    @Test(arguments: [
        ("1.0.0", "1"), ("1.0-a1", "1.0-alpha-1"), ("1.0-b1", "1.0-beta-1"), ("1.0-beta1", "1.0-beta-1"),
        ("1.0-cr1", "1.0-rc1"), ("1.0-ga", "1.0"), ("1.0-final", "1.0"), ("1.0-release", "1.0"),
        ("1-SNAPSHOT", "1-snapshot"), ("1.0.0-0", "1"),
    ])
    func equal(_ pair: (String, String)) throws { try expectEqual(s, pair.0, pair.1) }

    @Test func aliasesNeedADigit() throws {
        // "a", "b" and "m" stand for alpha, beta and milestone only when a number follows.
        try expectOrdered(s, "1.0-rc", "1.0-a")  // "a" alone is an unknown qualifier, above release
    }

    @Test(arguments: ["", "1.0 beta", "1.0\u{0}", "１.0"])
    func refuses(_ input: String) { expectRefused(s, input) }
}

@Suite struct HostileVersionTests {
    static let hostile: [String] = [
        String(repeating: "1", count: 100_000),
        String(repeating: "1.", count: 50_000),
        String(repeating: "~", count: 100_000),
        "1:" + String(repeating: "9", count: 100_000),
        String(repeating: "9", count: 257),
        String(decoding: [0x31, 0x2E, 0xFF, 0xFE, 0x30], as: UTF8.self),  // invalid UTF-8, repaired to U+FFFD
        "1.0\u{202E}",
        "\u{0}",
    ]

    @Test(arguments: VersionSchemeKind.allCases)
    func everySchemeRefusesHostileInput(_ kind: VersionSchemeKind) {
        for input in Self.hostile {
            #expect(throws: VersionParseError.self, "\(kind) refuses \(input.prefix(20))") { try kind.validate(input) }
        }
    }

    @Test(arguments: VersionSchemeKind.allCases)
    func longestAcceptedNumbersCompare(_ kind: VersionSchemeKind) throws {
        // Numbers as long as the length limit allows compare by value, never overflow.
        let prefix = kind == .go ? "v1.0." : "1.0."
        let small = prefix + String(repeating: "9", count: VersionLimits.maxLength - prefix.count - 1)
        let large = prefix + "1" + String(repeating: "0", count: VersionLimits.maxLength - prefix.count - 1)
        #expect(try kind.compare(small, large) == .orderedAscending)
        #expect(try kind.compare(large, small) == .orderedDescending)
    }

    @Test func errorsAreShort() {
        do {
            _ = try DpkgVersionScheme().parse(String(repeating: "x", count: 100_000))
            Issue.record("accepted")
        } catch {
            #expect("\(error)".count < 200)
        }
    }
}
