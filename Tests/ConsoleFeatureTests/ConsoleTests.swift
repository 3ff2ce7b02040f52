import Access
import Backends
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Testing
@testable import ConsoleFeature
@testable import HTTPAPI

private let ownerPassword = "owner-console-password"
private let actor = Actor(name: "test", address: "-")

private func makeConsoleApp(publicURL: String? = nil, seams: ConsoleSeams = ConsoleSeams(), dataDirectory: String? = nil)
    async throws -> (some ApplicationProtocol, AccessControl, Registry) {
    let dir = dataDirectory ?? (NSTemporaryDirectory() + "berth-console-" + UUID().uuidString)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
    let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore,
                                              keyDirectory: dir + "/keys")
    _ = try await access.bootstrap(ownerPassword: ownerPassword)
    let console = ConsoleFeature(store: registry.metadata as! any MetadataBackend, seams: seams)
    let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [console],
                                                    host: "127.0.0.1", port: 0, publicURL: publicURL, logger: logger)
    return (app, access, registry)
}

private func basic(_ user: String, _ password: String) -> HTTPFields {
    [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
}

/// Pushes a one-config image with the given manifest annotations; returns its digest.
@discardableResult
private func push(_ client: any TestClientProtocol, _ repo: String, tag: String, seed: String,
                  annotations: [String: String] = [:], artifactType: String? = nil, config: String? = nil) async throws -> String {
    let auth = basic("owner", ownerPassword)
    let config = Array((config ?? "{\"s\":\"\(seed)\"}").utf8)
    let configDigest = Digest.compute(config).string
    var headers = auth
    headers[.contentLength] = String(config.count)
    let blob = try await client.execute(uri: "/v2/\(repo)/blobs/uploads/?digest=\(configDigest)", method: .post, headers: headers,
                                        body: ByteBuffer(bytes: config))
    #expect(blob.status == .created)
    var manifest: [String: Any] = [
        "schemaVersion": 2, "mediaType": MediaType.ociManifest,
        "config": ["mediaType": artifactType == nil ? "application/vnd.oci.image.config.v1+json" : "application/vnd.cncf.helm.config.v1+json",
                   "digest": configDigest, "size": config.count],
        "layers": [] as [Any],
    ]
    if !annotations.isEmpty { manifest["annotations"] = annotations }
    let bytes = try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys])
    var mh = auth
    mh[.contentType] = MediaType.ociManifest
    let put = try await client.execute(uri: "/v2/\(repo)/manifests/\(tag)", method: .put, headers: mh, body: ByteBuffer(bytes: bytes))
    #expect(put.status == .created)
    return Digest.compute(Array(bytes)).string
}

/// A browser's cookie jar, as far as these tests need one.
private struct Browser {
    let client: any TestClientProtocol
    var cookies: [String: String] = [:]

    mutating func get(_ uri: String) async throws -> TestResponse {
        let r = try await client.execute(uri: uri, method: .get, headers: cookieHeader())
        keep(r)
        return r
    }

    mutating func post(_ uri: String, _ form: [(String, String)]) async throws -> TestResponse {
        var headers = cookieHeader()
        headers[.contentType] = "application/x-www-form-urlencoded"
        let body = form.map { "\(enc($0.0))=\(enc($0.1))" }.joined(separator: "&")
        let r = try await client.execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body))
        keep(r)
        return r
    }

    func cookieHeader() -> HTTPFields {
        cookies.isEmpty ? [:] : [.cookie: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")]
    }

    mutating func keep(_ r: TestResponse) {
        for line in r.headers[values: .setCookie] {
            let pair = line.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
            let value = pair.count > 1 ? String(pair[1]) : ""
            cookies[String(pair[0])] = value.isEmpty ? nil : value
        }
    }

    /// Signs in through the form (its CSRF token taken from the page); returns the POST's answer.
    mutating func signIn(_ user: String, _ password: String) async throws -> TestResponse {
        let form = try await get("/console/login")
        let csrf = try #require(hidden(String(buffer: form.body), "csrf"))
        return try await post("/console/login", [("csrf", csrf), ("username", user), ("password", password)])
    }

    func enc(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }
}

/// The value of a hidden input `name` in a page.
private func hidden(_ html: String, _ name: String) -> String? {
    guard let r = html.range(of: "name=\"\(name)\" value=\"") else { return nil }
    let rest = html[r.upperBound...]
    return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
}

@Suite struct ConsoleTests {
    @Test func everyResponseCarriesTheSecurityHeadersAndTheLoginCookieIsStrict() async throws {
        let (app, _, _) = try await makeConsoleApp()
        try await app.test(.router) { client in
            var b = Browser(client: client)
            for uri in ["/console/login", "/console/repositories", "/console/static/console.css", "/console/image?name=x&digest=bad"] {
                let r = try await b.get(uri)
                let csp = r.headers[.contentSecurityPolicy] ?? ""
                #expect(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "\(uri)")
                #expect(r.headers[.xContentTypeOptions] == "nosniff", "\(uri)")
            }
            let login = try await client.execute(uri: "/console/login", method: .get)
            #expect(login.status == .ok)
            let cookie = try #require(login.headers[values: .setCookie].first)
            #expect(cookie.hasPrefix("berth_login_csrf=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
            #expect(!cookie.contains("Secure"))   // plain HTTP here; Secure under TLS
            let page = String(buffer: login.body)
            #expect(page.contains("<label for=\"username\">") && page.contains("<main id=\"main\"") && !page.contains("<script"))
        }
    }

