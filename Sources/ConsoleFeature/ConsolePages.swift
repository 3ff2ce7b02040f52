import Access
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import OCIModel
import RegistryCore
import RegistryStore

/// The pages. Data comes through the calls the `/api/v1` routes make (`Registry`'s details,
/// `AccessControl`'s views, the event log, the webhook store), judged by the same decision.
extension ConsoleRoutes {
    /// Repositories the viewer may read (the catalog's rule, entry by entry), optionally searched.
    func repositories(_ request: Request, _ viewer: Viewer) async throws -> Response {
        let search = try Self.query(request, "q", max: 256) ?? ""
        let needle = search.lowercased()
        let visible = try await server.registry.repositoryDetails().filter { detail in
            allowed(viewer, repository: detail.name, .metadataRead, target: AccessTarget(listing: true))
                && (needle.isEmpty || detail.name.lowercased().contains(needle))
        }.sorted { $0.name < $1.name }
        let rows: [[String: Any]] = visible.prefix(1000).map { d in
            ["name": d.name, "urlName": Self.urlComponent(d.name), "tags": d.tags, "manifests": d.manifests,
             "lastUpdated": d.lastUpdatedAt.map(Self.time) ?? "—"]
        }
        var data: [String: Any] = ["title": "Repositories", "repositories": rows, "repositoryCount": rows.count]
        if !search.isEmpty { data["query"] = search }
        return render("repositories", data, viewer)
    }

    /// One repository's tags: digest, size, kind, platforms, push and last pull time.
    func repository(_ request: Request, _ viewer: Viewer) async throws -> Response {
        let repo = try Self.repositoryName(request)
        try await require(viewer, repository: repo.value, .metadataRead, what: "repository \(repo.value)")
        let detail = try await server.registry.repositoryDetail(repo)
        let manifests = try await server.registry.manifestDetails(repo)
        let tags = try await server.registry.tagDetails(repo, orderBy: "name_asc")
        var parsed: [String: ParsedManifest] = [:]
        // The config's platform is content: read only for a viewer who may read content.
        let readConfig = allowed(viewer, repository: repo.value, .contentRead)
        let states = Dictionary(manifests.map { ($0.digest, $0.quarantineState) }, uniquingKeysWith: { first, _ in first })
        for digest in Set(tags.prefix(500).map(\.digest)) {
            // A manifest /v2/ would not serve this viewer (quarantine) is not read for them here either.
            guard mayReadManifest(viewer, repo, state: states[digest] ?? nil) else { continue }
            parsed[digest] = try await parse(repo, digest, readConfig: readConfig)
        }
        let url = Self.urlComponent(repo.value)
        let tagRows: [[String: Any]] = tags.prefix(500).map { t in
            let p = parsed[t.digest]
            return ["tag": t.name, "digest": t.digest, "urlRepository": url, "size": p.map { Self.bytes($0.totalSize) } ?? "—",
                    "kind": p?.kind ?? "—", "platforms": p.map(\.platformList) ?? "—",
                    "pushed": Self.time(t.lastUpdatedAt), "lastPull": t.lastPulledAt.map(Self.time) ?? "never"]
        }
        let untagged: [[String: Any]] = manifests.filter { $0.tags.isEmpty && $0.subject == nil }.prefix(200).map { m in
            ["digest": m.digest, "urlRepository": url, "kind": ParsedManifest.kind(mediaType: m.mediaType, artifactType: m.artifactType,
                                                                                    configMediaType: nil, isIndex: false),
             "size": Self.bytes(m.size)]
        }
        return render("repository", ["title": repo.value, "name": repo.value, "manifests": detail.manifests, "tagCount": detail.tags,
                                     "created": Self.time(detail.createdAt), "tags": tagRows, "untagged": untagged], viewer)
    }

