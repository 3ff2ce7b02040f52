import Access
import Backends
import struct Crypto.SymmetricKey
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import Testing
@testable import CacheFeature

private func basic(_ user: String, _ password: String) -> HTTPFields {
    [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString(), .contentType: "application/json"]
}

/// Tenant isolation of cache rules (issue 17 item 5): a rule fills only the repositories its
/// target pattern names, whatever a client writes in the path (`..`, encoded slashes, case); its
/// grammar refuses such names; only a registry-wide Owner creates one (an Owner of one namespace,
/// for its own or another's, may not); and two rules' targets never overlap.
@Suite struct CacheIsolationTests {
    @Test(arguments: ["mirror/..", "mirror/../team-b/app", "mirror/%2e%2e/team-b", "mirror%2fteam-b/app", "mirror/%2Fteam-b",
                      "mirror/App", "MIRROR/app", "mirror//app", "mirror/", "mirrorx/app", "mirror", "team-b/app", "mirror/./app",
                      "mirror/app/", "/mirror/app", "mirror/app\u{0}"])
    func aCraftedNameMapsToNoUpstreamRepository(name: String) throws {
        let p = try CacheRulePattern(source: "registry.example/library/*", target: "mirror/*")
        #expect(p.upstreamRepository(for: name) == nil)
        // …and an exact rule maps its one name only.
        let exact = try CacheRulePattern(source: "registry.example/library/redis", target: "mirror/redis")
        #expect(exact.upstreamRepository(for: name) == nil)
        #expect(exact.upstreamRepository(for: "mirror/redis") == "library/redis")
    }

    @Test(arguments: [
        ("registry.example/lib/*", "mirror/../team-b/*"), ("registry.example/lib/*", "Mirror/*"),
        ("registry.example/lib/*", "mirror%2Fteam-b/*"), ("registry.example/lib/*", "mirror//x/*"),
        ("registry.example/lib/*", "../team-b/*"), ("registry.example/lib/*", "/team-b/*"), ("registry.example/lib/*", "*"),
        ("registry.example/lib/*", "mirror/*/*"), ("registry.example/lib/*", "mirror/x*"),
        ("registry.example/lib/../x/*", "mirror/*"), ("registry.example/LIB/*", "mirror/*"),
        ("registry.example/lib%2F..%2Fx/*", "mirror/*"), ("registry.example//lib/*", "mirror/*"),
        ("registry.example@evil.example/lib/*", "mirror/*"), ("registry.example:0/lib/*", "mirror/*"),
    ])
    func aCraftedPatternIsRefused(source: String, target: String) {
        #expect(throws: CacheError.self) { try CacheRulePattern(source: source, target: target) }
    }

