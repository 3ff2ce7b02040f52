import ArgumentParser
import AsyncHTTPClient
import BerthAPIContract
import BerthCredentials
import Foundation
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure of a management command: printed as one line on standard error, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Runs a command body, turning every failure into one line on standard error and a non-zero exit.
func runCLI(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CLIError {
        printError(e.description)
        throw ExitCode.failure
    } catch let e as HTTPClientError {
        printError("cannot reach the registry: \(e)")
        throw ExitCode.failure
    } catch {
        printError("\(error)")
        throw ExitCode.failure
    }
}

func printError(_ message: String) {
    let line = "berth: error: " + message.replacingOccurrences(of: "\n", with: " ") + "\n"
    FileHandle.standardError.write(Data(line.utf8))
}

func printWarning(_ message: String) {
    FileHandle.standardError.write(Data("berth: warning: \(message)\n".utf8))
}

// MARK: - stored login

// The stored login (`CLIConfig`), `normalizeRegistryURL` and `serviceName` live in
// `BerthCredentials`, shared with `docker-credential-berth`.

// MARK: - HTTP

/// A JSON-over-HTTP client for one registry's management API, authenticated with a Bearer
/// access token (scope `registry:management:*`) obtained from a stored refresh token or from
/// `BERTH_USERNAME` / `BERTH_PASSWORD`.
struct ManagementClient: Sendable {
    let registry: String
    let accessToken: String

    struct Response: Sendable {
        let status: Int
        let body: Data
    }

    static let timeout: TimeAmount = .seconds(60)

