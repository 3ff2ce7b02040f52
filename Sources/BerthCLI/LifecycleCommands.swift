import ArgumentParser
import BerthAPIContract
import Foundation
import RegistryCore

// Lifecycle commands: `berth config retention|soft-delete|gc`, `berth purge`, `berth gc`,
// `berth quota`, `berth show-usage`. They only call the registry's `/api/v1/` lifecycle endpoints.

// MARK: - parsing and formatting helpers

enum Lifecycle {
    static let durationHelp = "a duration such as 30d, 1d3h, 90m, 45s or 0"

    /// `1d3h`, `30d`, `90m`, `45s` or `0`: the number of seconds. The server's grammar
    /// (`LifecycleDuration`), so a bare number such as `30` is refused rather than read as seconds.
    static func seconds(_ raw: String, option: String) throws -> Int {
        do {
            return Int(try LifecycleDuration.parse(raw.trimmingCharacters(in: .whitespaces)))
        } catch {
            throw ValidationError("\(option): \(error.message)")
        }
    }

    /// A duration as the API takes it (a string such as `30d`), checked here.
    static func duration(_ raw: String, option: String) throws -> String {
        let text = raw.trimmingCharacters(in: .whitespaces)
        return try seconds(text, option: option) == 0 ? "0" : text
    }

    /// `1024`, `10GiB`, `1.5 GB`, `500MB`, `10KiB`…: a number of bytes. KB/MB/GB/TB are powers of
    /// 1000, KiB/MiB/GiB/TiB powers of 1024 (the unit is case-insensitive; `K`, `M`, `G`, `T` are
    /// binary, as in the cloud CLIs; a trailing `B` alone means bytes).
    static func bytes(_ raw: String, option: String) throws -> Int64 {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let number = text.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let unit = text.dropFirst(number.count).trimmingCharacters(in: .whitespaces).lowercased()
        let kib = 1024.0, mib = kib * 1024, gib = mib * 1024, tib = gib * 1024
        let factors: [String: Double] = [
            "": 1, "b": 1,
            "k": kib, "kib": kib, "m": mib, "mib": mib, "g": gib, "gib": gib, "t": tib, "tib": tib,
            "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
        ]
        guard !number.isEmpty, let value = Double(number), let factor = factors[unit] else {
            throw ValidationError("\(option) must be a size such as 1048576, 500MB or 10GiB, got '\(raw)'")
        }
        let bytes = (value * factor).rounded()
        guard bytes < 9.0e18 else { throw ValidationError("\(option) is too large") }
        return Int64(bytes)
    }

    /// `1.5 GiB`-style rendering of a byte count.
    static func human(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = bytes
        var i = 0
        while value >= 1024, i < units.count - 1 {
            value /= 1024
            i += 1
        }
        if i == 0 { return "\(Int64(value)) B" }
        return String(format: "%.1f %@", value, units[i])
    }

    static func humanBytes(_ v: JSONValue?) -> String {
        guard case .number(let n) = v ?? .null else { return "" }
        return human(n)
    }

    /// Seconds as a short duration (`1d3h`, `90s` → `1m30s`, `0`).
    static func formatSeconds(_ v: JSONValue?) -> String {
        guard case .number(let n) = v ?? .null else { return "" }
        var rest = Int64(n.rounded())
        if rest == 0 { return "0" }
        var out = ""
        for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out
    }

    /// `repo regex:tag regex` (split at the first ':', repository names cannot contain one).
    static func filters(_ raw: [String]) throws -> [String] {
        guard !raw.isEmpty else {
            throw ValidationError("give at least one --filter REPOSITORY-REGEX:TAG-REGEX, e.g. --filter 'payments/api:.*'")
        }
        return try raw.map { filter in
            guard let colon = filter.firstIndex(of: ":"), colon != filter.startIndex else {
                throw ValidationError("--filter must be REPOSITORY-REGEX:TAG-REGEX (e.g. 'payments/api:^build-.*'), got '\(filter)'")
            }
            return filter
        }
    }

    static func count(_ v: JSONValue, _ key: String) -> Int { v[key]?.asArray?.count ?? 0 }