    @Test func signInNeedsTheFormsTokenAndRightCredentialsAndKeepsOnlyAHashOfTheSession() async throws {
        let (app, _, _) = try await makeConsoleApp()
        try await app.test(.router) { client in
            // Not signed in, anonymous pull off: sent to sign in.
            var b = Browser(client: client)
            let anonymous = try await b.get("/console/repositories")
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/console/login")

            // No CSRF token (a cross-site form): refused before the password is looked at.
            let forged = try await b.post("/console/login", [("username", "owner"), ("password", ownerPassword)])
            #expect(forged.status == .forbidden && b.cookies["berth_session"] == nil)

            let wrong = try await b.signIn("owner", "wrong")
            #expect(wrong.status == .unauthorized && b.cookies["berth_session"] == nil)
            #expect(String(buffer: wrong.body).contains("Sign-in failed"))

            let ok = try await b.signIn("owner", ownerPassword)
            #expect(ok.status == .seeOther && ok.headers[.location] == "/console/repositories")
            let set = try #require(ok.headers[values: .setCookie].first { $0.hasPrefix("berth_session=") })
            #expect(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age=") && set.contains("Path=/console"))
            let id = try #require(b.cookies["berth_session"])
            #expect(ConsoleSessions.hash(id) != id && ConsoleSessions.hash(id).count == 64)
            let page = try await b.get("/console/repositories")
            #expect(page.status == .ok && String(buffer: page.body).contains("Signed in as <strong id=\"whoami\">owner</strong>"))

            // Sign-out needs the session's CSRF token too.
            let noToken = try await b.post("/console/logout", [])
            #expect(noToken.status == .forbidden)
            let csrf = try #require(hidden(String(buffer: page.body), "csrf"))
            let out = try await b.post("/console/logout", [("csrf", csrf)])
            #expect(out.status == .seeOther && b.cookies["berth_session"] == nil)
            var replay = Browser(client: client)
            replay.cookies["berth_session"] = id
            #expect(try await replay.get("/console/repositories").status == .seeOther)
        }
    }

    @Test func aRepositoryTheViewerMayNotReadIsNeitherListedNorShown() async throws {
        let (app, access, _) = try await makeConsoleApp()
        let (_, password) = try await access.createIdentity(actor, name: "alice")
        _ = try await access.assignRole(actor, assignee: "alice", role: "Pull", scope: "team/*")
        try await app.test(.router) { client in
            let mine = try await push(client, "team/app", tag: "v1", seed: "a")
            let foreign = try await push(client, "secret/db", tag: "v1", seed: "b")
            var b = Browser(client: client)
            #expect(try await b.signIn("alice", try #require(password)).status == .seeOther)
            let list = String(buffer: try await b.get("/console/repositories").body)
            #expect(list.contains("team/app") && !list.contains("secret/db"))
            let tags = try await b.get("/console/repository?name=team%2Fapp")
            #expect(tags.status == .ok && String(buffer: tags.body).contains(mine))
            let refused = try await b.get("/console/repository?name=secret%2Fdb")
            #expect(refused.status == .forbidden && !String(buffer: refused.body).contains(foreign))
            #expect(try await b.get("/console/image?name=secret%2Fdb&digest=\(foreign)").status == .forbidden)
            #expect(try await b.get("/console/image?name=team%2Fapp&digest=\(mine)").status == .ok)
            // Registry-wide pages need management/read, as their API routes do.
            for page in ["usage", "tokens", "webhooks", "audit"] {
                #expect(try await b.get("/console/\(page)").status == .forbidden, "\(page)")
            }
            // No verdict buttons without quarantine/write, and a forged verdict is refused.
            let image = String(buffer: try await b.get("/console/image?name=team%2Fapp&digest=\(mine)").body)
            #expect(!image.contains("verdict-pass"))
            let csrf = try #require(hidden(image, "csrf"))
            let verdict = try await b.post("/console/quarantine", [("csrf", csrf), ("name", "team/app"), ("digest", mine), ("state", "Failed")])
            #expect(verdict.status == .forbidden)
            // Bad input is a 400 page, not a crash.
            #expect(try await b.get("/console/repository?name=Not..Valid").status == .badRequest)
            #expect(try await b.get("/console/image?name=team%2Fapp&digest=sha256:zz").status == .badRequest)
            #expect(try await b.get("/console/repository?name=team%2Fnone").status == .notFound)

            // A password reset ends the session at its next request.
            _ = try await access.resetIdentityPassword(actor, name: "alice")
            #expect(try await b.get("/console/repositories").status == .seeOther)
        }
    }

    @Test func everythingRenderedIsEscaped() async throws {
        let (app, _, _) = try await makeConsoleApp()
        let markup = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"
        try await app.test(.router) { client in
            let digest = try await push(client, "xss/app", tag: "v1", seed: "x", annotations: ["org.example.note": markup, markup: "key"])
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            let image = String(buffer: try await b.get("/console/image?name=xss%2Fapp&digest=\(digest)").body)
            #expect(image.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&quot;&#39;&amp;"))
            #expect(!image.contains("<script") && !image.contains("<img"))
            // As a browser's GET form sends it: spaces as `+`, a literal plus as %2B.
            let search = String(buffer: try await b.get("/console/repositories?q=%3Cscript%3Ealert(3)%3C%2Fscript%3E+a%2Bb").body)
            #expect(search.contains("&lt;script&gt;alert(3)&lt;/script&gt; a+b") && !search.contains("<script"))
            let login = try await b.post("/console/login", [("csrf", "x"), ("username", markup), ("password", "p")])
            #expect(!String(buffer: login.body).contains("<script"))
        }
    }

