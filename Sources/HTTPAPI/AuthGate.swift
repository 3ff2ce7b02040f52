import Access
import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import OCIModel

/// A request that access control turned away, rendered as the spec's error envelope plus the
/// headers the client needs (a Bearer challenge, Retry-After).
public struct AccessDenied: Error {
    public let error: RegistryError
    public var headers: HTTPFields = [:]

    public init(error: RegistryError, headers: HTTPFields = [:]) {
        self.error = error
        self.headers = headers
    }
}

/// Authentication and authorization at the HTTP edge: reads credentials, asks `AccessControl`
/// for the decision, and answers challenges the way registry clients expect.
struct AuthGate: Sendable {
    let access: AccessControl
    /// `https://registry.example.com` when Berth sits behind a proxy; otherwise derived from the request.
    let publicURL: String?
    /// The token service's name: the audience of every token Berth issues and accepts, and the
    /// `service` of its challenges. Configured, never taken from a request (see `serviceName(...)`).
    let serviceName: String
    let tls: Bool

    init(access: AccessControl, publicURL: String?, serviceName: String? = nil, tls: Bool) {
        self.access = access
        self.publicURL = publicURL
        self.serviceName = serviceName ?? Self.serviceName(configured: nil, publicURL: publicURL, listen: nil)
        self.tls = tls
    }

    /// The service name: the configured one, else the public URL's `host[:port]`, else the listen
    /// address `host:port`, else `berth`.
    static func serviceName(configured: String?, publicURL: String?, listen: (host: String, port: Int)?) -> String {
        if let configured { return configured }
        if let publicURL, let url = URL(string: publicURL), let host = url.host {
            return url.port.map { "\(host):\($0)" } ?? host
        }
        if let listen { return listen.host.contains(":") ? "[\(listen.host)]:\(listen.port)" : "\(listen.host):\(listen.port)" }
        return "berth"
    }

