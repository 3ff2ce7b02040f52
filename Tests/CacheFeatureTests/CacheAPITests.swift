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
import ImportFeature

private func basic(_ user: String, _ password: String) -> HTTPFields {
    [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString(), .contentType: "application/json"]
}

/// The cache rules' API and the fallback in the `/v2/` read path, over HTTP: management needs an
/// Owner, a pull needs pull rights on the target before anything is fetched, and a repository no
/// rule covers is never fetched.
@Suite struct CacheAPITests {
    @Test func rulesAreAnOwnersAndAPullThroughTheCacheNeedsPullRights() async throws {
        let upstream = PullThroughTests.Upstream()
        let m = PullThroughTests.manifest([PullThroughTests.other])
        upstream.serve(m, tag: "v1", blobs: [PullThroughTests.config, PullThroughTests.other])
        try await PullThroughTests.withUpstream(upstream) { port in
            let (registry, access, quiet) = try await PullThroughTests.registryWithOwner("berth-cache-api-")
            let owner = Actor(name: "owner", address: "-")
            let (_, devPassword) = try await access.createIdentity(owner, name: "dev")
            _ = try await access.assignRole(owner, assignee: "dev", role: "Pull", scope: "other/*")
            let dev = basic("dev", try #require(devPassword))
            let service = CacheService(store: registry.metadata as! any CacheRuleStore, sealingKey: SymmetricKey(size: .bits256),
                                       policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            let feature = CacheFeature(service: service, pullThrough: PullThrough(registry: registry, service: service, logger: quiet))
            let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [feature], host: "127.0.0.1",
                                                            port: 0, serviceName: "berth-test", logger: quiet)
            try await app.test(.router) { client in
                let rule = #"{"name":"lib","sourceRepository":"127.0.0.1:\#(port)/lib/*","targetRepository":"mirror/*","plainHTTP":true}"#
                // Only an Owner manages rules.
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: dev,
                                                 body: ByteBuffer(string: rule)).status == .forbidden)
                let created = try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: basic("owner", "owner-pw"),
                                                       body: ByteBuffer(string: rule))
                #expect(created.status == .created)
                let overlapping = #"{"name":"x","sourceRepository":"127.0.0.1:\#(port)/lib/x","targetRepository":"mirror/x","plainHTTP":true}"#
                let refused = try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: basic("owner", "owner-pw"),
                                                       body: ByteBuffer(string: overlapping))
                #expect(refused.status == .conflict)
                let bad = #"{"name":"y","sourceRepository":"127.0.0.1:\#(port)/lib/*","targetRepository":"*"}"#
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: basic("owner", "owner-pw"),
                                                 body: ByteBuffer(string: bad)).status == .badRequest)
                // A credential set's password is never shown.
                let set = #"{"name":"creds","loginServer":"127.0.0.1:\#(port)","username":"u","password":"pa55-word"}"#
                let made = try await client.execute(uri: "/api/v1/credential-sets", method: .post, headers: basic("owner", "owner-pw"),
                                                    body: ByteBuffer(string: set))
                #expect(made.status == .created && !String(buffer: made.body).contains("pa55-word"))
                let listed = try await client.execute(uri: "/api/v1/credential-sets", method: .get, headers: basic("owner", "owner-pw"))
                #expect(listed.status == .ok && !String(buffer: listed.body).contains("pa55-word"))

                // Without pull rights on the target, nothing is fetched.
                let refusedPull = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .get, headers: dev)
                #expect(refusedPull.status == .forbidden)
                #expect(upstream.gets.withLockedValue { $0 }.isEmpty)
                // A repository no rule covers is never fetched.
                let uncovered = try await client.execute(uri: "/v2/other/app/manifests/v1", method: .get, headers: dev)
                #expect(uncovered.status == .notFound)
                #expect(upstream.gets.withLockedValue { $0 }.isEmpty)
                // The Owner pulls through the cache: HEAD, then GET and a blob, from the cache.
                let head = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .head, headers: basic("owner", "owner-pw"))
                #expect(head.status == .ok && head.headers[HTTPField.Name("Docker-Content-Digest")!] == Digest.compute(m).string)
                let got = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .get, headers: basic("owner", "owner-pw"))
                #expect(got.status == .ok && Array(got.body.readableBytesView) == m)
                let blob = try await client.execute(uri: "/v2/mirror/app/blobs/\(Digest.compute(PullThroughTests.other))", method: .get,
                                                    headers: basic("owner", "owner-pw"))
                #expect(blob.status == .ok && Array(blob.body.readableBytesView) == PullThroughTests.other)
                #expect(upstream.count("/v2/lib/app/manifests/v1") == 1)

                // A covered repository takes no push, not even from an Owner (review: a pusher on
                // mirror/* had their manifest served as the upstream's tag); others still do.
                let owner = basic("owner", "owner-pw")
                let shadow = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .put,
                                                      headers: [.authorization: owner[.authorization]!,
                                                                .contentType: MediaType.ociManifest],
                                                      body: ByteBuffer(bytes: m))
                #expect(shadow.status == .forbidden && String(buffer: shadow.body).contains("pull-through cache"))
                let upload = try await client.execute(uri: "/v2/mirror/new/blobs/uploads/", method: .post, headers: owner)
                #expect(upload.status == .forbidden)
                let elsewhere = try await client.execute(uri: "/v2/other/app/blobs/uploads/", method: .post, headers: owner)
                #expect(elsewhere.status == .accepted)
                // the cached tag is still the upstream's
                let after = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .get, headers: owner)
                #expect(after.status == .ok && Array(after.body.readableBytesView) == m)
            }
        }
    }

    /// A rule fills with its creator's rights, asked at every fill: the creator's Owner role taken
    /// away stops new fills (403, upstream not asked) while what is cached is still served. An
    /// import into a cache target is refused as a client's push there is (review M1: the refusal
    /// lived in `/v2/` only, and import writes through the core).
    @Test func aRuleFillsOnlyWhileItsCreatorMayPushAndAnImportIntoItsTargetIsRefused() async throws {
        let upstream = PullThroughTests.Upstream()
        let m = PullThroughTests.manifest([PullThroughTests.other])
        upstream.serve(m, tag: "v1", blobs: [PullThroughTests.config, PullThroughTests.other])
        upstream.serve(m, tag: "v2", blobs: [PullThroughTests.config, PullThroughTests.other])
        try await PullThroughTests.withUpstream(upstream) { port in
            var quiet = Logger(label: "test")
            quiet.logLevel = .critical
            let dir = NSTemporaryDirectory() + "berth-cache-creator-" + UUID().uuidString
            let registry = try Registry.embedded(dataDirectory: dir, logger: quiet)
            let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore,
                                                      keyDirectory: dir + "/keys")
            _ = try await access.bootstrap(ownerPassword: "owner-pw")
            let bootstrap = Actor(name: "owner", address: "-")
            let (_, opsPassword) = try await access.createIdentity(bootstrap, name: "ops")
            _ = try await access.assignRole(bootstrap, assignee: "ops", role: "Owner", scope: "*")
            let ops = basic("ops", try #require(opsPassword))
            let owner = basic("owner", "owner-pw")
            let policy = try OutboundPolicy(allow: "127.0.0.1/32")
            let service = CacheService(store: registry.metadata as! any CacheRuleStore, sealingKey: SymmetricKey(size: .bits256),
                                       policy: policy)
            let feature = CacheFeature(service: service, pullThrough: PullThrough(registry: registry, service: service, access: access,
                                                                                  logger: quiet))
            let app = try await BerthServer.makeApplication(registry: registry, access: access,
                                                            features: [feature, ImportFeature(policy: policy)], host: "127.0.0.1",
                                                            port: 0, serviceName: "berth-test", logger: quiet)
            try await app.test(.router) { client in
                let rule = #"{"name":"lib","sourceRepository":"127.0.0.1:\#(port)/lib/*","targetRepository":"mirror/*","plainHTTP":true}"#
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: ops,
                                                 body: ByteBuffer(string: rule)).status == .created)
                let v1 = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .get, headers: owner)
                #expect(v1.status == .ok && Array(v1.body.readableBytesView) == m)
                // Answered before the image was stored; the fill goes on in the background.
                #expect(try await StreamingPullTests.eventually {
                    (try? await registry.resolve(PullThroughTests.app, .tag("v1"))) == Digest.compute(m)
                })

                // An import into the cache's target is refused, whoever asks; elsewhere it is accepted.
                let into = #"{"source":"127.0.0.1:\#(port)/lib/app:v1","image":"mirror/app:mine","plainHTTP":true}"#
                let refused = try await client.execute(uri: "/api/v1/imports", method: .post, headers: owner, body: ByteBuffer(string: into))
                #expect(refused.status == .forbidden && String(buffer: refused.body).contains("pull-through cache"))
                let outside = #"{"source":"127.0.0.1:\#(port)/lib/app:v1","image":"copies/app:v1","plainHTTP":true}"#
                #expect(try await client.execute(uri: "/api/v1/imports", method: .post, headers: owner,
                                                 body: ByteBuffer(string: outside)).status == .accepted)

                // The creator loses Owner: no new fill, upstream not asked; the cached tag is still served.
                try await access.removeRole(bootstrap, assignee: "ops", role: "Owner", scope: "*")
                let asked = upstream.count("/v2/lib/app/manifests/v2")
                let v2 = try await client.execute(uri: "/v2/mirror/app/manifests/v2", method: .get, headers: owner)
                #expect(v2.status == .forbidden && String(buffer: v2.body).contains("creator"))
                #expect(upstream.count("/v2/lib/app/manifests/v2") == asked)
                let cached = try await client.execute(uri: "/v2/mirror/app/manifests/\(Digest.compute(m))", method: .get, headers: owner)
                #expect(cached.status == .ok)
                // Given back (as an administrator re-granting it would), the rule fills again.
                _ = try await access.assignRole(bootstrap, assignee: "ops", role: "Owner", scope: "*")
                let again = try await client.execute(uri: "/v2/mirror/app/manifests/v2", method: .get, headers: owner)
                #expect(again.status == .ok)
            }
        }
    }
    /// A PATCH by another principal than the one a rule runs as rebinds the rule to the patcher
    /// (review: the rule kept its creator's rights, so whoever may change a rule could point it
    /// at a target only its creator may fill): its fills then need the patcher's Push, asked at
    /// every fill as for a new rule, and the change is audited with whom it was rebound from.
    @Test func aPatchByAnotherPrincipalRebindsTheRuleToThePatcher() async throws {
        let upstream = PullThroughTests.Upstream()
        let m = PullThroughTests.manifest([PullThroughTests.other])
        upstream.serve(m, tag: "v1", blobs: [PullThroughTests.config, PullThroughTests.other])
        try await PullThroughTests.withUpstream(upstream) { port in
            let (registry, access, quiet) = try await PullThroughTests.registryWithOwner("berth-cache-rebind-")
            let bootstrap = Actor(name: "owner", address: "-")
            var made: [String: HTTPFields] = [:]
            for name in ["ops", "lead"] {
                let (_, password) = try await access.createIdentity(bootstrap, name: name)
                _ = try await access.assignRole(bootstrap, assignee: name, role: "Owner", scope: "*")
                made[name] = basic(name, try #require(password))
            }
            let headers = made
            let service = CacheService(store: registry.metadata as! any CacheRuleStore, sealingKey: SymmetricKey(size: .bits256),
                                       policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            let feature = CacheFeature(service: service, pullThrough: PullThrough(registry: registry, service: service, access: access,
                                                                                  logger: quiet))
            let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [feature], host: "127.0.0.1",
                                                            port: 0, serviceName: "berth-test", logger: quiet)
            try await app.test(.router) { client in
                let rule = #"{"name":"lib","sourceRepository":"127.0.0.1:\#(port)/lib/*","targetRepository":"mirror/*","plainHTTP":true}"#
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: headers["ops"]!,
                                                 body: ByteBuffer(string: rule)).status == .created)
                // The creator's own change keeps the rule as it is bound.
                let own = try await client.execute(uri: "/api/v1/cache-rules/lib", method: .patch, headers: headers["ops"]!,
                                                   body: ByteBuffer(string: #"{"tagFreshnessSeconds":30}"#))
                #expect(own.status == .ok)
                #expect(try await service.rule("lib").createdBy == "identity:ops")
                // Another principal's change rebinds it.
                let patched = try await client.execute(uri: "/api/v1/cache-rules/lib", method: .patch, headers: headers["lead"]!,
                                                       body: ByteBuffer(string: #"{"targetRepository":"mirror2/*"}"#))
                #expect(patched.status == .ok && String(buffer: patched.body).contains("identity:lead"))
                #expect(try await service.rule("lib").createdBy == "identity:lead")
                // Audited, with whom it was rebound from.
                let audit = try await client.execute(uri: "/api/v1/audit", method: .get, headers: basic("owner", "owner-pw"))
                let text = String(buffer: audit.body)
                #expect(text.contains("cache-rule.update") && text.contains("rebound from identity:ops to identity:lead"))
                // The fill runs with the patcher's rights: the patcher loses them, no fill (upstream
                // not asked), though the former creator still holds them.
                try await access.removeRole(bootstrap, assignee: "lead", role: "Owner", scope: "*")
                let refused = try await client.execute(uri: "/v2/mirror2/app/manifests/v1", method: .get, headers: basic("owner", "owner-pw"))
                #expect(refused.status == .forbidden && String(buffer: refused.body).contains("identity:lead"))
                #expect(upstream.manifestGets == 0)
                // Given back, it fills.
                _ = try await access.assignRole(bootstrap, assignee: "lead", role: "Owner", scope: "*")
                let filled = try await client.execute(uri: "/v2/mirror2/app/manifests/v1", method: .get, headers: basic("owner", "owner-pw"))
                #expect(filled.status == .ok && Array(filled.body.readableBytesView) == m)
            }
        }
    }
    /// Over HTTP: the pull of a multi-arch index whose children each fit under the target's quota
    /// but together do not is answered 403 DENIED with the quota's message, and nothing of it is
    /// stored (manifests, blobs) nor asked of the upstream's blobs.
    @Test func thePullOfAnIndexOverTheQuotaIsRefusedWhole() async throws {
        let upstream = PullThroughTests.Upstream()
        let a = [UInt8](repeating: 5, count: 100_000), b = [UInt8](repeating: 6, count: 100_000)
        let (ma, mb) = (PullThroughTests.manifest([a]), PullThroughTests.manifest([b]))
        let index = Array("""
        {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[\
        {"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(ma))","size":\(ma.count),"platform":{"architecture":"amd64","os":"linux"}},\
        {"mediaType":"\(MediaType.ociManifest)","digest":"\(Digest.compute(mb))","size":\(mb.count),"platform":{"architecture":"arm64","os":"linux"}}]}
        """.utf8)
        upstream.serve(ma, tag: "child-a", blobs: [PullThroughTests.config, a])
        upstream.serve(mb, tag: "child-b", blobs: [b])
        upstream.serve(index, tag: "v1", blobs: [])
        try await PullThroughTests.withUpstream(upstream) { port in
            let (registry, access, quiet) = try await PullThroughTests.registryWithOwner("berth-cache-index-quota-")
            let service = CacheService(store: registry.metadata as! any CacheRuleStore, sealingKey: SymmetricKey(size: .bits256),
                                       policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            let feature = CacheFeature(service: service, pullThrough: PullThrough(registry: registry, service: service, access: access,
                                                                                  logger: quiet))
            let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [feature], host: "127.0.0.1",
                                                            port: 0, serviceName: "berth-test", logger: quiet)
            let owner = basic("owner", "owner-pw")
            try await app.test(.router) { client in
                let rule = #"{"name":"lib","sourceRepository":"127.0.0.1:\#(port)/lib/*","targetRepository":"mirror/*","plainHTTP":true}"#
                #expect(try await client.execute(uri: "/api/v1/cache-rules", method: .post, headers: owner,
                                                 body: ByteBuffer(string: rule)).status == .created)
                let quota = #"{"name":"mirrors","prefix":"mirror/","limitBytes":150000}"#
                #expect(try await client.execute(uri: "/api/v1/quotas", method: .post, headers: owner,
                                                 body: ByteBuffer(string: quota)).status == .created)
                for reference in ["v1", Digest.compute(index).string] {
                    let refused = try await client.execute(uri: "/v2/mirror/app/manifests/\(reference)", method: .get, headers: owner)
                    #expect(refused.status == .forbidden)
                    #expect(String(buffer: refused.body).contains("DENIED") && String(buffer: refused.body).contains("mirrors"))
                }
                #expect(upstream.blobGets == 0)
                for m in [ma, mb, index] {
                    #expect((try? await registry.manifest(PullThroughTests.app, .digest(Digest.compute(m)))) == nil)
                }
                for blob in [PullThroughTests.config, a, b] {
                    #expect((try? await registry.blobSize(PullThroughTests.app, Digest.compute(blob))) == nil)
                }
                // Room made: the same pull is served, and the whole index filled.
                #expect(try await client.execute(uri: "/api/v1/quotas/mirrors", method: .delete, headers: owner).status.code < 300)
                let served = try await client.execute(uri: "/v2/mirror/app/manifests/v1", method: .get, headers: owner)
                #expect(served.status == .ok && Array(served.body.readableBytesView) == index)
                #expect(try await StreamingPullTests.eventually {
                    (try? await registry.resolve(PullThroughTests.app, .tag("v1"))) == Digest.compute(index)
                })
            }
        }
    }
}
