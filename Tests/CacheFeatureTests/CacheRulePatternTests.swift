import Testing
@testable import CacheFeature

@Suite struct CacheRulePatternTests {
    @Test func aPrefixRuleMapsEachRepositoryBelowItsTarget() throws {
        let p = try CacheRulePattern(source: "Upstream.Example:5000/library/*", target: "mirror/*")
        #expect(p.registry == "upstream.example:5000")
        #expect(p.source == "upstream.example:5000/library/*" && p.target == "mirror/*")
        #expect(p.upstreamRepository(for: "mirror/redis") == "library/redis")
        #expect(p.upstreamRepository(for: "mirror/team/app") == "library/team/app")
        // Not below the prefix: the prefix itself, a sibling with the same start, another repository.
        #expect(p.upstreamRepository(for: "mirror") == nil)
        #expect(p.upstreamRepository(for: "mirrors/redis") == nil)
        #expect(p.upstreamRepository(for: "other/redis") == nil)
    }

    @Test func anExactRuleMapsOneRepository() throws {
        let p = try CacheRulePattern(source: "registry.example/library/redis", target: "cache/redis")
        #expect(p.upstreamRepository(for: "cache/redis") == "library/redis")
        #expect(p.upstreamRepository(for: "cache/redis/x") == nil)
        #expect(p.upstreamRepository(for: "cache/redi") == nil)
    }

    @Test func aMappedNameMustStillBeARepositoryName() throws {
        let long = String(repeating: "a", count: 200)
        let p = try CacheRulePattern(source: "registry.example/\(long)/*", target: "m/*")
        #expect(p.upstreamRepository(for: "m/" + String(repeating: "b", count: 60)) == nil)   // over 255 once mapped
        #expect(p.upstreamRepository(for: "m/b") == "\(long)/b")
    }

    @Test(arguments: [
        ("registry.example/library/*", "mirror/redis"),      // prefix with an exact target
        ("registry.example/library/redis", "mirror/*"),      // exact with a prefix target
        ("library/*", "mirror/*"),                            // no host... "library" is taken as the host, "*" is no repository
        ("registry.example/*", "mirror/*"),                   // no repository part
        ("registry.example:99999/library/*", "mirror/*"),     // port out of range
        ("reg istry.example/library/*", "mirror/*"),          // bad host
        ("https://registry.example/library/*", "mirror/*"),   // a URL, not a host
        ("registry.example/Library/*", "mirror/*"),           // upper case repository
        ("registry.example/library/*", "*"),                  // every repository
        ("registry.example/library/*", "Mirror/*"),
        ("registry.example/library/*", "mirror//*"),
        ("registry.example/library/*", ""),
    ])
    func aBadRuleIsRefusedWithItsReason(source: String, target: String) {
        #expect(throws: CacheError.self) { _ = try CacheRulePattern(source: source, target: target) }
    }
}
