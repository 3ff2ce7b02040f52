import Access
import BerthAPIContract
import Foundation
import HTTPAPI
import Hummingbird
import RegistryStore

/// The pull-through cache as a feature (issue 17 item 2): `/api/v1/cache-rules` and
/// `/api/v1/credential-sets` (behind the management check: reading needs management/read, changing
/// management/write, an Owner's right), and the `ContentFallback` that fills missed reads.
public struct CacheFeature: RegistryFeature {
    let service: CacheService
    let pullThrough: PullThrough

    public init(service: CacheService, pullThrough: PullThrough) {
        self.service = service
        self.pullThrough = pullThrough
    }

    public var contentFallback: (any ContentFallback)? { pullThrough }

    public func addRoutes(to routes: FeatureRoutes) {
        let service = self.service
        let pullThrough = self.pullThrough
        let server = routes.server
        let api = routes.management
        api.get("cache-rules") { _, _ in
            server.json(try await service.rules().map(CacheRuleView.init))
        }
        api.post("cache-rules") { request, context in
            let body = try await server.decode(CacheRuleRequest.self, request)
            if body.clearCredentialSet == true { throw CacheError.invalid("clearCredentialSet is for updates") }
            let rule = try await service.createRule(name: body.name ?? "", source: body.sourceRepository ?? "", target: body.targetRepository ?? "",
                                                    credentialSet: body.credentialSet, plainHTTP: body.plainHTTP ?? false,
                                                    tagFreshnessSeconds: body.tagFreshnessSeconds,
                                                    createdBy: context.managementActor?.name ?? "anonymous")
            pullThrough.rulesChanged()
            return server.json(CacheRuleView(rule), status: .created)
        }
        api.get("cache-rules/:name") { _, context in
            server.json(CacheRuleView(try await service.rule(try context.parameters.require("name"))))
        }
        api.patch("cache-rules/:name") { request, context in
            let name = try context.parameters.require("name")
            let body = try await server.decode(CacheRuleRequest.self, request)
            if let named = body.name, named != name { throw CacheError.invalid("a cache rule's name cannot change") }
            let actor = context.managementActor ?? Access.Actor(name: "anonymous", address: "-")
            let (rule, reboundFrom) = try await service.updateRule(name: name, source: body.sourceRepository, target: body.targetRepository,
                                                                   credentialSet: body.credentialSet,
                                                                   clearCredentialSet: body.clearCredentialSet ?? false,
                                                                   plainHTTP: body.plainHTTP, tagFreshnessSeconds: body.tagFreshnessSeconds,
                                                                   by: actor.name)
            pullThrough.rulesChanged()
            // Who changed a rule is audited, and when it now runs with another principal's rights, from whom.
            await server.access.recordAudit(actor: actor.name, address: actor.address, action: "cache-rule.update", target: name,
                                            outcome: "ok",
                                            detail: "source=\(rule.sourceRepository) target=\(rule.targetRepository)"
                                                + (reboundFrom.map { "; rebound from \($0) to \(rule.createdBy)" } ?? ""))
            return server.json(CacheRuleView(rule))
        }
        api.delete("cache-rules/:name") { _, context in
            try await service.deleteRule(try context.parameters.require("name"))
            pullThrough.rulesChanged()
            return Response(status: .noContent)
        }
        api.get("credential-sets") { _, _ in
            server.json(try await service.credentialSets().map(CredentialSetView.init))
        }
        api.post("credential-sets") { request, _ in
            let body = try await server.decode(CredentialSetRequest.self, request)
            guard let password = body.password else { throw CacheError.invalid("password is required") }
            let set = try await service.createCredentialSet(name: body.name ?? "", loginServer: body.loginServer ?? "",
                                                            username: body.username ?? "", password: password)
            return server.json(CredentialSetView(set), status: .created)
        }
        api.get("credential-sets/:name") { _, context in
            server.json(CredentialSetView(try await service.credentialSet(try context.parameters.require("name"))))
        }
        api.patch("credential-sets/:name") { request, context in
            let name = try context.parameters.require("name")
            let body = try await server.decode(CredentialSetRequest.self, request)
            if let named = body.name, named != name { throw CacheError.invalid("a credential set's name cannot change") }
            let set = try await service.updateCredentialSet(name: name, loginServer: body.loginServer, username: body.username,
                                                            password: body.password)
            pullThrough.rulesChanged()
            return server.json(CredentialSetView(set))
        }
        api.delete("credential-sets/:name") { _, context in
            try await service.deleteCredentialSet(try context.parameters.require("name"))
            return Response(status: .noContent)
        }
    }
}

/// Cache errors in the management API's envelope.
extension CacheError: ManagementErrorConvertible {
    public var managementError: ManagementError {
        switch self {
        case .invalid(let m): ManagementError(status: .badRequest, code: "INVALID", message: m)
        case .notFound(let m): ManagementError(status: .notFound, code: "NOT_FOUND", message: "\(m) not found")
        case .conflict(let m): ManagementError(status: .conflict, code: "CONFLICT", message: m)
        }
    }
}

// The HTTP edge: the store's and service's values in the management API's contract.

extension CacheRuleView {
    init(_ r: CacheRuleRecord) {
        self.init(name: r.name, sourceRepository: r.sourceRepository, targetRepository: r.targetRepository, credentialSet: r.credentialSet,
                  plainHTTP: r.plainHTTP, tagFreshnessSeconds: r.tagFreshnessSeconds, createdBy: r.createdBy, createdAt: r.createdAt)
    }
}

extension CredentialSetView {
    init(_ s: CredentialSet) {
        self.init(name: s.name, loginServer: s.loginServer, username: s.username, createdAt: s.createdAt)
    }
}
