import Access
import Admission
import AdmissionFeature
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

/// A feature made up for the test: one management route, a check of the pull-admission chain
/// that refuses one repository, and a count of the pushes it hears of.
private struct ProbeFeature: RegistryFeature {
    struct Refusal: ManagementErrorConvertible {
        var managementError: ManagementError { ManagementError(status: .conflict, code: "CONFLICT", message: "probe refuses") }
    }
    struct Check: PullAdmissionCheck {
        func refusal(for pull: PullAdmission.Subject) async throws -> String? {
            pull.repository.value == "blocked/app" ? "the probe refuses this" : nil
        }
    }
    let pushes = NIOLockedValueBox(0)

    func addRoutes(to routes: FeatureRoutes) {
        let server = routes.server
        routes.management.get("probe") { _, context in
            server.json(["actor": context.managementActor?.name ?? "none"])
        }
        routes.management.post("probe") { _, _ -> Response in throw Refusal() }
        // what the token endpoints' login and token calls may throw, under their path prefix
        routes.root.post("oauth2/probe") { _, _ -> Response in throw AccessError.rateLimited(retryAfter: 7) }
        routes.root.get("oauth2/probe") { _, _ -> Response in throw AccessError.invalidCredentials }
    }
    var pullCheck: (any PullAdmissionCheck)? { Check() }
    func manifestPushed() { pushes.withLockedValue { $0 += 1 } }
}

@Suite struct FeatureTests {
    private func app(_ probe: ProbeFeature) async throws -> some ApplicationProtocol {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        return try await BerthServer.makeApplication(registry: registry, access: access, features: [probe, AdmissionFeature()],
                                               host: "127.0.0.1", port: 0, logger: logger)
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

    @Test func aServerWithoutTheFeatureThatEnforcesAStoredPolicyDoesNotStart() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: tempDataDir(), logger: logger)
        func compose(_ features: [any RegistryFeature]) async throws {
            _ = try await BerthServer.makeApplication(registry: registry, access: nil, features: features,
                                                      host: "127.0.0.1", port: 0, logger: logger)
        }
        try await compose([])                                   // nothing stored
        try await registry.metadata.setSettingDocument("content-trust", Data(#"{"enabled":false,"repositories":[]}"#.utf8))
        try await compose([AdmissionFeature()])                 // stored, switched off
        for enforcing in [#"{"enabled":true,"repositories":["*"]}"#, #"{"enabled": "#] {   // on, or no longer readable
            try await registry.metadata.setSettingDocument("content-trust", Data(enforcing.utf8))
            await #expect(throws: MissingPullCheck.self) { try await compose([]) }
            await #expect(throws: MissingPullCheck.self) { try await compose([ProbeFeature(), AdmissionFeature()]) }
            try await compose(standardFeatures(registry))       // with content trust
        }
    }

    @Test func accessErrorsOfTheTokenEndpointsUseTheTokenProtocolsEnvelope() async throws {
        try await app(ProbeFeature()).test(.router) { client in
            let limited = try await client.execute(uri: "/oauth2/probe", method: .post)
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[HTTPField.Name("Retry-After")!] == "7")
            #expect(errorCode(limited) == "TOOMANYREQUESTS")
            let failed = try await client.execute(uri: "/oauth2/probe", method: .get)
            #expect(failed.status == .unauthorized)
            #expect(errorCode(failed) == "UNAUTHORIZED")
            #expect(failed.headers[.wwwAuthenticate]?.hasPrefix("Bearer realm=") == true)
        }
    }

    @Test func aFeaturesPullCheckIsInTheOneChainPullsAndAdmissionAskAndItHearsOfPushes() async throws {
        let probe = ProbeFeature()
        try await app(probe).test(.router) { client in
            for repo in ["blocked/app", "open/app"] {
                #expect(try await push(client, repo, tag: "v1", auth: owner) == .created)
            }
            #expect(probe.pushes.withLockedValue { $0 } == 2)
            let blocked = try await client.execute(uri: "/v2/blocked/app/manifests/v1", method: .get, headers: owner)
            #expect(blocked.status == .forbidden)
            #expect(errorCode(blocked) == "DENIED")
            #expect(String(buffer: blocked.body).contains("the probe refuses this"))
            #expect(try await client.execute(uri: "/v2/open/app/manifests/v1", method: .get, headers: owner).status == .ok)
            // the admission endpoints (another feature) ask the same chain, with the probe's check in it
            let host = try await AdmissionTests().host(client)
            let refused = try await AdmissionTests().review(client, "/admission/v1/validate",
                                                            podReview(uid: "p", images: ["\(host)/blocked/app:v1"]))
            #expect(refused.response.allowed == false)
            #expect(refused.response.status?.message == "Berth refused: \(host)/blocked/app:v1: the probe refuses this")
            let admitted = try await AdmissionTests().review(client, "/admission/v1/validate",
                                                             podReview(uid: "o", images: ["\(host)/open/app:v1"]))
            #expect(admitted.response.allowed)
        }
    }

