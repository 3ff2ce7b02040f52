import ArgumentParser
import BerthAPIContract
import Foundation

// MARK: - webhooks

enum WebhookStatus: String, ExpressibleByArgument, CaseIterable, Sendable {
    case enabled, disabled
}

/// Options and formatting shared by the `berth webhook` commands.
enum Webhooks {
    static let actionNames = ["push", "delete", "quarantine", "scan", "task.run.queued", "task.run.started", "task.run.succeeded",
                              "task.run.failed", "task.run.cancelled"]

    /// `--actions push delete` or `--actions push,delete`: checked, de-duplicated, in the given order.
    static func actions(_ raw: [String]) throws -> [String] {
        var out: [String] = []
        for value in raw.flatMap({ $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }) where !value.isEmpty {
            guard actionNames.contains(value) else {
                throw ValidationError("unknown action '\(value)'; actions: \(actionNames.joined(separator: ", "))")
            }
            if !out.contains(value) { out.append(value) }
        }
        guard !out.isEmpty else { throw ValidationError("give at least one action: \(actionNames.joined(separator: ", "))") }
        return out
    }

    /// `--headers K=V ...` as an object (a later value for the same name wins).
    static func headers(_ raw: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for item in raw {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                throw ValidationError("--headers takes NAME=VALUE pairs, got '\(item)'")
            }
            out[String(item[..<eq]).trimmingCharacters(in: .whitespaces)] = String(item[item.index(after: eq)...])
        }
        return out
    }

    /// Header names only: values often carry credentials (`-o json` shows them).
    static func headerNames(_ v: JSONValue) -> String {
        (v["headers"]?.asObject?.keys.sorted() ?? []).joined(separator: ",")
    }

    static let columns = [
        Column("name", "name"), Column("status", "status"), Column("uri", "uri"), Column("actions", "actions"),
        Column("scope", compute: { $0["scope"]?.asString ?? "*:*" }), Column("headers", compute: headerNames),
        Column("pending-attempts", "pendingAttempts"), Column("created", "createdAt"),
    ]

    /// Milliseconds as a whole number (`-` when absent).
    static func milliseconds(_ v: JSONValue) -> String {
        guard case .number(let n) = v["latencyMilliseconds"] ?? .null else { return "-" }
        return String(Int64(n.rounded()))
    }

    static let deliveryColumns = [
        Column("id", "id"), Column("event", compute: { $0["eventSequence"]?.cell ?? "-" }), Column("action", "action"),
        Column("attempt", "attempt"), Column("status", compute: { $0["statusCode"]?.cell ?? "-" }),
        Column("latency-ms", compute: milliseconds), Column("error", "error"), Column("time", "timestamp"),
    ]

    static func failed(_ delivery: JSONValue) -> Bool {
        if let e = delivery["error"]?.asString, !e.isEmpty { return true }
        guard case .number(let code) = delivery["statusCode"] ?? .null else { return true }
        return !(200..<300).contains(Int(code))
    }
}

struct WebhookGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook",
        abstract: "Webhooks: signed HTTP callbacks for pushes, deletes and quarantines.",
        discussion: """
            Each webhook receives, in order and at least once, every matching event after it was created. \
            Requests carry X-Berth-Event, X-Berth-Delivery and X-Berth-Signature-256: sha256=<hex HMAC-SHA256 of \
            the body with the webhook's secret>; the secret is shown once, by 'webhook create'.
            """,
        subcommands: [WebhookCreate.self, WebhookList.self, WebhookShow.self, WebhookUpdate.self, WebhookDelete.self,
                      WebhookPing.self, WebhookListEvents.self])
}

struct WebhookCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a webhook; prints its signing secret once.",
        discussion: "Example: berth webhook create --name deploy --uri https://ci.example.com/hook --actions push delete "
            + "--scope 'payments/*:*' --headers Authorization='Bearer abc'")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Webhook name (a-z, 0-9, '-', '_').") var name: String
    @Option(help: "http(s) URL the registry POSTs events to.") var uri: String
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Actions that trigger it: push, delete, quarantine.", valueName: "action"))
    var actions: [String] = []
    @Option(help: "Repositories and tags it fires for, REPOSITORY:TAG with '*' wildcards (default all, '*:*').") var scope: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Custom request headers.", valueName: "name=value"))
    var headers: [String] = []
    @Option(help: "enabled or disabled.") var status: WebhookStatus = .enabled

    func run() async throws {
        try await runCLI {
            let body = WebhookRequest(name: name, uri: uri, actions: try Webhooks.actions(actions), scope: scope,
                                      headers: try Webhooks.headers(headers), status: status.rawValue)
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.POST, "webhooks", sending: body, answer: WebhookCreated.self)
            Printer.keyValues(answer, fields: [
                Column("name", "webhook.name"), Column("status", "webhook.status"), Column("uri", "webhook.uri"),
                Column("actions", "webhook.actions"), Column("scope", compute: { $0.at("webhook.scope")?.asString ?? "*:*" }),
                Column("headers", compute: { Webhooks.headerNames($0["webhook"] ?? .null) }), Column("secret", "secret"),
            ], format: out.output)
            if out.output == .table {
                FileHandle.standardError.write(Data("Save the secret now: it is not shown again.\n".utf8))
            }
        }
    }
}

