import Access
import Admission
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import OCIModel
import RegistryCore
import RegistryStore

/// The pages of what runs beside the registry: tasks and their runs, replicas, and on the image
/// page its inventory and SBOM downloads.
extension ConsoleRoutes {
    static let sbomFormats: [(name: String, mediaType: String, label: String, suffix: String)] = [
        ("spdx", "application/spdx+json", "SPDX 2.3 (JSON)", "spdx.json"),
        ("cyclonedx", "application/vnd.cyclonedx+json", "CycloneDX 1.5 (JSON)", "cdx.json"),
    ]
    static let generatorAnnotation = "dev.berth.sbom.generator"
    static let maxSBOMBytes: Int64 = 32 << 20
    static let runLogBytes = 256 * 1024

    // MARK: image page parts

    /// The inventory summary and SBOM links of the image page.
    func scanData(_ repo: RepositoryName, _ digest: Digest, url: String) async throws -> [String: Any] {
        var data: [String: Any] = [:]
        if let inventorySeam = seams.inventory {
            if let inventory = try await inventorySeam(digest) {
                var facts: [String: Any] = ["status": inventory.status, "created": Self.time(inventory.createdAt)]
                if let detail = inventory.detail { facts["detail"] = detail }
                if let os = inventory.os { facts["os"] = os }
                facts["packageTypes"] = inventory.packagesByType.sorted { $0.key < $1.key }.map {
                    ["type": $0.key, "count": $0.value] as [String: Any]
                }
                facts["packageCount"] = inventory.packagesByType.values.reduce(0, +)
                data["inventory"] = facts
            } else {
                data["inventoryPending"] = true
            }
        }
        if let findingsSeam = seams.findings {
            if let found = try await findingsSeam(digest) {
                data["findings"] = Self.findingsData(found)
            } else {
                data["findingsPending"] = true
            }
        } else {
            data["findingsUnavailable"] = true
        }
        let referrers = try await server.registry.metadata.referrers(repository: repo.value, subject: digest)
        data["sboms"] = Self.sbomFormats.compactMap { format -> [String: Any]? in
            guard referrers.contains(where: { $0.artifactType == format.mediaType && $0.annotations?[Self.generatorAnnotation] != nil })
            else { return nil }
            return ["format": format.name, "label": format.label, "urlRepository": url, "digest": digest.string]
        }
        return data
    }

    /// The findings section: counts by severity drawn as a bar chart (SVG made here, no script),
    /// and the 50 most severe findings.
    static let severityOrder = ["Critical", "High", "Medium", "Low", "None", "Unknown"]

    /// Counts by severity as the bars of a chart (SVG made by the template, no script).
    static func severityChart(_ counts: [String: Int]) -> [String: Any] {
        let order = severityOrder
        let most = max(1, counts.values.max() ?? 1)
        let colours = ["Critical": "#7a0000", "High": "#b3261e", "Medium": "#8a5a00", "Low": "#3a5f0b", "None": "#555555", "Unknown": "#555555"]
        let bars = order.enumerated().map { index, severity -> [String: Any] in
            let count = counts[severity] ?? 0
            let width = count == 0 ? 0 : max(2, 260 * count / most)
            return ["severity": severity, "count": count, "y": 4 + 22 * index, "textY": 17 + 22 * index, "width": width,
                    "labelX": 96 + width, "fill": colours[severity] ?? "#555555"]
        }
        return ["summary": order.map { "\($0) \(counts[$0] ?? 0)" }.joined(separator: ", "), "bars": bars,
                "chartHeight": 8 + 22 * order.count]
    }

    static func findingsData(_ found: ConsoleFindings) -> [String: Any] {
        let order = severityOrder
        func rank(_ s: String) -> Int { order.firstIndex(of: s) ?? order.count }
        var counts: [String: Int] = [:]
        for f in found.findings { counts[f.severity, default: 0] += 1 }
        let sorted = found.findings.sorted {
            (rank($0.severity), $0.id, $0.package, $0.installedVersion) < (rank($1.severity), $1.id, $1.package, $1.installedVersion)
        }
        return severityChart(counts).merging([
            "advisoryVersion": found.advisoryVersion, "total": found.findings.count,
            "hasRows": !sorted.isEmpty,
            "rows": sorted.prefix(50).map {
                ["id": $0.id, "severity": $0.severity, "package": $0.package, "installed": $0.installedVersion,
                 "fixed": $0.fixedVersion ?? "not fixed"] as [String: Any]
            },
        ]) { _, new in new }
    }

