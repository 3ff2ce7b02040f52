import Testing
@testable import OCIModel

@Suite struct LinearRegexTests {
    /// (pattern, text, whole match, match somewhere)
    static let table: [(String, String, Bool, Bool)] = [
        ("abc", "abc", true, true),
        ("abc", "xabcx", false, true),
        ("abc", "ab", false, false),
        ("", "", true, true),
        ("", "x", false, true),
        ("a.c", "abc", true, true),
        ("a.c", "a\nc", false, false),
        ("^v1", "v1.2", false, true),
        ("^v1", "xv1", false, false),
        ("rc$", "v1-rc", false, true),
        ("rc$", "v1-rc2", false, false),
        ("^$", "", true, true),
        ("^$", "a", false, false),
        ("a*", "", true, true),
        ("a*", "aaa", true, true),
        ("a+", "", false, false),
        ("a+", "baab", false, true),
        ("colou?r", "color", true, true),
        ("colou?r", "colour", true, true),
        ("colou?r", "colouur", false, false),
        ("a{3}", "aaa", true, true),
        ("a{3}", "aa", false, false),
        ("a{2,3}", "aaaa", false, true),
        ("^a{2,3}$", "aaa", true, true),
        ("^a{2,3}$", "aaaa", false, false),
        ("a{2,}", "aaaaaaa", true, true),
        ("a{2,}", "a", false, false),
        ("x{0}", "", true, true),
        ("a{,2}", "a{,2}", true, true),          // not a repeat: literal braces
        ("a{", "a{", true, true),
        ("(ab)+", "ababab", true, true),
        ("(ab)+", "aba", false, true),
        ("(?:ab|cd)+e", "abcdabe", true, true),
        ("cat|dog", "dog", true, true),
        ("cat|dog", "hotdogs", false, true),
        ("cat|dog", "cow", false, false),
        ("^(cat|dog)$", "catdog", false, false),
        ("a(|b)c", "ac", true, true),
        ("a(|b)c", "abc", true, true),
        ("[abc]+", "cab", true, true),
        ("[a-z0-9_-]+", "build-42_x", true, true),
        ("[a-z]+", "Build", false, true),
        ("[^a-z]", "abc", false, false),
        ("[^a-z]", "abC", false, true),
        ("[]a]+", "]a]", true, true),
        ("[a-]+", "a-a", true, true),
        ("[-a]+", "-a", true, true),
        ("[.]", "x", false, false),
        ("[.]", ".", true, true),
        ("[\\d.]+", "1.2.3", true, true),
        ("[\\]]", "]", true, true),
        ("\\d+", "123", true, true),
        ("\\d+", "12a", false, true),
        ("\\D", "1", false, false),
        ("\\w+", "a_Z9", true, true),
        ("\\W", "a_Z9", false, false),
        ("\\s", "a b", false, true),
        ("\\S+", "ab", true, true),
        ("v1\\.0", "v1.0", true, true),
        ("v1\\.0", "v1x0", false, false),
        ("a\\+b", "a+b", true, true),
        ("\\(x\\)", "(x)", true, true),
        ("team/.*", "team/app/sub", true, true),
        ("team/.*", "other/team/app", false, true),
        ("(a*)*", "aaa", true, true),
        ("(a*)+b", "aab", true, true),
        ("(a|a)*c", "aaac", true, true),
        ("x*?y", "xxy", true, true),
        ("é+", "éé", true, true),
        ("[à-ÿ]", "ü", true, true),
    ]

    @Test(arguments: table)
    func matches(_ row: (String, String, Bool, Bool)) throws {
        let (pattern, text, whole, somewhere) = row
        let r = try LinearRegex(pattern)
        #expect(r.matchesWhole(text) == whole, "\(pattern) whole \(text)")
        #expect(r.matchesSomewhere(text) == somewhere, "\(pattern) in \(text)")
    }

    @Test(arguments: [
        ("(a", "unmatched ("), ("a)", "unmatched )"), ("[a", "unmatched ["), ("*a", "nothing to repeat"),
        ("a**", "quantifier cannot follow"), ("a{3,1}", "bounds reversed"), ("a{257}", "above 256"),
        ("(a)\\1", "backreferences"), ("(?<n>a)\\k<n>", "not supported"), ("(?=a)", "lookaround"),
        ("(?!a)", "lookaround"), ("(?<=a)b", "lookaround"), ("(?i)a", "flags"), ("\\bword", "not supported"),
        ("a++", "possessive"), ("\\", "trailing backslash"), ("\\q", "unknown escape"), ("[z-a]", "out of order"),
        ("[[:alpha:]]", "POSIX"), ("^*", "nothing to repeat"), ("\\p{L}", "unknown escape"),
        ("((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))", "nested"),
        ("((a{100}){100}){100}", "too complex"),
    ])
    func refuses(_ row: (String, String)) {
        do {
            _ = try LinearRegex(row.0)
            Issue.record("accepted \(row.0)")
        } catch {
            #expect(error.description.contains(row.1), "\(row.0): \(error)")
        }
    }

    @Test func pathologicalPatternsStayLinear() throws {
        // Each of these backtracks exponentially in Swift Regex / NSRegularExpression.
        let cases: [(String, String)] = [
            ("^(a+)+b$", String(repeating: "a", count: 5000)),
            ("(a|aa)+c", String(repeating: "a", count: 5000)),
            ("(a*)*b", String(repeating: "a", count: 5000)),
            ("^(\\w+\\s?)*$", String(repeating: "ab ", count: 2000) + "!"),
            ("(.*a){20}", String(repeating: "a", count: 19) + String(repeating: "b", count: 4000)),
            ("(x+x+)+y", String(repeating: "x", count: 5000)),
        ]
        for (pattern, text) in cases {
            let r = try LinearRegex(pattern)
            #expect(!r.matchesWhole(text), "\(pattern)")
            #expect(!r.matchesSomewhere(text), "\(pattern)")
        }
        #expect(try LinearRegex("^(a+)+b$").matchesWhole(String(repeating: "a", count: 5000) + "b"))
    }
}