    @Test func pathsNoRouteServesAreNotFoundAndWrongMethodsAre405InTheirAPIsEnvelope() async throws {
        try await app(ProbeFeature()).test(.router) { client in
            let management = try await client.execute(uri: "/api/v1/no-such-thing", method: .get, headers: owner)
            #expect(management.status == .notFound)
            #expect(String(buffer: management.body).contains(#""code":"NOT_FOUND""#))
            let other = try await client.execute(uri: "/nothing/here", method: .get)
            #expect(other.status == .notFound)
            #expect(errorCode(other) == "UNSUPPORTED")
            // a known path with a method it does not take: 405 with the methods it does take
            let exchange = try await client.execute(uri: "/oauth2/exchange", method: .get)
            #expect(exchange.status == .methodNotAllowed)
            #expect(exchange.headers[.allow] == "POST")
            #expect(errorCode(exchange) == "UNSUPPORTED")
            for (path, method, allow) in [("/healthz", HTTPRequest.Method.post, "GET, HEAD"), ("/readyz", .delete, "GET, HEAD"),
                                          ("/admission/v1/validate", .head, "POST"), ("/admission/v1/mutate", .options, "POST"),
                                          ("/admission/v1/mutate", .get, "POST")] {
                let wrong = try await client.execute(uri: path, method: method)
                #expect(wrong.status == .methodNotAllowed, "\(method) \(path)")
                #expect(wrong.headers[.allow] == allow, "\(method) \(path)")
            }
            let manifests = try await client.execute(uri: "/api/v1/quarantine/manifests", method: .get, headers: owner)
            #expect(manifests.status == .methodNotAllowed)
            #expect(manifests.headers[.allow] == "PATCH")
            #expect(String(buffer: manifests.body).contains(#""code":"METHOD_NOT_ALLOWED""#))
            // a 404 a handler gives for a method the route takes stays a 404
            let unknownRepository = try await client.execute(uri: "/api/v1/repository/tags?name=no/such", method: .get, headers: owner)
            #expect(unknownRepository.status == .notFound)
            // the management API's shape is not told to who may not manage: no route, or a
            // method a route does not take, is 401 anonymously, as a real route would be
            let anonymous = try await client.execute(uri: "/api/v1/no-such-thing", method: .get)
            #expect(anonymous.status == .unauthorized)
            #expect(anonymous.headers[.wwwAuthenticate] != nil)
            #expect(try await client.execute(uri: "/api/v1/quarantine", method: .delete).status == .unauthorized)
            #expect(try await client.execute(uri: "/api/v1/quarantine/manifests", method: .get).status == .unauthorized)
            let delete = try await client.execute(uri: "/api/v1/quarantine", method: .delete, headers: owner)
            #expect(delete.status == .methodNotAllowed)
            #expect(delete.headers[.allow] == "GET, PATCH")
        }
    }

    @Test func emptyPathSegmentsDoNotDodgeTheManagementCheckOrChangeTheEnvelope() async throws {
        try await app(ProbeFeature()).test(.router) { client in
            // the router drops empty segments; the checks around it must judge the path the same way
            for (path, method) in [("/api//v1/webhooks", HTTPRequest.Method.delete), ("//api/v1/quarantine", .get),
                                   ("/api/v1//webhooks", .delete), ("/api//v1/quarantine", .delete),
                                   ("//api//v1//quarantine//manifests", .get), ("/api//v1/no-such-thing", .get)] {
                let anonymous = try await client.execute(uri: path, method: method)
                #expect(anonymous.status == .unauthorized, "\(method) \(path)")
                #expect(anonymous.headers[.allow] == nil, "\(method) \(path)")
            }
            let delete = try await client.execute(uri: "/api//v1/quarantine", method: .delete, headers: owner)
            #expect(delete.status == .methodNotAllowed)
            #expect(delete.headers[.allow] == "GET, PATCH")
            #expect(String(buffer: delete.body).contains(#""code":"METHOD_NOT_ALLOWED""#))
            let missing = try await client.execute(uri: "/api//v1/no-such-thing", method: .get, headers: owner)
            #expect(String(buffer: missing.body).contains(#""code":"NOT_FOUND""#))
            let limited = try await client.execute(uri: "//oauth2/probe", method: .post)
            #expect(limited.status == .tooManyRequests)
            #expect(errorCode(limited) == "TOOMANYREQUESTS")
            #expect(RegistryResponder.routeName("//api/v1/quarantine") == "management")
            #expect(RegistryResponder.routeName("//healthz") == "healthz")
        }
    }
}