    // MARK: findings across images

    static let scanPageLimit = 200

    /// `GET /console/scans`: the matched images of the repositories the viewer may read (metadata
    /// and content read, and the quarantine rule of /v2/, as `GET /api/v1/scans`), with their
    /// findings by severity, linking to each image's page.
    func scansPage(_ viewer: Viewer) async throws -> Response {
        guard viewer.caller != nil else { throw ConsoleError(status: .unauthorized, message: "sign in") }
        guard let source = seams.scans, let list = try await source(Self.scanPageLimit, { repository, action, target in
            allowed(viewer, repository: repository, action, target: target)
        }) else {
            return render("scans", ["title": "Scan findings", "unavailable": true, "images": [[String: Any]]()], viewer)
        }
        var totals: [String: Int] = [:]
        let images: [[String: Any]] = list.images.map { image in
            for (severity, count) in image.counts { totals[severity, default: 0] += count }
            let other = image.counts.filter { !["Critical", "High", "Medium", "Low"].contains($0.key) }.values.reduce(0, +)
            return ["repository": image.repository, "urlRepository": Self.urlComponent(image.repository), "digest": image.manifest,
                    "tags": image.tags.isEmpty ? "none" : image.tags.joined(separator: ", "),
                    "critical": image.counts["Critical"] ?? 0, "high": image.counts["High"] ?? 0, "medium": image.counts["Medium"] ?? 0,
                    "low": image.counts["Low"] ?? 0, "other": other, "total": image.total,
                    "matched": Self.time(image.matchedAt), "advisoryVersion": image.advisoryVersion]
        }
        var data: [String: Any] = ["title": "Scan findings", "images": images, "count": images.count, "truncated": list.truncated,
                                   "limit": Self.scanPageLimit]
        if !images.isEmpty { data["chart"] = Self.severityChart(totals) }
        return render("scans", data, viewer)
    }

    /// `GET /console/sbom?name=R&digest=D&format=spdx|cyclonedx`: the SBOM document Berth's
    /// scanner pushed as a referrer of the manifest, with its own media type, to a viewer who may
    /// pull the image (the pull-admission chain: locks, quarantine, content trust).
    func sbomDownload(_ request: Request, _ viewer: Viewer) async throws -> Response {
        let repo = try Self.repositoryName(request)
        let digest = try Self.digest(try Self.query(request, "digest"))
        guard let formatName = try Self.query(request, "format", max: 32),
              let format = Self.sbomFormats.first(where: { $0.name == formatName }) else {
            throw ConsoleError(status: .badRequest, message: "give format=spdx or format=cyclonedx")
        }
        try await require(viewer, repository: repo.value, .contentRead, what: "the content of \(repo.value)")
        let puller = Puller(caller: viewer.caller, address: viewer.address)
        do {
            _ = try await server.pullAdmission.manifest(repo, .digest(digest), for: puller)
            let candidates = try await server.registry.metadata.referrers(repository: repo.value, subject: digest)
                .filter { $0.artifactType == format.mediaType && $0.annotations?[Self.generatorAnnotation] != nil }
                .sorted { ($0.createdAt, $0.digest.string) > ($1.createdAt, $1.digest.string) }
            guard let referrer = candidates.first else {
                throw ConsoleError(status: .notFound, message: "No \(format.label) SBOM for \(repo.value)@\(digest.string) yet.")
            }
            let content = try await server.pullAdmission.manifest(repo, .digest(referrer.digest), for: puller)
            let parsed = ParsedManifest(mediaType: content.mediaType, bytes: Data(buffer: content.bytes))
            guard let layer = parsed.layers.first, let layerDigest = try? Digest(parsing: layer.digest) else {
                throw ConsoleError(status: .notFound, message: "The SBOM referrer carries no document.")
            }
            try await server.pullAdmission.blob(repo, layerDigest, for: puller)
            let size = try await server.registry.blobSize(repo, layerDigest)
            guard size <= Self.maxSBOMBytes else {
                throw ConsoleError(status: .badRequest, message: "The SBOM is \(size) bytes, over this page's limit; pull it through /v2/.")
            }
            var body = ByteBuffer()
            try await server.registry.readBlob(repo, layerDigest, range: 0..<size) { chunk in
                var chunk = chunk
                body.writeBuffer(&chunk)
            }
            var headers = Self.securityHeaders()
            headers[.contentType] = format.mediaType
            headers[.contentDisposition] = "attachment; filename=\"sbom-\(digest.hex.prefix(12)).\(format.suffix)\""
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
        } catch let refusal as AccessRefusal {
            throw ConsoleError(status: HTTPResponse.Status(code: refusal.status), message: refusal.reason)
        }
    }

