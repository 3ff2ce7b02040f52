import Foundation
import RegistryStore
import Testing

func cacheRule(_ name: String, target: String, source: String = "upstream.example/library/*", credentialSet: String? = nil) -> CacheRuleRecord {
    CacheRuleRecord(name: name, sourceRepository: source, targetRepository: target, credentialSet: credentialSet, plainHTTP: false,
                    tagFreshnessSeconds: 300, createdBy: "owner", createdAt: Date(timeIntervalSince1970: 1_700_000_000.5))
}

func credentialSet(_ name: String, password: Data = Data([7, 7])) -> CredentialSetRecord {
    CredentialSetRecord(name: name, loginServer: "upstream.example", username: "puller", sealedPassword: password,
                        createdAt: Date(timeIntervalSince1970: 1_700_000_001.25))
}

extension MetadataStoreConformance {
    static let cacheRuleCases: [Case] = [
        Case("targetsOverlap: exact names, a name under a prefix, nested prefixes; siblings do not") { _ in
            #expect(CacheRuleRecord.targetsOverlap("mirror/*", "mirror/redis"))
            #expect(CacheRuleRecord.targetsOverlap("mirror/redis", "mirror/*"))
            #expect(CacheRuleRecord.targetsOverlap("mirror/*", "mirror/hub/*"))
            #expect(CacheRuleRecord.targetsOverlap("a/b", "a/b"))
            #expect(!CacheRuleRecord.targetsOverlap("mirror/*", "mirror"))
            #expect(!CacheRuleRecord.targetsOverlap("mirror/*", "mirrors/*"))
            #expect(!CacheRuleRecord.targetsOverlap("a/b", "a/bc"))
        },
        Case("createCacheRule: stored as given, names unique, targets may not overlap, listed by name") { s in
            let b = try await s.createCacheRule(cacheRule("hub", target: "mirror/*"))
            let a = try await s.createCacheRule(cacheRule("ghcr", target: "ghcr/*", source: "ghcr.example/org/*"))
            let taken = try await s.createCacheRule(cacheRule("hub", target: "other/*"))
            let nested = try await s.createCacheRule(cacheRule("nested", target: "mirror/deep/*"))
            let exact = try await s.createCacheRule(cacheRule("exact", target: "ghcr/x"))
            #expect(a == .done && b == .done && taken == .nameTaken)
            #expect(nested == .targetOverlaps(rule: "hub") && exact == .targetOverlaps(rule: "ghcr"))
            let all = try await s.cacheRules()
            #expect(all == [cacheRule("ghcr", target: "ghcr/*", source: "ghcr.example/org/*"), cacheRule("hub", target: "mirror/*")])
            let one = try await s.cacheRule(name: "hub")
            let none = try await s.cacheRule(name: "nested")
            #expect(one == cacheRule("hub", target: "mirror/*") && none == nil)
        },
        Case("cache rules name existing credential sets only; a set in use cannot be deleted") { s in
            let missing = try await s.createCacheRule(cacheRule("hub", target: "mirror/*", credentialSet: "hub-creds"))
            #expect(missing == .noSuchCredentialSet)
            let made = try await s.createCredentialSet(credentialSet("hub-creds"))
            let again = try await s.createCredentialSet(credentialSet("hub-creds", password: Data([1])))
            #expect(made && !again)
            let created = try await s.createCacheRule(cacheRule("hub", target: "mirror/*", credentialSet: "hub-creds"))
            #expect(created == .done)
            let inUse = try await s.deleteCredentialSet(name: "hub-creds")
            #expect(inUse == .inUse(rules: ["hub"]))
            let kept = try await s.credentialSet(name: "hub-creds")
            #expect(kept == credentialSet("hub-creds"))
            let cleared = try await s.updateCacheRule(name: "hub", sourceRepository: nil, targetRepository: nil, credentialSet: .some(nil),
                                                      plainHTTP: nil, tagFreshnessSeconds: nil)
            #expect(cleared == .done)
            let deleted = try await s.deleteCredentialSet(name: "hub-creds")
            let deletedAgain = try await s.deleteCredentialSet(name: "hub-creds")
            #expect(deleted == .deleted && deletedAgain == .notFound)
        },
        Case("updateCacheRule: changes only the given fields, checks overlap against the others; unknown is notFound") { s in
            _ = try await s.createCacheRule(cacheRule("a", target: "a/*"))
            _ = try await s.createCacheRule(cacheRule("b", target: "b/*"))
            _ = try await s.createCredentialSet(credentialSet("c"))
            let changed = try await s.updateCacheRule(name: "a", sourceRepository: "up.example:5000/x/*", targetRepository: "a2/*",
                                                      credentialSet: .some("c"), plainHTTP: true, tagFreshnessSeconds: 60)
            var expected = cacheRule("a", target: "a2/*", source: "up.example:5000/x/*", credentialSet: "c")
            expected.plainHTTP = true
            expected.tagFreshnessSeconds = 60
            let stored = try await s.cacheRule(name: "a")
            #expect(changed == .done && stored == expected)
            let sameTarget = try await s.updateCacheRule(name: "a", sourceRepository: nil, targetRepository: "a2/*", credentialSet: nil,
                                                         plainHTTP: nil, tagFreshnessSeconds: nil)
            #expect(sameTarget == .done)
            let overlap = try await s.updateCacheRule(name: "a", sourceRepository: nil, targetRepository: "b/x", credentialSet: nil,
                                                      plainHTTP: nil, tagFreshnessSeconds: nil)
            let noSet = try await s.updateCacheRule(name: "a", sourceRepository: nil, targetRepository: nil, credentialSet: .some("zz"),
                                                    plainHTTP: nil, tagFreshnessSeconds: nil)
            let unknown = try await s.updateCacheRule(name: "z", sourceRepository: nil, targetRepository: nil, credentialSet: nil,
                                                      plainHTTP: nil, tagFreshnessSeconds: 1)
            let after = try await s.cacheRule(name: "a")
            #expect(overlap == .targetOverlaps(rule: "b") && noSet == .noSuchCredentialSet && unknown == .notFound && after == expected)
            // Rebound to another principal: only `createdBy` changes; a refused change rebinds nothing.
            let refusedRebind = try await s.updateCacheRule(name: "a", sourceRepository: nil, targetRepository: "b/y", credentialSet: nil,
                                                            plainHTTP: nil, tagFreshnessSeconds: nil, createdBy: "identity:other")
            let notRebound = try await s.cacheRule(name: "a")
            #expect(refusedRebind == .targetOverlaps(rule: "b") && notRebound == expected)
            let rebound = try await s.updateCacheRule(name: "a", sourceRepository: nil, targetRepository: nil, credentialSet: nil,
                                                      plainHTTP: nil, tagFreshnessSeconds: nil, createdBy: "identity:other")
            var reboundExpected = expected
            reboundExpected.createdBy = "identity:other"
            let afterRebind = try await s.cacheRule(name: "a")
            #expect(rebound == .done && afterRebind == reboundExpected)
            let gone = try await s.deleteCacheRule(name: "a")
            let goneAgain = try await s.deleteCacheRule(name: "a")
            let left = try await s.cacheRules()
            #expect(gone && !goneAgain && left.map(\.name) == ["b"])
        },
        Case("updateCredentialSet: changes only the given fields; unknown is false") { s in
            _ = try await s.createCredentialSet(credentialSet("c"))
            let changed = try await s.updateCredentialSet(name: "c", loginServer: nil, username: "other", sealedPassword: Data([9]))
            var expected = credentialSet("c", password: Data([9]))
            expected.username = "other"
            let stored = try await s.credentialSet(name: "c")
            let unknown = try await s.updateCredentialSet(name: "d", loginServer: "x.example", username: nil, sealedPassword: nil)
            let all = try await s.credentialSets()
            #expect(changed && stored == expected && !unknown && all == [expected])
        },
        Case("every change of a rule or credential set appends a cache-rules setting event; refused or unknown ones do not") { s in
            func changes() async throws -> Int {
                try await s.events(after: 0, limit: 1000).filter {
                    $0.action == .setting && $0.detail == CacheRuleRecord.changeEventDetail && $0.repository.isEmpty
                }.count
            }
            _ = try await s.createCredentialSet(credentialSet("c"))
            #expect(try await changes() == 0)   // a new set is used by no rule yet
            _ = try await s.createCacheRule(cacheRule("a", target: "a/*"))
            #expect(try await changes() == 1)
            _ = try await s.createCacheRule(cacheRule("a", target: "b/*"))   // name taken
            _ = try await s.createCacheRule(cacheRule("x", target: "a/y"))   // overlaps
            #expect(try await changes() == 1)
            _ = try await s.updateCacheRule(name: "a", sourceRepository: nil, targetRepository: nil, credentialSet: .some("c"), plainHTTP: nil,
                                            tagFreshnessSeconds: nil)
            #expect(try await changes() == 2)
            _ = try await s.updateCacheRule(name: "z", sourceRepository: nil, targetRepository: nil, credentialSet: nil, plainHTTP: nil,
                                            tagFreshnessSeconds: 1)
            #expect(try await changes() == 2)
            _ = try await s.updateCredentialSet(name: "c", loginServer: nil, username: nil, sealedPassword: Data([3]))
            #expect(try await changes() == 3)
            _ = try await s.updateCredentialSet(name: "d", loginServer: nil, username: nil, sealedPassword: Data([3]))
            #expect(try await changes() == 3)
            _ = try await s.deleteCacheRule(name: "a")
            _ = try await s.deleteCacheRule(name: "a")
            #expect(try await changes() == 4)
        },
    ]
}
