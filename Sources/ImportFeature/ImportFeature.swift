import Access
import BerthAPIContract
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryCore
import RegistryStore
import UpstreamClient

/// Import (issue 17): `POST /api/v1/imports` starts a server-side copy of an image from another
/// registry, `GET /api/v1/imports/{id}` follows it. The copy goes through the registry core as a
/// push does (locks, quotas, quarantine, events with the caller as origin); the source is an
/// `UpstreamClient` (untrusted: every digest verified before anything is stored, destinations
/// checked by the outbound policy). Who may import: whoever may push to the target repository.
/// Jobs run on the node that accepted them (at most `ImportJobs.maxRunning` there) and are kept in
/// the metadata store (`ImportJobStore`: written when started, every `JobRecorder.interval` while
/// running, and when finished), so every node of a cluster answers `GET /api/v1/imports/{id}` and
/// a restart keeps them; a running job whose node stopped writing is shown failed after
/// `JobRecorder.staleAfter`. A failed import is retried by running it again, which skips every
/// blob already in the target repository.
public struct ImportFeature: RegistryFeature {
    let policy: OutboundPolicy
    let limits: UpstreamLimits
    let jobs = ImportJobs()
    let recorder: JobRecorder?
    let log: Logger

    /// `store` keeps the jobs for every node (nil: this process's memory only, for tests);
    /// `node` names this node in them.
    public init(policy: OutboundPolicy, limits: UpstreamLimits = UpstreamLimits(), store: (any ImportJobStore)? = nil,
                node: String = "local", log: Logger = Logger(label: "berth.import")) {
        self.policy = policy
        self.limits = limits
        self.recorder = store.map { JobRecorder(store: $0, node: node, log: log) }
        self.log = log
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let server = routes.server
        // Judged per target repository (push rights), not by the management check: on the root
        // router, like the repository routes of the management API (a token needs the
        // registry:management scope, then the principal's rights on the repository decide).
        routes.root.post("api/v1/imports") { request, context in
            try await start(request, context, server)
        }
        routes.root.get("api/v1/imports/:id") { request, context in
            try await show(request, context, server)
        }
    }

    func start(_ request: Request, _ context: BerthRequestContext, _ server: FeatureServer) async throws -> Response {
        let caller = try await server.caller(request, context)
        // Who may import is known only from the body's target: an anonymous caller learns nothing more.
        guard caller != nil else { throw server.challenge(request, scope: nil, message: "authentication required", insufficientScope: false) }
        let body = try await server.decode(ImportRequest.self, request)
        let plan = try ImportPlan(body)
        try await server.require(request, context, caller: caller, repository: plan.target.value, action: [.contentRead, .contentWrite],
                                 target: AccessTarget(management: true))
        // A pull-through cache's target is filled from its upstream only: an import there would be
        // served as the upstream's image, as a client's push would (refused the same way).
        try await server.refuseClientWrite(plan.target)
        // An existing tag is refused up front (and again just before it would move).
        if !plan.force, let current = try await ImportCopier.currentTag(server.registry, plan),
           case .digest(let wanted) = plan.sourceReference, wanted != current {
            throw RegistryError(.denied, "tag \(plan.tag) of \(plan.target) already points to \(current); use force to move it", status: 409)
        }
        let client = try Self.upstream(plan, body: body, policy: policy, limits: limits)
        let actor = caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous"
        let origin = EventOrigin(actor: actor, address: caller?.address?.description ?? server.address(request, context)?.description ?? "-",
                                 requestID: nil, host: nil, method: "POST", userAgent: request.headers[.userAgent].map { String($0.prefix(200)) })
        guard let job = jobs.add(source: body.source, image: body.image, owner: actor) else {
            throw RegistryError(.tooManyRequests, "too many imports are running (at most \(ImportJobs.maxRunning) on this node, "
                                + "\(ImportJobs.maxRunningPerOwner) per identity); try again when one has finished", status: 429)
        }
        let copier = ImportCopier(registry: server.registry, upstream: client, plan: plan, progress: job, log: log)
        if let recorder {
            do {
                try await recorder.save(job)
            } catch {
                job.fail("the import could not be recorded", code: OCIErrorCode.unsupported.rawValue)
                log.error("import \(job.id) not recorded", metadata: ["error": "\(String(describing: error).prefix(300))"])
                throw RegistryError(.unsupported, "the import could not be recorded; try again", status: 503)
            }
        }
        log.info("import \(job.id) started", metadata: ["source": "\(body.source.prefix(300))", "image": "\(body.image)", "actor": "\(actor)"])
        let recording = recorder.map { recorder in Task { await recorder.follow(job) } }
        Task { [log] in
            await EventOrigin.$current.withValue(origin) {
                do {
                    let digest = try await copier.run()
                    job.finish(digest: digest)
                    log.info("import \(job.id) succeeded", metadata: ["digest": "\(digest)"])
                } catch {
                    let failure = Self.describe(error)
                    job.fail(failure.message, code: failure.code)
                    log.info("import \(job.id) failed", metadata: ["error": "\(failure.message.prefix(300))"])
                }
            }
            // the final state written before the follower stops
            recording?.cancel()
            await recorder?.finish(job)
        }
        return server.json(job.view, status: .accepted)
    }

