import Access
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore

/// Lifecycle endpoints of the management API: retention, soft delete, garbage collection,
/// quotas, purge and its schedules, run reports, usage, and the repository commands (locks,
/// listings, untag, delete, recycle bin). Repository-scoped endpoints are judged per repository
/// (metadata/read, metadata/write, content/delete, content/write); the rest need management
/// read or write.
extension RegistryResponder {
    // Request bodies and views: BerthAPIContract.

    func enabled(_ status: String?, current: Bool) throws -> Bool {
        switch status {
        case nil: return current
        case "enabled": return true
        case "disabled": return false
        default: throw ManagementError(status: .badRequest, code: "INVALID", message: "status must be enabled or disabled")
        }
    }

    func retentionView() async throws -> RetentionView {
        let p = try await registry.retentionPolicy()
        return RetentionView(status: p.enabled ? "enabled" : "disabled", days: p.days, type: p.type)
    }

    func softDeleteView() async throws -> SoftDeleteView {
        let p = try await registry.softDeletePolicy()
        return SoftDeleteView(status: p.enabled ? "enabled" : "disabled", days: p.days)
    }

    func gcView() async throws -> GCPolicyView {
        let p = try await registry.garbageCollectionPolicy()
        return GCPolicyView(status: p.enabled ? "enabled" : "disabled", intervalSeconds: p.intervalSeconds, graceSeconds: p.graceSeconds)
    }

    /// Run reports as the contract's `LifecycleRunView`s, each with its run's id. Reports are
    /// stored before the run has an id, so most carry `"id": null`; the id replaces it.
    /// A stored report that does not read (a damaged row) is left out and logged with its run's
    /// id, so one bad row does not hide every other run.
    func runsResponse(_ runs: [LifecycleRunRecord]) throws -> Response {
        jsonResponse(runs.compactMap { run -> LifecycleRunView? in
            guard let view = Self.runView(run) else {
                accessLog.error("lifecycle run report does not read; left out of the list", metadata: ["run": "\(run.id)"])
                return nil
            }
            return view
        })
    }

