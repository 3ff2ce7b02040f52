import AsyncHTTPClient
import Foundation
import OCIModel

/// The docker credential helper protocol (`docker-credential-berth get|store|erase|list`), backed
/// by the logins of `berth login` (`CLIConfig`): `store` logs in and keeps only a refresh token,
/// `get` hands out a freshly issued refresh token (the stored one is replaced by it, which keeps
/// the login alive), never a password.
public enum DockerCredentialHelper {
    /// What a helper answers for a server it has nothing for: docker, podman and skopeo recognise
    /// this text and go on without credentials.
    public static let notFound = "credentials not found in native keychain"
    /// A server URL or a credentials object is small; anything larger is not one.
    public static let inputLimit = 64 * 1024

    /// The JSON of `store` and of `get`'s answer.
    public struct Credentials: Codable, Sendable, Equatable {
        public let ServerURL: String
        public let Username: String
        public let Secret: String

        public init(ServerURL: String, Username: String, Secret: String) {
            self.ServerURL = ServerURL
            self.Username = Username
            self.Secret = Secret
        }
    }

    /// A failure of one call; `description` is what the helper prints on standard output, which
    /// is where the protocol's clients read a helper's error.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public let description: String
        public static let notFound = Failure(description: DockerCredentialHelper.notFound)
    }

    /// `host[:port]` of a server URL as clients pass it: `host:port`, `https://host:port`,
    /// `http://host:port/v2/`; lower-cased.
    public static func host(ofServerURL raw: String) throws -> String {
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty, text.utf8.count <= 2048 else { throw Failure(description: "no server URL on standard input") }
        var rest = Substring(text)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard !rest.isEmpty, !rest.contains("@"),
              rest.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) })
        else { throw Failure(description: "\(KubeletCredentialProvider.quoted(text)) is not a registry server URL") }
        return rest.lowercased()
    }

    /// The registry URL a server URL stands for, as `berth login` stores it: its scheme when it has
    /// one (else https, or http for loopback), host and port, no path.
    public static func registryURL(ofServerURL raw: String) throws -> String {
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        let host = try host(ofServerURL: text)
        if let scheme = text.range(of: "://") {
            let name = text[..<scheme.lowerBound].lowercased()
            guard name == "http" || name == "https" else { throw Failure(description: "the server URL's scheme must be http or https") }
            return try normalizeRegistryURL(name + "://" + host)
        }
        return try normalizeRegistryURL(host)
    }

    static func decodeCredentials(_ input: Data) throws -> Credentials {
        guard input.count <= inputLimit else { throw Failure(description: "the credentials are larger than \(inputLimit) bytes") }
        do {
            try StrictJSON.checkDuplicateKeys(input, maxDepth: 4)
            return try JSONDecoder().decode(Credentials.self, from: input)
        } catch {
            throw Failure(description: "store expects {\"ServerURL\",\"Username\",\"Secret\"} as JSON on standard input")
        }
    }

    /// Runs one command with its standard input; returns what goes to standard output.
    public static func run(_ command: String, input: Data, http: HTTPClient = .shared) async throws -> Data {
        switch command {
        case "get": return try await get(String(decoding: input.prefix(inputLimit + 1), as: UTF8.self), http: http)
        case "store": try await store(decodeCredentials(input), http: http); return Data()
        case "erase": try erase(String(decoding: input.prefix(inputLimit + 1), as: UTF8.self)); return Data()
        case "list": return try list()
        default: throw Failure(description: "unknown command \(KubeletCredentialProvider.quoted(command)): use get, store, erase or list")
        }
    }

    static func get(_ serverURL: String, http: HTTPClient) async throws -> Data {
        let host = try host(ofServerURL: serverURL)
        guard let (registry, _) = try CLIConfig.load().login(host: host) else { throw Failure.notFound }
        let (grant, _) = try await TokenEndpoint(registry: registry, client: http).refreshStoredLogin(scope: nil)
        guard let refresh = grant.refresh else { throw Failure(description: "the registry did not issue a refresh token") }
        let answer = Credentials(ServerURL: serverURL.trimmingCharacters(in: .whitespacesAndNewlines),
                                 Username: refreshTokenUser, Secret: refresh)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(answer)
    }

    /// `docker login` through the helper: a password is exchanged for a refresh token at once and
    /// only that is written; a refresh token (user `<token>`, the identity token docker keeps, or
    /// the well-known refresh-token user) is checked by refreshing it.
    static func store(_ credentials: Credentials, http: HTTPClient) async throws {
        let registry = try registryURL(ofServerURL: credentials.ServerURL)
        guard !credentials.Username.isEmpty, !credentials.Secret.isEmpty else {
            throw Failure(description: "store needs a Username and a Secret")
        }
        let endpoint = TokenEndpoint(registry: registry, client: http)
        let login: CLIConfig.Login
        if credentials.Username == "<token>" || credentials.Username == refreshTokenUser {
            let grant = try await endpoint.refresh(credentials.Secret, scope: nil)
            guard let refresh = grant.refresh else { throw Failure(description: "the registry did not issue a refresh token") }
            let subject = UnverifiedClaims(refresh)?.subject ?? "token"
            let name = subject.split(separator: ":", maxSplits: 1).last.map(String.init) ?? subject
            login = .init(username: name, refreshToken: refresh)
        } else {
            login = .init(username: credentials.Username,
                          refreshToken: try await endpoint.passwordLogin(username: credentials.Username, password: credentials.Secret))
        }
        try CLIConfig.modify { config in
            config.logins[registry] = login
            if config.registry == nil { config.registry = registry }
        }
    }

    static func erase(_ serverURL: String) throws {
        let host = try host(ofServerURL: serverURL)
        guard try CLIConfig.load().login(host: host) != nil else { throw Failure.notFound }
        try CLIConfig.modify { config in
            for url in config.logins.keys where serviceName(url).lowercased() == host {
                config.logins.removeValue(forKey: url)
                if config.registry == url { config.registry = config.logins.keys.sorted().first }
            }
        }
    }

    /// Server URL → user name of every stored login.
    static func list() throws -> Data {
        let logins = try CLIConfig.load().logins
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(logins.mapValues(\.username))
    }
}