    /// One row per deleted tag, deleted manifest and skipped item of a purge, retention or
    /// repository-delete report.
    static func reportRows(_ report: JSONValue, dryRun: Bool, tagReason: String) -> [JSONValue] {
        let action = dryRun ? "would-delete" : "deleted"
        func row(_ action: String, _ item: JSONValue, tag: JSONValue?, reason: String) -> JSONValue {
            .object(["action": .string(action), "repository": item["repository"] ?? .null, "tag": tag ?? .null,
                     "digest": item["digest"] ?? .null, "reason": .string(reason)])
        }
        var rows: [JSONValue] = []
        for item in report["deletedTags"]?.asArray ?? [] {
            rows.append(row(action, item, tag: item["tag"], reason: item["reason"]?.asString ?? tagReason))
        }
        for item in report["deletedManifests"]?.asArray ?? [] {
            rows.append(row(action, item, tag: nil, reason: item["reason"]?.asString ?? ""))
        }
        for item in report["skipped"]?.asArray ?? [] {
            rows.append(row("skipped", item, tag: item["tag"], reason: item["reason"]?.asString ?? ""))
        }
        return rows
    }

    static let reportColumns = [
        Column("action", "action"), Column("repository", "repository"), Column("tag", "tag"),
        Column("digest", "digest"), Column("reason", "reason"),
    ]

    static func summary(_ report: JSONValue, dryRun: Bool, what: String) -> String {
        let tags = count(report, "deletedTags"), manifests = count(report, "deletedManifests"), skipped = count(report, "skipped")
        var line = "\(what)\(dryRun ? " (dry run)" : ""): \(dryRun ? "would delete" : "deleted") "
            + "\(tags) tag\(tags == 1 ? "" : "s") and \(manifests) manifest\(manifests == 1 ? "" : "s"), \(skipped) skipped"
        if let id = report["id"], id != .null { line += " (run \(id.cell))" }
        return line
    }

    /// `-o json`: the whole report. table: one row per item, then a summary line. tsv: the rows
    /// only, the summary on standard error.
    static func printReport(_ report: JSONValue, format: OutputFormat, dryRun: Bool, what: String, tagReason: String) {
        if format == .json {
            Printer.write(report.prettyJSON + "\n")
            return
        }
        Printer.rows(.array(reportRows(report, dryRun: dryRun, tagReason: tagReason)), columns: reportColumns, format: format)
        let line = summary(report, dryRun: dryRun, what: what)
        if format == .table {
            Printer.write(line + "\n")
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static let runColumns = [
        Column("id", "id"), Column("kind", "kind"), Column("name", "name"), Column("dry-run", "dryRun"),
        Column("started", "startedAt"), Column("finished", "finishedAt"),
        Column("tags", compute: { String(count($0, "deletedTags")) }),
        Column("manifests", compute: { String(count($0, "deletedManifests")) }),
        Column("skipped", compute: { String(count($0, "skipped")) }),
    ]

    static let gcColumns = [
        Column("id", "id"), Column("dry-run", "dryRun"), Column("started", "startedAt"), Column("finished", "finishedAt"),
        Column("blobs-deleted", "blobsDeleted"), Column("bytes-reclaimed", "bytesReclaimed"),
        Column("links-removed", "linksRemoved"), Column("uploads-removed", "uploadsRemoved"),
    ]

    static func runsQuery(kind: String, name: String?, limit: Int?) throws -> [(String, String)] {
        if let limit, !(1...1000).contains(limit) { throw ValidationError("--limit must be between 1 and 1000") }
        var query = [("kind", kind)]
        if let name { query.append(("name", name)) }
        if let limit { query.append(("limit", String(limit))) }
        return query
    }
}

enum LifecycleStatus: String, ExpressibleByArgument, CaseIterable, Sendable {
    case enabled, disabled

    init?(argument: String) {
        guard let v = Self.allCases.first(where: { $0.rawValue == argument.lowercased() }) else { return nil }
        self = v
    }
}

// MARK: - berth config retention

struct RetentionConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention", abstract: "Retention policy for untagged (not live) manifests.",
        subcommands: [RetentionShow.self, RetentionUpdate.self, RetentionRun.self])
}