    /// A stored report read back as the contract's view, with its run's id; nil when it does not
    /// read. Every stored report was written from the report types the contract mirrors; one that
    /// does not read is a damaged row, never passed on as unknown JSON.
    static func runView(_ run: LifecycleRunRecord) -> LifecycleRunView? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard var view = try? decoder.decode(LifecycleRunView.self, from: Data(run.report.utf8)) else { return nil }
        switch view {
        case .lifecycle(var r):
            r.id = run.id
            view = .lifecycle(r)
        case .garbageCollection(var r):
            r.id = run.id
            view = .garbageCollection(r)
        }
        return view
    }

    /// Registry-wide lifecycle endpoints, in the group behind the management check. Their
    /// writes record the actor as the origin of their events.
    func addLifecycleRoutes(to managed: RouterGroup<Context>) {
        /// Adds one route whose handler runs as the checked actor, lifecycle errors in the management envelope.
        func route(_ method: HTTPRequest.Method, _ path: String,
                   _ handler: @escaping @Sendable (Request, Context) async throws -> Response) {
            managed.on(RouterPath(path), method: method) { request, context in
                try await lifecycle(actor(context)) { try await handler(request, context) }
            }
        }
        route(.get, "config/retention") { _, _ in await jsonResponse(try retentionView()) }
        route(.patch, "config/retention") { request, _ in
            let body = try await decode(StatusDaysRequest.self, request)
            var p = try await registry.replacing(registry.retentionPolicy, default: RetentionPolicy())
            p.enabled = try enabled(body.status, current: p.enabled)
            if let days = body.days { p.days = days }
            if let type = body.type { p.type = type }
            try await registry.updateRetention(p)
            return await jsonResponse(try retentionView())
        }
        route(.post, "config/retention/run") { _, _ in jsonResponse(try await registry.runRetention(force: true).map(LifecycleReportView.init)) }
        route(.get, "config/soft-delete") { _, _ in await jsonResponse(try softDeleteView()) }
        route(.patch, "config/soft-delete") { request, _ in
            let body = try await decode(StatusDaysRequest.self, request)
            var p = try await registry.replacing(registry.softDeletePolicy, default: SoftDeletePolicy())
            p.enabled = try enabled(body.status, current: p.enabled)
            if let days = body.days { p.days = days }
            try await registry.updateSoftDelete(p)
            return await jsonResponse(try softDeleteView())
        }
        route(.get, "config/gc") { _, _ in await jsonResponse(try gcView()) }
        route(.patch, "config/gc") { request, _ in
            let body = try await decode(GCPolicyRequest.self, request)
            var p = try await registry.replacing(registry.garbageCollectionPolicy, default: GarbageCollectionPolicy())
            p.enabled = try enabled(body.status, current: p.enabled)
            if let v = body.intervalSeconds { p.intervalSeconds = v }
            if let v = body.graceSeconds { p.graceSeconds = v }
            try await registry.updateGarbageCollection(p)
            return await jsonResponse(try gcView())
        }

        route(.get, "quotas") { _, _ in await jsonResponse(try registry.quotaViews().map(BerthAPIContract.QuotaView.init)) }
        route(.post, "quotas") { request, _ in
            let body = try await decode(QuotaRequest.self, request)
            let quota = try await registry.createQuota(QuotaLimit(name: body.name, prefix: body.prefix, limitBytes: body.limitBytes))
            return jsonResponse(BerthAPIContract.QuotaView(quota), status: .created)
        }
        route(.delete, "quotas/:name") { _, context in
            try await registry.deleteQuota(name: try context.parameters.require("name"))
            return Response(status: .noContent)
        }

        route(.get, "purge/schedules") { _, _ in await jsonResponse(try registry.purgeScheduleViews().map(BerthAPIContract.PurgeScheduleView.init)) }
        route(.post, "purge/schedules") { request, _ in
            let body = try await decode(ScheduleRequest.self, request)
            let schedule = try await registry.createPurgeSchedule(name: body.name, cron: body.cron, filters: body.filters,
                                                                  ago: body.ago ?? "0", untagged: body.untagged ?? false, keep: body.keep ?? 0)
            return jsonResponse(BerthAPIContract.PurgeScheduleView(schedule), status: .created)
        }
        route(.delete, "purge/schedules/:name") { _, context in
            try await registry.deletePurgeSchedule(name: try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        route(.get, "lifecycle/runs") { request, _ in
            let limit = min(try queryInt(request, "limit") ?? 20, 1000)
            return try await runsResponse(try registry.runs(kind: query(request, "kind"), name: query(request, "name"), limit: limit))
        }

        route(.post, "gc") { request, _ in
            // No body is a real run; a body that does not parse is refused, never taken as one.
            let dryRun = request.headers[.contentLength] == "0" ? false
                : try await decode(DryRunRequest.self, request).dryRun ?? false
            return jsonResponse(GarbageCollectionReportView(try await registry.collectGarbage(dryRun: dryRun)))
        }
        // Each consumer with the lease it runs under and the node holding it now (live leases only).
        @Sendable func views(_ consumers: [RegistryCore.EventConsumerView]) async throws -> [BerthAPIContract.EventConsumerView] {
            let now = Date()
            // A lease store that cannot be read leaves the holders out, never the answer.
            let held = consumerLeases.isEmpty ? [:] : Dictionary(
                ((try? await leases?.leases()) ?? []).filter { $0.expiresAt > now }.map { ($0.name, $0.holder) },
                uniquingKeysWith: { a, _ in a })
            return consumers.map { consumer in
                var view = BerthAPIContract.EventConsumerView(consumer)
                view.lease = consumerLeases.first { $0.host.hosts(consumer.name) }?.lease
                view.leaseHolder = view.lease.flatMap { held[$0] }
                return view
            }
        }
        route(.get, "event-consumers") { _, _ in jsonResponse(try await views(try await registry.eventConsumerViews())) }
        route(.post, "event-consumers/:name/pause") { _, context in
            jsonResponse(try await views([try await registry.setEventConsumerPaused(try context.parameters.require("name"), paused: true)])[0])
        }
        route(.post, "event-consumers/:name/resume") { _, context in
            jsonResponse(try await views([try await registry.setEventConsumerPaused(try context.parameters.require("name"), paused: false)])[0])
        }
        route(.get, "leases") { _, _ in
            let now = Date()
            let leases = try await leases?.leases() ?? []
            return jsonResponse(leases.sorted { $0.name < $1.name }.map {
                LeaseView(name: $0.name, holder: $0.holder, token: $0.token, expiresAt: $0.expiresAt, live: $0.expiresAt > now)
            })
        }
        route(.get, "repositories") { _, _ in await jsonResponse(try registry.repositoryDetails().map(RepositoryDetailView.init)) }
    }

    /// Runs a lifecycle handler as `actor` (the origin of its events).
    func lifecycle(_ actor: Actor, _ body: () async throws -> Response) async throws -> Response {
        let origin = EventOrigin(actor: actor.name, address: actor.address)
        return try await EventOrigin.$current.withValue(origin) {
            try await lifecycleErrors { try await body() }
        }
    }

    /// Lifecycle handlers report the registry's own errors in the management envelope too (the
    /// one error mapping renders `LifecycleError` and `ManagementError` there already).
    func lifecycleErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let e as RegistryError {
            throw ManagementError(status: HTTPResponse.Status(code: e.status), code: e.code.rawValue, message: e.message)
        }
    }

    /// `POST /api/v1/purge`. With management/write: every repository its filters match. Without
    /// it (a build task's `berth purge` with its run identity, a scope-map token): allowed only
    /// when the caller may delete (content/delete and metadata/write) in every repository the
    /// filters match, each judged as `/api/v1/repository` judges it, and the purge then touches
    /// no other; otherwise 403 (audited), naming none of them.
    func purge(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?) async throws -> Response {
        let address = caller?.address ?? gate.address(request, context)
        let manager = gate.access.authorize(AccessRequest(caller: caller, address: address, repository: nil,
                                                          actions: .managementWrite, target: .none)).isAllowed
        if !manager, caller == nil {
            throw gate.challenge(request, scope: "registry:management:*", message: "authentication required", insufficientScope: false)
        }
        let body = try await decode(PurgeRequest.self, request)
        let actor = caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous"
        let origin = EventOrigin(actor: actor, address: address?.description ?? "-")
        return try await EventOrigin.$current.withValue(origin) {
            try await lifecycleErrors {
                let options = try Registry.purgeOptions(filters: body.filters, ago: body.ago ?? "0", untagged: body.untagged ?? false,
                                                        keep: body.keep ?? 0)
                var only: Set<String>?
                if !manager {
                    // Only repositories the caller can see count (review: a 403 for a match it cannot
                    // see told it that repository exists); the others are left out of its purge.
                    let matched = try await registry.purgeRepositories(options).filter {
                        gate.allows(caller, request, context, repository: $0, action: .metadataRead, target: AccessTarget(management: true))
                    }
                    let allowed = matched.filter {
                        gate.allows(caller, request, context, repository: $0, action: [.contentDelete, .metadataWrite],
                                    target: AccessTarget(management: true))
                    }
                    guard allowed.count == matched.count else {
                        let reason = "the purge's filters match repositories you may not delete in; narrow them to your own"
                        await gate.access.recordAudit(actor: actor, address: address?.description ?? "-", action: "POST purge",
                                                      target: "registry", outcome: "denied", detail: reason)
                        throw AccessDenied(error: RegistryError(.denied, reason))
                    }
                    only = Set(allowed)
                }
                return jsonResponse(LifecycleReportView(try await registry.purge(options, dryRun: body.dryRun ?? false, only: only)))
            }
        }
    }

    /// Setting or lifting a lock (repository, tag or manifest) is for the repository's owners, so
    /// nobody below them can lift a lock they set: an identity needs the Owner role on the
    /// repository (the only role with management/write there), a scope-map token metadata/write
    /// and content/delete. Judged like `requireOnRepository` (a management token is narrowed by
    /// the principal's rights, not its claims); the refusal names what is missing.
    func requireLockRights(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?,
                           _ repo: RepositoryName) async throws {
        guard let caller else {
            throw gate.challenge(request, scope: nil, message: "authentication required", insufficientScope: false)
        }
        // A build task's run identity (management judged by its grants) is not a scope-map token:
        // it needs the Owner role too, which it never holds (review: its delete right lifted locks).
        let isToken = caller.principal.kind == .token && !caller.principal.managementByGrants
        let needed: Action = isToken ? [.metadataWrite, .contentDelete] : Role.owner.actions
        if gate.allows(caller, request, context, repository: repo.value, action: needed, target: AccessTarget(management: true)) { return }
        let who = "\(caller.principal.kind.rawValue) \(caller.principal.name)"
        let reason: String
        if isToken {
            let lacking = needed.subtracting(caller.principal.actions(on: repo.value))
            reason = "setting or lifting a lock on \(repo.value) needs metadata/write and content/delete there; "
                + "\(who) lacks \((lacking.isEmpty ? needed : lacking).description)"
        } else {
            reason = "setting or lifting a lock on \(repo.value) needs the Owner role on it; \(who) does not hold it there"
        }
        await gate.access.recordAudit(actor: "\(caller.principal.kind.rawValue):\(caller.principal.name)",
                                      address: (caller.address ?? gate.address(request, context))?.description ?? "-",
                                      action: "PATCH lock", target: repo.value, outcome: "denied", detail: reason)
        throw AccessDenied(error: RegistryError(.denied, reason))
    }

    /// `/api/v1/repository[/tags|/manifests|/deleted|/restore]?name=r` and `/api/v1/usage?repository=r`:
    /// judged on that repository.
    func repositoryManagement(_ request: Request, _ context: Context, _ gate: AuthGate, _ caller: Caller?) async throws -> Response {
        let path = request.uri.path
        let isUsage = path == "/api/v1/usage"
        guard let rawName = query(request, isUsage ? "repository" : "name") else {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "give the repository as ?name=")
        }
        let repo = try RepositoryName(rawName)
        let sub = isUsage ? "usage" : String(path.dropFirst("/api/v1/repository".count))
        let action: Action = switch (request.method, sub) {
        case (.get, _): .metadataRead
        case (.patch, ""): .metadataWrite
        case (.delete, _): .contentDelete
        default: .contentWrite
        }
        let origin = try await requireOnRepository(request, context, gate, caller, repo, action)
        if request.method == .patch, sub == "" {
            try await requireLockRights(request, context, gate, caller, repo)
        }
        let answer = try await EventOrigin.$current.withValue(origin) {
            try await lifecycleErrors { () async throws -> Response? in
                switch (request.method, sub) {
                case (.get, "usage"):
                    return await jsonResponse(UsageView(try registry.usage(repository: repo)))
                case (.get, ""):
                    return await jsonResponse(RepositoryDetailView(try registry.repositoryDetail(repo)))
                case (.patch, ""):
                    let body = try await decode(LockRequest.self, request)
                    let tag = query(request, "tag")
                    let digest = try query(request, "digest").map { try parseDigest($0) }
                    if tag != nil, digest != nil { throw LifecycleError.invalid("give a tag or a digest, not both") }
                    if let tag, !Tag.isValid(tag) { throw LifecycleError.invalid("invalid tag \(tag)") }
                    return jsonResponse(LockView(try await registry.updateLock(repo, tag: tag, digest: digest, LockChange(
                        readEnabled: body.readEnabled, writeEnabled: body.writeEnabled, deleteEnabled: body.deleteEnabled,
                        listEnabled: body.listEnabled))))
                case (.delete, ""):
                    return jsonResponse(LifecycleReportView(try await registry.deleteRepository(repo)))
                case (.get, "/tags"):
                    return await jsonResponse(try registry.tagDetails(repo, orderBy: query(request, "orderby") ?? "name_asc").map(TagDetailView.init))
                case (.delete, "/tags"):
                    guard let tag = query(request, "tag"), Tag.isValid(tag) else { throw LifecycleError.invalid("give a valid ?tag=") }
                    do {
                        try await registry.deleteManifest(repo, .tag(tag))
                    } catch let e as RegistryError where e.code == .manifestUnknown {
                        throw LifecycleError.notFound("tag \(tag) in \(repo.value)")
                    }
                    return Response(status: .noContent)
                case (.get, "/manifests"):
                    return await jsonResponse(try registry.manifestDetails(repo).map(ManifestDetailView.init))
                case (.get, "/deleted"):
                    return await jsonResponse(try registry.deletedManifests(repo).map(DeletedManifestView.init))
                case (.post, "/restore"):
                    let body = try await decode(RestoreRequest.self, request)
                    let restored = try await registry.restoreManifest(repo, digest: try parseDigest(body.digest), tag: body.tag)
                    return jsonResponse(RestoreResponse(restored: restored.map { RestoredManifestView(digest: $0.digest, tags: $0.tags) }))
                default:
                    return nil
                }
            }
        }
        if let answer { return answer }
        throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "no such management endpoint")
    }
}
