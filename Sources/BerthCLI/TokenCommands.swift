import ArgumentParser
import BerthAPIContract
import Foundation

// MARK: - scope maps

/// Turns repeatable `--repository REPO ACTION...` groups into entries.
///
/// ArgumentParser collects every occurrence of an `.upToNextOption` array into one flat list, so
/// the group boundaries are recovered from the raw command line (checked against what the parser
/// saw); if that is not possible, a new group starts at every value that is not an action name.
enum RepositoryGroups {
    static let actionNames: Set<String> = [
        "content/read", "content/write", "content/delete", "metadata/read", "metadata/write",
        "signature/write", "quarantine/read", "quarantine/write",
    ]

    static func parse(option: String, flat: [String], arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                      requireActions: Bool = true) throws -> [(repository: String, actions: [String])] {
        guard !flat.isEmpty else { return [] }
        var groups = fromCommandLine(option: option, arguments: arguments)
        if groups.flatMap({ $0 }) != flat {
            groups = []
            for value in flat {
                if actionNames.contains(value), !groups.isEmpty { groups[groups.count - 1].append(value) } else { groups.append([value]) }
            }
        }
        var out: [(repository: String, actions: [String])] = []
        for g in groups {
            guard let repo = g.first else { continue }
            let actions = Array(g.dropFirst())
            if requireActions, actions.isEmpty {
                throw ValidationError("--\(option) \(repo) needs at least one action: "
                    + "content/read, content/write, content/delete, metadata/read, metadata/write")
            }
            out.append((repo, actions))
        }
        return out
    }

    static func fromCommandLine(option: String, arguments: [String]) -> [[String]] {
        var groups: [[String]] = []
        var i = 0
        let flag = "--" + option
        while i < arguments.count {
            let arg = arguments[i]
            if arg == "--" { break }
            var group: [String]?
            if arg == flag { group = [] } else if arg.hasPrefix(flag + "=") { group = [String(arg.dropFirst(flag.count + 1))] }
            guard var g = group else { i += 1; continue }
            i += 1
            while i < arguments.count, !(arguments[i].hasPrefix("-") && arguments[i].count > 1) {
                g.append(arguments[i])
                i += 1
            }
            groups.append(g)
        }
        return groups
    }

    static func entries(_ groups: [(repository: String, actions: [String])]) -> [ScopeMapEntryView] {
        groups.map { ScopeMapEntryView(repository: $0.repository, actions: $0.actions) }
    }
}

struct ScopeMapGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scope-map", abstract: "Scope maps: which actions a token may do on which repositories.",
        subcommands: [ScopeMapCreate.self, ScopeMapList.self, ScopeMapShow.self, ScopeMapUpdate.self, ScopeMapDelete.self])

    static let columns = [
        Column("name", "name"), Column("built-in", compute: { $0["builtIn"]?.cell == "true" ? "yes" : "no" }),
        Column("description", "description"), Column("repositories", compute: Fmt.entries),
    ]

    static func printMap(_ map: JSONValue, format: OutputFormat) {
        switch format {
        case .json:
            Printer.write(map.prettyJSON + "\n")
        case .tsv:
            for e in map["entries"]?.asArray ?? [] {
                Printer.write("\(e["repository"]?.cell ?? "")\t\(e["actions"]?.cell ?? "")\n")
            }
        case .table:
            Printer.keyValues(map, fields: [Column("name", "name"), Column("description", "description")], format: .table)
            Printer.write("\n")
            Printer.rows(map["entries"] ?? .array([]), columns: [Column("repository", "repository"), Column("actions", "actions")],
                         format: .table)
        }
    }
}

struct ScopeMapCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a scope map.",
        discussion: "Example: berth scope-map create --name ci --repository 'apps/*' content/read metadata/read "
            + "--repository apps/web content/write")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Scope map name.") var name: String
    @Option(help: "Description.") var description: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("A repository ('*', a name, or 'prefix/*') and its actions; repeatable.",
                                                         valueName: "repository action"))
    var repository: [String] = []

    func run() async throws {
        try await runCLI {
            let groups = try RepositoryGroups.parse(option: "repository", flat: repository)
            guard !groups.isEmpty else { throw ValidationError("give at least one --repository REPO ACTION...") }
            let c = try await ManagementClient.connect(client)
            let body = ScopeMapRequest(name: name, description: description, entries: RepositoryGroups.entries(groups))
            ScopeMapGroup.printMap(try await c.call(.POST, "scope-maps", sending: body, answer: ScopeMapView.self), format: out.output)
        }
    }
}

