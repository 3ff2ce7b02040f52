import AsyncHTTPClient
import Foundation
import OCIModel
import NIOCore
import NIOHTTP1
import NIOSSL

/// `HOST[:PORT]/REPO@sha256:...` or `HOST[:PORT]/REPO[:TAG]`.
public struct ArtifactReference: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var repository: String
    public var digest: String?
    public var tag: String?

    public init(_ text: String) throws {
        let ref: ImageReference
        do {
            ref = try ImageReference(parsing: text)
        } catch {
            throw SigningError(error.message)
        }
        guard let host = ref.host else {
            throw SigningError("\(text): the reference must start with the registry host (HOST/REPO@sha256:DIGEST)")
        }
        self.host = host
        repository = ref.repository
        digest = ref.digest?.string
        tag = ref.tag
        if digest == nil, tag == nil { tag = "latest" }
    }

    /// `host/repo`: what trust policy scopes match.
    public var scope: String { "\(host)/\(repository)" }
    public var description: String {
        scope + (digest.map { "@\($0)" } ?? tag.map { ":\($0)" } ?? "")
    }
}

/// A minimal OCI distribution client: enough to resolve, fetch and push signatures.
/// Authenticates with Basic credentials; answers a Bearer challenge by fetching a token with them.
public final class RegistryClient: Sendable {
    public let base: String
    let client: HTTPClient
    let ownsClient: Bool
    let basic: String?
    let token: TokenBox