    @Test func aQuarantinedManifestIsShownOnlyToWhoMayPullIt() async throws {
        // Found in review: a Pull-only viewer saw the layers and annotations of a Failed manifest
        // that /v2/ refuses them.
        let (app, access, _) = try await makeConsoleApp()
        let (_, password) = try await access.createIdentity(actor, name: "alice")
        _ = try await access.assignRole(actor, assignee: "alice", role: "Pull", scope: "team/*")
        try await app.test(.router) { client in
            let digest = try await push(client, "team/app", tag: "v1", seed: "q", annotations: ["marker": "only-for-pullers"])
            var owner = Browser(client: client)
            _ = try await owner.signIn("owner", ownerPassword)
            let page = String(buffer: try await owner.get("/console/image?name=team%2Fapp&digest=\(digest)").body)
            let csrf = try #require(hidden(page, "csrf"))
            let form = [("csrf", csrf), ("name", "team/app"), ("digest", digest), ("state", "Failed"), ("reason", "bad")]
            #expect(try await owner.post("/console/quarantine", form).status == .seeOther)
            #expect(String(buffer: try await owner.get("/console/image?name=team%2Fapp&digest=\(digest)").body).contains("only-for-pullers"))

            var alice = Browser(client: client)
            #expect(try await alice.signIn("alice", try #require(password)).status == .seeOther)
            let refused = try await alice.get("/console/image?name=team%2Fapp&digest=\(digest)")
            #expect(refused.status == .forbidden && !String(buffer: refused.body).contains("only-for-pullers"))
            let tags = try await alice.get("/console/repository?name=team%2Fapp")
            #expect(tags.status == .ok && String(buffer: tags.body).contains(digest))
        }
    }

    @Test func quarantineVerdictsNeedTheSessionsCSRFTokenAndQuarantineWrite() async throws {
        let (app, _, registry) = try await makeConsoleApp()
        try await app.test(.router) { client in
            let digest = try await push(client, "q/app", tag: "v1", seed: "q")
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            let page = String(buffer: try await b.get("/console/image?name=q%2Fapp&digest=\(digest)").body)
            #expect(page.contains("id=\"verdict-fail\"") && page.contains("<label for=\"reason\">"))
            let form = [("name", "q/app"), ("digest", digest), ("state", "Failed"), ("reason", "<b>bad</b>")]
            #expect(try await b.post("/console/quarantine", form).status == .forbidden)
            #expect(try await b.post("/console/quarantine", [("csrf", "wrong")] + form).status == .forbidden)
            let record = try await registry.metadata.manifest(repository: "q/app", digest: try Digest(parsing: digest))
            #expect(record?.quarantineState == nil)

            let csrf = try #require(hidden(page, "csrf"))
            let done = try await b.post("/console/quarantine", [("csrf", csrf)] + form)
            #expect(done.status == .seeOther)
            let after = try await registry.metadata.manifest(repository: "q/app", digest: try Digest(parsing: digest))
            #expect(after?.quarantineState == .failed && after?.quarantineReason == "<b>bad</b>")
            let shown = String(buffer: try await b.get(try #require(done.headers[.location])).body)
            #expect(shown.contains("Failed: &lt;b&gt;bad&lt;/b&gt;") && shown.contains("Verdict recorded."))
            #expect(try await b.post("/console/quarantine", [("csrf", csrf), ("name", "q/app"), ("digest", digest), ("state", "Bogus")]).status
                == .badRequest)
        }
    }

    @Test func managementPagesRender() async throws {
        let (app, access, _) = try await makeConsoleApp()
        _ = try await access.putScopeMap(actor, name: "ci", description: "CI pushes",
                                         entries: [.init(repository: try RepositoryPattern("team/*"), actions: ["content/read"])], create: true)
        try await app.test(.router) { client in
            try await push(client, "chart/app", tag: "1.0.0", seed: "h", artifactType: "helm")
            try await push(client, "chart/app", tag: "1.0.1", seed: "i", artifactType: "helm")
            try await push(client, "other/app", tag: "v1", seed: "j")
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            // the chart's numbers come from the store's daily sums (a day boundary between the
            // pushes would split them over two bars, the total stays)
            let usage = String(buffer: try await b.get("/console/usage").body)
            #expect(usage.contains("<svg id=\"usage-chart\" role=\"img\"") && usage.contains("<rect class=\"bar\"")
                && usage.contains("3 manifest pushes over 14 days"))
            let tokens = String(buffer: try await b.get("/console/tokens").body)
            #expect(tokens.contains("CI pushes") && tokens.contains("team/*: content/read"))
            #expect(try await b.get("/console/webhooks").status == .ok)
            let audit = String(buffer: try await b.get("/console/audit").body)
            #expect(audit.contains("console.login") && audit.contains("chart/app:1.0.0"))
            let tags = String(buffer: try await b.get("/console/repository?name=chart%2Fapp").body)
            #expect(tags.contains("Helm chart"))
            // No page is a placeholder any more; without scanning the scans page says this server does not match.
            let scans = try await b.get("/console/scans")
            #expect(scans.status == .ok && String(buffer: scans.body).contains("does not match images against advisories"))
            for page in ["replicas", "tasks", "scans"] {
                let r = try await b.get("/console/\(page)")
                #expect(r.status == .ok && !String(buffer: r.body).contains("Not built yet"), "\(page)")
            }
            #expect(try await b.get("/console/sbom").status == .badRequest)
        }
    }

