import ArgumentParser
import BerthAPIContract
import BerthCredentials
import Foundation
import OCIModel

// Management commands of `berth`: they talk to a registry's `/api/v1/` management API over HTTP,
// never to its database.

/// Where to send management requests.
struct ClientOptions: ParsableArguments {
    @Option(name: .customLong("registry"),
            help: "Registry URL (default: env BERTH_REGISTRY, then the registry of 'berth login').")
    var registry: String?
}

// MARK: - login / logout

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Log in to a registry for the management commands.",
        discussion: """
            Checks the credentials by obtaining a refresh token from the registry's token service and stores \
            the registry URL, the user name and the refresh token (never the password) in \
            $XDG_CONFIG_HOME/berth/config.json (default ~/.config/berth/config.json, mode 0600).
            """)

    @Argument(help: "Registry URL, e.g. https://registry.example.com or http://127.0.0.1:5000.")
    var url: String

    @Option(name: [.short, .long], help: "Identity (or token) name.")
    var username: String

    @Option(name: [.short, .long], help: "Password (discouraged: it ends up in the shell history; use --password-stdin).")
    var password: String?

    @Flag(help: "Read the password from standard input.")
    var passwordStdin = false

    func run() async throws {
        try await runCLI {
            let registry = try normalizeRegistryURL(url)
            let secret: String
            if passwordStdin {
                guard password == nil else { throw CLIError("--password and --password-stdin are mutually exclusive") }
                secret = try readPasswordFromStdin()
            } else if let password {
                printWarning("using --password on the command line is insecure; use --password-stdin")
                secret = password
            } else {
                secret = try promptPassword("Password for \(username) at \(registry): ")
            }
            let refresh: String
            do {
                refresh = try await ManagementClient.passwordLogin(registry: registry, username: username, password: secret)
            } catch let e as ManagementClient.APIError {
                throw CLIError("login to \(registry) as \(username) failed: \(e.message) (\(e.code), HTTP \(e.status))")
            }
            var config = try CLIConfig.load()
            config.registry = registry
            config.logins[registry] = .init(username: username, refreshToken: refresh)
            try config.save()
            Printer.write("Login succeeded: \(username) at \(registry)\n")
        }
    }
}

struct LogoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logout", abstract: "Forget the stored login.")

    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runCLI {
            var config = try CLIConfig.load()
            guard let raw = client.registry ?? ProcessInfo.processInfo.environment["BERTH_REGISTRY"] ?? config.registry else {
                throw CLIError("not logged in")
            }
            let registry = try normalizeRegistryURL(raw)
            guard config.logins.removeValue(forKey: registry) != nil else { throw CLIError("not logged in to \(registry)") }
            if config.registry == registry { config.registry = config.logins.keys.sorted().first }
            try config.save()
            Printer.write("Removed the login for \(registry)\n")
        }
    }
}

// MARK: - shared helpers

enum Fmt {
    static func passwords(_ v: JSONValue, _ which: String) -> String {
        guard let p = v["passwords"]?.asArray?.first(where: { $0["name"]?.asString == which }) else { return "-" }
        guard let expiry = p["expiry"]?.asString else { return "no expiry" }
        if let date = RFC3339.parse(expiry), date <= Date() { return "expired \(expiry)" }
        return "expires \(expiry)"
    }

    static func roles(_ v: JSONValue) -> String {
        (v["roles"]?.asArray ?? []).map { "\($0["role"]?.cell ?? "") on \($0["scope"]?.cell ?? "")" }.joined(separator: ", ")
    }

    static func entries(_ v: JSONValue) -> String {
        (v["entries"]?.asArray ?? []).map { "\($0["repository"]?.cell ?? ""): \($0["actions"]?.cell ?? "")" }.joined(separator: "; ")
    }

    /// `2026-01-02T03:04:05Z` or `2026-01-02`, checked and normalised for the API.
    static func isoDate(_ raw: String, option: String) throws -> String {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: raw) { return f.string(from: d) }
        let dayOnly = ISO8601DateFormatter()
        dayOnly.formatOptions = [.withFullDate]
        if let d = dayOnly.date(from: raw) { return f.string(from: d) }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = fractional.date(from: raw) { return f.string(from: d) }
        throw ValidationError("\(option) must be an ISO 8601 date, e.g. 2030-01-31T00:00:00Z or 2030-01-31")
    }

    static func path(_ segment: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
    }
}

