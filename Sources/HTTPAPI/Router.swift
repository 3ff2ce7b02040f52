import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Everything outside the `/v2/` tree is on Hummingbird's router: health, metrics, the token
/// service, the management API, and the routes features add. One middleware maps every failure
/// of every route (`ErrorRenderer.response(for:request:log:gate:)`, as the `/v2/` tree does); a
/// path a route serves, asked with a method none takes, is 405 with `Allow`.
extension RegistryResponder {
    static func makeRouter(_ responder: RegistryResponder) -> RouterResponder<Context> {
        let router = Router(context: Context.self)
        let allowed = AllowedMethods()
        router.add(middleware: ErrorMiddleware(log: responder.accessLog, gate: responder.gate, allowed: allowed))
        addRoutes(to: router, responder)
        allowed.install(from: router)
        return router.buildResponder()
    }

    private static func addRoutes(to router: Router<Context>, _ responder: RegistryResponder) {
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
        guard let gate = responder.gate else { return }
        router.get("oauth2/token") { request, context in try await responder.tokenEndpoint(request, context, gate) }
        router.post("oauth2/token") { request, context in try await responder.tokenEndpoint(request, context, gate) }
        router.post("oauth2/exchange") { request, context in try await responder.tokenEndpoint(request, context, gate) }
        let management = responder.addManagementRoutes(to: router, gate: gate)
        let routes = FeatureRoutes(root: router, management: management,
                                   server: FeatureServer(gate: gate, registry: responder.registry,
                                                         pullAdmission: responder.pullAdmission,
                                                         fallbacks: responder.fallbacks))
        for feature in responder.features { feature.addRoutes(to: routes) }
    }

    /// The metrics and access-log label of a path outside `/v2/`.
    static func routeName(_ path: String) -> String {
        switch RoutedPath.area(of: path) {
        case .management: return "management"
        case .token: return "token"
        case .other(let segments):
            switch segments.first {
            case "healthz" where segments.count == 1: return "healthz"
            case "readyz" where segments.count == 1: return "readyz"
            case "metrics" where segments.count == 1: return "metrics"
            case "admission" where segments.count > 1: return "admission"
            case "console": return "console"
            default: return "unknown"
            }
        }
    }

    /// Which API a path outside `/v2/` belongs to, judged by its segments as the router matches
    /// them: empty segments dropped, so `//api//v1/webhooks` is `/api/v1/webhooks` here as it is
    /// to the router. Every check made around routing (the management check that answers first,
    /// the error envelope, the token protocol's errors, the route label) asks this, never the raw
    /// path, so no spelling of a path reaches a route while dodging the check in front of it.
    enum RoutedPath: Equatable {
        case management
        case token
        case other([Substring])

        static func area(of path: String) -> RoutedPath {
            let segments = path.split(separator: "/", omittingEmptySubsequences: true)
            if segments.count >= 2, segments[0] == "api", segments[1] == "v1" { return .management }
            if segments.count >= 2, segments[0] == "oauth2" { return .token }
            return .other(segments)
        }

        static func isManagement(_ path: String) -> Bool { area(of: path) == .management }
        static func isToken(_ path: String) -> Bool { area(of: path) == .token }
    }

    /// The methods the routes of each registered path take, found with the router's own path
    /// matching: a second router on which every registered path answers GET with its methods.
    final class AllowedMethods: Sendable {
        private let paths = NIOLockedValueBox<RouterResponder<Context>?>(nil)

        func install(from router: Router<Context>) {
            var byPath: [String: (path: RouterPath, methods: Set<String>)] = [:]
            for route in router.routes {
                byPath[route.path.description, default: (route.path, [])].methods.insert(route.method.rawValue)
            }
            let shape = Router(context: Context.self)
            for (path, methods) in byPath.values {
                let allow = methods.sorted().joined(separator: ", ")
                shape.get(path) { _, _ in
                    var headers = HTTPFields()
                    headers[.allow] = allow
                    return Response(status: .noContent, headers: headers)
                }
            }
            let responder = shape.buildResponder()
            paths.withLockedValue { $0 = responder }
        }

        /// The methods a route takes at the request's path (`GET, HEAD`), nil when no route has it.
        func methods(at request: Request, context: Context) async -> String? {
            guard let shape = paths.withLockedValue({ $0 }) else { return nil }
            let probe = Request(head: HTTPRequest(method: .get, scheme: nil, authority: nil, path: request.head.path),
                                body: RequestBody(buffer: ByteBuffer()))
            guard let answer = try? await shape.respond(to: probe, context: context), answer.status == .noContent else { return nil }
            return answer.headers[.allow]
        }
    }

    /// Renders whatever a route throws, before the router's own fallback can.
    struct ErrorMiddleware: RouterMiddleware {
        typealias Context = BerthRequestContext
        let log: Logger
        let gate: AuthGate?
        let allowed: AllowedMethods

        func handle(_ request: Request, context: Context,
                    next: (Request, Context) async throws -> Response) async throws -> Response {
            do {
                return try await next(request, context)
            } catch let e as HTTPError where e.status == .notFound && e.body == nil {
                // No route for the path, or none for this method. Under /api/v1 only a caller the
                // management check lets through learns which: anyone else gets the 401/403 a real
                // route gives, so the API's shape (which features are installed) is not probed
                // anonymously.
                if let gate, RoutedPath.isManagement(request.uri.path) {
                    do {
                        _ = try await RegistryResponder.managementActor(request, context, gate)
                    } catch {
                        return ErrorRenderer.response(for: error, request: request, log: log, gate: gate)
                    }
                }
                if let allow = await allowed.methods(at: request, context: context),
                   !allow.split(separator: ",").contains(where: { $0.drop(while: { $0 == " " }) == request.method.rawValue }) {
                    return ErrorRenderer.methodNotAllowed(request: request, allow: allow)
                }
                return ErrorRenderer.response(for: e, request: request, log: log, gate: gate)
            } catch {
                return ErrorRenderer.response(for: error, request: request, log: log, gate: gate)
            }
        }
    }
}
