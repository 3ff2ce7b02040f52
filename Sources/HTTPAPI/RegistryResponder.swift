import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import OCIModel
import Access
import Admission
import RegistryCore
import RegistryStore

/// Serves the OCI distribution API, routed by hand because repository names contain slashes,
/// and hands every other path (health, metrics, tokens, `/api/v1`, the features' routes) to
/// Hummingbird's router. Every handler calls into `Registry`; every failure, on either side, is
/// rendered by `ErrorRenderer.response(for:request:log:gate:)`.
public struct RegistryResponder: HTTPResponder {
    public typealias Context = BerthRequestContext

    let registry: Registry
    let metrics: HTTPMetrics
    let accessLog: Logger
    let limits: Limits
    /// nil only where the distribution layer is tested on its own; `berth serve` always has one.
    let gate: AuthGate?
    /// The plug-ins: their routes are on `router`, their pull checks are in `pullAdmission`.
    let features: [any RegistryFeature]
    /// Locks, quarantine, then every feature's check: the one pull-admission chain, which /v2/
    /// reads and the admission endpoints both ask.
    let pullAdmission: PullAdmission
    /// The features' fillers of missed reads (the pull-through cache), asked after authorization
    /// and before the pull-admission chain.
    let fallbacks: [any ContentFallback]
    /// The features' routing of blob reads to other regions' data endpoints (at most one is used).
    let routing: (any BlobRouting)?
    /// Absolute base of upload sessions' `Location` (this region's data endpoint), else relative.
    let uploadBase: String
    /// The leases the server runs its cluster-once work under (nil: it runs that work directly).
    let leases: (any LeaseStore)?
    /// Which lease each event consumer runs under (empty: the server runs its work without leases).
    let consumerLeases: [ConsumerLease]
    /// Everything outside `/v2/`; nil only in the copy its own handlers hold.
    private(set) var router: RouterResponder<Context>?
    private let inflightUploads = NIOLockedValueBox(0)

    public struct Limits: Sendable {
        /// Upload requests served at once; more get 429 TOOMANYREQUESTS.
        public var maxConcurrentUploads = 512
        public init() {}
    }

    public init(registry: Registry, metrics: HTTPMetrics, accessLog: Logger, limits: Limits = .init(),
                access: AccessControl?, features: [any RegistryFeature] = [], publicURL: String? = nil, tls: Bool = false,
                serviceName: String? = nil, leases: (any LeaseStore)? = nil, consumerLeases: [ConsumerLease] = []) {
        self.features = features
        self.leases = leases
        self.consumerLeases = consumerLeases
        self.registry = registry
        self.metrics = metrics
        self.accessLog = accessLog
        self.limits = limits
        self.gate = access.map { AuthGate(access: $0, publicURL: publicURL, serviceName: serviceName, tls: tls) }
        self.pullAdmission = PullAdmission(registry: registry, access: access, checks: features.compactMap(\.pullCheck),
                                           host: gate?.serviceName ?? "berth")
        self.fallbacks = features.compactMap(\.contentFallback)
        self.routing = features.compactMap(\.blobRouting).first
        self.uploadBase = routing?.uploadLocationBase ?? ""
        self.router = Self.makeRouter(self)
    }

    struct Outcome {
        var response: Response
        var route: String
        var bytesIn: Int64 = 0
        var bytesOut: Int64 = 0
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let note = RequestNote()
        return await RequestNote.$current.withValue(note) { await respond(to: request, context: context, note: note) }
    }

    private func respond(to request: Request, context: Context, note: RequestNote) async -> Response {
        let start = ContinuousClock.now
        var outcome: Outcome
        var routeName = "unknown"
        do {
            outcome = try await dispatch(request, context: context, routeName: &routeName)
        } catch {
            outcome = Outcome(response: ErrorRenderer.response(for: error, request: request, log: accessLog, gate: gate), route: routeName)
        }
        let duration = ContinuousClock.now - start
        let status = outcome.response.status.code
        metrics.record(route: outcome.route, method: request.method.rawValue, status: status, duration: duration,
                       bytesIn: outcome.bytesIn, bytesOut: outcome.bytesOut)
        if outcome.route != "healthz" && outcome.route != "metrics" {
            accessLog.info("request", metadata: [
                "method": "\(request.method.rawValue)",
                "path": "\(request.uri.path)",
                "status": "\(status)",
                "ms": "\(Double(duration.components.attoseconds / 1_000_000_000_000) / 1000 + Double(duration.components.seconds) * 1000)",
                "remote": "\(context.remoteAddress?.ipAddress ?? "-")",
                "route": "\(outcome.route)",
                "identity": "\(note.identityText)",
                "request_id": "\(context.id)",
                "user_agent": "\(request.headers[.userAgent].map { String($0.prefix(256)) } ?? "-")",
            ])
        }
        outcome.response.headers[.xRequestID] = context.id
        return outcome.response
    }

