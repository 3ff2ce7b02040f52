import Access
import Admission
import BerthAPIContract
import Foundation
import HTTPAPI
import Hummingbird
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import Scanning
import ServiceLifecycle

/// Issue 15 wired into the server: scan on push (the `scan:inventory` event consumer, a service of
/// the feature, so leased), stored layer indexes and inventories (`ScanStore`), SBOM referrers, and
/// `/api/v1/scans/inventory` and `/api/v1/scans/sbom`, judged per repository.
public struct ScanningFeature: RegistryFeature {
    public let inventorier: ScanInventorier
    let poll: Duration
    let logger: Logger
    /// Whether the scan consumer runs (`scan-on-push`); the routes answer either way.
    public let scanOnPush: Bool
    /// The scan policy: quarantine verdicts and the pull gate (nil without a matcher: no findings to judge).
    public let gate: ScanGate?
    /// The continuous re-match keeps current only images pulled or pushed within this many days
    /// (`scan-rematch-days`); 0: every image.
    public let rematchDays: Int

    public init(registry: Registry, store: any ScanStore, configuration: ScanConfiguration = .init(), matcher: FindingMatcher? = nil,
                scanOnPush: Bool = true, rematchDays: Int = 30, poll: Duration = .seconds(1), logger: Logger = Logger(label: "berth.scan")) {
        inventorier = ScanInventorier(registry: registry, store: store, configuration: configuration, matcher: matcher, logger: logger)
        self.scanOnPush = scanOnPush
        self.rematchDays = rematchDays
        self.poll = poll
        self.logger = logger
        gate = matcher.map { ScanGate(registry: registry, findings: $0.store, logger: logger) }
        registry.registerSettingType(ScanGate.settingKey)
    }

    /// Every matched image of the repositories `may` lets read, with its findings counted by
    /// severity, most findings first (what `GET /api/v1/scans` lists; the console's scans page);
    /// nil when this server does not match images against advisories.
    public func scanSummaries(limit: Int, may: (_ repository: String, _ action: Action, _ target: AccessTarget) -> Bool) async throws
        -> ScanListView? {
        guard let matcher = inventorier.matcher else { return nil }
        return try await ScanAPI.summaries(inventorier.registry, findings: matcher.store, pattern: try RepositoryPattern("*"),
                                           severities: nil, limit: limit, may: may)
    }

    /// The scan policy's check of the pull-admission chain (refuses what fails it when `blockPulls` is on).
    public var pullCheck: (any PullAdmissionCheck)? { gate }

    /// The runner of the scan consumer (tests step it).
    public func runner() -> EventConsumerRunner {
        EventConsumerRunner(consumer: ScanConsumer(inventorier: inventorier, gate: gate), store: inventorier.registry.metadata, batchSize: 50,
                            logger: logger)
    }

    /// The continuous re-match, with the policy's verdicts after it.
    public func rematcher() -> FindingRematcher? {
        inventorier.matcher.map {
            FindingRematcher(inventories: inventorier.store, matcher: $0, gate: gate, usage: inventorier.registry.metadata,
                             rematchDays: rematchDays)
        }
    }

