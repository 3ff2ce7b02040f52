import Foundation
import OCIModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kubelet's image credential provider protocol, API version `credentialprovider.kubelet.k8s.io/v1`:
/// the kubelet writes one `CredentialProviderRequest` to the plugin's standard input and reads one
/// `CredentialProviderResponse` from its standard output.
public enum KubeletCredentialProvider {
    public static let apiVersion = "credentialprovider.kubelet.k8s.io/v1"
    /// A request is an image name and a service-account token (a JWT of a few KiB) with a few
    /// annotations; anything larger is not one.
    public static let requestLimit = 256 * 1024
    /// Service-account and node tokens are JWTs; the server takes at most 16 KiB.
    public static let tokenLimit = 16 * 1024

    public struct Request: Sendable, Equatable {
        public let image: String
        /// The pod's service-account token, when the kubelet's configuration asks for one
        /// (`tokenAttributes.serviceAccountTokenAudience`).
        public let serviceAccountToken: String?
        public let serviceAccountAnnotations: [String: String]
    }

    public struct AuthConfig: Codable, Sendable, Equatable {
        public let username: String
        public let password: String
    }

    public struct Response: Codable, Sendable, Equatable {
        public var apiVersion = KubeletCredentialProvider.apiVersion
        public var kind = "CredentialProviderResponse"
        /// `Image`, `Registry` or `Global`.
        public var cacheKeyType: String
        /// A Go duration (`2h24m0s`); `0s`: not cached.
        public var cacheDuration: String
        /// Registry match (`host[:port]`) → credentials; empty when the plugin has none for the image.
        public var auth: [String: AuthConfig]
    }

    private struct WireRequest: Decodable {
        let apiVersion: String?
        let kind: String?
        let image: String?
        let serviceAccountToken: String?
        let serviceAccountAnnotations: [String: String]?
    }

    /// Reads a request, refusing what is not one: larger than `requestLimit`, a repeated key, not a
    /// JSON object of the v1 API, no image, a token over `tokenLimit`.
    public static func parse(_ data: Data) throws -> Request {
        guard data.count <= requestLimit else {
            throw CredentialError("the CredentialProviderRequest is larger than \(requestLimit) bytes")
        }
        guard data.contains(where: { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }) else {
            throw CredentialError("no CredentialProviderRequest on standard input")
        }
        do {
            try StrictJSON.checkDuplicateKeys(data, maxDepth: 8)
        } catch {
            throw CredentialError("the CredentialProviderRequest is not valid JSON: \(error)")
        }
        let wire: WireRequest
        do {
            wire = try JSONDecoder().decode(WireRequest.self, from: data)
        } catch {
            throw CredentialError("the CredentialProviderRequest is not a JSON object of the expected shape")
        }
        guard wire.apiVersion == apiVersion else {
            throw CredentialError("the CredentialProviderRequest has apiVersion \(quoted(wire.apiVersion)); "
                + "this provider speaks \(apiVersion) (set apiVersion: \(apiVersion) in the kubelet's CredentialProviderConfig)")
        }
        guard wire.kind == nil || wire.kind == "CredentialProviderRequest" else {
            throw CredentialError("the request has kind \(quoted(wire.kind)), not CredentialProviderRequest")
        }
        guard let image = wire.image, !image.isEmpty else { throw CredentialError("the CredentialProviderRequest names no image") }
        let token = wire.serviceAccountToken.flatMap { $0.isEmpty ? nil : $0 }
        if let token, token.utf8.count > tokenLimit {
            throw CredentialError("the service-account token in the request is larger than \(tokenLimit) bytes")
        }
        return Request(image: image, serviceAccountToken: token, serviceAccountAnnotations: wire.serviceAccountAnnotations ?? [:])
    }

