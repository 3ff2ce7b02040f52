import Foundation
import Testing
import OCIModel
@testable import Access

@Suite struct PatternAndRoleTests {
    @Test func patterns() throws {
        let wildcard = try RepositoryPattern("apps/*")
        #expect(wildcard.matches("apps/web"))
        #expect(wildcard.matches("apps/web/api"))
        #expect(!wildcard.matches("apps"))
        #expect(!wildcard.matches("appsx/web"))
        #expect(!wildcard.matches("other/apps/web"))
        #expect(try RepositoryPattern("payments/api").matches("payments/api"))
        #expect(!(try RepositoryPattern("payments/api").matches("payments/api2")))
        #expect(try RepositoryPattern("*").matches("anything/at/all"))
        for bad in ["", "Apps/*", "apps/**", "*/x", "apps/*/x", "../x", "a//b"] {
            #expect(throws: RegistryError.self, "\(bad)") { try RepositoryPattern(bad) }
        }
    }

    @Test func grantsAddUp() throws {
        let p = Principal(kind: .token, name: "t", grants: [
            Grant(try RepositoryPattern("apps/*"), [.contentRead, .metadataRead]),
            Grant(try RepositoryPattern("apps/web"), [.contentWrite]),
        ])
        #expect(p.may([.contentRead, .contentWrite], on: "apps/web"))
        #expect(!p.may(.contentWrite, on: "apps/api"))
        #expect(p.may(.contentRead, on: "apps/api"))
        #expect(p.actions(on: "billing/api").isEmpty)
    }

    @Test func roles() {
        #expect(Role.pull.actions == [.contentRead, .metadataRead])
        #expect(Role.push.actions.isSuperset(of: [.contentWrite, .metadataWrite, .contentRead]))
        #expect(!Role.push.actions.contains(.contentDelete))
        #expect(Role.delete.actions == .contentDelete)
        #expect(Role.imageSigner.actions.contains(.signatureWrite) && !Role.imageSigner.actions.contains(.contentWrite))
        #expect(Role.reader.actions.contains(.managementRead) && !Role.reader.actions.contains(.managementWrite))
        #expect(Role.owner.actions == .all)
        #expect(Role(named: "pull") == .pull)
        #expect(Role(named: "nope") == nil)
    }

    @Test func scopeRequests() {
        #expect(ScopeRequest(parsing: "repository:a/b:pull,push") == ScopeRequest(type: "repository", name: "a/b", actions: ["pull", "push"]))
        #expect(ScopeRequest(parsing: "repository:localhost:5000/a:pull")?.name == "localhost:5000/a")
        #expect(ScopeRequest(parsing: "registry:catalog:*")?.actions == ["*"])
        #expect(ScopeRequest(parsing: "garbage") == nil)
        #expect(ScopeRequest(parsing: "::") == nil)
    }
}

@Suite struct NetworkTests {
    @Test func cidrs() throws {
        let ten = try CIDR("10.0.0.0/8")
        #expect(ten.contains(IPAddress("10.1.2.3")!))
        #expect(!ten.contains(IPAddress("11.0.0.1")!))
        #expect(try CIDR("192.168.1.7").contains(IPAddress("192.168.1.7")!))
        #expect(!(try CIDR("192.168.1.7").contains(IPAddress("192.168.1.8")!)))
        #expect(try CIDR("fd00::/8").contains(IPAddress("fd12::1")!))
        #expect(!(try CIDR("fd00::/8").contains(IPAddress("10.0.0.1")!)))
        #expect(try CIDR("0.0.0.0/0").contains(IPAddress("8.8.8.8")!))
        #expect(try CIDR("::ffff:10.0.0.0/104").contains(IPAddress("10.9.9.9")!))
        #expect(ten.description == "10.0.0.0/8")
        for bad in ["", "10.0.0.0/33", "300.1.1.1", "10.0.0.0/-1", "abc", "10.0.0.0/8/9", "::/129"] {
            #expect(throws: RegistryError.self, "\(bad)") { try CIDR(bad) }
        }
    }

    @Test func policyVerdicts() throws {
        var policy = NetworkPolicy()
        #expect(policy.evaluate(IPAddress("8.8.8.8")) == .allowed)
        policy.publicNetworkEnabled = false
        #expect(policy.evaluate(IPAddress("8.8.8.8")) == .blockedUnlessTrustedService)
        #expect(policy.evaluate(IPAddress("127.0.0.1")) == .allowed)
        #expect(policy.evaluate(IPAddress("10.2.3.4")) == .allowed)
        policy.ipRules = [try CIDR("8.8.8.0/24")]
        #expect(policy.evaluate(IPAddress("8.8.8.8")) == .allowed)
        policy.publicNetworkEnabled = true
        policy.defaultAction = .deny
        #expect(policy.evaluate(IPAddress("127.0.0.1")) == .blockedUnlessTrustedService)
        #expect(policy.evaluate(IPAddress("8.8.8.9")) == .allowed)
        #expect(policy.evaluate(nil) == .blockedUnlessTrustedService)
    }

    @Test func forwardedForIsBelievedOnlyFromTrustedProxies() throws {
        var policy = NetworkPolicy()
        let proxy = IPAddress("10.0.0.5")!
        #expect(policy.clientAddress(peer: proxy, forwardedFor: "1.2.3.4") == proxy)
        policy.trustedProxies = [try CIDR("10.0.0.0/24")]
        #expect(policy.clientAddress(peer: proxy, forwardedFor: "1.2.3.4") == IPAddress("1.2.3.4"))
        // a client cannot spoof by prepending: the right-most untrusted hop wins
        #expect(policy.clientAddress(peer: proxy, forwardedFor: "9.9.9.9, 1.2.3.4, 10.0.0.7") == IPAddress("1.2.3.4"))
        #expect(policy.clientAddress(peer: IPAddress("5.5.5.5")!, forwardedFor: "1.2.3.4") == IPAddress("5.5.5.5"))
        #expect(policy.clientAddress(peer: proxy, forwardedFor: "garbage") == proxy)
    }
}

@Suite struct SecretTests {
    @Test func generatedSecretsAndHashes() {
        let a = Secrets.generate(), b = Secrets.generate()
        #expect(a != b && a.count >= 43)
        let h = Secrets.hashGenerated(a)
        #expect(!h.contains(a))
        #expect(Secrets.verify(a, hash: h))
        #expect(!Secrets.verify(b, hash: h))
        let bcrypt = Secrets.hashPassword("correct horse", cost: 4)
        #expect(bcrypt.hasPrefix("$2"))
        #expect(Secrets.verify("correct horse", hash: bcrypt))
        #expect(!Secrets.verify("wrong horse", hash: bcrypt))
        #expect(Secrets.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!Secrets.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!Secrets.constantTimeEquals([1, 2], [1, 2, 3]))
    }

    @Test func failureLimiter() {
        let limiter = FailureLimiter()
        let now = Date()
        for _ in 0..<9 { limiter.recordFailure(keys: ["u:x"], now: now) }
        #expect(limiter.blockedFor(keys: ["u:x"], now: now) == nil)
        limiter.recordFailure(keys: ["u:x"], now: now)
        #expect((limiter.blockedFor(keys: ["u:x", "a:1"], now: now) ?? 0) > 0)
        #expect(limiter.blockedFor(keys: ["u:y"], now: now) == nil)
        #expect(limiter.blockedFor(keys: ["u:x"], now: now.addingTimeInterval(301)) == nil)
    }
}
