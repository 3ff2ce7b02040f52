import Access
import Admission
import BerthAPIContract
import Foundation
import HTTPAPI
import Hummingbird
import OCIModel
import RegistryCore
import Signing

/// Registry-side content trust as a feature: its check of the pull-admission chain
/// (`ContentTrustGate`, a `PullAdmissionCheck`) and its management routes,
/// `GET`/`PUT /api/v1/content-trust`.
public struct ContentTrustFeature: RegistryFeature {
    let gate: ContentTrustGate

    public init(registry: Registry) {
        gate = ContentTrustGate(registry: registry)
        registry.registerSettingType(ContentTrustGate.settingKey, check: ContentTrustGate.validate)
    }

    public var pullCheck: (any PullAdmissionCheck)? { gate }

    public func manifestPushed() { gate.invalidate() }

    public func addRoutes(to routes: FeatureRoutes) {
        let contentTrust = gate
        let server = routes.server
        routes.management.get("content-trust") { _, _ in
            await server.json(ContentTrustView(try contentTrust.current()))
        }
        routes.management.put("content-trust") { request, context in
            let actor = context.managementActor ?? Actor(name: "anonymous", address: "-")
            let config = ContentTrustConfig(try await server.decode(ContentTrustView.self, request))
            do {
                try await contentTrust.update(config)
            } catch let e as ContentTrustError {
                throw ManagementError(status: .badRequest, code: "INVALID", message: e.description)
            } catch let e as SigningError {
                throw ManagementError(status: .badRequest, code: "INVALID", message: "\(e)")
            }
            await server.access.recordAudit(actor: actor.name, address: actor.address, action: "content-trust.update",
                                            target: config.repositories.joined(separator: ","), outcome: "ok",
                                            detail: "enabled=\(config.enabled) exempt=\(config.exempt.joined(separator: ","))")
            return await server.json(ContentTrustView(try contentTrust.current()))
        }
    }
}

// The HTTP edge: the configuration in the management API's contract, both ways.

extension ContentTrustView {
    init(_ c: ContentTrustConfig) {
        self.init(enabled: c.enabled, repositories: c.repositories, trustPolicy: c.trustPolicy.map { doc in
            TrustPolicyDocumentView(version: doc.version, trustPolicies: doc.trustPolicies.map { p in
                TrustPolicyView(name: p.name, registryScopes: p.registryScopes,
                                signatureVerification: SignatureVerificationView(level: p.signatureVerification.level,
                                                                                 override: p.signatureVerification.override),
                                trustStores: p.trustStores, trustedIdentities: p.trustedIdentities)
            })
        }, trustStores: c.trustStores, exempt: c.exempt)
    }
}

extension ContentTrustConfig {
    init(_ v: ContentTrustView) {
        self.init(enabled: v.enabled, repositories: v.repositories, trustPolicy: v.trustPolicy.map { doc in
            TrustPolicyDocument(version: doc.version, trustPolicies: doc.trustPolicies.map { p in
                TrustPolicy(name: p.name, registryScopes: p.registryScopes,
                            signatureVerification: SignatureVerificationSetting(level: p.signatureVerification.level,
                                                                                override: p.signatureVerification.override),
                            trustStores: p.trustStores, trustedIdentities: p.trustedIdentities)
            })
        }, trustStores: v.trustStores, exempt: v.exempt)
    }
}
