import Access
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import OCIModel
import RegistryCore
import RegistryStore

/// The web console under `/console/`: server-rendered pages (mustache templates compiled into the
/// binary, no script) over the same core, store and Access calls as `/api/v1`. Every page asks
/// `AccessControl.authorize` with the signed-in identity's rights: a repository the viewer may not
/// read is refused (403 page) and never listed; management pages need management/read, as their
/// API routes do. Sign-in goes through `AccessControl.login`, the check the token endpoint uses
/// (failed-login limiter included); sessions are `ConsoleSessions`.
public struct ConsoleFeature: RegistryFeature {
    let webhooks: any WebhookStore
    let tasks: any TaskStore
    let sessions: ConsoleSessions
    let seams: ConsoleSeams

    /// `store` keeps webhooks, tasks and the console's sessions (`ConsoleSessions` over it);
    /// `seams` are what other features show through the console (replicas, run logs,
    /// inventories), handed in by the composition root.
    public init(store: any WebhookStore & TaskStore & ConsoleSessionStore, seams: ConsoleSeams = ConsoleSeams(),
                sessionLifetime: TimeInterval = 8 * 3600) {
        self.webhooks = store
        self.tasks = store
        self.sessions = ConsoleSessions(store: store, lifetime: sessionLifetime)
        self.seams = seams
    }

    public func addRoutes(to routes: FeatureRoutes) {
        ConsoleRoutes(server: routes.server, webhooks: webhooks, tasks: tasks, sessions: sessions, seams: seams).register(on: routes.root)
    }
}

/// A failure shown as an HTML page with its status.
struct ConsoleError: Error {
    let status: HTTPResponse.Status
    let message: String
}

/// Who is looking: a signed-in identity (with its session), or anonymous when the registry allows
/// anonymous pull (then `caller` is nil and Access judges it as anonymous).
struct Viewer {
    var caller: Caller?
    var session: ConsoleSessions.Session?
    var sessionID: String?
    var address: IPAddress?
}

struct ConsoleRoutes: Sendable {
    let server: FeatureServer
    let webhooks: any WebhookStore
    let tasks: any TaskStore
    let sessions: ConsoleSessions
    let seams: ConsoleSeams
    let log = Logger(label: "berth.console")

