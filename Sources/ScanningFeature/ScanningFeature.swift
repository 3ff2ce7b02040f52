import Access
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
    }

    /// The runner of the scan consumer (tests step it).
    public func runner() -> EventConsumerRunner {
        EventConsumerRunner(consumer: ScanConsumer(inventorier: inventorier), store: inventorier.registry.metadata, batchSize: 50,
                            logger: logger)
    }

    public var services: [any Service] {
        guard scanOnPush else { return [] }
        guard let matcher = inventorier.matcher else { return [ScanService(runner: runner(), poll: poll)] }
        return [ScanService(runner: runner(), poll: poll),
                FindingRematchService(rematcher: FindingRematcher(inventories: inventorier.store, matcher: matcher,
                                                                  usage: inventorier.registry.metadata, rematchDays: rematchDays),
                                      poll: poll * 5, logger: logger)]
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let server = routes.server
        let inventorier = self.inventorier
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
        routes.root.get("api/v1/scans/sbom") { request, context in
            let (repo, digest) = try await ScanAPI.target(request, context, server)
            guard let raw = request.uri.queryParameters["format"], let format = SBOMFormat(rawValue: String(raw)) else {
                throw ManagementError(status: .badRequest, code: "INVALID", message: "give ?format=spdx or ?format=cyclonedx")
            }
            return server.json(try await ScanAPI.sbomDocument(inventorier, repository: repo, digest: digest, format: format))
        }
    }
}

enum ScanAPI {
    static let maxDocumentBytes: Int64 = 32 << 20

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
        let all = stored.findings.map {
            ScanFindingView(id: $0.advisoryID, aliases: $0.aliases, ecosystem: $0.ecosystem, package: $0.package,
                            sourcePackage: $0.sourcePackage, installedVersion: $0.installedVersion, fixedVersion: $0.fixedVersion,
                            severity: $0.severity, score: $0.score, fixState: $0.fixState)
        }
        let shown = ignoreUnfixed ? all.filter { $0.fixedVersion != nil } : all
        func rank(_ s: String) -> Int { FindingSeverity.names.firstIndex(of: s) ?? 0 }
        let sorted = shown.sorted { (-rank($0.severity), $0.id, $0.package, $0.installedVersion) < (-rank($1.severity), $1.id, $1.package, $1.installedVersion) }
        return ScanFindingsView(repository: repository.value, manifest: digest.string, advisoryVersion: stored.advisoryVersion,
                                databaseVersion: try await matcher.advisories.currentAdvisoryVersion(), matchedAt: stored.matchedAt,
                                findings: sorted, unfixedHidden: all.count - shown.count)
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
