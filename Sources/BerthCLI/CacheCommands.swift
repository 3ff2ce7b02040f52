import ArgumentParser
import BerthAPIContract
import Foundation

// MARK: - pull-through cache rules and credential sets (issue 17 item 2)

enum CacheRules {
    static let columns = [
        Column("name", "name"), Column("source", "sourceRepository"), Column("target", "targetRepository"),
        Column("credential-set", compute: { $0["credentialSet"]?.asString ?? "-" }),
        Column("plain-http", "plainHTTP"), Column("tag-freshness-seconds", "tagFreshnessSeconds"),
        Column("created-by", "createdBy"), Column("created", "createdAt"),
    ]
    static let setColumns = [
        Column("name", "name"), Column("login-server", "loginServer"), Column("username", "username"), Column("created", "createdAt"),
    ]
}

struct CacheRuleGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-rule",
        abstract: "Pull-through cache rules: a pull of a missing tag or digest in a target repository fetches it from upstream.",
        discussion: """
            A rule maps repositories of this registry (--target-repo mirror/*) to an upstream registry's \
            (--source-repo registry.example/library/*): pulling mirror/redis:7 fetches library/redis:7 from \
            registry.example, verifies its digests, stores it as a push would (quotas, locks and events apply) \
            and serves it. A tag is answered from the cache for --tag-freshness-seconds (default 300), then \
            upstream is asked again; when the upstream is down, what is cached is served. Targets of two rules \
            may not overlap. The upstream must be a public address unless the operator allows it (--outbound-allow).
            """,
        subcommands: [CacheRuleCreate.self, CacheRuleList.self, CacheRuleShow.self, CacheRuleUpdate.self, CacheRuleDelete.self])
}

struct CacheRuleCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Add a cache rule.",
        discussion: "Example: berth cache-rule create --name hub --source-repo registry-1.docker.io/library/* --target-repo hub/* "
            + "--credential-set hub-creds")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The rule's name (a-z, 0-9, '-').") var name: String
    @Option(help: "UPSTREAM_HOST[:PORT]/REPOSITORY, or UPSTREAM_HOST[:PORT]/PREFIX/*.") var sourceRepo: String
    @Option(help: "REPOSITORY or PREFIX/* of this registry (PREFIX/* when the source is one).") var targetRepo: String
    @Option(help: "The credential set presented upstream (default: anonymous).") var credentialSet: String?
    @Flag(help: "Speak http, not https, to the upstream.") var plainHttp = false
    @Option(help: "Seconds a cached tag is answered without asking upstream (default 300).") var tagFreshnessSeconds: Int64?

    func run() async throws {
        try await runCLI {
            let body = CacheRuleRequest(name: name, sourceRepository: sourceRepo, targetRepository: targetRepo, credentialSet: credentialSet,
                                        plainHTTP: plainHttp ? true : nil, tagFreshnessSeconds: tagFreshnessSeconds)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "cache-rules", sending: body, answer: CacheRuleView.self),
                              fields: CacheRules.columns, format: out.output)
        }
    }
}

struct CacheRuleList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List cache rules.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "cache-rules", answer: [CacheRuleView].self), columns: CacheRules.columns, format: out.output)
        }
    }
}

struct CacheRuleShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a cache rule.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The rule's name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "cache-rules/" + Fmt.path(name), answer: CacheRuleView.self),
                              fields: CacheRules.columns, format: out.output)
        }
    }
}

