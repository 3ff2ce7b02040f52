import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// What went wrong talking to the object store. Descriptions name the operation and S3's error
/// code, never a credential.
public enum S3Error: Error, Sendable, Equatable, CustomStringConvertible {
    /// NoSuchKey, NoSuchBucket, NoSuchUpload (or a 404 without a body).
    case notFound(code: String)
    /// The store recomputed our signature and it differs: the secret key is wrong (or the clock,
    /// or a proxy rewrote the request).
    case signatureMismatch
    /// The store does not know the access key.
    case invalidAccessKey
    /// Authenticated but not allowed.
    case accessDenied(code: String)
    /// A conditional request's condition did not hold (an object that must be new exists).
    case preconditionFailed
    /// Any other error answer, after retries where retrying made sense.
    case service(status: Int, code: String, operation: String)
    /// An answer we cannot read (malformed or truncated XML, a missing field).
    case malformedResponse(String)
    /// The configuration cannot work (endpoint, bucket, credentials).
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .notFound(let code): return "S3: not found (\(code))"
        case .signatureMismatch:
            return "S3: the object store rejected our request signature (SignatureDoesNotMatch): check the secret key, and the clock"
        case .invalidAccessKey: return "S3: the object store does not know the access key (InvalidAccessKeyId)"
        case .accessDenied(let code): return "S3: access denied (\(code)): check the credentials' permissions on the bucket"
        case .preconditionFailed: return "S3: precondition failed"
        case .service(let status, let code, let operation): return "S3: \(operation) failed with HTTP \(status) \(code)"
        case .malformedResponse(let reason): return "S3: unreadable answer: \(reason)"
        case .invalidConfiguration(let reason): return "S3: invalid configuration: \(reason)"
        }
    }
}

/// Where and as whom to reach an S3-compatible store, with path-style addressing
/// (`<endpoint>/<bucket>/<key>`), which every S3-compatible store answers.
public struct S3Location: Sendable {
    public let scheme: String
    public let host: String
    public let port: Int
    public let region: String
    public let bucket: String
    public let credentials: S3Credentials

    /// `endpoint` is `http(s)://host[:port]` with no path, query or user info.
    public init(endpoint: String, region: String, bucket: String, credentials: S3Credentials) throws(S3Error) {
        guard let url = URLComponents(string: endpoint), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host, !host.isEmpty
        else { throw .invalidConfiguration("endpoint '\(endpoint)' is not an http(s)://host[:port] URL") }
        guard url.path.isEmpty || url.path == "/", url.query == nil, url.fragment == nil, url.user == nil, url.password == nil else {
            throw .invalidConfiguration("endpoint '\(endpoint)' must have no path, query or user info (the bucket is a setting of its own)")
        }
        // Bucket names as S3 allows them: 3-63 of a-z 0-9 . - , starting and ending with a letter or digit.
        let b = Array(bucket.utf8)
        guard (3...63).contains(b.count),
              b.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D }),
              b.first != 0x2E, b.first != 0x2D, b.last != 0x2E, b.last != 0x2D
        else { throw .invalidConfiguration("bucket '\(bucket)' is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')") }
        guard !region.isEmpty, region.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }) else {
            throw .invalidConfiguration("region '\(region)' is not a region name (a-z, 0-9, '-')")
        }
        guard !credentials.accessKey.isEmpty, !credentials.secretKey.isEmpty else {
            throw .invalidConfiguration("the access key and the secret key must not be empty")
        }
        self.scheme = scheme
        self.host = host
        self.port = url.port ?? (scheme == "https" ? 443 : 80)
        self.region = region
        self.bucket = bucket
        self.credentials = credentials
    }

    /// The Host header: the port only when it is not the scheme's default.
    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return (scheme == "https" && port == 443) || (scheme == "http" && port == 80) ? h : "\(h):\(port)"
    }

    var base: String { "\(scheme)://\(hostHeader)" }
}

public struct S3Object: Sendable, Equatable {
    public let key: String
    public let size: Int64
    /// Seconds since 1970.
    public let lastModified: Double
}

public struct S3MultipartUpload: Sendable, Equatable {
    public let key: String
    public let uploadID: String
    public let initiated: Double
}

