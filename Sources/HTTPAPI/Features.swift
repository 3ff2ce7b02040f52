import Access
import Admission
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
    /// Background services every node runs (not leased): per-node state such as replication's
    /// health checks of its peers.
    var nodeServices: [any Service] { get }
    /// The feature's check in the pull-admission chain (`Admission.PullAdmission`, which `/v2/`
    /// reads and the admission endpoints both ask), nil for none. The server adds it at
    /// composition, after the chain's locks and quarantine.
    var pullCheck: (any PullAdmissionCheck)? { get }
    /// The feature's filler of content reads miss (`ContentFallback`: the pull-through cache), nil for none.
    var contentFallback: (any ContentFallback)? { get }
    /// The feature's routing of blob reads to other regions (`BlobRouting`), nil for none.
    var blobRouting: (any BlobRouting)? { get }
    /// Called after each manifest push (a new signature may change a cached verdict).
    func manifestPushed()
    /// Sets the feature's gauges before `/metrics` is rendered.
    func updateMetrics(_ metrics: HTTPMetrics) async throws
}

extension RegistryFeature {
    public func addRoutes(to routes: FeatureRoutes) {}
    public var services: [any Service] { [] }
    public var nodeServices: [any Service] { [] }
    public var pullCheck: (any PullAdmissionCheck)? { nil }
    public var contentFallback: (any ContentFallback)? { nil }
    public var blobRouting: (any BlobRouting)? { nil }
    public func manifestPushed() {}
    public func updateMetrics(_ metrics: HTTPMetrics) async throws {}
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
/// the one authorization function, the pull-admission chain, and the management API's JSON
/// conventions.
public struct FeatureServer: Sendable {
    let gate: AuthGate
    public let registry: Registry
    /// The one pull-admission chain (locks, quarantine, every feature's check), the same value
    /// `/v2/` reads ask.
    public let pullAdmission: PullAdmission
    /// The refusal `/v2/` gives a client's push into a repository a content fallback fills (a
    /// pull-through cache's target): a feature that writes for a client (import) asks it too.
    let fallbacks: [any ContentFallback]

    public var access: AccessControl { gate.access }
    /// Throws 403 `DENIED` when `repository` is filled by a content fallback and takes no client
    /// write (503 when that cannot be told), as a `/v2/` push there is refused.
    public func refuseClientWrite(_ repository: RepositoryName) async throws {
        try await Self.refuseClientWrite(repository, fallbacks)
    }

    static func refuseClientWrite(_ repository: RepositoryName, _ fallbacks: [any ContentFallback]) async throws {
        for fallback in fallbacks {
            if let reason = try await fallback.refusesClientWrites(repository) {
                throw RegistryError(.denied, reason, status: 403)
            }
        }
    }

    /// The configured service name (the token audience), never a request's Host header.
    public var serviceName: String { gate.serviceName }

    /// Whether clients reach Berth over TLS (served with TLS, or a public URL that is `https://`):
    /// cookies a feature sets are then `Secure`.
    public var secureTransport: Bool { gate.tls || gate.publicURL?.lowercased().hasPrefix("https://") == true }

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
                       action: Action, target: AccessTarget = .none) -> Bool {
        gate.allows(caller, request, context, repository: repository, action: action, target: target)
    }

    /// Asks the one authorization function and, unless allowed, throws what to answer (401 with
    /// the challenge, 403 `DENIED`); a refusal for lack of rights is audited.
    public func require(_ request: Request, _ context: BerthRequestContext, caller: Caller?, repository: String?, action: Action,
                        target: AccessTarget = .none) async throws {
        try await gate.require(request, context, caller: caller, repository: repository, action: action, target: target)
    }

    /// Judges a management request on one repository (an `/api/v1` route registered on `root` that
    /// names its repository, as `/api/v1/repository?name=` does): a token's `registry:management`
    /// scope is judged by the principal's rights on the repository; a refusal is audited and
    /// answered (401 challenge, 403) as the built-in repository commands answer it.
    public func requireOnRepository(_ request: Request, _ context: BerthRequestContext, repository: String,
                                    action: Action) async throws {
        let caller = try await gate.caller(request, context)
        try await gate.require(request, context, caller: caller, repository: repository, action: action,
                               target: AccessTarget(management: true))
    }

    /// The client address the request came from (behind a trusted proxy, the forwarded one), for
    /// network rules.
    public func address(_ request: Request, _ context: BerthRequestContext) -> IPAddress? {
        gate.address(request, context)
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
