import ArgumentParser
import BerthAPIContract
import Foundation

// MARK: - replication (issue 13)

/// Columns and options shared by the `berth replication` commands.
enum Replication {
    static let columns = [
        Column("location", "location"), Column("endpoint", "endpoint"),
        Column("data-endpoint", compute: { $0["dataEndpoint"]?.asString ?? "-" }),
        Column("region-endpoint", compute: { $0["regionEndpointEnabled"]?.cell == "true" ? "enabled" : "disabled" }),
        Column("credential", compute: { $0["credentialSet"]?.cell == "true" ? "set" : "-" }), Column("created", "createdAt"),
    ]

    static let statusColumns = [
        Column("location", "location"),
        Column("lag-events", compute: { $0["lagEvents"]?.cell ?? "-" }),
        Column("lag-seconds", compute: { v in
            guard case .number(let n) = v["lagSeconds"] ?? .null else { return "-" }
            return String(format: "%.1f", n)
        }),
        Column("bytes-pending", "bytesPending"),
        Column("applied", compute: { $0["appliedSequence"]?.cell ?? "-" }),
        Column("peer", compute: { $0["peerSequence"]?.cell ?? "-" }),
        Column("last-error", compute: { $0["lastError"]?.asString ?? "-" }),
        Column("last-error-at", compute: { $0["lastErrorAt"]?.asString ?? "-" }),
        Column("health", compute: { $0["health"]?.asString ?? "-" }),
        Column("health-since", compute: { $0["healthSince"]?.asString ?? "-" }),
        Column("health-error", compute: { $0["healthError"]?.asString ?? "-" }),
    ]

    /// The credential from `--credential` or `--credential-file` (its first line), at most one of them.
    static func credential(_ value: String?, file: String?) throws -> String? {
        if value != nil, file != nil { throw ValidationError("--credential and --credential-file exclude each other") }
        guard let file else { return value }
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let line = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard !line.isEmpty else { throw ValidationError("\(file) is empty") }
        return line
    }
}

struct ReplicationGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replication",
        abstract: "Replicas: this registry in other regions, each with its own storage and database (each region applies the changes of its replicas; conflicts are logged).",
        discussion: """
            Each replica is another Berth (node or cluster) in another region. This region authenticates to it \
            with the replica's credential (identity:secret of a service identity there), stored sealed and never \
            shown again. The endpoint must be a public address unless the operator allows it (--outbound-allow).
            """,
        subcommands: [ReplicationCreate.self, ReplicationList.self, ReplicationShow.self, ReplicationUpdate.self,
                      ReplicationDelete.self, ReplicationStatus.self, ReplicationConflicts.self])
}

struct ReplicationCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Add a replica.",
        discussion: "Example: berth replication create --location southeastasia --endpoint https://sea.registry.example "
            + "--credential-file ./sea-replicator")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The replica's region name (a-z, 0-9, '-').") var location: String
    @Option(help: "The replica's base URL (http(s)).") var endpoint: String
    @Option(help: "identity:secret this region presents to the replica (prefer --credential-file: a command line is visible to others).")
    var credential: String?
    @Option(help: "A file whose first line is the credential.") var credentialFile: String?
    @Option(help: "Whether clients may be routed to the replica's own data endpoint (true or false).") var regionEndpointEnabled: Bool = true
    @Option(help: "Where the replica's clients are sent to read blobs (http(s) URL; default: the endpoint).") var dataEndpoint: String?

    func run() async throws {
        try await runCLI {
            let body = ReplicationRequest(location: location, endpoint: endpoint,
                                          credential: try Replication.credential(credential, file: credentialFile),
                                          regionEndpointEnabled: regionEndpointEnabled, dataEndpoint: dataEndpoint)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "replications", sending: body, answer: ReplicaView.self),
                              fields: Replication.columns, format: out.output)
        }
    }
}

struct ReplicationList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List replicas.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "replications", answer: [ReplicaView].self), columns: Replication.columns, format: out.output)
        }
    }
}

struct ReplicationShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a replica (never its credential).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The replica's location.") var location: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "replications/" + Fmt.path(location), answer: ReplicaView.self),
                              fields: Replication.columns, format: out.output)
        }
    }
}

struct ReplicationUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "update", abstract: "Change a replica.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The replica's location.") var location: String
    @Option(help: "New base URL.") var endpoint: String?
    @Option(help: "New identity:secret (prefer --credential-file).") var credential: String?
    @Option(help: "A file whose first line is the new credential.") var credentialFile: String?
    @Flag(help: "Remove the stored credential.") var clearCredential = false
    @Option(help: "Whether clients may be routed to the replica's own data endpoint (true or false).") var regionEndpointEnabled: Bool?
    @Option(help: "New data endpoint (http(s) URL; an empty string goes back to the endpoint).") var dataEndpoint: String?

    func run() async throws {
        try await runCLI {
            let credential = try Replication.credential(credential, file: credentialFile)
            if clearCredential, credential != nil { throw ValidationError("--clear-credential excludes --credential and --credential-file") }
            if endpoint == nil, credential == nil, !clearCredential, regionEndpointEnabled == nil, dataEndpoint == nil {
                throw ValidationError("nothing to change: give --endpoint, --credential, --credential-file, --clear-credential, --region-endpoint-enabled or --data-endpoint")
            }
            let body = ReplicationRequest(endpoint: endpoint, credential: credential, clearCredential: clearCredential ? true : nil,
                                          regionEndpointEnabled: regionEndpointEnabled, dataEndpoint: dataEndpoint)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "replications/" + Fmt.path(location), sending: body, answer: ReplicaView.self),
                              fields: Replication.columns, format: out.output)
        }
    }
}

struct ReplicationDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Remove a replica (what was replicated from it stays).")
    @OptionGroup var client: ClientOptions
    @Option(help: "The replica's location.") var location: String

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "replications/" + Fmt.path(location))
            Printer.write("Deleted replica \(location)\n")
        }
    }
}

struct ReplicationStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Replication lag (events, seconds), bytes pending and the last error, per replica.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only this replica.") var location: String?

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            if let location {
                Printer.keyValues(try await c.call(.GET, "replications/" + Fmt.path(location) + "/status", answer: ReplicaStatusView.self),
                                  fields: Replication.statusColumns, format: out.output)
                return
            }
            var statuses: [JSONValue] = []
            for replica in try await c.value(.GET, "replications", answer: [ReplicaView].self) {
                statuses.append(try await c.call(.GET, "replications/" + Fmt.path(replica.location) + "/status", answer: ReplicaStatusView.self))
            }
            Printer.rows(.array(statuses), columns: Replication.statusColumns, format: out.output)
        }
    }
}

struct ReplicationConflicts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts",
        abstract: "Writes this region lost to concurrent ones (last writer wins by hybrid logical clock, then region), newest first.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only conflicts seen through this replica.") var location: String?
    @Option(help: "At most this many (1-1000).") var limit: Int = 100

    static let columns = [
        Column("id", "id"), Column("location", "location"), Column("kind", "kind"), Column("repository", "repository"),
        Column("key", "key"), Column("loser", "loser"), Column("loser-stamp", "loserStamp"),
        Column("winner", compute: { $0["winner"]?.asString ?? "-" }), Column("winner-stamp", compute: { $0["winnerStamp"]?.asString ?? "-" }),
        Column("recorded", "recordedAt"),
    ]

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            var query = [("limit", String(limit))]
            if let location { query.append(("location", location)) }
            Printer.rows(try await c.call(.GET, "replication/conflicts", query: query, answer: [ReplicationConflictView].self),
                         columns: Self.columns, format: out.output)
        }
    }
}