    static let sessionCookie = "berth_session"
    static let loginCookie = "berth_login_csrf"
    /// No script at all; styles only from the console's stylesheet; forms post only to Berth;
    /// never framed.
    static let contentSecurityPolicy =
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    func register(on router: Router<BerthRequestContext>) {
        router.get("console") { _, _ in Self.redirect("/console/repositories") }
        router.get("console/static/console.css") { _, _ in
            var headers = Self.securityHeaders()
            headers[.contentType] = "text/css; charset=utf-8"
            headers[.cacheControl] = "max-age=3600"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: ConsoleTemplates.stylesheet)))
        }
        router.get("console/login") { request, context in await loginForm(request, context) }
        router.post("console/login") { request, context in await login(request, context) }
        router.post("console/logout") { request, context in await logout(request, context) }
        router.get("console/repositories") { request, context in
            await page(request, context) { viewer in try await repositories(request, viewer) }
        }
        router.get("console/repository") { request, context in
            await page(request, context) { viewer in try await repository(request, viewer) }
        }
        router.get("console/image") { request, context in
            await page(request, context) { viewer in try await image(request, viewer) }
        }
        router.post("console/quarantine") { request, context in
            await page(request, context) { viewer in try await quarantine(request, viewer) }
        }
        router.get("console/usage") { request, context in
            await page(request, context) { viewer in try await usage(viewer) }
        }
        router.get("console/tokens") { request, context in
            await page(request, context) { viewer in try await tokens(viewer) }
        }
        router.get("console/webhooks") { request, context in
            await page(request, context) { viewer in try await webhookPage(viewer) }
        }
        router.get("console/audit") { request, context in
            await page(request, context) { viewer in try await audit(viewer) }
        }
        router.get("console/sbom") { request, context in
            await page(request, context) { viewer in try await sbomDownload(request, viewer) }
        }
        router.get("console/replicas") { request, context in
            await page(request, context) { viewer in try await replicasPage(viewer) }
        }
        router.get("console/tasks") { request, context in
            await page(request, context) { viewer in try await tasksPage(viewer) }
        }
        router.get("console/task-log") { request, context in
            await page(request, context) { viewer in try await taskLog(request, viewer) }
        }
        router.get("console/scans") { request, context in
            await page(request, context) { viewer in try await scansPage(viewer) }
        }
    }

    // MARK: the frame around every page

    /// Resolves the viewer and runs the page; no viewer (no session and no anonymous pull) is sent
    /// to sign in. Failures become HTML pages with their status.
    func page(_ request: Request, _ context: BerthRequestContext, _ body: (Viewer) async throws -> Response) async -> Response {
        guard let viewer = await viewer(request, context) else { return Self.redirect("/console/login") }
        do {
            return try await body(viewer)
        } catch let e as ConsoleError {
            if e.status == .unauthorized { return Self.redirect("/console/login") }
            return render("error", ["title": Self.reason(e.status), "message": e.message], viewer, status: e.status)
        } catch let e as LifecycleError {
            let status: HTTPResponse.Status = switch e {
            case .notFound: .notFound
            case .invalid: .badRequest
            case .conflict: .conflict
            }
            return render("error", ["title": Self.reason(status), "message": e.description], viewer, status: status)
        } catch let e as RegistryError where (400..<500).contains(e.status) {
            let status = HTTPResponse.Status(code: e.status)
            return render("error", ["title": Self.reason(status), "message": e.message], viewer, status: status)
        } catch {
            log.error("console page failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return render("error", ["title": "Internal error", "message": "The page could not be produced; the server log has the cause."],
                          viewer, status: .internalServerError)
        }
    }

    static func reason(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "Bad request"
        case 403: "Forbidden"
        case 404: "Not found"
        case 409: "Conflict"
        case 429: "Too many requests"
        default: status.reasonPhrase
        }
    }

    func viewer(_ request: Request, _ context: BerthRequestContext) async -> Viewer? {
        let address = server.address(request, context)
        await server.access.refreshIfStale()
        if let id = request.cookies[Self.sessionCookie]?.value, let session = await storedSession(id) {
            // Looked up again on every request: a disabled identity or a changed password ends it.
            if let principal = server.access.principal(subject: session.subject, generation: session.generation,
                                                       subjectID: session.subjectID) {
                return Viewer(caller: Caller(principal: principal, tokenAccess: nil, address: address), session: session,
                              sessionID: id, address: address)
            }
            try? await sessions.end(id)
        }
        guard server.access.state.anonymousPullEnabled else { return nil }
        return Viewer(caller: nil, session: nil, sessionID: nil, address: address)
    }

    /// The session of a cookie; a store that cannot be read is logged and the viewer treated as
    /// signed out (never signed in on a guess).
    func storedSession(_ id: String) async -> ConsoleSessions.Session? {
        do {
            return try await sessions.session(id)
        } catch {
            log.error("console session could not be read", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// The one decision (`AccessControl.authorize`); a refusal for lack of rights is audited as the
    /// API's are.
    func allowed(_ viewer: Viewer, repository: String?, _ action: Action, target: AccessTarget = .none) -> Bool {
        server.access.authorize(AccessRequest(caller: viewer.caller, address: viewer.address, repository: repository,
                                              actions: action, target: target)).isAllowed
    }

    func require(_ viewer: Viewer, repository: String?, _ action: Action, what: String) async throws {
        let decision = server.access.authorize(AccessRequest(caller: viewer.caller, address: viewer.address, repository: repository,
                                                             actions: action, target: AccessTarget(management: repository != nil)))
        guard case .denied(let refusal) = decision else { return }
        if viewer.caller == nil { throw ConsoleError(status: .unauthorized, message: "sign in") }
        await server.access.recordAudit(actor: Self.actorName(viewer), address: viewer.address?.description ?? "-",
                                        action: "console \(action)", target: repository ?? "registry", outcome: "denied",
                                        detail: refusal.reason)
        throw ConsoleError(status: .forbidden, message: "You may not see \(what).")
    }

    static func actorName(_ viewer: Viewer) -> String {
        viewer.caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous"
    }

    /// A page from a template: the header's values (who is signed in, the CSRF token) added.
    func render(_ template: String, _ data: [String: Any], _ viewer: Viewer?, status: HTTPResponse.Status = .ok,
                headers extra: HTTPFields = [:]) -> Response {
        var data = Self.withPresence(data)
        if let session = viewer?.session {
            data["user"] = session.displayName
            data["csrf"] = session.csrf
        } else if viewer != nil {
            data["anonymous"] = true
        }
        let html = ConsoleTemplates.library.render(data, withTemplate: template) ?? ""
        var headers = Self.securityHeaders()
        headers[.contentType] = "text/html; charset=utf-8"
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// Adds `hasX` (non-empty) beside every list `x`, at every depth, for the templates' "only
    /// when there is something" sections.
    static func withPresence(_ data: [String: Any]) -> [String: Any] {
        var out = data
        for (key, value) in data {
            if let list = value as? [[String: Any]] {
                out[key] = list.map(withPresence)
                out["has" + key.prefix(1).uppercased() + key.dropFirst()] = !list.isEmpty
            } else if let list = value as? [Any] {
                out["has" + key.prefix(1).uppercased() + key.dropFirst()] = !list.isEmpty
            } else if let nested = value as? [String: Any] {
                out[key] = withPresence(nested)
            }
        }
        return out
    }

    /// Sent with every console response.
    static func securityHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        headers[.xContentTypeOptions] = "nosniff"
        headers[.xFrameOptions] = "DENY"
        headers[.referrerPolicy] = "no-referrer"
        headers[.cacheControl] = "no-store"
        return headers
    }

    static func redirect(_ location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers = securityHeaders()
        headers[.location] = location
        headers.append(contentsOf: extra)
        return Response(status: .seeOther, headers: headers)
    }

    func cookie(_ name: String, _ value: String, path: String, maxAge: Int) -> String {
        "\(name)=\(value); Path=\(path); Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (server.secureTransport ? "; Secure" : "")
    }

    // MARK: sign-in

    func loginForm(_ request: Request, _ context: BerthRequestContext) async -> Response {
        if let viewer = await viewer(request, context), viewer.session != nil { return Self.redirect("/console/repositories") }
        return loginPage(error: nil, username: "", status: .ok)
    }

    /// The form with a fresh login CSRF token, also set as a cookie (double submit: a cross-site
    /// page can neither read the cookie nor, with SameSite=Strict, send it).
    func loginPage(error: String?, username: String, status: HTTPResponse.Status, extra: HTTPFields = [:]) -> Response {
        let token = ConsoleSessions.randomToken()
        var headers = extra
        headers.append(HTTPField(name: .setCookie, value: cookie(Self.loginCookie, token, path: "/console/login", maxAge: 3600)))
        var data: [String: Any] = ["title": "Sign in", "loginCSRF": token, "username": username]
        if let error { data["error"] = error }
        return render("login", data, nil, status: status, headers: headers)
    }

    func login(_ request: Request, _ context: BerthRequestContext) async -> Response {
        let form: [String: String]
        do {
            form = try await Self.form(request)
        } catch {
            return loginPage(error: "The sign-in form could not be read.", username: "", status: .badRequest)
        }
        guard let sent = form["csrf"], let expected = request.cookies[Self.loginCookie]?.value,
              ConsoleSessions.constantTimeEqual(sent, expected) else {
            return loginPage(error: "The form expired or did not come from this console; sign in again.", username: "",
                             status: .forbidden)
        }
        let username = form["username"] ?? ""
        let password = form["password"] ?? ""
        let address = server.address(request, context)
        do {
            let who = try await server.access.login(username: username, password: password, address: address,
                                                    service: server.serviceName)
            let id: String
            do {
                id = try await sessions.create(subject: who.subject, subjectID: who.subjectID, generation: who.generation,
                                               displayName: who.principal.name).id
            } catch {
                log.error("console session could not be stored", metadata: ["error": "\(error)"])
                return loginPage(error: "Signed in, but the session could not be stored; try again later.", username: username,
                                 status: .serviceUnavailable)
            }
            var headers = HTTPFields()
            headers.append(HTTPField(name: .setCookie, value: cookie(Self.sessionCookie, id, path: "/console", maxAge: 8 * 3600)))
            headers.append(HTTPField(name: .setCookie, value: cookie(Self.loginCookie, "", path: "/console/login", maxAge: 0)))
            await server.access.recordAudit(actor: "\(who.principal.kind.rawValue):\(who.principal.name)",
                                            address: address?.description ?? "-", action: "console.login", target: "console",
                                            outcome: "ok")
            return Self.redirect("/console/repositories", headers: headers)
        } catch .rateLimited(let wait) {
            var headers = HTTPFields()
            headers[.retryAfter] = String(wait)
            return loginPage(error: "Too many failed sign-ins; try again in \(wait) seconds.", username: username,
                             status: .tooManyRequests, extra: headers)
        } catch {
            return loginPage(error: "Sign-in failed: wrong user name or password.", username: username, status: .unauthorized)
        }
    }

    func logout(_ request: Request, _ context: BerthRequestContext) async -> Response {
        guard let viewer = await viewer(request, context), let session = viewer.session, let id = viewer.sessionID else {
            return Self.redirect("/console/login")
        }
        let form = (try? await Self.form(request)) ?? [:]
        guard let sent = form["csrf"], ConsoleSessions.constantTimeEqual(sent, session.csrf) else {
            return render("error", ["title": "Forbidden", "message": "The form did not carry this session's CSRF token."], viewer,
                          status: .forbidden)
        }
        do {
            try await sessions.end(id)
        } catch {
            log.error("console session could not be deleted", metadata: ["error": "\(error)"])
            return render("error", ["title": "Service unavailable", "message": "The session could not be ended; try again."], viewer,
                          status: .serviceUnavailable)
        }
        var headers = HTTPFields()
        headers.append(HTTPField(name: .setCookie, value: cookie(Self.sessionCookie, "", path: "/console", maxAge: 0)))
        return Self.redirect("/console/login", headers: headers)
    }

    /// A state-changing form of a signed-in session: its body, after the CSRF token is checked.
    func checkedForm(_ request: Request, _ viewer: Viewer) async throws -> [String: String] {
        guard let session = viewer.session else { throw ConsoleError(status: .unauthorized, message: "sign in") }
        let form = try await Self.form(request)
        guard let sent = form["csrf"], ConsoleSessions.constantTimeEqual(sent, session.csrf) else {
            throw ConsoleError(status: .forbidden, message: "The form did not carry this session's CSRF token; reload the page and try again.")
        }
        return form
    }

    /// An `application/x-www-form-urlencoded` body of at most 64 KiB; a repeated field is refused.
    static func form(_ request: Request) async throws -> [String: String] {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        guard type.hasPrefix("application/x-www-form-urlencoded") else {
            throw ConsoleError(status: .badRequest, message: "expected a form body")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: 64 * 1024)
        } catch {
            throw ConsoleError(status: .badRequest, message: "the form is too large")
        }
        return try parseForm(String(buffer: body))
    }

    static func parseForm(_ text: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = decodeComponent(parts[0]), let value = decodeComponent(parts.count > 1 ? parts[1] : "") else {
                throw ConsoleError(status: .badRequest, message: "the form is not well encoded")
            }
            guard fields[key] == nil else { throw ConsoleError(status: .badRequest, message: "a form field is repeated") }
            fields[key] = value
        }
        return fields
    }

    static func decodeComponent(_ raw: Substring) -> String? {
        raw.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// A query parameter as a browser's GET form sends it (`+` is a space, then percent-decoding;
    /// Hummingbird's `queryParameters` keeps `+`); the first of repeated ones.
    static func query(_ request: Request, _ key: String, max: Int = 512) throws -> String? {
        var found: String?
        for pair in (request.uri.query ?? "").split(separator: "&") where found == nil {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard decodeComponent(parts[0]) == key else { continue }
            guard let value = decodeComponent(parts.count > 1 ? parts[1] : "") else {
                throw ConsoleError(status: .badRequest, message: "\(key) is not well encoded")
            }
            found = value
        }
        guard let value = found else { return nil }
        guard value.utf8.count <= max else { throw ConsoleError(status: .badRequest, message: "\(key) is too long") }
        return value
    }

    static func repositoryName(_ request: Request) throws -> RepositoryName {
        guard let raw = try query(request, "name") else { throw ConsoleError(status: .badRequest, message: "give a repository name") }
        return try RepositoryName(raw)
    }

    static func digest(_ raw: String?) throws -> Digest {
        guard let raw, let digest = try? Digest(parsing: raw) else {
            throw ConsoleError(status: .badRequest, message: "give a valid digest")
        }
        return digest
    }
}

extension HTTPField.Name {
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}
