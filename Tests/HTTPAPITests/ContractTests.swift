import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import HTTPAPI

/// The server speaks the contract the CLI is built on: what one side encodes the other decodes.
@Suite struct ContractTests {
    @Test func requestsEncodedFromTheContractAreUnderstoodAndAnswersDecodeAsIts() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let tokenAnswer = try await client.execute(uri: "/oauth2/token?scope=registry:management:*", method: .get, headers: owner)
            let token = try JSONDecoder().decode(TokenResponse.self, from: Data(buffer: tokenAnswer.body))
            #expect(token.token != nil && token.token == token.access_token && (token.expires_in ?? 0) > 0)

            let change = try JSONEncoder().encode(StatusDaysRequest(status: "enabled", days: 3))
            let changed = try await client.execute(uri: "/api/v1/config/soft-delete", method: .patch, headers: owner,
                                                   body: ByteBuffer(bytes: change))
            #expect(changed.status == .ok)
            let view = try JSONDecoder().decode(SoftDeleteView.self, from: Data(buffer: changed.body))
            #expect(view.status == "enabled" && view.days == 3)

            let refused = try await client.execute(uri: "/api/v1/config/soft-delete", method: .patch, headers: owner,
                                                   body: ByteBuffer(bytes: try JSONEncoder().encode(StatusDaysRequest(status: "maybe"))))
            #expect(refused.status == .badRequest)
            let error = try JSONDecoder().decode(ManagementErrorBody.self, from: Data(buffer: refused.body))
            #expect(error.error.code == "INVALID" && error.error.message.contains("enabled or disabled"))