    static func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [], body: Data? = nil) async throws -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "User-Agent", value: "berth-cli")
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            // The token client's: no redirect is followed. `/api/v1` never redirects, and a followed
            // 307 or 308 would make another host's answer (and a body re-sent to it) the registry's.
            response = try await httpClient().execute(request, timeout: timeout)
        } catch {
            throw CLIError("cannot reach \(url): \(error)")
        }
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return Response(status: Int(response.status.code), body: Data(bytes.readableBytesView))
    }

    /// The HTTP client of every call: `TokenEndpoint.defaultClient`, or in a build task's `berth`
    /// step the one the server's `BERTH_CA_FILE` / `BERTH_CONNECT_ADDRESS` describe (its own
    /// listener, its certificate trusted; `TokenEndpoint.localListenerClient`).
    static func httpClient() throws -> HTTPClient {
        switch localClient {
        case .success(let client?): return client
        case .success(nil): return TokenEndpoint.defaultClient
        case .failure(let error): throw error
        }
    }

    private static let localClient: Result<HTTPClient?, CLIError> = {
        let env = ProcessInfo.processInfo.environment
        do {
            return .success(try TokenEndpoint.localListenerClient(registry: env["BERTH_REGISTRY"], environment: env))
        } catch {
            return .failure(CLIError("\(error)"))
        }
    }()

    /// `POST /oauth2/token`; returns (access token, refresh token).
    static func requestToken(registry: String, fields: [(String, String)]) async throws -> (access: String, refresh: String?) {
        let grant = try await TokenEndpoint(registry: registry, client: httpClient()).requestToken(fields: fields)
        return (grant.access, grant.refresh)
    }

    /// Logs in with a password, asking for a refresh token (used by `berth login`).
    static func passwordLogin(registry: String, username: String, password: String) async throws -> String {
        try await TokenEndpoint(registry: registry, client: httpClient()).passwordLogin(username: username, password: password)
    }

    /// Resolves the registry and credentials and obtains an access token for the management API.
    static func connect(_ options: ClientOptions) async throws -> ManagementClient {
        let env = ProcessInfo.processInfo.environment
        let config = try CLIConfig.load()
        let raw = options.registry ?? env["BERTH_REGISTRY"].flatMap { $0.isEmpty ? nil : $0 } ?? config.registry
        guard let raw else {
            throw CLIError("not logged in to any registry: run 'berth login URL -u NAME --password-stdin', "
                + "or pass --registry URL / set BERTH_REGISTRY with BERTH_USERNAME and BERTH_PASSWORD")
        }
        let registry = try normalizeRegistryURL(raw)
        let scope = "registry:management:*"
        if let user = env["BERTH_USERNAME"], !user.isEmpty, let password = env["BERTH_PASSWORD"] {
            let (access, _) = try await requestToken(registry: registry, fields: [
                ("grant_type", "password"), ("username", user), ("password", password),
                ("service", serviceName(registry)), ("scope", scope),
            ])
            return ManagementClient(registry: registry, accessToken: access)
        }
        guard config.logins[registry] != nil else {
            throw CLIError("not logged in to \(registry): run 'berth login \(registry) -u NAME --password-stdin' "
                + "(or set BERTH_USERNAME and BERTH_PASSWORD)")
        }
        // Keeps the login alive: the newer refresh token the registry hands back is stored.
        let (answer, _) = try await TokenEndpoint(registry: registry, client: httpClient()).refreshStoredLogin(scope: scope)
        return ManagementClient(registry: registry, accessToken: answer.access)
    }

    /// Calls `/api/v1/<path>` and returns the answer's bytes (empty for no body).
    private func exchange(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: Data?,
                          contentType: String = "application/json") async throws -> Data {
        var url = registry + "/api/v1/" + path
        if !query.isEmpty {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            url += "?" + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }
                .joined(separator: "&")
        }
        var headers = [("Authorization", "Bearer \(accessToken)"), ("Accept", "application/json")]
        if body != nil { headers.append(("Content-Type", contentType)) }
        let r = try await Self.send(method, url, headers: headers, body: body)
        guard (200..<300).contains(r.status) else { throw Self.apiError(r, context: nil) }
        return r.body
    }

    /// Bodies of the contract (`BerthAPIContract`) encoded as the server decodes them (absent
    /// optionals left out, dates in RFC 3339).
    static func encode(_ body: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(body)
    }

    /// Reads an answer as the contract's `Answer` and hands it to the printers as the JSON of
    /// that value: only what the contract holds is shown, and an answer that does not match it
    /// is an error rather than a partly printed table.
    private func read<Answer: Codable>(_ data: Data, as answer: Answer.Type, _ method: HTTPMethod, _ path: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Self.encode(decode(data, as: answer, method, path)))
    }

    private func decode<Answer: Decodable>(_ data: Data, as answer: Answer.Type, _ method: HTTPMethod, _ path: String) throws -> Answer {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(Answer.self, from: data)
        } catch {
            throw CLIError("the registry answered \(method.rawValue) /api/v1/\(path) with a body this berth does not understand")
        }
    }

    /// Calls `/api/v1/<path>` without a body and returns the answer as the contract's `Answer`.
    func value<Answer: Decodable>(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [],
                                  answer: Answer.Type) async throws -> Answer {
        try decode(try await exchange(method, path, query: query, body: nil), as: answer, method, path)
    }

    /// Calls `/api/v1/<path>` without a body; the answer is read as `Answer`.
    @discardableResult
    func call<Answer: Codable>(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [],
                               answer: Answer.Type) async throws -> JSONValue {
        try read(try await exchange(method, path, query: query, body: nil), as: answer, method, path)
    }

    /// Calls `/api/v1/<path>` with a request body of the contract; the answer is read as `Answer`.
    @discardableResult
    func call<Answer: Codable>(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], sending body: some Encodable,
                               answer: Answer.Type) async throws -> JSONValue {
        try read(try await exchange(method, path, query: query, body: Self.encode(body)), as: answer, method, path)
    }

    /// Calls `/api/v1/<path>` with a body that is not JSON (a build context's tar stream); the
    /// answer is read as `Answer`.
    @discardableResult
    func call<Answer: Codable>(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], contentType: String, body: Data,
                               answer: Answer.Type) async throws -> JSONValue {
        try read(try await exchange(method, path, query: query, body: body, contentType: contentType), as: answer, method, path)
    }

    /// Calls `/api/v1/<path>` for an answer that is text (a run's log).
    func text(_ path: String, query: [(String, String)] = []) async throws -> Data {
        try await exchange(.GET, path, query: query, body: nil)
    }

    /// Calls `/api/v1/<path>` where success has no body (204).
    func call(_ method: HTTPMethod, _ path: String, query: [(String, String)] = []) async throws {
        _ = try await exchange(method, path, query: query, body: nil)
    }

    typealias APIError = RegistryAPIError

    /// Reads either error envelope: `{"error":{code,message}}` (management API) or the OCI
    /// `{"errors":[{code,message}]}` (401/403 from the access layer).
    static func apiError(_ r: Response, context: String?) -> any Error {
        RegistryAPIError(status: r.status, body: r.body, context: context)
    }
}

/// Reads a secret from standard input (`--password-stdin`): all of it, without the final line break.
func readPasswordFromStdin() throws -> String {
    var data = Data()
    while let chunk = try FileHandle.standardInput.read(upToCount: 65_536), !chunk.isEmpty {
        data.append(chunk)
        if data.count > 1 << 20 { throw CLIError("the password on standard input is too long") }
    }
    var text = String(decoding: data, as: UTF8.self)
    while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
    guard !text.isEmpty else { throw CLIError("no password on standard input") }
    return text
}

func promptPassword(_ prompt: String) throws -> String {
    guard isatty(STDIN_FILENO) == 1, let raw = getpass(prompt) else {
        throw CLIError("no password given: use --password-stdin (e.g. echo \"$PASSWORD\" | berth login URL -u NAME --password-stdin)")
    }
    let value = String(cString: raw)
    guard !value.isEmpty else { throw CLIError("empty password") }
    return value
}