struct CacheRuleUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a cache rule.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The rule's name.") var name: String
    @Option(help: "New source.") var sourceRepo: String?
    @Option(help: "New target.") var targetRepo: String?
    @Option(help: "New credential set.") var credentialSet: String?
    @Flag(help: "Pull anonymously (remove the credential set).") var clearCredentialSet = false
    @Option(help: "Speak http (true) or https (false) to the upstream.") var plainHttp: Bool?
    @Option(help: "New tag freshness window in seconds.") var tagFreshnessSeconds: Int64?

    func run() async throws {
        try await runCLI {
            if clearCredentialSet, credentialSet != nil { throw ValidationError("--clear-credential-set excludes --credential-set") }
            if sourceRepo == nil, targetRepo == nil, credentialSet == nil, !clearCredentialSet, plainHttp == nil, tagFreshnessSeconds == nil {
                throw ValidationError("nothing to change")
            }
            let body = CacheRuleRequest(sourceRepository: sourceRepo, targetRepository: targetRepo, credentialSet: credentialSet,
                                        clearCredentialSet: clearCredentialSet ? true : nil, plainHTTP: plainHttp,
                                        tagFreshnessSeconds: tagFreshnessSeconds)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "cache-rules/" + Fmt.path(name), sending: body, answer: CacheRuleView.self),
                              fields: CacheRules.columns, format: out.output)
        }
    }
}

struct CacheRuleDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove a cache rule (what it cached stays).")
    @OptionGroup var client: ClientOptions
    @Option(help: "The rule's name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "cache-rules/" + Fmt.path(name))
            Printer.write("Deleted cache rule \(name)\n")
        }
    }
}

struct CredentialSetGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credential-set",
        abstract: "Credentials cache rules present to an upstream registry (the password stored sealed, never shown).",
        subcommands: [CredentialSetCreate.self, CredentialSetList.self, CredentialSetShow.self, CredentialSetUpdate.self,
                      CredentialSetDelete.self])
}

struct CredentialSetCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Add a credential set.",
        discussion: "Example: echo \"$TOKEN\" | berth credential-set create --name hub-creds --login-server registry-1.docker.io "
            + "--username me --password-stdin")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The set's name (a-z, 0-9, '-').") var name: String
    @Option(help: "HOST[:PORT] of the upstream registry; the credentials go to no other.") var loginServer: String
    @Option(help: "User name at the upstream.") var username: String
    @Flag(help: "Read the password from standard input (otherwise it is prompted for).") var passwordStdin = false

    func run() async throws {
        try await runCLI {
            let password = passwordStdin ? try readPasswordFromStdin() : try promptPassword("Password for \(username) at \(loginServer): ")
            let body = CredentialSetRequest(name: name, loginServer: loginServer, username: username, password: password)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "credential-sets", sending: body, answer: CredentialSetView.self),
                              fields: CacheRules.setColumns, format: out.output)
        }
    }
}

struct CredentialSetList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List credential sets.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "credential-sets", answer: [CredentialSetView].self), columns: CacheRules.setColumns,
                         format: out.output)
        }
    }
}

struct CredentialSetShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a credential set (never its password).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The set's name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "credential-sets/" + Fmt.path(name), answer: CredentialSetView.self),
                              fields: CacheRules.setColumns, format: out.output)
        }
    }
}

struct CredentialSetUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a credential set.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The set's name.") var name: String
    @Option(help: "New upstream HOST[:PORT] (needs the password again).") var loginServer: String?
    @Option(help: "New user name.") var username: String?
    @Flag(help: "Read a new password from standard input.") var passwordStdin = false

    func run() async throws {
        try await runCLI {
            if loginServer == nil, username == nil, !passwordStdin { throw ValidationError("nothing to change") }
            let body = CredentialSetRequest(loginServer: loginServer, username: username,
                                            password: passwordStdin ? try readPasswordFromStdin() : nil)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "credential-sets/" + Fmt.path(name), sending: body, answer: CredentialSetView.self),
                              fields: CacheRules.setColumns, format: out.output)
        }
    }
}

struct CredentialSetDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove a credential set no rule uses.")
    @OptionGroup var client: ClientOptions
    @Option(help: "The set's name.") var name: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "credential-sets/" + Fmt.path(name))
            Printer.write("Deleted credential set \(name)\n")
        }
    }
}
