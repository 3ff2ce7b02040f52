import Access
import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import OCIModel

/// Credentials for one upstream registry. They live only as long as the client that holds them
/// and are never printed (`description` redacts the password).
public struct UpstreamCredentials: Sendable, CustomStringConvertible {
    public var username: String
    public var password: String
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
    public var description: String { "\(username):<redacted>" }
    var basic: String { "Basic " + Data("\(username):\(password)".utf8).base64EncodedString() }
}

/// Bounds on what an untrusted upstream may make Berth do.
public struct UpstreamLimits: Sendable {
    /// Largest manifest accepted (the registry's own push limit by default).
    public var maxManifestBytes: Int = ManifestParser.maxSize
    /// Largest token-endpoint or referrers answer read.
    public var maxDocumentBytes: Int = 1024 * 1024
    /// Largest blob accepted: by its declared length, and counted while it streams.
    public var maxBlobBytes: Int64 = 10 << 30
    /// Redirects followed for one request.
    public var maxRedirects: Int = 5
    /// Time to connect.
    public var connectTimeout: TimeAmount = .seconds(10)
    /// Time until the head of an answer arrives.
    public var headTimeout: TimeAmount = .seconds(30)
    /// Longest pause while a body streams.
    public var readTimeout: TimeAmount = .seconds(60)
    public init() {}
}

/// Why an upstream request failed. `registryError` is the OCI error the server reports for it.
public struct UpstreamError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable, Equatable {
        /// The upstream wants credentials, or refused the ones given (401).
        case unauthorized
        /// The upstream refused access (403).
        case denied
        /// The repository, manifest or blob does not exist upstream (404).
        case notFound
        /// The upstream is rate limiting (429).
        case rateLimited
        /// A manifest or document larger than the limit.
        case tooLarge
        /// Content whose digest or size is not the one asked for.
        case digestMismatch
        /// A destination the outbound policy refuses (also a redirect or a token realm).
        case refused
        /// Too many redirects, or a redirect without a usable Location.
        case redirects
        /// The upstream could not be reached or timed out.
        case unreachable
        /// The upstream answered something Berth cannot use (5xx, bad JSON, bad media type).
        case badAnswer
    }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { "upstream \(kind.rawValue): \(message)" }

    public var registryError: RegistryError {
        let text = "upstream: " + message
        switch kind {
        case .unauthorized: return RegistryError(.unauthorized, text, status: 502)
        case .denied: return RegistryError(.denied, text, status: 502)
        case .notFound: return RegistryError(.manifestUnknown, text, status: 404)
        case .rateLimited: return RegistryError(.tooManyRequests, text, status: 429)
        case .tooLarge: return RegistryError(.sizeInvalid, text, status: 502)
        case .digestMismatch: return RegistryError(.digestInvalid, text, status: 502)
        case .refused: return RegistryError(.denied, text, status: 400)
        case .redirects, .unreachable, .badAnswer: return RegistryError(.unsupported, text, status: 502)
        }
    }
}

/// A manifest fetched from upstream: its bytes exactly as served, their digest and media type.
public struct UpstreamManifest: Sendable {
    public let digest: Digest
    public let mediaType: String
    public let bytes: [UInt8]

    /// A manifest fetched before (its digest verified then).
    public init(digest: Digest, mediaType: String, bytes: [UInt8]) {
        self.digest = digest
        self.mediaType = mediaType
        self.bytes = bytes
    }
}

/// A client of one upstream OCI registry (Distribution API GETs only) that treats the upstream as
/// untrusted: every destination (the registry, each redirect, the token realm) is checked by the
/// `OutboundPolicy` and contacted at the address checked; redirects are followed at most
/// `maxRedirects` times and never carry Authorization to another origin; manifests are bounded
/// and their digests checked; blobs are hashed while they stream and the stream fails before its
/// end when the digest or size is not the one asked for, so a store fed from it commits nothing.
/// Anonymous, Basic and Docker token (Bearer challenge) authentication.
public final class UpstreamClient: Sendable {
    public let registry: String
    public let scheme: String
    let credentials: UpstreamCredentials?
    let policy: OutboundPolicy
    public let limits: UpstreamLimits
    /// Authorization per repository scope (a token, or Basic once the upstream asked for it).
    private let authorizations = NIOLockedValueBox<[String: String]>([:])
    /// Counted requests, by kind (`manifest`, `blob`, `token`, …): progress and tests.
    private let counters = NIOLockedValueBox<[String: Int]>([:])