    // MARK: tasks (management/read, as /api/v1/tasks)

    func tasksPage(_ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "tasks")
        var rows: [[String: Any]] = []
        for (i, task) in try await tasks.tasks().sorted(by: { $0.name < $1.name }).prefix(200).enumerated() {
            let runs: [[String: Any]] = try await tasks.taskRuns(task: task.name, limit: 10).map { run in
                var row: [String: Any] = [
                    "id": run.id, "status": run.status.rawValue, "trigger": run.trigger, "queued": Self.time(run.queuedAt),
                    "finished": run.finishedAt.map(Self.time) ?? "—", "urlTask": Self.urlComponent(task.name),
                    "urlRun": Self.urlComponent(run.id),
                    "pushed": run.pushed.map { ["reference": $0.reference, "digest": $0.digest ?? "—"] as [String: Any] },
                ]
                if let reason = run.reason { row["reason"] = reason }
                return row
            }
            rows.append(["index": i, "name": task.name, "status": task.enabled ? "enabled" : "disabled",
                         "schedule": task.schedule ?? "none", "repositories": task.repositories.joined(separator: ", "),
                         "createdBy": task.createdBy, "runs": runs])
        }
        return render("tasks", ["title": "Tasks", "tasks": rows, "hasLogs": seams.runLog != nil], viewer)
    }

    /// `GET /console/task-log?task=T&run=ID`: the end of a run's log (management/read, as
    /// `GET /api/v1/tasks/{name}/runs/{id}/log`).
    func taskLog(_ request: Request, _ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "task run logs")
        guard let name = try Self.query(request, "task", max: 256), let id = try Self.query(request, "run", max: 64) else {
            throw ConsoleError(status: .badRequest, message: "give task and run")
        }
        guard let run = try await tasks.taskRun(id: id), run.task == name else {
            throw ConsoleError(status: .notFound, message: "No run \(id) of task \(name).")
        }
        guard let reader = seams.runLog else {
            throw ConsoleError(status: .notFound, message: "This server does not run tasks, so it keeps no run logs.")
        }
        let bytes = try await reader(run.id, Self.runLogBytes)
        let text = String(decoding: bytes, as: UTF8.self)
        return render("taskLog", ["title": "Log of \(name) run \(run.id)", "task": name, "run": run.id, "status": run.status.rawValue,
                                  "log": text, "empty": bytes.isEmpty, "limit": Self.bytes(Int64(Self.runLogBytes))], viewer)
    }

    // MARK: replicas (management/read, as /api/v1/replications)

    func replicasPage(_ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "replicas")
        guard let source = seams.replicas else {
            return render("replicas", ["title": "Replicas", "unavailable": true, "replicas": [[String: Any]]()], viewer)
        }
        let rows: [[String: Any]] = try await source().sorted { $0.location < $1.location }.map { r in
            var row: [String: Any] = [
                "location": r.location, "endpoint": r.endpoint, "regionEndpoint": r.regionEndpointEnabled ? "enabled" : "disabled",
                "lagEvents": r.lagEvents.map(String.init) ?? "unknown (the peer's log was not read yet)",
                "lagSeconds": r.lagSeconds.map { String(format: "%.0f s", $0) } ?? "unknown",
                "bytesPending": Self.bytes(r.bytesPending),
                // "healthy" only once the peer's log was read without an error since: a replica
                // never reached is not called healthy.
                "health": r.lastError != nil ? "failing" : r.lagEvents == nil ? "not reached yet" : "healthy",
            ]
            if let error = r.lastError {
                row["lastError"] = error + (r.lastErrorAt.map { " (\(Self.time($0)))" } ?? "")
            }
            return row
        }
        return render("replicas", ["title": "Replicas", "replicas": rows], viewer)
    }
}
