import Access
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore

/// The JSON management API under `/api/v1/`: identities, role assignments, scope maps, tokens,
/// registry settings, network rules, audit. Reading needs management/read (Reader, Owner);
/// changing needs management/write (Owner). Generated secrets appear once, in the response that
/// created them. Routes are on Hummingbird's router; every failure is rendered by
/// `ErrorRenderer.response(for:request:log:gate:)`.
extension RegistryResponder {
    /// The management check: the caller behind the request, and management/read for GET or
    /// management/write for any other method. Returns who acts, for the audit trail.
    static func managementActor(_ request: Request, _ context: Context, _ gate: AuthGate) async throws -> Actor {
        let caller = try await gate.caller(request, context)
        let write = request.method != .get
        try await gate.require(request, context, caller: caller, repository: nil, action: write ? .managementWrite : .managementRead)
        return Actor(name: caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous",
                     address: caller?.address?.description ?? gate.address(request, context)?.description ?? "-")
    }

    /// Runs the management check before the routes of its group and hands them the actor.
    struct ManagementCheck: RouterMiddleware {
        typealias Context = BerthRequestContext
        let gate: AuthGate

        func handle(_ request: Request, context: Context,
                    next: (Request, Context) async throws -> Response) async throws -> Response {
            var context = context
            context.managementActor = try await RegistryResponder.managementActor(request, context, gate)
            return try await next(request, context)
        }
    }

    /// Adds `/api/v1`: first the routes judged per repository (quarantine verdicts, repository
    /// commands, a repository's usage), then the rest behind the management check. Returns that
    /// checked group, where features add their management routes.
    func addManagementRoutes(to router: Router<Context>, gate: AuthGate) -> RouterGroup<Context> {
        let api = router.group("api/v1")
        api.patch("quarantine/manifests") { request, context in
            try await quarantineManifest(request, context, gate, try await gate.caller(request, context))
        }
        let repository: @Sendable (Request, Context) async throws -> Response = { request, context in
            try await repositoryManagement(request, context, gate, try await gate.caller(request, context))
        }
        // One registration per route, spelled out: tests/interop/test_openapi.py reads them.
        api.get("repository", use: repository)
        api.patch("repository", use: repository)
        api.delete("repository", use: repository)
        api.get("repository/tags", use: repository)
        api.delete("repository/tags", use: repository)
        api.get("repository/manifests", use: repository)
        api.get("repository/deleted", use: repository)
        api.post("repository/restore", use: repository)
        api.get("usage") { request, context in
            if query(request, "repository") != nil {
                return try await repositoryManagement(request, context, gate, try await gate.caller(request, context))
            }
            let actor = try await Self.managementActor(request, context, gate)
            return try await lifecycle(actor) { try await jsonResponse(UsageView(registry.usage(repository: nil))) }
        }

        api.post("purge") { request, context in
            try await purge(request, context, gate, try await gate.caller(request, context))
        }

        let managed = router.group("api/v1").add(middleware: ManagementCheck(gate: gate))
        addAccessRoutes(to: managed, access: gate.access)
        addLifecycleRoutes(to: managed)

        // quarantine-on-push
        managed.get("quarantine") { _, _ in
            await jsonResponse(QuarantinePolicyView(try registry.quarantinePolicy()))
        }
        managed.patch("quarantine") { request, context in
            let actor = actor(context)
            let body = try await decode(QuarantinePolicyRequest.self, request)
            let current = try await registry.replacing(registry.quarantinePolicy, default: QuarantinePolicy())
            let policy = QuarantinePolicy(enabled: body.enabled ?? current.enabled,
                                          grandfatherExisting: body.grandfatherExisting ?? current.grandfatherExisting)
            let change = try await registry.updateQuarantine(policy, dryRun: body.dryRun ?? false)
            if body.dryRun != true {
                await gate.access.recordAudit(actor: actor.name, address: actor.address, action: "quarantine.policy",
                                              target: "registry", outcome: "ok",
                                              detail: "enabled=\(policy.enabled) grandfather=\(policy.grandfatherExisting) affected=\(change.affectedCount): \(change.effect)")
            }
            return jsonResponse(QuarantineChangeView(change))
        }

        // audit
        managed.get("audit") { request, _ in
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
            let merged = await (try gate.access.audit(since: since, limit: limit) + writes).sorted { $0.timestamp < $1.timestamp }
            return jsonResponse(merged.prefix(limit).map(AuditEntry.init))
        }
        return managed
    }

    /// The actor the management check found (every route of the checked group has one).
    func actor(_ context: Context) -> Actor {
        context.managementActor ?? Actor(name: "anonymous", address: "-")
    }

