import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Testing
@testable import HTTPAPI

@Suite struct QuarantineTests {
    func identity(_ access: AccessControl, _ name: String, role: String) async throws -> HTTPFields {
        _ = try await access.createIdentity(testActor, name: name, withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: name)
        _ = try await access.assignRole(testActor, assignee: name, role: role, scope: "*")
        return basic(name, password)
    }

    func setPolicy(_ client: any TestClientProtocol, _ json: String) async throws -> String {
        let r = try await client.execute(uri: "/api/v1/quarantine", method: .patch, headers: owner, body: buf(Array(json.utf8)))
        #expect(r.status == .ok)
        return String(buffer: r.body)
    }

    func verdict(_ client: any TestClientProtocol, _ auth: HTTPFields, _ repo: String, _ digest: String, _ state: String,
                 _ reason: String) async throws -> HTTPResponse.Status {
        let body = #"{"repository":"\#(repo)","digest":"\#(digest)","state":"\#(state)","reason":"\#(reason)"}"#
        return try await client.execute(uri: "/api/v1/quarantine/manifests", method: .patch, headers: auth, body: buf(Array(body.utf8))).status
    }

    @Test func pushedImagesWaitForTheGate() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller", role: "Pull")
        let gate = try await identity(access, "scanner", role: "QuarantineWriter")
        try await app.test(.router) { client in
            #expect(try await push(client, "old/app", tag: "1", auth: owner, seed: "old") == .created)
            // a dry run lists what would become unpullable, and changes nothing
            let dry = try await setPolicy(client, #"{"enabled":true,"grandfatherExisting":false,"dryRun":true}"#)
            #expect(dry.contains("old/app"))
            #expect(try await client.execute(uri: "/v2/old/app/manifests/1", method: .get, headers: puller).status == .ok)
            // switched on, grandfathering what exists
            _ = try await setPolicy(client, #"{"enabled":true,"grandfatherExisting":true}"#)
            #expect(try await client.execute(uri: "/v2/old/app/manifests/1", method: .get, headers: puller).status == .ok)

            #expect(try await push(client, "new/app", tag: "1", auth: owner, seed: "new") == .created)
            let digest = try await client.execute(uri: "/v2/new/app/manifests/1", method: .head, headers: owner).headers[.testDigest]!
            let denied = try await client.execute(uri: "/v2/new/app/manifests/1", method: .get, headers: puller)
            #expect(denied.status == .forbidden && errorCode(denied) == "DENIED")
            #expect(String(buffer: denied.body).contains("manifest quarantined"))
            #expect(try await client.execute(uri: "/v2/new/app/manifests/\(digest)", method: .head, headers: puller).status == .forbidden)
            // tags still list; the gate (and the owner) can read it
            #expect(String(buffer: try await client.execute(uri: "/v2/new/app/tags/list", method: .get, headers: puller).body).contains("\"1\""))
            #expect(try await client.execute(uri: "/v2/new/app/manifests/1", method: .get, headers: gate).status == .ok)
            // only a QuarantineWriter decides
            #expect(try await verdict(client, puller, "new/app", digest, "Passed", "looks fine") == .forbidden)
            #expect(try await verdict(client, gate, "new/app", digest, "Failed", "CVE-2026-0001 critical") == .ok)
            let failed = try await client.execute(uri: "/v2/new/app/manifests/1", method: .get, headers: puller)
            #expect(failed.status == .forbidden && String(buffer: failed.body).contains("CVE-2026-0001"))
            // the same verdict can be PATCHed on the manifest itself
            var patch = gate
            patch[.contentType] = "application/json"
            let onManifest = try await client.execute(uri: "/v2/new/app/manifests/\(digest)", method: .patch, headers: patch,
                                                      body: buf(Array(#"{"state":"Passed","reason":"rescanned clean"}"#.utf8)))
            #expect(onManifest.status == .ok)
            #expect(try await client.execute(uri: "/v2/new/app/manifests/1", method: .patch, headers: patch,
                                             body: buf(Array(#"{"state":"Passed"}"#.utf8))).status == .badRequest)
            #expect(try await client.execute(uri: "/v2/new/app/manifests/1", method: .get, headers: puller).status == .ok)
            #expect(try await verdict(client, gate, "new/app", digest, "Bogus", "x") == .badRequest)
            #expect(try await verdict(client, gate, "new/app", sha256([1]), "Passed", "x") == .notFound)
            // the decision is audited with who made it
            let audit = String(buffer: try await client.execute(uri: "/api/v1/audit?since=1h", method: .get, headers: owner).body)
            #expect(audit.contains("identity:scanner") && audit.contains("rescanned clean"))
        }
    }

    @Test func referrersStayReadableAndIndexChildrenFollowTheirIndex() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller", role: "Pull")
        let gate = try await identity(access, "scanner", role: "QuarantineWriter")
        try await app.test(.router) { client in
            _ = try await setPolicy(client, #"{"enabled":true}"#)
            let v2 = V2(client: client)
            // two platform images and an index over them
            var children: [(String, Int)] = []
            for arch in ["amd64", "arm64"] {
                #expect(try await push(client, "multi/app", tag: arch, auth: owner, seed: arch) == .created)
                let r = try await client.execute(uri: "/v2/multi/app/manifests/\(arch)", method: .get, headers: owner)
                children.append((r.headers[.testDigest]!, r.body.readableBytes))
            }
            let index = Array("""
            {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[\(children.map { #"{"mediaType":"\#(MediaType.ociManifest)","digest":"\#($0.0)","size":\#($0.1)}"# }.joined(separator: ","))]}
            """.utf8)
            var h = owner
            h[.contentType] = MediaType.ociIndex
            #expect(try await client.execute(uri: "/v2/multi/app/manifests/latest", method: .put, headers: h, body: buf(index)).status == .created)
            // a signature of the index is a referrer: pushable and readable while the index waits
            let signature = v2.imageManifest(config: Array("{\"s\":\"amd64\"}".utf8), layers: [], subject: (sha256(index), index.count),
                                             artifactType: "application/vnd.cncf.notary.signature")
            h[.contentType] = MediaType.ociManifest
            #expect(try await client.execute(uri: "/v2/multi/app/manifests/\(sha256(signature))", method: .put, headers: h, body: buf(signature)).status == .created)
            #expect(try await client.execute(uri: "/v2/multi/app/manifests/\(sha256(signature))", method: .get, headers: puller).status == .ok)
            #expect(try await client.execute(uri: "/v2/multi/app/manifests/latest", method: .get, headers: puller).status == .forbidden)
            #expect(try await client.execute(uri: "/v2/multi/app/manifests/\(children[0].0)", method: .get, headers: puller).status == .forbidden)
            // passing the index passes its children
            #expect(try await verdict(client, gate, "multi/app", sha256(index), "Passed", "index scanned") == .ok)
            #expect(try await client.execute(uri: "/v2/multi/app/manifests/latest", method: .get, headers: puller).status == .ok)
            for child in children {
                #expect(try await client.execute(uri: "/v2/multi/app/manifests/\(child.0)", method: .get, headers: puller).status == .ok)
            }
        }
    }

    @Test func switchingOnWithoutGrandfatheringBlocksWhatExists() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller", role: "Pull")
        try await app.test(.router) { client in
            #expect(try await push(client, "legacy/app", tag: "1", auth: owner, seed: "l") == .created)
            let change = try await setPolicy(client, #"{"enabled":true,"grandfatherExisting":false}"#)
            #expect(change.contains("\"affectedCount\":1"))
            #expect(try await client.execute(uri: "/v2/legacy/app/manifests/1", method: .get, headers: puller).status == .forbidden)
        }
    }

    struct Change: Decodable, Equatable {
        struct Ref: Decodable, Equatable { let repository: String; let digest: String }
        let affected: [Ref]
        let affectedCount: Int
        let effect: String
    }

    @Test func switchingOffReleasesPendingImagesAndKeepsFailedVerdicts() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller", role: "Pull")
        let gate = try await identity(access, "scanner", role: "QuarantineWriter")
        try await app.test(.router) { client in
            _ = try await setPolicy(client, #"{"enabled":true}"#)
            #expect(try await push(client, "waiting/app", tag: "1", auth: owner, seed: "w") == .created)
            #expect(try await push(client, "bad/app", tag: "1", auth: owner, seed: "b") == .created)
            let waiting = try await client.execute(uri: "/v2/waiting/app/manifests/1", method: .head, headers: owner).headers[.testDigest]!
            let bad = try await client.execute(uri: "/v2/bad/app/manifests/1", method: .head, headers: owner).headers[.testDigest]!
            #expect(try await verdict(client, gate, "bad/app", bad, "Failed", "CVE-2026-0002") == .ok)

            // the dry run names exactly what the real run releases, and changes nothing
            let dry = try JSONDecoder().decode(Change.self, from: Data(try await setPolicy(client, #"{"enabled":false,"dryRun":true}"#).utf8))
            #expect(dry.affected == [.init(repository: "waiting/app", digest: waiting)] && dry.affectedCount == 1)
            #expect(dry.effect.contains("become pullable") && dry.effect.contains("Failed"))
            #expect(try await client.execute(uri: "/v2/waiting/app/manifests/1", method: .get, headers: puller).status == .forbidden)
            let real = try JSONDecoder().decode(Change.self, from: Data(try await setPolicy(client, #"{"enabled":false}"#).utf8))
            #expect(real == dry)

            // off means off: what waited is pullable; a failed verdict still stands
            #expect(try await client.execute(uri: "/v2/waiting/app/manifests/1", method: .get, headers: puller).status == .ok)
            let failed = try await client.execute(uri: "/v2/bad/app/manifests/1", method: .get, headers: puller)
            #expect(failed.status == .forbidden && String(buffer: failed.body).contains("CVE-2026-0002"))
            #expect(try await push(client, "waiting/app", tag: "2", auth: owner, seed: "after") == .created)
            #expect(try await client.execute(uri: "/v2/waiting/app/manifests/2", method: .get, headers: puller).status == .ok)
            // nothing is left to release
            let again = try JSONDecoder().decode(Change.self, from: Data(try await setPolicy(client, #"{"enabled":false,"dryRun":true}"#).utf8))
            #expect(again.affected.isEmpty && again.affectedCount == 0)
        }
    }

    /// Pushes blobs then an image manifest over them, as the owner; returns the manifest digest.
    func pushImage(_ client: any TestClientProtocol, _ repo: String, tag: String, config: [UInt8], layers: [[UInt8]]) async throws -> String {
        for blob in [config] + layers {
            var h = owner
            h[.contentLength] = String(blob.count)
            let r = try await client.execute(uri: "/v2/\(repo)/blobs/uploads/?digest=\(sha256(blob))", method: .post, headers: h, body: buf(blob))
            #expect(r.status == .created)
        }
        let manifest = V2(client: client).imageManifest(config: config, layers: layers)
        var h = owner
        h[.contentType] = MediaType.ociManifest
        #expect(try await client.execute(uri: "/v2/\(repo)/manifests/\(tag)", method: .put, headers: h, body: buf(manifest)).status == .created)
        return sha256(manifest)
    }

    @Test func blobsOfQuarantinedImagesAreForTheGateOnly() async throws {
        let (app, access) = try await makeSecuredApp()
        let puller = try await identity(access, "puller", role: "Pull")
        let reader = try await identity(access, "reader", role: "QuarantineReader")
        let gate = try await identity(access, "scanner", role: "QuarantineWriter")
        _ = try await access.createIdentity(testActor, name: "dev", withPassword: false)
        let devPassword = try await access.resetIdentityPassword(testActor, name: "dev")
        _ = try await access.assignRole(testActor, assignee: "dev", role: "Pull", scope: "q/*")
        _ = try await access.assignRole(testActor, assignee: "dev", role: "Push", scope: "dev/*")
        let dev = basic("dev", devPassword)
        try await app.test(.router) { client in
            _ = try await setPolicy(client, #"{"enabled":true}"#)
            let config1 = Array(#"{"image":1}"#.utf8), config2 = Array(#"{"image":2}"#.utf8)
            let secret = Array("secret layer".utf8), shared = Array("shared layer".utf8)
            let first = try await pushImage(client, "q/app", tag: "1", config: config1, layers: [secret, shared])

            // a Pending image's config and layers are refused by digest, GET and HEAD alike
            for blob in [config1, secret, shared] {
                for method in [HTTPRequest.Method.get, .head] {
                    let r = try await client.execute(uri: "/v2/q/app/blobs/\(sha256(blob))", method: method, headers: puller)
                    #expect(r.status == .forbidden)
                }
            }
            let refused = try await client.execute(uri: "/v2/q/app/blobs/\(sha256(secret))", method: .get, headers: puller)
            #expect(errorCode(refused) == "DENIED" && String(buffer: refused.body).contains("only to quarantined content"))
            // the gate reads them
            #expect(try await client.execute(uri: "/v2/q/app/blobs/\(sha256(secret))", method: .get, headers: reader).status == .ok)
            // a blob no manifest uses yet keeps its behaviour
            var h = owner
            h[.contentLength] = "5"
            _ = try await client.execute(uri: "/v2/q/app/blobs/uploads/?digest=\(sha256(Array("loose".utf8)))", method: .post,
                                         headers: h, body: buf(Array("loose".utf8)))
            #expect(try await client.execute(uri: "/v2/q/app/blobs/\(sha256(Array("loose".utf8)))", method: .get, headers: puller).status == .ok)
            // nor can it be mounted elsewhere by someone who could not read it
            let mount = try await client.execute(uri: "/v2/dev/x/blobs/uploads/?mount=\(sha256(secret))&from=q/app", method: .post, headers: dev)
            #expect(mount.status == .accepted)
            #expect(try await client.execute(uri: "/v2/dev/x/blobs/\(sha256(secret))", method: .head, headers: dev).status == .notFound)

            // a blob a pullable image uses too is readable; the rest of the Pending image is not
            let second = try await pushImage(client, "q/app", tag: "2", config: config2, layers: [shared])
            #expect(try await verdict(client, gate, "q/app", second, "Passed", "clean") == .ok)
            #expect(try await client.execute(uri: "/v2/q/app/blobs/\(sha256(shared))", method: .get, headers: puller).status == .ok)
            #expect(try await client.execute(uri: "/v2/q/app/blobs/\(sha256(secret))", method: .get, headers: puller).status == .forbidden)
            // a Failed verdict keeps them refused; Passed opens them
            #expect(try await verdict(client, gate, "q/app", first, "Failed", "CVE") == .ok)
            #expect(try await client.execute(uri: "/v2/q/app/blobs/\(sha256(config1))", method: .head, headers: puller).status == .forbidden)
            #expect(try await verdict(client, gate, "q/app", first, "Passed", "rescanned") == .ok)
            #expect(try await client.execute(uri: "/v2/q/app/blobs/\(sha256(secret))", method: .get, headers: puller).status == .ok)
        }
    }
}