    @Test func anonymousPullShowsOnlyWhatAnonymousMayRead() async throws {
        let (app, access, _) = try await makeConsoleApp()
        var change = SettingsChange()
        change.anonymousPullEnabled = true
        _ = try await access.updateSettings(actor, change)
        try await app.test(.router) { client in
            try await push(client, "public/app", tag: "v1", seed: "p")
            var b = Browser(client: client)
            let list = try await b.get("/console/repositories")
            #expect(list.status == .ok && String(buffer: list.body).contains("Anonymous (pull only)"))
            #expect(try await b.get("/console/tokens").headers[.location] == "/console/login")
            #expect(try await b.post("/console/quarantine", [("csrf", "x")]).headers[.location] == "/console/login")
        }
    }

    @Test func failedSignInsAreLimitedAsAtTheTokenEndpoint() async throws {
        let (app, _, _) = try await makeConsoleApp()
        try await app.test(.router) { client in
            var b = Browser(client: client)
            var last = HTTPResponse.Status.ok
            for _ in 0..<12 {
                last = try await b.signIn("owner", "wrong").status
                if last == .tooManyRequests { break }
            }
            #expect(last == .tooManyRequests)
            // The right password is refused too while the limit holds.
            let blocked = try await b.signIn("owner", ownerPassword)
            #expect(blocked.status == .tooManyRequests && blocked.headers[HTTPField.Name("Retry-After")!] != nil && b.cookies["berth_session"] == nil)
        }
    }

    @Test func cookiesAreSecureBehindAnHTTPSPublicURL() async throws {
        let (app, _, _) = try await makeConsoleApp(publicURL: "https://registry.example")
        try await app.test(.router) { client in
            var b = Browser(client: client)
            let login = try await b.get("/console/login")
            #expect(login.headers[values: .setCookie].allSatisfy { $0.contains("; Secure") })
            let ok = try await b.signIn("owner", ownerPassword)
            let set = try #require(ok.headers[values: .setCookie].first { $0.hasPrefix("berth_session=") })
            #expect(set.contains("; Secure") && set.contains("HttpOnly"))
        }
    }