    public var services: [any Service] {
        guard scanOnPush else { return [] }
        guard let rematcher = rematcher() else { return [ScanService(runner: runner(), poll: poll)] }
        return [ScanService(runner: runner(), poll: poll),
                FindingRematchService(rematcher: rematcher, poll: poll * 5, logger: logger)]
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let server = routes.server
        let inventorier = self.inventorier
        let gate = self.gate
        // The scan policy: management/read and management/write (the management group's check).
        routes.management.get("scan/policy") { _, _ in
            guard let gate else { throw ScanAPI.noMatcher }
            return server.json(ScanPolicyView(try await gate.current(), now: Date()))
        }
        routes.management.patch("scan/policy") { request, context in
            guard let gate else { throw ScanAPI.noMatcher }
            let actor = context.managementActor ?? Actor(name: "anonymous", address: "-")
            let body = try await server.decode(ScanPolicyUpdateRequest.self, request)
            let change = ScanPolicyChange(
                blockSeverity: body.blockSeverity, ignoreUnfixed: body.ignoreUnfixed, blockPulls: body.blockPulls,
                allow: (body.allow ?? []).map { ScanPolicyChange.Exception(id: $0.id, repository: $0.repository, why: $0.why, until: $0.until) },
                removeAllow: body.removeAllow ?? [])
            let policy: ScanPolicy
            do {
                policy = try await gate.update(change, who: actor.name)
            } catch let e as ScanPolicyInvalid {
                throw ManagementError(status: .badRequest, code: "INVALID", message: e.description)
            }
            await server.access.recordAudit(
                actor: actor.name, address: actor.address, action: "scan-policy.update", target: "scan-policy", outcome: "ok",
                detail: "blockSeverity=\(policy.blockSeverity) ignoreUnfixed=\(policy.ignoreUnfixed) blockPulls=\(policy.blockPulls) "
                    + "allow=\(policy.allow.map(\.id).joined(separator: ",").prefix(500))")
            // The scanner's verdicts on existing images follow the new policy (a background job,
            // from the stored findings; the pull gate's cached verdicts were dropped by the update).
            gate.scheduleRejudgeAll()
            return server.json(ScanPolicyView(policy, now: Date()))
        }
        // Judged per repository (metadata/read there), like `/api/v1/repository?name=`.
        routes.root.get("api/v1/scans/inventory") { request, context in
            let (repo, digest) = try await ScanAPI.target(request, context, server)
            return server.json(try await ScanAPI.inventoryView(inventorier, repository: repo, digest: digest))
        }
        // The same check as the inventory's: what is inside the image (metadata/read and content/read,
        // and the quarantine rule of /v2/).
        routes.root.get("api/v1/scans/findings") { request, context in
            let (repo, digest) = try await ScanAPI.target(request, context, server)
            let ignoreUnfixed: Bool
            switch request.uri.queryParameters["ignoreUnfixed"].map(String.init) {
            case nil, "false": ignoreUnfixed = false
            case "true": ignoreUnfixed = true
            default: throw ManagementError(status: .badRequest, code: "INVALID", message: "ignoreUnfixed is true or false")
            }
            return server.json(try await ScanAPI.findingsView(inventorier, repository: repo, digest: digest, ignoreUnfixed: ignoreUnfixed))
        }
        // Every scanned image of the repositories the caller may read (metadata/read and
        // content/read there, as the findings of one image); others are never named.
        routes.root.get("api/v1/scans") { request, context in
            guard let matcher = inventorier.matcher else { throw ScanAPI.noMatcher }
            return server.json(try await ScanAPI.list(request, context, server, findings: matcher.store))
        }
        // An OpenVEX document uploaded about one image, attached to it as a referrer through the
        // core (push on the repository: content/write, as a /v2/ referrer push needs).
        routes.root.post("api/v1/scans/vex") { request, context in
            let (repo, record) = try await ScanAPI.vexTarget(request, context, server)
            var request = request
            // Over the limit: NIOTooManyBytesError, which the one error mapping answers 413.
            let body = try await request.collectBody(upTo: VEXLimits.maxDocumentBytes)
            let caller = try await server.caller(request, context)
            let actor = caller.map { "\($0.principal.kind.rawValue):\($0.principal.name)" } ?? "anonymous"
            let address = caller?.address?.description ?? server.address(request, context)?.description ?? "-"
            let attached: (referrer: Digest, statements: Int)
            do {
                attached = try await EventOrigin.$current.withValue(EventOrigin(actor: actor, address: address)) {
                    try await VEXReferrers.attach(server.registry, repository: repo, subject: record, document: Array(body.readableBytesView))
                }
            } catch let e as ImportProblem {
                throw ManagementError(status: .badRequest, code: "INVALID", message: "not an OpenVEX document: \(e.description)")
            }
            // The scanner's verdicts on the image (and the indexes holding it) read the new statements.
            try await gate?.rejudge(repository: repo.value, subject: record.digest)
            await server.access.recordAudit(actor: actor, address: address,
                                            action: "scan-vex.import", target: "\(repo.value)@\(record.digest)", outcome: "ok",
                                            detail: "referrer=\(attached.referrer) statements=\(attached.statements)")
            return server.json(ScanVEXImportView(repository: repo.value, subject: record.digest.string, referrer: attached.referrer.string,
                                                 statements: attached.statements), status: .created)
        }
        routes.root.get("api/v1/scans/sbom") { request, context in
            let (repo, digest) = try await ScanAPI.target(request, context, server)
            guard let raw = request.uri.queryParameters["format"], let format = SBOMFormat(rawValue: String(raw)) else {
                throw ManagementError(status: .badRequest, code: "INVALID", message: "give ?format=spdx or ?format=cyclonedx")
            }
            return server.json(try await ScanAPI.sbomDocument(inventorier, repository: repo, digest: digest, format: format))
        }
    }
}