public struct S3ObjectHead: Sendable, Equatable {
    public let size: Int64
    public let etag: String
}

/// A small S3 client over AsyncHTTPClient: the operations a blob store needs, SigV4-signed.
/// Requests with a body in memory are retried with backoff on SlowDown, 5xx and connection
/// errors; a streamed body is not (it cannot be replayed).
public final class S3Client: Sendable {
    public let location: S3Location
    let signer: SigV4Signer
    let http: HTTPClient
    let logger: Logger
    /// Attempts of a retryable request, and the first backoff (doubled each time, with jitter).
    let attempts: Int
    let backoff: Duration
    /// Sees the method and key of every request before it is sent (tests count requests with it).
    let observe: (@Sendable (_ method: String, _ key: String?) -> Void)?

    /// One connection pool for every S3 client of the process. Redirects are not followed.
    public static let sharedHTTPClient: HTTPClient = {
        var config = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                              timeout: .init(connect: .seconds(10), read: .seconds(120)))
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        config.decompression = .disabled
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
    }()

    public init(location: S3Location, http: HTTPClient = S3Client.sharedHTTPClient,
                logger: Logger = Logger(label: "berth.s3"), attempts: Int = 4, backoff: Duration = .milliseconds(100),
                observe: (@Sendable (_ method: String, _ key: String?) -> Void)? = nil) {
        self.observe = observe
        self.location = location
        self.signer = SigV4Signer(credentials: location.credentials, region: location.region)
        self.http = http
        self.logger = logger
        self.attempts = max(1, attempts)
        self.backoff = backoff
    }

    // MARK: requests

    struct Response {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
    }

    func path(_ key: String?) -> String {
        guard let key else { return "/\(location.bucket)" }
        return "/\(location.bucket)/" + SigV4Signer.uriEncode(key, keepSlash: true)
    }

    func request(_ method: HTTPMethod, key: String?, query: [(String, String)], headers: [(String, String)],
                 payloadHash: String) -> HTTPClientRequest {
        observe?(method.rawValue, key)
        let encodedPath = path(key)
        var url = location.base + encodedPath
        if !query.isEmpty { url += "?" + SigV4Signer.canonicalQuery(query) }
        var r = HTTPClientRequest(url: url)
        r.method = method
        let signed = signer.signHeaders(method: method.rawValue, encodedPath: encodedPath, query: query,
                                        headers: [("host", location.hostHeader)] + headers, payloadHash: payloadHash)
        for (name, value) in signed { r.headers.replaceOrAdd(name: name, value: value) }
        return r
    }

    static func isRetryable(_ status: Int) -> Bool { status == 500 || status == 502 || status == 503 || status == 504 }

    func pause(_ attempt: Int) async throws {
        let base = backoff * (1 << attempt)
        let jitter = Double.random(in: 0.5...1.0)
        try await Task.sleep(for: base * jitter)
    }

    /// Sends a request whose body (if any) is in memory, retrying what is worth retrying; reads
    /// the answer's body up to `limit` bytes. Error answers become `S3Error`.
    func send(_ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: ByteBuffer? = nil, operation: String, limit: Int = 16 << 20, timeout: TimeAmount = .seconds(300)) async throws -> Response {
        // Every body in memory (parts and tails included) is signed with its SHA-256: the store
        // checks it and refuses bytes altered on the way, so what a live hasher saw is what is
        // stored even over a plain-http endpoint.
        let payloadHash = body.map { $0.withUnsafeReadableBytes { SHA256.hash(data: $0).hexString } } ?? SigV4Signer.emptyPayloadHash
        var attempt = 0
        while true {
            var r = request(method, key: key, query: query, headers: headers, payloadHash: payloadHash)
            if let body {
                r.body = .bytes(body)
            }
            do {
                let response = try await http.execute(r, timeout: timeout)
                let status = Int(response.status.code)
                let bytes: [UInt8]
                if method == .HEAD {
                    bytes = []
                } else {
                    var collected = try await response.body.collect(upTo: limit)
                    bytes = collected.readBytes(length: collected.readableBytes) ?? []
                }
                if status == 403, method == .HEAD {
                    // A HEAD answer has no body to say why; ask again with a GET of one byte,
                    // which is refused with S3's error code (a wrong secret, an unknown key).
                    var why = headers
                    why.append(("Range", "bytes=0-0"))
                    let retry = request(.GET, key: key, query: query, headers: why, payloadHash: SigV4Signer.emptyPayloadHash)
                    let answer = try await http.execute(retry, timeout: timeout)
                    var reason = try await answer.body.collect(upTo: 1 << 20)
                    let error = Self.error(status: Int(answer.status.code), body: reason.readBytes(length: reason.readableBytes) ?? [],
                                           operation: operation)
                    if case .accessDenied = error { throw error }
                    if case .signatureMismatch = error { throw error }
                    if case .invalidAccessKey = error { throw error }
                    throw S3Error.accessDenied(code: "Forbidden")
                }
                if status >= 300 {
                    let error = Self.error(status: status, body: bytes, operation: operation)
                    if case .service(let s, let code, _) = error, Self.isRetryable(s) || code == "SlowDown", attempt + 1 < attempts {
                        logger.debug("S3 \(operation) answered \(s) \(code); retrying", metadata: ["attempt": "\(attempt + 1)"])
                        try await pause(attempt)
                        attempt += 1
                        continue
                    }
                    throw error
                }
                return Response(status: status, headers: response.headers, body: bytes)
            } catch is NIOTooManyBytesError {
                throw S3Error.malformedResponse("\(operation): answer larger than \(limit) bytes")
            } catch {
                guard Self.isTransient(error), attempt + 1 < attempts else { throw error }
                logger.debug("S3 \(operation) failed (\(error)); retrying", metadata: ["attempt": "\(attempt + 1)"])
                try await pause(attempt)
                attempt += 1
            }
        }
    }

    /// Transport failures (connection refused or closed, timeouts) are worth another attempt;
    /// answers, cancellation and a request's own deadline are not.
    static func isTransient(_ error: any Error) -> Bool {
        if error is S3Error || error is CancellationError { return false }
        if let e = error as? HTTPClientError { return e != .deadlineExceeded && e != .cancelled }
        return true
    }

    /// Maps an error answer: S3's `<Error><Code>` when there is one, else the status.
    static func error(status: Int, body: [UInt8], operation: String) -> S3Error {
        let code = (try? S3XML.parse(body))?.value("Code") ?? ""
        switch (status, code) {
        case (_, "SignatureDoesNotMatch"): return .signatureMismatch
        case (_, "InvalidAccessKeyId"): return .invalidAccessKey
        case (404, _), (_, "NoSuchKey"), (_, "NoSuchBucket"), (_, "NoSuchUpload"): return .notFound(code: code.isEmpty ? "NotFound" : code)
        case (403, _): return .accessDenied(code: code.isEmpty ? "Forbidden" : code)
        case (412, _): return .preconditionFailed
        default: return .service(status: status, code: code.isEmpty ? "HTTP\(status)" : code, operation: operation)
        }
    }

    static func xml(_ r: Response, _ operation: String) throws -> S3XMLElement {
        do {
            let root = try S3XML.parse(r.body)
            // CompleteMultipartUpload and CopyObject may answer 200 and report an error in the body.
            if root.name == "Error" {
                throw error(status: 500, body: r.body, operation: operation)
            }
            return root
        } catch let e as S3XMLError {
            throw S3Error.malformedResponse("\(operation): \(e)")
        }
    }

    // MARK: buckets

    /// Creates the bucket; one we already own is fine.
    public func createBucket() async throws {
        do {
            _ = try await send(.PUT, key: nil, operation: "CreateBucket")
        } catch S3Error.service(409, "BucketAlreadyOwnedByYou", _) {
        }
    }

    /// A cheap authenticated request: the bucket exists and the credentials reach it.
    public func headBucket() async throws {
        _ = try await send(.HEAD, key: nil, operation: "HeadBucket", timeout: .seconds(10))
    }

    // MARK: objects

    /// Stores a small object from memory. `ifNoneMatch` makes it fail with `preconditionFailed`
    /// when the key exists.
    @discardableResult
    public func putObject(_ key: String, body: ByteBuffer, ifNoneMatch: Bool = false) async throws -> String {
        let headers = ifNoneMatch ? [("If-None-Match", "*")] : []
        let r = try await send(.PUT, key: key, headers: headers, body: body, operation: "PutObject")
        return r.headers.first(name: "etag") ?? ""
    }

    /// Stores an object streamed from `body`, of exactly `length` bytes (signed UNSIGNED-PAYLOAD;
    /// not retried).
    @discardableResult
    public func putObject<Body: AsyncSequence & Sendable>(_ key: String, stream body: Body, length: Int64) async throws -> String
        where Body.Element == ByteBuffer
    {
        var r = request(.PUT, key: key, query: [], headers: [], payloadHash: SigV4Signer.unsignedPayload)
        r.body = .stream(body, length: .known(length))
        let response = try await http.execute(r, timeout: .hours(1))
        var collected = try await response.body.collect(upTo: 1 << 20)
        let bytes = collected.readBytes(length: collected.readableBytes) ?? []
        guard response.status.code < 300 else {
            throw Self.error(status: Int(response.status.code), body: bytes, operation: "PutObject")
        }
        return response.headers.first(name: "etag") ?? ""
    }

    /// Size and ETag of an object, or nil when there is none.
    public func headObject(_ key: String) async throws -> S3ObjectHead? {
        do {
            let r = try await send(.HEAD, key: key, operation: "HeadObject")
            guard let length = r.headers.first(name: "content-length").flatMap({ Int64($0) }) else {
                throw S3Error.malformedResponse("HeadObject: no Content-Length")
            }
            return S3ObjectHead(size: length, etag: r.headers.first(name: "etag") ?? "")
        } catch S3Error.notFound {
            return nil
        }
    }

    /// A whole small object in memory (at most `limit` bytes), or nil when there is none.
    public func getObject(_ key: String, limit: Int) async throws -> [UInt8]? {
        do {
            return try await send(.GET, key: key, operation: "GetObject", limit: limit).body
        } catch S3Error.notFound {
            return nil
        }
    }

    /// Streams `range` of an object to `sink` as it arrives (HTTP backpressure: the next bytes are
    /// read once `sink` returns). Throws `notFound` for a missing object and `malformedResponse`
    /// if fewer or more bytes than asked for arrive. A failure before the first byte is retried.
    public func getObject(_ key: String, range: Range<Int64>?, ifMatch etag: String? = nil,
                          into sink: (ByteBuffer) async throws -> Void) async throws {
        var headers: [(String, String)] = []
        if let etag { headers.append(("If-Match", Self.quoted(etag))) }
        if let range {
            guard !range.isEmpty else { return }
            headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
        }
        var attempt = 0
        while true {
            let r = request(.GET, key: key, query: [], headers: headers, payloadHash: SigV4Signer.emptyPayloadHash)
            let response: HTTPClientResponse
            do {
                response = try await http.execute(r, timeout: .hours(6))
            } catch where attempt + 1 < attempts && Self.isTransient(error) {
                try await pause(attempt)
                attempt += 1
                continue
            }
            let status = Int(response.status.code)
            guard status < 300 else {
                var collected = try await response.body.collect(upTo: 1 << 20)
                let error = Self.error(status: status, body: collected.readBytes(length: collected.readableBytes) ?? [],
                                       operation: "GetObject")
                if case .service(let s, let code, _) = error, Self.isRetryable(s) || code == "SlowDown", attempt + 1 < attempts {
                    try await pause(attempt)
                    attempt += 1
                    continue
                }
                throw error
            }
            if range != nil, status != 206 {
                throw S3Error.malformedResponse("GetObject: asked for a range, got HTTP \(status)")
            }
            var received: Int64 = 0
            for try await chunk in response.body {
                received += Int64(chunk.readableBytes)
                if let range, received > Int64(range.count) {
                    throw S3Error.malformedResponse("GetObject: more bytes than the range asked for")
                }
                try await sink(chunk)
            }
            if let range, received != Int64(range.count) {
                throw S3Error.malformedResponse("GetObject: \(received) of \(range.count) bytes arrived")
            }
            return
        }
    }

    /// Deletes an object; one that is not there is fine.
    public func deleteObject(_ key: String) async throws {
        do {
            _ = try await send(.DELETE, key: key, operation: "DeleteObject")
        } catch S3Error.notFound {
        }
    }

    /// Server-side copy of a whole object (S3 allows this up to 5 GiB; larger objects are copied
    /// part by part with `copyLargeObject`).
    /// With `ifMatch`, the copy happens only if the source still has that ETag (`preconditionFailed`).
    public func copyObject(from source: String, to key: String, ifMatch etag: String? = nil) async throws {
        var headers = [("x-amz-copy-source", copySource(source))]
        if let etag { headers += Self.copyIfMatch(etag) }
        let r = try await send(.PUT, key: key, headers: headers, operation: "CopyObject")
        _ = try Self.xml(r, "CopyObject")
    }

    /// The condition of a copy on its source's ETag, by S3's name and by the one Ceph's RGW reads
    /// (up to at least 16.2, which ignores the former).
    static func copyIfMatch(_ etag: String) -> [(String, String)] {
        [("x-amz-copy-source-if-match", quoted(etag)), ("x-amz-copy-if-match", quoted(etag))]
    }

    /// An ETag in the quoted form conditional headers compare.
    static func quoted(_ etag: String) -> String {
        let bare = etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        return "\"\(bare)\""
    }

    func copySource(_ key: String) -> String {
        "/\(location.bucket)/" + SigV4Signer.uriEncode(key, keepSlash: true)
    }

    // MARK: listing

    /// One page of ListObjectsV2 under `prefix`.
    public func listObjectsPage(prefix: String, delimiter: String? = nil, continuation: String? = nil,
                                maxKeys: Int = 1000) async throws -> (objects: [S3Object], prefixes: [String], next: String?) {
        var query: [(String, String)] = [("list-type", "2"), ("prefix", prefix), ("max-keys", String(maxKeys))]
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let continuation { query.append(("continuation-token", continuation)) }
        let root = try Self.xml(try await send(.GET, key: nil, query: query, operation: "ListObjectsV2"), "ListObjectsV2")
        guard root.name == "ListBucketResult" else { throw S3Error.malformedResponse("ListObjectsV2: root <\(root.name)>") }
        var objects: [S3Object] = []
        for c in root.all("Contents") {
            guard let key = c.value("Key"), let size = c.value("Size").flatMap({ Int64($0) }),
                  let modified = c.value("LastModified").flatMap(Self.parseTime)
            else { throw S3Error.malformedResponse("ListObjectsV2: an entry without Key, Size or LastModified") }
            objects.append(S3Object(key: key, size: size, lastModified: modified))
        }
        let prefixes = root.all("CommonPrefixes").compactMap { $0.value("Prefix") }
        let truncated = root.value("IsTruncated") == "true"
        let next = root.value("NextContinuationToken")
        if truncated, next == nil || next == continuation { throw S3Error.malformedResponse("ListObjectsV2: truncated without a new continuation token") }
        return (objects, prefixes, truncated ? next : nil)
    }

    /// Every object under `prefix` (all pages).
    public func listObjects(prefix: String) async throws -> [S3Object] {
        var out: [S3Object] = []
        var token: String?
        repeat {
            let page = try await listObjectsPage(prefix: prefix, continuation: token)
            out += page.objects
            token = page.next
        } while token != nil
        return out
    }

    // MARK: multipart uploads

    public func createMultipartUpload(_ key: String) async throws -> String {
        let root = try Self.xml(try await send(.POST, key: key, query: [("uploads", "")], operation: "CreateMultipartUpload"),
                                "CreateMultipartUpload")
        guard let id = root.value("UploadId"), !id.isEmpty else { throw S3Error.malformedResponse("CreateMultipartUpload: no UploadId") }
        return id
    }

    /// Uploads one part from memory; returns its ETag.
    public func uploadPart(_ key: String, uploadID: String, number: Int, body: ByteBuffer) async throws -> String {
        let r = try await send(.PUT, key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], body: body,
                               operation: "UploadPart")
        guard let etag = r.headers.first(name: "etag"), !etag.isEmpty else { throw S3Error.malformedResponse("UploadPart: no ETag") }
        return etag
    }

    /// Makes part `number` a server-side copy of `range` of the object `source` (whole when nil).
    public func uploadPartCopy(_ key: String, uploadID: String, number: Int, source: String, range: Range<Int64>? = nil,
                               ifMatch etag: String? = nil) async throws -> String {
        var headers = [("x-amz-copy-source", copySource(source))]
        if let etag { headers += Self.copyIfMatch(etag) }
        if let range { headers.append(("x-amz-copy-source-range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")) }
        let r = try await send(.PUT, key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], headers: headers,
                               operation: "UploadPartCopy")
        let root = try Self.xml(r, "UploadPartCopy")
        guard let etag = root.value("ETag"), !etag.isEmpty else { throw S3Error.malformedResponse("UploadPartCopy: no ETag") }
        return etag
    }

    /// Returns the completed object's ETag (nil if the answer has none: Ceph 16's is empty).
    @discardableResult
    public func completeMultipartUpload(_ key: String, uploadID: String, parts: [(number: Int, etag: String)]) async throws -> String? {
        var xml = "<CompleteMultipartUpload>"
        for p in parts {
            xml += "<Part><PartNumber>\(p.number)</PartNumber><ETag>\(S3XML.escape(p.etag))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let r = try await send(.POST, key: key, query: [("uploadId", uploadID)], body: ByteBuffer(string: xml),
                               operation: "CompleteMultipartUpload", timeout: .seconds(900))
        let etag = try Self.xml(r, "CompleteMultipartUpload").value("ETag")
        return etag.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Aborts a multipart upload; one that is already gone is fine.
    public func abortMultipartUpload(_ key: String, uploadID: String) async throws {
        do {
            _ = try await send(.DELETE, key: key, query: [("uploadId", uploadID)], operation: "AbortMultipartUpload")
        } catch S3Error.notFound {
        }
    }

    /// Every multipart upload in progress under `prefix` (all pages).
    public func listMultipartUploads(prefix: String) async throws -> [S3MultipartUpload] {
        var out: [S3MultipartUpload] = []
        var keyMarker: String?, idMarker: String?
        while true {
            var query: [(String, String)] = [("uploads", ""), ("prefix", prefix)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let idMarker { query.append(("upload-id-marker", idMarker)) }
            let root = try Self.xml(try await send(.GET, key: nil, query: query, operation: "ListMultipartUploads"), "ListMultipartUploads")
            for u in root.all("Upload") {
                guard let key = u.value("Key"), let id = u.value("UploadId"),
                      let initiated = u.value("Initiated").flatMap(Self.parseTime)
                else { throw S3Error.malformedResponse("ListMultipartUploads: an upload without Key, UploadId or Initiated") }
                out.append(S3MultipartUpload(key: key, uploadID: id, initiated: initiated))
            }
            guard root.value("IsTruncated") == "true" else { return out }
            let nextKey = root.value("NextKeyMarker"), nextID = root.value("NextUploadIdMarker")
            guard nextKey != nil, nextKey != keyMarker || nextID != idMarker else {
                throw S3Error.malformedResponse("ListMultipartUploads: truncated without new markers")
            }
            keyMarker = nextKey
            idMarker = nextID
        }
    }

    // MARK: presigned URLs

    /// A URL that lets its holder GET `key` for `expires` seconds without credentials.
    public func presignedGetURL(_ key: String, expires: Int, date: Date = Date()) -> String {
        let encodedPath = path(key)
        let query = signer.presignQuery(method: "GET", host: location.hostHeader, encodedPath: encodedPath, expires: expires, date: date)
        return location.base + encodedPath + "?" + SigV4Signer.canonicalQuery(query)
    }

    // MARK: time

    /// `2026-11-30T07:40:01.123Z` (ISO 8601 in UTC, fraction optional) as seconds since 1970.
    static func parseTime(_ s: String) -> Double? {
        let u = Array(s.utf8)
        guard u.count >= 20, u[4] == 0x2D, u[7] == 0x2D, u[10] == 0x54, u[13] == 0x3A, u[16] == 0x3A, u.last == 0x5A else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? { Int(String(decoding: u[a..<b], as: UTF8.self)) }
        guard let year = num(0, 4), let month = num(5, 7), let day = num(8, 10), let hour = num(11, 13),
              let minute = num(14, 16), let second = num(17, 19), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Double(days * 86_400 + hour * 3600 + minute * 60 + second)
    }
}