    @Test func webhooksAndTheirDeliveriesAreShownWithoutSecrets() async throws {
        let (app, _, registry) = try await makeConsoleApp()
        let store = registry.metadata as! any WebhookStore
        #expect(try await store.createWebhook(WebhookRecord(name: "ci", uri: "https://hooks.example/<b>", actions: ["push"], scope: nil,
                                                            headers: ["X-Secret": "sealed-value"], sealedSecret: Data([1, 2, 3]),
                                                            enabled: true, createdAt: Date()), consumer: "webhook:ci"))
        try await store.recordDelivery(WebhookDelivery(webhook: "ci", eventSequence: 1, action: "push", attempt: 2, statusCode: 503,
                                                       latencyMilliseconds: 12, error: "server said <no>", payload: "{}"), keep: 1000)
        try await app.test(.router) { client in
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            let page = String(buffer: try await b.get("/console/webhooks").body)
            #expect(page.contains("https://hooks.example/&lt;b&gt;") && page.contains("503") && page.contains("server said &lt;no&gt;"))
            #expect(!page.contains("sealed-value") && !page.contains("X-Secret"))
        }
    }

    @Test func tagsShowThePlatformFromTheImageConfig() async throws {
        let (app, _, _) = try await makeConsoleApp()
        try await app.test(.router) { client in
            let digest = try await push(client, "plat/app", tag: "v1", seed: "p",
                                        config: #"{"os":"linux","architecture":"arm64","variant":"v8","rootfs":{"type":"layers","diff_ids":[]}}"#)
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            #expect(String(buffer: try await b.get("/console/repository?name=plat%2Fapp").body).contains("<td>linux/arm64/v8</td>"))
            #expect(String(buffer: try await b.get("/console/image?name=plat%2Fapp&digest=\(digest)").body)
                .contains("<dd id=\"image-platforms\">linux/arm64/v8</dd>"))
        }
    }

    @Test func theTagsPageAndTheImagePageShowTheLastPullOnceItIsWritten() async throws {
        let (app, _, registry) = try await makeConsoleApp()
        try await app.test(.router) { client in
            let pulled = try await push(client, "pulls/app", tag: "v1", seed: "a")
            let idle = try await push(client, "pulls/app", tag: "v2", seed: "b")
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            let before = String(buffer: try await b.get("/console/repository?name=pulls%2Fapp").body)
            #expect(before.contains("<th scope=\"col\">Last pull</th>") && !before.contains("not recorded"))
            #expect(before.components(separatedBy: "<td class=\"last-pull\">never</td>").count == 3)
            // a real pull through /v2/ (the console's own reads are not pulls), then the flush
            let get = try await client.execute(uri: "/v2/pulls/app/manifests/v1", method: .get, headers: basic("owner", ownerPassword))
            #expect(get.status == .ok)
            _ = try await b.get("/console/image?name=pulls%2Fapp&digest=\(idle)")
            // The application's own flush service may have written it already (it runs in this test's
            // service group); either way it is stored now. That the console's page view of `idle` was
            // not counted is checked below: its last pull stays "never".
            _ = try await registry.flushPullTimes()
            let stamp = ConsoleRoutes.time(Date())
            let page = String(buffer: try await b.get("/console/repository?name=pulls%2Fapp").body)
            let row = try #require(page.components(separatedBy: "<tr>").first { $0.contains(">v1</td>") })
            #expect(row.contains("<td class=\"last-pull\">\(stamp.prefix(10))"))
            #expect(page.components(separatedBy: "<td class=\"last-pull\">never</td>").count == 2)
            let image = String(buffer: try await b.get("/console/image?name=pulls%2Fapp&digest=\(pulled)").body)
            #expect(image.contains("<dd id=\"image-last-pull\">\(stamp.prefix(10))"))
            let other = String(buffer: try await b.get("/console/image?name=pulls%2Fapp&digest=\(idle)").body)
            #expect(other.contains("<dd id=\"image-last-pull\">never</dd>"))
        }
    }

    @Test func theScansPageListsOnlyImagesOfRepositoriesTheViewerMayReadBySeverityLinkingToEachImage() async throws {
        // The seam asks the console's `may` (the viewer's rights) per repository, as the scanning
        // feature's walk does.
        let seams = ConsoleSeams(scans: { limit, may in
            let all = [("team/app", "sha256:" + String(repeating: "a", count: 64), ["Critical": 2, "High": 1, "Low": 3]),
                       ("secret/db", "sha256:" + String(repeating: "b", count: 64), ["Critical": 9]),
                       ("team/<b>x</b>", "sha256:" + String(repeating: "c", count: 64), [:])]
            let shown = all.filter { may($0.0, [.metadataRead, .contentRead], .none) }.prefix(limit)
            return ConsoleScanList(images: shown.map {
                ConsoleScanList.Image(repository: $0.0, manifest: $0.1, tags: ["v1"], advisoryVersion: 3,
                                      matchedAt: Date(timeIntervalSince1970: 1_700_000_000), counts: $0.2,
                                      total: $0.2.values.reduce(0, +))
            }, truncated: false)
        })
        let (app, access, _) = try await makeConsoleApp(seams: seams)
        let (_, password) = try await access.createIdentity(actor, name: "alice")
        _ = try await access.assignRole(actor, assignee: "alice", role: "Pull", scope: "team/*")
        try await app.test(.router) { client in
            var b = Browser(client: client)
            #expect(try await b.signIn("alice", try #require(password)).status == .seeOther)
            let page = try await b.get("/console/scans")
            let html = String(buffer: page.body)
            #expect(page.status == .ok)
            #expect(html.contains("href=\"/console/image?name=team%2Fapp&amp;digest=sha256:\(String(repeating: "a", count: 64))\""))
            #expect(!html.contains("secret/db") && !html.contains(String(repeating: "b", count: 64)))
            #expect(html.contains("<td class=\"critical\">2</td><td class=\"high\">1</td><td class=\"medium\">0</td><td class=\"low\">3</td>"))
            #expect(html.contains("<svg id=\"scans-chart\" role=\"img\" aria-label=\"Findings by severity: Critical 2, High 1, Medium 0, Low 3"))
            #expect(html.contains("team/&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>x</b>") && !html.contains("Not built yet"))
            var owner = Browser(client: client)
            _ = try await owner.signIn("owner", ownerPassword)
            let all = String(buffer: try await owner.get("/console/scans").body)
            #expect(all.contains("secret/db") && all.contains("Critical 11,"))
            // anonymous is sent to sign in, as `GET /api/v1/scans` asks for authentication
            var stranger = Browser(client: client)
            #expect(try await stranger.get("/console/scans").headers[.location] == "/console/login")
        }
    }

    @Test func templatesNeverUseUnescapedInterpolation() {
        for (name, text) in ConsoleTemplates.all {
            #expect(!text.contains("{{{") && !text.contains("{{&"), "\(name)")
        }
    }

    @Test func sessionsAreStoredHashedExpireAndAreSwept() async throws {
        let dir = NSTemporaryDirectory() + "berth-console-sessions-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let registry = try Registry.embedded(dataDirectory: dir, logger: Logger(label: "test"))
        let store = registry.metadata as! any MetadataBackend
        let sessions = ConsoleSessions(store: store, lifetime: 60, sweepInterval: 10)
        let start = Date(timeIntervalSince1970: 1_000_000)
        let a = try await sessions.create(subject: "identity:a", subjectID: nil, generation: 1, displayName: "a", now: start)
        // the store keeps the id's SHA-256, never the id
        #expect(try await store.consoleSession(idHash: a.id, now: start) == nil)
        #expect(try await store.consoleSession(idHash: ConsoleSessions.hash(a.id), now: start)?.csrf == a.session.csrf)
        // another ConsoleSessions over the same store (a restart, another node) knows the session
        let other = ConsoleSessions(store: store, lifetime: 60)
        #expect(try await other.session(a.id, now: start.addingTimeInterval(30)) == a.session)
        #expect(try await sessions.session(a.id, now: start.addingTimeInterval(61)) == nil)
        // a sign-in after the sweep interval removes the expired session from the store
        _ = try await sessions.create(subject: "identity:b", subjectID: nil, generation: 1, displayName: "b",
                                      now: start.addingTimeInterval(62))
        #expect(try await store.deleteExpiredConsoleSessions(now: start.addingTimeInterval(62)) == 0)
        let b = try await other.create(subject: "identity:c", subjectID: nil, generation: 1, displayName: "c", now: start)
        try await sessions.end(b.id)
        #expect(try await other.session(b.id, now: start) == nil)
        #expect(ConsoleSessions.constantTimeEqual("abc", "abc") && !ConsoleSessions.constantTimeEqual("abc", "abd")
            && !ConsoleSessions.constantTimeEqual("", ""))
    }

    @Test func anIdentityKeepsAtMostTwentySessionsTheOldestEnded() async throws {
        let registry = try Registry.embedded(dataDirectory: NSTemporaryDirectory() + "berth-console-cap-" + UUID().uuidString)
        let store = registry.metadata as! any MetadataBackend
        let sessions = ConsoleSessions(store: store)
        let start = Date()
        var ids: [String] = []
        for i in 0..<22 {
            ids.append(try await sessions.create(subject: "identity:a", subjectID: nil, generation: 1, displayName: "a",
                                                 now: start.addingTimeInterval(Double(i))).id)
        }
        let other = try await sessions.create(subject: "identity:b", subjectID: nil, generation: 1, displayName: "b", now: start)
        for (i, id) in ids.enumerated() {
            let live = try await sessions.session(id, now: start.addingTimeInterval(30)) != nil
            #expect(live == (i >= 2), "session \(i)")
        }
        #expect(try await sessions.session(other.id, now: start.addingTimeInterval(30)) != nil)
    }

    /// A signed-in browser stays signed in when the server is built again over the same store (a
    /// restart, or another node of a cluster sharing the database); signing out there ends it.
    @Test func aSessionOutlivesTheServerThatMadeIt() async throws {
        let dir = NSTemporaryDirectory() + "berth-console-restart-" + UUID().uuidString
        let (first, _, _) = try await makeConsoleApp(dataDirectory: dir)
        let cookies = try await first.test(.router) { client in
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            #expect(String(buffer: try await b.get("/console/repositories").body).contains("Sign out"))
            return b.cookies
        }
        #expect(!cookies.isEmpty)
        let (second, _, _) = try await makeConsoleApp(dataDirectory: dir)
        try await second.test(.router) { client in
            var b = Browser(client: client, cookies: cookies)
            let page = String(buffer: try await b.get("/console/repositories").body)
            #expect(page.contains("Sign out") && !page.contains("Anonymous"))
        }
    }
}