/// `password1` / `password2`, as mutually exclusive flags.
enum PasswordName: String, EnumerableFlag, Sendable {
    case password1, password2
}

/// Options of the credential generators (`token credential generate`, `credential generate`).
struct ExpirationOptions: ParsableArguments {
    @Option(help: "Days until the new password expires (1-3650).")
    var expirationInDays: Int?

    @Option(help: "Absolute expiry (ISO 8601); a time in the past retires the password at once.")
    var expiration: String?

    func validate() throws {
        if expirationInDays != nil, expiration != nil {
            throw ValidationError("use either --expiration-in-days or --expiration")
        }
        if let d = expirationInDays, !(1...3650).contains(d) { throw ValidationError("--expiration-in-days must be 1-3650") }
        if let e = expiration { _ = try Fmt.isoDate(e, option: "--expiration") }
    }

    func body(_ which: PasswordName) throws -> CredentialRequest {
        let expiry = try expiration.map { ISO8601DateFormatter().date(from: try Fmt.isoDate($0, option: "--expiration")) }
        return CredentialRequest(name: which.rawValue, expiresInDays: expirationInDays, expiry: expiry ?? nil)
    }
}

func printSecret(_ answer: JSONValue, format: OutputFormat) {
    Printer.keyValues(answer, fields: [Column("username", "username"), Column("name", "name"), Column("password", "password")],
                      format: format)
    if format == .table { FileHandle.standardError.write(Data("Save the password now: it is not shown again.\n".utf8)) }
}

// MARK: - identities

struct IdentityGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity", abstract: "Manage identities (users and service principals).",
        subcommands: [IdentityCreate.self, IdentityList.self, IdentityShow.self, IdentityUpdate.self, IdentityDelete.self,
                      IdentityResetPassword.self, FederatedCredentialGroup.self])

    static let columns = [
        Column("name", "name"), Column("kind", "kind"), Column("enabled", "enabled"), Column("trusted-service", "trustedService"),
        Column("password", "hasPassword"), Column("roles", compute: Fmt.roles),
        Column("federated", compute: { v in (v["federatedCredentials"]?.asArray ?? []).compactMap { $0["name"]?.asString }.joined(separator: ",") }),
        Column("created", "createdAt"),
    ]
}

enum IdentityKind: String, ExpressibleByArgument, CaseIterable, Sendable {
    case user, servicePrincipal = "service-principal"
}

struct IdentityCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create an identity; prints its password once.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Identity name.") var name: String
    @Option(help: "user or service-principal.") var kind: IdentityKind = .user
    @Flag(help: "A trusted service passes the network rules once it has authenticated.") var trustedService = false
    @Flag(help: "Create it without a password (e.g. for federated credentials only).") var noPassword = false

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.POST, "identities", sending: IdentityRequest(
                name: name, kind: kind.rawValue, trustedService: trustedService, password: !noPassword), answer: IdentityCreated.self)
            Printer.keyValues(answer, fields: [
                Column("name", "identity.name"), Column("kind", "identity.kind"), Column("enabled", "identity.enabled"),
                Column("trusted-service", "identity.trustedService"), Column("password", "password"),
            ], format: out.output)
            if out.output == .table, answer["password"]?.asString != nil {
                FileHandle.standardError.write(Data("Save the password now: it is not shown again.\n".utf8))
            }
        }
    }
}

struct IdentityList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List identities.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "identities", answer: [IdentityView].self), columns: IdentityGroup.columns, format: out.output)
        }
    }
}

struct IdentityShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show an identity.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Identity name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "identities/" + Fmt.path(name), answer: IdentityView.self), fields: IdentityGroup.columns, format: out.output)
        }
    }
}

struct IdentityUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Enable or disable an identity, or mark it a trusted service.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Identity name.") var name: String
    @Option(help: "true or false; disabling refuses its logins and tokens at once.") var enabled: Bool?
    @Option(help: "true or false.") var trustedService: Bool?

    func validate() throws {
        if enabled == nil, trustedService == nil { throw ValidationError("nothing to change: give --enabled and/or --trusted-service") }
    }

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.PATCH, "identities/" + Fmt.path(name),
                                          sending: IdentityRequest(name: name, trustedService: trustedService, enabled: enabled),
                                          answer: IdentityView.self)
            Printer.keyValues(answer, fields: IdentityGroup.columns, format: out.output)
        }
    }
}