    static func quoted(_ value: String?) -> String {
        guard let value else { return "(none)" }
        let printable = value.prefix(80).unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7f ? String($0) : "?" }.joined()
        return "\"\(printable)\""
    }

    /// The registry host (`host[:port]`) of an image as the kubelet names it; nil for Docker Hub's
    /// short names (`nginx`, `library/nginx`).
    public static func registryHost(of image: String) throws -> String? {
        do {
            return try ImageReference(parsing: image).host?.lowercased()
        } catch {
            throw CredentialError(error.message)
        }
    }

    /// The answer for `request`: for an image of `registry` (a normalised URL) the refresh token
    /// `exchange` gets for the node's or pod's token, cached for less than its lifetime; for any
    /// other image an empty auth map, and `exchange` is never called (no token goes elsewhere).
    public static func respond(to request: Request, registry: String, nodeToken: () throws -> String?,
                               now: Date = Date(),
                               exchange: (String) async throws -> String) async throws -> Response {
        let host = serviceName(registry).lowercased()
        guard try registryHost(of: request.image) == host else {
            return Response(cacheKeyType: "Image", cacheDuration: "0s", auth: [:])
        }
        guard let token = try request.serviceAccountToken ?? nodeToken() else {
            throw CredentialError("the request carries no service-account token and no token file is configured "
                + "(--token-file or BERTH_TOKEN_FILE; or set tokenAttributes.serviceAccountTokenAudience in the kubelet's configuration)")
        }
        let refresh = try await exchange(token)
        guard let expiry = UnverifiedClaims(refresh)?.expiry else {
            throw CredentialError("the registry's token carries no expiry; refusing to guess how long to cache it")
        }
        return Response(cacheKeyType: "Registry", cacheDuration: goDuration(cacheSeconds(lifetime: expiry.timeIntervalSince(now))),
                        auth: [host: AuthConfig(username: refreshTokenUser, password: refresh)])
    }

    /// The longest cache duration given, whatever expiry the registry's token claims: a day.
    public static let maxCacheSeconds = 24 * 3600

    /// How long the kubelet may keep credentials that stay valid for `lifetime` seconds: four
    /// fifths of it, and at least a minute less (0: not cached, for a token about to expire), at
    /// most `maxCacheSeconds` (an `exp` far in the future is no reason to trap or to cache for years).
    public static func cacheSeconds(lifetime: TimeInterval) -> Int {
        guard lifetime.isFinite, lifetime > 0 else { return 0 }
        let seconds = min(lifetime * 0.8, lifetime - 60, Double(maxCacheSeconds))
        return seconds < 1 ? 0 : Int(seconds)
    }

    /// A duration as Go's `time.Duration.String()` writes it (`2h24m0s`, `4m0s`, `30s`, `0s`),
    /// which the kubelet's `metav1.Duration` reads.
    public static func goDuration(_ seconds: Int) -> String {
        guard seconds > 0 else { return "0s" }
        let h = seconds / 3600, m = seconds % 3600 / 60, s = seconds % 60
        if h > 0 { return "\(h)h\(m)m\(s)s" }
        if m > 0 { return "\(m)m\(s)s" }
        return "\(s)s"
    }

    /// The response as the kubelet reads it.
    public static func encode(_ response: Response) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(response)
    }
}

/// Reads at most `limit` bytes from a file descriptor, failing when there are more: a request on
/// standard input cannot make the process hold more than `limit + 64 KiB`.
public func readBounded(fd: Int32, limit: Int, what: String) throws -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw CredentialError("cannot read \(what): \(String(cString: strerror(errno)))")
        }
        if n == 0 { return data }
        data.append(contentsOf: buffer[0..<n])
        if data.count > limit { throw CredentialError("\(what) is larger than \(limit) bytes") }
    }
}

/// Reads a token file (a projected service-account token, kept fresh by the kubelet): a regular
/// file of at most `limit` bytes, without surrounding white space. Its content is never shown.
public func readTokenFile(_ path: String, limit: Int = KubeletCredentialProvider.tokenLimit) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw CredentialError("cannot open the token file \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
        throw CredentialError("the token file \(path) is not a regular file")
    }
    let data = try readBounded(fd: fd, limit: limit, what: "the token file \(path)")
    let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !token.isEmpty else { throw CredentialError("the token file \(path) is empty") }
    return token
}