    @Test func aRuleWritesOnlyBelowItsTargetAndOnlyARegistryOwnerMakesOne() async throws {
        let upstream = PullThroughTests.Upstream()
        let m = PullThroughTests.manifest([PullThroughTests.other])
        upstream.serve(m, tag: "v1", blobs: [PullThroughTests.config, PullThroughTests.other])
        try await PullThroughTests.withUpstream(upstream) { port in
            let (registry, access, quiet) = try await PullThroughTests.registryWithOwner("berth-cache-isolation-")
            let bootstrap = Actor(name: "owner", address: "-")
            // Two tenants: alice owns team-a/*, bob pushes to team-b/*.
            let (_, alicePassword) = try await access.createIdentity(bootstrap, name: "alice")
            _ = try await access.assignRole(bootstrap, assignee: "alice", role: "Owner", scope: "team-a/*")
            let (_, bobPassword) = try await access.createIdentity(bootstrap, name: "bob")
            _ = try await access.assignRole(bootstrap, assignee: "bob", role: "Push", scope: "team-b/*")
            let alice = basic("alice", try #require(alicePassword))
            let bob = basic("bob", try #require(bobPassword))
            let owner = basic("owner", "owner-pw")
            let service = CacheService(store: registry.metadata as! any CacheRuleStore, sealingKey: SymmetricKey(size: .bits256),
                                       policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            let feature = CacheFeature(service: service, pullThrough: PullThrough(registry: registry, service: service, access: access,
                                                                                  logger: quiet))
            let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [feature], host: "127.0.0.1",
                                                            port: 0, serviceName: "berth-test", logger: quiet)
            try await app.test(.router) { client in
                func rule(_ name: String, _ source: String, _ target: String) -> ByteBuffer {
                    ByteBuffer(string: #"{"name":"\#(name)","sourceRepository":"127.0.0.1:\#(port)/\#(source)","targetRepository":"\#(target)","plainHTTP":true}"#)
                }
                // A namespace's Owner makes no rule: not into another tenant's namespace, nor into
                // its own (a rule is registry-wide management); a pusher neither.
                for (who, target) in [(alice, "team-b/*"), (alice, "team-a/*"), (bob, "team-b/*")] {
                    let r = try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: who,
                                                     body: rule("tenant", "lib/*", target))
                    #expect(r.status == .forbidden, "\(target)")
                }
                #expect(try await service.rules().isEmpty)

                // Crafted targets and sources are refused by the API as by the grammar.
                for (source, target) in [("lib/*", "mirror/../team-b/*"), ("lib/*", "Mirror/*"), ("lib/*", "mirror%2Fteam-b/*"),
                                         ("lib/../team-b/*", "mirror/*"), ("LIB/*", "mirror/*")] {
                    let r = try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: owner,
                                                     body: rule("crafted", source, target))
                    #expect(r.status == .badRequest, "\(source) -> \(target)")
                }
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: owner,
                                                 body: rule("lib", "lib/*", "mirror/*")).status == .created)
                // A second rule over the first's namespace, or an update moving one there, is refused.
                for (source, target) in [("other/*", "mirror/team-b/*"), ("other/app", "mirror/app"), ("other/*", "mirror/*")] {
                    let r = try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: owner,
                                                     body: rule("second", source, target))
                    #expect(r.status == .conflict, "\(target)")
                }
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: owner,
                                                 body: rule("tenant-b", "other/*", "team-b/*")).status == .created)
                let moved = try await client.execute(uri: "/api/v1/cache-rules/tenant-b", method: .patch, headers: owner,
                                                     body: ByteBuffer(string: #"{"targetRepository":"mirror/sub/*"}"#))
                #expect(moved.status == .conflict)
                #expect(try await client.execute(uri: "/api/v1/cache-rules/tenant-b", method: .delete, headers: owner).status == .noContent)

                // Reads of crafted names under the rule's target reach no upstream and write nowhere.
                for path in ["mirror/../team-b/app", "mirror/%2e%2e/team-b/app", "mirror%2F..%2Fteam-b%2Fapp", "mirror/%2Fteam-b/app",
                             "MIRROR/app", "Mirror/app", "mirror/App", "mirror//app", "mirror/./app", "mirror/app/../../team-b/app",
                             "mirror/app%00", "team-b/app"] {
                    for who in [owner, bob] {
                        let r = try await client.execute(uri: "/v2/\(path)/manifests/v1", method: .get, headers: who)
                        #expect(r.status != .ok, "\(path)")
                    }
                }
                #expect(upstream.gets.withLockedValue { $0 }.isEmpty)
                for repository in ["team-b/app", "mirror/app", "app"] {
                    await #expect(throws: (any Error).self, "\(repository)") {
                        _ = try await registry.resolve(try RepositoryName(repository), .tag("v1"))
                    }
                }
                #expect(try await registry.metadata.repositories(after: nil, limit: 100).isEmpty)

                // The rule's own name fills its own repository, and asks upstream for the mapped name only.
                let got = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .get, headers: owner)
                #expect(got.status == .ok && Array(got.body.readableBytesView) == m)
                #expect(Set(upstream.gets.withLockedValue { $0 }.keys).allSatisfy { $0.hasPrefix("/v2/lib/app/") })
                #expect(try await StreamingPullTests.eventually {
                    (try? await registry.resolve(PullThroughTests.app, .tag("v1"))) == Digest.compute(m)
                })
                #expect(try await registry.metadata.repositories(after: nil, limit: 100) == ["mirror/app"])
            }
        }
    }
}