struct IdentityDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an identity.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Identity name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "identities/" + Fmt.path(name))
            Printer.write("Deleted identity \(name)\n")
        }
    }
}

struct IdentityResetPassword: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reset-password",
                                                    abstract: "Give an identity a new generated password (printed once); old logins stop working.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Identity name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            printSecret(try await c.call(.POST, "identities/" + Fmt.path(name) + "/password", answer: SecretResponse.self), format: out.output)
        }
    }
}

struct FederatedCredentialGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "federated-credential", abstract: "Trust OIDC tokens (e.g. from CI) for an identity.",
        subcommands: [FederatedCredentialCreate.self, FederatedCredentialDelete.self])
}

struct FederatedCredentialCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Add a federated credential to an identity.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Identity name.") var identity: String
    @Option(help: "Credential name.") var name: String
    @Option(help: "OIDC issuer URL.") var issuer: String
    @Option(help: "Exact subject claim.") var subject: String
    @Option(parsing: .upToNextOption, help: "Accepted audiences.") var audiences: [String]

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.POST, "identities/" + Fmt.path(identity) + "/federated-credentials",
                                          sending: FederatedCredentialRequest(name: name, issuer: issuer, subject: subject,
                                                                              audiences: audiences),
                                          answer: IdentityView.self)
            let creds = answer["federatedCredentials"] ?? .array([])
            Printer.rows(out.output == .json ? answer : creds, columns: [
                Column("name", "name"), Column("issuer", "issuer"), Column("subject", "subject"), Column("audiences", "audiences"),
            ], format: out.output)
        }
    }
}

struct FederatedCredentialDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove a federated credential.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Identity name.") var identity: String
    @Option(help: "Credential name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "identities/" + Fmt.path(identity) + "/federated-credentials/" + Fmt.path(name))
            Printer.write("Deleted federated credential \(name) of \(identity)\n")
        }
    }
}

// MARK: - role assignments

struct RoleGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "role", abstract: "Role assignments.",
                                                    subcommands: [RoleAssignmentGroup.self])
}

struct RoleAssignmentGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assignment", abstract: "Grant roles to identities on repositories.",
        discussion: "Roles: Pull, Push, Delete, ImageSigner, QuarantineReader, QuarantineWriter, Reader, Owner, Replicator. "
            + "Scope: '*', a repository, or 'prefix/*'.",
        subcommands: [RoleAssignmentCreate.self, RoleAssignmentList.self, RoleAssignmentDelete.self])

    static let columns = [Column("assignee", "assignee"), Column("role", "role"), Column("scope", "scope")]
}

struct RoleAssignmentCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Assign a role.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Identity name.") var assignee: String
    @Option(help: "Role name.") var role: String
    @Option(help: "'*', a repository, or 'prefix/*'.") var scope: String = "*"

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.POST, "role-assignments", sending: RoleAssignmentView(assignee: assignee, role: role, scope: scope),
                                          answer: RoleAssignmentView.self)
            Printer.rows(answer, columns: RoleAssignmentGroup.columns, format: out.output)
        }
    }
}

struct RoleAssignmentList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List role assignments.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only this identity's assignments.") var assignee: String?

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            var answer = try await c.call(.GET, "role-assignments", answer: [RoleAssignmentView].self)
            if let assignee, let all = answer.asArray { answer = .array(all.filter { $0["assignee"]?.asString == assignee }) }
            Printer.rows(answer, columns: RoleAssignmentGroup.columns, format: out.output)
        }
    }
}

struct RoleAssignmentDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove a role assignment.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Identity name.") var assignee: String
    @Option(help: "Role name.") var role: String
    @Option(help: "The scope it was assigned on.") var scope: String = "*"

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "role-assignments", query: [("assignee", assignee), ("role", role), ("scope", scope)])
            Printer.write("Removed \(role) on \(scope) from \(assignee)\n")
        }
    }
}