    private func dispatch(_ request: Request, context: Context, routeName: inout String) async throws -> Outcome {
        let path = request.uri.path
        if path != "/v2", !path.hasPrefix("/v2/"), let router {
            routeName = Self.routeName(path)
            return Outcome(response: try await router.respond(to: request, context: context), route: routeName)
        }
        guard let route = V2Route.parse(path[...]) else {
            throw RegistryError(.unsupported, "not found", status: 404)
        }
        // A signed data-endpoint read (another region authorized it and sent the client here): the
        // signature is its authorization, whatever credentials came along (never resolved here).
        if case .blob(let name, let digest) = route, request.method == .get, let routing, routing.isSigned(request) {
            routeName = "blob_get_signed"
            let repo = try RepositoryName(name)
            let d = try parseDigest(digest)
            let client = gate?.address(request, context) ?? context.remoteAddress?.ipAddress.flatMap(IPAddress.init)
            try await routing.admitSigned(request, repository: repo, digest: d, client: client)
            // This region's own locks and quarantine apply too (review: a quarantine verdict given
            // here, or after the URL was signed, was not enforced on signed reads). A puller who
            // may read quarantined content is refused here as well: fail closed. Both before a
            // missing blob is fetched for the read.
            if try await registry.blobOnlyInQuarantine(repo, d) {
                throw RegistryError(.denied, "blob belongs only to quarantined content")
            }
            try await registry.checkBlobReadable(repo.value)
            if let streamed = try await routing.fetchMissing(request, repository: repo, digest: d,
                                                             streaming: request.headers[.range] == nil) {
                return Outcome(response: streamedBlob(d, streamed), route: routeName, bytesOut: streamed.size)
            }
            let (response, size) = try await getBlob(request, repo, d, head: false)
            return Outcome(response: response, route: routeName, bytesOut: size)
        }
        let caller = try await gate?.caller(request, context)
        // Writes record who made them, with their event, for the audit trail.
        // Only writes make events; reads skip building the origin (string work on the hot path).
        let writes = request.method != .get && request.method != .head
        let origin = !writes ? nil : EventOrigin(
            actor: caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? (gate == nil ? "-" : "anonymous"),
            address: (caller?.address ?? gate?.address(request, context))?.description ?? context.remoteAddress?.ipAddress ?? "-",
            requestID: context.id, host: request.head.authority, method: request.method.rawValue,
            userAgent: request.headers[.userAgent])
        var name = routeName
        defer { routeName = name }
        return try await EventOrigin.$current.withValue(origin) {
            try await handle(route, request, context, caller: caller, routeName: &name)
        }
    }

