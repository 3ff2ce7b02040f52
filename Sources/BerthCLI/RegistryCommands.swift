import ArgumentParser
import BerthAPIContract
import Foundation
import OCIModel

// MARK: - registry settings

enum DefaultAction: String, ExpressibleByArgument, CaseIterable, Sendable {
    case allow = "Allow", deny = "Deny"

    init?(argument: String) {
        switch argument.lowercased() {
        case "allow": self = .allow
        case "deny": self = .deny
        default: return nil
        }
    }
}

enum SettingsView {
    static let fields = [
        Column("registry-name", "registryName"),
        Column("admin-enabled", "adminUserEnabled"),
        Column("admin-password1", compute: { Fmt.passwords(.object(["passwords": $0["adminPasswords"] ?? .null]), "password1") }),
        Column("admin-password2", compute: { Fmt.passwords(.object(["passwords": $0["adminPasswords"] ?? .null]), "password2") }),
        Column("anonymous-pull-enabled", "anonymousPullEnabled"),
        Column("public-network-enabled", "publicNetworkEnabled"),
        Column("default-action", "networkDefaultAction"),
        Column("network-rules", "ipRules"),
        Column("allow-trusted-services", "allowTrustedServices"),
        Column("trusted-proxies", "trustedProxies"),
        Column("signing-key-id", "signingKeyID"),
    ]
}

struct RegistryShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the registry's access settings.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "registry", answer: RegistrySettingsView.self), fields: SettingsView.fields, format: out.output)
        }
    }
}

struct RegistryUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change the registry's access settings.",
        discussion: "Example: berth update --public-network-enabled false --trusted-proxies 10.0.0.5/32")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Enable the admin user (true/false).") var adminEnabled: Bool?
    @Option(help: "Let anyone pull without credentials (true/false).") var anonymousPullEnabled: Bool?
    @Option(help: "Serve public addresses (true/false); when false only private ranges and network rules are served.")
    var publicNetworkEnabled: Bool?
    @Option(help: "Let trusted-service identities pass the network rules (true/false).") var allowTrustedServices: Bool?
    @Option(help: "Allow or Deny: what happens to addresses no network rule matches.") var defaultAction: DefaultAction?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Proxies whose X-Forwarded-For is believed (replaces the list).",
                                                         valueName: "cidr"))
    var trustedProxies: [String] = []
    @Flag(help: "Remove all trusted proxies.") var noTrustedProxies = false

    func validate() throws {
        if !trustedProxies.isEmpty, noTrustedProxies { throw ValidationError("use either --trusted-proxies or --no-trusted-proxies") }
        if adminEnabled == nil, anonymousPullEnabled == nil, publicNetworkEnabled == nil, allowTrustedServices == nil,
           defaultAction == nil, trustedProxies.isEmpty, !noTrustedProxies {
            throw ValidationError("nothing to change; see berth update --help")
        }
    }

    func run() async throws {
        try await runCLI {
            let body = RegistrySettingsRequest(adminUserEnabled: adminEnabled, anonymousPullEnabled: anonymousPullEnabled,
                                               publicNetworkEnabled: publicNetworkEnabled, networkDefaultAction: defaultAction?.rawValue,
                                               allowTrustedServices: allowTrustedServices,
                                               trustedProxies: noTrustedProxies ? [] : trustedProxies.isEmpty ? nil : trustedProxies)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "registry", sending: body, answer: RegistrySettingsView.self),
                              fields: SettingsView.fields, format: out.output)
        }
    }
}

struct AdminCredentialGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "credential", abstract: "Passwords of the admin user.",
                                                    subcommands: [AdminCredentialGenerate.self])
}

struct AdminCredentialGenerate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Generate password1 or password2 of the admin user; prints it once.",
        discussion: "The admin user stays disabled until 'berth update --admin-enabled true'.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Flag(help: "Which password to generate.") var which: PasswordName
    @OptionGroup var expiration: ExpirationOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            printSecret(try await c.call(.POST, "registry/admin-credentials", sending: try expiration.body(which),
                                       answer: SecretResponse.self), format: out.output)
        }
    }
}

struct KeysGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "The token-signing key.",
                                                    subcommands: [KeysRotate.self])
}

struct KeysRotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rotate", abstract: "Start signing tokens with a new key.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "keys/rotate", answer: KeyRotation.self), fields: [Column("kid", "kid")], format: out.output)
        }
    }
}

// MARK: - network rules

struct NetworkRuleGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network-rule", abstract: "Addresses allowed when the public network is off or the default action is Deny.",
        subcommands: [NetworkRuleAdd.self, NetworkRuleRemove.self, NetworkRuleList.self])

    static func printRules(_ rules: JSONValue, format: OutputFormat) {
        Printer.rows(.array((rules.asArray ?? []).map { .object(["ipAddress": $0]) }),
                     columns: [Column("ip-address", "ipAddress")], format: format == .json ? .table : format)
    }

    static func output(_ rules: JSONValue, format: OutputFormat) {
        if format == .json { Printer.write(rules.prettyJSON + "\n") } else { printRules(rules, format: format) }
    }
}

struct NetworkRuleAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Allow an address or CIDR range.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "An address or CIDR range, e.g. 203.0.113.0/24.") var ipAddress: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            NetworkRuleGroup.output(try await c.call(.POST, "network-rules", sending: NetworkRuleRequest(ipAddress: ipAddress), answer: [String].self),
                                    format: out.output)
        }
    }
}

struct NetworkRuleRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a network rule.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The address or CIDR range of the rule.") var ipAddress: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            NetworkRuleGroup.output(try await c.call(.DELETE, "network-rules", query: [("ipAddress", ipAddress)], answer: [String].self), format: out.output)
        }
    }
}

struct NetworkRuleList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List network rules.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            NetworkRuleGroup.output(try await c.call(.GET, "network-rules", answer: [String].self), format: out.output)
        }
    }
}

// MARK: - audit

struct AuditGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "The audit log.",
                                                    subcommands: [AuditList.self])
}

struct AuditList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Show audit records.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "How far back: a duration (30m, 24h, 7d) or an ISO 8601 time (default 24h).") var since: String?
    @Option(help: "At most this many records (default 1000).") var limit: Int?

    func validate() throws {
        if let since, RFC3339.parse(since) == nil,
           since.range(of: #"^[0-9]+(\.[0-9]+)?[smhd]$"#, options: .regularExpression) == nil {
            throw ValidationError("--since must be a duration such as 30m, 24h, 7d, or an ISO 8601 time")
        }
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            var query: [(String, String)] = []
            if let since { query.append(("since", since)) }
            if let limit { query.append(("limit", String(limit))) }
            Printer.rows(try await c.call(.GET, "audit", query: query, answer: [AuditEntry].self), columns: [
                Column("time", "timestamp"), Column("actor", "actor"), Column("address", "address"), Column("action", "action"),
                Column("target", "target"), Column("outcome", "outcome"), Column("detail", "detail"),
            ], format: out.output)
        }
    }
}
