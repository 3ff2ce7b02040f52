import ArgumentParser
import BerthAPIContract
import Foundation
import OCIModel

// `berth config quarantine update …` and `berth manifest quarantine …`.

struct ConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Registry policies.",
                                                    subcommands: [QuarantineConfigGroup.self, ContentTrustConfigGroup.self, RetentionConfigGroup.self,
                                                                  SoftDeleteConfigGroup.self, GCConfigGroup.self])
}

struct QuarantineConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quarantine", abstract: "Quarantine-on-push.",
                                                    subcommands: [QuarantineConfigShow.self, QuarantineConfigUpdate.self])
}

enum QuarantineStatus: String, ExpressibleByArgument, CaseIterable, Sendable {
    case enabled, disabled
}

enum QuarantineView {
    static let policy = [Column("enabled", "enabled"), Column("grandfather-existing", "grandfatherExisting")]
    static let change = [
        Column("enabled", "policy.enabled"),
        Column("grandfather-existing", "policy.grandfatherExisting"),
        Column("dry-run", "dryRun"),
        Column("affected", "affectedCount"),
        Column("effect", "effect"),
    ]
    static let affected = [Column("repository", "repository"), Column("digest", "digest")]
}

struct QuarantineConfigShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the quarantine policy.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "quarantine", answer: QuarantinePolicyView.self), fields: QuarantineView.policy, format: out.output)
        }
    }
}

struct QuarantineConfigUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Switch quarantine-on-push.",
        discussion: """
        While enabled, every new image waits for a QuarantineWriter's verdict before anyone else can pull it.
        --grandfather false also blocks images pushed before. --status disabled releases every Pending image (it becomes
        pullable); Failed verdicts stay enforced. Run with --dry-run first: it prints exactly what the real run changes.
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled.") var status: QuarantineStatus?
    @Option(help: "Keep images pushed before the switch pullable (true/false).") var grandfather: Bool?
    @Flag(help: "List what the change would block or release; change nothing.") var dryRun = false

    func validate() throws {
        if status == nil, grandfather == nil { throw ValidationError("nothing to change; give --status and/or --grandfather") }
    }

    func run() async throws {
        try await runCLI {
            let body = QuarantinePolicyRequest(enabled: status.map { $0 == .enabled }, grandfatherExisting: grandfather, dryRun: dryRun)
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.PATCH, "quarantine", sending: body, answer: QuarantineChangeView.self)
            // The dry run and the real run print the same: what changes and which images it changes.
            Printer.keyValues(answer, fields: QuarantineView.change, format: out.output)
            if out.output != .json, let affected = answer["affected"]?.asArray, !affected.isEmpty {
                Printer.rows(.array(affected), columns: QuarantineView.affected, format: out.output)
            }
        }
    }
}

struct ManifestGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "manifest", abstract: "Manifests.",
                                                    subcommands: [ManifestQuarantine.self, ManifestRestore.self])
}

enum QuarantineVerdict: String, ExpressibleByArgument, CaseIterable, Sendable {
    case pending = "Pending", passed = "Passed", failed = "Failed"

    init?(argument: String) {
        guard let v = QuarantineVerdict.allCases.first(where: { $0.rawValue.lowercased() == argument.lowercased() }) else { return nil }
        self = v
    }
}

struct ManifestQuarantine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine", abstract: "Record the gate's verdict on a quarantined image (QuarantineWriter).",
        discussion: "Example: berth manifest quarantine --image payments/api@sha256:… --state Passed --reason 'scan clean'")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "REPOSITORY@DIGEST (an optional registry host in front is ignored).") var image: String
    @Option(help: "Pending, Passed or Failed.") var state: QuarantineVerdict
    @Option(help: "Why: kept with the state.") var reason: String?

    func run() async throws {
        try await runCLI {
            let ref = try Repositories.parseImage(image, option: "--image")
            guard let digest = ref.digest, ref.tag == nil else {
                throw CLIError("--image must be REPOSITORY@DIGEST: a verdict is about exact content, never a tag")
            }
            let body = QuarantineStateRequest(repository: ref.repository, digest: digest.string, state: state.rawValue, reason: reason)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "quarantine/manifests", sending: body, answer: QuarantineVerdictView.self),
                              fields: [Column("repository", "repository"), Column("digest", "digest"), Column("state", "state"),
                                       Column("reason", "reason")], format: out.output)
        }
    }
}

// `berth config content-trust update|show`

struct ContentTrustConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "content-trust", abstract: "Registry-side signature enforcement.",
                                                    subcommands: [ContentTrustShow.self, ContentTrustUpdate.self])
}

enum ContentTrustView {
    static let fields = [
        Column("enabled", "enabled"), Column("repositories", "repositories"), Column("exempt", "exempt"),
        Column("trust-stores", compute: { ($0["trustStores"]?.asObject?.keys.sorted() ?? []).joined(separator: ",") }),
        Column("policies", compute: { ($0.at("trustPolicy.trustPolicies")?.asArray ?? []).compactMap { $0["name"]?.asString }.joined(separator: ",") }),
    ]
}

struct ContentTrustShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the content-trust policy.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "content-trust", answer: BerthAPIContract.ContentTrustView.self), fields: ContentTrustView.fields, format: out.output)
        }
    }
}

struct ContentTrustUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Refuse pulls of manifests without a signature valid under a Notation trust policy.",
        discussion: """
        Example: berth config content-trust update --status enabled --repository 'payments/*' \\
                   --trust-policy trustpolicy.json --trust-store ca:payments-ca=ca.crt --exempt signer scanner
        The policy uses Notation's trust policy format; the certificates are stored with the registry.
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled.") var status: QuarantineStatus
    @Option(parsing: .upToNextOption, help: "Repository patterns (exact, prefix/*, or *).") var repository: [String] = []
    @Option(help: "Notation trust policy JSON file.") var trustPolicy: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Trust stores: TYPE:NAME=FILE.pem (repeatable).", valueName: "store"))
    var trustStore: [String] = []
    @Option(parsing: .upToNextOption, help: "Identities or tokens that may pull unsigned content (the signer, the scanner).")
    var exempt: [String] = []

    func run() async throws {
        try await runCLI {
            var policy: TrustPolicyDocumentView?
            if let trustPolicy {
                guard let data = FileManager.default.contents(atPath: trustPolicy),
                      let document = try? JSONDecoder().decode(TrustPolicyDocumentView.self, from: data) else {
                    throw CLIError("cannot read the trust policy \(trustPolicy) as a trust policy document (JSON)")
                }
                policy = document
            }
            var stores: [String: [String]] = [:]
            for spec in trustStore {
                guard let eq = spec.firstIndex(of: "=") else { throw CLIError("--trust-store takes TYPE:NAME=FILE, got \(spec)") }
                let name = String(spec[..<eq]), file = String(spec[spec.index(after: eq)...])
                guard let pem = try? String(contentsOfFile: file, encoding: .utf8) else { throw CLIError("cannot read \(file)") }
                stores[name, default: []].append(pem)
            }
            let body = BerthAPIContract.ContentTrustView(enabled: status == .enabled, repositories: repository, trustPolicy: policy,
                                                         trustStores: stores, exempt: exempt)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PUT, "content-trust", sending: body, answer: BerthAPIContract.ContentTrustView.self),
                              fields: ContentTrustView.fields,
                              format: out.output)
        }
    }
}