    func show(_ request: Request, _ context: BerthRequestContext, _ server: FeatureServer) async throws -> Response {
        let caller = try await server.caller(request, context)
        guard caller != nil else { throw server.challenge(request, scope: nil, message: "authentication required", insufficientScope: false) }
        let id = try context.parameters.require("id")
        let notFound = ManagementError(status: .notFound, code: "NOT_FOUND", message: "no import \(id.prefix(64))")
        guard id.utf8.count <= 64 else { throw notFound }
        // This node's own job is the freshest; any other is read from the store.
        let found: (image: String, view: ImportView)?
        if let job = jobs.job(id) {
            found = (job.image, job.view)
        } else if let recorder {
            found = try await recorder.load(id, now: Date())
        } else {
            found = nil
        }
        // Unknown and not yours look the same.
        guard let found, let target = try? ImagePlanTarget(found.image),
              server.allows(caller, request, context, repository: target, action: .contentWrite,
                            target: AccessTarget(management: true)) else {
            throw notFound
        }
        return server.json(found.view)
    }

    static func upstream(_ plan: ImportPlan, body: ImportRequest, policy: OutboundPolicy,
                         limits: UpstreamLimits) throws -> UpstreamClient {
        var credentials: UpstreamCredentials?
        switch (body.username, body.password) {
        case (nil, nil): credentials = nil
        case (let u?, let p?) where !u.isEmpty: credentials = UpstreamCredentials(username: u, password: p)
        default: throw RegistryError(.unsupported, "give both username and password, or neither", status: 400)
        }
        do {
            return try UpstreamClient(registry: plan.sourceRegistry, plainHTTP: body.plainHTTP ?? false, credentials: credentials,
                                      policy: policy, limits: limits)
        } catch {
            throw RegistryError(.nameInvalid, error.message, status: 400)
        }
    }

    static func describe(_ error: any Error) -> (message: String, code: String) {
        if let e = error as? UpstreamError { return (e.registryError.message, e.registryError.code.rawValue) }
        if let e = error as? RegistryError { return (e.message, e.code.rawValue) }
        return (String("\(error)".prefix(300)), OCIErrorCode.unsupported.rawValue)
    }
}

/// `REPOSITORY:TAG` of an image in this registry: its repository.
func ImagePlanTarget(_ image: String) throws -> String {
    let reference = try ImageReference(parsing: image)
    return reference.repository
}

/// What an import request asks for, checked.
struct ImportPlan: Sendable {
    let sourceRegistry: String
    let sourceRepository: String
    let sourceReference: Reference
    let target: RepositoryName
    let tag: String
    let allPlatforms: Bool
    let includeReferrers: Bool
    let force: Bool

    init(_ body: ImportRequest) throws {
        func invalid(_ message: String) -> RegistryError { RegistryError(.nameInvalid, message, status: 400) }
        guard body.source.utf8.count <= 512, body.image.utf8.count <= 512 else { throw invalid("source or image too long") }
        let source = try ImageReference(parsing: body.source)
        guard let host = source.host else {
            throw invalid("the source must name its registry: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST")
        }
        sourceRegistry = host
        // Docker Hub's official images live under library/.
        sourceRepository = (host == "docker.io" && !source.repository.contains("/")) ? "library/" + source.repository : source.repository
        if let digest = source.digest {
            sourceReference = .digest(digest)
        } else {
            sourceReference = .tag(source.tagOrLatest)
        }
        let image = try ImageReference(parsing: body.image)
        guard image.host == nil, image.digest == nil else {
            throw invalid("the image is REPOSITORY:TAG in this registry (no registry host, no digest)")
        }
        target = try RepositoryName(image.repository)
        tag = image.tagOrLatest
        allPlatforms = body.allPlatforms ?? false
        includeReferrers = body.includeReferrers ?? false
        force = body.force ?? false
    }
}

/// The jobs of this process.
final class ImportJobs: Sendable {
    static let keep = 200
    /// Running imports at once on this node, and per identity (review: nothing bounded them).
    static let maxRunning = 4
    static let maxRunningPerOwner = 2
    private let jobs = NIOLockedValueBox<[ImportJob]>([])

    /// A new running job, or nil when the node or the owner already runs as many as allowed.
    func add(source: String, image: String, owner: String) -> ImportJob? {
        let job = ImportJob(id: UUID().uuidString.lowercased(), source: source, image: image, owner: owner)
        return jobs.withLockedValue { list -> ImportJob? in
            let running = list.filter(\.running)
            guard running.count < Self.maxRunning, running.filter({ $0.owner == owner }).count < Self.maxRunningPerOwner else {
                return nil
            }
            list.append(job)
            // Finished jobs beyond the limit are forgotten, oldest first; running ones are kept.
            while list.count > Self.keep, let i = list.firstIndex(where: { !$0.running }) { list.remove(at: i) }
            return job
        }
    }

