import Access
import Foundation
import HTTPTypes
import Hummingbird
import OCIModel
import RegistryCore
import ServiceLifecycle

/// A feature target (webhooks, content trust, admission; later scanning, tasks, replication) plugs
/// into the server through this protocol: HTTPAPI knows the protocol, never the feature. The
/// composition root (`berth serve`, the HTTP tests' support) hands the features to
/// `BerthServer.makeApplication`.
public protocol RegistryFeature: Sendable {
    /// Adds the feature's routes. Called only when access control is on: every feature route
    /// needs an authenticated caller.
    func addRoutes(to routes: FeatureRoutes)
    /// Background services that run, and stop, with the server.
    var services: [any Service] { get }
    /// A check every manifest pull passes (`/v2/` and the admission endpoints), nil for none.
    var pullCheck: (any PullCheck)? { get }
    /// Called after each manifest push (a new signature may change a cached verdict).
    func manifestPushed()
    /// Sets the feature's gauges before `/metrics` is rendered.
    func updateMetrics(_ metrics: HTTPMetrics) async throws
}

extension RegistryFeature {
    public func addRoutes(to routes: FeatureRoutes) {}
    public var services: [any Service] { [] }
    public var pullCheck: (any PullCheck)? { nil }
    public func manifestPushed() {}
    public func updateMetrics(_ metrics: HTTPMetrics) async throws {}
}

/// Decides whether a manifest may be served; throws `AccessDenied` (403 DENIED) when not.
/// `host` is the configured service name; `caller` the principal's name, nil when anonymous.
public protocol PullCheck: Sendable {
    func admit(_ repository: RepositoryName, _ content: ManifestContent, host: String, caller: String?) async throws
}

/// Where a feature adds its routes.
public struct FeatureRoutes {
    /// The server's router, for endpoints of their own (`/admission/v1/...`).
    public let root: Router<BerthRequestContext>
    /// `/api/v1`, behind the management check (GET needs management/read, any other method
    /// management/write); handlers find the caller as `context.actor`.
    public let management: RouterGroup<BerthRequestContext>
    public let server: FeatureServer
}

/// What the HTTP layer lends a feature's handlers: the registry, the caller behind a request and
/// the one authorization function, the pull checks, and the management API's JSON conventions.
public struct FeatureServer: Sendable {
    let gate: AuthGate
    public let registry: Registry
    let checks: [any PullCheck]

    public var access: AccessControl { gate.access }
    /// The configured service name (the token audience), never a request's Host header.
    public var serviceName: String { gate.serviceName }

    /// The host the request reached Berth by (public URL, else `Host`): for recognising image references only.
    public func requestHost(_ request: Request) -> String { gate.requestHost(request) }

    /// The caller behind the request's credentials, nil when it carries none; bad credentials throw 401/429.
    public func caller(_ request: Request, _ context: BerthRequestContext) async throws -> Caller? {
        try await gate.caller(request, context)
    }

    /// A 401 (or, with `insufficientScope`, 403) with the Bearer challenge clients expect.
    public func challenge(_ request: Request, scope: String?, message: String, insufficientScope: Bool) -> AccessDenied {
        gate.challenge(request, scope: scope, message: message, insufficientScope: insufficientScope)
    }

    /// The one authorization function (roles, scope maps, token claims, network rules).
    public func allows(_ caller: Caller?, _ request: Request, _ context: BerthRequestContext, repository: String,
                       action: Action) -> Bool {
        gate.allows(caller, request, context, repository: repository, action: action)
    }

    /// Every feature's pull check, in order.
    public func admit(_ repository: RepositoryName, _ content: ManifestContent, host: String, caller: String?) async throws {
        for check in checks { try await check.admit(repository, content, host: host, caller: caller) }
    }

    /// A JSON body in the management API's conventions (`no-store`, sorted keys, ISO 8601 dates).
    public func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        RegistryResponder.jsonBody(value, status: status)
    }

    /// A JSON request body of at most 1 MiB; refused (400 INVALID) when it does not decode or repeats a key.
    public func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        try await RegistryResponder.decodeBody(type, request)
    }

    /// A query parameter that must be a non-negative integer (400 otherwise).
    public func queryInt(_ request: Request, _ key: String) throws -> Int? {
        guard let raw = request.uri.queryParameters[key[...]] else { return nil }
        guard let n = Int(raw), n >= 0 else {
            throw RegistryError(.unsupported, "query parameter \(key) must be a non-negative integer", status: 400)
        }
        return n
    }
}

/// A failure a management handler reports in the management API's envelope
/// (`{"error": {"code", "message"}}`). Features make their domain errors conform.
public protocol ManagementErrorConvertible: Error {
    var managementError: ManagementError { get }
}

/// The management API's error: status, code (`INVALID`, `NOT_FOUND`, `CONFLICT`, ...) and message.
public struct ManagementError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String

    public init(status: HTTPResponse.Status, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
}