    private func handle(_ route: V2Route, _ request: Request, _ context: Context, caller: Caller?,
                        routeName: inout String) async throws -> Outcome {
        let method = request.method
        /// Decides once for this request; throws the 401/403 to send when not allowed.
        func authorize(_ repository: RepositoryName?, _ action: Action, _ target: AccessTarget = .none) async throws {
            try await gate?.require(request, context, caller: caller, repository: repository?.value, action: action, target: target)
        }
        var puller: Puller { Puller(caller: caller, address: caller?.address ?? gate?.address(request, context)) }
        switch route {
        case .base:
            routeName = "base"
            guard method == .get || method == .head else { throw methodNotAllowed }
            try await authorize(nil, [])
            if let gate, caller == nil {
                // Always challenge an unauthenticated /v2/: it is how clients discover the token service.
                throw gate.challenge(request, scope: nil, message: "authentication required", insufficientScope: false)
            }
            return Outcome(response: json(Data("{}".utf8), head: method == .head), route: routeName)
        case .catalog:
            routeName = "catalog"
            guard method == .get else { throw methodNotAllowed }
            try await authorize(nil, [], AccessTarget(listing: true))
            return Outcome(response: try await catalog(request, context, caller: caller), route: routeName)
        case .tags(let name):
            routeName = "tags"
            guard method == .get else { throw methodNotAllowed }
            let repo = try RepositoryName(name)
            try await authorize(repo, .metadataRead)
            return await Outcome(response: try tags(request, repo), route: routeName)
        case .referrers(let name, let digest):
            routeName = "referrers"
            guard method == .get else { throw methodNotAllowed }
            let repo = try RepositoryName(name)
            try await authorize(repo, .metadataRead)
            return await Outcome(response: try referrers(request, repo, digest), route: routeName)
        case .manifest(let name, let reference):
            let repo = try RepositoryName(name)
            if method == .get || method == .head, !reference.contains(":"), !Tag.isValid(reference) {
                // No tag is spelled like that, so no manifest has it (404 as the conformance suites expect);
                // only a push with such a tag is a bad request.
                try await authorize(repo, .contentRead)
                throw RegistryError(.manifestUnknown, "manifest unknown: \(reference.prefix(130)) is not a valid tag")
            }
            let ref = try Reference(parsing: reference)
            switch method {
            case .get, .head:
                routeName = method == .get ? "manifest_get" : "manifest_head"
                try await authorize(repo, .contentRead)
                // A fallback may answer a miss with the manifest it is filling (served before the
                // image is stored; judged by the same chain), else it makes the manifest present.
                var provisional: ManifestContent?
                for fallback in fallbacks {
                    provisional = try await fallback.provisionalManifest(repo, ref)
                    if provisional != nil { break }
                    try await fallback.prepareManifest(repo, ref)
                }
                // Locks, quarantine and the features' checks (content trust): the pull-admission chain.
                let content: ManifestContent
                if let provisional {
                    try await pullAdmission.admit(repo, provisional, for: puller)
                    content = provisional
                } else {
                    content = try await pullAdmission.manifest(repo, ref, for: puller)
                }
                let (response, size) = try getManifest(request, content, head: method == .head)
                // A HEAD counts as a pull: a node that already holds the image resolves its tag with
                // a HEAD and fetches nothing else, and it is in use all the same (scanning's re-match
                // follows use). In memory only; a background service writes the batch (never a
                // store write per pull).
                var tag: String? = nil
                if case .tag(let name) = ref { tag = name }
                if content.stored {
                    registry.pullTimes.record(repository: repo.value, digest: content.digest, tag: tag)
                } else {
                    registry.pullTimes.recordBeforeStored(repository: repo.value, digest: content.digest, tag: tag)
                }
                return Outcome(response: response, route: routeName, bytesOut: size)
            case .put:
                routeName = "manifest_put"
                // Asked before the body is read, and again with what it is (a signer may push referrers only).
                try await authorize(repo, .contentWrite, AccessTarget(write: .manifestUnread))
                try await refuseIfFilled(repo)
                let (response, size) = try await putManifest(request, repo, ref) { referrer in
                    try await authorize(repo, .contentWrite, AccessTarget(write: .manifest(referrerByDigest: referrer)))
                }
                return Outcome(response: response, route: routeName, bytesIn: size)
            case .patch:
                // The gate's verdict, on the manifest itself: {"state": "Passed", "reason": "…"}.
                routeName = "manifest_quarantine"
                guard let gate, case .digest(let digest) = ref else {
                    throw RegistryError(.unsupported, "a quarantine verdict is about exact content: PATCH by digest", status: 400)
                }
                return Outcome(response: try await quarantineVerdict(request, context, gate, caller, repo, digest, body: nil),
                               route: routeName)
            case .delete:
                routeName = "manifest_delete"
                try await authorize(repo, .contentDelete)
                try await registry.deleteManifest(repo, ref)
                return Outcome(response: accepted(), route: routeName)
            default:
                throw methodNotAllowed
            }
        case .blob(let name, let digest):
            let repo = try RepositoryName(name)
            let d = try parseDigest(digest)
            switch method {
            case .get, .head:
                routeName = method == .get ? "blob_get" : "blob_head"
                try await authorize(repo, .contentRead)
                // Another region's data endpoint may serve the client (issue 13): only once this
                // region authorized and admitted the read. HEAD is answered here.
                var admitted = false
                if method == .get, let routing {
                    try await pullAdmission.blob(repo, d, for: puller)
                    admitted = true
                    if let url = try await routing.redirect(request, repository: repo, digest: d, client: puller.address) {
                        var headers = baseHeaders()
                        headers[.location] = url
                        headers[.dockerContentDigest] = d.string
                        headers[.contentLength] = "0"
                        routeName = "blob_redirect"
                        return Outcome(response: Response(status: .temporaryRedirect, headers: headers), route: routeName)
                    }
                }
                // A GET of a whole blob a fallback is filling is answered while the bytes arrive;
                // admitted first (locks, quarantine) as the read it is. HEAD and Range wait for the fill.
                // (A fallback only stores the blob: the chain's answer is the same before and after.)
                let streaming = method == .get && request.headers[.range] == nil && !fallbacks.isEmpty
                if streaming {
                    if !admitted { try await pullAdmission.blob(repo, d, for: puller) }
                    for fallback in fallbacks {
                        if let streamed = try await fallback.streamBlob(repo, d) {
                            return Outcome(response: streamedBlob(d, streamed), route: routeName, bytesOut: streamed.size)
                        }
                    }
                }
                for fallback in fallbacks { try await fallback.prepareBlob(repo, d) }
                if !streaming, !admitted { try await pullAdmission.blob(repo, d, for: puller) }
                let (response, size) = try await getBlob(request, repo, d, head: method == .head)
                return Outcome(response: response, route: routeName, bytesOut: size)
            case .delete:
                routeName = "blob_delete"
                try await authorize(repo, .contentDelete)
                try await registry.deleteBlob(repo, d)
                return Outcome(response: accepted(), route: routeName)
            default:
                throw methodNotAllowed
            }
        case .uploads(let name):
            routeName = "upload_start"
            guard method == .post else { throw methodNotAllowed }
            let repo = try RepositoryName(name)
            try await authorize(repo, .contentWrite, AccessTarget(write: .blobs))
            try await refuseIfFilled(repo)
            return try await limitingUploads {
                let (response, size) = try await startUpload(request, context, repo, caller: caller, puller: puller)
                return Outcome(response: response, route: routeName, bytesIn: size)
            }
        case .upload(let name, let id):
            let repo = try RepositoryName(name)
            try await authorize(repo, .contentWrite, AccessTarget(write: .blobs))
            switch method {
            case .get:
                routeName = "upload_get"
                let status = try await registry.uploadStatus(repo, id)
                return Outcome(response: uploadResponse(repo, status, code: .noContent), route: routeName)
            case .patch:
                routeName = "upload_patch"
                return try await limitingUploads {
                    let (response, size) = try await patchUpload(request, repo, id)
                    return Outcome(response: response, route: routeName, bytesIn: size)
                }
            case .put:
                routeName = "upload_put"
                return try await limitingUploads {
                    let (response, size) = try await putUpload(request, repo, id)
                    return Outcome(response: response, route: routeName, bytesIn: size)
                }
            case .delete:
                routeName = "upload_delete"
                try await registry.cancelUpload(repo, id)
                return Outcome(response: Response(status: .noContent, headers: baseHeaders()), route: routeName)
            default:
                throw methodNotAllowed
            }
        }
    }