    /// `registry` is `host[:port]`; `plainHTTP` speaks http instead of https.
    public init(registry: String, plainHTTP: Bool = false, credentials: UpstreamCredentials? = nil,
                policy: OutboundPolicy = OutboundPolicy(), limits: UpstreamLimits = UpstreamLimits()) throws(UpstreamError) {
        let lower = registry.lowercased()
        guard !lower.isEmpty, lower.count <= 260,
              lower.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) }),
              URL(string: (plainHTTP ? "http://" : "https://") + lower + "/v2/")?.host != nil
        else { throw UpstreamError(.badAnswer, "invalid registry host '\(registry.prefix(100))'") }
        self.registry = lower == "docker.io" ? "registry-1.docker.io" : lower
        self.scheme = plainHTTP ? "http" : "https"
        self.credentials = credentials
        self.policy = policy
        self.limits = limits
    }

    var base: String { "\(scheme)://\(registry)" }

    public func requestCount(_ kind: String) -> Int { counters.withLockedValue { $0[kind] ?? 0 } }

    /// Every manifest media type Berth accepts, in the Accept header of a manifest GET.
    static let manifestAccept = MediaType.manifestTypes.joined(separator: ", ")

    // MARK: manifests

    /// Fetches a manifest by tag or digest. A manifest fetched by digest must have that digest; one
    /// fetched by tag must match the `Docker-Content-Digest` the upstream states, if it states one.
    public func manifest(repository: String, reference: Reference) async throws(UpstreamError) -> UpstreamManifest {
        let url = "\(base)/v2/\(repository)/manifests/\(reference)"
        let (head, bytes) = try await get(url, scope: repository, kind: "manifest", accept: Self.manifestAccept,
                                          limit: limits.maxManifestBytes, what: "manifest")
        let algorithm: Digest.Algorithm
        if case .digest(let d) = reference { algorithm = d.algorithm } else { algorithm = .sha256 }
        let digest = Digest.compute(bytes, algorithm: algorithm)
        if case .digest(let d) = reference, d != digest {
            throw UpstreamError(.digestMismatch, "manifest \(d) was served with content of digest \(digest)")
        }
        if let stated = head.headers.first(name: "Docker-Content-Digest"), let d = try? Digest(parsing: stated),
           d.algorithm == digest.algorithm, d != digest {
            throw UpstreamError(.digestMismatch, "manifest \(reference) states digest \(d) but its content is \(digest)")
        }
        let stated = head.headers.first(name: "Content-Type").map(ManifestParser.normalizeContentType)
        let parsed: ParsedManifest
        do {
            parsed = try ManifestParser.parse(bytes, contentType: stated.flatMap { MediaType.manifestTypes.contains($0) ? $0 : nil })
        } catch {
            throw UpstreamError(.badAnswer, "manifest \(reference): \(error.message)")
        }
        return UpstreamManifest(digest: digest, mediaType: parsed.mediaType, bytes: bytes)
    }

    /// The digest the upstream states for a tag (`Docker-Content-Digest` of a HEAD), nil when it
    /// states none. A HEAD does not count against pull limits where GETs do (Docker Hub); the
    /// digest is the upstream's word, so a caller fetches and verifies the content when it differs
    /// from what it has.
    public func manifestDigest(repository: String, tag: String) async throws(UpstreamError) -> Digest? {
        let url = "\(base)/v2/\(repository)/manifests/\(tag)"
        do {
            return try await withResponse(url, scope: repository, kind: "manifest-head", accept: Self.manifestAccept, method: .HEAD) { response in
                response.headers.first(name: "Docker-Content-Digest").flatMap { try? Digest(parsing: $0) }
            }
        } catch let error as UpstreamError {
            throw error
        } catch {
            throw UpstreamError(.unreachable, "\(error)")
        }
    }

    // MARK: blobs

    /// Streams a blob into `consume`, hashed while read: the sequence throws `digestMismatch`
    /// instead of ending when the bytes are not `digest` (or not `size` bytes, or not the length
    /// the upstream declared), and `tooLarge` past `maxBlobBytes`, so a consumer that stores what
    /// it reads fails and must discard it. The stream's `size` is `size`, else the declared length.
    public func blob<T: Sendable>(repository: String, digest: Digest, size: Int64?,
                                  _ consume: (VerifiedBlobStream) async throws -> T) async throws -> T {
        let url = "\(base)/v2/\(repository)/blobs/\(digest)"
        let limit = limits.maxBlobBytes
        return try await withResponse(url, scope: repository, kind: "blob", accept: nil) { response throws in
            let length = response.headers.first(name: "Content-Length").flatMap(Int64.init)
            if let size, let length, length != size {
                throw UpstreamError(.digestMismatch, "blob \(digest) is \(size) bytes but the upstream sends \(length)")
            }
            if let declared = size ?? length, declared > limit {
                throw UpstreamError(.tooLarge, "blob \(digest) of \(declared) bytes exceeds the limit of \(limit)")
            }
            return try await consume(VerifiedBlobStream(body: response.body, digest: digest, size: size ?? length, limit: limit))
        }
    }

    /// Streams a blob from `offset` on into `consume`, for a copy that resumes where a dropped
    /// connection left it: `offset` 0 is a plain GET; past 0 it asks `Range: bytes=offset-`, and the
    /// piece starts at `offset` only when the upstream answers 206 with `Content-Range: bytes
    /// offset-(total-1)/total` (total the blob's size when known); a 200 is the whole blob again
    /// (`start` 0: the caller starts over), any other 206 is `badAnswer`. The piece is not hashed
    /// (its bytes are part of a whole the caller verifies against `digest` before storing it); it
    /// throws `tooLarge` past `maxBlobBytes` and `digestMismatch` past the size or when it ends
    /// short of it, and a transport failure while it streams is `unreachable`, noted in
    /// `interruption` so the caller knows to resume whatever wrapped the error.
    public func blobPiece<T: Sendable>(repository: String, digest: Digest, size: Int64?, from offset: Int64,
                                       _ consume: (BlobPiece) async throws -> T) async throws -> T {
        let url = "\(base)/v2/\(repository)/blobs/\(digest)"
        let limit = limits.maxBlobBytes
        guard offset >= 0, offset <= limit, size.map({ offset < $0 }) ?? true else {
            throw UpstreamError(.badAnswer, "blob \(digest) cannot resume at byte \(offset)")
        }
        let headers = offset > 0 ? [("Range", "bytes=\(offset)-")] : []
        return try await withResponse(url, scope: repository, kind: offset > 0 ? "blob-range" : "blob", accept: nil,
                                      headers: headers) { response throws in
            let length = response.headers.first(name: "Content-Length").flatMap(Int64.init)
            let start: Int64
            let total: Int64?
            if offset > 0, response.status.code == 206 {
                guard let range = response.headers.first(name: "Content-Range").flatMap(ContentRange.init),
                      range.first == offset, let whole = range.total, range.last == whole - 1,
                      size.map({ $0 == whole }) ?? true, length.map({ $0 == whole - offset }) ?? true
                else {
                    throw UpstreamError(.badAnswer, "blob \(digest): the answer to a range from byte \(offset) does not match it")
                }
                start = offset
                total = whole
            } else if response.status.code == 200 {
                if let size, let length, length != size {
                    throw UpstreamError(.digestMismatch, "blob \(digest) is \(size) bytes but the upstream sends \(length)")
                }
                start = 0
                total = size ?? length
            } else {
                throw UpstreamError(.badAnswer, "blob \(digest) answered HTTP \(response.status.code)")
            }
            if let total, total > limit {
                throw UpstreamError(.tooLarge, "blob \(digest) of \(total) bytes exceeds the limit of \(limit)")
            }
            return try await consume(BlobPiece(body: response.body, digest: digest, start: start, total: total, limit: limit))
        }
    }

    // MARK: referrers

    /// The referrers of a manifest: the referrers API, or the tag-schema fallback
    /// (`<alg>-<hex>` tag holding an index) when the upstream has no referrers API.
    public func referrers(repository: String, subject: Digest) async throws(UpstreamError) -> [Descriptor] {
        struct Index: Decodable { var manifests: [Descriptor]? }
        let url = "\(base)/v2/\(repository)/referrers/\(subject)"
        let bytes: [UInt8]
        do throws(UpstreamError) {
            bytes = try await get(url, scope: repository, kind: "referrers", accept: MediaType.ociIndex,
                                  limit: limits.maxDocumentBytes, what: "referrers list").1
        } catch where error.kind == .notFound {
            // No referrers API: the fallback tag, absent when there are no referrers.
            let tag = "\(subject.algorithm.rawValue)-\(subject.hex)"
            do throws(UpstreamError) {
                bytes = try await get("\(base)/v2/\(repository)/manifests/\(tag)", scope: repository, kind: "referrers",
                                      accept: MediaType.ociIndex, limit: limits.maxDocumentBytes, what: "referrers tag").1
            } catch where error.kind == .notFound {
                return []
            }
        }
        do {
            let index = try JSONDecoder().decode(Index.self, from: Data(bytes))
            return (index.manifests ?? []).filter { (try? Digest(parsing: $0.digest)) != nil && $0.size >= 0 }
        } catch {
            throw UpstreamError(.badAnswer, "the referrers of \(subject) are not an OCI index")
        }
    }

    // MARK: documents

    /// A JSON document of the registry's own API (`path` with its query, from the root, e.g. a Berth
    /// peer's `/api/v1/replication/events?after=0`), read whole up to `limit` bytes. The credentials,
    /// if any, are sent as Basic at once (such an API answers 401 without a token challenge),
    /// to the registry's origin only, like every other request.
    public func document(path: String, limit: Int) async throws(UpstreamError) -> [UInt8] {
        guard path.hasPrefix("/"), !path.hasPrefix("//") else { throw UpstreamError(.badAnswer, "invalid document path") }
        let scope = "(document)"
        if let credentials { authorizations.withLockedValue { $0[scope] = credentials.basic } }
        return try await get(base + path, scope: scope, kind: "document", accept: "application/json", limit: limit, what: "document").1
    }

    // MARK: requests

    /// A GET whose body is read whole, up to `limit` bytes.
    func get(_ url: String, scope: String, kind: String, accept: String?, limit: Int,
             what: String) async throws(UpstreamError) -> (HTTPClientResponse, [UInt8]) {
        do {
            return try await withResponse(url, scope: scope, kind: kind, accept: accept) { response throws in
                if let length = response.headers.first(name: "Content-Length").flatMap(Int.init), length > limit {
                    throw UpstreamError(.tooLarge, "\(what) of \(length) bytes exceeds the limit of \(limit)")
                }
                let body: ByteBuffer
                do {
                    body = try await response.body.collect(upTo: limit)
                } catch is NIOTooManyBytesError {
                    throw UpstreamError(.tooLarge, "\(what) exceeds the limit of \(limit) bytes")
                }
                return (response, Array(body.readableBytesView))
            }
        } catch let error as UpstreamError {
            throw error
        } catch {
            throw UpstreamError(.unreachable, "\(error)")
        }
    }

    /// Sends a GET (authenticating as the upstream asks, following allowed redirects) and hands
    /// the 2xx answer to `body` while its connection is open.
    func withResponse<T: Sendable>(_ url: String, scope: String, kind: String, accept: String?, method: HTTPMethod = .GET,
                                   headers: [(String, String)] = [],
                                   _ body: (HTTPClientResponse) async throws -> T) async throws -> T {
        var retriedAuth = false
        while true {
            counters.withLockedValue { $0[kind, default: 0] += 1 }
            let authorization = authorizations.withLockedValue { $0[scope] }
            let outcome = try await follow(url, accept: accept, method: method, authorization: authorization, headers: headers, body)
            switch outcome {
            case .done(let value):
                return value
            case .challenge(let challenge):
                // One fresh authorization per request: a second 401 is the upstream's refusal.
                guard !retriedAuth else { throw UpstreamError(.unauthorized, "\(kind) refused: credentials not accepted") }
                retriedAuth = true
                let fresh = try await authorize(challenge, scope: scope)
                authorizations.withLockedValue { $0[scope] = fresh }
            }
        }
    }

    enum Outcome<T: Sendable>: Sendable {
        case done(T)
        case challenge(String)
    }

    /// One request and its redirects.
    private func follow<T: Sendable>(_ first: String, accept: String?, method: HTTPMethod, authorization: String?,
                                     headers: [(String, String)],
                                     _ body: (HTTPClientResponse) async throws -> T) async throws -> Outcome<T> {
        guard let origin = OutboundPolicy.origin(of: first) else { throw UpstreamError(.badAnswer, "invalid URL") }
        var url = first
        var visited: Set<String> = []
        for hop in 0...limits.maxRedirects {
            let destination: OutboundPolicy.Destination
            do {
                destination = try await policy.check(url)
            } catch {
                throw UpstreamError(.refused, hop == 0 ? error.message : "redirect refused: \(error.message)")
            }
            var request = HTTPClientRequest(url: url)
            request.method = method
            if let accept { request.headers.add(name: "Accept", value: accept) }
            request.headers.add(name: "User-Agent", value: "berth-upstream")
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            // Authorization stays with the registry's origin: a redirect elsewhere (a CDN, a
            // presigned URL) carries none.
            let sameOrigin = destination.scheme == origin.scheme && destination.host == origin.host && destination.port == origin.port
            if let authorization, sameOrigin { request.headers.add(name: "Authorization", value: authorization) }
            let client = makeClient(url: url, destination: destination)
            do {
                let response: HTTPClientResponse
                do {
                    response = try await client.execute(request, timeout: limits.headTimeout)
                } catch {
                    throw UpstreamError(.unreachable, "\(destination.host):\(destination.port): \(Self.describe(error))")
                }
                let status = Int(response.status.code)
                if (300..<400).contains(status), status != 304 {
                    guard let location = response.headers.first(name: "Location"),
                          let next = URL(string: location, relativeTo: URL(string: url))?.absoluteURL.absoluteString
                    else { throw UpstreamError(.redirects, "redirect (\(status)) without a usable Location") }
                    guard visited.insert(url).inserted, !visited.contains(next) else {
                        throw UpstreamError(.redirects, "redirect loop at \(Self.redact(next))")
                    }
                    try? await client.shutdown()
                    url = next
                    continue
                }
                if status == 401, sameOrigin, let challenge = response.headers.first(name: "WWW-Authenticate") {
                    try? await client.shutdown()
                    return .challenge(challenge)
                }
                guard (200..<300).contains(status) else {
                    let retryAfter = response.headers.first(name: "Retry-After")
                    try? await client.shutdown()
                    throw Self.failure(status: status, retryAfter: retryAfter, url: url)
                }
                let value = try await body(response)
                try? await client.shutdown()
                return .done(value)
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
        throw UpstreamError(.redirects, "more than \(limits.maxRedirects) redirects")
    }

    private func makeClient(url: String, destination: OutboundPolicy.Destination) -> HTTPClient {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: limits.connectTimeout, read: limits.readTimeout)
        // Connect to the address the policy checked (the Host header and TLS name stay the URL's).
        if let written = URL(string: url)?.host, IPAddress(written.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))) == nil {
            configuration.dnsOverride = [written: destination.address.description]
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static func failure(status: Int, retryAfter: String?, url: String) -> UpstreamError {
        let path = redact(url)
        switch status {
        case 401: return UpstreamError(.unauthorized, "401 Unauthorized for \(path)")
        case 403: return UpstreamError(.denied, "403 Forbidden for \(path)")
        case 404: return UpstreamError(.notFound, "404 Not Found: \(path)")
        case 429: return UpstreamError(.rateLimited, "429 Too Many Requests for \(path)" + (retryAfter.map { " (retry after \($0.prefix(40)))" } ?? ""))
        default: return UpstreamError(.badAnswer, "HTTP \(status) for \(path)")
        }
    }

    /// A URL without its query (presigned URLs carry credentials there).
    static func redact(_ url: String) -> String {
        String((url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url).prefix(300))
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError {
            if e == .deadlineExceeded || e == .readTimeout { return "timed out" }
            if e == .connectTimeout { return "connect timed out" }
        }
        return String("\(error)".prefix(200))
    }

    // MARK: authentication

    /// Authorization for a challenge: Basic credentials, or a token from the Bearer realm (checked
    /// by the outbound policy like every other destination).
    func authorize(_ challenge: String, scope repository: String) async throws(UpstreamError) -> String {
        guard let parsed = Challenge(challenge) else {
            throw UpstreamError(.unauthorized, "unsupported authentication challenge")
        }
        switch parsed.scheme {
        case "basic":
            guard let credentials else { throw UpstreamError(.unauthorized, "the upstream wants credentials (Basic)") }
            return credentials.basic
        case "bearer":
            guard let realm = parsed.parameters["realm"], let realmOrigin = OutboundPolicy.origin(of: realm) else {
                throw UpstreamError(.unauthorized, "Bearer challenge without a usable realm")
            }
            if scheme == "https", realmOrigin.scheme != "https", credentials != nil {
                throw UpstreamError(.refused, "token realm \(Self.redact(realm)) is not https; credentials are not sent in the clear")
            }
            // Over https the realm is named by the upstream TLS authenticated, as docker trusts it
            // (registry-1.docker.io names auth.docker.io). Over plain http anyone on the path can
            // rewrite the challenge, so credentials go to the upstream's own origin only.
            if scheme == "http", credentials != nil,
               let own = OutboundPolicy.origin(of: base + "/"), own.host != realmOrigin.host || own.port != realmOrigin.port {
                throw UpstreamError(.refused, "token realm \(Self.redact(realm)) is on another host than the plain-http upstream; credentials are sent only to the upstream itself")
            }
            var components = URLComponents(string: realm)
            var query = components?.queryItems ?? []
            if let service = parsed.parameters["service"] { query.append(URLQueryItem(name: "service", value: service)) }
            query.append(URLQueryItem(name: "scope", value: "repository:\(repository):pull"))
            components?.queryItems = query
            guard let url = components?.url?.absoluteString else { throw UpstreamError(.unauthorized, "invalid realm") }
            let destination: OutboundPolicy.Destination
            do {
                destination = try await policy.check(url)
            } catch {
                throw UpstreamError(.refused, "token realm refused: \(error.message)")
            }
            counters.withLockedValue { $0["token", default: 0] += 1 }
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "User-Agent", value: "berth-upstream")
            if let credentials { request.headers.add(name: "Authorization", value: credentials.basic) }
            let client = makeClient(url: url, destination: destination)
            let status: Int
            let body: ByteBuffer
            do {
                let response = try await client.execute(request, timeout: limits.headTimeout)
                status = Int(response.status.code)
                body = try await response.body.collect(upTo: limits.maxDocumentBytes)
                try? await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw UpstreamError(.unreachable, "token realm \(destination.host): \(Self.describe(error))")
            }
            guard status == 200 else {
                if status == 401 || status == 403 { throw UpstreamError(.unauthorized, "the token realm refused the credentials (\(status))") }
                if status == 429 { throw UpstreamError(.rateLimited, "the token realm is rate limiting") }
                throw UpstreamError(.badAnswer, "the token realm answered \(status)")
            }
            struct TokenAnswer: Decodable { var token: String?; var access_token: String? }
            guard let answer = try? JSONDecoder().decode(TokenAnswer.self, from: Data(body.readableBytesView)),
                  let token = answer.token ?? answer.access_token, !token.isEmpty, token.count <= 16 * 1024,
                  token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
            else { throw UpstreamError(.badAnswer, "the token realm's answer has no token") }
            return "Bearer " + token
        default:
            throw UpstreamError(.unauthorized, "unsupported authentication scheme '\(parsed.scheme.prefix(20))'")
        }
    }
}

