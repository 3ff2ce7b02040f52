import Access
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Signing
import Webhooks

/// The JSON management API under `/api/v1/`: identities, role assignments, scope maps, tokens,
/// registry settings, network rules, audit. Reading needs management/read (Reader, Owner);
/// changing needs management/write (Owner). Generated secrets appear once, in the response that
/// created them.
extension RegistryResponder {
    struct ManagementError: Error {
        let status: HTTPResponse.Status
        let code: String
        let message: String
    }

    struct ErrorEnvelope: Encodable {
        struct Item: Encodable { let code: String; let message: String }
        let error: Item
    }

    func management(_ request: Request, _ context: Context, _ gate: AuthGate) async throws -> Response {
        let caller = try await gate.caller(request, context)
        if request.uri.path == "/api/v1/quarantine/manifests" {
            return try await quarantineManifest(request, context, gate, caller)
        }
        let path = request.uri.path
        if path == "/api/v1/repository" || path.hasPrefix("/api/v1/repository/")
            || (path == "/api/v1/usage" && query(request, "repository") != nil) {
            return try await repositoryManagement(request, context, gate, caller)
        }
        let write = request.method != .get
        try await gate.require(request, context, caller: caller, repository: nil, action: write ? .managementWrite : .managementRead)
        let actor = Actor(name: caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous",
                          address: caller?.address?.description ?? gate.address(request, context)?.description ?? "-")
        let access = gate.access
        let parts = request.uri.path.dropFirst("/api/v1/".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        do {
            switch (request.method, parts.first ?? "", parts.count) {
            // registry settings
            case (.get, "registry", 1):
                return jsonResponse(access.settingsView())
            case (.patch, "registry", 1):
                return jsonResponse(try await access.updateSettings(actor, try await decode(SettingsChange.self, request)))
            case (.post, "registry", 2) where parts[1] == "admin-credentials":
                let body = try await decode(CredentialRequest.self, request)
                let secret = try await access.generatePassword(actor, token: nil, which: body.name, expiresInDays: body.expiresInDays,
                                                               expiry: body.expiry)
                return jsonResponse(SecretResponse(username: access.registryName, name: body.name, password: secret), status: .created)
            case (.post, "keys", 2) where parts[1] == "rotate":
                return jsonResponse(["kid": try await access.rotateSigningKey(actor)], status: .created)

            // identities
            case (.get, "identities", 1):
                return jsonResponse(access.identityViews())
            case (.post, "identities", 1):
                let body = try await decode(IdentityRequest.self, request)
                let (view, password) = try await access.createIdentity(actor, name: body.name, kind: body.kind ?? "user",
                                                                       trustedService: body.trustedService ?? false,
                                                                       withPassword: body.password ?? true)
                return jsonResponse(IdentityCreated(identity: view, password: password), status: .created)
            case (.get, "identities", 2):
                guard let i = access.identityViews().first(where: { $0.name == parts[1] }) else {
                    throw AccessError.notFound("identity \(parts[1])")
                }
                return jsonResponse(i)
            case (.patch, "identities", 2):
                let body = try await decode(IdentityRequest.self, request)
                return jsonResponse(try await access.updateIdentity(actor, name: parts[1], enabled: body.enabled,
                                                                    trustedService: body.trustedService))
            case (.delete, "identities", 2):
                try await access.deleteIdentity(actor, name: parts[1])
                return Response(status: .noContent)
            case (.post, "identities", 3) where parts[2] == "password":
                let secret = try await access.resetIdentityPassword(actor, name: parts[1])
                return jsonResponse(SecretResponse(username: parts[1], name: "password", password: secret), status: .created)
            case (.post, "identities", 3) where parts[2] == "federated-credentials":
                let body = try await decode(FederatedCredentialRequest.self, request)
                return jsonResponse(try await access.addFederatedCredential(actor, identity: parts[1], name: body.name,
                                                                            issuer: body.issuer, subject: body.subject,
                                                                            audiences: body.audiences), status: .created)
            case (.delete, "identities", 4) where parts[2] == "federated-credentials":
                try await access.removeFederatedCredential(actor, identity: parts[1], name: parts[3])
                return Response(status: .noContent)

            // role assignments
            case (.get, "role-assignments", 1):
                return jsonResponse(access.roleAssignments())
            case (.post, "role-assignments", 1):
                let body = try await decode(RoleAssignmentView.self, request)
                return jsonResponse(try await access.assignRole(actor, assignee: body.assignee, role: body.role, scope: body.scope),
                                    status: .created)
            case (.delete, "role-assignments", 1):
                try await access.removeRole(actor, assignee: query(request, "assignee") ?? "", role: query(request, "role") ?? "",
                                            scope: query(request, "scope") ?? "")
                return Response(status: .noContent)

            // scope maps
            case (.get, "scope-maps", 1):
                return jsonResponse(access.scopeMaps())
            case (.post, "scope-maps", 1):
                let body = try await decode(ScopeMapRequest.self, request)
                return jsonResponse(try await access.putScopeMap(actor, name: body.name ?? "", description: body.description,
                                                                 entries: body.entries, create: true), status: .created)
            case (.get, "scope-maps", 2):
                guard let map = access.scopeMaps().first(where: { $0.name == parts[1] }) else {
                    throw AccessError.notFound("scope map \(parts[1])")
                }
                return jsonResponse(map)
            case (.put, "scope-maps", 2):
                let body = try await decode(ScopeMapRequest.self, request)
                return jsonResponse(try await access.putScopeMap(actor, name: parts[1], description: body.description,
                                                                 entries: body.entries, create: false))
            case (.delete, "scope-maps", 2):
                try await access.deleteScopeMap(actor, name: parts[1])
                return Response(status: .noContent)

            // tokens
            case (.get, "tokens", 1):
                return jsonResponse(access.tokenViews())
            case (.post, "tokens", 1):
                let body = try await decode(TokenRequest.self, request)
                let (view, passwords) = try await access.createToken(
                    actor, name: body.name ?? "", scopeMap: body.scopeMap ?? "", enabled: body.status.map { $0 == "enabled" } ?? true,
                    generatePasswords: body.generatePasswords ?? true, expiresInDays: body.expiresInDays)
                return jsonResponse(TokenCreated(token: view, credentials: passwords), status: .created)
            case (.get, "tokens", 2):
                guard let t = access.tokenViews().first(where: { $0.name == parts[1] }) else {
                    throw AccessError.notFound("token \(parts[1])")
                }
                return jsonResponse(t)
            case (.patch, "tokens", 2):
                let body = try await decode(TokenRequest.self, request)
                if let status = body.status, status != "enabled", status != "disabled" {
                    throw AccessError.invalid("status must be enabled or disabled")
                }
                return jsonResponse(try await access.updateToken(actor, name: parts[1], enabled: body.status.map { $0 == "enabled" },
                                                                 scopeMap: body.scopeMap))
            case (.delete, "tokens", 2):
                try await access.deleteToken(actor, name: parts[1])
                return Response(status: .noContent)
            case (.post, "tokens", 3) where parts[2] == "credentials":
                let body = try await decode(CredentialRequest.self, request)
                let secret = try await access.generatePassword(actor, token: parts[1], which: body.name, expiresInDays: body.expiresInDays,
                                                               expiry: body.expiry)
                return jsonResponse(SecretResponse(username: parts[1], name: body.name, password: secret), status: .created)

            // network rules
            case (.get, "network-rules", 1):
                return jsonResponse(access.settingsView().ipRules)
            case (.post, "network-rules", 1):
                let body = try await decode(NetworkRuleRequest.self, request)
                return jsonResponse(try await access.addNetworkRule(actor, body.ipAddress), status: .created)
            case (.delete, "network-rules", 1):
                return jsonResponse(try await access.removeNetworkRule(actor, query(request, "ipAddress") ?? ""))

            // webhooks
            case (_, "webhooks", _):
                guard let webhooks else { throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "webhooks are not enabled") }
                return try await webhookEndpoint(request, parts, webhooks)

            // quarantine-on-push
            case (.get, "quarantine", 1):
                return await jsonResponse(try registry.quarantinePolicy())
            case (.patch, "quarantine", 1):
                let body = try await decode(QuarantinePolicyRequest.self, request)
                let current = try await registry.quarantinePolicy()
                let policy = QuarantinePolicy(enabled: body.enabled ?? current.enabled,
                                              grandfatherExisting: body.grandfatherExisting ?? current.grandfatherExisting)
                let change = try await registry.updateQuarantine(policy, dryRun: body.dryRun ?? false)
                if body.dryRun != true {
                    await access.recordAudit(actor: actor.name, address: actor.address, action: "quarantine.policy",
                                             target: "registry", outcome: "ok",
                                             detail: "enabled=\(policy.enabled) grandfather=\(policy.grandfatherExisting) affected=\(change.affectedCount): \(change.effect)")
                }
                return jsonResponse(change)

            // registry-side content trust
            case (.get, "content-trust", 1):
                return await jsonResponse(try contentTrust.current())
            case (.put, "content-trust", 1):
                let config = try await decode(ContentTrustConfig.self, request)
                do {
                    try await contentTrust.update(config)
                } catch let e as ContentTrustError {
                    throw ManagementError(status: .badRequest, code: "INVALID", message: e.description)
                } catch let e as SigningError {
                    throw ManagementError(status: .badRequest, code: "INVALID", message: "\(e)")
                }
                await access.recordAudit(actor: actor.name, address: actor.address, action: "content-trust.update",
                                         target: config.repositories.joined(separator: ","), outcome: "ok",
                                         detail: "enabled=\(config.enabled) exempt=\(config.exempt.joined(separator: ","))")
                return await jsonResponse(try contentTrust.current())

            // audit
            case (.get, "audit", 1):
                var since = Date(timeIntervalSinceNow: -86_400)
                if let raw = query(request, "since") {
                    guard let date = Self.parseSince(raw) else {
                        throw ManagementError(status: .badRequest, code: "INVALID",
                                              message: "since must be an RFC 3339 time or a duration such as 30m, 12h or 7d")
                    }
                    since = date
                }
                let limit = min(try queryInt(request, "limit") ?? 1000, 10_000)
                // Access events (logins, denials, settings, credentials) and content writes from the event log.
                let writes = try await registry.metadata.events(since: since, limit: limit).map { e in
                    AuditRecord(sequence: e.sequence, timestamp: e.timestamp, actor: e.actor ?? "-", address: e.address ?? "-",
                                action: e.action.rawValue, target: e.repository + (e.tag.map { ":" + $0 } ?? "") + (e.digest.map { "@" + $0 } ?? ""),
                                outcome: "ok", detail: e.detail)
                }
                let merged = await (try access.audit(since: since, limit: limit) + writes).sorted { $0.timestamp < $1.timestamp }
                return jsonResponse(Array(merged.prefix(limit)))
            default:
                let origin = EventOrigin(actor: actor.name, address: actor.address)
                if let answer = try await lifecycleManagement(request, parts, origin: origin) { return answer }
                throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "no such management endpoint")
            }
        } catch let e as AccessError {
            return managementError(e)
        } catch let e as WebhookError {
            let (status, code, message): (HTTPResponse.Status, String, String) = switch e {
            case .invalid(let m): (.badRequest, "INVALID", m)
            case .notFound(let m): (.notFound, "NOT_FOUND", "\(m) not found")
            case .conflict(let m): (.conflict, "CONFLICT", m)
            }
            return jsonResponse(ErrorEnvelope(error: .init(code: code, message: message)), status: status)
        } catch let e as ManagementError {
            return jsonResponse(ErrorEnvelope(error: .init(code: e.code, message: e.message)), status: e.status)
        }
    }

    struct WebhookRequest: Decodable {
        let name: String?
        let uri: String?
        let actions: [String]?
        let scope: String?
        let headers: [String: String]?
        let status: String?
    }
    struct WebhookCreated: Encodable { let webhook: WebhookView; let secret: String }

    func webhookEndpoint(_ request: Request, _ parts: [String], _ webhooks: WebhookService) async throws -> Response {
        switch (request.method, parts.count) {
        case (.get, 1):
            return await jsonResponse(try webhooks.list())
        case (.post, 1):
            let body = try await decode(WebhookRequest.self, request)
            if let status = body.status, status != "enabled", status != "disabled" {
                throw WebhookError.invalid("status must be enabled or disabled")
            }
            let (view, secret) = try await webhooks.create(name: body.name ?? "", uri: body.uri ?? "", actions: body.actions ?? ["push"],
                                                           scope: body.scope, headers: body.headers ?? [:],
                                                           enabled: body.status.map { $0 == "enabled" } ?? true)
            return jsonResponse(WebhookCreated(webhook: view, secret: secret), status: .created)
        case (.get, 2):
            return await jsonResponse(try webhooks.get(parts[1]))
        case (.patch, 2):
            let body = try await decode(WebhookRequest.self, request)
            if let status = body.status, status != "enabled", status != "disabled" {
                throw WebhookError.invalid("status must be enabled or disabled")
            }
            return jsonResponse(try await webhooks.update(name: parts[1], uri: body.uri, actions: body.actions,
                                                          scope: body.scope.map { Optional($0) }, headers: body.headers,
                                                          enabled: body.status.map { $0 == "enabled" }))
        case (.delete, 2):
            try await webhooks.delete(name: parts[1])
            return Response(status: .noContent)
        case (.post, 3) where parts[2] == "ping":
            return jsonResponse(try await webhooks.ping(name: parts[1]))
        case (.get, 3) where parts[2] == "events":
            let limit = min(try queryInt(request, "limit") ?? 100, 1000)
            return await jsonResponse(try webhooks.deliveries(name: parts[1], limit: limit))
        default:
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "no such webhook endpoint")
        }
    }

    func managementError(_ e: AccessError) -> Response {
        let (status, code, message): (HTTPResponse.Status, String, String) = switch e {
        case .invalid(let m): (.badRequest, "INVALID", m)
        case .notFound(let m): (.notFound, "NOT_FOUND", "\(m) not found")
        case .conflict(let m): (.conflict, "CONFLICT", m)
        case .invalidCredentials: (.unauthorized, "UNAUTHORIZED", "authentication failed")
        case .rateLimited(let s): (.tooManyRequests, "TOOMANYREQUESTS", "retry in \(s) s")
        }
        return jsonResponse(ErrorEnvelope(error: .init(code: code, message: message)), status: status)
    }

    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let body = try await request.body.collect(upTo: 1 << 20)
        do {
            try StrictJSON.checkDuplicateKeys(body.readableBytesView)
        } catch {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "request body refused: \(error)")
        }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(T.self, from: Data(buffer: body))
        } catch {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "request body is not valid JSON for this endpoint")
        }
    }

    /// `2026-01-02T03:04:05Z`, or a duration back from now in the lifecycle grammar: `30m`, `24h`, `7d`, `1d12h`.
    static func parseSince(_ raw: String) -> Date? {
        if let date = RFC3339.parse(raw) { return date }
        return (try? LifecycleDuration.parse(raw)).map { Date(timeIntervalSinceNow: -$0) }
    }

    struct QuarantinePolicyRequest: Decodable { let enabled: Bool?; let grandfatherExisting: Bool?; let dryRun: Bool? }
    struct QuarantineStateRequest: Decodable { let repository: String; let digest: String; let state: String; let reason: String? }

    /// `PATCH /api/v1/quarantine/manifests {repository, digest, state, reason}`: the gate's verdict.
    /// Needs quarantine/write on that repository (QuarantineWriter, Owner).
    func quarantineManifest(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?) async throws -> Response {
        guard request.method == .patch else { throw methodNotAllowed }
        let body: QuarantineStateRequest
        do {
            body = try await decode(QuarantineStateRequest.self, request)
        } catch let e as ManagementError {
            return jsonResponse(ErrorEnvelope(error: .init(code: e.code, message: e.message)), status: e.status)
        }
        return try await quarantineVerdict(request, context, gate, caller, try RepositoryName(body.repository),
                                           try parseDigest(body.digest), body: body)
    }

    /// Checks `action` on `repo` for a management-API caller and returns the origin its events
    /// record. A management token (registry:management:*) is judged by its principal's roles for
    /// the repository.
    func requireOnRepository(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?, _ repo: RepositoryName,
                             _ action: Action) async throws -> EventOrigin {
        try await gate.require(request, context, caller: caller, repository: repo.value, action: action,
                               target: AccessTarget(management: true))
        return EventOrigin(actor: caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous",
                           address: (caller?.address ?? gate.address(request, context))?.description ?? "-")
    }

    struct VerdictBody: Decodable { let state: String; let reason: String? }

    /// Records the gate's verdict. Needs quarantine/write on the repository (QuarantineWriter, Owner).
    func quarantineVerdict(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?, _ repo: RepositoryName,
                           _ digest: Digest, body: QuarantineStateRequest?) async throws -> Response {
        var state = body?.state
        var reason = body?.reason
        if body == nil {
            guard let verdict = try? await decode(VerdictBody.self, request) else {
                return jsonResponse(ErrorEnvelope(error: .init(code: "INVALID", message: #"expected {"state": "Passed", "reason": "…"}"#)),
                                    status: .badRequest)
            }
            state = verdict.state
            reason = verdict.reason
        }
        guard let parsed = state.flatMap(QuarantineState.init(rawValue:)) else {
            return jsonResponse(ErrorEnvelope(error: .init(code: "INVALID", message: "state must be Pending, Passed or Failed")),
                                status: .badRequest)
        }
        let origin = try await requireOnRepository(request, context, gate, caller, repo, .quarantineWrite)
        try await EventOrigin.$current.withValue(origin) {
            try await registry.setQuarantine(repo, digest, state: parsed, reason: reason)
        }
        let content = try await registry.manifest(repo, .digest(digest))
        struct Answer: Encodable { let repository: String; let digest: String; let state: QuarantineState?; let reason: String? }
        return jsonResponse(Answer(repository: repo.value, digest: digest.string, state: content.quarantineState,
                                   reason: content.quarantineReason))
    }

    struct CredentialRequest: Decodable { let name: String; let expiresInDays: Int?; let expiry: Date? }
    struct SecretResponse: Encodable { let username: String; let name: String; let password: String }
    struct IdentityRequest: Decodable {
        let name: String
        let kind: String?
        let trustedService: Bool?
        let password: Bool?
        let enabled: Bool?

        enum CodingKeys: String, CodingKey { case name, kind, trustedService, password, enabled }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
            kind = try c.decodeIfPresent(String.self, forKey: .kind)
            trustedService = try c.decodeIfPresent(Bool.self, forKey: .trustedService)
            password = try c.decodeIfPresent(Bool.self, forKey: .password)
            enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled)
        }
    }
    struct IdentityCreated: Encodable { let identity: IdentityView; let password: String? }
    struct FederatedCredentialRequest: Decodable { let name: String; let issuer: String; let subject: String; let audiences: [String] }
    struct ScopeMapRequest: Decodable { let name: String?; let description: String?; let entries: [AccessState.ScopeMap.Entry] }
    struct TokenRequest: Decodable {
        let name: String?
        let scopeMap: String?
        let status: String?
        let generatePasswords: Bool?
        let expiresInDays: Int?
    }
    struct TokenCreated: Encodable { let token: TokenView; let credentials: [String: String] }
    struct NetworkRuleRequest: Decodable { let ipAddress: String }
}