enum RetentionType: String, ExpressibleByArgument, CaseIterable, Sendable {
    case untaggedManifests = "UntaggedManifests"

    init?(argument: String) {
        guard argument.lowercased() == "untaggedmanifests" else { return nil }
        self = .untaggedManifests
    }
}

enum RetentionView {
    static let fields = [Column("status", "status"), Column("days", "days"), Column("type", "type")]
}

struct RetentionShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the retention policy.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "config/retention", answer: BerthAPIContract.RetentionView.self), fields: RetentionView.fields, format: out.output)
        }
    }
}

struct RetentionUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change the retention policy.",
        discussion: """
        Example: berth config retention update --status enabled --days 14 --type UntaggedManifests
        A background job then deletes manifests that have not been live (tagged, listed by a live index, \
        referrer of a live manifest, or locked) for longer than --days. Signatures, SBOMs and index children \
        of live images are never "untagged".
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled.") var status: LifecycleStatus?
    @Option(help: "Days a manifest must have been not live before it is deleted (0-365, may be fractional).") var days: Double?
    @Option(help: "What the policy applies to: UntaggedManifests.") var type: RetentionType?

    func validate() throws {
        if status == nil, days == nil, type == nil { throw ValidationError("nothing to change; give --status, --days and/or --type") }
        if let days, !(0...365).contains(days) { throw ValidationError("--days must be between 0 and 365") }
    }

    func run() async throws {
        try await runCLI {
            let body = StatusDaysRequest(status: status?.rawValue, days: days, type: type?.rawValue)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "config/retention", sending: body, answer: BerthAPIContract.RetentionView.self),
                              fields: RetentionView.fields, format: out.output)
        }
    }
}

struct RetentionRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Apply the retention policy now; prints what was deleted.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let report = try await c.call(.POST, "config/retention/run", answer: LifecycleReportView?.self)
            Lifecycle.printReport(report, format: out.output, dryRun: report["dryRun"] == .bool(true),
                                  what: "Retention", tagReason: "retention")
        }
    }
}

// MARK: - berth config soft-delete

struct SoftDeleteConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soft-delete", abstract: "Recycle bin for deleted manifests and tags.",
        subcommands: [SoftDeleteShow.self, SoftDeleteUpdate.self])
}

enum SoftDeleteView {
    static let fields = [Column("status", "status"), Column("days", "days")]
}

struct SoftDeleteShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the soft-delete policy.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "config/soft-delete", answer: BerthAPIContract.SoftDeleteView.self), fields: SoftDeleteView.fields, format: out.output)
        }
    }
}

struct SoftDeleteUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change the soft-delete policy.",
        discussion: """
        Example: berth config soft-delete update --status enabled --days 7
        While enabled, manifests and tags deleted by the API, purge or retention go to a recycle bin for --days \
        ('berth repository list-deleted', 'berth manifest restore'); their blobs are kept until then.
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled.") var status: LifecycleStatus?
    @Option(help: "Days deleted manifests stay restorable (0-90, may be fractional).") var days: Double?

    func validate() throws {
        if status == nil, days == nil { throw ValidationError("nothing to change; give --status and/or --days") }
        if let days, !(0...90).contains(days) { throw ValidationError("--days must be between 0 and 90") }
    }

    func run() async throws {
        try await runCLI {
            let body = StatusDaysRequest(status: status?.rawValue, days: days)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "config/soft-delete", sending: body, answer: BerthAPIContract.SoftDeleteView.self),
                              fields: SoftDeleteView.fields, format: out.output)
        }
    }
}

// MARK: - berth config gc

struct GCConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Periodic online garbage collection of blobs.",
        subcommands: [GCConfigShow.self, GCConfigUpdate.self])
}

enum GCConfigView {
    static let fields = [
        Column("status", "status"),
        Column("interval", compute: { Lifecycle.formatSeconds($0["intervalSeconds"]) }),
        Column("grace", compute: { Lifecycle.formatSeconds($0["graceSeconds"]) }),
    ]
}

