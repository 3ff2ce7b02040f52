import Access
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OCIModel

/// `/oauth2/token` (Docker token protocol: GET with Basic credentials, POST with
/// `grant_type=password|refresh_token`) and `/oauth2/exchange` (OIDC ID token → refresh token).
extension RegistryResponder {
    func tokenEndpoint(_ request: Request, _ context: Context, _ gate: AuthGate) async throws -> Response {
        let path = request.uri.path
        let address = gate.address(request, context)
        // Tokens are for this registry's configured service only: a `service` the client names
        // (from a challenge, or made up) is not what they are issued for.
        let service = gate.serviceName
        var scopes: [String] = []
        var who: Authenticated
        var offline = false

        switch (path, request.method) {
        case ("/oauth2/token", .get):
            scopes = request.uri.queryParameters[values: "scope"].map(String.init)
            offline = request.uri.queryParameters["offline_token"] == "true"
            if request.headers[.authorization] != nil {
                guard let (user, password) = request.headers[.authorization].flatMap(AuthGate.basic) else {
                    throw gate.challenge(request, scope: nil, message: "token requests take Basic credentials", insufficientScope: false)
                }
                who = try await login(gate, request, user: user, password: password, address: address, service: service)
            } else {
                // Anonymous: another process may have switched anonymous pull off (TTL backstop).
                await gate.access.refreshIfStale()
                who = Authenticated(principal: gate.access.anonymous, subject: "anonymous", subjectID: nil, generation: 0)
                guard !who.principal.grants.isEmpty else {
                    // The token service itself takes Basic credentials.
                    var headers = HTTPFields()
                    headers[.wwwAuthenticate] = "Basic realm=\"\(gate.access.registryName)\""
                    throw AccessDenied(error: RegistryError(.unauthorized, "credentials required: anonymous pull is disabled"),
                                       headers: headers)
                }
            }
        case ("/oauth2/token", .post):
            let form = try await Self.form(request)
            scopes = (form["scope"] ?? "").split(separator: " ").map(String.init)
            offline = form["access_type"] == "offline"
            switch form["grant_type"] {
            case "password":
                who = try await login(gate, request, user: form["username"] ?? "", password: form["password"] ?? "",
                                      address: address, service: service)
            case "refresh_token":
                let presented = form["refresh_token"] ?? ""
                who = try await login(gate, request, user: AccessControl.refreshTokenUser,
                                      password: presented, address: address, service: service)
                // A peer region's refresh token is renewed by its own region only: here it gets
                // access tokens until it expires, never a refresh token of this region (a chain that
                // would outlive the peer's removal or its key).
                offline = gate.access.tokens.peerRegion(of: presented) == nil
            default:
                throw RegistryError(.unsupported, "grant_type must be password or refresh_token", status: 400)
            }
        case ("/oauth2/exchange", .post):
            let form = try await Self.form(request)
            guard form["grant_type"] == "access_token", let idToken = form["access_token"] else {
                throw RegistryError(.unsupported, "grant_type=access_token with an access_token is required", status: 400)
            }
            who = try await login(gate, request, user: AccessControl.oidcTokenUser, password: idToken,
                                  address: address, service: service)
            let refresh = try await gate.access.issueToken(who, audience: service, type: "refresh", access: nil)
            return jsonResponse(ExchangeResponse(refresh_token: refresh.token))
        default:
            throw RegistryError(.unsupported, "not found", status: 404)
        }

        // The firewall applies to token requests too (trusted services pass once authenticated).
        let caller = Caller(principal: who.principal, tokenAccess: nil, address: address)
        if case .deny(let reason) = gate.access.decide(caller: who.subject == "anonymous" ? nil : caller, address: address,
                                                       repository: nil, action: []) {
            throw AccessDenied(error: RegistryError(.denied, reason))
        }
        let requested = scopes.flatMap { $0.split(separator: " ").map(String.init) }.compactMap(ScopeRequest.init(parsing:))
        let granted = gate.access.grantedAccess(principal: who.principal, requested: requested)
        let now = Date()
        let access = try await gate.access.issueToken(who, audience: service, type: "access", access: granted, now: now)
        var refresh: String?
        if offline, who.subject != "anonymous" {
            refresh = try await gate.access.issueToken(who, audience: service, type: "refresh", access: nil, now: now).token
        }
        return jsonResponse(TokenResponse(token: access.token, expiresIn: access.expiresIn, issuedAt: RFC3339.format(now),
                                          refreshToken: refresh))
    }

    private func login(_ gate: AuthGate, _ request: Request, user: String, password: String, address: IPAddress?,
                       service: String) async throws -> Authenticated {
        do {
            let who = try await gate.access.login(username: user, password: password, address: address, service: service)
            RequestNote.current?.identity = who.principal
            return who
        } catch .rateLimited(let wait) {
            LoginMetrics.failed(scheme: "rate-limited")
            var headers = HTTPFields()
            headers[.retryAfter] = String(wait)
            throw AccessDenied(error: RegistryError(.tooManyRequests, "too many failed logins; retry in \(wait) s"), headers: headers)
        } catch {
            LoginMetrics.failed(scheme: "password")
            throw gate.challenge(request, scope: nil, message: "authentication failed", insufficientScope: false)
        }
    }

    func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        Self.jsonBody(value, status: status)
    }

    static func jsonBody(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        let data = (try? Self.encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// An `application/x-www-form-urlencoded` body, at most 64 KiB.
    static func form(_ request: Request) async throws -> [String: String] {
        let body = try await request.body.collect(upTo: 64 * 1024)
        let text = String(buffer: body)
        var out: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            guard let key = kv.first else { continue }
            let value = kv.count > 1 ? kv[1] : ""
            if let earlier = out[key] {
                // Parsers disagree on which of two values wins; only scopes add up.
                guard key == "scope" else {
                    throw RegistryError(.unsupported, "form field \(key.prefix(40)) given twice", status: 400)
                }
                out[key] = earlier + " " + value
            } else {
                out[key] = value
            }
        }
        return out
    }
}