    /// One manifest: layers, platforms, annotations, quarantine (with verdict buttons for those
    /// who may give one), signatures and the referrers tree, and what kind of artifact it is.
    func image(_ request: Request, _ viewer: Viewer) async throws -> Response {
        let repo = try Self.repositoryName(request)
        try await require(viewer, repository: repo.value, .metadataRead, what: "repository \(repo.value)")
        let digest = try Self.digest(try Self.query(request, "digest"))
        guard let detail = try await server.registry.manifestDetails(repo).first(where: { $0.digest == digest.string }) else {
            throw ConsoleError(status: .notFound, message: "No manifest \(digest.string) in \(repo.value).")
        }
        // Its layers, annotations and config are what /v2/ serves: the quarantine rule of a pull
        // applies (found in review: a Pull-only viewer saw a Pending or Failed manifest here).
        guard mayReadManifest(viewer, repo, state: detail.quarantineState) else {
            throw ConsoleError(status: .forbidden, message: "\(digest.string) in \(repo.value) is quarantined (\(detail.quarantineState.map(\.rawValue) ?? "Pending")); reading it needs quarantine/read.")
        }
        guard let parsed = try await parse(repo, digest.string, readConfig: allowed(viewer, repository: repo.value, .contentRead)) else {
            throw ConsoleError(status: .notFound, message: "No manifest \(digest.string) in \(repo.value).")
        }
        let url = Self.urlComponent(repo.value)
        var budget = 200
        let referrers = try await referrerTree(repo, digest, url: url, depth: 0, budget: &budget)
        var signatures: [[String: Any]] = []
        var verificationsLeft = Self.maxVerifiedSignatures
        for node in referrers {
            guard let type = node["artifactType"] as? String, ParsedManifest.isSignature(type) else { continue }
            var row: [String: Any] = ["digest": node["digest"] ?? "", "artifactType": type, "urlRepository": url]
            let check = await verifySignature(repo, digest, node["digest"] as? String, type: type, budget: &verificationsLeft)
            row[check.verified ? "verified" : "unverified"] = true
            row["verification"] = check.detail
            if let signer = check.signer { row["signer"] = signer }
            signatures.append(row)
        }
        var data: [String: Any] = [
            "title": "\(repo.value)@\(digest.string.prefix(19))…", "repository": repo.value, "urlRepository": url,
            "digest": digest.string, "mediaType": parsed.mediaType, "kind": parsed.kind, "size": Self.bytes(parsed.totalSize),
            "platformList": parsed.platformList,
            "tags": detail.tags, "lastPull": detail.lastPulledAt.map(Self.time) ?? "never", "quarantine": detail.quarantineState.map { "\($0.rawValue)" } ?? "Not quarantined",
            "layers": parsed.layers.enumerated().map { i, l in
                ["index": i + 1, "mediaType": l.mediaType, "digest": l.digest, "size": Self.bytes(l.size)] as [String: Any]
            },
            "platforms": parsed.platforms.map { ["platform": $0.name, "digest": $0.digest, "size": Self.bytes($0.size),
                                                 "urlRepository": url] as [String: Any] },
            "annotations": parsed.annotations.sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] as [String: Any] },
            "signatures": signatures, "referrers": referrers,
            "canVerdict": viewer.session != nil && allowed(viewer, repository: repo.value, .quarantineWrite,
                                                           target: AccessTarget(management: true)),
        ]
        if let type = parsed.artifactType { data["artifactType"] = type }
        if let subject = parsed.subject { data["subject"] = subject }
        if let config = parsed.config {
            data["config"] = ["mediaType": config.mediaType, "digest": config.digest, "size": Self.bytes(config.size)] as [String: Any]
        }
        if let reason = try await quarantineReason(repo, digest, state: detail.quarantineState) { data["quarantineReason"] = reason }
        // The inventory says what is inside the image: content/read, as the scan API asks (found
        // in review: a metadata-only viewer saw it).
        if allowed(viewer, repository: repo.value, .contentRead) {
            for (key, value) in try await scanData(repo, digest, url: url) { data[key] = value }
        } else {
            data["scanHidden"] = true
        }
        if let notice = try Self.query(request, "notice", max: 64), notice == "verdict" { data["notice"] = "Verdict recorded." }
        return render("image", data, viewer)
    }

    /// Notary signatures verified per page view: each costs a read of up to 1 MiB and a chain
    /// check, and any metadata reader can open the page (found in review: the bound was promised
    /// here but every referrer of the tree, up to 200, was verified).
    static let maxVerifiedSignatures = 20

    /// A signature referrer checked by content trust's verifier (only Notary signatures; at most
    /// `maxVerifiedSignatures` per page, counted down in `budget`).
    func verifySignature(_ repo: RepositoryName, _ subject: Digest, _ raw: String?, type: String,
                         budget: inout Int) async -> ConsoleSignatureCheck {
        guard type == "application/vnd.cncf.notary.signature" else {
            return ConsoleSignatureCheck(verified: false, signer: nil, detail: "not verified: only Notary signatures are verified here")
        }
        guard budget > 0 else {
            return ConsoleSignatureCheck(verified: false, signer: nil,
                                         detail: "not verified here: at most \(Self.maxVerifiedSignatures) signatures are checked per page")
        }
        budget -= 1
        guard let verify = seams.verifySignature else {
            return ConsoleSignatureCheck(verified: false, signer: nil, detail: "not verified: this server has no content trust")
        }
        guard let raw, let signature = try? Digest(parsing: raw) else {
            return ConsoleSignatureCheck(verified: false, signer: nil, detail: "not verified: not a digest")
        }
        // The host the pull gate verifies with (the token service's name), so both agree.
        var check = await verify(repo, subject, signature, server.serviceName)
        if !check.verified { check.detail = "not verified: " + check.detail }
        return check
    }

    /// `POST /console/quarantine` (name, digest, state, reason, csrf): the gate's verdict, as
    /// `PATCH /api/v1/quarantine/manifests` records it (quarantine/write on the repository).
    func quarantine(_ request: Request, _ viewer: Viewer) async throws -> Response {
        let form = try await checkedForm(request, viewer)
        let repo = try RepositoryName(form["name"] ?? "")
        let digest = try Self.digest(form["digest"])
        guard let state = form["state"].flatMap(QuarantineState.init(rawValue:)), state != .pending else {
            throw ConsoleError(status: .badRequest, message: "The verdict must be Passed or Failed.")
        }
        try await require(viewer, repository: repo.value, .quarantineWrite, what: "quarantine verdicts in \(repo.value)")
        let reason = form["reason"].flatMap { $0.isEmpty ? nil : $0 }
        let origin = EventOrigin(actor: Self.actorName(viewer), address: viewer.address?.description ?? "-")
        try await EventOrigin.$current.withValue(origin) {
            try await server.registry.setQuarantine(repo, digest, state: state, reason: reason)
        }
        return Self.redirect("/console/image?name=\(Self.urlComponent(repo.value))&digest=\(digest.string)&notice=verdict")
    }

    func quarantineReason(_ repo: RepositoryName, _ digest: Digest, state: QuarantineState?) async throws -> String? {
        guard state != nil else { return nil }
        return try await server.registry.metadata.manifest(repository: repo.value, digest: digest)?.quarantineReason
    }

    /// Referrers of `subject`, and theirs, three levels deep and at most `budget` nodes.
    func referrerTree(_ repo: RepositoryName, _ subject: Digest, url: String, depth: Int,
                      budget: inout Int) async throws -> [[String: Any]] {
        guard depth < 3, budget > 0 else { return [] }
        let list = try await server.registry.referrers(repo, subject: subject, artifactType: nil, limit: 100, last: nil)
        var nodes: [[String: Any]] = []
        for d in list.descriptors {
            guard budget > 0 else { break }
            budget -= 1
            var node: [String: Any] = ["digest": d.digest, "urlRepository": url,
                                       "kind": ParsedManifest.kind(mediaType: d.mediaType, artifactType: d.artifactType,
                                                                   configMediaType: nil, isIndex: false)]
            if let type = d.artifactType { node["artifactType"] = type }
            if let child = try? Digest(parsing: d.digest) {
                node["children"] = try await referrerTree(repo, child, url: url, depth: depth + 1, budget: &budget)
            }
            nodes.append(node)
        }
        return nodes
    }

    /// Whether /v2/ would serve this manifest's content to the viewer: the same decision
    /// `PullAdmission` asks for quarantined content (content/read with the quarantine target).
    func mayReadManifest(_ viewer: Viewer, _ repo: RepositoryName, state: QuarantineState?) -> Bool {
        if QuarantineState.isPullable(state) { return true }
        return allowed(viewer, repository: repo.value, .contentRead,
                       target: AccessTarget(quarantine: .manifest(state: state ?? .pending, reason: nil)))
    }

    /// The stored manifest, parsed for display; nil when it is gone. Read through the registry
    /// (its read locks apply).
    func parse(_ repo: RepositoryName, _ digest: String, readConfig: Bool) async throws -> ParsedManifest? {
        guard let d = try? Digest(parsing: digest) else { return nil }
        let content: ManifestContent
        do {
            content = try await server.registry.manifest(repo, .digest(d))
        } catch let e as RegistryError where e.code == .manifestUnknown {
            return nil
        }
        var parsed = ParsedManifest(mediaType: content.mediaType, bytes: Data(buffer: content.bytes))
        if readConfig { parsed.configPlatform = try await configPlatform(repo, parsed.config) }
        return parsed
    }

    /// `os/architecture[/variant]` of an image's config blob (at most 64 KiB read), nil for
    /// anything else.
    func configPlatform(_ repo: RepositoryName, _ config: ParsedManifest.Part?) async throws -> String? {
        guard let config, config.size <= 64 * 1024,
              config.mediaType == "application/vnd.oci.image.config.v1+json"
                || config.mediaType == "application/vnd.docker.container.image.v1+json",
              let digest = try? Digest(parsing: config.digest) else { return nil }
        var bytes = ByteBuffer()
        do {
            try await server.registry.readBlob(repo, digest, range: 0..<config.size) { chunk in
                var chunk = chunk
                bytes.writeBuffer(&chunk)
            }
        } catch {
            return nil
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(buffer: bytes))) as? [String: Any] else { return nil }
        let name = [object["os"] as? String, object["architecture"] as? String, object["variant"] as? String]
            .compactMap { $0 }.joined(separator: "/")
        return name.isEmpty ? nil : name
    }

    // MARK: registry-wide pages (management/read, as their API routes)

    func usage(_ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "the registry's usage")
        let total = try await server.registry.usage(repository: nil)
        let days = 14
        let calendar = Self.utcCalendar
        let today = calendar.startOfDay(for: Date())
        let start = calendar.date(byAdding: .day, value: -(days - 1), to: today) ?? today
        var counts = [Int](repeating: 0, count: days)
        var sizes = [Int64](repeating: 0, count: days)
        // Summed by the database: at most one row per day, whatever the number of events.
        for total in try await server.registry.metadata.dailyPushTotals(since: start, repository: nil) {
            let day = calendar.dateComponents([.day], from: start, to: total.day).day ?? -1
            guard (0..<days).contains(day) else { continue }
            counts[day] += total.pushes
            sizes[day] += total.bytes
        }
        let chart = UsageChart(counts: counts, sizes: sizes, start: start, calendar: calendar)
        var data = chart.data
        data["title"] = "Usage"
        data["bytes"] = Self.bytes(total.bytes)
        data["blobs"] = total.blobs
        data["manifests"] = total.manifests
        data["tags"] = total.tags
        data["repositories"] = total.repositories ?? 0
        data["deleted"] = total.deletedManifests
        data["days"] = days
        return render("usage", data, viewer)
    }

    func tokens(_ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "tokens and scope maps")
        let tokens: [[String: Any]] = server.access.tokenViews().map { t in
            ["name": t.name, "scopeMap": t.scopeMap, "status": t.status, "created": Self.time(t.createdAt),
             "passwords": t.passwords.isEmpty ? "none" : t.passwords.map { p in
                 p.name + (p.expiry.map { " (expires \(Self.time($0)))" } ?? "")
             }.joined(separator: ", ")]
        }
        let maps: [[String: Any]] = server.access.scopeMaps().map { m in
            ["name": m.name, "description": m.description ?? "",
             "entries": m.entries.map { "\($0.repository.value): \($0.actions.joined(separator: ", "))" }]
        }
        return render("tokens", ["title": "Tokens and scope maps", "tokens": tokens, "scopeMaps": maps], viewer)
    }

    func webhookPage(_ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "webhooks")
        var rows: [[String: Any]] = []
        for (i, w) in try await webhooks.webhooks().sorted(by: { $0.name < $1.name }).enumerated() {
            let deliveries: [[String: Any]] = try await webhooks.deliveries(webhook: w.name, limit: 20).map { d in
                ["time": Self.time(d.timestamp), "action": d.action, "attempt": d.attempt,
                 "status": d.statusCode.map(String.init) ?? "—", "latency": String(format: "%.0f ms", d.latencyMilliseconds),
                 "error": d.error ?? ""]
            }
            rows.append(["index": i, "name": w.name, "uri": w.uri, "actions": w.actions.joined(separator: ", "),
                         "scope": w.scope ?? "everything", "status": w.enabled ? "enabled" : "disabled", "deliveries": deliveries])
        }
        return render("webhooks", ["title": "Webhooks", "webhooks": rows], viewer)
    }

    /// The last 24 hours of the audit trail: access events and content writes, merged as
    /// `GET /api/v1/audit` merges them.
    func audit(_ viewer: Viewer) async throws -> Response {
        try await require(viewer, repository: nil, .managementRead, what: "the audit log")
        let since = Date(timeIntervalSinceNow: -86_400)
        let limit = 500
        let writes = try await server.registry.metadata.events(since: since, limit: limit).map { e in
            AuditRecord(sequence: e.sequence, timestamp: e.timestamp, actor: e.actor ?? "-", address: e.address ?? "-",
                        action: e.action.rawValue,
                        target: e.repository + (e.tag.map { ":" + $0 } ?? "") + (e.digest.map { "@" + $0 } ?? ""),
                        outcome: "ok", detail: e.detail)
        }
        let merged = (try await server.access.audit(since: since, limit: limit) + writes)
            .sorted { $0.timestamp < $1.timestamp }.suffix(limit)
        let entries: [[String: Any]] = merged.map { r in
            ["time": Self.time(r.timestamp), "actor": r.actor, "address": r.address, "action": r.action, "target": r.target,
             "outcome": r.outcome, "detail": r.detail ?? ""]
        }
        return render("audit", ["title": "Audit log", "hours": 24, "count": entries.count, "entries": entries], viewer)
    }

    // MARK: formatting

    static let utcCalendar: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()

    static func time(_ date: Date) -> String {
        let c = utcCalendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        return String(format: "%04d-%02d-%02d %02d:%02d UTC", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0)
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// A query-string component: only unreserved characters stay as they are.
    static func urlComponent(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn:
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? ""
    }
}