    func job(_ id: String) -> ImportJob? { jobs.withLockedValue { $0.first { $0.id == id } } }
}

/// One job's progress, updated by its copier.
final class ImportJob: Sendable {
    let id: String
    let source: String
    let image: String
    let owner: String
    private let state: NIOLockedValueBox<ImportView>
    private let manifests = NIOLockedValueBox(0)

    /// Counts one manifest copied; past `limit` the import fails (400: the source is too large
    /// or hostile to copy in one import).
    func countManifest(limit: Int) throws {
        let count = manifests.withLockedValue { n -> Int in
            n += 1
            return n
        }
        guard count <= limit else {
            throw RegistryError(.manifestInvalid, "the source names more than \(limit) manifests (indexes, children and referrers) for one import", status: 400)
        }
    }

    init(id: String, source: String, image: String, owner: String) {
        self.id = id
        self.source = source
        self.image = image
        self.owner = owner
        state = NIOLockedValueBox(ImportView(id: id, source: source, image: image, state: "running", createdAt: Date()))
    }

    var view: ImportView { state.withLockedValue { $0 } }
    var running: Bool { view.state == "running" }

    func update(_ change: (inout ImportView) -> Void) { state.withLockedValue { change(&$0) } }

    func finish(digest: Digest) {
        update {
            $0.state = "succeeded"
            $0.digest = digest.string
            $0.finishedAt = Date()
        }
    }

    func fail(_ message: String, code: String) {
        update {
            $0.state = "failed"
            $0.error = message
            $0.errorCode = code
            $0.finishedAt = Date()
        }
    }
}

/// Writes this node's jobs to the `ImportJobStore` and reads other nodes' back.
struct JobRecorder: Sendable {
    /// How often a running job is written (its progress, and that its node is alive).
    static let interval: Duration = .seconds(2)
    /// A running job not written for this long is shown failed: its node stopped.
    static let staleAfter: TimeInterval = 60
    /// Finished jobs kept (the newest), and how long any job is kept after its last write.
    static let keep = 1000
    static let keepFor: TimeInterval = 7 * 86_400

    let store: any ImportJobStore
    let node: String
    let log: Logger
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .secondsSince1970
        return e
    }()
    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .secondsSince1970
        return d
    }()

    func record(_ job: ImportJob, at now: Date) throws -> ImportJobRecord {
        let view = job.view
        return ImportJobRecord(id: job.id, owner: job.owner, image: job.image, state: view.state,
                               document: try Self.encoder.encode(view), node: node, createdAt: view.createdAt, updatedAt: now)
    }

    func save(_ job: ImportJob) async throws {
        _ = try await store.saveImportJob(try record(job, at: Date()))
    }

    /// Old jobs trimmed once per job, when it ends (not on every progress write).
    func prune() async {
        _ = try? await store.pruneImportJobs(keep: Self.keep, staleBefore: Date().addingTimeInterval(-Self.keepFor))
    }

    /// Writes the running job every `interval` until cancelled (write errors are logged and retried
    /// at the next tick: the copy goes on).
    func follow(_ job: ImportJob) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.interval)
            guard !Task.isCancelled, job.running else { return }
            do { try await save(job) } catch {
                log.warning("import \(job.id): progress not recorded", metadata: ["error": "\(String(describing: error).prefix(300))"])
            }
        }
    }

    /// The finished job, written (retried a few times: a lost final write would leave it running
    /// until it goes stale).
    func finish(_ job: ImportJob) async {
        for attempt in 0..<5 {
            do {
                try await save(job)
                await prune()
                return
            } catch {
                log.warning("import \(job.id): final state not recorded", metadata: ["attempt": "\(attempt + 1)",
                                                                                     "error": "\(String(describing: error).prefix(300))"])
                try? await Task.sleep(for: .milliseconds(200 << attempt))
            }
        }
    }

    /// A job of any node, as `GET /api/v1/imports/{id}` shows it.
    func load(_ id: String, now: Date) async throws -> (image: String, view: ImportView)? {
        guard let record = try await store.importJob(id: id),
              var view = try? Self.decoder.decode(ImportView.self, from: record.document) else { return nil }
        if record.running, now.timeIntervalSince(record.updatedAt) > Self.staleAfter {
            view.state = "failed"
            view.error = "the node running this import stopped (no progress recorded since \(RFC3339.format(record.updatedAt))); "
                + "run the import again to resume it"
            view.errorCode = OCIErrorCode.unsupported.rawValue
            view.finishedAt = record.updatedAt
        }
        return (record.image, view)
    }
}