struct WebhookList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List webhooks.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "webhooks", answer: [WebhookView].self), columns: Webhooks.columns, format: out.output)
        }
    }
}

struct WebhookShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a webhook (never its secret).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Webhook name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "webhooks/" + Fmt.path(name), answer: WebhookView.self), fields: Webhooks.columns, format: out.output)
        }
    }
}

struct WebhookUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change a webhook.",
        discussion: "--actions and --headers replace the current lists; --clear-headers removes all custom headers.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Webhook name.") var name: String
    @Option(help: "New http(s) URL.") var uri: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("New actions: push, delete, quarantine.", valueName: "action"))
    var actions: [String] = []
    @Option(help: "New scope, REPOSITORY:TAG with '*' wildcards ('*:*' for all).") var scope: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("New custom request headers (replace all).", valueName: "name=value"))
    var headers: [String] = []
    @Flag(help: "Remove all custom headers.") var clearHeaders = false
    @Option(help: "enabled or disabled.") var status: WebhookStatus?

    func run() async throws {
        try await runCLI {
            if clearHeaders, !headers.isEmpty { throw ValidationError("--headers and --clear-headers exclude each other") }
            if uri == nil, actions.isEmpty, scope == nil, headers.isEmpty, !clearHeaders, status == nil {
                throw ValidationError("nothing to change: give --uri, --actions, --scope, --headers, --clear-headers or --status")
            }
            let body = WebhookRequest(uri: uri, actions: actions.isEmpty ? nil : try Webhooks.actions(actions), scope: scope,
                                      headers: clearHeaders ? [:] : headers.isEmpty ? nil : try Webhooks.headers(headers),
                                      status: status?.rawValue)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "webhooks/" + Fmt.path(name), sending: body, answer: WebhookView.self),
                              fields: Webhooks.columns, format: out.output)
        }
    }
}

struct WebhookDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a webhook and its delivery history.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Webhook name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "webhooks/" + Fmt.path(name))
            Printer.write("Deleted webhook \(name)\n")
        }
    }
}

struct WebhookPing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping", abstract: "Send a ping event now; exits non-zero unless the receiver answers 2xx.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Webhook name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let delivery = try await c.call(.POST, "webhooks/" + Fmt.path(name) + "/ping", answer: WebhookDeliveryView.self)
            // (no id: the ping answer does not carry the delivery's id yet; 'list-events' shows it)
            Printer.keyValues(delivery, fields: [
                Column("status", compute: { $0["statusCode"]?.cell ?? "-" }),
                Column("latency-ms", compute: Webhooks.milliseconds), Column("error", "error"), Column("time", "timestamp"),
            ], format: out.output)
            if Webhooks.failed(delivery) {
                let reason = delivery["error"]?.asString ?? delivery["statusCode"].map { "HTTP \($0.cell)" } ?? "no answer"
                throw CLIError("ping of webhook \(name) failed: \(reason)")
            }
        }
    }
}

struct WebhookListEvents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-events", abstract: "List a webhook's recent delivery attempts, newest first.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Webhook name.") var name: String
    @Option(help: "How many attempts to show (1-1000, default 100).") var limit: Int?

    func run() async throws {
        try await runCLI {
            if let limit, !(1...1000).contains(limit) { throw ValidationError("--limit must be between 1 and 1000") }
            let c = try await ManagementClient.connect(client)
            let query = limit.map { [("limit", String($0))] } ?? []
            Printer.rows(try await c.call(.GET, "webhooks/" + Fmt.path(name) + "/events", query: query, answer: [WebhookDeliveryView].self),
                         columns: Webhooks.deliveryColumns, format: out.output)
        }
    }
}