/// A manifest or index, read for display only (it was validated when it was pushed).
struct ParsedManifest {
    struct Part {
        var mediaType: String
        var digest: String
        var size: Int64
    }
    struct PlatformEntry {
        var name: String
        var digest: String
        var size: Int64
    }

    var mediaType: String
    var artifactType: String?
    var config: Part?
    var layers: [Part] = []
    var platforms: [PlatformEntry] = []
    var annotations: [String: String] = [:]
    var subject: String?
    var isIndex = false
    /// An image's own platform, from its config blob (when read).
    var configPlatform: String?

    /// The platforms of an index, or the image's own, or "—".
    var platformList: String {
        if !platforms.isEmpty { return platforms.map(\.name).joined(separator: ", ") }
        return configPlatform ?? "—"
    }

    init(mediaType: String, bytes: Data) {
        self.mediaType = mediaType
        let object = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any] ?? [:]
        func part(_ value: Any?) -> Part? {
            guard let d = value as? [String: Any], let digest = d["digest"] as? String else { return nil }
            return Part(mediaType: d["mediaType"] as? String ?? "", digest: digest, size: (d["size"] as? NSNumber)?.int64Value ?? 0)
        }
        artifactType = object["artifactType"] as? String
        config = part(object["config"])
        layers = (object["layers"] as? [Any] ?? []).compactMap(part)
        if let list = object["manifests"] as? [Any] {
            isIndex = true
            platforms = list.compactMap { entry in
                guard let d = entry as? [String: Any], let p = part(d) else { return nil }
                let platform = d["platform"] as? [String: Any]
                var name = [platform?["os"] as? String, platform?["architecture"] as? String, platform?["variant"] as? String]
                    .compactMap { $0 }.joined(separator: "/")
                if name.isEmpty { name = (d["artifactType"] as? String) ?? "unknown" }
                return PlatformEntry(name: name, digest: p.digest, size: p.size)
            }
        }
        for (k, v) in object["annotations"] as? [String: Any] ?? [:] {
            annotations[k] = v as? String ?? "\(v)"
        }
        subject = part(object["subject"])?.digest
    }

    /// The sizes the manifest declares, added without trapping: a pushed descriptor may claim
    /// anything up to Int64.max (found in review), so the sum stops at Int64.max.
    var totalSize: Int64 {
        ([config?.size ?? 0] + layers.map(\.size) + platforms.map(\.size)).reduce(Int64(0)) { sum, size in
            let (added, overflow) = sum.addingReportingOverflow(max(0, size))
            return overflow ? .max : added
        }
    }

    var kind: String {
        Self.kind(mediaType: mediaType, artifactType: artifactType, configMediaType: config?.mediaType, isIndex: isIndex)
    }

    static func isSignature(_ type: String) -> Bool {
        type == "application/vnd.cncf.notary.signature" || type.hasPrefix("application/vnd.dev.cosign")
            || type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    }

    /// What a manifest holds, from its artifact type, its config's media type and its own.
    static func kind(mediaType: String, artifactType: String?, configMediaType: String?, isIndex: Bool) -> String {
        let type = artifactType ?? configMediaType ?? ""
        if type == "application/vnd.cncf.helm.config.v1+json" { return "Helm chart" }
        if type.contains("wasm") { return "WebAssembly module" }
        if isSignature(type) { return "Signature" }
        if type.contains("spdx") || type.contains("cyclonedx") { return "SBOM" }
        if isIndex || mediaType == MediaType.ociIndex || mediaType == "application/vnd.docker.distribution.manifest.list.v2+json" {
            return artifactType.map { "Index (\($0))" } ?? "Multi-platform image"
        }
        if type.isEmpty || type == "application/vnd.oci.image.config.v1+json" || type == "application/vnd.docker.container.image.v1+json" {
            return "Container image"
        }
        return "OCI artifact"
    }
}

