import ArgumentParser
import BerthAPIContract
import Foundation

// MARK: - berth event-consumer

struct EventConsumerGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "event-consumer", abstract: "Readers of the event log (retention, ...): cursor, lag, retries; pause and resume.",
        discussion: "Each consumer reads the event log from a durable cursor: after a crash or a restart it goes on where it "
            + "stopped, and a failed batch is retried with exponential backoff. A paused consumer keeps its cursor.",
        subcommands: [EventConsumerList.self, EventConsumerPause.self, EventConsumerResume.self])

    static let columns = [
        Column("name", "name"), Column("cursor", "cursor"), Column("lag", "lag"), Column("paused", "paused"),
        Column("attempts", "attempts"), Column("next-attempt", "nextAttemptAt"), Column("last-error", "lastError"),
        Column("lease", "lease"), Column("holder", "leaseHolder"),
    ]

    /// `POST /api/v1/event-consumers/NAME/ACTION`, printing the consumer as it is afterwards.
    static func post(_ client: ClientOptions, _ out: OutputOptions, _ name: String, _ action: String) async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.POST, "event-consumers/\(Fmt.path(name))/\(action)", answer: EventConsumerView.self),
                              fields: columns, format: out.output)
        }
    }
}

struct EventConsumerList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List event consumers with their lag.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "event-consumers", answer: [EventConsumerView].self), columns: EventConsumerGroup.columns, format: out.output)
        }
    }
}

struct EventConsumerPause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a consumer (it keeps its cursor).")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The consumer's name.") var name: String

    func run() async throws { try await EventConsumerGroup.post(client, out, name, "pause") }
}

struct EventConsumerResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused consumer.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "The consumer's name.") var name: String

    func run() async throws { try await EventConsumerGroup.post(client, out, name, "resume") }
}

// MARK: - berth lease

struct LeaseGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease", abstract: "Which node runs each piece of cluster-once background work.",
        discussion: "Event consumers, feature services and the lifecycle schedules run on one node of a cluster at a time, "
            + "under a lease that node renews; when it dies another takes the lease over after its time to live.",
        subcommands: [LeaseList.self])
}

struct LeaseList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the leases with their holders.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    static let columns = [
        Column("name", "name"), Column("holder", "holder"), Column("live", "live"), Column("expires", "expiresAt"),
        Column("token", "token"),
    ]

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "leases", answer: [LeaseView].self), columns: Self.columns, format: out.output)
        }
    }
}
