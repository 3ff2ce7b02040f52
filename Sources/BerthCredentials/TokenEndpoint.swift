import AsyncHTTPClient
import BerthAPIContract
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The well-known user name with which a Berth refresh token is presented as a password (the
/// server's `AccessControl.refreshTokenUser`; a test holds the two equal).
public let refreshTokenUser = "00000000-0000-0000-0000-000000000000"

/// An error answer of the registry, read from either envelope: `{"error":{code,message}}`
/// (management API) or the OCI `{"errors":[{code,message}]}` (the access layer, token endpoints).
public struct RegistryAPIError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let code: String
    public let message: String
    public var description: String { "\(message) (\(code), HTTP \(status))" }

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// Reads the error of an answer; `context` prefixes a 401's message (e.g. "token request").
    public init(status: Int, body: Data, context: String?) {
        var code = "HTTP_\(status)"
        var message = String(decoding: body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let decoded = try? JSONDecoder().decode(ManagementErrorBody.self, from: body) {
            code = decoded.error.code
            message = decoded.error.message
        } else if let decoded = try? JSONDecoder().decode(OCIErrorBody.self, from: body), let e = decoded.errors.first {
            code = e.code
            message = e.message
        }
        if message.isEmpty { message = "request failed" }
        if let context, status == 401 { message = "\(context): \(message)" }
        self.init(status: status, code: code, message: message)
    }
}

/// What the token endpoint granted.
public struct TokenGrant: Sendable, Equatable {
    public let access: String
    public let refresh: String?
    public let expiresIn: Int?
}

/// The client of a registry's token endpoints: `POST /oauth2/token` (password and refresh-token
/// grants) and `POST /oauth2/exchange` (an OIDC ID token, e.g. a Kubernetes service-account
/// token, for a refresh token through the identities' federated credentials). Used by `berth
/// login` and the management commands, `docker-credential-berth` and `berth-credential-provider`.
public struct TokenEndpoint: Sendable {
    public let registry: String
    let client: HTTPClient

    public static let timeout: TimeAmount = .seconds(60)
    /// Token answers are small; anything larger is not one.
    static let answerLimit = 1 << 20

    /// The default client of token requests (`berth login` and the CLI's commands): as
    /// `HTTPClient.shared`, but a redirect is not followed, since a 307 or 308 would post the
    /// password or refresh token on to whatever host it names.
    public static let defaultClient: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// `registry` is a normalised registry URL (`normalizeRegistryURL`).
    public init(registry: String, client: HTTPClient = TokenEndpoint.defaultClient) {
        self.registry = registry
        self.client = client
    }

    /// The HTTP client of a credential helper, which the kubelet or a container tool runs for one
    /// answer: it trusts the certificates of `caFile` (PEM) instead of the system's when given, and
    /// a connection that cannot be made (refused, an untrusted certificate) fails the call at once
    /// rather than being tried again until the timeout. Redirects are not followed: a 307 or 308
    /// would send the form (a service-account token, a password, a refresh token) on to whatever
    /// host it names, and tokens go to the configured registry only. The caller shuts it down.
    public static func helperClient(caFile: String?) throws -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(10)
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw CredentialError("cannot read CA certificates from \(caFile): \(error)")
            }
            configuration.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The client of a `berth` step of a build task, which the server runs against its own
    /// listener: the server hands the child `BERTH_CA_FILE` (its certificate file, whose
    /// certificates are trusted in addition to the system's) and `BERTH_CONNECT_ADDRESS` (the
    /// address the registry URL's host is reached at, so the name the certificate holds is the
    /// one verified while the connection goes to the listener). Verification is never turned
    /// off. Nil when neither is set.
    public static func localListenerClient(registry: String?, environment: [String: String]) throws -> HTTPClient? {
        let caFile = environment["BERTH_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let address = environment["BERTH_CONNECT_ADDRESS"].flatMap { $0.isEmpty ? nil : $0 }
        guard caFile != nil || address != nil else { return nil }
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
            } catch {
                throw CredentialError("cannot read CA certificates from \(caFile) (BERTH_CA_FILE): \(error)")
            }
            configuration.tlsConfiguration = tls
        }
        if let address {
            guard let registry, let host = URL(string: registry)?.host else {
                throw CredentialError("BERTH_CONNECT_ADDRESS needs BERTH_REGISTRY")
            }
            configuration.dnsOverride = [host: address]
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public static func formBody(_ fields: [(String, String)]) -> Data {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let text = fields.map { k, v in
            "\(k)=\(v.addingPercentEncoding(withAllowedCharacters: allowed) ?? v)"
        }.joined(separator: "&")
        return Data(text.utf8)
    }

    private func post(_ path: String, _ fields: [(String, String)]) async throws -> (status: Int, body: Data) {
        let url = registry + path
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "berth-cli")
        request.body = .bytes(ByteBuffer(bytes: Self.formBody(fields)))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: Self.timeout)
        } catch {
            throw CredentialError("cannot reach \(url): \(error)")
        }
        let bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: Self.answerLimit)
        } catch {
            throw CredentialError("\(url) answered with a body that is not a token answer (larger than \(Self.answerLimit) bytes or cut off)")
        }
        return (Int(response.status.code), Data(bytes.readableBytesView))
    }

    /// `POST /oauth2/token` with the given form fields.
    public func requestToken(fields: [(String, String)]) async throws -> TokenGrant {
        let r = try await post("/oauth2/token", fields)
        guard r.status == 200 else { throw RegistryAPIError(status: r.status, body: r.body, context: "token request") }
        guard let answer = try? JSONDecoder().decode(TokenResponse.self, from: r.body),
              let access = answer.access_token ?? answer.token
        else { throw CredentialError("the registry's token endpoint answered something that is not a token response") }
        return TokenGrant(access: access, refresh: answer.refresh_token, expiresIn: answer.expires_in)
    }

    /// Logs in with a password, asking for a refresh token (`berth login`, `docker-credential-berth store`).
    public func passwordLogin(username: String, password: String) async throws -> String {
        let grant = try await requestToken(fields: [
            ("grant_type", "password"), ("username", username), ("password", password),
            ("service", serviceName(registry)), ("access_type", "offline"), ("scope", "registry:management:*"),
        ])
        guard let refresh = grant.refresh else { throw CredentialError("the registry did not issue a refresh token") }
        return refresh
    }

    /// A new access token (for `scope`, if any) and a new refresh token for a refresh token.
    public func refresh(_ refreshToken: String, scope: String?) async throws -> TokenGrant {
        var fields = [("grant_type", "refresh_token"), ("refresh_token", refreshToken), ("service", serviceName(registry))]
        if let scope { fields.append(("scope", scope)) }
        return try await requestToken(fields: fields)
    }

    /// `POST /oauth2/exchange`: an OIDC ID token for a Berth refresh token.
    public func exchange(idToken: String) async throws -> String {
        let r = try await post("/oauth2/exchange", [
            ("grant_type", "access_token"), ("access_token", idToken), ("service", serviceName(registry)),
        ])
        guard r.status == 200 else { throw RegistryAPIError(status: r.status, body: r.body, context: "token exchange") }
        guard let answer = try? JSONDecoder().decode(ExchangeResponse.self, from: r.body), !answer.refresh_token.isEmpty else {
            throw CredentialError("the registry's exchange endpoint answered something that is not an exchange response")
        }
        return answer.refresh_token
    }

    /// Refreshes the login stored for `registry`: a new access token (for `scope`) and a new
    /// refresh token, which replaces the stored one (so a login in use stays alive). A refresh the
    /// registry refuses (expired, revoked, the identity changed) asks for `berth login` again.
    public func refreshStoredLogin(scope: String?) async throws -> (grant: TokenGrant, username: String) {
        guard let login = try CLIConfig.load().logins[registry] else {
            throw CredentialError("not logged in to \(registry): run 'berth login \(registry) -u NAME --password-stdin'")
        }
        let grant: TokenGrant
        do {
            grant = try await refresh(login.refreshToken, scope: scope)
        } catch let e as RegistryAPIError where e.status == 401 {
            throw CredentialError("the login to \(registry) as \(login.username) is no longer valid (expired, revoked or the "
                + "identity was changed): run 'berth login \(registry)' again")
        }
        if let newer = grant.refresh, newer != login.refreshToken {
            // Another process may have written the file meanwhile: change only this login, and
            // only if it still holds the token refreshed here.
            try? CLIConfig.modify { config in
                if config.logins[registry]?.refreshToken == login.refreshToken {
                    config.logins[registry]?.refreshToken = newer
                }
            }
        }
        return (grant, login.username)
    }
}

extension CLIConfig {
    /// Reads, changes and writes the file under an exclusive lock (`.config.lock` beside it), so two
    /// processes that each change one login do not drop the other's change.
    public static func modify(_ change: (inout CLIConfig) throws -> Void) throws {
        let dir = directory()
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        let lockPath = dir.appendingPathComponent(".config.lock").path
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CredentialError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw CredentialError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        defer { flock(fd, LOCK_UN) }
        var config = try load()
        try change(&config)
        try config.save()
    }
}

/// Claims of a JWT read without verifying it: only to plan around a token this process was just
/// handed by the registry (when it expires, whose it is), never to trust it.
public struct UnverifiedClaims: Sendable, Equatable {
    public let subject: String?
    public let expiry: Date?
    public let issuedAt: Date?

    public init?(_ jwt: String) {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard jwt.utf8.count <= 65_536, parts.count == 3 else { return nil }
        var text = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        guard let data = Data(base64Encoded: text),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        subject = object["sub"] as? String
        expiry = (object["exp"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) }
        issuedAt = (object["iat"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) }
    }
}