struct GCConfigShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the garbage-collection schedule.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "config/gc", answer: GCPolicyView.self), fields: GCConfigView.fields, format: out.output)
        }
    }
}

struct GCConfigUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change the garbage-collection schedule.",
        discussion: """
        Example: berth config gc update --status enabled --interval 6h --grace 1h
        --grace: blobs younger than this are never collected (protects pushes in flight).
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled: run periodically.") var status: LifecycleStatus?
    @Option(help: "Time between periodic runs, \(Lifecycle.durationHelp).") var interval: String?
    @Option(help: "Grace period for unreferenced blobs, \(Lifecycle.durationHelp).") var grace: String?

    func validate() throws {
        if status == nil, interval == nil, grace == nil { throw ValidationError("nothing to change; give --status, --interval and/or --grace") }
        if let interval, try Lifecycle.seconds(interval, option: "--interval") == 0 {
            throw ValidationError("--interval must be longer than 0")
        }
        if let grace { _ = try Lifecycle.seconds(grace, option: "--grace") }
    }

    func run() async throws {
        try await runCLI {
            let body = GCPolicyRequest(status: status?.rawValue,
                                       intervalSeconds: try interval.map { Double(try Lifecycle.seconds($0, option: "--interval")) },
                                       graceSeconds: try grace.map { Double(try Lifecycle.seconds($0, option: "--grace")) })
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "config/gc", sending: body, answer: GCPolicyView.self), fields: GCConfigView.fields, format: out.output)
        }
    }
}

// MARK: - berth purge

/// Options shared by `berth purge` and `berth purge schedule create`.
struct PurgeOptions: ParsableArguments {
    @Option(name: .customLong("filter"),
            help: ArgumentHelp("REPOSITORY-REGEX:TAG-REGEX (repeatable). The repository regex must match the whole name, "
                + "the tag regex is searched anywhere in the tag.", valueName: "filter"))
    var filters: [String] = []
    @Option(help: "Delete tags last updated (and untagged manifests created) longer ago than this: \(Lifecycle.durationHelp).")
    var ago: String?
    @Flag(help: "Also delete manifests that are not live (no tag, no live index or subject, no lock).") var untagged = false
    @Option(help: "Keep the N most recently updated matching tags of each repository.") var keep: Int = 0

    /// The request fields (checked); call in run(), not validate(), so that subcommands of a
    /// command using these options are not held to them.
    func body(dryRun: Bool? = nil) throws -> PurgeRequest {
        let filters = try Lifecycle.filters(self.filters)
        guard let ago else { throw ValidationError("give --ago, \(Lifecycle.durationHelp) (e.g. --ago 30d; --ago 0 for everything)") }
        guard keep >= 0 else { throw ValidationError("--keep must be 0 or more") }
        return PurgeRequest(filters: filters, ago: try Lifecycle.duration(ago, option: "--ago"), untagged: untagged, keep: keep,
                            dryRun: dryRun)
    }
}

struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge", abstract: "Delete old tags and not-live manifests, now or on a schedule.",
        discussion: """
        Example: berth purge --filter 'payments/api:.*' --filter 'payments/worker:^build-.*' --ago 30d --untagged --keep 5 --dry-run
        Tags matching a filter and last updated before now minus --ago are deleted, except the --keep newest per \
        repository; with --untagged, manifests that are not live (see 'berth config retention') and older than --ago \
        go too. Signatures, SBOMs and index children of images that stay are kept; locked tags and manifests are \
        skipped and reported. --dry-run prints exactly what a real run would delete.
        """,
        subcommands: [PurgeScheduleGroup.self, PurgeRuns.self])
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @OptionGroup var purge: PurgeOptions
    @Flag(help: "Only report what would be deleted.") var dryRun = false

    func run() async throws {
        try await runCLI {
            let body = try purge.body(dryRun: dryRun)
            let c = try await ManagementClient.connect(client)
            let report = try await c.call(.POST, "purge", sending: body, answer: LifecycleReportView.self)
            Lifecycle.printReport(report, format: out.output, dryRun: dryRun, what: "Purge", tagReason: "matched filter")
        }
    }
}

struct PurgeScheduleGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule", abstract: "Purges that run inside the registry on a cron schedule.",
        subcommands: [PurgeScheduleCreate.self, PurgeScheduleList.self, PurgeScheduleDelete.self])
}

enum PurgeScheduleView {
    static let columns = [
        Column("name", "name"), Column("cron", "cron"), Column("filters", "filters"), Column("ago", "ago"),
        Column("untagged", "untagged"), Column("keep", "keep"), Column("last-run", "lastRunAt"), Column("next-run", "nextRunAt"),
    ]
}

struct PurgeScheduleCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a purge schedule.",
        discussion: "Example: berth purge schedule create --name nightly --cron '0 2 * * *' --filter 'payments/.*:.*' --ago 30d --untagged")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Schedule name.") var name: String
    @Option(help: "When to run: a cron expression (minute hour day-of-month month day-of-week, UTC), e.g. '0 2 * * *'.")
    var cron: String
    @OptionGroup var purge: PurgeOptions

    func validate() throws {
        guard !name.isEmpty else { throw ValidationError("--name must not be empty") }
        let fields = cron.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count == 5 || (fields.count == 1 && cron.hasPrefix("@")) else {
            throw ValidationError("--cron must have 5 fields (minute hour day-of-month month day-of-week), e.g. '0 2 * * *'")
        }
        _ = try purge.body()
    }

    func run() async throws {
        try await runCLI {
            let options = try purge.body()
            let body = ScheduleRequest(name: name, cron: cron, filters: options.filters, ago: options.ago, untagged: options.untagged,
                                       keep: options.keep)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "purge/schedules", sending: body, answer: BerthAPIContract.PurgeScheduleView.self),
                              fields: PurgeScheduleView.columns, format: out.output)
        }
    }
}

struct PurgeScheduleList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List purge schedules.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "purge/schedules", answer: [BerthAPIContract.PurgeScheduleView].self), columns: PurgeScheduleView.columns, format: out.output)
        }
    }
}

struct PurgeScheduleDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a purge schedule (its run reports stay).")
    @OptionGroup var client: ClientOptions
    @Option(help: "Schedule name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "purge/schedules/" + Fmt.path(name))
            Printer.write("Deleted purge schedule \(name)\n")
        }
    }
}

struct PurgeRuns: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs", abstract: "List purge run reports, newest first (-o json for every deleted item).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only the runs of this schedule.") var name: String?
    @Option(help: "How many runs to show (1-1000).") var limit: Int?

    func run() async throws {
        try await runCLI {
            let query = try Lifecycle.runsQuery(kind: "purge", name: name, limit: limit)
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "lifecycle/runs", query: query, answer: [LifecycleRunView].self), columns: Lifecycle.runColumns, format: out.output)
        }
    }
}

// MARK: - berth gc

struct GCGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Online garbage collection of blobs no manifest references.",
        subcommands: [GCRun.self, GCRuns.self])
}

struct GCRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Collect garbage now (the registry stays fully usable meanwhile).",
        discussion: "Blobs referenced by any manifest (also soft-deleted and quarantined ones), in use by an upload or "
            + "younger than the grace period ('berth config gc') are never collected.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Flag(help: "Only report what would be deleted.") var dryRun = false

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let report = try await c.call(.POST, "gc", sending: DryRunRequest(dryRun: dryRun), answer: GarbageCollectionReportView.self)
            Printer.keyValues(report, fields: [
                Column("id", "id"), Column("dry-run", "dryRun"),
                Column(dryRun ? "blobs-to-delete" : "blobs-deleted", "blobsDeleted"),
                Column(dryRun ? "bytes-to-reclaim" : "bytes-reclaimed", "bytesReclaimed"),
                Column("size", compute: { Lifecycle.humanBytes($0["bytesReclaimed"]) }),
                Column(dryRun ? "links-to-remove" : "links-removed", "linksRemoved"),
                Column(dryRun ? "uploads-to-remove" : "uploads-removed", "uploadsRemoved"),
                Column("started", "startedAt"), Column("finished", "finishedAt"),
            ], format: out.output)
            let digests = report["digests"]?.asArray ?? []
            if out.output == .table, !digests.isEmpty {
                Printer.write("\n")
                Printer.rows(.array(digests.map { .object(["action": .string(dryRun ? "would-delete" : "deleted"), "digest": $0]) }),
                             columns: [Column("action", "action"), Column("digest", "digest")], format: .table)
            }
        }
    }
}

struct GCRuns: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "runs", abstract: "List garbage-collection runs, newest first.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "How many runs to show (1-1000).") var limit: Int?

    func run() async throws {
        try await runCLI {
            let query = try Lifecycle.runsQuery(kind: "gc", name: nil, limit: limit)
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "lifecycle/runs", query: query, answer: [LifecycleRunView].self), columns: Lifecycle.gcColumns, format: out.output)
        }
    }
}

// MARK: - berth quota

struct QuotaGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quota", abstract: "Storage quotas per repository prefix.",
        discussion: """
        A prefix ending in '/' covers every repository under it (payments/ covers payments/api and payments/worker/x); \
        without it, the prefix is an exact repository name or that name followed by '/'. A push that would exceed a \
        quota is refused with DENIED and leaves nothing behind.
        """,
        subcommands: [QuotaList.self, QuotaCreate.self, QuotaDelete.self])
}

enum QuotaView {
    static let columns = [
        Column("name", "name"), Column("prefix", "prefix"), Column("limit-bytes", "limitBytes"), Column("used-bytes", "usedBytes"),
        Column("limit", compute: { Lifecycle.humanBytes($0["limitBytes"]) }),
        Column("used", compute: { Lifecycle.humanBytes($0["usedBytes"]) }),
        Column("partial", compute: { Lifecycle.humanBytes($0["partialBytes"] ?? .number(0)) }),
    ]
}

struct QuotaList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List quotas and their use.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "quotas", answer: [BerthAPIContract.QuotaView].self), columns: QuotaView.columns, format: out.output)
        }
    }
}

struct QuotaCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a storage quota.",
        discussion: "Example: berth quota create --name payments --prefix payments/ --limit 10GiB")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Quota name.") var name: String
    @Option(help: "Repository prefix it covers (payments/ or an exact repository name).") var prefix: String
    @Option(help: "Size limit: bytes, or with a unit (KiB, MiB, GiB, TiB; KB, MB, GB, TB).") var limit: String

    func validate() throws {
        guard !name.isEmpty else { throw ValidationError("--name must not be empty") }
        guard !prefix.isEmpty else { throw ValidationError("--prefix must not be empty") }
        _ = try Lifecycle.bytes(limit, option: "--limit")
    }

    func run() async throws {
        try await runCLI {
            let bytes = try Lifecycle.bytes(limit, option: "--limit")
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "quotas", sending: QuotaRequest(name: name, prefix: prefix, limitBytes: Int64(bytes)),
                                                             answer: BerthAPIContract.QuotaView.self),
                              fields: QuotaView.columns, format: out.output)
        }
    }
}

struct QuotaDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a quota.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Quota name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "quotas/" + Fmt.path(name))
            Printer.write("Deleted quota \(name)\n")
        }
    }
}

// MARK: - berth show-usage

struct ShowUsage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show-usage", abstract: "Storage used after dedupe: bytes, blobs, manifests, tags, repositories.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only this repository.") var repository: String?

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let usage = try await c.call(.GET, "usage", query: repository.map { [("repository", $0)] } ?? [], answer: UsageView.self)
            var fields = [Column("bytes", "bytes"), Column("size", compute: { Lifecycle.humanBytes($0["bytes"]) }),
                          Column("blobs", "blobs"), Column("manifests", "manifests"), Column("tags", "tags")]
            if repository != nil {
                fields.insert(Column("repository", "repository"), at: 0)
            } else {
                fields += [Column("repositories", "repositories"), Column("deleted-manifests", "deletedManifests")]
            }
            Printer.keyValues(usage, fields: fields, format: out.output)
        }
    }
}
