import Access
import Backends
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Testing
@testable import HTTPAPI

/// A feature made up for the test: one management route, a pull check that refuses one
/// repository, and a count of the pushes it hears of.
private struct ProbeFeature: RegistryFeature {
    struct Refusal: ManagementErrorConvertible {
        var managementError: ManagementError { ManagementError(status: .conflict, code: "CONFLICT", message: "probe refuses") }
    }
    struct Check: PullCheck {
        func admit(_ repository: RepositoryName, _ content: ManifestContent, host: String, caller: String?) async throws {
            if repository.value == "blocked/app" { throw AccessDenied(error: RegistryError(.denied, "the probe refuses this")) }
        }
    }
    let pushes = NIOLockedValueBox(0)

    func addRoutes(to routes: FeatureRoutes) {
        routes.management.get("probe") { _, context in
            routes.server.json(["actor": context.managementActor?.name ?? "none"])
        }
        routes.management.post("probe") { _, _ -> Response in throw Refusal() }
    }
    var pullCheck: (any PullCheck)? { Check() }
    func manifestPushed() { pushes.withLockedValue { $0 += 1 } }
}

@Suite struct FeatureTests {
    private func app(_ probe: ProbeFeature) async throws -> some ApplicationProtocol {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        return try BerthServer.makeApplication(registry: registry, access: access, features: [probe], host: "127.0.0.1", port: 0,
                                               logger: logger)
    }

    @Test func aFeaturesRoutesSitBehindTheManagementCheckAndItsErrorsUseTheManagementEnvelope() async throws {
        try await app(ProbeFeature()).test(.router) { client in
            #expect(try await client.execute(uri: "/api/v1/probe", method: .get).status == .unauthorized)
            let probed = try await client.execute(uri: "/api/v1/probe", method: .get, headers: owner)
            #expect(probed.status == .ok)
            #expect(String(buffer: probed.body).contains("owner"))
            let refused = try await client.execute(uri: "/api/v1/probe", method: .post, headers: owner)
            #expect(refused.status == .conflict)
            #expect(String(buffer: refused.body) == #"{"error":{"code":"CONFLICT","message":"probe refuses"}}"#)
        }
    }

    @Test func aFeaturesPullCheckJudgesEveryManifestPullAndHearsOfPushes() async throws {
        let probe = ProbeFeature()
        try await app(probe).test(.router) { client in
            for repo in ["blocked/app", "open/app"] {
                #expect(try await push(client, repo, tag: "v1", auth: owner) == .created)
            }
            #expect(probe.pushes.withLockedValue { $0 } == 2)
            let blocked = try await client.execute(uri: "/v2/blocked/app/manifests/v1", method: .get, headers: owner)
            #expect(blocked.status == .forbidden)
            #expect(errorCode(blocked) == "DENIED")
            #expect(try await client.execute(uri: "/v2/open/app/manifests/v1", method: .get, headers: owner).status == .ok)
        }
    }

    @Test func pathsNoRouteServesAreNotFoundInTheirAPIsEnvelope() async throws {
        try await app(ProbeFeature()).test(.router) { client in
            let management = try await client.execute(uri: "/api/v1/no-such-thing", method: .get, headers: owner)
            #expect(management.status == .notFound)
            #expect(String(buffer: management.body).contains(#""code":"NOT_FOUND""#))
            let other = try await client.execute(uri: "/nothing/here", method: .get)
            #expect(other.status == .notFound)
            #expect(errorCode(other) == "UNSUPPORTED")
            // a known path with a method it does not take
            #expect(try await client.execute(uri: "/oauth2/exchange", method: .get).status == .notFound)
        }
    }
}
