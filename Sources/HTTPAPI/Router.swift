import HTTPTypes
import Hummingbird
import Logging

/// Everything outside the `/v2/` tree is on Hummingbird's router: health, metrics, the token
/// service, the management API, and the routes features add. One middleware maps every failure
/// of every route (`ErrorRenderer.response(for:request:log:gate:)`, as the `/v2/` tree does).
extension RegistryResponder {
    static func makeRouter(_ responder: RegistryResponder) -> RouterResponder<Context> {
        let router = Router(context: Context.self)
        router.add(middleware: ErrorMiddleware(log: responder.accessLog, gate: responder.gate))
        for method in [HTTPRequest.Method.get, .head] {
            router.on("healthz", method: method) { _, _ in responder.text("ok\n") }
            router.on("readyz", method: method) { _, _ in
                do {
                    try await responder.registry.checkHealth()
                    return responder.text("ready\n")
                } catch {
                    return responder.text("not ready: storage or database unusable\n", status: .serviceUnavailable)
                }
            }
            router.on("metrics", method: method) { _, _ in try await responder.metricsResponse() }
        }
        guard let gate = responder.gate else { return router.buildResponder() }
        router.get("oauth2/token") { request, context in try await responder.tokenEndpoint(request, context, gate) }
        router.post("oauth2/token") { request, context in try await responder.tokenEndpoint(request, context, gate) }
        router.post("oauth2/exchange") { request, context in try await responder.tokenEndpoint(request, context, gate) }
        let management = responder.addManagementRoutes(to: router, gate: gate)
        let routes = FeatureRoutes(root: router, management: management,
                                   server: FeatureServer(gate: gate, registry: responder.registry,
                                                         pullAdmission: responder.pullAdmission))
        for feature in responder.features { feature.addRoutes(to: routes) }
        return router.buildResponder()
    }

    /// The metrics and access-log label of a path outside `/v2/`.
    static func routeName(_ path: String) -> String {
        switch path {
        case "/healthz": "healthz"
        case "/readyz": "readyz"
        case "/metrics": "metrics"
        case _ where path.hasPrefix("/api/v1/"): "management"
        case _ where path.hasPrefix("/admission/"): "admission"
        case _ where path.hasPrefix("/oauth2/"): "token"
        default: "unknown"
        }
    }

    /// Renders whatever a route throws, before the router's own fallback can.
    struct ErrorMiddleware: RouterMiddleware {
        typealias Context = BerthRequestContext
        let log: Logger
        let gate: AuthGate?

        func handle(_ request: Request, context: Context,
                    next: (Request, Context) async throws -> Response) async throws -> Response {
            do {
                return try await next(request, context)
            } catch let e as HTTPError where e.status == .notFound && e.body == nil && request.uri.path.hasPrefix("/api/v1/") {
                // No such management route (or not for this method): only a caller the management
                // check lets through learns that; anyone else gets the 401/403 a real route gives,
                // so the API's shape (which features are installed) is not probed anonymously.
                if let gate {
                    do {
                        _ = try await RegistryResponder.managementActor(request, context, gate)
                    } catch {
                        return ErrorRenderer.response(for: error, request: request, log: log, gate: gate)
                    }
                }
                return ErrorRenderer.response(for: e, request: request, log: log, gate: gate)
            } catch {
                return ErrorRenderer.response(for: error, request: request, log: log, gate: gate)
            }
        }
    }
}