/// `Scheme key="value", key=value`: a WWW-Authenticate challenge (one of them).
struct Challenge {
    var scheme: String
    var parameters: [String: String] = [:]

    init?(_ header: String) {
        let text = header.trimmingCharacters(in: .whitespaces)
        guard text.count <= 4096 else { return nil }
        let schemeEnd = text.firstIndex(of: " ") ?? text.endIndex
        scheme = text[..<schemeEnd].lowercased()
        guard !scheme.isEmpty else { return nil }
        var rest = text[schemeEnd...].drop { $0 == " " }
        while !rest.isEmpty {
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                var end = rest.endIndex
                for i in rest.indices {
                    let c = rest[i]
                    if escaped { value.append(c); escaped = false; continue }
                    if c == "\\" { escaped = true; continue }
                    if c == "\"" { end = i; break }
                    value.append(c)
                }
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[rest.endIndex...]
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimmingCharacters(in: .whitespaces)
                rest = rest[end...]
            }
            if parameters[key] == nil { parameters[key] = value }
            rest = rest.drop { $0 == "," || $0 == " " }
        }
    }
}

/// A blob's body, hashed while it is read: it ends only when every byte was read and they have the
/// expected digest (and size); otherwise it throws `UpstreamError.digestMismatch`.
public struct VerifiedBlobStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let body: HTTPClientResponse.Body
    public let digest: Digest
    /// The blob's length: the one asked for, else the one the upstream declared; nil when unknown.
    public let size: Int64?
    let limit: Int64

    public struct AsyncIterator: AsyncIteratorProtocol {
        var inner: HTTPClientResponse.Body.AsyncIterator
        var hasher: DigestHasher
        var count: Int64 = 0
        let digest: Digest
        let size: Int64?
        let limit: Int64

        public mutating func next() async throws -> ByteBuffer? {
            let read: ByteBuffer?
            do {
                read = try await inner.next()
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                // A transport failure while the body streams is the upstream's (`unreachable`), as
                // for a `BlobPiece`: a reader tells it from its own failures by the type.
                throw UpstreamError(.unreachable, "blob \(digest): connection lost after \(count) bytes: \(UpstreamClient.describe(error))")
            }
            if let chunk = read {
                count += Int64(chunk.readableBytes)
                if count > limit {
                    throw UpstreamError(.tooLarge, "blob \(digest) exceeds the limit of \(limit) bytes")
                }
                if let size, count > size {
                    throw UpstreamError(.digestMismatch, "blob \(digest) is longer than its \(size) bytes")
                }
                chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                return chunk
            }
            if let size, count != size {
                throw UpstreamError(.digestMismatch, "blob \(digest) ended after \(count) of \(size) bytes")
            }
            let computed = hasher.finalize()
            guard computed == digest else {
                throw UpstreamError(.digestMismatch, "blob \(digest) was served with content of digest \(computed)")
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(inner: body.makeAsyncIterator(), hasher: DigestHasher(digest.algorithm), digest: digest, size: size, limit: limit)
    }
}

/// `Content-Range: bytes first-last/total` (total `*` when unknown).
struct ContentRange: Equatable {
    let first: Int64
    let last: Int64
    let total: Int64?

    init?(_ header: String) {
        let text = header.trimmingCharacters(in: .whitespaces)
        guard text.hasPrefix("bytes "), text.count < 100 else { return nil }
        let parts = text.dropFirst(6).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let bounds = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int64(bounds[0]), let last = Int64(bounds[1]), first >= 0, last >= first else { return nil }
        if parts[1] == "*" {
            total = nil
        } else {
            guard let whole = Int64(parts[1]), whole > last else { return nil }
            total = whole
        }
        self.first = first
        self.last = last
    }
}

/// One piece of a blob, from `start` to its end, as one response streams it (`UpstreamClient.blobPiece`).
/// Not hashed: the whole the pieces make is verified by whoever joins them. It throws `tooLarge`
/// past the limit and `digestMismatch` past the blob's total or when it ends short of it; a
/// transport failure is thrown as `unreachable` and kept in `interruption`.
public struct BlobPiece: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let body: HTTPClientResponse.Body
    public let digest: Digest
    /// Where the piece starts in the blob: the offset asked for, or 0 when the upstream sent the
    /// whole blob instead.
    public let start: Int64
    /// The blob's whole length when known.
    public let total: Int64?
    let limit: Int64
    /// Bytes of this piece read so far, and the transport failure that cut it, if one did.
    private let state = NIOLockedValueBox<(read: Int64, interruption: UpstreamError?)>((0, nil))

    init(body: HTTPClientResponse.Body, digest: Digest, start: Int64, total: Int64?, limit: Int64) {
        self.body = body
        self.digest = digest
        self.start = start
        self.total = total
        self.limit = limit
    }

    public var bytesRead: Int64 { state.withLockedValue { $0.read } }
    public var interruption: UpstreamError? { state.withLockedValue { $0.interruption } }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var inner: HTTPClientResponse.Body.AsyncIterator
        let piece: BlobPiece
        var position: Int64

        public mutating func next() async throws -> ByteBuffer? {
            let chunk: ByteBuffer?
            do {
                chunk = try await inner.next()
            } catch {
                let cut = UpstreamError(.unreachable, "blob \(piece.digest): connection lost at byte \(position): \(UpstreamClient.describe(error))")
                piece.state.withLockedValue { $0.interruption = cut }
                throw cut
            }
            guard let chunk else {
                if let total = piece.total, position != total {
                    throw UpstreamError(.digestMismatch, "blob \(piece.digest) ended after \(position) of \(total) bytes")
                }
                return nil
            }
            position += Int64(chunk.readableBytes)
            if position > piece.limit {
                throw UpstreamError(.tooLarge, "blob \(piece.digest) exceeds the limit of \(piece.limit) bytes")
            }
            if let total = piece.total, position > total {
                throw UpstreamError(.digestMismatch, "blob \(piece.digest) is longer than its \(total) bytes")
            }
            let read = Int64(chunk.readableBytes)
            piece.state.withLockedValue { $0.read += read }
            return chunk
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(inner: body.makeAsyncIterator(), piece: self, position: start)
    }
}