/// Pushes a blob and a manifest (by digest when `tag` is nil); returns the manifest's digest.
@discardableResult
private func pushRaw(_ client: any TestClientProtocol, _ repo: String, manifest: [String: Any], blobs: [[UInt8]],
                     tag: String? = nil) async throws -> String {
    let auth = basic("owner", ownerPassword)
    for blob in blobs {
        var headers = auth
        headers[.contentLength] = String(blob.count)
        let r = try await client.execute(uri: "/v2/\(repo)/blobs/uploads/?digest=\(Digest.compute(blob).string)", method: .post,
                                         headers: headers, body: ByteBuffer(bytes: blob))
        #expect(r.status == .created)
    }
    let bytes = try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys])
    let digest = Digest.compute(Array(bytes)).string
    var mh = auth
    mh[.contentType] = MediaType.ociManifest
    let put = try await client.execute(uri: "/v2/\(repo)/manifests/\(tag ?? digest)", method: .put, headers: mh,
                                       body: ByteBuffer(bytes: bytes))
    #expect(put.status == .created)
    return digest
}

/// The signature digest a test's fake verifier trusts, set once the signature is pushed.
private final class DigestBox: @unchecked Sendable {
    private let lock = NSLock()
    private var digest: Digest?
    var value: Digest? { lock.withLock { digest } }
    func set(_ d: Digest) { lock.withLock { digest = d } }
}
private let expectedGood = DigestBox()