    final class TokenBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value: String?
        func get() -> String? { lock.lock(); defer { lock.unlock() }; return value }
        func set(_ v: String?) { lock.lock(); value = v; lock.unlock() }
    }

    public static let manifestAccept = [
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    ].joined(separator: ", ")

    public init(host: String, insecure: Bool, caFile: String?, username: String?, password: String?) throws {
        base = (insecure ? "http://" : "https://") + host
        if let username, let password {
            basic = "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        } else {
            basic = nil
        }
        token = TokenBox()
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw SigningError("cannot read CA certificates from \(caFile): \(error)")
            }
            client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            ownsClient = true
        } else {
            client = HTTPClient.shared
            ownsClient = false
        }
    }

    public func shutdown() async {
        if ownsClient { try? await client.shutdown() }
    }

    public struct Response: Sendable {
        public let status: Int
        public let headers: HTTPHeaders
        public let body: Data
    }

    func send(_ method: HTTPMethod, _ pathOrURL: String, headers: [(String, String)] = [], body: Data? = nil,
              limit: Int = 8 << 20) async throws -> Response {
        let first = try await raw(method, pathOrURL, headers: headers, body: body, limit: limit)
        guard first.status == 401, let challenge = first.headers.first(name: "WWW-Authenticate"),
              challenge.lowercased().hasPrefix("bearer") else { return first }
        try await fetchToken(challenge)
        return try await raw(method, pathOrURL, headers: headers, body: body, limit: limit)
    }

    private func raw(_ method: HTTPMethod, _ pathOrURL: String, headers: [(String, String)], body: Data?,
                     limit: Int) async throws -> Response {
        let url = pathOrURL.hasPrefix("http://") || pathOrURL.hasPrefix("https://") ? pathOrURL : base + pathOrURL
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "berth-signing")
        if let t = token.get() {
            request.headers.add(name: "Authorization", value: "Bearer \(t)")
        } else if let basic {
            request.headers.add(name: "Authorization", value: basic)
        }
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
            request.headers.replaceOrAdd(name: "Content-Length", value: String(body.count))
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(60))
        } catch {
            throw SigningError("cannot reach \(url): \(error)")
        }
        let bytes = try await response.body.collect(upTo: limit)
        return Response(status: Int(response.status.code), headers: response.headers, body: Data(bytes.readableBytesView))
    }

    private func fetchToken(_ challenge: String) async throws {
        var params: [String: String] = [:]
        let rest = challenge.dropFirst("bearer".count)
        let pattern = try NSRegularExpression(pattern: #"(\w+)="([^"]*)""#)
        let s = String(rest)
        for m in pattern.matches(in: s, range: NSRange(s.startIndex..., in: s)) {
            if let k = Range(m.range(at: 1), in: s), let v = Range(m.range(at: 2), in: s) { params[String(s[k])] = String(s[v]) }
        }
        guard let realm = params["realm"] else { throw SigningError("the registry's Bearer challenge has no realm") }
        var comps = URLComponents(string: realm)
        var items = comps?.queryItems ?? []
        if let service = params["service"] { items.append(URLQueryItem(name: "service", value: service)) }
        if let scope = params["scope"] { items.append(URLQueryItem(name: "scope", value: scope)) }
        comps?.queryItems = items
        guard let url = comps?.string else { throw SigningError("bad token realm \(realm)") }
        let r = try await raw(.GET, url, headers: [], body: nil, limit: 1 << 20)
        struct T: Decodable { let token: String?; let access_token: String? }
        guard r.status == 200, let t = try? JSONDecoder().decode(T.self, from: r.body), let value = t.token ?? t.access_token else {
            throw SigningError("authentication failed (token endpoint answered HTTP \(r.status))")
        }
        token.set(value)
    }

    static func describe(_ r: Response) -> String {
        let text = String(decoding: r.body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if r.status == 401 { return "HTTP 401 unauthorized (give --username and --password-stdin, or BERTH_USERNAME/BERTH_PASSWORD)" }
        return "HTTP \(r.status)\(text.isEmpty ? "" : ": \(text)")"
    }

    /// Fetches a manifest by tag or digest; verifies the digest when fetching by digest.
    public func manifest(_ repository: String, reference: String) async throws -> (descriptor: Descriptor, body: Data) {
        let r = try await send(.GET, "/v2/\(repository)/manifests/\(reference)", headers: [("Accept", Self.manifestAccept)],
                               limit: 4 << 20)
        guard r.status == 200 else {
            throw SigningError("cannot fetch manifest \(repository):\(reference): \(Self.describe(r))")
        }
        let digest = Digest.compute(r.body).string
        if reference.hasPrefix("sha256:"), digest != reference {
            throw SigningError("the registry answered \(repository)@\(reference) with content of digest \(digest)")
        }
        var mediaType = r.headers.first(name: "Content-Type").map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces) }
        if let json = try? JSONSerialization.jsonObject(with: r.body) as? [String: Any], let mt = json["mediaType"] as? String {
            mediaType = mt
        }
        guard let mediaType, !mediaType.isEmpty else { throw SigningError("the manifest has no media type") }
        return (Descriptor(mediaType: mediaType, digest: digest, size: Int64(r.body.count)), r.body)
    }

    public func blob(_ repository: String, digest: String, limit: Int = 4 << 20) async throws -> Data {
        let r = try await send(.GET, "/v2/\(repository)/blobs/\(digest)", limit: limit)
        guard r.status == 200 else { throw SigningError("cannot fetch blob \(digest): \(Self.describe(r))") }
        guard Digest.compute(r.body).string == digest else { throw SigningError("blob \(digest) does not match its digest") }
        return r.body
    }

    /// Uploads a blob (monolithic: POST then PUT with the digest) unless the repository has it.
    public func pushBlob(_ repository: String, _ data: Data) async throws -> String {
        let digest = Digest.compute(data).string
        let head = try await send(.HEAD, "/v2/\(repository)/blobs/\(digest)")
        if head.status == 200 { return digest }
        let start = try await send(.POST, "/v2/\(repository)/blobs/uploads/", body: Data())
        guard start.status == 202, let location = start.headers.first(name: "Location") else {
            throw SigningError("cannot start a blob upload to \(repository): \(Self.describe(start))")
        }
        let url = location.hasPrefix("http") ? location : base + (location.hasPrefix("/") ? "" : "/") + location
        let sep = url.contains("?") ? "&" : "?"
        let put = try await send(.PUT, url + sep + "digest=" + digest,
                                 headers: [("Content-Type", "application/octet-stream")], body: data)
        guard put.status == 201 else { throw SigningError("cannot upload blob \(digest): \(Self.describe(put))") }
        return digest
    }

    public func pushManifest(_ repository: String, _ data: Data, mediaType: String) async throws -> String {
        let digest = Digest.compute(data).string
        let r = try await send(.PUT, "/v2/\(repository)/manifests/\(digest)", headers: [("Content-Type", mediaType)], body: data)
        guard r.status == 201 else { throw SigningError("cannot push the signature manifest: \(Self.describe(r))") }
        return digest
    }

    /// The descriptors of the Notary signatures that refer to `digest`.
    public func signatures(_ repository: String, digest: String) async throws -> [Descriptor] {
        let at = NotaryMediaType.signatureArtifact.replacingOccurrences(of: "+", with: "%2B")
        let r = try await send(.GET, "/v2/\(repository)/referrers/\(digest)?artifactType=\(at)",
                               headers: [("Accept", "application/vnd.oci.image.index.v1+json")])
        guard r.status == 200 else { throw SigningError("cannot list the referrers of \(digest): \(Self.describe(r))") }
        struct Index: Decodable { let manifests: [Descriptor]? }
        guard let index = try? JSONDecoder().decode(Index.self, from: r.body) else {
            throw SigningError("the referrers answer is not an OCI image index")
        }
        return (index.manifests ?? []).filter { $0.artifactType == NotaryMediaType.signatureArtifact }
    }
}