/// Pushes per day as bars of an SVG drawn on the server.
struct UsageChart {
    let data: [String: Any]

    init(counts: [Int], sizes: [Int64], start: Date, calendar: Calendar) {
        let width = 640, height = 220, left = 40, baseline = 190
        let maximum = max(counts.max() ?? 0, 1)
        let slot = (width - left) / max(counts.count, 1)
        var bars: [[String: Any]] = []
        for (i, count) in counts.enumerated() {
            let day = calendar.date(byAdding: .day, value: i, to: start) ?? start
            let c = calendar.dateComponents([.month, .day], from: day)
            let h = count * (baseline - 30) / maximum
            bars.append(["x": left + i * slot + 4, "y": baseline - h, "w": max(slot - 8, 1), "h": h, "count": count,
                         "bytes": ConsoleRoutes.bytes(sizes[i]), "label": ConsoleRoutes.time(day).prefix(10).description,
                         "short": String(format: "%02d-%02d", c.month ?? 0, c.day ?? 0),
                         "labelX": left + i * slot + slot / 2, "labelY": baseline + 14])
        }
        let total = counts.reduce(0, +)
        data = ["width": width, "height": height, "baseline": baseline, "max": maximum, "bars": bars,
                "description": "\(total) manifest pushes over \(counts.count) days; at most \(maximum) in one day."]
    }
}