@Suite struct ConsoleOperationsPagesTests {
    @Test func theImagePageShowsTheInventoryAndServesTheSBOMWithItsMediaTypeToThoseWhoMayPull() async throws {
        let seams = ConsoleSeams(inventory: { _ in
            ConsoleInventory(status: "complete", detail: nil, os: "Debian <b>12</b>", packagesByType: ["deb": 3, "python": 2],
                             createdAt: Date(timeIntervalSince1970: 1_700_000_000))
        }, findings: { _ in
            ConsoleFindings(advisoryVersion: 7, findings: [
                .init(id: "CVE-2026-0002", severity: "Low", package: "zlib", installedVersion: "1.2", fixedVersion: nil),
                .init(id: "CVE-2026-<i>1</i>", severity: "Critical", package: "open<ssl>", installedVersion: "3.0.1", fixedVersion: "3.0.2"),
                .init(id: "CVE-2026-0003", severity: "Critical", package: "curl", installedVersion: "7.8", fixedVersion: "7.9"),
            ])
        })
        let (app, access, _) = try await makeConsoleApp(seams: seams)
        let (_, password) = try await access.createIdentity(actor, name: "alice")
        _ = try await access.assignRole(actor, assignee: "alice", role: "Pull", scope: "team/*")
        try await app.test(.router) { client in
            let image = try await push(client, "team/app", tag: "v1", seed: "sbom")
            let foreign = try await push(client, "secret/db", tag: "v1", seed: "sbom")
            let document = Array(#"{"spdxVersion":"SPDX-2.3","name":"<script>x</script>"}"#.utf8)
            let empty = Array("{}".utf8)
            for (repo, subject) in [("team/app", image), ("secret/db", foreign)] {
                try await pushRaw(client, repo, manifest: [
                    "schemaVersion": 2, "mediaType": MediaType.ociManifest, "artifactType": "application/spdx+json",
                    "config": ["mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest.compute(empty).string, "size": 2],
                    "layers": [["mediaType": "application/spdx+json", "digest": Digest.compute(document).string, "size": document.count]],
                    "subject": ["mediaType": MediaType.ociManifest, "digest": subject, "size": 1],
                    "annotations": ["dev.berth.sbom.generator": "berth test"],
                ], blobs: [empty, document])
            }
            var b = Browser(client: client)
            #expect(try await b.signIn("alice", try #require(password)).status == .seeOther)
            let page = try await b.get("/console/image?name=team%2Fapp&digest=\(image)")
            let html = String(buffer: page.body)
            #expect(page.status == .ok)
            #expect(html.contains("<tr><td>deb</td><td>3</td></tr>") && html.contains("<tr><td>python</td><td>2</td></tr>"))
            #expect(html.contains("5 packages") && html.contains("Debian &lt;b&gt;12&lt;/b&gt;") && !html.contains("<b>12"))
            #expect(html.contains("/console/sbom?name=team%2Fapp&amp;digest=\(image)&amp;format=spdx"))
            #expect(!html.contains("format=cyclonedx"))   // none was pushed
            // Findings: counts by severity as a server-drawn chart, the most severe first, escaped.
            #expect(html.contains("3 findings, matched against advisory database version 7."))
            #expect(html.contains("aria-label=\"Findings by severity: Critical 2, High 0, Medium 0, Low 1, None 0, Unknown 0\""))
            #expect(html.contains("<td>CVE-2026-&lt;i&gt;1&lt;/i&gt;</td><td>Critical</td><td>open&lt;ssl&gt;</td>") && !html.contains("<i>1</i>"))
            let critical = try #require(html.range(of: "<td>CVE-2026-0003</td>")), low = try #require(html.range(of: "<td>CVE-2026-0002</td>"))
            #expect(critical.lowerBound < low.lowerBound && html.contains("<td>not fixed</td>"))
            let sbom = try await b.get("/console/sbom?name=team%2Fapp&digest=\(image)&format=spdx")
            #expect(sbom.status == .ok && sbom.headers[.contentType] == "application/spdx+json")
            #expect(Array(sbom.body.readableBytesView) == document)
            #expect(sbom.headers[.contentDisposition]?.hasPrefix("attachment;") == true)
            #expect(sbom.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
            #expect(try await b.get("/console/sbom?name=team%2Fapp&digest=\(image)&format=cyclonedx").status == .notFound)
            #expect(try await b.get("/console/sbom?name=team%2Fapp&digest=\(image)&format=%3Cx%3E").status == .badRequest)
            #expect(try await b.get("/console/sbom?name=team%2Fapp&digest=nope&format=spdx").status == .badRequest)
            // a repository alice may not pull: refused, nothing of the document shown
            let refused = try await b.get("/console/sbom?name=secret%2Fdb&digest=\(foreign)&format=spdx")
            #expect(refused.status == .forbidden && !String(buffer: refused.body).contains("SPDX-2.3"))
        }
    }

    @Test func tasksAndReplicasPagesShowRunsLogsAndHealthEscapedAndOnlyToManagementReaders() async throws {
        let seams = ConsoleSeams(
            replicas: {
                [ConsoleReplica(location: "eu<west>", endpoint: "https://eu.example/\"x", regionEndpointEnabled: true, lagEvents: 42,
                                lagSeconds: 7, bytesPending: 2048, lastError: "<img src=x>", lastErrorAt: nil),
                 ConsoleReplica(location: "us", endpoint: "https://us.example", regionEndpointEnabled: false, lagEvents: nil,
                                lagSeconds: nil, bytesPending: 0, lastError: nil, lastErrorAt: nil),
                 ConsoleReplica(location: "asia", endpoint: "https://asia.example", regionEndpointEnabled: true, lagEvents: 0,
                                lagSeconds: 0, bytesPending: 0, lastError: nil, lastErrorAt: nil)]
            },
            runLog: { id, limit in
                #expect(limit > 0)
                return Array("step build: <script>alert('\(id)')</script>\n".utf8)
            })
        let (app, access, registry) = try await makeConsoleApp(seams: seams)
        let (_, password) = try await access.createIdentity(actor, name: "alice")
        _ = try await access.assignRole(actor, assignee: "alice", role: "Pull", scope: "team/*")
        let store = registry.metadata as! any MetadataBackend
        let now = Date()
        #expect(try await store.createTask(TaskRecord(name: "build<x>", taskFile: "version: v1.1.0", context: nil, schedule: nil, values: [:],
                                                      timeoutSeconds: 60, repositories: ["team/app"], createdBy: "owner",
                                                      createdAt: now, updatedAt: now)))
        var run = try #require(try await store.queueTaskRun(task: "build<x>", trigger: "manual", uploadedContext: nil))
        let queued = run
        run.status = .succeeded
        run.finishedAt = now
        run.pushed = [TaskRunImageRecord(reference: "team/app:v1", digest: "sha256:" + String(repeating: "ab", count: 32))]
        #expect(try await store.updateTaskRun(run, expected: queued.status))
        let runID = run.id
        try await app.test(.router) { client in
            var owner = Browser(client: client)
            #expect(try await owner.signIn("owner", ownerPassword).status == .seeOther)
            let tasks = try await owner.get("/console/tasks")
            let tasksHTML = String(buffer: tasks.body)
            #expect(tasks.status == .ok && tasksHTML.contains("build&lt;x&gt;") && !tasksHTML.contains("build<x>"))
            #expect(tasksHTML.contains("succeeded") && tasksHTML.contains("team/app:v1")
                && tasksHTML.contains(String(repeating: "ab", count: 32)))
            #expect(tasksHTML.contains("/console/task-log?task=build%3Cx%3E&amp;run=\(runID)"))
            let log = try await owner.get("/console/task-log?task=build%3Cx%3E&run=\(runID)")
            let logHTML = String(buffer: log.body)
            #expect(log.status == .ok && logHTML.contains("&lt;script&gt;alert(") && !logHTML.contains("<script>"))
            #expect(try await owner.get("/console/task-log?task=other&run=\(runID)").status == .notFound)
            #expect(try await owner.get("/console/task-log?task=build%3Cx%3E&run=cb999").status == .notFound)
            #expect(try await owner.get("/console/task-log?task=build%3Cx%3E").status == .badRequest)
            let replicas = try await owner.get("/console/replicas")
            let replicasHTML = String(buffer: replicas.body)
            #expect(replicas.status == .ok && replicasHTML.contains("eu&lt;west&gt;") && replicasHTML.contains("&lt;img src=x&gt;"))
            #expect(!replicasHTML.contains("<img") && replicasHTML.contains("<td>42</td>") && replicasHTML.contains("2.0 KiB")
                && replicasHTML.contains("<td class=\"health\">failing</td>") && replicasHTML.contains("<td class=\"health\">healthy</td>")
                && replicasHTML.contains("<td>us</td><td>https://us.example</td><td>disabled</td><td class=\"health\">not reached yet</td>"))
            #expect(replicasHTML.contains("unknown (the peer"))

            var alice = Browser(client: client)
            #expect(try await alice.signIn("alice", try #require(password)).status == .seeOther)
            for page in ["tasks", "replicas", "task-log?task=build%3Cx%3E&run=\(runID)"] {
                let r = try await alice.get("/console/\(page)")
                #expect(r.status == .forbidden && !String(buffer: r.body).contains("alert("), "\(page)")
            }
        }
    }

    @Test func eachSignatureShowsWhetherContentTrustVerifiesItAndWhoSigned() async throws {
        let good = Array("good envelope".utf8)
        let seams = ConsoleSeams(verifySignature: { repository, subject, signature, host in
            #expect(repository.value == "team/app" && !host.isEmpty)
            // the seam is asked about the signature manifest; this fake trusts the one carrying `good`
            let trusted = signature != subject && signature.string.hasPrefix("sha256:")
            return ConsoleSignatureCheck(verified: trusted && signature == expectedGood.value, signer: "CN=<b>Release</b>",
                                         detail: trusted && signature == expectedGood.value ? "trust policy release" : "signature invalid")
        })
        let (app, _, _) = try await makeConsoleApp(seams: seams)
        try await app.test(.router) { client in
            let image = try await push(client, "team/app", tag: "v1", seed: "signed")
            let empty = Array("{}".utf8)
            func signature(_ envelope: [UInt8], type: String) async throws -> String {
                try await pushRaw(client, "team/app", manifest: [
                    "schemaVersion": 2, "mediaType": MediaType.ociManifest, "artifactType": type,
                    "config": ["mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest.compute(empty).string, "size": 2],
                    "layers": [["mediaType": "application/jose+json", "digest": Digest.compute(envelope).string, "size": envelope.count]],
                    "subject": ["mediaType": MediaType.ociManifest, "digest": image, "size": 1],
                ], blobs: [empty, envelope])
            }
            let trusted = try await signature(good, type: "application/vnd.cncf.notary.signature")
            expectedGood.set(try Digest(parsing: trusted))
            let forged = try await signature(Array("forged envelope".utf8), type: "application/vnd.cncf.notary.signature")
            let cosign = try await signature(Array("cosign".utf8), type: "application/vnd.dev.cosign.artifact.sig.v1+json")
            var b = Browser(client: client)
            _ = try await b.signIn("owner", ownerPassword)
            let html = String(buffer: try await b.get("/console/image?name=team%2Fapp&digest=\(image)").body)
            func item(_ digest: String) -> String {
                let start = html.range(of: "<li><a class=\"digest\" href=\"/console/image?name=team%2Fapp&amp;digest=\(digest)\">")
                guard let start, let end = html[start.upperBound...].range(of: "</li>") else { return "" }
                return String(html[start.upperBound..<end.lowerBound])
            }
            #expect(item(trusted).contains("<strong class=\"verified\">verified</strong>, signed by <span class=\"signer\">CN=&lt;b&gt;Release&lt;/b&gt;</span>"))
            #expect(item(forged).contains("<strong class=\"unverified\">not verified: signature invalid</strong>") && !item(forged).contains("signed by"))
            #expect(item(cosign).contains("not verified: only Notary signatures are verified here"))
        }
    }

    @Test func pagesOfFeaturesThisServerLacksSayBothThat() async throws {
        let (app, _, registry) = try await makeConsoleApp()
        let store = registry.metadata as! any MetadataBackend
        let now = Date()
        #expect(try await store.createTask(TaskRecord(name: "t", taskFile: "version: v1.1.0", context: nil, schedule: nil, values: [:],
                                                      timeoutSeconds: 60, repositories: [], createdBy: "owner",
                                                      createdAt: now, updatedAt: now)))
        let run = try #require(try await store.queueTaskRun(task: "t", trigger: "manual", uploadedContext: nil))
        try await app.test(.router) { client in
            var owner = Browser(client: client)
            #expect(try await owner.signIn("owner", ownerPassword).status == .seeOther)
            let replicas = try await owner.get("/console/replicas")
            #expect(replicas.status == .ok && String(buffer: replicas.body).contains("does not run replication"))
            #expect(try await owner.get("/console/task-log?task=t&run=\(run.id)").status == .notFound)
        }
    }
}