struct ScopeMapUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change a scope map.",
        discussion: "--repository groups replace all entries; --add-repository adds actions; "
            + "--remove-repository REPO [ACTION...] removes those actions (all of them without actions).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Scope map name.") var name: String
    @Option(help: "New description.") var description: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Replace all entries (repeatable).", valueName: "repository action"))
    var repository: [String] = []
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Add actions for a repository (repeatable).", valueName: "repository action"))
    var addRepository: [String] = []
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Remove actions for a repository (repeatable).", valueName: "repository action"))
    var removeRepository: [String] = []

    func run() async throws {
        try await runCLI {
            let replace = try RepositoryGroups.parse(option: "repository", flat: repository)
            let add = try RepositoryGroups.parse(option: "add-repository", flat: addRepository)
            let remove = try RepositoryGroups.parse(option: "remove-repository", flat: removeRepository, requireActions: false)
            if replace.isEmpty, add.isEmpty, remove.isEmpty, description == nil {
                throw ValidationError("nothing to change: give --repository, --add-repository, --remove-repository or --description")
            }
            let c = try await ManagementClient.connect(client)
            let current = try await c.value(.GET, "scope-maps/" + Fmt.path(name), answer: ScopeMapView.self)
            var entries: [(repository: String, actions: [String])] = replace.isEmpty
                ? current.entries.map { (repository: $0.repository, actions: $0.actions) }
                : replace
            for (repo, actions) in add {
                if let i = entries.firstIndex(where: { $0.repository == repo }) {
                    for a in actions where !entries[i].actions.contains(a) { entries[i].actions.append(a) }
                } else {
                    entries.append((repo, actions))
                }
            }
            for (repo, actions) in remove {
                guard let i = entries.firstIndex(where: { $0.repository == repo }) else {
                    throw CLIError("scope map \(name) has no entry for \(repo)")
                }
                entries[i].actions.removeAll { actions.isEmpty || actions.contains($0) }
                if entries[i].actions.isEmpty { entries.remove(at: i) }
            }
            let body = ScopeMapRequest(description: description ?? current.description, entries: RepositoryGroups.entries(entries))
            ScopeMapGroup.printMap(try await c.call(.PUT, "scope-maps/" + Fmt.path(name), sending: body, answer: ScopeMapView.self),
                                   format: out.output)
        }
    }
}

struct ScopeMapList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List scope maps.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "scope-maps", answer: [ScopeMapView].self), columns: ScopeMapGroup.columns, format: out.output)
        }
    }
}

struct ScopeMapShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a scope map.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Scope map name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            ScopeMapGroup.printMap(try await c.call(.GET, "scope-maps/" + Fmt.path(name), answer: ScopeMapView.self), format: out.output)
        }
    }
}

struct ScopeMapDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a scope map (not while a token uses it).")
    @OptionGroup var client: ClientOptions
    @Option(help: "Scope map name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "scope-maps/" + Fmt.path(name))
            Printer.write("Deleted scope map \(name)\n")
        }
    }
}

// MARK: - tokens

enum TokenStatus: String, ExpressibleByArgument, CaseIterable, Sendable {
    case enabled, disabled
}

struct TokenGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Repository-scoped tokens (user name + password1/password2), limited by a scope map.",
        subcommands: [TokenCreate.self, TokenList.self, TokenShow.self, TokenUpdate.self, TokenDelete.self, TokenCredentialGroup.self])

    static let columns = [
        Column("name", "name"), Column("scope-map", "scopeMap"), Column("status", "status"),
        Column("password1", compute: { Fmt.passwords($0, "password1") }),
        Column("password2", compute: { Fmt.passwords($0, "password2") }),
        Column("created", "createdAt"),
    ]
}

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create",
                                                    abstract: "Create a token; prints its two passwords once.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Token name (the user name clients log in with).") var name: String
    @Option(help: "Scope map that limits what the token may do.") var scopeMap: String
    @Option(help: "enabled or disabled.") var status: TokenStatus = .enabled
    @Option(help: "Days until the passwords expire.") var expirationInDays: Int?
    @Flag(help: "Create the token without passwords (generate them later with 'token credential generate').")
    var noPasswords = false

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let body = TokenRequest(name: name, scopeMap: scopeMap, status: status.rawValue, generatePasswords: !noPasswords,
                                    expiresInDays: expirationInDays)
            let answer = try await c.call(.POST, "tokens", sending: body, answer: TokenCreated.self)
            Printer.keyValues(answer, fields: [
                Column("name", "token.name"), Column("scope-map", "token.scopeMap"), Column("status", "token.status"),
                Column("password1", "credentials.password1"), Column("password2", "credentials.password2"),
            ], format: out.output)
            if out.output == .table, !noPasswords {
                FileHandle.standardError.write(Data("Save the passwords now: they are not shown again.\n".utf8))
            }
        }
    }
}

struct TokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "tokens", answer: [TokenView].self), columns: TokenGroup.columns, format: out.output)
        }
    }
}

struct TokenShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a token (never its passwords).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Token name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "tokens/" + Fmt.path(name), answer: TokenView.self), fields: TokenGroup.columns, format: out.output)
        }
    }
}

struct TokenUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Enable/disable a token or change its scope map.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Token name.") var name: String
    @Option(help: "enabled or disabled (disabled refuses both passwords and issued tokens at once).") var status: TokenStatus?
    @Option(help: "New scope map.") var scopeMap: String?

    func validate() throws {
        if status == nil, scopeMap == nil { throw ValidationError("nothing to change: give --status and/or --scope-map") }
    }

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "tokens/" + Fmt.path(name),
                                               sending: TokenRequest(scopeMap: scopeMap, status: status?.rawValue), answer: TokenView.self),
                              fields: TokenGroup.columns, format: out.output)
        }
    }
}

struct TokenDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a token.")
    @OptionGroup var client: ClientOptions
    @Option(help: "Token name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "tokens/" + Fmt.path(name))
            Printer.write("Deleted token \(name)\n")
        }
    }
}

struct TokenCredentialGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "credential", abstract: "A token's passwords.",
                                                    subcommands: [TokenCredentialGenerate.self])
}

struct TokenCredentialGenerate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Generate (rotate) password1 or password2 of a token; prints it once.",
        discussion: "Rotate without downtime: move clients to the other password, then regenerate this one. "
            + "An --expiration in the past retires the password at once.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Token name.") var name: String
    @Flag(help: "Which password to generate.") var which: PasswordName
    @OptionGroup var expiration: ExpirationOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            printSecret(try await c.call(.POST, "tokens/" + Fmt.path(name) + "/credentials", sending: try expiration.body(which), answer: SecretResponse.self),
                        format: out.output)
        }
    }
}