    /// Registry settings, identities, role assignments, scope maps, tokens, network rules.
    func addAccessRoutes(to managed: RouterGroup<Context>, access: AccessControl) {
        // registry settings
        managed.get("registry") { _, _ in jsonResponse(BerthAPIContract.RegistrySettingsView(access.settingsView())) }
        managed.patch("registry") { request, context in
            let change = try await decode(RegistrySettingsRequest.self, request).settingsChange
            return jsonResponse(BerthAPIContract.RegistrySettingsView(try await access.updateSettings(actor(context), change)))
        }
        managed.post("registry/admin-credentials") { request, context in
            let body = try await decode(CredentialRequest.self, request)
            let secret = try await access.generatePassword(actor(context), token: nil, which: body.name, expiresInDays: body.expiresInDays,
                                                           expiry: body.expiry)
            return jsonResponse(SecretResponse(username: access.registryName, name: body.name, password: secret), status: .created)
        }
        managed.post("keys/rotate") { _, context in
            jsonResponse(KeyRotation(kid: try await access.rotateSigningKey(actor(context))), status: .created)
        }

        // identities
        managed.get("identities") { _, _ in jsonResponse(access.identityViews().map(BerthAPIContract.IdentityView.init)) }
        managed.post("identities") { request, context in
            let body = try await decode(IdentityRequest.self, request)
            let (view, password) = try await access.createIdentity(actor(context), name: body.name, kind: body.kind ?? "user",
                                                                   trustedService: body.trustedService ?? false,
                                                                   withPassword: body.password ?? true)
            return jsonResponse(IdentityCreated(identity: BerthAPIContract.IdentityView(view), password: password), status: .created)
        }
        managed.get("identities/:name") { _, context in
            let name = try context.parameters.require("name")
            guard let i = access.identityViews().first(where: { $0.name == name }) else {
                throw AccessError.notFound("identity \(name)")
            }
            return jsonResponse(BerthAPIContract.IdentityView(i))
        }
        managed.patch("identities/:name") { request, context in
            let body = try await decode(IdentityRequest.self, request)
            return jsonResponse(BerthAPIContract.IdentityView(
                try await access.updateIdentity(actor(context), name: try context.parameters.require("name"),
                                                enabled: body.enabled, trustedService: body.trustedService)))
        }
        managed.delete("identities/:name") { _, context in
            try await access.deleteIdentity(actor(context), name: try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        managed.post("identities/:name/password") { _, context in
            let name = try context.parameters.require("name")
            let secret = try await access.resetIdentityPassword(actor(context), name: name)
            return jsonResponse(SecretResponse(username: name, name: "password", password: secret), status: .created)
        }
        managed.post("identities/:name/federated-credentials") { request, context in
            let body = try await decode(FederatedCredentialRequest.self, request)
            return jsonResponse(BerthAPIContract.IdentityView(
                try await access.addFederatedCredential(actor(context), identity: try context.parameters.require("name"),
                                                        name: body.name, issuer: body.issuer, subject: body.subject,
                                                        audiences: body.audiences)), status: .created)
        }
        managed.delete("identities/:name/federated-credentials/:credential") { _, context in
            try await access.removeFederatedCredential(actor(context), identity: try context.parameters.require("name"),
                                                       name: try context.parameters.require("credential"))
            return Response(status: .noContent)
        }

        // role assignments
        managed.get("role-assignments") { _, _ in jsonResponse(access.roleAssignments().map(BerthAPIContract.RoleAssignmentView.init)) }
        managed.post("role-assignments") { request, context in
            let body = try await decode(BerthAPIContract.RoleAssignmentView.self, request)
            return jsonResponse(BerthAPIContract.RoleAssignmentView(
                try await access.assignRole(actor(context), assignee: body.assignee, role: body.role, scope: body.scope)), status: .created)
        }
        managed.delete("role-assignments") { request, context in
            try await access.removeRole(actor(context), assignee: query(request, "assignee") ?? "", role: query(request, "role") ?? "",
                                        scope: query(request, "scope") ?? "")
            return Response(status: .noContent)
        }

        // scope maps
        managed.get("scope-maps") { _, _ in jsonResponse(access.scopeMaps().map(ScopeMapView.init)) }
        managed.post("scope-maps") { request, context in
            let body = try await decode(ScopeMapRequest.self, request)
            return jsonResponse(ScopeMapView(try await access.putScopeMap(actor(context), name: body.name ?? "", description: body.description,
                                                                          entries: try body.accessEntries(), create: true)), status: .created)
        }
        managed.get("scope-maps/:name") { _, context in
            let name = try context.parameters.require("name")
            guard let map = access.scopeMaps().first(where: { $0.name == name }) else {
                throw AccessError.notFound("scope map \(name)")
            }
            return jsonResponse(ScopeMapView(map))
        }
        managed.put("scope-maps/:name") { request, context in
            let body = try await decode(ScopeMapRequest.self, request)
            return jsonResponse(ScopeMapView(try await access.putScopeMap(actor(context), name: try context.parameters.require("name"),
                                                                          description: body.description, entries: try body.accessEntries(),
                                                                          create: false)))
        }
        managed.delete("scope-maps/:name") { _, context in
            try await access.deleteScopeMap(actor(context), name: try context.parameters.require("name"))
            return Response(status: .noContent)
        }

        // tokens
        managed.get("tokens") { _, _ in jsonResponse(access.tokenViews().map(BerthAPIContract.TokenView.init)) }
        managed.post("tokens") { request, context in
            let body = try await decode(TokenRequest.self, request)
            let (view, passwords) = try await access.createToken(
                actor(context), name: body.name ?? "", scopeMap: body.scopeMap ?? "", enabled: body.status.map { $0 == "enabled" } ?? true,
                generatePasswords: body.generatePasswords ?? true, expiresInDays: body.expiresInDays)
            return jsonResponse(TokenCreated(token: BerthAPIContract.TokenView(view), credentials: passwords), status: .created)
        }
        managed.get("tokens/:name") { _, context in
            let name = try context.parameters.require("name")
            guard let t = access.tokenViews().first(where: { $0.name == name }) else {
                throw AccessError.notFound("token \(name)")
            }
            return jsonResponse(BerthAPIContract.TokenView(t))
        }
        managed.patch("tokens/:name") { request, context in
            let body = try await decode(TokenRequest.self, request)
            if let status = body.status, status != "enabled", status != "disabled" {
                throw AccessError.invalid("status must be enabled or disabled")
            }
            return jsonResponse(BerthAPIContract.TokenView(
                try await access.updateToken(actor(context), name: try context.parameters.require("name"),
                                             enabled: body.status.map { $0 == "enabled" }, scopeMap: body.scopeMap)))
        }
        managed.delete("tokens/:name") { _, context in
            try await access.deleteToken(actor(context), name: try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        managed.post("tokens/:name/credentials") { request, context in
            let name = try context.parameters.require("name")
            let body = try await decode(CredentialRequest.self, request)
            let secret = try await access.generatePassword(actor(context), token: name, which: body.name, expiresInDays: body.expiresInDays,
                                                           expiry: body.expiry)
            return jsonResponse(SecretResponse(username: name, name: body.name, password: secret), status: .created)
        }

        // network rules
        managed.get("network-rules") { _, _ in jsonResponse(access.settingsView().ipRules) }
        managed.post("network-rules") { request, context in
            let body = try await decode(NetworkRuleRequest.self, request)
            return jsonResponse(try await access.addNetworkRule(actor(context), body.ipAddress), status: .created)
        }
        managed.delete("network-rules") { request, context in
            jsonResponse(try await access.removeNetworkRule(actor(context), query(request, "ipAddress") ?? ""))
        }
    }

    /// An `AccessError` in the management envelope.
    static func managementError(_ e: AccessError) -> ManagementError {
        let (status, code, message): (HTTPResponse.Status, String, String) = switch e {
        case .invalid(let m): (.badRequest, "INVALID", m)
        case .notFound(let m): (.notFound, "NOT_FOUND", "\(m) not found")
        case .conflict(let m): (.conflict, "CONFLICT", m)
        case .invalidCredentials: (.unauthorized, "UNAUTHORIZED", "authentication failed")
        case .rateLimited(let s): (.tooManyRequests, "TOOMANYREQUESTS", "retry in \(s) s")
        }
        return ManagementError(status: status, code: code, message: message)
    }

    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        try await Self.decodeBody(type, request)
    }

    static func decodeBody<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
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


    /// `PATCH /api/v1/quarantine/manifests {repository, digest, state, reason}`: the gate's verdict.
    /// Needs quarantine/write on that repository (QuarantineWriter, Owner).
    func quarantineManifest(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?) async throws -> Response {
        guard request.method == .patch else { throw methodNotAllowed }
        let body = try await decode(QuarantineStateRequest.self, request)
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


    /// Records the gate's verdict. Needs quarantine/write on the repository (QuarantineWriter, Owner).
    func quarantineVerdict(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?, _ repo: RepositoryName,
                           _ digest: Digest, body: QuarantineStateRequest?) async throws -> Response {
        var state = body?.state
        var reason = body?.reason
        if body == nil {
            guard let verdict = try? await decode(VerdictBody.self, request) else {
                throw ManagementError(status: .badRequest, code: "INVALID", message: #"expected {"state": "Passed", "reason": "…"}"#)
            }
            state = verdict.state
            reason = verdict.reason
        }
        guard let parsed = state.flatMap(QuarantineState.init(rawValue:)) else {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "state must be Pending, Passed or Failed")
        }
        let origin = try await requireOnRepository(request, context, gate, caller, repo, .quarantineWrite)
        try await EventOrigin.$current.withValue(origin) {
            try await registry.setQuarantine(repo, digest, state: parsed, reason: reason)
        }
        let content = try await registry.manifest(repo, .digest(digest))
        return jsonResponse(QuarantineVerdictView(repository: repo.value, digest: digest.string, state: content.quarantineState?.rawValue,
                                                  reason: content.quarantineReason))
    }
}