    /// Whether the pull-admission chain lets `puller` read a blob (a refusal is an answer here,
    /// not an error: a mount that may not read its source falls back to an upload).
    private func admitsBlob(_ repo: RepositoryName, _ digest: Digest, _ puller: Puller) async throws -> Bool {
        do {
            try await pullAdmission.blob(repo, digest, for: puller)
            return true
        } catch is AccessRefusal {
            return false
        } catch let e as RegistryError where e.code == .denied {
            return false
        }
    }

    var methodNotAllowed: RegistryError { RegistryError(.unsupported, "method not allowed", status: 405) }

    /// A repository a content fallback fills (a pull-through cache's target) takes no client push.
    private func refuseIfFilled(_ repo: RepositoryName) async throws {
        try await FeatureServer.refuseClientWrite(repo, fallbacks)
    }

    private func limitingUploads(_ body: () async throws -> Outcome) async throws -> Outcome {
        let admitted = inflightUploads.withLockedValue { n -> Bool in
            guard n < limits.maxConcurrentUploads else { return false }
            n += 1
            return true
        }
        guard admitted else {
            throw RegistryError(.tooManyRequests, "too many uploads in progress; retry later")
        }
        defer { inflightUploads.withLockedValue { $0 -= 1 } }
        return try await body()
    }