    /// Checks a configured service name: it is quoted in `WWW-Authenticate` and compared exactly.
    static func validServiceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255
            && name.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }

    /// The host the request reached Berth by: the public URL's, else the request's `Host`. Only for
    /// pointing the client at the token endpoint and for recognising image references, never
    /// for deciding what a token is valid for.
    func requestHost(_ request: Request) -> String {
        if let publicURL, let url = URL(string: publicURL), let host = url.host {
            return url.port.map { "\(host):\($0)" } ?? host
        }
        return request.head.authority ?? serviceName
    }

    func realm(_ request: Request) -> String {
        if let publicURL { return publicURL + "/oauth2/token" }
        return "\(tls ? "https" : "http")://\(requestHost(request))/oauth2/token"
    }

    func address(_ request: Request, _ context: BerthRequestContext) -> IPAddress? {
        let peer = context.remoteAddress?.ipAddress.flatMap(IPAddress.init)
        return access.state.network.clientAddress(peer: peer, forwardedFor: request.headers[.xForwardedFor])
    }

    /// The caller behind the request's credentials, nil when it carries none. Bad credentials
    /// are refused here (401, or 429 when rate limited).
    func caller(_ request: Request, _ context: BerthRequestContext) async throws -> Caller? {
        let address = address(request, context)
        guard let authorization = request.headers[.authorization] else {
            // Anonymous: the TTL backstop of another process's access change (anonymous pull
            // switched off, a network rule) runs here too, not only on logins.
            await access.refreshIfStale()
            return nil
        }
        guard let (scheme, credentials) = Self.split(authorization) else {
            throw challenge(request, scope: nil, message: "malformed Authorization header", insufficientScope: false)
        }
        if scheme == "bearer" {
            guard let caller = await access.authenticateBearer(String(credentials), service: serviceName, address: address) else {
                LoginMetrics.failed(scheme: "bearer")
                await access.recordAudit(actor: "-", address: address?.description ?? "-", action: "bearer",
                                         target: request.uri.path, outcome: "invalid token")
                throw challenge(request, scope: nil, message: "invalid or expired token", insufficientScope: false)
            }
            RequestNote.current?.identity = caller.principal
            return caller
        }
        if scheme == "basic" {
            guard let (user, password) = Self.decodeBasic(credentials) else {
                throw challenge(request, scope: nil, message: "malformed Basic credentials", insufficientScope: false)
            }
            let principal = try await login(request, user: user, password: password, address: address)
            return Caller(principal: principal, tokenAccess: nil, address: address)
        }
        throw challenge(request, scope: nil, message: "unsupported authorization scheme", insufficientScope: false)
    }

    /// `Scheme credentials` → (lower-cased scheme, credentials without surrounding spaces). Works on
    /// UTF-8 views: Foundation's trimming bridges through UTF-16 and was the costliest step of
    /// every authenticated request.
    static func split(_ header: String) -> (String, Substring)? {
        guard let space = header.utf8.firstIndex(of: UInt8(ascii: " ")), header.utf8.count <= 65_536 else { return nil }
        let scheme = header[..<space].lowercased()
        var rest = header[header.index(after: space)...]
        while rest.utf8.first == UInt8(ascii: " ") { rest = rest.dropFirst() }
        while rest.utf8.last == UInt8(ascii: " ") { rest = rest.dropLast() }
        return rest.isEmpty ? nil : (scheme, rest)
    }

    func login(_ request: Request, user: String, password: String, address: IPAddress?) async throws -> Principal {
        do {
            let principal = try await access.authenticate(username: user, password: password, address: address,
                                                          service: serviceName).principal
            RequestNote.current?.identity = principal
            return principal
        } catch .rateLimited(let wait) {
            LoginMetrics.failed(scheme: "rate-limited")
            var headers = HTTPFields()
            headers[.retryAfter] = String(wait)
            throw AccessDenied(error: RegistryError(.tooManyRequests, "too many failed logins; retry in \(wait) s"), headers: headers)
        } catch {
            LoginMetrics.failed(scheme: "password")
            throw challenge(request, scope: nil, message: "authentication failed", insufficientScope: false)
        }
    }

    /// A Basic `Authorization` header → (user, password).
    static func basic(_ header: String) -> (String, String)? {
        guard let (scheme, encoded) = split(header), scheme == "basic" else { return nil }
        return decodeBasic(encoded)
    }

    /// Basic credentials, base64 of `user:password`, → (user, password).
    static func decodeBasic(_ encoded: Substring) -> (String, String)? {
        guard encoded.utf8.count <= 32_768, let decoded = Data(base64Encoded: String(encoded)),
              let text = String(data: decoded, encoding: .utf8),
              let colon = text.firstIndex(of: ":") else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    func challenge(_ request: Request, scope: String?, message: String, insufficientScope: Bool) -> AccessDenied {
        var value = "Bearer realm=\"\(realm(request))\",service=\"\(serviceName)\""
        if let scope { value += ",scope=\"\(scope)\"" }
        if insufficientScope { value += ",error=\"insufficient_scope\"" }
        var headers = HTTPFields()
        headers[.wwwAuthenticate] = value
        return AccessDenied(error: RegistryError(.unauthorized, message), headers: headers)
    }

    /// Docker scope string for a repository action, for the challenge.
    static func scope(repository: String?, action: Action) -> String {
        AccessRequest.scope(repository: repository, action: action)
    }

    /// Asks `AccessControl.authorize` and, unless allowed, throws the response to send (a
    /// refusal for lack of rights is audited).
    func require(_ request: Request, _ context: BerthRequestContext, caller: Caller?, repository: String?, action: Action,
                 target: AccessTarget = .none) async throws {
        let address = caller?.address ?? address(request, context)
        let decision = access.authorize(AccessRequest(caller: caller, address: address, repository: repository, actions: action,
                                                      target: target))
        guard case .denied(let refusal) = decision else { return }
        if refusal.lacksRights, refusal.challenge == nil {
            await access.recordAudit(actor: caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous",
                                     address: address?.description ?? "-", action: "\(request.method.rawValue) \(action)",
                                     target: repository ?? "registry", outcome: "denied", detail: refusal.reason)
        }
        throw denied(refusal, request)
    }

    /// The response for a refusal: a Bearer challenge for 401, the error envelope otherwise.
    func denied(_ refusal: AccessRefusal, _ request: Request) -> AccessDenied {
        if let c = refusal.challenge {
            return challenge(request, scope: c.scope, message: refusal.reason, insufficientScope: c.insufficientScope)
        }
        return AccessDenied(error: RegistryError(refusal.code, refusal.reason))
    }

    /// Checks without answering: used where a refusal changes behaviour rather than failing
    /// (a cross-repository mount from a repository the caller cannot read falls back to an upload).
    func allows(_ caller: Caller?, _ request: Request, _ context: BerthRequestContext, repository: String, action: Action,
                target: AccessTarget = .none) -> Bool {
        access.authorize(AccessRequest(caller: caller, address: caller?.address ?? address(request, context),
                                       repository: repository, actions: action, target: target)).isAllowed
    }
}

/// What the current request's access-log line needs to know from deeper down: who it
/// authenticated as. Bound as a task local for the duration of one request.
final class RequestNote: Sendable {
    @TaskLocal static var current: RequestNote?
    private let box = NIOLockedValueBox<Principal?>(nil)

    var identity: Principal? {
        get { box.withLockedValue { $0 } }
        set { box.withLockedValue { $0 = newValue } }
    }

    /// `kind:name` of the principal, or `-` when the request carried no valid credentials.
    var identityText: String {
        guard let p = identity else { return "-" }
        return "\(p.kind.rawValue):\(p.name)"
    }
}

extension HTTPField.Name {
    static let xRequestID = HTTPField.Name("X-Request-Id")!
    static let retryAfter = HTTPField.Name("Retry-After")!
}
