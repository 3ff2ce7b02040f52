import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Testing
@testable import HTTPAPI

/// Locks are the owners' word: nobody below them sets or lifts one.
@Suite struct LockAPITests {
    func identity(_ access: AccessControl, _ name: String, role: String, scope: String) async throws -> HTTPFields {
        _ = try await access.createIdentity(testActor, name: name, withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: name)
        _ = try await access.assignRole(testActor, assignee: name, role: role, scope: scope)
        return basic(name, password)
    }

    func scopeMapToken(_ access: AccessControl, _ name: String, actions: [String]) async throws -> HTTPFields {
        let entry = AccessState.ScopeMap.Entry(repository: try RepositoryPattern("payments/*"), actions: actions)
        _ = try await access.putScopeMap(testActor, name: name + "-map", description: nil, entries: [entry], create: true)
        let (_, pw) = try await access.createToken(testActor, name: name, scopeMap: name + "-map")
        return basic(name, pw["password1"]!)
    }

    func lock(_ client: any TestClientProtocol, _ auth: HTTPFields, _ query: String, _ json: String) async throws -> TestResponse {
        try await client.execute(uri: "/api/v1/repository?\(query)", method: .patch, headers: auth, body: buf(Array(json.utf8)))
    }

    @Test func onlyOwnersSetOrLiftLocks() async throws {
        let (app, access) = try await makeSecuredApp()
        let pusher = try await identity(access, "pusher", role: "Push", scope: "payments/*")
        let elsewhere = try await identity(access, "elsewhere", role: "Owner", scope: "billing/*")
        let teamOwner = try await identity(access, "lead", role: "Owner", scope: "payments/*")
        let writer = try await scopeMapToken(access, "ci", actions: ["content/read", "content/write", "metadata/read", "metadata/write"])
        let admin = try await scopeMapToken(access, "ops", actions: ["content/read", "content/write", "content/delete",
                                                                      "metadata/read", "metadata/write"])
        try await app.test(.router) { client in
            #expect(try await push(client, "payments/api", tag: "1", auth: owner, seed: "a") == .created)
            #expect(try await lock(client, owner, "name=payments/api&tag=1", #"{"writeEnabled":false}"#).status == .ok)

            // a pusher can neither lift the owner's lock nor set one
            let lift = try await lock(client, pusher, "name=payments/api&tag=1", #"{"writeEnabled":true}"#)
            #expect(lift.status == .forbidden && errorCode(lift) == "DENIED")
            #expect(String(buffer: lift.body).contains("needs the Owner role on it"))
            #expect(try await push(client, "payments/api", tag: "1", auth: pusher, seed: "b") == .forbidden)
            #expect(try await lock(client, pusher, "name=payments/api", #"{"deleteEnabled":false}"#).status == .forbidden)
            #expect(try await lock(client, pusher, "name=payments/api&digest=\(sha256([1]))", #"{"readEnabled":false}"#).status == .forbidden)
            // Owner elsewhere is not Owner here
            #expect(try await lock(client, elsewhere, "name=payments/api&tag=1", #"{"writeEnabled":true}"#).status == .forbidden)
            // a scope-map token needs content/delete as well as metadata/write, and is told so
            let token = try await lock(client, writer, "name=payments/api&tag=1", #"{"writeEnabled":true}"#)
            #expect(token.status == .forbidden && errorCode(token) == "DENIED")
            #expect(String(buffer: token.body).contains("lacks content/delete"))
            #expect(try await lock(client, admin, "name=payments/api", #"{"listEnabled":true}"#).status == .ok)
            // reading the locks keeps its rule
            #expect(try await client.execute(uri: "/api/v1/repository?name=payments/api", method: .get, headers: pusher).status == .ok)

            // an Owner of the repository lifts it
            #expect(try await lock(client, teamOwner, "name=payments/api&tag=1", #"{"writeEnabled":true}"#).status == .ok)
            #expect(try await push(client, "payments/api", tag: "1", auth: pusher, seed: "b") == .created)
        }
    }
}