    // MARK: helpers

    func parseDigest(_ raw: some StringProtocol) throws(RegistryError) -> Digest {
        do {
            return try Digest(parsing: raw)
        } catch .unsupported(let alg) {
            throw RegistryError(.unsupported, "digest algorithm \(alg.prefix(40)) is not supported", status: 400)
        } catch {
            throw RegistryError(.digestInvalid, "invalid digest: \(raw.prefix(140))")
        }
    }

    func baseHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[.distributionAPIVersion] = "registry/2.0"
        return headers
    }

    func text(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    func json(_ data: Data, contentType: String = "application/json; charset=utf-8", head: Bool = false,
              extra: HTTPFields = HTTPFields()) -> Response {
        var headers = baseHeaders()
        headers[.contentType] = contentType
        headers[.contentLength] = String(data.count)
        headers.append(contentsOf: extra)
        return Response(status: .ok, headers: headers, body: head ? .init() : .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func accepted() -> Response {
        var headers = baseHeaders()
        headers[.contentLength] = "0"
        return Response(status: .accepted, headers: headers)
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    func queryInt(_ request: Request, _ key: String) throws(RegistryError) -> Int? {
        guard let raw = request.uri.queryParameters[key[...]] else { return nil }
        guard let n = Int(raw), n >= 0 else {
            throw RegistryError(.unsupported, "query parameter \(key) must be a non-negative integer", status: 400)
        }
        return n
    }

    func query(_ request: Request, _ key: String) -> String? {
        request.uri.queryParameters[key[...]].map(String.init)
    }

    func linkHeader(_ path: String, n: Int?, last: String) -> String {
        var query = "last=\(last.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? last)"
        if let n { query = "n=\(n)&" + query }
        return "<\(path)?\(query)>; rel=\"next\""
    }

    // MARK: listings

    private func catalog(_ request: Request, _ context: Context, caller: Caller?) async throws -> Response {
        let n = try queryInt(request, "n")
        var filter: (@Sendable (String) -> Bool)?
        if let gate {
            // Authorized as a whole by the caller; here entry by entry (Access's catalog rule).
            let address = caller?.address ?? gate.address(request, context)
            let access = gate.access
            filter = { repo in
                access.authorize(AccessRequest(caller: caller, address: address, repository: repo, actions: .metadataRead,
                                               target: AccessTarget(listing: true))).isAllowed
            }
        }
        let page = try await registry.catalog(limit: n, last: query(request, "last"), visible: filter)
        struct Body: Encodable { let repositories: [String] }
        var extra = HTTPFields()
        if page.more, let last = page.repositories.last { extra[.link] = linkHeader("/v2/_catalog", n: n, last: last) }
        return json(try Self.encoder.encode(Body(repositories: page.repositories)), extra: extra)
    }

    private func tags(_ request: Request, _ repo: RepositoryName) async throws -> Response {
        let n = try queryInt(request, "n")
        let page = try await registry.tags(repo, limit: n, last: query(request, "last"))
        struct Body: Encodable { let name: String; let tags: [String] }
        var extra = HTTPFields()
        if page.more, let last = page.tags.last { extra[.link] = linkHeader("/v2/\(repo)/tags/list", n: n, last: last) }
        return json(try Self.encoder.encode(Body(name: repo.value, tags: page.tags)), extra: extra)
    }

    private func referrers(_ request: Request, _ repo: RepositoryName, _ rawDigest: String) async throws -> Response {
        let subject = try parseDigest(rawDigest)
        let artifactType = query(request, "artifactType").flatMap { $0.isEmpty ? nil : $0 }
        let n = try queryInt(request, "n")
        let list = try await registry.referrers(repo, subject: subject, artifactType: artifactType, limit: n, last: query(request, "last"))
        struct Index: Encodable {
            let schemaVersion = 2
            let mediaType = MediaType.ociIndex
            let manifests: [Descriptor]
        }
        var extra = HTTPFields()
        if list.filtered { extra[.ociFiltersApplied] = "artifactType" }
        if let next = list.next {
            var path = "/v2/\(repo)/referrers/\(subject)"
            if let artifactType {
                path += "?artifactType=\(artifactType.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? artifactType)"
                extra[.link] = "<\(path)&last=\(next)\(n.map { "&n=\($0)" } ?? "")>; rel=\"next\""
            } else {
                extra[.link] = linkHeader(path, n: n, last: next)
            }
        }
        return json(try Self.encoder.encode(Index(manifests: list.descriptors)), contentType: MediaType.ociIndex, extra: extra)
    }

    // MARK: manifests

    private func getManifest(_ request: Request, _ content: ManifestContent, head: Bool) throws -> (Response, Int64) {
        try negotiate(request.headers[values: .accept], stored: content.mediaType)
        var headers = baseHeaders()
        headers[.contentType] = content.mediaType
        headers[.contentLength] = String(content.bytes.readableBytes)
        headers[.dockerContentDigest] = content.digest.string
        headers[.eTag] = "\"\(content.digest.string)\""
        if let subject = content.subject { headers[.ociSubject] = subject.string }
        let size = Int64(content.bytes.readableBytes)
        return (Response(status: .ok, headers: headers, body: head ? .init() : .init(byteBuffer: content.bytes)), head ? 0 : size)
    }

    /// Content negotiation: when the client names manifest media types and none is the stored
    /// one, the manifest is not available in a form it accepts. Wildcards and non-manifest
    /// types (`*/*`, `application/json`) accept whatever is stored.
    private func negotiate(_ acceptValues: [String], stored: String) throws {
        var named = false
        for value in acceptValues {
            for item in value.split(separator: ",") {
                let type = ManifestParser.normalizeContentType(String(item))
                if type == stored || type == "*/*" { return }
                if MediaType.manifestTypes.contains(type) { named = true }
            }
        }
        if named {
            throw RegistryError(.manifestUnknown, "manifest is \(stored), which the request's Accept header does not include")
        }
    }

    /// `authorize` is asked, once the body is read, whether its content may be pushed (told
    /// whether it is a referrer pushed by digest).
    private func putManifest(_ request: Request, _ repo: RepositoryName, _ ref: Reference,
                             authorize: (Bool) async throws -> Void) async throws -> (Response, Int64) {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > ManifestParser.maxSize {
            throw RegistryError(.sizeInvalid, "manifest larger than \(ManifestParser.maxSize) bytes", status: 413)
        }
        var bytes: [UInt8] = []
        for try await chunk in request.body {
            guard bytes.count + chunk.readableBytes <= ManifestParser.maxSize else {
                throw RegistryError(.sizeInvalid, "manifest larger than \(ManifestParser.maxSize) bytes", status: 413)
            }
            bytes.append(contentsOf: chunk.readableBytesView)
        }
        if gate != nil {
            let parsed = try ManifestParser.parse(bytes, contentType: request.headers[.contentType])
            var byDigest = false
            if case .digest = ref { byDigest = true }
            try await authorize(parsed.subject != nil && byDigest)
        }
        let pushed = try await registry.putManifest(repo, reference: ref, bytes: bytes, contentType: request.headers[.contentType])
        for feature in features { feature.manifestPushed() }
        var headers = baseHeaders()
        headers[.location] = "/v2/\(repo)/manifests/\(pushed.digest)"
        headers[.dockerContentDigest] = pushed.digest.string
        headers[.contentLength] = "0"
        if let subject = pushed.subject { headers[.ociSubject] = subject.string }
        return (Response(status: .created, headers: headers), Int64(bytes.count))
    }

    // MARK: blobs

    private func getBlob(_ request: Request, _ repo: RepositoryName, _ digest: Digest, head: Bool) async throws -> (Response, Int64) {
        let size = try await registry.blobSize(repo, digest)
        var headers = baseHeaders()
        headers[.contentType] = "application/octet-stream"
        headers[.dockerContentDigest] = digest.string
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = "\"\(digest.string)\""
        headers[.cacheControl] = "max-age=31536000"
        var status = HTTPResponse.Status.ok
        var range: Range<Int64> = 0..<size
        do {
            if let r = try ByteRange.parse(request.headers[.range], size: size) {
                range = r
                status = .partialContent
                headers[.contentRange] = "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(size)"
            }
        } catch {
            var h = baseHeaders()
            h[.contentRange] = "bytes */\(size)"
            var response = ErrorRenderer.response(error, head: head)
            response.headers.append(contentsOf: h.filter { $0.name == .contentRange })
            return (response, 0)
        }
        let length = range.upperBound - range.lowerBound
        headers[.contentLength] = String(length)
        if head {
            return (Response(status: status, headers: headers), 0)
        }
        // The blob store may hand the bytes out itself (a short-lived presigned URL): 307, and the
        // client repeats the GET (with its Range) there. Only after the checks above passed.
        if length > 0, let url = try await registry.blobRedirect(digest, size: size) {
            var redirect = baseHeaders()
            redirect[.location] = url
            redirect[.dockerContentDigest] = digest.string
            redirect[.contentLength] = "0"
            return (Response(status: .temporaryRedirect, headers: redirect), 0)
        }
        let registry = self.registry
        let readRange = range
        // A file blob on plain HTTP/1: open the file now (so a missing file is still a clean
        // error) and let the kernel send it.
        if length > 0, let queue = SendfileQueue.current, let file = try await registry.openBlobFile(digest, size: size),
           let token = queue.enqueue(file, range: readRange) {  // nil: the connection is gone (file closed)
            let body = ResponseBody(contentLength: Int(length)) { writer in
                do {
                    try await writer.write(token)
                } catch {
                    queue.cancel(token: token)
                    throw error
                }
                try await writer.finish(nil)
            }
            return (Response(status: status, headers: headers, body: body), length)
        }
        // A blob store that fetches over the network (S3) on plain HTTP/1: start its GET now (a
        // missing object is still a clean error) and let it write each chunk straight to this
        // connection (`BlobStreamRelay`), below the response writer.
        if length > 0, let queue = SendfileQueue.current, let loop = queue.eventLoop {
            let relay = BlobStreamRelay(eventLoop: loop)
            if let transfer = try await registry.startBlobTransfer(digest, size: size, range: readRange, into: relay) {
                relay.onFailure(cancel: transfer.cancel)
                let token = queue.enqueue(relay)  // nil: the connection is gone (the relay failed, the GET cancelled)
                let body = ResponseBody(contentLength: Int(length)) { writer in
                    guard let token else { throw ChannelError.ioOnClosedChannel }
                    do {
                        try await writer.write(token)
                        try await withTaskCancellationHandler {
                            try await transfer.completion.get()
                        } onCancel: {
                            transfer.cancel()
                        }
                    } catch {
                        queue.cancel(token: token)
                        relay.fail(error)  // the GET stopped, the connection cut: never a short 200
                        throw error
                    }
                    relay.finish()
                    try await writer.finish(nil)
                }
                return (Response(status: status, headers: headers, body: body), length)
            }
        }
        let body = ResponseBody(contentLength: Int(length)) { writer in
            try await registry.readBlob(repo, digest, range: readRange) { buffer in
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
        }
        return (Response(status: status, headers: headers, body: body), length)
    }

    /// A blob sent while a fallback fills it: the headers of a stored blob's 200 (the length the
    /// upstream declared), the body as it arrives. A fill that fails cuts the body short.
    private func streamedBlob(_ digest: Digest, _ streamed: StreamedBlob) -> Response {
        var headers = baseHeaders()
        headers[.contentType] = "application/octet-stream"
        headers[.dockerContentDigest] = digest.string
        headers[.eTag] = "\"\(digest.string)\""
        headers[.contentLength] = String(streamed.size)
        let body = ResponseBody(contentLength: Int(streamed.size)) { writer in
            try await streamed.write { buffer in try await writer.write(buffer) }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    // MARK: uploads

    private func uploadResponse(_ repo: RepositoryName, _ status: UploadStatus, code: HTTPResponse.Status) -> Response {
        var headers = baseHeaders()
        headers[.location] = "\(uploadBase)/v2/\(repo)/blobs/uploads/\(status.id)"
        headers[.range] = "0-\(max(status.size - 1, 0))"
        headers[.dockerUploadUUID] = status.id
        headers[.contentLength] = "0"
        return Response(status: code, headers: headers)
    }

    private func blobCreated(_ repo: RepositoryName, _ digest: Digest) -> Response {
        var headers = baseHeaders()
        headers[.location] = "/v2/\(repo)/blobs/\(digest)"
        headers[.dockerContentDigest] = digest.string
        headers[.contentLength] = "0"
        return Response(status: .created, headers: headers)
    }

    private func contentLength(_ request: Request) throws(RegistryError) -> Int64? {
        guard let raw = request.headers[.contentLength] else { return nil }
        guard let n = Int64(raw), n >= 0 else { throw RegistryError(.sizeInvalid, "invalid Content-Length") }
        return n
    }

    private func startUpload(_ request: Request, _ context: Context, _ repo: RepositoryName, caller: Caller?,
                             puller: Puller) async throws -> (Response, Int64) {
        if let mount = query(request, "mount") {
            let digest = try parseDigest(mount)
            // Mounting reads the source: only from repositories the caller may pull, and a blob
            // only quarantined content there uses only by those who may read past quarantine.
            if let from = query(request, "from"), RepositoryName.isValid(from),
               gate?.allows(caller, request, context, repository: from, action: .contentRead) ?? true,
               try await admitsBlob(try RepositoryName(from), digest, puller),
               try await registry.mountBlob(repo, from: from, digest) {
                return (blobCreated(repo, digest), 0)
            }
            // Not mountable: fall back to a regular upload session (202) as the spec asks.
        } else if let rawDigest = query(request, "digest") {
            let digest = try parseDigest(rawDigest)
            let size = try await registry.putBlob(repo, digest: digest, contentLength: try contentLength(request), body: request.body)
            return (blobCreated(repo, digest), size)
        }
        let status = try await registry.startUpload(repo)
        return (uploadResponse(repo, status, code: .accepted), 0)
    }

    private func patchUpload(_ request: Request, _ repo: RepositoryName, _ id: String) async throws -> (Response, Int64) {
        let range = try ChunkRange.parse(request.headers[.contentRange])
        if let range, let length = try contentLength(request), length != range.end - range.start + 1 {
            throw RegistryError(.rangeInvalid, "Content-Range does not match Content-Length", status: 416)
        }
        let before = try await registry.uploadStatus(repo, id).size
        let status = try await registry.appendUpload(repo, id, rangeStart: range?.start, body: request.body)
        return (uploadResponse(repo, status, code: .accepted), status.size - before)
    }

    private func putUpload(_ request: Request, _ repo: RepositoryName, _ id: String) async throws -> (Response, Int64) {
        guard let rawDigest = query(request, "digest") else {
            throw RegistryError(.digestInvalid, "digest query parameter required to complete an upload")
        }
        let digest = try parseDigest(rawDigest)
        let range = try ChunkRange.parse(request.headers[.contentRange])
        var appended: Int64 = 0
        let length = try contentLength(request)
        // Append whatever body came (Content-Length, or chunked transfer encoding without one).
        if length != 0 || range != nil {
            let before = try await registry.uploadStatus(repo, id).size
            let status = try await registry.appendUpload(repo, id, rangeStart: range?.start, body: request.body)
            appended = status.size - before
        }
        _ = try await registry.finishUpload(repo, id, digest: digest)
        return (blobCreated(repo, digest), appended)
    }

    // MARK: metrics

    func metricsResponse() async throws -> Response {
        metrics.openUploads.set(Double(try await registry.blobs.openUploadCount()))
        await metrics.storedBytes.set(Double(try registry.metadata.storedBytes()))
        let quarantine = try await registry.metadata.quarantineCounts()
        for state in QuarantineState.allCases {
            metrics.setGauge("berth_manifests_by_quarantine_state", [("state", state.rawValue)], Double(quarantine[state] ?? 0),
                             help: "Manifests by quarantine state (never-quarantined ones are not counted)")
        }
        for feature in features { try await feature.updateMetrics(metrics) }
        if let counted = registry.metadata as? any CountsMetadataRoundTrips { metrics.mirror(counted.roundTrips) }
        metrics.scrapeProcess()
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
    }
}