extension ScanPolicyView {
    init(_ p: ScanPolicy, now: Date) {
        self.init(blockSeverity: p.blockSeverity, ignoreUnfixed: p.ignoreUnfixed, blockPulls: p.blockPulls, allow: p.allow.map {
            ScanPolicyExceptionView(id: $0.id, repository: $0.repository, who: $0.who, why: $0.why, until: $0.until, createdAt: $0.createdAt,
                                    expired: $0.isExpired(at: now))
        })
    }
}

enum ScanAPI {
    static let maxDocumentBytes: Int64 = 32 << 20
    static let noMatcher = ManagementError(status: .notFound, code: "NOT_FOUND", message: "this registry does not match images against advisories")

    /// The repository and manifest a request names (`?repository=R&reference=TAG|DIGEST`), after
    /// the caller's right to read the repository's metadata is checked.
    static func target(_ request: Request, _ context: BerthRequestContext, _ server: FeatureServer) async throws
        -> (RepositoryName, Digest) {
        guard let rawRepo = request.uri.queryParameters["repository"], let rawRef = request.uri.queryParameters["reference"] else {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "give ?repository=NAME&reference=TAG_OR_DIGEST")
        }
        let repo: RepositoryName
        let reference: Reference
        do {
            repo = try RepositoryName(String(rawRepo))
            reference = try Reference(parsing: String(rawRef))
        } catch {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "\(error)")
        }
        // An inventory lists what is inside the image and an SBOM is a blob's content: content/read
        // as well as metadata/read (found in review: metadata/read alone was enough).
        try await server.requireOnRepository(request, context, repository: repo.value, action: [.metadataRead, .contentRead])
        let digest: Digest
        let record: ManifestRecord?
        do {
            digest = try await server.registry.resolve(repo, reference)
            record = try await server.registry.metadata.manifest(repository: repo.value, digest: digest)
        } catch let e as RegistryError {
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: e.message)
        }
        guard let record else {
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "no manifest \(digest) in \(repo.value)")
        }
        // What /v2/ would not serve this caller (quarantine) is not shown here either.
        if !QuarantineState.isPullable(record.quarantineState) {
            let caller = try await server.caller(request, context)
            try await server.require(request, context, caller: caller, repository: repo.value, action: .contentRead,
                                     target: AccessTarget(quarantine: .manifest(state: record.quarantineState ?? .pending, reason: nil)))
        }
        return (repo, digest)
    }

    /// Matched images (per repository) `GET /api/v1/scans` reads at most; past it the answer is `truncated`.
    static let maxListedImages = 10_000

    /// The image an uploaded VEX document is about (`?repository=R&reference=TAG|DIGEST`), after
    /// the caller's right to push to the repository is checked (content/write; a repository a
    /// pull-through cache fills takes no client write).
    static func vexTarget(_ request: Request, _ context: BerthRequestContext, _ server: FeatureServer) async throws
        -> (RepositoryName, ManifestRecord) {
        guard let rawRepo = request.uri.queryParameters["repository"], let rawRef = request.uri.queryParameters["reference"] else {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "give ?repository=NAME&reference=TAG_OR_DIGEST")
        }
        let repo: RepositoryName
        let reference: Reference
        do {
            repo = try RepositoryName(String(rawRepo))
            reference = try Reference(parsing: String(rawRef))
        } catch {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "\(error)")
        }
        try await server.requireOnRepository(request, context, repository: repo.value, action: [.contentWrite, .metadataRead])
        try await server.refuseClientWrite(repo)
        let record: ManifestRecord?
        do {
            let digest = try await server.registry.resolve(repo, reference)
            record = try await server.registry.metadata.manifest(repository: repo.value, digest: digest)
        } catch let e as RegistryError {
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: e.message)
        }
        guard let record else {
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "no manifest \(rawRef.prefix(200)) in \(repo.value)")
        }
        return (repo, record)
    }

    /// `GET /api/v1/scans`: the matched images (`FindingStore.scannedImages`, at most
    /// `maxListedImages` read) of the repositories the pattern matches, the caller may read and
    /// the catalog lists, most findings at the asked severities first, at most `limit`.
    static func list(_ request: Request, _ context: BerthRequestContext, _ server: FeatureServer,
                     findings: any FindingStore) async throws -> ScanListView {
        let q = request.uri.queryParameters
        var asked = Set<String>()
        for word in (q["severity"] ?? "").split(separator: ",") {
            guard let name = FindingSeverity.parse(word.trimmingCharacters(in: .whitespaces)) else {
                throw ManagementError(status: .badRequest, code: "INVALID",
                                      message: "severity: a comma-separated list of \(FindingSeverity.names.joined(separator: ", "))")
            }
            asked.insert(name)
        }
        let severities: Set<String>? = asked.isEmpty ? nil : asked
        let pattern: RepositoryPattern
        do { pattern = try RepositoryPattern(q["repository"].map(String.init) ?? "*") } catch {
            throw ManagementError(status: .badRequest, code: "INVALID", message: "repository: an exact name, prefix/* or *")
        }
        let limit = min(try server.queryInt(request, "limit") ?? 100, 1000)
        let caller = try await server.caller(request, context)
        guard caller != nil else {
            throw server.challenge(request, scope: nil, message: "authentication required", insufficientScope: false)
        }
        return try await summaries(server.registry, findings: findings, pattern: pattern, severities: severities, limit: limit) {
            repository, action, target in
            // A management call: a token's `registry:management` scope is judged by the principal's
            // rights on each repository, as `requireOnRepository` does (review: `berth scan list`,
            // whose token has only that scope, was shown nothing).
            var target = target
            target.management = true
            return server.allows(caller, request, context, repository: repository, action: action, target: target)
        }
    }

    /// Behind `GET /api/v1/scans` and the console's scans page: the matched image manifests of the
    /// repositories the pattern matches and `may` lets read (metadata/read and content/read, not
    /// hidden from listings), not one the reader may not pull for its quarantine state, with their
    /// findings counted by severity.
    static func summaries(_ registry: Registry, findings: any FindingStore, pattern: RepositoryPattern, severities: Set<String>?,
                          limit: Int, may: (_ repository: String, _ action: Action, _ target: AccessTarget) -> Bool)
        async throws -> ScanListView {
        var out: [ScanImageSummaryView] = []
        var truncated = false
        // One store query, paged: the matched manifests of the repositories the pattern names
        // (by name prefix), at most `maxListedImages` rows read.
        let prefix: String? = pattern.value == "*" ? nil : pattern.value.hasSuffix("/*") ? String(pattern.value.dropLast(1)) : pattern.value
        var readable: [String: (allowed: Bool, hiddenTags: Set<String>)] = [:]
        var cursor: ScannedImageCursor?
        var read = 0
        page: while true {
            let rows = try await findings.scannedImages(namePrefix: prefix, after: cursor, limit: 500)
            if rows.isEmpty { break }
            for row in rows {
                read += 1
                if read > maxListedImages { truncated = true; break page }
                guard pattern.matches(row.repository) else { continue }
                if readable[row.repository] == nil {
                    var allowed = may(row.repository, [.metadataRead, .contentRead], .none)
                    var hiddenTags = Set<String>()
                    if allowed {
                        // The catalog's listing rule (review, L1): a repository hidden from listings is not named here.
                        let hidden = try await registry.listHidden(row.repository)
                        allowed = !hidden.repository
                        hiddenTags = hidden.tags
                    }
                    if readable.count > 10_000 { readable.removeAll() }
                    readable[row.repository] = (allowed, hiddenTags)
                }
                guard let access = readable[row.repository], access.allowed else { continue }
                // What /v2/ would not serve this caller (quarantine) is not listed either.
                if !QuarantineState.isPullable(row.quarantineState),
                   !may(row.repository, .contentRead, AccessTarget(quarantine: .manifest(state: row.quarantineState ?? .pending, reason: nil))) { continue }
                if let severities, !severities.contains(where: { row.counts[$0] != nil }) { continue }
                out.append(ScanImageSummaryView(
                    repository: row.repository, manifest: row.manifest.string, tags: row.tags.filter { !access.hiddenTags.contains($0) },
                    advisoryVersion: row.advisoryVersion, matchedAt: row.matchedAt, counts: row.counts, total: row.total))
            }
            guard rows.count == 500 else { break }
            cursor = rows.last?.cursor
        }
        // Most findings at the asked severities (all, without a filter) first, most severe first.
        func key(_ v: ScanImageSummaryView) -> [Int] {
            FindingSeverity.names.reversed().map { severities == nil || severities!.contains($0) ? -(v.counts[$0] ?? 0) : 0 }
        }
        out.sort { (key($0).lexicographicallyPrecedes(key($1))) || (key($0) == key($1) && ($0.repository, $0.manifest) < ($1.repository, $1.manifest)) }
        if out.count > limit {
            out = Array(out.prefix(limit))
            truncated = true
        }
        return ScanListView(images: out, truncated: truncated)
    }

    static func inventoryView(_ inventorier: ScanInventorier, repository: RepositoryName, digest: Digest) async throws -> ScanInventoryView {
        guard let stored = try await inventorier.store.inventory(manifest: digest) else {
            throw ManagementError(status: .notFound, code: "NOT_FOUND",
                                  message: "\(repository.value)@\(digest) has not been inventoried yet (the scanner follows pushes)")
        }
        var inventory: ImageInventory?
        if !stored.document.isEmpty {
            do { inventory = try ScanDocument.decode(ImageInventory.self, stored.document) } catch {
                throw ManagementError(status: .internalServerError, code: "UNKNOWN", message: "the stored inventory cannot be read")
            }
        }
        var children: [String]?
        if let bytes = try await inventorier.registry.metadata.inlineContent(digest),
           let parsed = try? JSONDecoder().decode(ScannedManifest.self, from: Data(bytes)), let manifests = parsed.manifests {
            children = manifests.map(\.digest)
        }
        let referrers = try await inventorier.registry.metadata.referrers(repository: repository.value, subject: digest)
        let sboms = referrers.compactMap { r -> ScanSBOMReferrerView? in
            guard r.annotations?[SBOMReferrers.generatorAnnotation] != nil,
                  let format = SBOMFormat.allCases.first(where: { $0.mediaType == r.artifactType }) else { return nil }
            return ScanSBOMReferrerView(format: format.rawValue, artifactType: format.mediaType, manifest: r.digest.string)
        }.sorted { ($0.format, $0.manifest) < ($1.format, $1.manifest) }
        return ScanInventoryView(
            repository: repository.value, manifest: digest.string, status: stored.status.rawValue, detail: stored.detail,
            catalogerVersion: stored.catalogerVersion, createdAt: stored.createdAt, layers: stored.layers.map(\.string),
            os: inventory?.os.map { ScanOSView(id: $0.id, versionID: $0.versionID, versionCodename: $0.versionCodename, prettyName: $0.prettyName) },
            packages: (inventory?.packages ?? []).map {
                ScanPackageView(type: $0.type.rawValue, name: $0.name, version: $0.version, purl: $0.purl, sourceName: $0.sourceName,
                                sourceVersion: $0.sourceVersion, architecture: $0.architecture, locations: $0.locations)
            },
            problems: (inventory?.problems ?? []).prefix(200).map(\.description), children: children, sboms: sboms)
    }

    static func findingsView(_ inventorier: ScanInventorier, repository: RepositoryName, digest: Digest,
                             ignoreUnfixed: Bool) async throws -> ScanFindingsView {
        guard let matcher = inventorier.matcher else {
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "this registry does not match images against advisories")
        }
        guard let stored = try await matcher.store.findings(manifest: digest) else {
            let inventory = try await inventorier.store.inventory(manifest: digest)
            let why = switch inventory?.status {
            case .notAnImage?: "is not an image (\(inventory?.detail?.prefix(200) ?? "an artifact")): it has no findings of its own"
            case .failed?: "could not be inventoried (\(inventory?.detail?.prefix(200) ?? "")): it has no findings"
            default: "has not been scanned yet (the scanner follows pushes; is scan-on-push on?)"
            }
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "\(repository.value)@\(digest) \(why)")
        }
        let (vex, vexProblems) = try await VEXReferrers.index(inventorier.registry, repository: repository.value, subjects: [digest])
        let all = stored.findings.map { f in
            let decision = vex.isEmpty ? nil : vex.decision(for: VEXSubject(
                manifest: digest.string, vulnerability: f.advisoryID, aliases: f.aliases, package: f.package,
                sourcePackage: f.sourcePackage, installedVersion: f.installedVersion))
            return ScanFindingView(id: f.advisoryID, aliases: f.aliases, ecosystem: f.ecosystem, package: f.package,
                                   sourcePackage: f.sourcePackage, installedVersion: f.installedVersion, fixedVersion: f.fixedVersion,
                                   severity: f.severity, score: f.score, fixState: f.fixState,
                                   vex: decision.map {
                                       ScanVEXView(status: $0.statement.status.rawValue, suppressed: $0.suppressed,
                                                   justification: $0.statement.justification, impactStatement: $0.statement.impactStatement,
                                                   actionStatement: $0.statement.actionStatement, source: $0.source)
                                   })
        }
        let shown = ignoreUnfixed ? all.filter { $0.fixedVersion != nil } : all
        func rank(_ s: String) -> Int { FindingSeverity.names.firstIndex(of: s) ?? 0 }
        let sorted = shown.sorted { (-rank($0.severity), $0.id, $0.package, $0.installedVersion) < (-rank($1.severity), $1.id, $1.package, $1.installedVersion) }
        return ScanFindingsView(repository: repository.value, manifest: digest.string, advisoryVersion: stored.advisoryVersion,
                                databaseVersion: try await matcher.advisories.currentAdvisoryVersion(), matchedAt: stored.matchedAt,
                                findings: sorted, unfixedHidden: all.count - shown.count,
                                suppressed: sorted.filter { $0.vex?.suppressed == true }.count,
                                vexProblems: vexProblems.isEmpty ? nil : vexProblems)
    }

    /// The newest SBOM referrer of `format` Berth pushed for the manifest, its document read back
    /// from the blob its layer names.
    static func sbomDocument(_ inventorier: ScanInventorier, repository: RepositoryName, digest: Digest,
                             format: SBOMFormat) async throws -> ScanSBOMDocumentView {
        let metadata = inventorier.registry.metadata
        let candidates = try await metadata.referrers(repository: repository.value, subject: digest)
            .filter { $0.artifactType == format.mediaType && $0.annotations?[SBOMReferrers.generatorAnnotation] != nil }
            .sorted { ($0.createdAt, $0.digest) > ($1.createdAt, $1.digest) }
        guard let referrer = candidates.first, let bytes = try await metadata.inlineContent(referrer.digest),
              let manifest = try? JSONDecoder().decode(ScannedManifest.self, from: Data(bytes)),
              let layer = manifest.layers?.first, let layerDigest = try? Digest(parsing: layer.digest) else {
            throw ManagementError(status: .notFound, code: "NOT_FOUND",
                                  message: "no \(format.rawValue) SBOM for \(repository.value)@\(digest) yet (the scanner follows pushes)")
        }
        guard let size = try await metadata.linkedBlobSize(repository: repository.value, digest: layerDigest) else {
            throw ManagementError(status: .notFound, code: "NOT_FOUND", message: "the SBOM's document \(layerDigest) is not in \(repository.value)")
        }
        guard size <= maxDocumentBytes else {
            throw ManagementError(status: .badRequest, code: "INVALID",
                                  message: "the SBOM document is \(size) bytes, over the \(maxDocumentBytes)-byte limit of this endpoint; pull it through /v2/")
        }
        let buffer = try await inventorier.read(layerDigest, size: size, range: 0..<size)
        return ScanSBOMDocumentView(repository: repository.value, subject: digest.string, format: format.rawValue,
                                    referrer: referrer.digest.string, document: String(decoding: buffer.readableBytesView, as: UTF8.self))
    }
}
