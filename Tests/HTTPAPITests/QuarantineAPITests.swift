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
}