            let anonymous = try await client.execute(uri: "/api/v1/config/soft-delete", method: .get)
            #expect(anonymous.status == .unauthorized)
            let challenge = try JSONDecoder().decode(OCIErrorBody.self, from: Data(buffer: anonymous.body))
            #expect(challenge.errors.first?.code == "UNAUTHORIZED")
        }
    }

    /// Every answer of the management API decodes as its contract type and encodes back to the
    /// very bytes the server sent: the type holds every key, and the server encodes nothing else.
    @Test func everyAnswerIsItsContractTypeByteForByte() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            func check<T: Codable & Equatable>(_ type: T.Type, _ method: HTTPRequest.Method, _ uri: String, body: (any Encodable)? = nil,
                                               sourceLocation: SourceLocation = #_sourceLocation) async throws -> T {
                let encoder = JSONEncoder()
                encoder.dateEncodingStrategy = .iso8601
                let sent = try body.map { ByteBuffer(bytes: try encoder.encode($0)) }
                let r = try await client.execute(uri: uri, method: method, headers: owner, body: sent)
                #expect((200..<300).contains(r.status.code), "\(method) \(uri): \(String(buffer: r.body))", sourceLocation: sourceLocation)
                let decoder = JSONDecoder()
                decoder.dateDecodingStrategy = .iso8601
                let bytes = Data(buffer: r.body)
                let value = try decoder.decode(T.self, from: bytes)
                let text = String(decoding: bytes, as: UTF8.self)
                #expect(try RegistryResponder.encoder.encode(value) == bytes, "\(method) \(uri) is not \(T.self) byte for byte: \(text)",
                        sourceLocation: sourceLocation)
                return value
            }
            #expect(try await push(client, "contract/app", tag: "v1", auth: owner) == .created)

            // access
            let created = try await check(IdentityCreated.self, .post, "/api/v1/identities", body: IdentityRequest(name: "ci"))
            #expect(created.identity.name == "ci" && created.password != nil)
            _ = try await check(IdentityView.self, .post, "/api/v1/identities/ci/federated-credentials",
                                body: FederatedCredentialRequest(name: "gh", issuer: "https://token.actions.githubusercontent.com",
                                                                 subject: "repo:o/r:ref:refs/heads/main", audiences: ["berth"]))
            let identities = try await check([IdentityView].self, .get, "/api/v1/identities")
            #expect(identities.contains { $0.name == "ci" && $0.federatedCredentials.map(\.name) == ["gh"] })
            _ = try await check(RoleAssignmentView.self, .post, "/api/v1/role-assignments",
                                body: RoleAssignmentView(assignee: "ci", role: "Reader", scope: "contract/*"))
            _ = try await check([RoleAssignmentView].self, .get, "/api/v1/role-assignments")
            let map = try await check(ScopeMapView.self, .post, "/api/v1/scope-maps",
                                      body: ScopeMapRequest(name: "pull-contract", description: "pull",
                                                            entries: [ScopeMapEntryView(repository: "contract/*", actions: ["content/read"])]))
            #expect(map.entries.first?.repository == "contract/*" && !map.builtIn)
            _ = try await check([ScopeMapView].self, .get, "/api/v1/scope-maps")
            let token = try await check(TokenCreated.self, .post, "/api/v1/tokens", body: TokenRequest(name: "puller", scopeMap: "pull-contract"))
            #expect(token.token.passwords.count == 2 && token.credentials.count == 2)
            _ = try await check(SecretResponse.self, .post, "/api/v1/tokens/puller/credentials",
                                body: CredentialRequest(name: "password1", expiresInDays: 3))
            _ = try await check([TokenView].self, .get, "/api/v1/tokens")
            _ = try await check(RegistrySettingsView.self, .patch, "/api/v1/registry", body: RegistrySettingsRequest(anonymousPullEnabled: false))
            _ = try await check([String].self, .post, "/api/v1/network-rules", body: NetworkRuleRequest(ipAddress: "10.0.0.0/8"))
            _ = try await check(KeyRotation.self, .post, "/api/v1/keys/rotate")
            _ = try await check([AuditEntry].self, .get, "/api/v1/audit")

            // quarantine and content trust
            _ = try await check(QuarantineChangeView.self, .patch, "/api/v1/quarantine", body: QuarantinePolicyRequest(enabled: true, dryRun: true))
            _ = try await check(QuarantinePolicyView.self, .get, "/api/v1/quarantine")
            _ = try await check(ContentTrustView.self, .get, "/api/v1/content-trust")

            // lifecycle and repositories
            _ = try await check(QuotaView.self, .post, "/api/v1/quotas", body: QuotaRequest(name: "contract", prefix: "contract/", limitBytes: 1 << 30))
            _ = try await check([QuotaView].self, .get, "/api/v1/quotas")
            _ = try await check(PurgeScheduleView.self, .post, "/api/v1/purge/schedules",
                                body: ScheduleRequest(name: "nightly", cron: "0 2 * * *", filters: ["contract/.*:.*"], ago: "30d"))
            _ = try await check([PurgeScheduleView].self, .get, "/api/v1/purge/schedules")
            let purge = try await check(LifecycleReportView.self, .post, "/api/v1/purge",
                                        body: PurgeRequest(filters: ["contract/.*:.*"], ago: "0", dryRun: true))
            #expect(purge.kind == "purge" && purge.dryRun && purge.deletedTags.map(\.tag) == ["v1"])
            _ = try await check(GarbageCollectionReportView.self, .post, "/api/v1/gc", body: DryRunRequest(dryRun: true))
            let runs = try await check([LifecycleRunView].self, .get, "/api/v1/lifecycle/runs")
            #expect(runs.count == 2 && runs.allSatisfy { $0.id != nil })
            _ = try await check([EventConsumerView].self, .get, "/api/v1/event-consumers")
            _ = try await check([LeaseView].self, .get, "/api/v1/leases")
            _ = try await check(UsageView.self, .get, "/api/v1/usage")
            _ = try await check(UsageView.self, .get, "/api/v1/usage?repository=contract/app")
            _ = try await check([RepositoryDetailView].self, .get, "/api/v1/repositories")
            _ = try await check(LockView.self, .patch, "/api/v1/repository?name=contract/app&tag=v1", body: LockRequest(deleteEnabled: false))
            let tags = try await check([TagDetailView].self, .get, "/api/v1/repository/tags?name=contract/app")
            #expect(tags.first?.attributes.deleteEnabled == false)
            let manifests = try await check([ManifestDetailView].self, .get, "/api/v1/repository/manifests?name=contract/app")
            _ = try await check(BerthAPIContract.RetentionView.self, .get, "/api/v1/config/retention")
            _ = try await check(GCPolicyView.self, .get, "/api/v1/config/gc")
            _ = try await check(SoftDeleteView.self, .patch, "/api/v1/config/soft-delete", body: StatusDaysRequest(status: "enabled", days: 1))
            _ = try await check(LockView.self, .patch, "/api/v1/repository?name=contract/app&tag=v1", body: LockRequest(deleteEnabled: true))
            let deleted = try await check(LifecycleReportView.self, .delete, "/api/v1/repository?name=contract/app")
            #expect(deleted.deletedManifests.map(\.digest) == manifests.map(\.digest))
            let bin = try await check([DeletedManifestView].self, .get, "/api/v1/repository/deleted?name=contract/app")
            let digest = try #require(bin.first?.digest)
            let restored = try await check(RestoreResponse.self, .post, "/api/v1/repository/restore?name=contract/app",
                                           body: RestoreRequest(digest: digest, tag: "back"))
            #expect(restored.restored.first?.digest == digest)
        }
    }

    /// A scope map's repository patterns are read at the HTTP edge: a bad one is refused with the
    /// reason, in the management envelope.
    @Test func aScopeMapWithABadRepositoryPatternIsRefusedWithTheReason() async throws {
        let (app, _) = try await makeSecuredApp()
        try await app.test(.router) { client in
            let body = try JSONEncoder().encode(ScopeMapRequest(name: "bad", entries: [ScopeMapEntryView(repository: "*/api",
                                                                                                          actions: ["content/read"])]))
            let r = try await client.execute(uri: "/api/v1/scope-maps", method: .post, headers: owner, body: ByteBuffer(bytes: body))
            #expect(r.status == .badRequest)
            let error = try JSONDecoder().decode(ManagementErrorBody.self, from: Data(buffer: r.body))
            #expect(error.error.code == "INVALID" && error.error.message.contains("invalid repository pattern"), "\(error)")
        }
    }
}
